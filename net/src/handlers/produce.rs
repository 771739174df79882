//! Produce: appends each partition's batches on the partition's owner shard. Batches are
//! stored as sent (any codec); the log checks framing and CRC and assigns offsets.
//! `acks=0` gets no response; `acks=1` and `acks=all` (one replica) answer after the append
//! has moved the high watermark.

use std::collections::BTreeMap;

use futures_util::future::join_all;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;
use spate_shard::{AppendRequest, ProduceResult};

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
    let acks = request.acks;
    let acks_valid = matches!(acks, ACKS_NONE | ACKS_LEADER | ACKS_ALL);
    let table = ctx.shard.topics();
    // One slot per partition in request order; the appends go to their owners grouped, one
    // message per owner shard, all owners at once.
    let mut results: Vec<Result<ProduceResult, ResponseError>> = Vec::new();
    let mut by_owner: BTreeMap<usize, (Vec<usize>, Vec<AppendRequest>)> = BTreeMap::new();
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        let known = table.get(&name).map(|t| t.partitions);
        let mut indexes = Vec::with_capacity(topic.partition_data.len());
        for p in topic.partition_data {
            let slot = results.len();
            indexes.push((slot, p.index));
            results.push(match (acks_valid, known, p.records) {
                (false, _, _) => Err(ResponseError::InvalidRequiredAcks),
                (_, Some(count), _) if p.index < 0 || p.index >= count => {
                    Err(ResponseError::UnknownTopicOrPartition)
                }
                (_, None, _) => Err(ResponseError::UnknownTopicOrPartition),
                (_, Some(_), Some(records)) if !records.is_empty() => {
                    let owner = ctx.shard.owner_of(&name, p.index);
                    let group = by_owner.entry(owner).or_default();
                    group.0.push(slot);
                    group.1.push(AppendRequest {
                        topic: name.clone(),
                        partition: p.index,
                        records,
                    });
                    // Replaced by the append's outcome below.
                    Err(ResponseError::UnknownServerError)
                }
                (_, Some(_), _) => Err(ResponseError::CorruptMessage),
            });
        }
        topics.push((topic.name, topic.topic_id, indexes));
    }
    let appends = by_owner
        .into_iter()
        .map(|(owner, (slots, appends))| async move {
            (slots, ctx.shard.produce_batch(owner, appends).await)
        });
    for (slots, outcomes) in join_all(appends).await {
        for (slot, outcome) in slots.into_iter().zip(outcomes) {
            results[slot] = outcome;
        }
    }
    if acks == ACKS_NONE {
        return None;
    }
    let responses = topics
        .into_iter()
        .map(|(name, topic_id, indexes)| {
            let partitions = indexes
                .into_iter()
                .map(|(slot, index)| partition_response(index, results[slot], ctx.version()))
                .collect();
            TopicProduceResponse::default()
                .with_name(name)
                .with_topic_id(topic_id)
                .with_partition_responses(partitions)
        })
        .collect();
    Some(ProduceResponse::default().with_responses(responses))
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
