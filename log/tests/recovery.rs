//! Recovery: clean reopen reads no data; after a crash a torn or damaged tail past the
//! recovery point is cut at the last whole valid batch; damage below it fails the open.

mod common;

use std::path::{Path, PathBuf};
use std::rc::Rc;

use common::{batch, copy_dir, open, read_all, run, small_segments, strip_patched};
use spate_core::record_batch;
use spate_log::{Clock, LogConfig, LogError, ManualClock, PartitionLog, CLEAN_SHUTDOWN_FILE};

const SEGMENT_BYTES: u64 = 3_000;

fn config() -> LogConfig {
    small_segments(SEGMENT_BYTES)
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

/// A crashed log: flushed batches, then `tail` unflushed ones, all ending in one segment
/// that also holds flushed batches.
struct Crashed {
    dir: tempfile::TempDir,
    /// Stripped bytes of every appended batch, in order, with their offsets.
    batches: Vec<(i64, i64, Vec<u8>)>,
    recovery_point: i64,
    /// (position, base offset, last offset, len) of each batch in the last segment.
    last_segment: Vec<(u64, i64, i64, u64)>,
}

impl Crashed {
    async fn make(tail: usize) -> Crashed {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let log = open(dir.path(), config(), &clock).await;
        let mut batches = Vec::new();
        for i in 0..40u64 {
            if i == 40 - tail as u64 {
                log.flush().await.unwrap();
            }
            let b = batch(i as i64, 1 + i as usize % 3, 30, i);
            let stripped = strip_patched(&b);
            let info = log.append(b, 5).await.unwrap();
            batches.push((info.base_offset, info.last_offset, stripped));
        }
        let recovery_point = batches[40 - tail].0;
        assert_eq!(log.recovery_point(), recovery_point);
        let dir = common::crash_snapshot(dir.path()); // a crash: no close, no marker
        drop(log);
        let bytes = std::fs::read(last_segment(dir.path())).unwrap();
        let last_segment: Vec<_> = record_batch::split(&bytes)
            .map(|r| {
                let (pos, h, raw) = r.unwrap();
                (pos as u64, h.base_offset, h.last_offset(), raw.len() as u64)
            })
            .collect();
        assert!(
            last_segment[0].1 < recovery_point,
            "the last segment must also hold flushed batches"
        );
        Crashed {
            dir,
            batches,
            recovery_point,
            last_segment,
        }
    }

    fn tail_start(&self) -> u64 {
        self.last_segment
            .iter()
            .find(|b| b.1 >= self.recovery_point)
            .unwrap()
            .0
    }

    fn segment_len(&self) -> u64 {
        let last = self.last_segment.last().unwrap();
        last.0 + last.3
    }

    /// Log end after recovery if the last segment keeps only its first `kept` bytes intact.
    fn end_if_valid_up_to(&self, kept: u64) -> i64 {
        let whole = self.last_segment.iter().rfind(|b| b.0 + b.3 <= kept);
        whole.map_or(self.last_segment[0].1, |b| b.2 + 1)
    }
}

/// Reopens a copy of the crashed log with `damage` applied to its last segment's bytes,
/// and checks it kept exactly the batches below `want_end` and accepts appends after them.
async fn reopen_and_check(
    crashed: &Crashed,
    work: &Path,
    damage: impl FnOnce(&mut Vec<u8>),
    want_end: i64,
) {
    let _ = std::fs::remove_dir_all(work);
    copy_dir(crashed.dir.path(), work);
    let seg = last_segment(work);
    let mut bytes = std::fs::read(&seg).unwrap();
    damage(&mut bytes);
    std::fs::write(&seg, &bytes).unwrap();
    let clock = Rc::new(ManualClock::new(0));
    let log = open(work, config(), &clock).await;
    assert_eq!(log.log_end_offset(), want_end);
    assert_eq!(log.recovery_point(), want_end);
    let read = read_all(&log, 0).await;
    let want: Vec<_> = crashed.batches.iter().filter(|b| b.1 < want_end).collect();
    assert_eq!(read.len(), want.len());
    for ((base, last, bytes), (wb, wl, wbytes)) in read.iter().zip(want) {
        assert_eq!((base, last), (wb, wl));
        assert_eq!(&strip_patched(bytes), wbytes);
    }
    let info = log.append(batch(0, 2, 5, 999), 6).await.unwrap();
    assert_eq!(info.base_offset, want_end);
    let after = read_all(&log, want_end).await;
    assert_eq!(after.len(), 1);
    assert_eq!(
        strip_patched(&after[0].2),
        strip_patched(&batch(0, 2, 5, 999))
    );
}

#[test]
fn a_torn_tail_is_cut_at_every_byte_position() {
    run(|| async {
        let crashed = Crashed::make(3).await;
        let work = crashed.dir.path().with_extension("work");
        for cut in crashed.tail_start()..=crashed.segment_len() {
            let want = crashed.end_if_valid_up_to(cut);
            reopen_and_check(&crashed, &work, |b| b.truncate(cut as usize), want).await;
        }
        std::fs::remove_dir_all(&work).unwrap();
    });
}

#[test]
fn a_damaged_byte_in_the_tail_cuts_the_log_before_its_batch() {
    run(|| async {
        let crashed = Crashed::make(3).await;
        let work = crashed.dir.path().with_extension("work");
        let tail: Vec<_> = crashed
            .last_segment
            .iter()
            .filter(|b| b.1 >= crashed.recovery_point)
            .copied()
            .collect();
        for (pos, base, _, len) in tail {
            for at in pos..pos + len {
                // partitionLeaderEpoch (bytes 12..16) is outside the CRC by Kafka's design:
                // a flip there leaves a valid batch, so recovery rightly keeps it.
                if (12..16).contains(&(at - pos)) {
                    continue;
                }
                reopen_and_check(&crashed, &work, |b| b[at as usize] ^= 0x5a, base).await;
            }
        }
        std::fs::remove_dir_all(&work).unwrap();
    });
}

#[test]
fn damage_below_the_recovery_point_fails_open_with_its_place() {
    run(|| async {
        let crashed = Crashed::make(3).await;
        let flushed = crashed.last_segment[0];
        assert!(flushed.2 < crashed.recovery_point);
        let seg = last_segment(crashed.dir.path());
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[flushed.0 as usize + 40] ^= 1; // inside the CRC'd header fields
        std::fs::write(&seg, &bytes).unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let err = PartitionLog::open(crashed.dir.path(), config(), clock.clone() as Rc<dyn Clock>)
            .await
            .err()
            .expect("open must fail");
        match &err {
            LogError::Corrupt {
                file,
                position,
                reason,
            } => {
                assert_eq!(file, &seg);
                assert_eq!(*position, flushed.0);
                assert!(reason.contains("CRC"), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert_eq!(
            err.kafka_error(),
            kafka_protocol::ResponseError::KafkaStorageError
        );
        // Nothing was dropped: the file is as it was.
        assert_eq!(std::fs::read(&seg).unwrap(), bytes);

        // A file cut short below the recovery point is lost flushed data too.
        bytes[flushed.0 as usize + 40] ^= 1;
        let tail_start = crashed.tail_start() as usize;
        std::fs::write(&seg, &bytes[..tail_start - 1]).unwrap();
        let err = PartitionLog::open(crashed.dir.path(), config(), clock as Rc<dyn Clock>)
            .await
            .err()
            .expect("open must fail");
        assert!(matches!(err, LogError::Corrupt { .. }), "{err:?}");
    });
}

#[test]
fn a_clean_reopen_reads_no_log_data() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let log = open(dir.path(), config(), &clock).await;
        for i in 0..30 {
            log.append(batch(i, 2, 30, i as u64), 2).await.unwrap();
        }
        let end = log.log_end_offset();
        log.close().await.unwrap();
        assert!(dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
        // Damage a record byte of the last batch: only a scan would notice.
        let seg = last_segment(dir.path());
        let mut bytes = std::fs::read(&seg).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0xff;
        std::fs::write(&seg, &bytes).unwrap();
        let log = open(dir.path(), config(), &clock).await;
        assert_eq!(log.log_end_offset(), end);
        assert!(
            !dir.path().join(CLEAN_SHUTDOWN_FILE).exists(),
            "marker removed on open"
        );
        assert_eq!(log.latest_epoch(), Some(2));
        // A crash now is noticed: the next open scans the segment holding the recovery
        // point, and the damage lies below it (it was flushed), so opening fails.
        let dir = common::crash_snapshot(dir.path());
        drop(log);
        let seg = last_segment(dir.path());
        let err = PartitionLog::open(dir.path(), config(), clock as Rc<dyn Clock>)
            .await
            .err()
            .expect("open must fail");
        assert!(
            matches!(&err, LogError::Corrupt { file, .. } if *file == seg),
            "{err:?}"
        );
    });
}

#[test]
fn a_marker_that_disagrees_with_the_files_is_not_trusted() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let log = open(dir.path(), config(), &clock).await;
        for i in 0..5 {
            log.append(batch(i, 1, 30, i as u64), 0).await.unwrap();
        }
        log.close().await.unwrap();
        // Bytes appended after the close (say, by a process that crashed before removing
        // the marker) make the marker stale: recovery scans instead of trusting it.
        let seg = last_segment(dir.path());
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes.extend_from_slice(&[0u8; 20]);
        std::fs::write(&seg, &bytes).unwrap();
        let log = open(dir.path(), config(), &clock).await;
        assert_eq!(log.log_end_offset(), 5);
        assert_eq!(
            std::fs::metadata(&seg).unwrap().len() as usize,
            bytes.len() - 20
        );
    });
}

#[test]
fn missing_or_damaged_indexes_are_rebuilt() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let log = open(dir.path(), config(), &clock).await;
        for i in 0..60 {
            log.append(batch(1_000 + i, 1, 40, i as u64), 0)
                .await
                .unwrap();
        }
        let end = log.log_end_offset();
        log.close().await.unwrap();
        let mut indexes: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| e == "index" || e == "timeindex")
            })
            .collect();
        indexes.sort();
        let original = std::fs::read(&indexes[0]).unwrap();
        assert!(!original.is_empty());
        std::fs::remove_file(&indexes[0]).unwrap();
        std::fs::write(&indexes[2], b"garbage").unwrap();
        std::fs::write(&indexes[3], [0xffu8; 12]).unwrap();
        let log = open(dir.path(), config(), &clock).await;
        assert_eq!(log.log_end_offset(), end);
        for offset in 0..end {
            let s = log.read(offset, 1, i64::MAX, true).await.unwrap();
            let b = s.file.read_at(s.position, s.len).await.unwrap();
            assert_eq!(record_batch::validate(&b).unwrap().base_offset, offset);
        }
        assert_eq!(
            log.offset_for_timestamp(1_030).await.unwrap(),
            Some((30, 1_030))
        );
        // Sealed segments load (here: rebuild) their indexes on first use.
        assert_eq!(
            std::fs::read(&indexes[0]).unwrap(),
            original,
            "rebuilt the same"
        );
    });
}

#[test]
fn leader_epochs_survive_close_and_crash() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let log = open(dir.path(), config(), &clock).await;
        for (i, epoch) in [1, 1, 2, 4, 4].into_iter().enumerate() {
            log.append(batch(0, 2, 10, i as u64), epoch).await.unwrap();
        }
        log.close().await.unwrap();
        let text = std::fs::read_to_string(dir.path().join(spate_log::LEADER_EPOCH_FILE)).unwrap();
        assert_eq!(text, "0\n3\n1 0\n2 4\n4 6\n");
        let log = open(dir.path(), config(), &clock).await;
        assert_eq!(log.end_offset_for_epoch(2), Some((2, 6)));
        assert_eq!(log.end_offset_for_epoch(3), Some((2, 6)));
        // A new epoch appended and then a crash: the checkpoint lacks it, the scan finds it.
        log.append(batch(0, 1, 10, 9), 7).await.unwrap();
        let dir = common::crash_snapshot(dir.path());
        drop(log);
        let log = open(dir.path(), config(), &clock).await;
        assert_eq!(log.latest_epoch(), Some(7));
        assert_eq!(log.end_offset_for_epoch(4), Some((4, 10)));
    });
}
