//! Idempotent producers (Kafka's `ProducerStateManager`): for each producer id that wrote
//! to the partition, its epoch and the sequence numbers and offsets of its last five
//! batches. An append checks each batch against it, so a batch the producer retries (its
//! first attempt was written but the answer was lost) is recognized and answered with the
//! offsets it got the first time instead of being written twice, and a gap in the
//! sequence is refused rather than silently reordering the producer's records.
//!
//! Five, because a Kafka client keeps at most five requests in flight per partition with
//! idempotence on: any retry is one of the last five batches.
//!
//! The state is saved in Kafka's producer snapshot file format (`<offset>.snapshot`, see
//! [`ProducerState::to_snapshot`]) and rebuilt after a restart from the newest snapshot plus
//! the batches written after it.

use std::collections::{HashMap, VecDeque};

use spate_core::record_batch::BatchHeader;

use crate::error::LogError;

/// Batches remembered per producer (Kafka's `NUM_BATCHES_TO_RETAIN`).
pub const BATCHES_TO_RETAIN: usize = 5;
/// Kafka's `producer.id.expiration.ms` default: a producer silent for a day is forgotten.
pub const DEFAULT_PRODUCER_ID_EXPIRATION_MS: i64 = 24 * 60 * 60 * 1000;
/// "No epoch yet": a producer known only from a snapshot entry Kafka wrote for a
/// transaction marker, or never seen.
const NO_EPOCH: i16 = -1;

/// One remembered batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSequence {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    /// The batch's max timestamp.
    pub timestamp: i64,
}

/// What the log knows of one producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Oldest first, at most [`BATCHES_TO_RETAIN`].
    pub batches: VecDeque<BatchSequence>,
    /// Max timestamp of its last batch; expiry counts from here (as Kafka does).
    pub last_timestamp: i64,
}

impl ProducerEntry {
    fn new() -> ProducerEntry {
        ProducerEntry {
            epoch: NO_EPOCH,
            batches: VecDeque::new(),
            last_timestamp: -1,
        }
    }

    pub fn last_seq(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_seq)
    }

    fn find_duplicate(&self, batch: &ProducerBatch) -> Option<BatchSequence> {
        if batch.epoch != self.epoch {
            return None;
        }
        self.batches
            .iter()
            .find(|b| b.first_seq == batch.seq.first_seq && b.last_seq == batch.seq.last_seq)
            .copied()
    }

    fn push(&mut self, epoch: i16, seq: BatchSequence) {
        if epoch != self.epoch {
            // A new epoch restarts the sequence: the old batches can no longer be retried.
            self.batches.clear();
            self.epoch = epoch;
        }
        self.batches.push_back(seq);
        while self.batches.len() > BATCHES_TO_RETAIN {
            self.batches.pop_front();
        }
        self.last_timestamp = self.last_timestamp.max(seq.timestamp);
    }
}

/// The producer fields of one batch, with the offsets it is (or would be) written at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    pub seq: BatchSequence,
}

impl ProducerBatch {
    /// None for a batch without a producer id (a non-idempotent producer).
    pub fn of(header: &BatchHeader, first_offset: i64) -> Option<ProducerBatch> {
        if header.producer_id < 0 {
            return None;
        }
        Some(ProducerBatch {
            producer_id: header.producer_id,
            epoch: header.producer_epoch,
            seq: BatchSequence {
                first_seq: header.base_sequence,
                last_seq: increment_sequence(header.base_sequence, header.last_offset_delta),
                first_offset,
                last_offset: first_offset + header.last_offset_delta as i64,
                timestamp: header.max_timestamp,
            },
        })
    }
}

/// Sequence numbers wrap from i32::MAX to 0 (Kafka's `DefaultRecordBatch.incrementSequence`).
pub fn increment_sequence(seq: i32, by: i32) -> i32 {
    if seq > i32::MAX - by {
        by - (i32::MAX - seq) - 1
    } else {
        seq + by
    }
}

fn decrement_sequence(seq: i32, by: i32) -> i32 {
    if seq < by {
        i32::MAX - (by - seq) + 1
    } else {
        seq - by
    }
}

fn in_sequence(last: Option<i32>, next: i32) -> bool {
    match last {
        None => next == 0,
        Some(last) => next == increment_sequence(last, 1),
    }
}

/// What a leader append's batches amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    /// A batch is a retry of one already in the log: nothing is written, and the append is
    /// answered with that batch's offsets.
    Duplicate(BatchSequence),
    /// Every batch is next in its producer's sequence: these entries replace the current
    /// ones once the batches are staged.
    Append(Vec<(i64, ProducerEntry)>),
}

/// Every producer of one partition.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerState {
    #[cfg(test)]
    fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(&id, e)| (id, e))
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// The largest producer id seen (-1 if none).
    pub fn max_producer_id(&self) -> i64 {
        self.producers.keys().copied().max().unwrap_or(-1)
    }

    /// Checks a client's batches, in order (Kafka's `ProducerAppendInfo` for a client
    /// append). The first duplicate makes the whole append a duplicate, as in Kafka.
    pub fn check(&self, batches: &[ProducerBatch]) -> Result<Checked, LogError> {
        let mut updated: Vec<(i64, ProducerEntry)> = Vec::new();
        for batch in batches {
            let slot = match updated.iter().position(|(id, _)| *id == batch.producer_id) {
                Some(i) => i,
                None => {
                    let current = self.producers.get(&batch.producer_id);
                    if let Some(dup) = current.and_then(|e| e.find_duplicate(batch)) {
                        return Ok(Checked::Duplicate(dup));
                    }
                    let entry = current.cloned().unwrap_or_else(ProducerEntry::new);
                    updated.push((batch.producer_id, entry));
                    updated.len() - 1
                }
            };
            let entry = &mut updated[slot].1;
            check_batch(entry, batch)?;
            entry.push(batch.epoch, batch.seq);
        }
        Ok(Checked::Append(updated))
    }

    /// Installs what [`check`](Self::check) returned.
    pub fn apply(&mut self, entries: Vec<(i64, ProducerEntry)>) {
        for (id, entry) in entries {
            self.producers.insert(id, entry);
        }
    }

    /// Records a batch already in the log (recovery, a follower's append): no checks, as
    /// Kafka does for batches it did not accept itself. A batch the state already holds
    /// (a snapshot taken after it) is skipped.
    pub fn replay(&mut self, batch: &ProducerBatch) {
        let entry = self
            .producers
            .entry(batch.producer_id)
            .or_insert_with(ProducerEntry::new);
        if entry
            .batches
            .back()
            .is_some_and(|b| b.last_offset >= batch.seq.last_offset)
        {
            return;
        }
        entry.push(batch.epoch, batch.seq);
    }

    /// Forgets batches at or past `offset` (a failed write or a truncated log); a producer
    /// left with no batch is forgotten.
    pub fn truncate_from(&mut self, offset: i64) {
        self.producers.retain(|_, e| {
            e.batches.retain(|b| b.last_offset < offset);
            !e.batches.is_empty()
        });
    }

    /// Forgets producers whose last batch is below the new log start (retention,
    /// DeleteRecords), as Kafka's `onLogStartOffsetIncremented` does.
    pub fn remove_before(&mut self, log_start: i64) {
        self.producers
            .retain(|_, e| e.batches.back().is_some_and(|b| b.last_offset >= log_start));
    }

    /// Forgets producers whose last batch is at least `expiration_ms` old. Returns how many.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| now_ms - e.last_timestamp < expiration_ms);
        before - self.producers.len()
    }

    /// Kafka's producer snapshot file (version 1): `version: i16, crc: u32` (CRC32C of what
    /// follows), then an array (`i32` count) of entries `producerId: i64, epoch: i16,
    /// lastSequence: i32, lastOffset: i64, offsetDelta: i32, timestamp: i64,
    /// coordinatorEpoch: i32, currentTxnFirstOffset: i64`.
    ///
    /// Kafka writes one entry per producer (its last batch). Spate writes one per
    /// remembered batch, oldest first, so a restart keeps all five for deduplication; Kafka
    /// reading the file keeps the last entry of each producer, which is the same as its own.
    /// Batches at or past `up_to` (staged, not yet written) are left out.
    pub fn to_snapshot(&self, up_to: i64) -> Vec<u8> {
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort();
        let mut body = Vec::new();
        let mut count: i32 = 0;
        for id in ids {
            let entry = &self.producers[id];
            for b in entry.batches.iter().filter(|b| b.last_offset < up_to) {
                count += 1;
                body.extend_from_slice(&id.to_be_bytes());
                body.extend_from_slice(&entry.epoch.to_be_bytes());
                body.extend_from_slice(&b.last_seq.to_be_bytes());
                body.extend_from_slice(&b.last_offset.to_be_bytes());
                body.extend_from_slice(&((b.last_offset - b.first_offset) as i32).to_be_bytes());
                body.extend_from_slice(&b.timestamp.to_be_bytes());
                body.extend_from_slice(&(-1i32).to_be_bytes()); // no transaction coordinator
                body.extend_from_slice(&(-1i64).to_be_bytes()); // no open transaction
            }
        }
        let mut covered = count.to_be_bytes().to_vec();
        covered.extend_from_slice(&body);
        let mut out = Vec::with_capacity(6 + covered.len());
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&covered).to_be_bytes());
        out.extend_from_slice(&covered);
        out
    }

    /// Reads a snapshot file; an error says what is wrong with it.
    pub fn from_snapshot(bytes: &[u8]) -> Result<ProducerState, String> {
        let mut r = Reader { buf: bytes, pos: 0 };
        let version = r.i16()?;
        if version != SNAPSHOT_VERSION {
            return Err(format!(
                "snapshot version {version}, expected {SNAPSHOT_VERSION}"
            ));
        }
        let crc = r.i32()? as u32;
        let actual = crc32c::crc32c(&bytes[r.pos..]);
        if crc != actual {
            return Err(format!(
                "CRC mismatch: stored {crc:#x}, computed {actual:#x}"
            ));
        }
        let count = r.i32()?;
        if count < 0 || count as usize * SNAPSHOT_ENTRY_LEN != bytes.len() - r.pos {
            return Err(format!(
                "{count} entries do not fill the {} bytes left",
                bytes.len() - r.pos
            ));
        }
        let mut state = ProducerState::default();
        for _ in 0..count {
            let id = r.i64()?;
            let epoch = r.i16()?;
            let last_seq = r.i32()?;
            let last_offset = r.i64()?;
            let delta = r.i32()?;
            let timestamp = r.i64()?;
            let _coordinator_epoch = r.i32()?;
            let _txn_first_offset = r.i64()?;
            if delta < 0 || last_seq < 0 {
                return Err(format!("producer {id}: negative offset delta or sequence"));
            }
            state.replay(&ProducerBatch {
                producer_id: id,
                epoch,
                seq: BatchSequence {
                    first_seq: decrement_sequence(last_seq, delta),
                    last_seq,
                    first_offset: last_offset - delta as i64,
                    last_offset,
                    timestamp,
                },
            });
        }
        Ok(state)
    }
}

const SNAPSHOT_VERSION: i16 = 1;
const SNAPSHOT_ENTRY_LEN: usize = 8 + 2 + 4 + 8 + 4 + 8 + 4 + 8;

/// Kafka's `ProducerAppendInfo.checkProducerEpoch` and `checkSequence` for a client batch.
fn check_batch(entry: &ProducerEntry, batch: &ProducerBatch) -> Result<(), LogError> {
    let (id, epoch, first_seq) = (batch.producer_id, batch.epoch, batch.seq.first_seq);
    if epoch < entry.epoch {
        return Err(LogError::InvalidProducerEpoch {
            producer_id: id,
            epoch,
            current: entry.epoch,
        });
    }
    let out_of_order = |expected: String| LogError::OutOfOrderSequence {
        producer_id: id,
        epoch,
        sequence: first_seq,
        expected,
    };
    if epoch != entry.epoch {
        // A new epoch must start at sequence 0, unless the producer is unknown here (its
        // state expired or was never seen).
        if first_seq != 0 && entry.epoch != NO_EPOCH {
            return Err(out_of_order("0 (the first of a new epoch)".into()));
        }
    } else if !in_sequence(entry.last_seq(), first_seq) {
        let expected = match entry.last_seq() {
            Some(last) => increment_sequence(last, 1),
            None => 0,
        };
        return Err(out_of_order(expected.to_string()));
    }
    Ok(())
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let bytes = self
            .buf
            .get(self.pos..self.pos + N)
            .ok_or_else(|| format!("truncated at byte {}", self.pos))?;
        self.pos += N;
        Ok(bytes.try_into().expect("length checked"))
    }
    fn i16(&mut self) -> Result<i16, String> {
        self.take().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Result<i32, String> {
        self.take().map(i32::from_be_bytes)
    }
    fn i64(&mut self) -> Result<i64, String> {
        self.take().map(i64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(id: i64, epoch: i16, first_seq: i32, count: i32, offset: i64) -> ProducerBatch {
        ProducerBatch {
            producer_id: id,
            epoch,
            seq: BatchSequence {
                first_seq,
                last_seq: increment_sequence(first_seq, count - 1),
                first_offset: offset,
                last_offset: offset + count as i64 - 1,
                timestamp: 1_000 + offset,
            },
        }
    }

    fn append(state: &mut ProducerState, b: ProducerBatch) -> Result<Checked, LogError> {
        let checked = state.check(&[b])?;
        if let Checked::Append(entries) = &checked {
            state.apply(entries.clone());
        }
        Ok(checked)
    }

    fn is_append(r: Result<Checked, LogError>) -> bool {
        matches!(r, Ok(Checked::Append(_)))
    }

    #[test]
    fn retries_of_the_last_five_batches_are_duplicates() {
        let mut s = ProducerState::default();
        for i in 0..7 {
            assert!(is_append(append(
                &mut s,
                batch(9, 0, i * 3, 3, i as i64 * 10)
            )));
        }
        // Batches 2..=6 are remembered, with their original offsets.
        for i in 2..7 {
            let retry = batch(9, 0, i * 3, 3, 999);
            assert_eq!(
                s.check(&[retry]).unwrap(),
                Checked::Duplicate(batch(9, 0, i * 3, 3, i as i64 * 10).seq)
            );
        }
        // Older ones have been forgotten: out of order, as in Kafka.
        let old = s.check(&[batch(9, 0, 3, 3, 999)]).unwrap_err();
        assert!(matches!(old, LogError::OutOfOrderSequence { .. }), "{old}");
        assert_eq!(s.get(9).unwrap().batches.len(), BATCHES_TO_RETAIN);
    }

    #[test]
    fn a_gap_or_a_repeat_that_is_not_a_whole_batch_is_out_of_order() {
        let mut s = ProducerState::default();
        assert!(is_append(append(&mut s, batch(1, 0, 0, 2, 0))));
        for bad in [
            batch(1, 0, 3, 1, 2),
            batch(1, 0, 1, 1, 2),
            batch(1, 0, 0, 1, 2),
        ] {
            let e = s.check(&[bad]).unwrap_err();
            assert!(matches!(e, LogError::OutOfOrderSequence { .. }), "{e}");
            assert_eq!(
                e.kafka_error(),
                kafka_protocol::ResponseError::OutOfOrderSequenceNumber
            );
        }
        assert!(is_append(append(&mut s, batch(1, 0, 2, 1, 2))));
    }

    #[test]
    fn epochs_fence_old_producers_and_restart_sequences() {
        let mut s = ProducerState::default();
        assert!(is_append(append(&mut s, batch(1, 3, 0, 5, 0))));
        let old = s.check(&[batch(1, 2, 5, 1, 5)]).unwrap_err();
        assert_eq!(
            old.kafka_error(),
            kafka_protocol::ResponseError::InvalidProducerEpoch
        );
        // A new epoch starts at 0; anything else is out of order.
        let e = s.check(&[batch(1, 4, 5, 1, 5)]).unwrap_err();
        assert!(matches!(e, LogError::OutOfOrderSequence { .. }), "{e}");
        assert!(is_append(append(&mut s, batch(1, 4, 0, 1, 5))));
        assert_eq!(s.get(1).unwrap().epoch, 4);
        assert_eq!(s.get(1).unwrap().batches.len(), 1);
        // The old epoch's batch is no duplicate any more; its epoch is fenced.
        assert!(s.check(&[batch(1, 3, 0, 5, 9)]).is_err());
    }

    #[test]
    fn an_unknown_producer_may_start_at_any_sequence() {
        // Kafka (KIP-360) accepts it: its state may have expired or been deleted with the
        // log's start.
        let mut s = ProducerState::default();
        assert!(is_append(append(&mut s, batch(5, 2, 77, 1, 0))));
        assert!(is_append(append(&mut s, batch(5, 2, 78, 1, 1))));
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(decrement_sequence(1, 3), i32::MAX - 1);
        let mut s = ProducerState::default();
        assert!(is_append(append(&mut s, batch(1, 0, i32::MAX - 1, 2, 0))));
        assert_eq!(s.get(1).unwrap().last_seq(), Some(i32::MAX));
        assert!(is_append(append(&mut s, batch(1, 0, 0, 3, 2))));
        // A batch spanning the wrap.
        let mut s = ProducerState::default();
        assert!(is_append(append(&mut s, batch(1, 0, i32::MAX - 1, 4, 0))));
        assert_eq!(s.get(1).unwrap().last_seq(), Some(1));
        assert_eq!(
            s.check(&[batch(1, 0, i32::MAX - 1, 4, 50)]).unwrap(),
            Checked::Duplicate(batch(1, 0, i32::MAX - 1, 4, 0).seq)
        );
        assert!(is_append(append(&mut s, batch(1, 0, 2, 1, 4))));
    }

    #[test]
    fn several_batches_of_one_append_are_checked_in_order() {
        let s = ProducerState::default();
        let ok = s
            .check(&[
                batch(1, 0, 0, 2, 0),
                batch(1, 0, 2, 2, 2),
                batch(2, 0, 0, 1, 4),
            ])
            .unwrap();
        let Checked::Append(entries) = ok else {
            panic!("not an append")
        };
        assert_eq!(entries.len(), 2);
        assert!(s
            .check(&[batch(1, 0, 0, 2, 0), batch(1, 0, 5, 2, 2)])
            .is_err());
    }

    #[test]
    fn producers_expire_after_inactivity() {
        let mut s = ProducerState::default();
        append(&mut s, batch(1, 0, 0, 1, 0)).unwrap(); // timestamp 1_000
        append(&mut s, batch(2, 0, 0, 1, 500)).unwrap(); // timestamp 1_500
        assert_eq!(s.expire(1_999, 1_000), 0);
        assert_eq!(s.expire(2_000, 1_000), 1);
        assert!(s.get(1).is_none() && s.get(2).is_some());
        assert_eq!(s.expire(2_500, 1_000), 1);
        assert!(s.is_empty());
    }

    #[test]
    fn truncation_and_log_start_forget_batches() {
        let mut s = ProducerState::default();
        for i in 0..3 {
            append(&mut s, batch(1, 0, i, 1, i as i64)).unwrap();
        }
        append(&mut s, batch(2, 0, 0, 1, 3)).unwrap();
        s.truncate_from(2);
        assert_eq!(s.get(1).unwrap().last_seq(), Some(1));
        assert!(s.get(2).is_none());
        // The retry of the batch that was cut off is in sequence again.
        assert!(is_append(s.check(&[batch(1, 0, 2, 1, 2)])));
        s.remove_before(2);
        assert!(s.is_empty());
    }

    #[test]
    fn snapshots_round_trip_every_remembered_batch() {
        let mut s = ProducerState::default();
        for i in 0..6 {
            append(&mut s, batch(7, 1, i * 2, 2, i as i64 * 2)).unwrap();
        }
        append(&mut s, batch(3, 0, i32::MAX, 2, 12)).unwrap();
        append(&mut s, batch(4, 0, 0, 1, 14)).unwrap();
        let bytes = s.to_snapshot(15);
        assert_eq!(ProducerState::from_snapshot(&bytes).unwrap(), s);
        // Batches at or past `up_to` are not in it.
        let partial = ProducerState::from_snapshot(&s.to_snapshot(14)).unwrap();
        assert!(partial.get(4).is_none());
        assert_eq!(partial.get(7), s.get(7));
        // Damage is detected, never trusted.
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(ProducerState::from_snapshot(&bad)
            .unwrap_err()
            .contains("CRC"));
        assert!(ProducerState::from_snapshot(&bytes[..bytes.len() - 3]).is_err());
        assert!(ProducerState::from_snapshot(&[]).is_err());
    }
}
