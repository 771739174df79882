//! Builds Kafka v2 record batches directly into one buffer (no per-record allocation), and
//! walks the records of an uncompressed batch without copying. This is the generator's hot
//! loop: at 100-byte records it runs millions of times a second.

use crate::workload::Compression;
use crate::{error::protocol, Result};
use bytes::{BufMut, Bytes, BytesMut};
use spate_core::record_batch::{BATCH_HEADER_LEN, LOG_OVERHEAD, MAGIC_V2};

/// Worst-case bytes a record adds besides its key and value: length, attributes, timestamp
/// delta, offset delta, key and value lengths and header count, each a varint.
const RECORD_OVERHEAD_MAX: usize = 5 + 1 + 1 + 5 + 5 + 5 + 1;

pub struct BatchBuilder {
    buf: Vec<u8>,
    count: u32,
    limit: usize,
}

impl BatchBuilder {
    /// A builder whose batches stay at or below `limit` bytes (unless one record is larger).
    pub fn new(limit: usize) -> BatchBuilder {
        // The buffer is allocated on first use: a run over many partitions only pays for
        // the batches it is actually filling.
        BatchBuilder {
            buf: Vec::new(),
            count: 0,
            limit,
        }
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether a record of this key and value size still fits under the limit.
    pub fn fits(&self, key_len: usize, value_len: usize) -> bool {
        self.count == 0 || self.buf.len() + key_len + value_len + RECORD_OVERHEAD_MAX <= self.limit
    }

    /// Appends one record whose value is the concatenation of `parts`.
    pub fn append(&mut self, key: Option<&[u8]>, parts: &[&[u8]]) {
        let value_len: usize = parts.iter().map(|p| p.len()).sum();
        if self.count == 0 {
            self.buf.reserve(self.limit + RECORD_OVERHEAD_MAX);
            self.buf.resize(BATCH_HEADER_LEN, 0);
        }
        let mut head = [0u8; 32];
        let mut n = 1; // byte 0 is the record's attributes, always 0
        n += put_varlong(&mut head[n..], 0); // timestamp delta: one time per batch
        n += put_varlong(&mut head[n..], self.count as i64);
        match key {
            Some(k) => n += put_varlong(&mut head[n..], k.len() as i64),
            None => n += put_varlong(&mut head[n..], -1),
        }
        let key_len = key.map_or(0, |k| k.len());
        // Body length is known once the value length's own varint size is known.
        let mut vlen = [0u8; 5];
        let vn = put_varlong(&mut vlen, value_len as i64);
        let body_len = n + key_len + vn + value_len + 1;
        let mut len = [0u8; 5];
        let ln = put_varlong(&mut len, body_len as i64);
        self.buf.extend_from_slice(&len[..ln]);
        self.buf.extend_from_slice(&head[..n]);
        if let Some(k) = key {
            self.buf.extend_from_slice(k);
        }
        self.buf.extend_from_slice(&vlen[..vn]);
        for p in parts {
            self.buf.extend_from_slice(p);
        }
        self.buf.push(0); // no headers
        self.count += 1;
    }

    /// Closes the batch (header, optional compression, CRC32C) and resets the builder.
    pub fn finish(&mut self, compression: Compression, timestamp_ms: i64) -> Result<Bytes> {
        assert!(self.count > 0, "finish called on an empty batch");
        let mut buf = std::mem::take(&mut self.buf);
        let count = std::mem::take(&mut self.count);
        let codec: i16 = match compression {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        };
        if codec != 0 {
            let compressed = compress(compression, &buf[BATCH_HEADER_LEN..])?;
            buf.truncate(BATCH_HEADER_LEN);
            buf.extend_from_slice(&compressed);
        }
        let batch_length = (buf.len() - LOG_OVERHEAD) as i32;
        let h = &mut buf[..BATCH_HEADER_LEN];
        h[0..8].copy_from_slice(&0i64.to_be_bytes()); // base offset: the broker assigns it
        h[8..12].copy_from_slice(&batch_length.to_be_bytes());
        h[12..16].copy_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
        h[16] = MAGIC_V2 as u8;
        h[21..23].copy_from_slice(&codec.to_be_bytes());
        h[23..27].copy_from_slice(&(count as i32 - 1).to_be_bytes());
        h[27..35].copy_from_slice(&timestamp_ms.to_be_bytes());
        h[35..43].copy_from_slice(&timestamp_ms.to_be_bytes());
        h[43..51].copy_from_slice(&(-1i64).to_be_bytes()); // producer id: not idempotent
        h[51..53].copy_from_slice(&(-1i16).to_be_bytes());
        h[53..57].copy_from_slice(&(-1i32).to_be_bytes());
        h[57..61].copy_from_slice(&(count as i32).to_be_bytes());
        let crc = crc32c::crc32c(&buf[21..]);
        buf[17..21].copy_from_slice(&crc.to_be_bytes());
        Ok(Bytes::from(buf))
    }
}

fn compress(compression: Compression, records: &[u8]) -> Result<BytesMut> {
    use kafka_protocol::compression::{Compressor, Gzip, Snappy};
    let mut out = BytesMut::with_capacity(records.len() / 2 + 64);
    let fill = |b: &mut BytesMut| {
        b.put_slice(records);
        Ok(())
    };
    match compression {
        Compression::None => out.put_slice(records),
        Compression::Gzip => {
            Gzip::compress(&mut out, fill).map_err(|e| protocol(format!("gzip: {e}")))?
        }
        Compression::Snappy => {
            Snappy::compress(&mut out, fill).map_err(|e| protocol(format!("snappy: {e}")))?
        }
        Compression::Lz4 | Compression::Zstd => {
            return Err(crate::Error::Workload(
                "producers.compression: lz4 and zstd are not built in; use none, gzip or snappy"
                    .into(),
            ))
        }
    }
    Ok(out)
}

/// Zigzag varint (Kafka's varlong); returns the bytes written. `out` needs 10 bytes for any
/// value, 5 for the 32-bit range used here.
fn put_varlong(out: &mut [u8], v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut i = 0;
    while z >= 0x80 {
        out[i] = (z as u8) | 0x80;
        z >>= 7;
        i += 1;
    }
    out[i] = z as u8;
    i + 1
}

fn get_varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut z: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        z |= ((b & 0x7f) as u64) << shift;
        if b < 0x80 {
            return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    None
}

/// One record of an uncompressed batch, borrowing from the batch.
#[derive(Debug, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub offset_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// Walks the records section (bytes after the 61-byte header) of an uncompressed batch.
/// Yields an error, then stops, at the first malformed record.
pub struct Records<'a> {
    buf: &'a [u8],
    pos: usize,
}

pub fn records(batch: &[u8]) -> Records<'_> {
    Records {
        buf: batch.get(BATCH_HEADER_LEN..).unwrap_or(&[]),
        pos: 0,
    }
}

impl<'a> Records<'a> {
    fn parse_one(&mut self) -> Option<RecordView<'a>> {
        let buf = self.buf;
        let len = usize::try_from(get_varlong(buf, &mut self.pos)?).ok()?;
        let end = self.pos.checked_add(len).filter(|&e| e <= buf.len())?;
        let rec = &buf[..end];
        let mut p = self.pos + 1; // attributes
        get_varlong(rec, &mut p)?; // timestamp delta
        let offset_delta = get_varlong(rec, &mut p)?;
        let bytes_field = |p: &mut usize| -> Option<Option<&'a [u8]>> {
            let n = get_varlong(rec, p)?;
            if n < 0 {
                return Some(None);
            }
            let e = p.checked_add(n as usize).filter(|&e| e <= end)?;
            let s = &buf[*p..e];
            *p = e;
            Some(Some(s))
        };
        let key = bytes_field(&mut p)?;
        let value = bytes_field(&mut p)?;
        self.pos = end; // headers are skipped
        Some(RecordView {
            offset_delta,
            key,
            value,
        })
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordView<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        match self.parse_one() {
            Some(r) => Some(Ok(r)),
            None => {
                self.pos = self.buf.len();
                Some(Err(protocol("malformed record in batch")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            -300,
            i32::MAX as i64,
            i32::MIN as i64,
        ] {
            let mut out = [0u8; 10];
            let n = put_varlong(&mut out, v);
            let mut pos = 0;
            assert_eq!(get_varlong(&out[..n], &mut pos), Some(v));
            assert_eq!(pos, n);
        }
    }

    #[test]
    fn walks_own_records() {
        let mut b = BatchBuilder::new(4096);
        b.append(None, &[b"hello", b" world"]);
        b.append(Some(b"k1"), &[b"v"]);
        let batch = b.finish(Compression::None, 1000).unwrap();
        let recs: Vec<_> = records(&batch).map(|r| r.unwrap()).collect();
        assert_eq!(
            recs,
            vec![
                RecordView {
                    offset_delta: 0,
                    key: None,
                    value: Some(b"hello world")
                },
                RecordView {
                    offset_delta: 1,
                    key: Some(b"k1"),
                    value: Some(b"v")
                },
            ]
        );
        assert!(b.is_empty());
    }

    #[test]
    fn truncated_record_is_an_error() {
        let mut b = BatchBuilder::new(4096);
        b.append(None, &[b"hello"]);
        let batch = b.finish(Compression::None, 0).unwrap();
        let cut = &batch[..batch.len() - 3];
        let out: Vec<_> = records(cut).collect();
        assert_eq!(out.len(), 1);
        assert!(out[0].is_err());
    }
}
