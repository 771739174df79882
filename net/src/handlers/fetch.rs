//! Fetch: whole batches from each requested partition, up to its high watermark for a
//! consumer, up to the log end for a follower (a request with a replica id: the leader
//! notes the follower's log end from its fetch offset, see `spate_shard::replication`).
//!
//! Limits follow Kafka: `partition_max_bytes` per partition and `max_bytes` for the whole
//! response, except that the first batch found is returned even when larger, so a consumer
//! never stalls behind a big batch. With fewer than `min_bytes` found and `max_wait_ms` > 0
//! the request waits on its partitions and wakes on the append that brings data (or at the
//! deadline), then reads again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::{select_all, FutureExt, LocalBoxFuture};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::ResponseError;
use spate_shard::{PartitionOffsets, ReadBatch, ReadRequest, ReadResult, Records, WaitRequest};
use uuid::Uuid;

use super::{Context, RequestError};
use crate::zero_copy::{
    encode_fetch_response, AbortedTransactions, FetchPartitionParts, FetchResponseParts,
    FetchSegment, FetchTopicParts,
};

/// From v13 on, topics are named by id.
const TOPIC_IDS_VERSION: i16 = 13;
/// From v15 on, a follower's id is in `replica_state`.
const REPLICA_STATE_VERSION: i16 = 15;
/// Fetch's isolation level for transactional reads.
const READ_COMMITTED: i8 = 1;
/// "Keep fetching from the leader" (no follower fetching).
const NO_PREFERRED_REPLICA: i32 = -1;
/// What an errored partition reports for its offsets.
const UNKNOWN_OFFSETS: PartitionOffsets = PartitionOffsets {
    high_watermark: -1,
    log_start_offset: -1,
};

/// One partition the request asks for, with what the last read of it found.
struct Wanted {
    topic: usize,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    current_leader_epoch: i32,
    result: ReadResult<Records>,
}

/// One requested topic, resolved to a name (`None`: unknown).
struct Topic {
    name: Option<String>,
    id: Uuid,
    wire_name: TopicName,
}

pub async fn handle(
    ctx: &Context,
    request: FetchRequest,
) -> Result<Vec<FetchSegment<Records>>, RequestError> {
    let table = ctx.shard.topics();
    let by_id = ctx.version() >= TOPIC_IDS_VERSION;
    let replica_id = if ctx.version() >= REPLICA_STATE_VERSION {
        request.replica_state.replica_id.0
    } else {
        request.replica_id.0
    };
    let mut topics = Vec::with_capacity(request.topics.len());
    let mut wanted = Vec::new();
    for topic in request.topics {
        let name = if by_id {
            table.get_by_id(topic.topic_id).map(|t| t.name.clone())
        } else {
            Some(topic.topic.0.to_string()).filter(|n| table.get(n).is_some())
        };
        for p in topic.partitions {
            wanted.push(Wanted {
                topic: topics.len(),
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: usize::try_from(p.partition_max_bytes).unwrap_or(0),
                current_leader_epoch: p.current_leader_epoch,
                result: Err(if by_id {
                    ResponseError::UnknownTopicId
                } else {
                    ResponseError::UnknownTopicOrPartition
                }),
            });
        }
        topics.push(Topic {
            name,
            id: topic.topic_id,
            wire_name: topic.topic,
        });
    }
    let max_bytes = usize::try_from(request.max_bytes).unwrap_or(0);
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    let deadline =
        Instant::now() + Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0));
    loop {
        let found = read_all(ctx, &topics, &mut wanted, max_bytes, replica_id).await;
        let now = Instant::now();
        if found >= min_bytes.max(1)
            || now >= deadline
            || !worth_waiting(&wanted, replica_id)
            || ctx.shard.is_stopping()
        {
            break;
        }
        wait_for_any(ctx, &topics, &wanted, deadline - now, replica_id).await;
    }
    response(ctx, topics, wanted, request.isolation_level)
}

/// Reads every partition once, within the response's byte budget; returns the bytes found.
/// Partitions are read one owner shard at a time (this shard's first), so a Fetch costs one
/// message per other shard, not one per partition.
async fn read_all(
    ctx: &Context,
    topics: &[Topic],
    wanted: &mut [Wanted],
    max_bytes: usize,
    replica_id: i32,
) -> usize {
    let mut total = 0;
    for (owner, indexes) in by_owner(ctx, topics, wanted) {
        let reads = indexes
            .iter()
            .map(|&i| ReadRequest {
                topic: topic_of(topics, &wanted[i]).to_string(),
                partition: wanted[i].partition,
                offset: wanted[i].offset,
                max_bytes: wanted[i].max_bytes,
                current_leader_epoch: wanted[i].current_leader_epoch,
            })
            .collect();
        let batch = ReadBatch {
            reads,
            budget: max_bytes.saturating_sub(total),
            min_one_batch: total == 0,
            replica_id,
        };
        let results = ctx.shard.read_batch(owner, batch).await;
        for (i, result) in indexes.into_iter().zip(results) {
            if let Ok((records, _)) = &result {
                total += records.len();
            }
            wanted[i].result = result;
        }
    }
    total
}

/// The wanted partitions of known topics, grouped by owner shard, this shard first.
fn by_owner(ctx: &Context, topics: &[Topic], wanted: &[Wanted]) -> Vec<(usize, Vec<usize>)> {
    let me = ctx.shard.id();
    let mut groups: BTreeMap<(bool, usize), Vec<usize>> = BTreeMap::new();
    for (i, w) in wanted.iter().enumerate() {
        if topics[w.topic].name.is_some() {
            let owner = ctx.shard.owner_of(topic_of(topics, w), w.partition);
            groups.entry((owner != me, owner)).or_default().push(i);
        }
    }
    groups
        .into_iter()
        .map(|((_, owner), indexes)| (owner, indexes))
        .collect()
}

fn topic_of<'a>(topics: &'a [Topic], w: &Wanted) -> &'a str {
    topics[w.topic].name.as_deref().unwrap_or_default()
}

/// Waiting only helps when every partition read cleanly and came back empty at its end
/// (a follower reads to the log end, so empty is at its end).
fn worth_waiting(wanted: &[Wanted], replica_id: i32) -> bool {
    wanted.iter().all(|w| match &w.result {
        Ok((records, offsets)) => {
            records.is_empty() && (replica_id >= 0 || w.offset >= offsets.high_watermark)
        }
        Err(_) => false,
    })
}

/// Resolves as soon as any requested partition gets data past its fetch offset: one wait
/// per owner shard, the first to end wins.
async fn wait_for_any(
    ctx: &Context,
    topics: &[Topic],
    wanted: &[Wanted],
    timeout: Duration,
    replica_id: i32,
) {
    let waits: Vec<LocalBoxFuture<'_, ()>> = by_owner(ctx, topics, wanted)
        .into_iter()
        .map(|(owner, indexes)| {
            let partitions = indexes
                .into_iter()
                .map(|i| WaitRequest {
                    topic: topic_of(topics, &wanted[i]).to_string(),
                    partition: wanted[i].partition,
                    offset: wanted[i].offset,
                    for_replica: replica_id >= 0,
                })
                .collect();
            ctx.shard.wait_any(owner, partitions, timeout).boxed_local()
        })
        .collect();
    if !waits.is_empty() {
        select_all(waits).await;
    }
}

/// The response as wire-ordered segments: encoded bytes, and record ranges that the
/// connection splices from the segment files (or writes, when they came from another shard).
fn response(
    ctx: &Context,
    topics: Vec<Topic>,
    wanted: Vec<Wanted>,
    isolation_level: i8,
) -> Result<Vec<FetchSegment<Records>>, RequestError> {
    // Kafka's null for read-uncommitted fetches, an empty list for read-committed ones.
    let aborted_transactions = if isolation_level == READ_COMMITTED {
        AbortedTransactions::Empty
    } else {
        AbortedTransactions::Null
    };
    let mut parts: Vec<FetchTopicParts<Records>> = topics
        .into_iter()
        .map(|t| FetchTopicParts {
            name: t.wire_name.0,
            topic_id: *t.id.as_bytes(),
            partitions: Vec::new(),
        })
        .collect();
    for w in wanted {
        let (error_code, offsets, records) = match w.result {
            Ok((records, offsets)) => (0, offsets, records),
            Err(e) => (e.code(), UNKNOWN_OFFSETS, Records::Bytes(Bytes::new())),
        };
        parts[w.topic].partitions.push(FetchPartitionParts {
            partition_index: w.partition,
            error_code,
            high_watermark: offsets.high_watermark,
            // No transactions: everything below the high watermark is stable.
            last_stable_offset: offsets.high_watermark,
            log_start_offset: offsets.log_start_offset,
            aborted_transactions,
            preferred_read_replica: NO_PREFERRED_REPLICA,
            records,
        });
    }
    let response = FetchResponseParts {
        throttle_time_ms: 0,
        error_code: 0,
        // Spate keeps no fetch sessions: 0 tells the client to send full fetches.
        session_id: 0,
        topics: parts,
    };
    encode_fetch_response(ctx.version(), ctx.header.correlation_id, response).map_err(|e| {
        RequestError::Encode {
            what: "FetchResponse",
            reason: e.to_string(),
        }
    })
}
