//! Deleted segments leave in the background: renamed to `.deleted` at once, unlinked once no
//! read holds them; a crash in between leaves `.deleted` files that open removes.

mod common;

use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use common::{batch, crash_snapshot, names_with, open, read_all, run, small_segments};
use spate_log::{LogConfig, ManualClock, PartitionLog};

/// Waits until no `.deleted` file is left in `dir` (the background unlink is done). The
/// bound only keeps a broken deleter from hanging the test.
async fn deleted_files_disappear(dir: &Path) {
    for _ in 0..400 {
        if names_with(dir, ".deleted").is_empty() {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(25)).await;
    }
    panic!("still there: {:?}", names_with(dir, ".deleted"));
}

/// 40 batches of 100-byte records over 1,000-byte segments, retention 3,000 bytes.
async fn filled(dir: &Path, clock: &Rc<ManualClock>) -> Rc<PartitionLog> {
    let config = LogConfig {
        retention_bytes: 3_000,
        ..small_segments(1_000)
    };
    let log = open(dir, config, clock).await;
    for i in 0..40 {
        log.append(batch(0, 1, 100, i), 0).await.unwrap();
    }
    assert!(log.segment_count() > 5);
    log
}

#[test]
fn a_segment_being_read_stays_readable_until_the_read_is_done_then_its_files_go() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let log = filled(dir.path(), &clock).await;
        let expected = read_all(&log, 0).await;
        // The first batch only (max_bytes 1, and the first batch always).
        let slice = log.read(0, 1, i64::MAX, true).await.unwrap();
        let segments_before = log.segment_count();

        let deleted = log.enforce_retention().await.unwrap();
        assert!(deleted > 0);
        assert_eq!(log.segment_count(), segments_before - deleted);
        // The names are free at once; the files wait for the read.
        assert_eq!(names_with(dir.path(), ".log").len(), log.segment_count());
        assert!(names_with(dir.path(), ".log.deleted")
            .contains(&"00000000000000000000.log.deleted".to_string()));
        let bytes = slice.file.read_at(slice.position, slice.len).await.unwrap();
        assert_eq!(bytes, expected[0].2[..]);
        // Appends go on meanwhile.
        log.append(batch(0, 1, 100, 99), 0).await.unwrap();

        drop(slice);
        deleted_files_disappear(dir.path()).await;
        assert_eq!(names_with(dir.path(), ".log").len(), log.segment_count());
        assert_eq!(
            names_with(dir.path(), ".index").len(),
            log.segment_count() - 1,
            "sealed segments keep their index files; deleted ones lose theirs"
        );
        let start = log.log_start_offset();
        let after = read_all(&log, start).await;
        assert_eq!(after[..after.len() - 1], expected[start as usize..]);
        assert_eq!(after.last().unwrap().0, 40);
    });
}

#[test]
fn deleted_files_a_crash_left_are_removed_at_open() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let log = filled(dir.path(), &clock).await;
        let expected = read_all(&log, 0).await;
        // A read holds the oldest segment, so its files are still there, renamed.
        let slice = log.read(0, 1_000, i64::MAX, true).await.unwrap();
        log.enforce_retention().await.unwrap();
        let start = log.log_start_offset();
        let end = log.log_end_offset();
        let crashed = crash_snapshot(dir.path());
        assert!(!names_with(crashed.path(), ".deleted").is_empty());
        drop(slice);
        drop(log);

        let log = open(crashed.path(), small_segments(1_000), &clock).await;
        assert!(names_with(crashed.path(), ".deleted").is_empty());
        assert_eq!(log.log_start_offset(), start);
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(read_all(&log, start).await[..], expected[start as usize..]);
    });
}

#[test]
fn a_new_segment_at_the_base_of_one_being_deleted_survives_its_unlink() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let log = filled(dir.path(), &clock).await;
        let slice = log.read(0, 1_000, i64::MAX, true).await.unwrap();
        // Every segment goes, and a new one starts at the oldest one's base offset, 0.
        log.truncate_fully_and_start_at(0).await.unwrap();
        log.append(batch(0, 1, 100, 1_000), 0).await.unwrap();
        let new_data = read_all(&log, 0).await;
        assert_eq!(new_data.len(), 1);

        drop(slice);
        deleted_files_disappear(dir.path()).await;
        assert_eq!(names_with(dir.path(), ".log"), ["00000000000000000000.log"]);
        assert_eq!(read_all(&log, 0).await, new_data);
        log.close().await.unwrap();
        let log = open(dir.path(), small_segments(1_000), &clock).await;
        assert_eq!(read_all(&log, 0).await, new_data);
    });
}

#[test]
fn delete_records_frees_the_segments_below_the_new_log_start() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let log = open(dir.path(), small_segments(1_000), &clock).await;
        for i in 0..40 {
            log.append(batch(0, 1, 100, i), 0).await.unwrap();
        }
        log.set_high_watermark(30);
        let before = log.segment_count();
        assert_eq!(log.delete_before(30).await.unwrap(), 30);
        assert!(log.segment_count() < before);
        deleted_files_disappear(dir.path()).await;
        assert_eq!(names_with(dir.path(), ".log").len(), log.segment_count());
        // The new log start is on disk once delete_before returns: a crash reopens at it.
        let crashed = crash_snapshot(dir.path());
        drop(log);
        let log = open(crashed.path(), small_segments(1_000), &clock).await;
        assert_eq!(log.log_start_offset(), 30);
        assert_eq!(read_all(&log, 30).await.first().unwrap().0, 30);
    });
}
