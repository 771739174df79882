//! Produce: appends each partition's batches on the partition's owner shard. Batches are
//! stored as sent (any codec); the log checks framing and CRC and assigns offsets.
//! `acks=0` gets no response; `acks=1` answers after the leader's append; `acks=all` once
//! the high watermark passes the batch (every in-sync replica has it) or after the
//! request's timeout (REQUEST_TIMED_OUT). Waiting for another shard's appends and for the
//! replicas is a second step ([`Produced`]), so the connection can append the client's next
//! request meanwhile. A broker that does not lead a partition answers
//! NOT_LEADER_OR_FOLLOWER, so the client refreshes its metadata.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};

use futures_util::future::join_all;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use spate_shard::group_coordinator::OFFSETS_TOPIC;
use spate_shard::{AppendRequest, Appended, Commit, HandedOff, ProduceResult, Shard};
use uuid::Uuid;

use super::{Context, RequestError};

/// The `acks` values Kafka accepts: no response, after the leader's append, after every
/// in-sync replica has it.
const ACKS_NONE: i16 = 0;
const ACKS_LEADER: i16 = 1;
const ACKS_ALL: i16 = -1;
/// The first version whose answers carry the log start offset.
const LOG_START_OFFSET_VERSION: i16 = 5;

/// A Produce whose appends are handed to their owners: its response, once the appends sent
/// to other shards have their outcomes and any `acks=all` waits are over.
pub struct Produced {
    version: i16,
    /// The topics in request order.
    topics: Vec<TopicSlots>,
    /// One slot per partition in request order.
    results: Vec<Result<ProduceResult, ResponseError>>,
    /// The appends still on their way to another shard: (owner, slots, appends).
    sent: Vec<(usize, Vec<usize>, HandedOff)>,
    /// The `acks=all` waits still owed, by owner shard: (slot, wait).
    waits: BTreeMap<usize, Vec<(usize, Commit)>>,
}

impl Produced {
    /// True when the response is ready now (every append is done and no `acks=all` wait is
    /// owed).
    pub fn is_ready(&self) -> bool {
        self.sent.is_empty() && self.waits.is_empty()
    }

    /// Fills in the outcomes of `slots`' appends, which shard `owner` made.
    fn record(
        &mut self,
        owner: usize,
        slots: Vec<usize>,
        outcomes: Vec<Result<Appended, ResponseError>>,
    ) {
        for (slot, outcome) in slots.into_iter().zip(outcomes) {
            self.results[slot] = outcome.map(|appended| {
                if let Some(commit) = appended.commit {
                    self.waits.entry(owner).or_default().push((slot, commit));
                }
                appended.result
            });
        }
    }

    /// Waits for the outcomes of the appends sent to other shards (all owners at once).
    async fn settle(&mut self, shard: &Shard) {
        let sent = std::mem::take(&mut self.sent);
        let outcomes = sent.into_iter().map(|(owner, slots, handed)| async move {
            (owner, slots, shard.appended(handed).await)
        });
        for (owner, slots, outcomes) in join_all(outcomes).await {
            self.record(owner, slots, outcomes);
        }
    }

    /// The response, after the appends and the owed waits (all owners at once).
    pub async fn response(mut self, shard: &Shard) -> ProduceResponse {
        self.settle(shard).await;
        let waits = std::mem::take(&mut self.waits);
        let commits = waits.into_iter().map(|(owner, waits)| async move {
            let (slots, waits): (Vec<usize>, Vec<Commit>) = waits.into_iter().unzip();
            (slots, shard.await_commits(owner, waits).await)
        });
        for (slots, outcomes) in join_all(commits).await {
            for (slot, outcome) in slots.into_iter().zip(outcomes) {
                if let Err(e) = outcome {
                    self.results[slot] = Err(e);
                }
            }
        }
        let responses = self
            .topics
            .into_iter()
            .map(|topic| {
                let partitions = topic
                    .partitions
                    .into_iter()
                    .map(|(slot, index)| {
                        partition_response(index, self.results[slot], self.version)
                    })
                    .collect();
                TopicProduceResponse::default()
                    .with_name(TopicName(StrBytes::from_string(topic.name)))
                    .with_topic_id(topic.topic_id)
                    .with_partition_responses(partitions)
            })
            .collect();
        ProduceResponse::default().with_responses(responses)
    }
}

/// A topic of the request: its partitions' indexes and their slots in `Produced::results`.
struct TopicSlots {
    name: String,
    topic_id: Uuid,
    /// (slot, partition index), in request order.
    partitions: Vec<(usize, i32)>,
}

/// Appends the request's records. Returns `None` for `acks=0`: Kafka sends no response then
/// (and an error closes the connection). `frame` is the whole request frame the records
/// were decoded from: they are carved out of it in place (see [`carve`]).
pub async fn handle(
    ctx: &Context,
    request: ProduceRequest,
    frame: Bytes,
) -> Result<Option<Produced>, RequestError> {
    let mut request = request;
    let acks = request.acks;
    let timeout = Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0));
    let topic_data = std::mem::take(&mut request.topic_data);
    // What is left (the transactional id) may be a slice of the frame: let it go.
    drop(request);
    let acks_valid = matches!(acks, ACKS_NONE | ACKS_LEADER | ACKS_ALL);
    let table = ctx.shard.topics();
    // One slot per partition in request order; the appends go to their owners grouped, one
    // message per owner shard, all owners at once.
    let mut results: Vec<Result<ProduceResult, ResponseError>> = Vec::new();
    // (slot, owner, topic, partition, where the records are)
    let mut pending = Vec::new();
    let mut topics = Vec::with_capacity(topic_data.len());
    for topic in topic_data {
        let name = topic.name.0.to_string();
        let known = table.get(&name).map(|t| t.partitions);
        let mut indexes = Vec::with_capacity(topic.partition_data.len());
        for p in topic.partition_data {
            let slot = results.len();
            indexes.push((slot, p.index));
            results.push(match (acks_valid, known, p.records) {
                (false, _, _) => Err(ResponseError::InvalidRequiredAcks),
                // Only the group coordinator writes there, as in Kafka.
                _ if name == OFFSETS_TOPIC => Err(ResponseError::InvalidTopicException),
                (_, Some(count), _) if p.index < 0 || p.index >= count => {
                    Err(ResponseError::UnknownTopicOrPartition)
                }
                (_, None, _) => Err(ResponseError::UnknownTopicOrPartition),
                (_, Some(_), Some(records)) if !records.is_empty() => {
                    let owner = ctx.shard.owner_of(&name, p.index);
                    let source = Carve::locate(&frame, records);
                    pending.push((slot, owner, name.clone(), p.index, source));
                    // Replaced by the append's outcome below.
                    Err(ResponseError::UnknownServerError)
                }
                (_, Some(_), _) => Err(ResponseError::CorruptMessage),
            });
        }
        // The name as an owned string: a slice would keep the frame shared.
        topics.push(TopicSlots {
            name,
            topic_id: topic.topic_id,
            partitions: indexes,
        });
    }
    let mut sources = Vec::with_capacity(pending.len());
    let mut targets = Vec::with_capacity(pending.len());
    for (slot, owner, topic, partition, source) in pending {
        sources.push(source);
        targets.push((slot, owner, topic, partition));
    }
    let mut by_owner: BTreeMap<usize, (Vec<usize>, Vec<AppendRequest>)> = BTreeMap::new();
    for ((slot, owner, topic, partition), records) in targets.into_iter().zip(carve(frame, sources))
    {
        let group = by_owner.entry(owner).or_default();
        group.0.push(slot);
        group.1.push(AppendRequest {
            topic,
            partition,
            records,
            acks,
            timeout,
        });
    }
    let mut produced = Produced {
        version: ctx.version(),
        topics,
        results,
        sent: Vec::new(),
        waits: BTreeMap::new(),
    };
    // Appends on this shard are done when this returns; those sent to another shard are
    // not awaited here, so the connection can read its next request meanwhile.
    let handed = by_owner
        .into_iter()
        .map(|(owner, (slots, appends))| async move {
            (
                owner,
                slots,
                ctx.shard.hand_off(owner, appends).await.known(),
            )
        });
    for (owner, slots, handed) in join_all(handed).await {
        match handed {
            Ok(outcomes) => produced.record(owner, slots, outcomes),
            Err(sent) => produced.sent.push((owner, slots, sent)),
        }
    }
    if acks == ACKS_NONE {
        // No response to carry an error: like Kafka, close the connection so the producer
        // notices (and refreshes its metadata).
        produced.settle(&ctx.shard).await;
        let failed = produced.results.iter().filter(|r| r.is_err()).count();
        return if failed == 0 {
            Ok(None)
        } else {
            Err(RequestError::UnacknowledgedProduceFailed { partitions: failed })
        };
    }
    Ok(Some(produced))
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

/// Where one partition's records are, before the frame is carved.
enum Carve {
    /// `(offset, len)` in the frame.
    Range(usize, usize),
    /// Not a slice of the frame (cannot happen with a decoded frame, but never assume).
    Copied(BytesMut),
}

impl Carve {
    fn locate(frame: &Bytes, records: Bytes) -> Carve {
        let offset = (records.as_ptr() as usize).checked_sub(frame.as_ptr() as usize);
        match offset {
            Some(offset) if offset + records.len() <= frame.len() => {
                Carve::Range(offset, records.len())
            }
            _ => Carve::Copied(BytesMut::from(&records[..])),
        }
    }
}

/// Turns each partition's records into its own mutable buffer, for the log to patch offsets
/// into. When nothing else holds the frame (the handler has dropped every other slice of
/// it), the buffers are disjoint pieces of the frame itself: no copy. Otherwise they are
/// copies. One buffer per source, in order.
fn carve(frame: Bytes, sources: Vec<Carve>) -> Vec<BytesMut> {
    let ranges: Vec<(usize, usize)> = sources
        .iter()
        .filter_map(|s| match s {
            Carve::Range(offset, len) => Some((*offset, *len)),
            Carve::Copied(_) => None,
        })
        .collect();
    let ascending = ranges.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0);
    let mut pieces = match frame.try_into_mut() {
        Ok(mut buf) if ascending => {
            let mut at = 0;
            let mut pieces = Vec::with_capacity(ranges.len());
            for (offset, len) in &ranges {
                buf.advance(offset - at);
                pieces.push(buf.split_to(*len));
                at = offset + len;
            }
            pieces
        }
        Ok(buf) => copy_ranges(&buf, &ranges),
        Err(frame) => copy_ranges(&frame, &ranges),
    }
    .into_iter();
    sources
        .into_iter()
        .map(|s| match s {
            Carve::Copied(copy) => copy,
            Carve::Range(..) => pieces.next().unwrap_or_default(),
        })
        .collect()
}

fn copy_ranges(frame: &[u8], ranges: &[(usize, usize)]) -> Vec<BytesMut> {
    ranges
        .iter()
        .map(|(offset, len)| BytesMut::from(&frame[*offset..offset + len]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unshared_frame_is_carved_without_copying() {
        let frame = Bytes::from((0u8..100).collect::<Vec<u8>>());
        let base = frame.as_ptr() as usize;
        let sources = vec![
            Carve::locate(&frame, frame.slice(10..20)),
            Carve::locate(&frame, frame.slice(50..55)),
        ];
        let pieces = carve(frame, sources);
        assert_eq!(&pieces[0][..], &(10u8..20).collect::<Vec<_>>()[..]);
        assert_eq!(&pieces[1][..], &[50, 51, 52, 53, 54]);
        assert_eq!(pieces[0].as_ptr() as usize, base + 10);
        assert_eq!(pieces[1].as_ptr() as usize, base + 50);
    }

    #[test]
    fn a_shared_frame_is_copied() {
        let frame = Bytes::from(vec![7u8; 32]);
        let other_owner = frame.clone();
        let sources = vec![Carve::locate(&frame, frame.slice(4..8))];
        let pieces = carve(frame, sources);
        assert_eq!(&pieces[0][..], &[7, 7, 7, 7]);
        assert_ne!(pieces[0].as_ptr(), other_owner[4..].as_ptr());
    }

    #[test]
    fn records_outside_the_frame_are_copied() {
        let frame = Bytes::from(vec![1u8; 8]);
        let foreign = Bytes::from(vec![9u8; 3]);
        let source = Carve::locate(&frame, foreign);
        let pieces = carve(frame, vec![source]);
        assert_eq!(&pieces[0][..], &[9, 9, 9]);
    }
}
