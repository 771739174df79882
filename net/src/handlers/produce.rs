//! Produce: appends each partition's batches on the partition's owner shard. Batches are
//! stored as sent (any codec); the log checks framing and CRC and assigns offsets.
//! `acks=0` gets no response; `acks=1` and `acks=all` (one replica) answer after the append
//! has moved the high watermark.

use bytes::Bytes;
use futures_util::future::join_all;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;
use spate_shard::ProduceResult;

use super::Context;

/// The `acks` values Kafka accepts: no response, after the leader's append, after every
/// in-sync replica has it.
const ACKS_NONE: i16 = 0;
const ACKS_LEADER: i16 = 1;
const ACKS_ALL: i16 = -1;
/// The first version whose answers carry the log start offset.
const LOG_START_OFFSET_VERSION: i16 = 5;

/// Returns `None` for `acks=0`: Kafka sends no response then.
pub async fn handle(ctx: &Context, request: ProduceRequest) -> Option<ProduceResponse> {
    let acks_valid = matches!(request.acks, ACKS_NONE | ACKS_LEADER | ACKS_ALL);
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        let known = ctx.shard.topics().get(&name).map(|t| t.partitions);
        let partitions = topic.partition_data.into_iter().map(|p| {
            let name = name.clone();
            async move {
                let result = match (acks_valid, known, p.records) {
                    (false, _, _) => Err(ResponseError::InvalidRequiredAcks),
                    (_, Some(count), Some(records)) if p.index >= 0 && p.index < count => {
                        append(ctx, &name, p.index, records).await
                    }
                    (_, Some(count), None) if p.index >= 0 && p.index < count => {
                        Err(ResponseError::CorruptMessage)
                    }
                    _ => Err(ResponseError::UnknownTopicOrPartition),
                };
                partition_response(p.index, result, ctx.version())
            }
        });
        let partition_responses = join_all(partitions).await;
        topics.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_topic_id(topic.topic_id)
                .with_partition_responses(partition_responses),
        );
    }
    (request.acks != ACKS_NONE).then(|| ProduceResponse::default().with_responses(topics))
}

async fn append(
    ctx: &Context,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> Result<ProduceResult, ResponseError> {
    if records.is_empty() {
        return Err(ResponseError::CorruptMessage);
    }
    ctx.shard.produce(topic, partition, records).await
}

fn partition_response(
    index: i32,
    result: Result<ProduceResult, ResponseError>,
    version: i16,
) -> PartitionProduceResponse {
    let response = PartitionProduceResponse::default()
        .with_index(index)
        .with_log_append_time_ms(-1);
    match result {
        Ok(r) if version >= LOG_START_OFFSET_VERSION => response
            .with_base_offset(r.base_offset)
            .with_log_start_offset(r.log_start_offset),
        Ok(r) => response.with_base_offset(r.base_offset),
        Err(e) => response.with_error_code(e.code()).with_base_offset(-1),
    }
}
