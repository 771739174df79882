//! Segments and indexes: rolling by size and time, lookups of every offset and by time,
//! retention, DeleteRecords and truncation.

mod common;

use std::rc::Rc;

use common::{batch, names_with, open, read_all, run, small_segments};
use spate_log::{LogConfig, LogError, ManualClock, PartitionLog};

/// The batch a 1-byte read at `offset` returns must hold `offset`.
async fn check_lookup(log: &PartitionLog, offset: i64) {
    let slice = log.read(offset, 1, i64::MAX, true).await.unwrap();
    let bytes = slice.file.read_at(slice.position, slice.len).await.unwrap();
    let header = spate_core::record_batch::validate(&bytes).unwrap();
    assert!(
        header.base_offset <= offset && offset <= header.last_offset(),
        "offset {offset} read batch {}..={}",
        header.base_offset,
        header.last_offset()
    );
}

fn files_with(dir: &std::path::Path, suffix: &str) -> Vec<(String, u64)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_str().unwrap().ends_with(suffix))
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_offset_of_a_multi_segment_log_is_found_before_and_after_reopen() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let log = open(dir.path(), small_segments(2_500), &clock).await;
        for i in 0..200u64 {
            log.append(batch(i as i64, 1 + (i as usize * 7) % 5, 30, i), 1)
                .await
                .unwrap();
        }
        let end = log.log_end_offset();
        assert!(log.segment_count() > 10, "{} segments", log.segment_count());
        for offset in 0..end {
            check_lookup(&log, offset).await;
        }
        log.close().await.unwrap();

        let logs = files_with(dir.path(), ".log");
        assert_eq!(logs.len(), files_with(dir.path(), ".index").len());
        assert_eq!(logs[0].0, "00000000000000000000.log");
        assert!(logs.iter().all(|(_, len)| *len <= 2_500));
        let indexes = files_with(dir.path(), ".index");
        assert!(indexes.iter().all(|(_, len)| len % 8 == 0));
        assert!(
            indexes.iter().any(|(_, len)| *len > 0),
            "sparse entries were written"
        );
        assert!(files_with(dir.path(), ".timeindex")
            .iter()
            .all(|(_, len)| len % 12 == 0 && *len > 0));

        let log = open(dir.path(), small_segments(2_500), &clock).await;
        assert_eq!(log.log_end_offset(), end);
        for offset in 0..end {
            check_lookup(&log, offset).await;
        }
        assert_eq!(read_all(&log, 0).await.len(), 200);
    });
}

/// Bytes of disk a file holds (`st_blocks`, which on ext4 counts delayed allocations too).
fn allocated(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn an_active_segment_reserves_disk_ahead_of_its_writes_and_frees_it_when_it_rolls() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(10_000));
        let segment_bytes = 4 << 20;
        let config = LogConfig {
            roll_ms: 1_000,
            ..small_segments(segment_bytes)
        };
        let log = open(dir.path(), config, &clock).await;
        let first = dir.path().join("00000000000000000000.log");
        // The filesystem's own blocks for a file's extent tree count too.
        let slack = 64 << 10;
        let mut most_ahead = 0;
        for i in 0..24 {
            let ts = clock_now(&clock);
            log.append(batch(ts, 100, 1_000, i), 1).await.unwrap();
            // Disk is reserved past the bytes written (the file's length), by no more than
            // as much again, and never past segment.bytes.
            let len = std::fs::metadata(&first).unwrap().len();
            let reserved = allocated(&first);
            assert!(reserved >= len, "{reserved} for {len}");
            let most = (2 * len).next_multiple_of(4096).min(segment_bytes) + slack;
            assert!(reserved <= most, "{reserved} for {len}");
            most_ahead = most_ahead.max(reserved - len);
        }
        assert_eq!(log.segment_count(), 1);
        assert!(
            most_ahead >= 1 << 20,
            "at most {most_ahead} bytes reserved ahead"
        );

        // A roll by age, short of segment.bytes: what was reserved past the end goes.
        let len = std::fs::metadata(&first).unwrap().len();
        let before = allocated(&first);
        assert!(before > len + slack, "{before} for {len}");
        clock.advance(1_001);
        log.append(batch(clock_now(&clock), 1, 10, 99), 1)
            .await
            .unwrap();
        assert_eq!(log.segment_count(), 2);
        assert_eq!(std::fs::metadata(&first).unwrap().len(), len);
        let sealed = allocated(&first);
        assert!(
            sealed <= len.next_multiple_of(4096) + slack,
            "sealed: {sealed} for {len}"
        );
        // The new segment starts with as much reserved as the old one held.
        let second = dir.path().join(&names_with(dir.path(), ".log")[1]);
        let reserved = allocated(&second);
        assert!(
            reserved >= len,
            "new segment: {reserved}, the old one held {len}"
        );
        log.close().await.unwrap();
    });
}

#[test]
fn time_lookups_find_the_first_offset_at_or_after_a_timestamp() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let log = open(dir.path(), small_segments(2_000), &clock).await;
        // Batch i has 2 records (offsets 2i, 2i+1) stamped 1000 + 10 i.
        for i in 0..100 {
            log.append(batch(1_000 + 10 * i, 2, 40, i as u64), 0)
                .await
                .unwrap();
        }
        assert!(log.segment_count() > 3);
        assert_eq!(log.offset_for_timestamp(0).await.unwrap(), Some((0, 1_000)));
        for i in 0..100i64 {
            let ts = 1_000 + 10 * i;
            assert_eq!(
                log.offset_for_timestamp(ts).await.unwrap(),
                Some((2 * i, ts))
            );
            if i > 0 {
                assert_eq!(
                    log.offset_for_timestamp(ts - 5).await.unwrap(),
                    Some((2 * i, ts))
                );
            }
        }
        assert_eq!(
            log.offset_for_timestamp(1_000 + 10 * 99 + 1).await.unwrap(),
            None
        );
        assert_eq!(log.max_timestamp(), (1_990, 199));
        log.close().await.unwrap();
        let log = open(dir.path(), small_segments(2_000), &clock).await;
        assert_eq!(
            log.offset_for_timestamp(1_505).await.unwrap(),
            Some((102, 1_510))
        );
        assert_eq!(log.max_timestamp(), (1_990, 199));
    });
}

#[test]
fn segments_roll_by_age_of_their_first_batch() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(10_000));
        let config = LogConfig {
            roll_ms: 1_000,
            ..LogConfig::default()
        };
        let log = open(dir.path(), config, &clock).await;
        log.append(batch(clock_now(&clock), 1, 10, 0), 0)
            .await
            .unwrap();
        clock.advance(1_000);
        log.append(batch(clock_now(&clock), 1, 10, 1), 0)
            .await
            .unwrap();
        assert_eq!(log.segment_count(), 1, "exactly roll_ms old: no roll yet");
        clock.advance(1);
        log.append(batch(clock_now(&clock), 1, 10, 2), 0)
            .await
            .unwrap();
        assert_eq!(log.segment_count(), 2);
        assert_eq!(read_all(&log, 0).await.len(), 3);
    });
}

fn clock_now(clock: &ManualClock) -> i64 {
    use spate_log::Clock;
    clock.now_ms()
}

#[test]
fn time_retention_deletes_old_segments_but_never_the_active_one() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(100_000));
        let config = LogConfig {
            retention_ms: 10_000,
            ..small_segments(1_000)
        };
        let log = open(dir.path(), config, &clock).await;
        for i in 0..30 {
            log.append(batch(100_000 + i * 1_000, 1, 100, i as u64), 0)
                .await
                .unwrap();
        }
        let segments = log.segment_count();
        assert!(segments > 4);
        clock.set(100_000 + 15_000);
        let deleted = log.enforce_retention().await.unwrap();
        assert!(deleted > 0 && deleted < segments);
        // Every segment left holds a timestamp within retention.ms of now.
        let start = log.log_start_offset();
        assert!(start > 0);
        assert_eq!(log.offset_for_timestamp(0).await.unwrap().unwrap().0, start);
        let (ts_start, _) = log
            .offset_for_timestamp(0)
            .await
            .unwrap()
            .map(|(o, t)| (t, o))
            .unwrap();
        assert!(
            ts_start > 115_000 - 10_000 - 5_000,
            "kept only recent-ish segments"
        );
        assert!(matches!(
            log.read(0, 100, i64::MAX, true).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
        // After a clean reopen the sealed segments' largest timestamps come from the last
        // entries of their time indexes, without loading the rest.
        log.close().await.unwrap();
        let log = open(
            dir.path(),
            LogConfig {
                retention_ms: 10_000,
                ..small_segments(1_000)
            },
            &clock,
        )
        .await;
        assert_eq!(log.log_start_offset(), start);
        // Loading time must not count as the segments' age: at 120 s the segments whose
        // batches are all older than 110 s expire.
        clock.set(120_000);
        assert!(log.enforce_retention().await.unwrap() > 0);
        let first_ts = log.offset_for_timestamp(0).await.unwrap().unwrap().1;
        assert!(first_ts > 105_000, "{first_ts}");
        clock.set(1_000_000);
        log.enforce_retention().await.unwrap();
        assert_eq!(log.segment_count(), 1, "the active segment stays");
        assert_eq!(log.log_end_offset(), 30);
        let remaining = read_all(&log, log.log_start_offset()).await;
        assert_eq!(remaining.last().unwrap().1, 29);
        let names = files_with(dir.path(), ".log");
        assert_eq!(names.len(), 1);
    });
}

#[test]
fn size_retention_keeps_the_log_under_retention_bytes() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let config = LogConfig {
            retention_bytes: 3_000,
            ..small_segments(1_000)
        };
        let log = open(dir.path(), config, &clock).await;
        for i in 0..40 {
            log.append(batch(0, 1, 100, i), 0).await.unwrap();
        }
        let before = log.size_bytes();
        assert!(before > 3_000);
        let deleted = log.enforce_retention().await.unwrap();
        assert!(deleted > 0);
        assert!(
            log.size_bytes() <= 3_000 + 1_000,
            "within one segment of the limit"
        );
        assert!(log.size_bytes() > 3_000 - 1_000);
        assert_eq!(log.enforce_retention().await.unwrap(), 0);
        let start = log.log_start_offset();
        assert_eq!(read_all(&log, start).await.first().unwrap().0, start);
    });
}

#[test]
fn delete_before_moves_the_log_start_up_to_the_high_watermark() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let log = open(dir.path(), small_segments(1_000), &clock).await;
        for i in 0..30 {
            log.append(batch(0, 2, 100, i), 0).await.unwrap();
        }
        log.set_high_watermark(40);
        assert!(matches!(
            log.delete_before(41).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
        let segments = log.segment_count();
        assert_eq!(log.delete_before(25).await.unwrap(), 25);
        assert!(log.segment_count() < segments);
        assert_eq!(log.log_start_offset(), 25);
        assert!(log.read(24, 100, i64::MAX, true).await.is_err());
        // Reading at the new start returns the batch holding it (offsets 24 and 25).
        let first = read_all(&log, 25).await;
        assert_eq!(first[0].0, 24);
        log.close().await.unwrap();
        let log = open(dir.path(), small_segments(1_000), &clock).await;
        assert_eq!(log.log_start_offset(), 25);
        assert_eq!(log.high_watermark(), 40);
    });
}

#[test]
fn truncate_to_cuts_at_a_batch_start_and_appends_continue_there() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let log = open(dir.path(), small_segments(1_000), &clock).await;
        for i in 0..30 {
            let epoch = if i < 20 { 1 } else { 2 };
            log.append(batch(i, 3, 100, i as u64), epoch).await.unwrap();
        }
        assert_eq!(log.end_offset_for_epoch(1), Some((1, 60)));
        log.set_high_watermark(90);
        // Offset 61 is inside the batch 60..=62: the log ends at 60.
        log.truncate_to(61).await.unwrap();
        assert_eq!(log.log_end_offset(), 60);
        assert_eq!(log.high_watermark(), 60);
        assert_eq!(log.latest_epoch(), Some(1));
        assert_eq!(log.end_offset_for_epoch(2), None);
        let info = log.append(batch(0, 1, 10, 99), 3).await.unwrap();
        assert_eq!(info.base_offset, 60);
        let all = read_all(&log, 0).await;
        assert_eq!(all.len(), 21);
        assert_eq!(all.last().unwrap().0, 60);
        // Survives a crash too: the lowered recovery point was checkpointed.
        let dir = common::crash_snapshot(dir.path());
        drop(log);
        let log = open(dir.path(), small_segments(1_000), &clock).await;
        assert_eq!(log.log_end_offset(), 61);
        assert_eq!(read_all(&log, 0).await.len(), 21);
        // Below the log start the log restarts empty at that offset.
        log.set_high_watermark(61);
        log.delete_before(30).await.unwrap();
        log.truncate_to(10).await.unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (10, 10));
        assert_eq!(log.segment_count(), 1);
        assert_eq!(
            log.append(batch(0, 1, 10, 1), 4).await.unwrap().base_offset,
            10
        );
    });
}
