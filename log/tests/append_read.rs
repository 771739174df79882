//! Appending and reading back: offsets, group commit, read limits, bad input.

mod common;

use std::rc::Rc;

use common::{batch, open, read_all, run, strip_patched};
use kafka_protocol::ResponseError;
use spate_core::record_batch;
use spate_log::{LogConfig, LogError, ManualClock};

#[test]
fn appends_get_contiguous_offsets_and_read_back_exactly() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(1_000));
        let log = open(dir.path(), LogConfig::default(), &clock).await;
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
        let mut appended = Vec::new();
        for i in 0..20u64 {
            let b = batch(1_000 + i as i64, 1 + (i as usize % 4), 50, i);
            appended.push(strip_patched(&b));
            let info = log.append(b, 3).await.unwrap();
            assert_eq!(info.base_offset, log.log_end_offset() - 1 - (i as i64 % 4));
            assert_eq!(info.last_offset, log.log_end_offset() - 1);
            assert_eq!(info.max_timestamp, 1_000 + i as i64);
        }
        let read = read_all(&log, 0).await;
        assert_eq!(read.len(), 20);
        let mut next = 0;
        for ((base, last, bytes), want) in read.iter().zip(&appended) {
            assert_eq!(*base, next);
            next = last + 1;
            assert_eq!(&strip_patched(bytes), want);
            assert_eq!(
                record_batch::BatchHeader::parse(bytes)
                    .unwrap()
                    .partition_leader_epoch,
                3
            );
        }
        assert_eq!(next, log.log_end_offset());
        assert_eq!(log.latest_epoch(), Some(3));
        assert_eq!(log.end_offset_for_epoch(3), Some((3, log.log_end_offset())));
        assert_eq!(log.max_timestamp().0, 1_019);
        log.close().await.unwrap();
    });
}

#[test]
fn concurrent_appends_are_group_committed_in_staging_order() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let config = LogConfig {
            flush_messages: Some(1),
            ..LogConfig::default()
        };
        let log = open(dir.path(), config, &clock).await;
        let tasks: Vec<_> = (0..50u64)
            .map(|i| {
                let log = log.clone();
                glommio::spawn_local(
                    async move { log.append(batch(5, 2, 10, i), 0).await.unwrap() },
                )
            })
            .collect();
        let mut infos = Vec::new();
        for t in tasks {
            infos.push(t.await);
        }
        // Tasks run in spawn order, so they stage (and get offsets) in that order.
        for (i, info) in infos.iter().enumerate() {
            assert_eq!(info.base_offset, 2 * i as i64);
        }
        assert_eq!(log.log_end_offset(), 100);
        assert_eq!(
            log.recovery_point(),
            100,
            "flush.messages=1 fsyncs before acking"
        );
        let read = read_all(&log, 0).await;
        assert_eq!(read.len(), 50);
        for (i, (_, _, bytes)) in read.iter().enumerate() {
            assert_eq!(
                strip_patched(bytes),
                strip_patched(&batch(5, 2, 10, i as u64))
            );
        }
    });
}

#[test]
fn read_respects_max_bytes_max_offset_and_min_one_batch() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let log = open(dir.path(), common::small_segments(1 << 20), &clock).await;
        let mut lens = Vec::new();
        for i in 0..10 {
            let b = batch(0, 1, 100, i);
            lens.push(b.len());
            log.append(b, 0).await.unwrap();
        }
        let one = lens[0];
        // Whole batches within max_bytes.
        let s = log.read(0, one * 3 + 10, i64::MAX, false).await.unwrap();
        assert_eq!((s.position, s.len), (0, one * 3));
        // A first batch larger than max_bytes: only with min_one_batch.
        assert_eq!(log.read(2, 10, i64::MAX, false).await.unwrap().len, 0);
        let s = log.read(2, 10, i64::MAX, true).await.unwrap();
        assert_eq!((s.position, s.len), (one as u64 * 2, one));
        // Stops below max_offset (the high watermark).
        let s = log.read(1, 1 << 20, 4, true).await.unwrap();
        assert_eq!((s.position, s.len), (one as u64, one * 3));
        assert_eq!(log.read(4, 1 << 20, 4, true).await.unwrap().len, 0);
        // At the log end: empty. Past it or below the start: out of range.
        assert_eq!(log.read(10, 1 << 20, i64::MAX, true).await.unwrap().len, 0);
        let err = log.read(11, 100, i64::MAX, true).await.unwrap_err();
        assert!(matches!(
            err,
            LogError::OffsetOutOfRange {
                offset: 11,
                log_start: 0,
                log_end: 10
            }
        ));
        assert_eq!(err.kafka_error(), ResponseError::OffsetOutOfRange);
        assert!(log.read(-1, 100, i64::MAX, true).await.is_err());
    });
}

#[test]
fn a_bad_batch_rejects_the_whole_append() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let log = open(dir.path(), LogConfig::default(), &clock).await;
        let mut two = batch(0, 1, 10, 1);
        let mut bad = batch(0, 1, 10, 2);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        two.extend_from_slice(&bad);
        let err = log.append(two, 0).await.unwrap_err();
        assert!(matches!(err, LogError::Batch(_)));
        assert_eq!(err.kafka_error(), ResponseError::CorruptMessage);
        let mut torn = batch(0, 1, 10, 3);
        torn.truncate(torn.len() - 1);
        assert!(log.append(torn, 0).await.is_err());
        assert!(log.append(bytes::BytesMut::new(), 0).await.is_err());
        assert_eq!(log.log_end_offset(), 0);
        assert_eq!(log.size_bytes(), 0);
        log.append(batch(0, 2, 10, 4), 0).await.unwrap();
        assert_eq!(log.log_end_offset(), 2);
    });
}

#[test]
fn high_watermark_is_clamped_and_survives_close() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let log = open(dir.path(), LogConfig::default(), &clock).await;
        log.append(batch(0, 5, 10, 0), 0).await.unwrap();
        log.set_high_watermark(100);
        assert_eq!(log.high_watermark(), 5);
        log.set_high_watermark(3);
        log.close().await.unwrap();
        assert!(
            log.append(batch(0, 1, 1, 0), 0).await.is_err(),
            "closed log refuses appends"
        );
        let log = open(dir.path(), LogConfig::default(), &clock).await;
        assert_eq!(log.high_watermark(), 3);
        assert_eq!(log.log_end_offset(), 5);
        log.delete().await.unwrap();
        assert!(!dir.path().exists());
    });
}

#[test]
fn concurrent_large_and_small_appends_keep_their_order() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let log = open(dir.path(), LogConfig::default(), &clock).await;
        // Sizes straddle the point where appends stop being copied together.
        let sizes = [100, 300_000, 50, 70, 400_000, 10, 262_144, 20];
        let tasks: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let log = log.clone();
                glommio::spawn_local(async move {
                    log.append(batch(0, 1, len, i as u64), 0).await.unwrap()
                })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            assert_eq!(task.await.base_offset, i as i64);
        }
        let read = read_all(&log, 0).await;
        assert_eq!(read.len(), sizes.len());
        for (i, (_, _, bytes)) in read.iter().enumerate() {
            assert_eq!(
                strip_patched(bytes),
                strip_patched(&batch(0, 1, sizes[i], i as u64))
            );
        }
        assert!(log.stats().writes < sizes.len() as u64, "{:?}", log.stats());
    });
}

#[test]
fn a_follower_append_keeps_the_leaders_offsets_and_epochs() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let leader = open(&dir.path().join("leader"), LogConfig::default(), &clock).await;
        let follower = open(&dir.path().join("follower"), LogConfig::default(), &clock).await;
        for (i, epoch) in [(0u64, 1), (1, 1), (2, 3)] {
            leader.append(batch(0, 2, 10, i), epoch).await.unwrap();
        }
        let slice = leader.read(0, 1 << 20, i64::MAX, true).await.unwrap();
        let bytes = slice.file.read_at(slice.position, slice.len).await.unwrap();
        let info = follower
            .append_as_follower(bytes::BytesMut::from(&bytes[..]))
            .await
            .unwrap();
        assert_eq!((info.base_offset, info.last_offset), (0, 5));
        assert_eq!(follower.end_offset_for_epoch(1), Some((1, 4)));
        assert_eq!(follower.latest_epoch(), Some(3));
        let copied = read_all(&follower, 0).await;
        assert_eq!(copied.concat_bytes(), bytes);
        // Not continuing the log: refused, nothing written.
        let again = follower
            .append_as_follower(bytes::BytesMut::from(&bytes[..]))
            .await;
        assert!(matches!(
            again,
            Err(LogError::OffsetOutOfRange {
                offset: 0,
                log_end: 6,
                ..
            })
        ));
        assert_eq!(follower.log_end_offset(), 6);
    });
}

trait ConcatBytes {
    fn concat_bytes(&self) -> Vec<u8>;
}

impl ConcatBytes for Vec<(i64, i64, Vec<u8>)> {
    fn concat_bytes(&self) -> Vec<u8> {
        self.iter()
            .flat_map(|(_, _, b)| b.iter().copied())
            .collect()
    }
}

#[test]
fn the_flush_policy_decides_when_appends_fsync() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let by_count = LogConfig {
            flush_messages: Some(3),
            ..LogConfig::default()
        };
        let log = open(&dir.path().join("count"), by_count, &clock).await;
        log.append(batch(0, 1, 10, 0), 0).await.unwrap();
        log.append(batch(0, 1, 10, 1), 0).await.unwrap();
        assert_eq!((log.recovery_point(), log.stats().log_syncs), (0, 0));
        log.append(batch(0, 1, 10, 2), 0).await.unwrap();
        assert_eq!((log.recovery_point(), log.stats().log_syncs), (3, 1));

        let by_time = LogConfig {
            flush_ms: Some(1_000),
            ..LogConfig::default()
        };
        let log = open(&dir.path().join("time"), by_time, &clock).await;
        log.append(batch(0, 1, 10, 0), 0).await.unwrap();
        clock.advance(999);
        log.append(batch(0, 1, 10, 1), 0).await.unwrap();
        assert_eq!(log.recovery_point(), 0);
        clock.advance(1);
        log.append(batch(0, 1, 10, 2), 0).await.unwrap();
        assert_eq!(log.recovery_point(), 3);

        let never = open(&dir.path().join("never"), LogConfig::default(), &clock).await;
        for i in 0..5 {
            never.append(batch(0, 1, 10, i), 0).await.unwrap();
        }
        assert_eq!((never.recovery_point(), never.stats().log_syncs), (0, 0));
        never.flush().await.unwrap();
        assert_eq!(never.recovery_point(), 5);
    });
}

#[test]
fn an_append_given_up_on_is_still_written_and_the_log_keeps_working() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let log = open(dir.path(), LogConfig::default(), &clock).await;
        let first = {
            let log = log.clone();
            glommio::spawn_local(async move { log.append(batch(0, 2, 10, 0), 0).await })
        };
        let second = {
            let log = log.clone();
            glommio::spawn_local(async move { log.append(batch(0, 3, 10, 1), 0).await })
        };
        // Let both stage (offsets assigned), then give up on the first, most likely while
        // it waits for the write (either way the outcome below is the same).
        glommio::executor().yield_now().await;
        let _ = first.cancel().await;
        assert_eq!(second.await.unwrap().base_offset, 2);
        assert_eq!(log.log_end_offset(), 5);
        assert_eq!(
            log.append(batch(0, 1, 10, 2), 0).await.unwrap().base_offset,
            5
        );
        let read = read_all(&log, 0).await;
        assert_eq!(read.len(), 3);
        assert_eq!(
            strip_patched(&read[0].2),
            strip_patched(&batch(0, 2, 10, 0))
        );
    });
}
