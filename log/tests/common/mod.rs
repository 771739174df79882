//! Shared test helpers: run a test on a small glommio executor, build batches, read back.
#![allow(dead_code)] // each test binary uses its own subset

use std::future::Future;
use std::path::Path;
use std::rc::Rc;

use bytes::BytesMut;
use glommio::{LocalExecutorBuilder, Placement};
use spate_core::record_batch;
use spate_log::{Clock, LogConfig, ManualClock, PartitionLog};

/// Runs `test` to completion on a fresh executor with a small io_uring memory budget.
pub fn run<G, F>(test: G)
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(512 * 1024)
        .spawn(test)
        .expect("spawn executor")
        .join()
        .expect("test executor panicked");
}

/// A batch of `count` records with `value_len`-byte values, tagged `tag` so reads can be
/// checked against what was appended.
pub fn batch(timestamp: i64, count: usize, value_len: usize, tag: u64) -> BytesMut {
    let values: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let mut v = format!("{tag}:{i}:").into_bytes();
            v.resize(value_len.max(v.len()), b'x');
            v
        })
        .collect();
    BytesMut::from(&record_batch::build_batch(timestamp, &values)[..])
}

/// The names of the files in `dir` ending in `suffix`, sorted.
pub fn names_with(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

pub fn small_segments(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

pub async fn open(dir: &Path, config: LogConfig, clock: &Rc<ManualClock>) -> Rc<PartitionLog> {
    PartitionLog::open(dir, config, clock.clone() as Rc<dyn Clock>)
        .await
        .expect("open log")
}

/// Every batch from `from` to the log end, as stored: (base offset, last offset, bytes).
pub async fn read_all(log: &PartitionLog, from: i64) -> Vec<(i64, i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let slice = log
            .read(offset, 64 * 1024, i64::MAX, true)
            .await
            .expect("read");
        if slice.len == 0 {
            assert_eq!(
                offset,
                log.log_end_offset(),
                "empty read before the log end"
            );
            return out;
        }
        let bytes = slice
            .file
            .read_at(slice.position, slice.len)
            .await
            .expect("read_at");
        assert_eq!(bytes.len(), slice.len);
        for item in record_batch::split(&bytes) {
            let (_, header, raw) = item.expect("whole batches");
            record_batch::validate(raw).expect("valid batch");
            out.push((header.base_offset, header.last_offset(), raw.to_vec()));
            offset = header.last_offset() + 1;
        }
    }
}

/// The record values of a stored batch's bytes: the payloads are at fixed places in the
/// batches `build_batch` makes, so compare whole batches minus the patched fields instead.
pub fn strip_patched(batch: &[u8]) -> Vec<u8> {
    let mut b = batch.to_vec();
    b[0..8].fill(0); // baseOffset
    b[12..16].fill(0); // partitionLeaderEpoch
    b
}

/// Copies a log directory's files (a snapshot of what a crash would leave). A file renamed
/// away mid-copy (a checkpoint being replaced) is skipped: losing a checkpoint is one of
/// the states a crash may leave.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        match std::fs::copy(entry.path(), to.join(entry.file_name())) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("copy {}: {e}", entry.path().display()),
        }
    }
}

/// What a crash leaves: a copy of the directory as it is now. The test then drops the log
/// and reopens the copy, so background work of the dropped log cannot touch it.
pub fn crash_snapshot(dir: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir, copy.path());
    copy
}
