//! Hand-written encoder for a Fetch response minus its record bytes.
//!
//! A Fetch response is mostly record bytes, which must go file -> socket untouched. This
//! encoder writes everything else (frame size, response header, the per-topic and
//! per-partition fields, each records length prefix) and returns the frame as a list of
//! segments: encoded bytes interleaved with the caller's record ranges, in wire order. Writing
//! the segments in order (bytes with a normal write, ranges with `splice_to_socket`) puts on the
//! wire exactly what kafka-protocol's `FetchResponse` encoder would, records included; the tests
//! check that byte for byte.
//!
//! Layout (Kafka's FetchResponse.json): versions 12+ are "flexible": compact arrays, strings
//! and bytes (unsigned varint length + 1), a tagged-field section after every struct, and
//! response header v1 (correlation id + tagged fields). Version 13 replaced the topic name with
//! the topic id. No tagged field is ever written (none of them has a non-default value in what
//! Spate sends), so each tagged section is the single byte 0.

use std::ops::RangeInclusive;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;

/// Fetch versions this encoder writes. Versions below 4 lack last_stable_offset and aborted
/// transactions, which Spate's clients (all recent) never need.
pub const FETCH_VERSIONS: RangeInclusive<i16> = 4..=18;

/// First version with flexible (compact, tagged) encoding.
const FIRST_FLEXIBLE_VERSION: i16 = 12;
/// First version that names topics by id instead of name.
const FIRST_TOPIC_ID_VERSION: i16 = 13;

/// The length of a records range, so the encoder can write its length prefix and frame size.
pub trait RecordsLen {
    fn records_len(&self) -> usize;
}

impl RecordsLen for Bytes {
    fn records_len(&self) -> usize {
        self.len()
    }
}

/// One piece of an encoded response, in wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchSegment<R> {
    /// Encoded response bytes: write as they are.
    Bytes(Bytes),
    /// One partition's record bytes (never empty): send the range, e.g. with `splice_to_socket`.
    Records(R),
}

/// What a partition's aborted-transactions field holds. Spate has no transactions, so the only
/// choice is Kafka's: null for READ_UNCOMMITTED fetches, an empty list for READ_COMMITTED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortedTransactions {
    Null,
    Empty,
}

/// A partition's part of the response. Fields missing from the chosen version (log_start_offset
/// below 5, preferred_read_replica below 11) are left out, as Kafka does.
#[derive(Debug, Clone)]
pub struct FetchPartitionParts<R> {
    pub partition_index: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub aborted_transactions: AbortedTransactions,
    /// -1 when the consumer should keep fetching from the leader.
    pub preferred_read_replica: i32,
    pub records: R,
}

/// A topic's part of the response: `name` is written up to version 12, `topic_id` from 13.
#[derive(Debug, Clone)]
pub struct FetchTopicParts<R> {
    pub name: StrBytes,
    pub topic_id: [u8; 16],
    pub partitions: Vec<FetchPartitionParts<R>>,
}

/// The whole response. `error_code` and `session_id` exist from version 7 and are left out
/// below it.
#[derive(Debug, Clone)]
pub struct FetchResponseParts<R> {
    pub throttle_time_ms: i32,
    pub error_code: i16,
    pub session_id: i32,
    pub topics: Vec<FetchTopicParts<R>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FetchEncodeError {
    #[error("Fetch version {0} is not supported (supported: 4..=18)")]
    UnsupportedVersion(i16),
    #[error("topic name of {0} bytes is longer than a Kafka string allows")]
    TopicNameTooLong(usize),
    #[error("{0} bytes of records for one partition exceed Kafka's 2 GiB bytes field")]
    RecordsTooLarge(usize),
    #[error("Fetch response of {0} bytes exceeds Kafka's 2 GiB frame limit")]
    FrameTooLarge(usize),
}

/// Encodes the Fetch response frame `response` for `version`, answering request
/// `correlation_id`, as wire-ordered segments (see the module doc). Empty record ranges produce
/// no segment; adjacent encoded bytes come as one segment.
pub fn encode_fetch_response<R: RecordsLen>(
    version: i16,
    correlation_id: i32,
    response: FetchResponseParts<R>,
) -> Result<Vec<FetchSegment<R>>, FetchEncodeError> {
    if !FETCH_VERSIONS.contains(&version) {
        return Err(FetchEncodeError::UnsupportedVersion(version));
    }
    let flexible = version >= FIRST_FLEXIBLE_VERSION;
    let mut buf = BytesMut::with_capacity(64 + 64 * response.topics.len());
    // Where each non-empty records range goes: (offset in `buf`, range).
    let mut records = Vec::new();
    let mut records_total = 0usize;

    buf.put_i32(0); // frame size, patched at the end
    buf.put_i32(correlation_id);
    if flexible {
        put_empty_tags(&mut buf);
    }
    buf.put_i32(response.throttle_time_ms);
    if version >= 7 {
        buf.put_i16(response.error_code);
        buf.put_i32(response.session_id);
    }
    put_array_len(&mut buf, flexible, response.topics.len());
    for topic in response.topics {
        if version < FIRST_TOPIC_ID_VERSION {
            put_string(&mut buf, flexible, &topic.name)?;
        } else {
            buf.put_slice(&topic.topic_id);
        }
        put_array_len(&mut buf, flexible, topic.partitions.len());
        for partition in topic.partitions {
            buf.put_i32(partition.partition_index);
            buf.put_i16(partition.error_code);
            buf.put_i64(partition.high_watermark);
            buf.put_i64(partition.last_stable_offset);
            if version >= 5 {
                buf.put_i64(partition.log_start_offset);
            }
            match partition.aborted_transactions {
                AbortedTransactions::Null if flexible => put_uvarint(&mut buf, 0),
                AbortedTransactions::Null => buf.put_i32(-1),
                AbortedTransactions::Empty => put_array_len(&mut buf, flexible, 0),
            }
            if version >= 11 {
                buf.put_i32(partition.preferred_read_replica);
            }
            let len = partition.records.records_len();
            if i32::try_from(len).is_err() {
                return Err(FetchEncodeError::RecordsTooLarge(len));
            }
            if flexible {
                put_uvarint(&mut buf, len as u32 + 1);
            } else {
                buf.put_i32(len as i32);
            }
            if len > 0 {
                records_total += len;
                records.push((buf.len(), partition.records));
            }
            if flexible {
                put_empty_tags(&mut buf);
            }
        }
        if flexible {
            put_empty_tags(&mut buf);
        }
    }
    if flexible {
        put_empty_tags(&mut buf);
    }

    let frame_len = buf.len() - 4 + records_total;
    let size = i32::try_from(frame_len).map_err(|_| FetchEncodeError::FrameTooLarge(frame_len))?;
    buf[..4].copy_from_slice(&size.to_be_bytes());

    let bytes = buf.freeze();
    let mut segments = Vec::with_capacity(2 * records.len() + 1);
    let mut start = 0;
    for (at, range) in records {
        if at > start {
            segments.push(FetchSegment::Bytes(bytes.slice(start..at)));
        }
        segments.push(FetchSegment::Records(range));
        start = at;
    }
    if bytes.len() > start {
        segments.push(FetchSegment::Bytes(bytes.slice(start..)));
    }
    Ok(segments)
}

/// A tagged-field section with no fields.
fn put_empty_tags(buf: &mut BytesMut) {
    put_uvarint(buf, 0);
}

fn put_array_len(buf: &mut BytesMut, flexible: bool, len: usize) {
    // Counts come from Vec lengths of topics/partitions, far below u32/i32 limits in any
    // response that also fits the 2 GiB frame.
    if flexible {
        put_uvarint(buf, len as u32 + 1);
    } else {
        buf.put_i32(len as i32);
    }
}

fn put_string(buf: &mut BytesMut, flexible: bool, s: &str) -> Result<(), FetchEncodeError> {
    if i16::try_from(s.len()).is_err() {
        return Err(FetchEncodeError::TopicNameTooLong(s.len()));
    }
    if flexible {
        put_uvarint(buf, s.len() as u32 + 1);
    } else {
        buf.put_i16(s.len() as i16);
    }
    buf.put_slice(s.as_bytes());
    Ok(())
}

/// Kafka's unsigned varint: 7 bits per byte, least significant first, high bit = more.
fn put_uvarint(buf: &mut BytesMut, mut value: u32) {
    while value >= 0x80 {
        buf.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{BrokerId, FetchResponse, ResponseHeader, TopicName};
    use kafka_protocol::protocol::{Encodable, HeaderVersion};
    use proptest::prelude::*;

    use super::*;

    /// The frame kafka-protocol encodes for `parts` (records included): size, header, body.
    fn reference_frame(
        version: i16,
        correlation_id: i32,
        parts: &FetchResponseParts<Bytes>,
    ) -> Vec<u8> {
        let old = version < 7;
        let response = FetchResponse::default()
            .with_throttle_time_ms(parts.throttle_time_ms)
            .with_error_code(if old { 0 } else { parts.error_code })
            .with_session_id(if old { 0 } else { parts.session_id })
            .with_responses(
                parts
                    .topics
                    .iter()
                    .map(|topic| {
                        FetchableTopicResponse::default()
                            .with_topic(TopicName(topic.name.clone()))
                            .with_topic_id(uuid::Uuid::from_bytes(topic.topic_id))
                            .with_partitions(
                                topic
                                    .partitions
                                    .iter()
                                    .map(|p| {
                                        PartitionData::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(p.error_code)
                                            .with_high_watermark(p.high_watermark)
                                            .with_last_stable_offset(p.last_stable_offset)
                                            .with_log_start_offset(p.log_start_offset)
                                            .with_aborted_transactions(
                                                match p.aborted_transactions {
                                                    AbortedTransactions::Null => None,
                                                    AbortedTransactions::Empty => Some(vec![]),
                                                },
                                            )
                                            .with_preferred_read_replica(BrokerId(
                                                if version < 11 {
                                                    -1
                                                } else {
                                                    p.preferred_read_replica
                                                },
                                            ))
                                            .with_records(Some(p.records.clone()))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let mut body = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut body, FetchResponse::header_version(version))
            .unwrap();
        response.encode(&mut body, version).unwrap();
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        frame
    }

    /// Our segments, with each records range replaced by its bytes.
    fn our_frame(segments: &[FetchSegment<Bytes>]) -> Vec<u8> {
        let mut frame = Vec::new();
        for segment in segments {
            match segment {
                FetchSegment::Bytes(b) | FetchSegment::Records(b) => frame.extend_from_slice(b),
            }
        }
        frame
    }

    fn partition(index: i32, records: &[u8]) -> FetchPartitionParts<Bytes> {
        FetchPartitionParts {
            partition_index: index,
            error_code: 0,
            high_watermark: 1_000 + i64::from(index),
            last_stable_offset: 900,
            log_start_offset: 7,
            aborted_transactions: AbortedTransactions::Null,
            preferred_read_replica: -1,
            records: Bytes::copy_from_slice(records),
        }
    }

    fn sample() -> FetchResponseParts<Bytes> {
        let mut failed = partition(3, b"");
        failed.error_code = 6; // NOT_LEADER_OR_FOLLOWER
        failed.high_watermark = -1;
        let mut committed = partition(1, &[0xab; 300]);
        committed.aborted_transactions = AbortedTransactions::Empty;
        committed.preferred_read_replica = 2;
        FetchResponseParts {
            throttle_time_ms: 5,
            error_code: 0,
            session_id: 77,
            topics: vec![
                FetchTopicParts {
                    name: StrBytes::from_static_str("orders"),
                    topic_id: [1; 16],
                    partitions: vec![partition(0, &[1, 2, 3, 4, 5]), committed, failed],
                },
                FetchTopicParts {
                    name: StrBytes::from_static_str("empty-topic"),
                    topic_id: [2; 16],
                    partitions: vec![],
                },
                FetchTopicParts {
                    name: StrBytes::from_static_str("t"),
                    topic_id: [3; 16],
                    partitions: vec![partition(9, &[0x42; 200])],
                },
            ],
        }
    }

    #[test]
    fn matches_kafka_protocol_byte_for_byte() {
        for version in [4, 5, 7, 11, 12, 13, 15, 16, 18] {
            let parts = sample();
            let expected = reference_frame(version, 0x1234_5678, &parts);
            let segments = encode_fetch_response(version, 0x1234_5678, parts).unwrap();
            assert_eq!(our_frame(&segments), expected, "version {version}");
        }
    }

    #[test]
    fn records_come_as_their_own_segments_between_encoded_bytes() {
        let segments = encode_fetch_response(16, 1, sample()).unwrap();
        let kinds: Vec<&str> = segments
            .iter()
            .map(|s| match s {
                FetchSegment::Bytes(_) => "bytes",
                FetchSegment::Records(_) => "records",
            })
            .collect();
        // Three non-empty record ranges; the empty one is folded into the encoded bytes.
        assert_eq!(
            kinds,
            ["bytes", "records", "bytes", "records", "bytes", "records", "bytes"]
        );
        assert!(matches!(&segments[1], FetchSegment::Records(r) if r.as_ref() == [1, 2, 3, 4, 5]));
    }

    #[test]
    fn top_level_error_without_topics() {
        for version in [4, 7, 12, 16] {
            let parts = FetchResponseParts {
                throttle_time_ms: 0,
                error_code: 70, // FETCH_SESSION_ID_NOT_FOUND
                session_id: 0,
                topics: vec![],
            };
            let expected = reference_frame(version, -1, &parts);
            let segments = encode_fetch_response(version, -1, parts).unwrap();
            assert_eq!(segments.len(), 1);
            assert_eq!(our_frame(&segments), expected, "version {version}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_encode() {
        let empty = || FetchResponseParts::<Bytes> {
            throttle_time_ms: 0,
            error_code: 0,
            session_id: 0,
            topics: vec![],
        };
        assert_eq!(
            encode_fetch_response(3, 1, empty()),
            Err(FetchEncodeError::UnsupportedVersion(3))
        );
        assert_eq!(
            encode_fetch_response(19, 1, empty()),
            Err(FetchEncodeError::UnsupportedVersion(19))
        );
        let mut long_name = sample();
        long_name.topics[0].name = StrBytes::from_string("x".repeat(40_000));
        assert_eq!(
            encode_fetch_response(12, 1, long_name),
            Err(FetchEncodeError::TopicNameTooLong(40_000))
        );

        #[derive(Debug)]
        struct Len(usize);
        impl RecordsLen for Len {
            fn records_len(&self) -> usize {
                self.0
            }
        }
        let with_lens = |lens: &[usize]| FetchResponseParts {
            throttle_time_ms: 0,
            error_code: 0,
            session_id: 0,
            topics: vec![FetchTopicParts {
                name: StrBytes::from_static_str("t"),
                topic_id: [0; 16],
                partitions: lens
                    .iter()
                    .map(|&len| {
                        let p = partition(0, b"");
                        FetchPartitionParts {
                            partition_index: p.partition_index,
                            error_code: p.error_code,
                            high_watermark: p.high_watermark,
                            last_stable_offset: p.last_stable_offset,
                            log_start_offset: p.log_start_offset,
                            aborted_transactions: p.aborted_transactions,
                            preferred_read_replica: p.preferred_read_replica,
                            records: Len(len),
                        }
                    })
                    .collect(),
            }],
        };
        assert!(matches!(
            encode_fetch_response(16, 1, with_lens(&[1 << 31])),
            Err(FetchEncodeError::RecordsTooLarge(_))
        ));
        assert!(matches!(
            encode_fetch_response(16, 1, with_lens(&[1 << 30, 1 << 30])),
            Err(FetchEncodeError::FrameTooLarge(_))
        ));
    }

    fn arb_parts() -> impl Strategy<Value = FetchResponseParts<Bytes>> {
        let arb_partition = (
            any::<i32>(),
            any::<i16>(),
            any::<[i64; 3]>(),
            any::<bool>(),
            any::<i32>(),
            prop::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(index, error, [hw, lso, lss], empty, replica, records)| {
                FetchPartitionParts {
                    partition_index: index,
                    error_code: error,
                    high_watermark: hw,
                    last_stable_offset: lso,
                    log_start_offset: lss,
                    aborted_transactions: if empty {
                        AbortedTransactions::Empty
                    } else {
                        AbortedTransactions::Null
                    },
                    preferred_read_replica: replica,
                    records: Bytes::from(records),
                }
            });
        let arb_topic = (
            "[a-z._-]{0,200}",
            any::<[u8; 16]>(),
            prop::collection::vec(arb_partition, 0..5),
        )
            .prop_map(|(name, topic_id, partitions)| FetchTopicParts {
                name: StrBytes::from_string(name),
                topic_id,
                partitions,
            });
        (
            any::<i32>(),
            any::<i16>(),
            any::<i32>(),
            prop::collection::vec(arb_topic, 0..4),
        )
            .prop_map(|(throttle_time_ms, error_code, session_id, topics)| {
                FetchResponseParts {
                    throttle_time_ms,
                    error_code,
                    session_id,
                    topics,
                }
            })
    }

    proptest! {
        #[test]
        fn any_response_matches_kafka_protocol(
            version in FETCH_VERSIONS,
            correlation_id in any::<i32>(),
            parts in arb_parts(),
        ) {
            let expected = reference_frame(version, correlation_id, &parts);
            let segments = encode_fetch_response(version, correlation_id, parts).unwrap();
            prop_assert_eq!(our_frame(&segments), expected);
        }
    }
}
