//! Property test: random appends (single and concurrent), rolls, truncations, DeleteRecords,
//! flushes, clean restarts and crashes (drop without close) against a simple model: reads
//! always return exactly what was appended and kept, in order, with contiguous offsets.

mod common;

use std::rc::Rc;

use common::{batch, open, read_all, run, strip_patched};
use proptest::prelude::*;
use spate_log::{LogConfig, ManualClock};

#[derive(Debug, Clone)]
enum Op {
    /// Concurrent appends, each of (batches, records per batch, value length).
    Append(Vec<(usize, usize, usize)>),
    /// Truncate at this fraction of the log end.
    Truncate(f64),
    /// DeleteRecords at this fraction of [log start, log end].
    DeleteBefore(f64),
    /// Empty the log and restart it at this fraction of twice the log end (a follower
    /// behind its leader's start; below the start too).
    TruncateFully(f64),
    Flush,
    Restart,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((1usize..3, 1usize..4, 1usize..120), 1..4).prop_map(Op::Append),
        1 => (0.0f64..1.0).prop_map(Op::Truncate),
        1 => (0.0f64..1.0).prop_map(Op::DeleteBefore),
        1 => (0.0f64..2.0).prop_map(Op::TruncateFully),
        1 => Just(Op::Flush),
        1 => Just(Op::Restart),
        1 => Just(Op::Crash),
    ]
}

/// The expected log: batches (base, last, stripped bytes) and the log start.
#[derive(Default)]
struct Model {
    batches: Vec<(i64, i64, Vec<u8>)>,
    start: i64,
}

impl Model {
    fn end(&self) -> i64 {
        self.batches
            .last()
            .map_or(self.start, |b| b.1 + 1)
            .max(self.start)
    }
}

fn run_ops(ops: Vec<Op>, segment_bytes: u64) {
    run(move || async move {
        let mut dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::new(0));
        let config = LogConfig {
            segment_bytes,
            index_interval_bytes: 128,
            ..LogConfig::default()
        };
        let mut log = open(dir.path(), config.clone(), &clock).await;
        let mut model = Model::default();
        let mut tag = 0u64;
        for op in ops {
            match op {
                Op::Append(appends) => {
                    let mut tasks = Vec::new();
                    let mut expected = Vec::new();
                    for (batches, records, value_len) in appends {
                        let mut bytes = bytes::BytesMut::new();
                        let mut stripped = Vec::new();
                        for _ in 0..batches {
                            tag += 1;
                            let b = batch(tag as i64, records, value_len, tag);
                            stripped.push((records as i64, strip_patched(&b)));
                            bytes.extend_from_slice(&b);
                        }
                        expected.push(stripped);
                        let log = log.clone();
                        tasks.push(glommio::spawn_local(async move {
                            log.append(bytes, 1).await.unwrap()
                        }));
                    }
                    for (task, stripped) in tasks.into_iter().zip(expected) {
                        let info = task.await;
                        assert_eq!(
                            info.base_offset,
                            model.end(),
                            "offsets follow staging order"
                        );
                        for (records, bytes) in stripped {
                            let base = model.end();
                            model.batches.push((base, base + records - 1, bytes));
                        }
                        assert_eq!(info.last_offset, model.end() - 1);
                    }
                }
                Op::Truncate(frac) => {
                    let offset = (model.end() as f64 * frac) as i64;
                    log.truncate_to(offset).await.unwrap();
                    if offset < model.start {
                        model = Model {
                            batches: Vec::new(),
                            start: offset,
                        };
                    } else {
                        model.batches.retain(|b| b.1 < offset);
                    }
                }
                Op::DeleteBefore(frac) => {
                    let offset = model.start + ((model.end() - model.start) as f64 * frac) as i64;
                    log.set_high_watermark(model.end());
                    let start = log.delete_before(offset).await.unwrap();
                    model.start = model.start.max(offset);
                    assert_eq!(start, model.start);
                }
                Op::TruncateFully(frac) => {
                    let offset = (model.end() as f64 * frac) as i64;
                    log.truncate_fully_and_start_at(offset).await.unwrap();
                    model = Model {
                        batches: Vec::new(),
                        start: offset,
                    };
                    assert_eq!(log.high_watermark(), offset);
                }
                Op::Flush => log.flush().await.unwrap(),
                Op::Restart => {
                    log.close().await.unwrap();
                    log = open(dir.path(), config.clone(), &clock).await;
                }
                Op::Crash => {
                    // A crash leaves the files as they are at this instant: reopen a copy,
                    // while the dropped log's background work may still touch the original.
                    let copy = common::crash_snapshot(dir.path());
                    drop(log);
                    dir = copy;
                    log = open(dir.path(), config.clone(), &clock).await;
                }
            }
            assert_eq!(log.log_end_offset(), model.end());
            assert_eq!(log.log_start_offset(), model.start);
        }
        for _ in 0..2 {
            let read = read_all(&log, model.start).await;
            let want: Vec<_> = model
                .batches
                .iter()
                .filter(|b| b.1 >= model.start)
                .collect();
            assert_eq!(read.len(), want.len());
            for ((base, last, bytes), (wb, wl, wbytes)) in read.iter().zip(want) {
                assert_eq!((base, last), (wb, wl));
                assert_eq!(&strip_patched(bytes), wbytes);
            }
            log.close().await.unwrap();
            log = open(dir.path(), config.clone(), &clock).await;
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn reads_return_exactly_what_was_appended(
        ops in prop::collection::vec(op(), 1..40),
        segment_bytes in 400u64..3_000,
    ) {
        run_ops(ops, segment_bytes);
    }
}
