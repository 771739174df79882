//! The sparse time index of one segment (Kafka's `TimeIndex`, `.timeindex` files).
//!
//! Entries map a timestamp to an offset: "every batch up to this offset has a max timestamp
//! <= this one". An entry is added beside each offset index entry when the segment's max
//! timestamp has grown, and once more when the segment stops being active, so the last entry
//! holds the segment's largest timestamp (what time retention looks at). On disk each entry
//! is 12 bytes, big-endian: timestamp (i64), offset relative to the base offset (u32).

pub const ENTRY_LEN: usize = 12;

#[derive(Debug, Clone)]
pub struct TimeIndex {
    base_offset: i64,
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    pub fn new(base_offset: i64) -> TimeIndex {
        TimeIndex {
            base_offset,
            entries: Vec::new(),
        }
    }

    /// Adds an entry if `timestamp` is above the last entry's (Kafka's `maybeAppend`).
    pub fn maybe_append(&mut self, timestamp: i64, offset: i64) {
        let relative = (offset - self.base_offset) as u32;
        if let Some(&(last_ts, last_rel)) = self.entries.last() {
            if timestamp <= last_ts || relative < last_rel {
                return;
            }
        }
        self.entries.push((timestamp, relative));
    }

    /// The offset of the last entry whose timestamp is strictly below `timestamp`: every
    /// record up to it is older, so a search for the first record at or after `timestamp`
    /// may start past it. The base offset when there is no such entry.
    pub fn lookup_before(&self, timestamp: i64) -> i64 {
        let n = self.entries.partition_point(|&(ts, _)| ts < timestamp);
        match n {
            0 => self.base_offset,
            _ => self.base_offset + self.entries[n - 1].1 as i64,
        }
    }

    /// (timestamp, offset) of the last entry.
    pub fn last(&self) -> Option<(i64, i64)> {
        self.entries
            .last()
            .map(|&(ts, rel)| (ts, self.base_offset + rel as i64))
    }

    /// Drops entries for offsets >= `offset` (the log was cut there).
    pub fn truncate_to_offset(&mut self, offset: i64) {
        let n = self
            .entries
            .partition_point(|&(_, rel)| self.base_offset + (rel as i64) < offset);
        self.entries.truncate(n);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * ENTRY_LEN);
        for &(ts, rel) in &self.entries {
            out.extend_from_slice(&ts.to_be_bytes());
            out.extend_from_slice(&rel.to_be_bytes());
        }
        out
    }

    /// Reads a time index file's bytes; Err says why it cannot be trusted.
    pub fn parse(
        base_offset: i64,
        bytes: &[u8],
        next_offset: Option<i64>,
    ) -> Result<TimeIndex, String> {
        if !bytes.len().is_multiple_of(ENTRY_LEN) {
            return Err(format!(
                "size {} is not a multiple of {ENTRY_LEN}",
                bytes.len()
            ));
        }
        let mut index = TimeIndex::new(base_offset);
        for chunk in bytes.chunks_exact(ENTRY_LEN) {
            let ts = i64::from_be_bytes(chunk[0..8].try_into().unwrap());
            let rel = u32::from_be_bytes(chunk[8..12].try_into().unwrap());
            if let Some(&(last_ts, last_rel)) = index.entries.last() {
                if ts <= last_ts || rel < last_rel {
                    return Err(format!(
                        "entry ({ts}, {rel}) is not past ({last_ts}, {last_rel})"
                    ));
                }
            }
            if next_offset.is_some_and(|next| base_offset + rel as i64 >= next) {
                return Err(format!(
                    "offset {} is past the segment",
                    base_offset + rel as i64
                ));
            }
            index.entries.push((ts, rel));
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_growing_timestamps_and_looks_up_strictly_before() {
        let mut index = TimeIndex::new(50);
        assert_eq!(index.lookup_before(1_000), 50);
        index.maybe_append(1_000, 59);
        index.maybe_append(900, 69); // older: ignored
        index.maybe_append(2_000, 79);
        assert_eq!(index.len(), 2);
        assert_eq!(index.lookup_before(1_000), 50);
        assert_eq!(index.lookup_before(1_001), 59);
        assert_eq!(index.lookup_before(5_000), 79);
        assert_eq!(index.last(), Some((2_000, 79)));
        index.truncate_to_offset(79);
        assert_eq!(index.last(), Some((1_000, 59)));
    }

    #[test]
    fn round_trips_and_rejects_bad_files() {
        let mut index = TimeIndex::new(10);
        index.maybe_append(5, 12);
        index.maybe_append(9, 20);
        let bytes = index.to_bytes();
        assert_eq!(bytes.len(), 24);
        let back = TimeIndex::parse(10, &bytes, Some(21)).unwrap();
        assert_eq!(back.last(), Some((9, 20)));
        assert!(TimeIndex::parse(10, &bytes[..23], None).is_err());
        assert!(TimeIndex::parse(10, &bytes, Some(20)).is_err());
    }
}
