//! Removing data from a log: from the front by retention (time, size) and DeleteRecords,
//! and from the end by truncation (a follower dropping what diverged from its leader, or
//! everything when it fell behind its leader's log start).
//!
//! Retention deletes whole segments only, oldest first, and never the active segment
//! (Kafka's `deleteOldSegments`). A segment removed from the map stays readable through the
//! `Rc<SegmentFile>` of any fetch still sending it; its files are renamed to `.deleted` at
//! once and unlinked in the background (see `deletion`). Appends wait only for the
//! renames: the checkpoints that follow a delete are written after the write lock is
//! released.

use std::rc::Rc;

use crate::checkpoint;
use crate::deletion::{self, Removed};
use crate::error::LogError;
use crate::leader_epoch::{self, LeaderEpochCache};
use crate::partition_log::{Checkpoint, PartitionLog, State};
use crate::recovery::sync_dir;
use crate::segment::{self, LogSegment, SegmentFile};

impl State {
    /// How many of the oldest sealed segments retention.ms / retention.bytes expire.
    fn expired_segments(&self, now: i64) -> usize {
        let sealed: Vec<&LogSegment> = self.segments.values().rev().skip(1).rev().collect();
        let mut n = 0;
        if self.config.retention_ms >= 0 {
            while n < sealed.len() && now - sealed[n].largest_timestamp() > self.config.retention_ms
            {
                n += 1;
            }
        }
        if self.config.retention_bytes >= 0 {
            let kept: u64 = sealed[..n].iter().map(|s| s.size).sum();
            let mut excess = (self.size_bytes - kept) as i64 - self.config.retention_bytes;
            while n < sealed.len() && excess - sealed[n].size as i64 >= 0 {
                excess -= sealed[n].size as i64;
                n += 1;
            }
        }
        n
    }
}

impl PartitionLog {
    /// Deletes the segments that retention.ms / retention.bytes, or a log start moved by
    /// DeleteRecords, no longer keep. Returns how many were deleted.
    pub async fn enforce_retention(&self) -> Result<usize, LogError> {
        let now = self.clock.now_ms();
        let removed = {
            let _permit = self.lock().await?;
            self.check_usable()?;
            let expired = self.state.borrow().expired_segments(now);
            let count = expired.max(self.segments_below_log_start());
            self.delete_oldest(count).await?
        };
        let count = removed.len();
        let expiration = self.producer_id_expiration_ms();
        self.state.borrow_mut().producers.expire(now, expiration);
        if count > 0 {
            deletion::unlink_later(self.dir.clone(), removed);
            self.write_start_checkpoints().await?;
        }
        Ok(count)
    }

    /// DeleteRecords: moves the log start to `offset` (at most the high watermark) and
    /// deletes the segments wholly below it. Returns the new log start.
    pub async fn delete_before(&self, offset: i64) -> Result<i64, LogError> {
        let permit = self.lock().await?;
        self.check_usable()?;
        {
            let mut st = self.state.borrow_mut();
            if offset > st.high_watermark || offset < 0 {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    log_start: st.log_start,
                    log_end: st.high_watermark,
                });
            }
            if offset <= st.log_start {
                return Ok(st.log_start);
            }
            st.log_start = offset;
            st.epochs.truncate_from_start(offset);
            st.producers.remove_before(offset);
        }
        let removed = self.delete_oldest(self.segments_below_log_start()).await?;
        drop(permit);
        deletion::unlink_later(self.dir.clone(), removed);
        self.write_start_checkpoints().await?;
        Ok(self.log_start_offset())
    }

    /// How many leading sealed segments hold only offsets below the log start.
    fn segments_below_log_start(&self) -> usize {
        let st = self.state.borrow();
        let bases: Vec<i64> = st.segments.keys().copied().collect();
        bases
            .windows(2)
            .take_while(|w| w[1] <= st.log_start)
            .count()
    }

    /// Takes the `count` oldest segments (never the active one) out of the log and renames
    /// their files to `.deleted`; the caller unlinks them (`deletion::unlink_later`) and
    /// writes the start checkpoints. Caller holds the lock.
    async fn delete_oldest(&self, count: usize) -> Result<Vec<Removed>, LogError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let removed: Vec<Removed> = {
            let mut st = self.state.borrow_mut();
            let count = count.min(st.segments.len() - 1);
            let bases: Vec<i64> = st.segments.keys().take(count).copied().collect();
            let mut removed = Vec::with_capacity(count);
            for base in bases {
                let seg = st.segments.remove(&base).expect("listed above");
                st.size_bytes -= seg.size;
                removed.push(Removed {
                    base,
                    file: seg.file,
                });
            }
            let first = *st
                .segments
                .keys()
                .next()
                .expect("the active segment remains");
            st.log_start = st.log_start.max(first);
            st.high_watermark = st.high_watermark.max(st.log_start);
            st.recovery_point = st.recovery_point.max(st.log_start);
            let start = st.log_start;
            st.epochs.truncate_from_start(start);
            st.producers.remove_before(start);
            removed
        };
        deletion::mark_deleted(&self.dir, &removed).await?;
        Ok(removed)
    }

    async fn write_start_checkpoints(&self) -> Result<(), LogError> {
        self.write_checkpoints(&[Checkpoint::LogStart, Checkpoint::LeaderEpochs])
            .await
    }

    /// Drops offsets >= `offset`. The log ends at the start of the batch holding `offset`
    /// (batches are never split). Below the log start, the log is emptied and restarts at
    /// `offset` (Kafka's `truncateFullyAndStartAt`).
    pub async fn truncate_to(&self, offset: i64) -> Result<(), LogError> {
        let _permit = self.lock().await?;
        self.write_staged().await;
        self.check_usable()?;
        let (log_start, log_end) = {
            let st = self.state.borrow();
            (st.log_start, st.log_end)
        };
        if offset >= log_end {
            return Ok(());
        }
        if offset < log_start {
            return self.truncate_fully(offset).await;
        }
        let key = self.state.borrow().floor_segment(offset);
        self.ensure_indexes(key).await?;
        let (key, file, size, hint, chunk) = {
            let st = self.state.borrow();
            let seg = &st.segments[&key];
            (
                key,
                seg.file.clone(),
                seg.size,
                seg.offset_index.lookup(offset).1 as u64,
                st.config.index_interval_bytes as usize
                    + spate_core::record_batch::BATCH_HEADER_LEN,
            )
        };
        let mut reader = segment::HeaderReader::new(&file, size, chunk);
        let (position, new_end) = match reader.find_offset(hint, offset).await? {
            Some((pos, header)) => (pos, header.base_offset),
            None => return Ok(()),
        };
        if new_end < log_start {
            // The batch holding `offset` straddles the log start: nothing at or above the
            // log start survives, so the log restarts empty there.
            return self.truncate_fully(log_start).await;
        }
        let removed: Vec<Removed> = {
            let mut st = self.state.borrow_mut();
            let bases: Vec<i64> = st.segments.range(key + 1..).map(|(&b, _)| b).collect();
            let mut removed = Vec::with_capacity(bases.len());
            for base in bases {
                let seg = st.segments.remove(&base).expect("listed above");
                st.size_bytes -= seg.size;
                removed.push(Removed {
                    base,
                    file: seg.file,
                });
            }
            let seg = st.segments.get_mut(&key).expect("found above");
            let cut = seg.size - position;
            seg.truncate_in_memory(position, new_end);
            st.size_bytes -= cut;
            st.log_end = new_end;
            st.next_offset = new_end;
            st.high_watermark = st.high_watermark.min(new_end);
            st.recovery_point = st.recovery_point.min(new_end);
            st.epochs.truncate_from_end(new_end);
            st.producers.truncate_from(new_end);
            st.generation += 1;
            removed
        };
        self.remove_snapshots_after(new_end)?;
        let result = self.cut_files(&file, position, removed).await;
        if let Err(e) = &result {
            self.state.borrow_mut().unusable = Some(format!("truncation failed: {e}"));
        }
        result
    }

    async fn cut_files(
        &self,
        file: &SegmentFile,
        position: u64,
        removed: Vec<Removed>,
    ) -> Result<(), LogError> {
        file.truncate(position).await?;
        deletion::mark_deleted(&self.dir, &removed).await?;
        deletion::unlink_later(self.dir.clone(), removed);
        // The lowered recovery point must be on disk before new appends reuse these offsets.
        self.write_checkpoints(&Checkpoint::ALL).await
    }

    /// Empties the log and restarts it at `offset` (Kafka's `truncateFullyAndStartAt`): a
    /// follower whose log end is below its leader's log start (it was away while retention
    /// or DeleteRecords removed what it would fetch next) drops everything and fetches
    /// from the leader's log start. Every segment, producer snapshot and leader epoch goes;
    /// log start, log end, high watermark and recovery point all become `offset`.
    ///
    /// Crash safety: the steps are ordered so that a crash after any of them leaves a
    /// directory that opens as a valid log: old segments are renamed to `.deleted` oldest
    /// first (a crash leaves a suffix of the old log, as retention does), then the snapshots go and
    /// the checkpoints are written for an empty log at `offset` (with no segment, open
    /// starts an empty one at the log-start checkpoint), and only then is the new segment
    /// created.
    pub async fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), LogError> {
        let _permit = self.lock().await?;
        self.write_staged().await;
        self.check_usable()?;
        if offset < 0 {
            let st = self.state.borrow();
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: st.log_start,
                log_end: st.log_end,
            });
        }
        self.truncate_fully(offset).await
    }

    /// See `truncate_fully_and_start_at`. Caller holds the write lock. A failure leaves the
    /// files and the state apart: the log is then unusable until reopened (recovery).
    async fn truncate_fully(&self, offset: i64) -> Result<(), LogError> {
        let result = self.restart_files_at(offset).await;
        if let Err(e) = &result {
            self.state.borrow_mut().unusable = Some(format!("truncation failed: {e}"));
        }
        result
    }

    async fn restart_files_at(&self, offset: i64) -> Result<(), LogError> {
        let removed: Vec<Removed> = {
            let st = self.state.borrow();
            let segments = st.segments.iter();
            segments
                .map(|(&base, seg)| Removed {
                    base,
                    file: seg.file.clone(),
                })
                .collect()
        };
        deletion::mark_deleted(&self.dir, &removed).await?;
        sync_dir(&self.dir).await?;
        // Every snapshot describes the data just removed.
        self.remove_snapshots_after(-1)?;
        // Held until the state below is swapped in, so a concurrent flush cannot write the
        // old offsets over these (an old recovery point above `offset` would fail the next
        // open).
        let _checkpoints = self.checkpoint_permit().await?;
        let empty_epochs = LeaderEpochCache::default().to_checkpoint().into_bytes();
        for (name, bytes) in [
            (leader_epoch::FILE_NAME, empty_epochs),
            (
                checkpoint::RECOVERY_POINT_FILE,
                checkpoint::offset_text(offset),
            ),
            (
                checkpoint::HIGH_WATERMARK_FILE,
                checkpoint::offset_text(offset),
            ),
            (checkpoint::LOG_START_FILE, checkpoint::offset_text(offset)),
        ] {
            checkpoint::write_atomic(&self.dir.join(name), bytes).await?;
        }
        let path = segment::file_path(&self.dir, offset, segment::LOG_SUFFIX);
        let file = Rc::new(SegmentFile::open(path, true).await?);
        sync_dir(&self.dir).await?;
        {
            let mut st = self.state.borrow_mut();
            st.segments.clear();
            st.segments
                .insert(offset, LogSegment::new(offset, file, self.clock.now_ms()));
            st.size_bytes = 0;
            st.log_start = offset;
            st.log_end = offset;
            st.next_offset = offset;
            st.high_watermark = offset;
            st.recovery_point = offset;
            st.epochs = LeaderEpochCache::default();
            st.producers = Default::default();
            st.generation += 1;
        }
        deletion::unlink_later(self.dir.clone(), removed);
        // Appends staged meanwhile took offsets of the old log.
        self.fail_staged("the log was emptied and restarted; retry");
        Ok(())
    }
}
