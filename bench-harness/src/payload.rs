//! The stamp at the front of every record value, so consumers can check order and loss and
//! measure end-to-end latency without any side channel:
//!
//! ```text
//! 0 magic u32 "SPB1"   4 run id u32   8 producer u32   12 sequence u64   20 intended send ns u64
//! ```
//!
//! The sequence counts per (producer, partition) from 0. The send time is the *intended*
//! time (open-loop schedule), in nanoseconds since the process's clock origin, so it only
//! means something to consumers in the same process (end-to-end and catch-up runs).

use std::sync::OnceLock;
use std::time::Instant;

pub const MAGIC: u32 = u32::from_be_bytes(*b"SPB1");
pub const HEADER_LEN: usize = 28;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub run: u32,
    pub producer: u32,
    pub sequence: u64,
    pub sent_ns: u64,
}

impl Stamp {
    pub fn write(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        out[4..8].copy_from_slice(&self.run.to_be_bytes());
        out[8..12].copy_from_slice(&self.producer.to_be_bytes());
        out[12..20].copy_from_slice(&self.sequence.to_be_bytes());
        out[20..28].copy_from_slice(&self.sent_ns.to_be_bytes());
    }

    /// `None` for values that were not written by spate-bench.
    pub fn read(value: &[u8]) -> Option<Stamp> {
        if value.len() < HEADER_LEN || value[0..4] != MAGIC.to_be_bytes() {
            return None;
        }
        let u32_at = |i: usize| u32::from_be_bytes(value[i..i + 4].try_into().unwrap());
        let u64_at = |i: usize| u64::from_be_bytes(value[i..i + 8].try_into().unwrap());
        Some(Stamp {
            run: u32_at(4),
            producer: u32_at(8),
            sequence: u64_at(12),
            sent_ns: u64_at(20),
        })
    }
}

/// Nanoseconds since this process's clock origin (monotonic).
pub fn now_ns() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = Stamp {
            run: 7,
            producer: 3,
            sequence: 1 << 40,
            sent_ns: 123_456_789,
        };
        let mut buf = [0u8; 40];
        s.write(&mut buf);
        assert_eq!(Stamp::read(&buf), Some(s));
        assert_eq!(Stamp::read(&buf[..27]), None);
        buf[0] = b'X';
        assert_eq!(Stamp::read(&buf), None);
    }
}
