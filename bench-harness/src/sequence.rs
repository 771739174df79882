//! Checks what consumers read against what producers wrote: every record carries
//! (run, producer, per-partition sequence), so within a partition each producer's records
//! must arrive as 0, 1, 2, ... Anything else is a loss, a duplicate or a reordering.

use crate::payload::Stamp;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckSummary {
    /// Records whose stamp was checked.
    pub checked: u64,
    /// Sequence numbers never seen (gaps, and records acknowledged but never read).
    pub lost: u64,
    /// Records seen a second time.
    pub duplicates: u64,
    /// Records that arrived after a later sequence number of the same stream.
    pub reordered: u64,
    /// Records without a spate-bench stamp (written by something else), not checked.
    pub foreign: u64,
}

impl CheckSummary {
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.reordered == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct StreamKey {
    run: u32,
    producer: u32,
    slot: u32,
}

#[derive(Debug, Default)]
struct Stream {
    next: u64,
    /// Missing ranges `[start, end)` by start; filled in as late records arrive.
    gaps: BTreeMap<u64, u64>,
}

#[derive(Debug)]
pub struct SequenceChecker {
    run: u32,
    /// Whether this run's streams must start at sequence 0 (the consumer started before the
    /// producers). Other runs' streams, and all streams when false, start where first seen.
    from_zero: bool,
    streams: HashMap<StreamKey, Stream>,
    summary: CheckSummary,
}

impl SequenceChecker {
    pub fn new(run: u32, from_zero: bool) -> SequenceChecker {
        SequenceChecker {
            run,
            from_zero,
            streams: HashMap::new(),
            summary: CheckSummary::default(),
        }
    }

    pub fn foreign(&mut self) {
        self.summary.foreign += 1;
    }

    pub fn observe(&mut self, slot: u32, stamp: &Stamp) {
        self.summary.checked += 1;
        let key = StreamKey {
            run: stamp.run,
            producer: stamp.producer,
            slot,
        };
        let from_zero = self.from_zero && stamp.run == self.run;
        let s = self.streams.entry(key).or_insert_with(|| Stream {
            next: if from_zero { 0 } else { stamp.sequence },
            gaps: BTreeMap::new(),
        });
        let seq = stamp.sequence;
        if seq == s.next {
            s.next += 1;
        } else if seq > s.next {
            s.gaps.insert(s.next, seq);
            s.next = seq + 1;
        } else {
            let gap = s.gaps.range(..=seq).next_back().map(|(&a, &b)| (a, b));
            match gap {
                Some((start, end)) if seq < end => {
                    self.summary.reordered += 1;
                    s.gaps.remove(&start);
                    if start < seq {
                        s.gaps.insert(start, seq);
                    }
                    if seq + 1 < end {
                        s.gaps.insert(seq + 1, end);
                    }
                }
                _ => self.summary.duplicates += 1,
            }
        }
    }

    /// Folds in another consumer's checker (consumers read disjoint partitions).
    pub fn merge(&mut self, other: SequenceChecker) {
        self.streams.extend(other.streams);
        let o = other.summary;
        self.summary.checked += o.checked;
        self.summary.duplicates += o.duplicates;
        self.summary.reordered += o.reordered;
        self.summary.foreign += o.foreign;
    }

    /// Final verdict. `written[producer][slot]` is how many records each of this run's
    /// producers wrote (and had acknowledged) per slot; records past the last one seen count
    /// as lost. Pass an empty slice when this run wrote nothing.
    pub fn finish(&self, written: &[Vec<u64>]) -> CheckSummary {
        let mut sum = self.summary.clone();
        sum.lost = self
            .streams
            .values()
            .flat_map(|s| s.gaps.iter().map(|(a, b)| b - a))
            .sum();
        for (producer, per_slot) in written.iter().enumerate() {
            for (slot, &n) in per_slot.iter().enumerate() {
                let key = StreamKey {
                    run: self.run,
                    producer: producer as u32,
                    slot: slot as u32,
                };
                let seen = self.streams.get(&key).map_or(0, |s| s.next);
                sum.lost += n.saturating_sub(seen);
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(producer: u32, sequence: u64) -> Stamp {
        Stamp {
            run: 1,
            producer,
            sequence,
            sent_ns: 0,
        }
    }

    fn feed(seqs: &[u64]) -> SequenceChecker {
        let mut c = SequenceChecker::new(1, true);
        for &s in seqs {
            c.observe(0, &stamp(0, s));
        }
        c
    }

    #[test]
    fn in_order_is_clean() {
        let c = feed(&[0, 1, 2, 3]);
        let s = c.finish(&[vec![4]]);
        assert!(s.is_clean(), "{s:?}");
        assert_eq!(s.checked, 4);
    }

    #[test]
    fn detects_gap_and_tail_loss() {
        let c = feed(&[0, 1, 4, 5]);
        assert_eq!(c.finish(&[vec![6]]).lost, 2);
        // Two more were written and acknowledged but never read.
        assert_eq!(c.finish(&[vec![8]]).lost, 4);
    }

    #[test]
    fn detects_missing_start() {
        let c = feed(&[2, 3]);
        assert_eq!(c.finish(&[vec![4]]).lost, 2);
    }

    #[test]
    fn detects_duplicates() {
        let s = feed(&[0, 1, 1, 2, 0]).finish(&[vec![3]]);
        assert_eq!((s.duplicates, s.lost, s.reordered), (2, 0, 0));
    }

    #[test]
    fn detects_reordering() {
        let s = feed(&[0, 2, 1, 3]).finish(&[vec![4]]);
        assert_eq!((s.reordered, s.lost, s.duplicates), (1, 0, 0));
        let s = feed(&[0, 4, 2, 1, 3, 5]).finish(&[vec![6]]);
        assert_eq!((s.reordered, s.lost, s.duplicates), (3, 0, 0));
        // A late record fills the middle of a gap: the rest stays lost.
        let s = feed(&[0, 5, 2]).finish(&[vec![6]]);
        assert_eq!((s.reordered, s.lost), (1, 3));
    }

    #[test]
    fn streams_are_independent() {
        let mut c = SequenceChecker::new(1, true);
        c.observe(0, &stamp(0, 0));
        c.observe(1, &stamp(0, 0));
        c.observe(0, &stamp(1, 0));
        c.observe(0, &stamp(0, 1));
        let s = c.finish(&[vec![2, 1], vec![1, 0]]);
        assert!(s.is_clean(), "{s:?}");
    }

    #[test]
    fn other_runs_start_where_first_seen() {
        let mut c = SequenceChecker::new(1, true);
        let old = Stamp {
            run: 9,
            producer: 0,
            sequence: 100,
            sent_ns: 0,
        };
        c.observe(0, &old);
        c.observe(
            0,
            &Stamp {
                sequence: 101,
                ..old
            },
        );
        assert!(c.finish(&[]).is_clean());
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = SequenceChecker::new(1, true);
        a.observe(0, &stamp(0, 0));
        a.observe(0, &stamp(0, 0));
        let mut b = SequenceChecker::new(1, true);
        b.observe(1, &stamp(0, 1));
        b.foreign();
        a.merge(b);
        let s = a.finish(&[vec![1, 2]]);
        assert_eq!((s.checked, s.duplicates, s.lost, s.foreign), (3, 1, 1, 1));
    }
}
