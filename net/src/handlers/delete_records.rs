//! DeleteRecords: moves each partition's log start up to the given offset (-1: the high
//! watermark) and deletes the segments wholly below it. Consumers then see the new start
//! through ListOffsets (earliest) and get OFFSET_OUT_OF_RANGE below it. An offset past the
//! high watermark is OFFSET_OUT_OF_RANGE, as in Kafka.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use spate_shard::partition_admin::{PartitionAnswer, PartitionOp, PartitionQuery};

use super::{partition_queries, Context};

pub async fn handle(ctx: &Context, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let queries = request
        .topics
        .iter()
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
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index);
                    match answers.next() {
                        Some(Ok(PartitionAnswer::LowWatermark(low))) => {
                            result.with_low_watermark(low)
                        }
                        Some(Err(e)) => result.with_low_watermark(-1).with_error_code(e.code()),
                        _ => result.with_low_watermark(-1).with_error_code(
                            kafka_protocol::ResponseError::UnknownServerError.code(),
                        ),
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
