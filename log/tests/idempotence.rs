//! Idempotent producers through the log: a retried batch is answered with its original
//! offsets and not written again; sequence gaps and fenced epochs are refused; the state
//! survives a clean restart, a crash, and expiry forgets silent producers.

mod common;

use std::rc::Rc;

use bytes::BytesMut;
use common::{names_with, open, run, small_segments};
use kafka_protocol::ResponseError;
use spate_core::record_batch;
use spate_log::{LogConfig, LogError, ManualClock, PRODUCER_SNAPSHOT_SUFFIX};

const NOW: i64 = 1_700_000_000_000;

/// A batch of `count` records from producer `id` at `epoch`, starting at sequence `seq`.
fn producer_batch(id: i64, epoch: i16, seq: i32, count: usize) -> BytesMut {
    let values: Vec<String> = (0..count).map(|i| format!("{id}-{seq}-{i}")).collect();
    let mut b = record_batch::build_batch(NOW, &values);
    b[43..51].copy_from_slice(&id.to_be_bytes());
    b[51..53].copy_from_slice(&epoch.to_be_bytes());
    b[53..57].copy_from_slice(&seq.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    BytesMut::from(&b[..])
}

fn with_attributes(mut b: BytesMut, attributes: i16) -> BytesMut {
    b[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

fn code(e: LogError) -> ResponseError {
    e.kafka_error()
}

#[test]
fn a_retried_batch_gets_its_original_offsets_and_is_not_written_again() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(NOW));
        let log = open(dir.path(), LogConfig::default(), &clock).await;
        log.append(common::batch(NOW, 2, 10, 0), 0).await.unwrap();
        let first = log.append(producer_batch(7, 0, 0, 3), 0).await.unwrap();
        let second = log.append(producer_batch(7, 0, 3, 2), 0).await.unwrap();
        assert_eq!((first.base_offset, first.last_offset), (2, 4));
        assert!(!first.duplicate);
        let end = log.log_end_offset();
        let size = log.size_bytes();
        for (seq, count, want) in [(0, 3, first), (3, 2, second)] {
            let retry = log
                .append(producer_batch(7, 0, seq, count), 0)
                .await
                .unwrap();
            assert!(retry.duplicate);
            assert_eq!(
                (retry.base_offset, retry.last_offset),
                (want.base_offset, want.last_offset)
            );
        }
        assert_eq!((log.log_end_offset(), log.size_bytes()), (end, size));
        // A gap, an old epoch, and a new epoch not starting at 0 are refused.
        let gap = log.append(producer_batch(7, 0, 9, 1), 0).await.unwrap_err();
        assert_eq!(code(gap), ResponseError::OutOfOrderSequenceNumber);
        let bad_new_epoch = log.append(producer_batch(7, 1, 5, 1), 0).await.unwrap_err();
        assert_eq!(code(bad_new_epoch), ResponseError::OutOfOrderSequenceNumber);
        log.append(producer_batch(7, 1, 0, 1), 0).await.unwrap();
        let old = log.append(producer_batch(7, 0, 5, 1), 0).await.unwrap_err();
        assert_eq!(code(old), ResponseError::InvalidProducerEpoch);
        assert_eq!(log.log_end_offset(), end + 1);
        let producers = log.producers();
        assert_eq!(producers.len(), 1);
        assert_eq!(
            (
                producers[0].producer_id,
                producers[0].epoch,
                producers[0].last_sequence
            ),
            (7, 1, 0)
        );
        assert_eq!(log.max_producer_id(), 7);
        log.close().await.unwrap();
    });
}

#[test]
fn transactional_and_control_batches_are_refused() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(NOW));
        let log = open(dir.path(), LogConfig::default(), &clock).await;
        let txn = with_attributes(producer_batch(3, 0, 0, 1), 0x10);
        assert_eq!(
            code(log.append(txn, 0).await.unwrap_err()),
            ResponseError::InvalidTxnState
        );
        let control = with_attributes(producer_batch(3, 0, 0, 1), 0x30);
        assert_eq!(
            code(log.append(control, 0).await.unwrap_err()),
            ResponseError::InvalidRecord
        );
        assert_eq!(log.log_end_offset(), 0);
        log.close().await.unwrap();
    });
}

#[test]
fn concurrent_retries_of_a_staged_batch_wait_for_its_write() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(NOW));
        let log = open(dir.path(), LogConfig::default(), &clock).await;
        let original = glommio::spawn_local({
            let log = log.clone();
            async move { log.append(producer_batch(1, 0, 0, 4), 0).await.unwrap() }
        });
        let retry = glommio::spawn_local({
            let log = log.clone();
            async move {
                let info = log.append(producer_batch(1, 0, 0, 4), 0).await.unwrap();
                // Answered only once the original is readable.
                assert!(log.log_end_offset() > info.last_offset);
                info
            }
        });
        let (original, retry) = (original.await, retry.await);
        assert!(retry.duplicate && !original.duplicate);
        assert_eq!(retry.base_offset, original.base_offset);
        assert_eq!(log.log_end_offset(), 4);
        log.close().await.unwrap();
    });
}

fn snapshots(dir: &std::path::Path) -> Vec<String> {
    names_with(dir, PRODUCER_SNAPSHOT_SUFFIX)
}

#[test]
fn producer_state_survives_a_clean_restart() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(NOW));
        let log = open(dir.path(), small_segments(2_000), &clock).await;
        let mut infos = Vec::new();
        for i in 0..20 {
            infos.push(
                log.append(producer_batch(11, 2, i * 2, 2), 0)
                    .await
                    .unwrap(),
            );
        }
        log.close().await.unwrap();
        assert_eq!(snapshots(dir.path()), vec![format!("{:020}.snapshot", 40)]);
        let log = open(dir.path(), small_segments(2_000), &clock).await;
        // Every one of the last five batches is still recognized.
        for i in 15..20 {
            let retry = log
                .append(producer_batch(11, 2, i * 2, 2), 0)
                .await
                .unwrap();
            assert!(retry.duplicate);
            assert_eq!(retry.base_offset, infos[i as usize].base_offset);
        }
        let next = log.append(producer_batch(11, 2, 40, 1), 0).await.unwrap();
        assert_eq!((next.base_offset, next.duplicate), (40, false));
        log.close().await.unwrap();
    });
}

#[test]
fn producer_state_is_rebuilt_after_a_crash_from_the_snapshot_and_the_log_after_it() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(NOW));
        let log = open(dir.path(), small_segments(2_000), &clock).await;
        for i in 0..10 {
            log.append(producer_batch(5, 0, i, 1), 0).await.unwrap();
        }
        log.flush().await.unwrap(); // snapshot at 10
        assert_eq!(snapshots(dir.path()), vec![format!("{:020}.snapshot", 10)]);
        for i in 10..30 {
            log.append(producer_batch(5, 0, i, 1), 0).await.unwrap();
        }
        log.append(producer_batch(6, 3, 100, 2), 0).await.unwrap();
        let crashed = common::crash_snapshot(dir.path());
        let log = open(crashed.path(), small_segments(2_000), &clock).await;
        assert_eq!(log.log_end_offset(), 32);
        let retry = log.append(producer_batch(5, 0, 29, 1), 0).await.unwrap();
        assert_eq!((retry.duplicate, retry.base_offset), (true, 29));
        let retry = log.append(producer_batch(6, 3, 100, 2), 0).await.unwrap();
        assert_eq!((retry.duplicate, retry.base_offset), (true, 30));
        let gap = log
            .append(producer_batch(5, 0, 31, 1), 0)
            .await
            .unwrap_err();
        assert_eq!(code(gap), ResponseError::OutOfOrderSequenceNumber);
        log.append(producer_batch(5, 0, 30, 1), 0).await.unwrap();
        log.close().await.unwrap();
    });
}

#[test]
fn a_damaged_snapshot_is_dropped_and_the_state_rebuilt_from_the_segments() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(NOW));
        let log = open(dir.path(), LogConfig::default(), &clock).await;
        for i in 0..3 {
            log.append(producer_batch(8, 0, i, 1), 0).await.unwrap();
        }
        log.close().await.unwrap();
        let path = dir.path().join(format!("{:020}.snapshot", 3));
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let log = open(dir.path(), LogConfig::default(), &clock).await;
        assert!(snapshots(dir.path()).is_empty());
        let retry = log.append(producer_batch(8, 0, 2, 1), 0).await.unwrap();
        assert_eq!((retry.duplicate, retry.base_offset), (true, 2));
        log.close().await.unwrap();
    });
}

#[test]
fn silent_producers_expire_and_truncation_forgets_their_batches() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(NOW));
        let log = open(dir.path(), LogConfig::default(), &clock).await;
        log.set_producer_id_expiration_ms(60_000);
        log.append(producer_batch(4, 0, 0, 2), 0).await.unwrap();
        log.append(producer_batch(4, 0, 2, 2), 0).await.unwrap();
        log.truncate_to(2).await.unwrap();
        // The cut batch is gone from the producer state: its retry is written again.
        let again = log.append(producer_batch(4, 0, 2, 2), 0).await.unwrap();
        assert_eq!((again.duplicate, again.base_offset), (false, 2));
        clock.advance(59_000);
        log.enforce_retention().await.unwrap();
        assert_eq!(log.producers().len(), 1);
        clock.advance(1_000);
        log.enforce_retention().await.unwrap();
        assert!(log.producers().is_empty());
        // Forgotten: any sequence is accepted again (Kafka does the same).
        let info = log.append(producer_batch(4, 0, 50, 1), 0).await.unwrap();
        assert!(!info.duplicate);
        log.close().await.unwrap();
    });
}
