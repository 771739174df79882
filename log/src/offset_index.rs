//! The sparse offset index of one segment (Kafka's `OffsetIndex`, `.index` files).
//!
//! Every `index.interval.bytes` of batches, one entry maps a batch's last offset to the byte
//! position where that batch starts. On disk each entry is 8 bytes, big-endian: the offset
//! relative to the segment's base offset (u32), then the position (u32). A lookup finds the
//! last entry at or below an offset; from there a short scan of batch headers finds the batch.
//! Kept in memory, growing as needed (no preallocation), and written out when the segment
//! stops being the active one and on close.

pub const ENTRY_LEN: usize = 8;

#[derive(Debug, Clone)]
pub struct OffsetIndex {
    base_offset: i64,
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    pub fn new(base_offset: i64) -> OffsetIndex {
        OffsetIndex {
            base_offset,
            entries: Vec::new(),
        }
    }

    /// Adds an entry; ignored unless it lies past the last one in both offset and position.
    pub fn append(&mut self, offset: i64, position: u32) {
        let relative = (offset - self.base_offset) as u32;
        if let Some(&(last_rel, last_pos)) = self.entries.last() {
            if relative <= last_rel || position <= last_pos {
                return;
            }
        }
        self.entries.push((relative, position));
    }

    /// The last entry whose offset is <= `offset`, or (base offset, 0) when there is none.
    /// The batch holding `offset` starts at or after the returned position.
    pub fn lookup(&self, offset: i64) -> (i64, u32) {
        let n = self
            .entries
            .partition_point(|&(rel, _)| self.base_offset + rel as i64 <= offset);
        match n {
            0 => (self.base_offset, 0),
            _ => self.absolute(self.entries[n - 1]),
        }
    }

    /// The last entry whose position is <= `position`, or (base offset, 0).
    pub fn floor_position(&self, position: u64) -> u32 {
        let n = self
            .entries
            .partition_point(|&(_, pos)| pos as u64 <= position);
        match n {
            0 => 0,
            _ => self.entries[n - 1].1,
        }
    }

    /// Drops the entries of batches at or after `position` (the log was cut there).
    pub fn truncate_to_position(&mut self, position: u64) {
        let n = self
            .entries
            .partition_point(|&(_, pos)| (pos as u64) < position);
        self.entries.truncate(n);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn absolute(&self, (rel, pos): (u32, u32)) -> (i64, u32) {
        (self.base_offset + rel as i64, pos)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * ENTRY_LEN);
        for &(rel, pos) in &self.entries {
            out.extend_from_slice(&rel.to_be_bytes());
            out.extend_from_slice(&pos.to_be_bytes());
        }
        out
    }

    /// Reads an index file's bytes, checking that it fits a segment of `log_size` bytes
    /// ending before `next_offset`. Err says why the file cannot be trusted (it is then
    /// rebuilt from the log).
    pub fn parse(
        base_offset: i64,
        bytes: &[u8],
        log_size: u64,
        next_offset: Option<i64>,
    ) -> Result<OffsetIndex, String> {
        if !bytes.len().is_multiple_of(ENTRY_LEN) {
            return Err(format!(
                "size {} is not a multiple of {ENTRY_LEN}",
                bytes.len()
            ));
        }
        let mut index = OffsetIndex::new(base_offset);
        for chunk in bytes.chunks_exact(ENTRY_LEN) {
            let rel = u32::from_be_bytes(chunk[0..4].try_into().unwrap());
            let pos = u32::from_be_bytes(chunk[4..8].try_into().unwrap());
            if let Some(&(last_rel, last_pos)) = index.entries.last() {
                if rel <= last_rel || pos <= last_pos {
                    return Err(format!(
                        "entry ({rel}, {pos}) is not past ({last_rel}, {last_pos})"
                    ));
                }
            }
            if pos as u64 >= log_size {
                return Err(format!("position {pos} is past the log's {log_size} bytes"));
            }
            if next_offset.is_some_and(|next| base_offset + rel as i64 >= next) {
                return Err(format!(
                    "offset {} is past the segment",
                    base_offset + rel as i64
                ));
            }
            index.entries.push((rel, pos));
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_floor_entry() {
        let mut index = OffsetIndex::new(100);
        assert_eq!(index.lookup(150), (100, 0));
        index.append(109, 4100);
        index.append(119, 8300);
        index.append(119, 9000); // not past the last offset: ignored
        assert_eq!(index.len(), 2);
        assert_eq!(index.lookup(108), (100, 0));
        assert_eq!(index.lookup(109), (109, 4100));
        assert_eq!(index.lookup(118), (109, 4100));
        assert_eq!(index.lookup(500), (119, 8300));
        assert_eq!(index.floor_position(8299), 4100);
        index.truncate_to_position(8300);
        assert_eq!(index.lookup(500), (109, 4100));
    }

    #[test]
    fn round_trips_and_rejects_bad_files() {
        let mut index = OffsetIndex::new(7);
        index.append(10, 5000);
        index.append(20, 9000);
        let bytes = index.to_bytes();
        assert_eq!(bytes.len(), 16);
        assert_eq!(&bytes[0..8], &[0, 0, 0, 3, 0, 0, 0x13, 0x88]);
        let back = OffsetIndex::parse(7, &bytes, 10_000, Some(30)).unwrap();
        assert_eq!(back.lookup(25), (20, 9000));
        assert!(OffsetIndex::parse(7, &bytes[..15], 10_000, None).is_err());
        assert!(OffsetIndex::parse(7, &bytes, 9_000, None).is_err());
        assert!(OffsetIndex::parse(7, &bytes, 10_000, Some(20)).is_err());
        let mut swapped = bytes[8..].to_vec();
        swapped.extend_from_slice(&bytes[..8]);
        assert!(OffsetIndex::parse(7, &swapped, 10_000, None).is_err());
    }
}
