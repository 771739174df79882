//! Whatever the files in a partition directory hold, opening and reading the log gives
//! a result or a clear error, never a panic or a hang.

mod common;

use std::rc::Rc;

use common::{batch, open, run};
use proptest::prelude::*;
use spate_log::{Clock, ManualClock, PartitionLog};

#[derive(Debug, Clone)]
struct Damage {
    /// (position as a fraction of the file, xor mask) flips in the last segment.
    flips: Vec<(f64, u8)>,
    /// Keep this fraction of the last segment.
    keep: f64,
    /// Replace one index file's bytes with these.
    index_bytes: Option<Vec<u8>>,
    recovery_point: Option<String>,
    marker: Option<String>,
    close_first: bool,
}

fn damage() -> impl Strategy<Value = Damage> {
    (
        prop::collection::vec((0.0f64..1.0, 1u8..=255), 0..4),
        0.5f64..1.0,
        prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        prop::option::of(prop_oneof![
            Just("0\n1\n0\n".to_string()),
            Just("0\n1\n999999\n".to_string()),
            Just("0\n1\n-5\n".to_string()),
            Just("garbage".to_string()),
        ]),
        prop::option::of(prop_oneof![
            Just("100 0 5\n".to_string()),
            Just("-1 -1 0\n".to_string()),
            Just("x".to_string()),
        ]),
        any::<bool>(),
    )
        .prop_map(
            |(flips, keep, index_bytes, recovery_point, marker, close_first)| Damage {
                flips,
                keep,
                index_bytes,
                recovery_point,
                marker,
                close_first,
            },
        )
}

fn check(damage: Damage) {
    run(move || async move {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let config = common::small_segments(1_500);
        let log = open(dir.path(), config.clone(), &clock).await;
        for i in 0..25 {
            log.append(batch(i, 1 + i as usize % 3, 40, i as u64), 1)
                .await
                .unwrap();
        }
        if damage.close_first {
            log.close().await.unwrap();
        }
        let snapshot = common::crash_snapshot(dir.path());
        drop(log);
        let path = snapshot.path();
        let mut logs: Vec<_> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        let last = logs.last().unwrap();
        let mut bytes = std::fs::read(last).unwrap();
        bytes.truncate((bytes.len() as f64 * damage.keep) as usize);
        for (at, mask) in &damage.flips {
            if !bytes.is_empty() {
                let i = ((bytes.len() - 1) as f64 * at) as usize;
                bytes[i] ^= mask;
            }
        }
        std::fs::write(last, &bytes).unwrap();
        if let Some(index) = &damage.index_bytes {
            std::fs::write(logs[0].with_extension("index"), index).unwrap();
        }
        if let Some(text) = &damage.recovery_point {
            std::fs::write(path.join(spate_log::RECOVERY_POINT_FILE), text).unwrap();
        }
        if let Some(text) = &damage.marker {
            std::fs::write(path.join(spate_log::CLEAN_SHUTDOWN_FILE), text).unwrap();
        }
        let Ok(log) = PartitionLog::open(path, config, clock.clone() as Rc<dyn Clock>).await else {
            return; // a clear error is a fine answer to damaged files
        };
        let (start, end) = (log.log_start_offset(), log.log_end_offset());
        assert!(start <= end);
        for offset in start..end.min(start + 200) {
            if let Ok(slice) = log.read(offset, 1 << 16, i64::MAX, true).await {
                let _ = slice.file.read_at(slice.position, slice.len).await;
            }
        }
        let _ = log.offset_for_timestamp(5).await;
        let _ = log.truncate_to(end / 2).await;
        let _ = log.append(batch(0, 1, 10, 99), 2).await;
        let _ = log.enforce_retention().await;
        let _ = log.close().await;
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn damaged_files_never_panic(damage in damage()) {
        check(damage);
    }
}

#[test]
fn an_index_pointing_past_its_segment_is_rebuilt_not_trusted() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let config = common::small_segments(1_500);
        let log = open(dir.path(), config.clone(), &clock).await;
        for i in 0..25 {
            log.append(batch(i, 2, 40, i as u64), 1).await.unwrap();
        }
        log.close().await.unwrap();
        let first_index = dir.path().join("00000000000000000000.index");
        // One entry: offset 1 at position 2^31 - 1, far past the segment's end.
        std::fs::write(&first_index, [0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff]).unwrap();
        let log = open(dir.path(), config, &clock).await;
        for offset in 0..log.log_end_offset() {
            let slice = log.read(offset, 1, i64::MAX, true).await.unwrap();
            let bytes = slice.file.read_at(slice.position, slice.len).await.unwrap();
            let header = spate_core::record_batch::validate(&bytes).unwrap();
            assert!(header.base_offset <= offset && offset <= header.last_offset());
        }
        assert_ne!(std::fs::read(&first_index).unwrap().len(), 8, "rewritten");
    });
}
