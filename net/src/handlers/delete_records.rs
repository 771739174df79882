//! DeleteRecords: moves each partition's log start up to the given offset (-1: the high
//! watermark) and deletes the segments wholly below it. Consumers then see the new start
//! through ListOffsets (earliest) and get OFFSET_OUT_OF_RANGE below it. An offset past the
//! high watermark is OFFSET_OUT_OF_RANGE, as in Kafka. Records of the internal
//! `__consumer_offsets` cannot be deleted (INVALID_TOPIC_EXCEPTION, as in Kafka): only the
//! group coordinator trims it.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;
use spate_shard::group_coordinator::OFFSETS_TOPIC;
use spate_shard::partition_admin::{PartitionAnswer, PartitionOp, PartitionQuery};

use super::{partition_queries, Context};

pub async fn handle(ctx: &Context, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let queries = request
        .topics
        .iter()
        .filter(|t| t.name.0.as_str() != OFFSETS_TOPIC)
        .flat_map(|t| {
            t.partitions.iter().map(|p| PartitionQuery {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                op: PartitionOp::DeleteRecords(p.offset),
            })
        })
        .collect();
    let mut answers = partition_queries::run(ctx, queries).await.into_iter();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let internal = t.name.0.as_str() == OFFSETS_TOPIC;
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index);
                    if internal {
                        return result
                            .with_low_watermark(-1)
                            .with_error_code(ResponseError::InvalidTopicException.code());
                    }
                    match answers.next() {
                        Some(Ok(PartitionAnswer::LowWatermark(low))) => {
                            result.with_low_watermark(low)
                        }
                        Some(Err(e)) => result.with_low_watermark(-1).with_error_code(e.code()),
                        _ => result
                            .with_low_watermark(-1)
                            .with_error_code(ResponseError::UnknownServerError.code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
