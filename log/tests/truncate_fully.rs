//! `truncate_fully_and_start_at` (Kafka's `truncateFullyAndStartAt`): a follower behind its
//! leader's log start empties its log and restarts it at that offset. Checked live, after a
//! clean reopen, after a crash, and from every state a crash in the middle can leave.

mod common;

use std::path::Path;
use std::rc::Rc;

use bytes::BytesMut;
use common::{batch, names_with, open, read_all, run, small_segments};
use spate_core::record_batch;
use spate_log::{
    LogConfig, LogError, ManualClock, PartitionLog, HIGH_WATERMARK_FILE, LEADER_EPOCH_FILE,
    LOG_START_FILE, PRODUCER_SNAPSHOT_SUFFIX, RECOVERY_POINT_FILE,
};

fn config() -> LogConfig {
    small_segments(1_000)
}

/// A batch as a leader stored it: offsets from `base`, stamped with `epoch`.
fn leader_batch(base: i64, epoch: i32, count: usize, tag: u64) -> BytesMut {
    let mut b = batch(0, count, 50, tag);
    record_batch::set_base_offset(&mut b, base);
    record_batch::set_partition_leader_epoch(&mut b, epoch);
    b
}

/// A log of 30 batches of 2 records (offsets 0..60) over several segments, epochs 1 and 2,
/// flushed, high watermark 50.
async fn filled(dir: &Path, clock: &Rc<ManualClock>) -> Rc<PartitionLog> {
    let log = open(dir, config(), clock).await;
    for i in 0..30 {
        let epoch = if i < 15 { 1 } else { 2 };
        log.append(batch(0, 2, 100, i), epoch).await.unwrap();
    }
    log.set_high_watermark(50);
    log.flush().await.unwrap();
    assert!(log.segment_count() > 3);
    log
}

/// The log is empty at `at`, and appends (as leader and as follower) continue there.
async fn check_restarted(log: &PartitionLog, at: i64) {
    assert_eq!(log.log_start_offset(), at);
    assert_eq!(log.log_end_offset(), at);
    assert_eq!(log.high_watermark(), at);
    assert_eq!(log.recovery_point(), at);
    assert_eq!(log.latest_epoch(), None);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.size_bytes(), 0);
    assert!(log.producers().is_empty());
    assert_eq!(log.read(at, 1_000, i64::MAX, true).await.unwrap().len, 0);
    if at > 0 {
        assert!(matches!(
            log.read(at - 1, 1_000, i64::MAX, true).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
    }
}

#[test]
fn restarts_empty_at_an_offset_past_the_log_end_and_appends_continue_there() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let log = filled(dir.path(), &clock).await;
        log.truncate_fully_and_start_at(500).await.unwrap();
        check_restarted(&log, 500).await;
        assert_eq!(
            names_with(dir.path(), ".log"),
            vec!["00000000000000000500.log"]
        );
        assert!(names_with(dir.path(), ".index").is_empty());
        assert!(names_with(dir.path(), PRODUCER_SNAPSHOT_SUFFIX).is_empty());

        // A follower's fetch from the leader's log start continues the new log.
        log.append_as_follower(leader_batch(500, 7, 3, 1))
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), 503);
        assert_eq!(log.latest_epoch(), Some(7));
        assert_eq!(log.end_offset_for_epoch(7), Some((7, 503)));
        // Older epochs are gone: Kafka answers them with where the first kept one starts.
        assert_eq!(log.end_offset_for_epoch(2), Some((2, 500)));
        let info = log.append(batch(0, 2, 10, 2), 8).await.unwrap();
        assert_eq!(info.base_offset, 503);
        log.set_high_watermark(505);
        let stored = read_all(&log, 500).await;
        assert_eq!(
            stored.iter().map(|b| (b.0, b.1)).collect::<Vec<_>>(),
            vec![(500, 502), (503, 504)]
        );

        // A crash keeps it (the checkpoints were written before the new segment existed).
        let crashed = common::crash_snapshot(dir.path());
        log.close().await.unwrap();
        drop(log);
        let log = open(crashed.path(), config(), &clock).await;
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 505));
        assert_eq!(read_all(&log, 500).await, stored);
        assert_eq!(log.latest_epoch(), Some(8));

        // So does a clean close.
        let log = open(dir.path(), config(), &clock).await;
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 505));
        assert_eq!(log.high_watermark(), 505);
        assert_eq!(read_all(&log, 500).await, stored);
        assert_eq!(log.end_offset_for_epoch(7), Some((7, 503)));
    });
}

#[test]
fn restarts_below_the_log_start_and_inside_the_old_range() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let log = filled(dir.path(), &clock).await;
        log.delete_before(30).await.unwrap();
        // Below the log start (the recovery point was 60: it must come down with it).
        log.truncate_fully_and_start_at(10).await.unwrap();
        check_restarted(&log, 10).await;
        log.append(batch(0, 1, 10, 1), 3).await.unwrap();
        drop(log);
        let log = open(common::crash_snapshot(dir.path()).path(), config(), &clock).await;
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (10, 11));

        // An offset that is the base of an existing segment: the old file is not reused.
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path(), &clock).await;
        log.truncate_fully_and_start_at(0).await.unwrap();
        check_restarted(&log, 0).await;
        log.close().await.unwrap();
        let log = open(dir.path(), config(), &clock).await;
        check_restarted(&log, 0).await;
        assert!(matches!(
            log.truncate_fully_and_start_at(-1).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
    });
}

#[test]
fn truncate_to_below_the_log_start_restarts_there() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let log = filled(dir.path(), &clock).await;
        log.delete_before(40).await.unwrap();
        log.truncate_to(20).await.unwrap();
        check_restarted(&log, 20).await;
    });
}

/// Every directory a crash in the middle can leave opens as a valid log: the old log's
/// segments unlinked oldest first (a suffix remains), then with no segment and any subset
/// of the new checkpoints written, then the new segment.
#[test]
fn every_intermediate_crash_state_opens() {
    run(|| async {
        let clock = Rc::new(ManualClock::new(0));
        let before_dir = tempfile::tempdir().unwrap();
        let log = filled(before_dir.path(), &clock).await;
        let old_end = log.log_end_offset();
        let before = common::crash_snapshot(before_dir.path());
        log.truncate_fully_and_start_at(500).await.unwrap();
        let after = common::crash_snapshot(before_dir.path());
        drop(log);

        let work = tempfile::tempdir().unwrap();
        let state = |name: &str| work.path().join(name);
        let segments = names_with(before.path(), ".log");
        // Old segments removed oldest first.
        for removed in 0..=segments.len() {
            let dir = state(&format!("suffix-{removed}"));
            common::copy_dir(before.path(), &dir);
            for name in &segments[..removed] {
                let base = name.trim_end_matches(".log");
                for suffix in [".log", ".index", ".timeindex"] {
                    let _ = std::fs::remove_file(dir.join(format!("{base}{suffix}")));
                }
            }
            let log = open(&dir, config(), &clock).await;
            if removed < segments.len() {
                assert_eq!(log.log_end_offset(), old_end, "{removed} removed");
                let stored = read_all(&log, log.log_start_offset()).await;
                assert_eq!(stored.last().map(|b| b.1 + 1), Some(old_end));
            } else {
                // Nothing left: empty at the old log start.
                assert_eq!(log.log_start_offset(), log.log_end_offset());
            }
            check_usable(&log).await;
        }
        // No segment; each subset of the new checkpoints written.
        let files = [
            LEADER_EPOCH_FILE,
            RECOVERY_POINT_FILE,
            HIGH_WATERMARK_FILE,
            LOG_START_FILE,
        ];
        for subset in 0..(1 << files.len()) {
            let dir = state(&format!("checkpoints-{subset}"));
            common::copy_dir(before.path(), &dir);
            for name in names_with(&dir, "") {
                if [".log", ".index", ".timeindex", PRODUCER_SNAPSHOT_SUFFIX]
                    .iter()
                    .any(|s| name.ends_with(s))
                {
                    std::fs::remove_file(dir.join(name)).unwrap();
                }
            }
            for (i, name) in files.iter().enumerate() {
                if subset & (1 << i) != 0 {
                    std::fs::copy(after.path().join(name), dir.join(name)).unwrap();
                }
            }
            let log = open(&dir, config(), &clock).await;
            assert_eq!(log.log_start_offset(), log.log_end_offset(), "{subset}");
            if subset & (1 << 3) != 0 {
                assert_eq!(log.log_start_offset(), 500);
            }
            check_usable(&log).await;
        }
        // Done.
        let log = open(after.path(), config(), &clock).await;
        check_restarted(&log, 500).await;
    });
}

/// High watermark within the log, whole log readable, appends continue at the end.
async fn check_usable(log: &PartitionLog) {
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    assert!(start <= log.high_watermark() && log.high_watermark() <= end);
    let stored = read_all(log, start).await;
    assert_eq!(stored.last().map_or(start, |b| b.1 + 1).max(start), end);
    let info = log.append(batch(0, 1, 10, 9), 9).await.unwrap();
    assert_eq!(info.base_offset, end);
    assert_eq!(log.latest_epoch(), Some(9));
}
