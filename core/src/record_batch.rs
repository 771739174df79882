//! A zero-copy view over Kafka's v2 record batch (magic 2), the unit Spate stores and sends.
//!
//! The broker never decodes records: it checks a batch's framing and CRC, then assigns
//! offsets by patching `baseOffset` and `partitionLeaderEpoch` in place. Both fields sit
//! before the CRC'd region (which starts at `attributes`), so patching needs no CRC recompute.
//!
//! Layout (big-endian), as in Kafka's `DefaultRecordBatch`:
//!
//! ```text
//! 0  baseOffset: i64            8  batchLength: i32 (bytes after this field)
//! 12 partitionLeaderEpoch: i32  16 magic: i8      17 crc: u32 (CRC32C of bytes 21..)
//! 21 attributes: i16            23 lastOffsetDelta: i32
//! 27 baseTimestamp: i64         35 maxTimestamp: i64
//! 43 producerId: i64            51 producerEpoch: i16
//! 53 baseSequence: i32          57 recordCount: i32    61 records...
//! ```

use kafka_protocol::ResponseError;

/// Bytes before `batchLength` counts: `baseOffset` and `batchLength` itself.
pub const LOG_OVERHEAD: usize = 12;
/// Size of the fixed batch header, up to the first record.
pub const BATCH_HEADER_LEN: usize = 61;
/// The only record format Spate accepts.
pub const MAGIC_V2: i8 = 2;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const PARTITION_LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORD_COUNT: usize = 57;

/// Attribute bit: the batch holds transactional records.
const TRANSACTIONAL_FLAG: i16 = 0x10;
/// Attribute bit: the batch is a control batch (transaction markers).
const CONTROL_FLAG: i16 = 0x20;

/// Why a batch was refused. Each maps to the Kafka error a produce response carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch needs at least {needed} bytes, found {found}")]
    Truncated { needed: usize, found: usize },
    #[error("batchLength {0} is below the {min} byte minimum", min = BATCH_HEADER_LEN - LOG_OVERHEAD)]
    BadLength(i32),
    #[error("magic byte {0} is not 2: only v2 record batches are accepted")]
    BadMagic(i8),
    #[error("CRC32C mismatch: batch says {stored:#010x}, bytes give {computed:#010x}")]
    BadCrc { stored: u32, computed: u32 },
    #[error("record count {count} disagrees with lastOffsetDelta {last_offset_delta}")]
    BadCount { count: i32, last_offset_delta: i32 },
}

impl BatchError {
    /// The Kafka error a produce request gets for this batch, as Kafka's `LogValidator` maps it:
    /// damage to bytes is `CORRUPT_MESSAGE`, a well-formed but invalid batch is `INVALID_RECORD`.
    pub fn kafka_error(&self) -> ResponseError {
        match self {
            BatchError::Truncated { .. } | BatchError::BadLength(_) | BatchError::BadCrc { .. } => {
                ResponseError::CorruptMessage
            }
            BatchError::BadMagic(_) | BatchError::BadCount { .. } => ResponseError::InvalidRecord,
        }
    }
}

/// The fixed header fields of one batch, copied out of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Bytes the whole batch takes, header included.
    pub fn total_len(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    /// Offset of the batch's last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// Number of offsets the batch takes.
    pub fn offset_count(&self) -> i64 {
        self.last_offset_delta as i64 + 1
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_FLAG != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_FLAG != 0
    }

    /// Parses the header at the start of `buf` and checks the framing (length and magic),
    /// but not the CRC nor the record count. `buf` may extend past the batch.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < BATCH_HEADER_LEN {
            return Err(BatchError::Truncated {
                needed: BATCH_HEADER_LEN,
                found: buf.len(),
            });
        }
        let batch_length = i32_at(buf, BATCH_LENGTH);
        if batch_length < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(BatchError::BadLength(batch_length));
        }
        let magic = buf[MAGIC] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::BadMagic(magic));
        }
        Ok(BatchHeader {
            base_offset: i64_at(buf, BASE_OFFSET),
            batch_length,
            partition_leader_epoch: i32_at(buf, PARTITION_LEADER_EPOCH),
            magic,
            crc: u32::from_be_bytes(buf[CRC..CRC + 4].try_into().unwrap()),
            attributes: i16::from_be_bytes(buf[ATTRIBUTES..ATTRIBUTES + 2].try_into().unwrap()),
            last_offset_delta: i32_at(buf, LAST_OFFSET_DELTA),
            base_timestamp: i64_at(buf, BASE_TIMESTAMP),
            max_timestamp: i64_at(buf, MAX_TIMESTAMP),
            producer_id: i64_at(buf, PRODUCER_ID),
            producer_epoch: i16::from_be_bytes(
                buf[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].try_into().unwrap(),
            ),
            base_sequence: i32_at(buf, BASE_SEQUENCE),
            record_count: i32_at(buf, RECORD_COUNT),
        })
    }
}

/// Checks that `buf` holds exactly one whole, intact v2 batch: framing, magic, CRC32C over
/// `attributes..end`, and a record count that matches `lastOffsetDelta` (Kafka's rule for
/// v2: offsets in a batch are contiguous, so count = lastOffsetDelta + 1 >= 1).
pub fn validate(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    if buf.len() != header.total_len() {
        return Err(BatchError::Truncated {
            needed: header.total_len(),
            found: buf.len(),
        });
    }
    let computed = crc32c::crc32c(&buf[ATTRIBUTES..]);
    if computed != header.crc {
        return Err(BatchError::BadCrc {
            stored: header.crc,
            computed,
        });
    }
    if header.last_offset_delta < 0
        || header.record_count as i64 != header.last_offset_delta as i64 + 1
    {
        return Err(BatchError::BadCount {
            count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    Ok(header)
}

/// Writes `baseOffset` in place. Outside the CRC'd region, so the batch stays valid.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Writes `partitionLeaderEpoch` in place. Outside the CRC'd region, so the batch stays valid.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Splits a buffer of concatenated batches (a produce request's `records`, a run of a log
/// segment) into whole batches, checking only framing. Stops with an error on the first
/// batch whose framing is bad or that runs past the end of the buffer.
pub fn split(buf: &[u8]) -> Batches<'_> {
    Batches { buf, pos: 0 }
}

/// Iterator returned by [`split`]: yields `(position, header, batch bytes)`.
pub struct Batches<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<(usize, BatchHeader, &'a [u8]), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.buf[self.pos..];
        if rest.is_empty() {
            return None;
        }
        let item = BatchHeader::parse(rest).and_then(|header| {
            let len = header.total_len();
            if rest.len() < len {
                return Err(BatchError::Truncated {
                    needed: len,
                    found: rest.len(),
                });
            }
            Ok((self.pos, header, &rest[..len]))
        });
        match &item {
            Ok((_, header, _)) => self.pos += header.total_len(),
            Err(_) => self.pos = self.buf.len(),
        }
        Some(item)
    }
}

fn i32_at(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(buf[at..at + 4].try_into().unwrap())
}

fn i64_at(buf: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(buf[at..at + 8].try_into().unwrap())
}

/// Builds a valid batch of `count` records with the given payloads. Used by tests and the
/// log benchmark to make real batches without a client; the records are real v2 records
/// (varint-framed) so Kafka tools decode them.
pub fn build_batch<V: AsRef<[u8]>>(base_timestamp: i64, values: &[V]) -> Vec<u8> {
    assert!(!values.is_empty(), "a batch holds at least one record");
    let mut records = Vec::new();
    for (delta, value) in values.iter().enumerate() {
        let value = value.as_ref();
        let mut body = Vec::new();
        body.push(0u8); // record attributes
        put_varint(&mut body, 0); // timestamp delta
        put_varint(&mut body, delta as i64); // offset delta
        put_varint(&mut body, -1); // null key
        put_varint(&mut body, value.len() as i64);
        body.extend_from_slice(value);
        put_varint(&mut body, 0); // no headers
        put_varint(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    let mut batch = vec![0u8; BATCH_HEADER_LEN];
    batch.extend_from_slice(&records);
    let batch_length = (batch.len() - LOG_OVERHEAD) as i32;
    let last_offset_delta = values.len() as i32 - 1;
    batch[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&batch_length.to_be_bytes());
    batch[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4]
        .copy_from_slice(&(-1i32).to_be_bytes());
    batch[MAGIC] = MAGIC_V2 as u8;
    batch[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4]
        .copy_from_slice(&last_offset_delta.to_be_bytes());
    batch[BASE_TIMESTAMP..BASE_TIMESTAMP + 8].copy_from_slice(&base_timestamp.to_be_bytes());
    batch[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&base_timestamp.to_be_bytes());
    batch[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&(-1i64).to_be_bytes());
    batch[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&(-1i16).to_be_bytes());
    batch[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&(-1i32).to_be_bytes());
    batch[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&(values.len() as i32).to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES..]);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// Zig-zag varint, as Kafka's record fields use.
fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn built_batch_validates_and_decodes_with_kafka_protocol() {
        let batch = build_batch(1_700_000_000_000, &["a", "bc", "def"]);
        let header = validate(&batch).unwrap();
        assert_eq!(header.record_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        let mut bytes = Bytes::from(batch);
        let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
        let values: Vec<_> = set
            .records
            .iter()
            .map(|r| r.value.clone().unwrap().to_vec())
            .collect();
        assert_eq!(values, vec![b"a".to_vec(), b"bc".to_vec(), b"def".to_vec()]);
    }

    #[test]
    fn patching_offset_and_epoch_keeps_crc_valid() {
        let mut batch = build_batch(5, &[b"x".as_slice(); 10]);
        set_base_offset(&mut batch, 123_456);
        set_partition_leader_epoch(&mut batch, 7);
        let header = validate(&batch).unwrap();
        assert_eq!(header.base_offset, 123_456);
        assert_eq!(header.partition_leader_epoch, 7);
        assert_eq!(header.last_offset(), 123_465);
    }

    #[test]
    fn rejects_damage_with_the_kafka_error() {
        let good = build_batch(5, &["hello"]);
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let err = validate(&flipped).unwrap_err();
        assert!(matches!(err, BatchError::BadCrc { .. }));
        assert_eq!(err.kafka_error(), ResponseError::CorruptMessage);

        let mut magic1 = good.clone();
        magic1[MAGIC] = 1;
        let err = validate(&magic1).unwrap_err();
        assert_eq!(err, BatchError::BadMagic(1));
        assert_eq!(err.kafka_error(), ResponseError::InvalidRecord);

        let err = validate(&good[..good.len() - 1]).unwrap_err();
        assert!(matches!(err, BatchError::Truncated { .. }));

        let mut bad_count = good.clone();
        bad_count[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&2i32.to_be_bytes());
        let crc = crc32c::crc32c(&bad_count[ATTRIBUTES..]);
        bad_count[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        let err = validate(&bad_count).unwrap_err();
        assert!(matches!(err, BatchError::BadCount { count: 2, .. }));
        assert_eq!(err.kafka_error(), ResponseError::InvalidRecord);

        let mut short_len = good.clone();
        short_len[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&10i32.to_be_bytes());
        assert_eq!(validate(&short_len).unwrap_err(), BatchError::BadLength(10));
    }

    #[test]
    fn split_walks_concatenated_batches_and_stops_at_a_torn_tail() {
        let a = build_batch(1, &["a"]);
        let b = build_batch(2, &["b", "c"]);
        let mut buf = a.clone();
        buf.extend_from_slice(&b);
        let parts: Vec<_> = split(&buf).map(|r| r.unwrap()).collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].0, a.len());
        assert_eq!(parts[1].2, &b[..]);

        let torn = &buf[..buf.len() - 3];
        let results: Vec<_> = split(torn).collect();
        assert_eq!(results.len(), 2);
        assert!(results[0].is_ok());
        assert!(matches!(results[1], Err(BatchError::Truncated { .. })));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = validate(&bytes);
            for item in split(&bytes) {
                let _ = item;
            }
        }
    }
}
