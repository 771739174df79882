//! OffsetDelete: removes a group's committed offsets for some partitions. Refused
//! (GROUP_SUBSCRIBED_TO_TOPIC) for topics a live consumer group subscribes to.

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use kafka_protocol::ResponseError;
use spate_shard::group_coordinator::{GroupAnswer, GroupCall};

use super::Context;

pub async fn handle(ctx: &Context, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let asked = request
        .topics
        .iter()
        .map(|t| {
            (
                t.name.to_string(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    let results = match ctx
        .shard
        .group_call(&request.group_id, GroupCall::DeleteOffsets(asked))
        .await
    {
        GroupAnswer::DeleteOffsets(Ok(results)) => results,
        GroupAnswer::DeleteOffsets(Err(e)) | GroupAnswer::Error(e) => {
            return OffsetDeleteResponse::default().with_error_code(e.code())
        }
        _ => {
            return OffsetDeleteResponse::default()
                .with_error_code(ResponseError::UnknownServerError.code())
        }
    };
    let mut results = results.into_iter();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let error = results.next().and_then(Result::err);
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error.map_or(0, |e| e.code()))
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
