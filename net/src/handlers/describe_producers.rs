//! DescribeProducers: the idempotent producers each partition's log knows (producer id,
//! epoch, last sequence, last timestamp). No transactions are served, so no producer has a
//! coordinator epoch or an open transaction (-1 for both).

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use spate_shard::partition_admin::{PartitionAnswer, PartitionOp, PartitionQuery};

use super::{partition_queries, Context};

pub async fn handle(ctx: &Context, request: DescribeProducersRequest) -> DescribeProducersResponse {
    let queries = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partition_indexes.iter().map(|&p| PartitionQuery {
                topic: t.name.0.to_string(),
                partition: p,
                op: PartitionOp::Producers,
            })
        })
        .collect();
    let mut answers = partition_queries::run(ctx, queries).await.into_iter();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&p| {
                    let result = PartitionResponse::default().with_partition_index(p);
                    match answers.next() {
                        Some(Ok(PartitionAnswer::Producers(producers))) => result
                            .with_active_producers(
                                producers
                                    .into_iter()
                                    .map(|p| {
                                        ProducerState::default()
                                            .with_producer_id(ProducerId(p.producer_id))
                                            .with_producer_epoch(p.epoch as i32)
                                            .with_last_sequence(p.last_sequence)
                                            .with_last_timestamp(p.last_timestamp)
                                            .with_coordinator_epoch(-1)
                                            .with_current_txn_start_offset(-1)
                                    })
                                    .collect(),
                            ),
                        Some(Err(e)) => result.with_error_code(e.code()).with_error_message(Some(
                            StrBytes::from_string(format!("{}-{p}: {e}", t.name.0)),
                        )),
                        _ => result.with_error_code(ResponseError::UnknownServerError.code()),
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
