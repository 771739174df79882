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
