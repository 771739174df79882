//! The leader-epoch cache (Kafka's `LeaderEpochFileCache`): for each leader epoch, the first
//! offset written in it. Followers use it (OffsetForLeaderEpoch) to find where their log
//! diverged from the leader's. Persisted as `leader-epoch-checkpoint` in Kafka's text
//! format: a version line `0`, a count line, then one `epoch startOffset` line per entry.

pub const FILE_NAME: &str = "leader-epoch-checkpoint";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    /// (epoch, start offset), both strictly increasing.
    entries: Vec<(i32, i64)>,
}

impl LeaderEpochCache {
    /// Records that `epoch` starts at `start_offset`, with Kafka's rules: nothing changes if
    /// the latest entry already covers it; otherwise entries that would no longer be
    /// monotonic (same or higher epoch, same or higher start) are dropped first.
    /// Returns whether the cache changed. Negative epochs (unknown) are ignored.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 {
            return false;
        }
        if let Some(&(last_epoch, last_start)) = self.entries.last() {
            if last_epoch == epoch && start_offset >= last_start {
                return false;
            }
        }
        self.entries.retain(|&(e, s)| e < epoch && s < start_offset);
        self.entries.push((epoch, start_offset));
        true
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|&(e, _)| e)
    }

    #[cfg(test)]
    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    /// Forgets epochs starting at or after `end_offset` (the log was truncated there).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|&(_, s)| s < end_offset);
        before != self.entries.len()
    }

    /// The log now starts at `start_offset`: entries before it collapse into one that starts
    /// there (the epoch in force at the new start).
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let n = self.entries.partition_point(|&(_, s)| s <= start_offset);
        if n == 0 || (n == 1 && self.entries[0].1 == start_offset) {
            return false;
        }
        let epoch = self.entries[n - 1].0;
        self.entries.drain(..n);
        self.entries.insert(0, (epoch, start_offset));
        true
    }

    /// OffsetForLeaderEpoch: the largest epoch <= `epoch` and the offset where the next
    /// higher epoch starts (the log end for the latest epoch). None is Kafka's
    /// (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET).
    pub fn end_offset_for(&self, epoch: i32, log_end: i64) -> Option<(i32, i64)> {
        if epoch < 0 {
            return None;
        }
        if self.latest_epoch() == Some(epoch) {
            return Some((epoch, log_end));
        }
        let higher = self.entries.partition_point(|&(e, _)| e <= epoch);
        let &(_, higher_start) = self.entries.get(higher)?;
        match higher {
            0 => Some((epoch, higher_start)),
            _ => Some((self.entries[higher - 1].0, higher_start)),
        }
    }

    pub fn to_checkpoint(&self) -> String {
        let mut out = format!("0\n{}\n", self.entries.len());
        for (e, s) in &self.entries {
            out.push_str(&format!("{e} {s}\n"));
        }
        out
    }

    pub fn parse_checkpoint(text: &str) -> Result<LeaderEpochCache, String> {
        let mut lines = text.lines();
        let version = lines.next().ok_or("empty file")?;
        if version.trim() != "0" {
            return Err(format!("unknown version {version:?}"));
        }
        let count: usize = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or("missing or bad count line")?;
        let mut cache = LeaderEpochCache::default();
        for i in 0..count {
            let line = lines.next().ok_or(format!("entry {i} missing"))?;
            let mut parts = line.split_whitespace();
            let (Some(e), Some(s), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("bad entry line {line:?}"));
            };
            let epoch: i32 = e.parse().map_err(|_| format!("bad epoch {e:?}"))?;
            let start: i64 = s.parse().map_err(|_| format!("bad offset {s:?}"))?;
            if let Some(&(le, ls)) = cache.entries.last() {
                if epoch <= le || start < ls {
                    return Err(format!("entry {line:?} is not after ({le}, {ls})"));
                }
            }
            cache.entries.push((epoch, start));
        }
        Ok(cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assign_and_lookup_follow_kafka() {
        let mut cache = LeaderEpochCache::default();
        assert_eq!(cache.end_offset_for(0, 10), None);
        assert!(cache.assign(1, 0));
        assert!(!cache.assign(1, 5));
        assert!(cache.assign(3, 10));
        assert!(cache.assign(5, 20));
        assert_eq!(cache.latest_epoch(), Some(5));
        assert_eq!(cache.end_offset_for(5, 30), Some((5, 30)));
        assert_eq!(cache.end_offset_for(3, 30), Some((3, 20)));
        assert_eq!(cache.end_offset_for(4, 30), Some((3, 20)));
        assert_eq!(cache.end_offset_for(0, 30), Some((0, 0)));
        assert_eq!(cache.end_offset_for(6, 30), None);
        assert_eq!(cache.end_offset_for(-1, 30), None);
        // A lower epoch at a later offset drops what it contradicts.
        assert!(cache.assign(4, 25));
        assert_eq!(cache.entries(), &[(1, 0), (3, 10), (4, 25)]);
    }

    #[test]
    fn truncation_both_ends() {
        let mut cache = LeaderEpochCache::default();
        cache.assign(1, 0);
        cache.assign(2, 10);
        cache.assign(3, 20);
        cache.truncate_from_end(20);
        assert_eq!(cache.entries(), &[(1, 0), (2, 10)]);
        cache.truncate_from_start(15);
        assert_eq!(cache.entries(), &[(2, 15)]);
        assert!(!cache.truncate_from_start(15));
    }

    #[test]
    fn checkpoint_round_trip_and_errors() {
        let mut cache = LeaderEpochCache::default();
        cache.assign(0, 0);
        cache.assign(7, 42);
        let text = cache.to_checkpoint();
        assert_eq!(text, "0\n2\n0 0\n7 42\n");
        assert_eq!(LeaderEpochCache::parse_checkpoint(&text).unwrap(), cache);
        assert!(LeaderEpochCache::parse_checkpoint("1\n0\n").is_err());
        assert!(LeaderEpochCache::parse_checkpoint("0\n2\n0 0\n").is_err());
        assert!(LeaderEpochCache::parse_checkpoint("0\n2\n3 0\n1 5\n").is_err());
    }
}
