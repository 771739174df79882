//! OffsetForLeaderEpoch: for each partition, the largest leader epoch at or below the asked
//! one and the offset where the next epoch starts (the log end for the latest epoch), from
//! the log's leader-epoch cache. Consumers use it to detect truncation after a leader
//! change; followers to find where to truncate. A `current_leader_epoch` newer than the
//! partition's is UNKNOWN_LEADER_EPOCH, an older one FENCED_LEADER_EPOCH (-1 skips the
//! check), as in Kafka.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;
use spate_shard::partition_admin::{PartitionAnswer, PartitionOp, PartitionQuery};

use super::{partition_queries, Context};

/// Kafka's UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET.
const UNDEFINED: i64 = -1;
/// "Do not check the requester's leader epoch".
const NO_EPOCH_CHECK: i32 = -1;

pub async fn handle(
    ctx: &Context,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let queries = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| PartitionQuery {
                topic: t.topic.0.to_string(),
                partition: p.partition,
                op: PartitionOp::EpochEndOffset(p.leader_epoch),
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
                    let result = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(UNDEFINED as i32)
                        .with_end_offset(UNDEFINED);
                    let answer = answers
                        .next()
                        .unwrap_or(Err(ResponseError::UnknownServerError));
                    match answer {
                        Ok(PartitionAnswer::EpochEndOffset {
                            leader_epoch,
                            found,
                        }) => {
                            let current = p.current_leader_epoch;
                            if current != NO_EPOCH_CHECK && current > leader_epoch {
                                result.with_error_code(ResponseError::UnknownLeaderEpoch.code())
                            } else if current != NO_EPOCH_CHECK && current < leader_epoch {
                                result.with_error_code(ResponseError::FencedLeaderEpoch.code())
                            } else if let Some((epoch, end)) = found {
                                result.with_leader_epoch(epoch).with_end_offset(end)
                            } else {
                                result
                            }
                        }
                        Ok(_) => result.with_error_code(ResponseError::UnknownServerError.code()),
                        Err(e) => result.with_error_code(e.code()),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
