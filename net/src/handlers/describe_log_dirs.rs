//! DescribeLogDirs: the broker's one log directory and the size of each partition in it
//! (all partitions when the request names none). The volume's total and usable bytes are
//! reported as unknown (-1, which Kafka's schema allows).

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use spate_shard::partition_admin::{PartitionAnswer, PartitionOp, PartitionQuery};

use super::{partition_queries, Context};

/// Kafka's UNKNOWN_VOLUME_BYTES.
const UNKNOWN_VOLUME_BYTES: i64 = -1;

pub async fn handle(ctx: &Context, request: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let table = ctx.shard.topics();
    // (topic, partitions) asked; only existing ones are described, as Kafka does.
    let asked: Vec<(String, Vec<i32>)> = match request.topics {
        None => table
            .iter()
            .map(|t| (t.name.clone(), (0..t.partitions).collect()))
            .collect(),
        Some(topics) => topics
            .into_iter()
            .filter_map(|t| {
                let info = table.get(&t.topic.0)?;
                let partitions: Vec<i32> = t
                    .partitions
                    .into_iter()
                    .filter(|p| *p >= 0 && *p < info.partitions)
                    .collect();
                Some((info.name.clone(), partitions))
            })
            .collect(),
    };
    let queries = asked
        .iter()
        .flat_map(|(topic, partitions)| {
            partitions.iter().map(|&p| PartitionQuery {
                topic: topic.clone(),
                partition: p,
                op: PartitionOp::Size,
            })
        })
        .collect();
    let mut answers = partition_queries::run(ctx, queries).await.into_iter();
    let topics = asked
        .into_iter()
        .map(|(topic, partitions)| {
            let partitions = partitions
                .into_iter()
                .filter_map(|p| match answers.next() {
                    Some(Ok(PartitionAnswer::Size { bytes, offset_lag })) => Some(
                        DescribeLogDirsPartition::default()
                            .with_partition_index(p)
                            .with_partition_size(bytes as i64)
                            .with_offset_lag(offset_lag),
                    ),
                    // Deleted meanwhile: not in the directory any more.
                    _ => None,
                })
                .collect();
            DescribeLogDirsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic)))
                .with_partitions(partitions)
        })
        .collect();
    let dir = ctx.shard.config().log_dir.clone();
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    DescribeLogDirsResponse::default().with_results(vec![DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(UNKNOWN_VOLUME_BYTES)
        .with_usable_bytes(UNKNOWN_VOLUME_BYTES)])
}
