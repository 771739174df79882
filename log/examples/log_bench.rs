//! Benchmark of spate-log (not a test): append throughput (16 KiB and 1 MiB batches, flush
//! never and every batch), read throughput, and index lookup latency with 1 and 1,000
//! segments, beside the raw buffered write speed of the same disk measured by `dd`.
//!
//! Every case runs 3 times and the median is printed. Between runs dirty pages are
//! written back (`sync`) so one run's writeback does not slow the next.
//!
//! `cargo run --release -p spate-log --example log_bench -- [DIR] [--quick]`
//! DIR defaults to ./log-bench-data (created, and emptied afterwards); it must be on the
//! disk under test. `--quick` shrinks every volume 16x (a smoke run). `--only TEXT` runs
//! just the append cases whose name contains TEXT (for profiling), without `dd`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use glommio::{LocalExecutorBuilder, Placement};
use spate_core::record_batch;
use spate_log::{Clock, LogConfig, PartitionLog, SystemClock};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
const RUNS: usize = 3;

fn main() {
    let mut dir = PathBuf::from("log-bench-data");
    let mut scale = 1;
    let mut only = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => scale = 16,
            "--only" => only = args.next(),
            other => dir = PathBuf::from(other),
        }
    }
    std::fs::create_dir_all(&dir).expect("create bench dir");
    if only.is_some() {
        return run_only(dir, scale, only);
    }
    let dd_bytes = 2048 * MIB / scale;
    println!("dir: {}", dir.canonicalize().unwrap().display());
    let dd_sync = median(|| dd(&dir, dd_bytes, true));
    let dd_buffered = median(|| dd(&dir, dd_bytes, false));
    println!(
        "dd bs=1M count={} conv=fdatasync : {dd_sync:.0} MB/s",
        dd_bytes / MIB
    );
    println!(
        "dd bs=1M count={} (buffered)      : {dd_buffered:.0} MB/s",
        dd_bytes / MIB
    );

    run_only(dir, scale, None);
}

fn run_only(dir: PathBuf, scale: usize, only: Option<String>) {
    let bench_dir = dir.clone();
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(512 * KIB)
        .spawn(move || async move { run_log_cases(&bench_dir, scale, only).await })
        .expect("spawn executor")
        .join()
        .expect("bench executor");
    let _ = std::fs::remove_dir_all(&dir);
}

async fn run_log_cases(dir: &Path, scale: usize, only: Option<String>) {
    if only.is_none() {
        // First, before other cases leave freed memory in the allocator.
        idle_memory(&dir.join("idle"), 1000).await;
    }
    // (name, batch bytes, bytes to append, flush.messages, concurrent appenders)
    let cases: [(&str, usize, usize, Option<u64>, usize); 9] = [
        (
            "16 KiB batches, flush never, 1 appender",
            16 * KIB,
            2048 * MIB,
            None,
            1,
        ),
        (
            "16 KiB batches, flush never, 16 appenders",
            16 * KIB,
            2048 * MIB,
            None,
            16,
        ),
        (
            "16 KiB batches, flush never, 64 appenders",
            16 * KIB,
            2048 * MIB,
            None,
            64,
        ),
        (
            "1 MiB batches, flush never, 1 appender",
            MIB,
            2048 * MIB,
            None,
            1,
        ),
        (
            "1 MiB batches, flush never, 4 appenders",
            MIB,
            2048 * MIB,
            None,
            4,
        ),
        (
            "16 KiB batches, flush every batch, 1 appender",
            16 * KIB,
            32 * MIB,
            Some(1),
            1,
        ),
        (
            "16 KiB batches, flush every batch, 16 appenders",
            16 * KIB,
            128 * MIB,
            Some(1),
            16,
        ),
        (
            "1 MiB batches, flush every batch, 1 appender",
            MIB,
            512 * MIB,
            Some(1),
            1,
        ),
        (
            "1 MiB batches, flush every batch, 4 appenders",
            MIB,
            512 * MIB,
            Some(1),
            4,
        ),
    ];
    for (name, batch_len, total, flush, appenders) in cases {
        if only
            .as_ref()
            .is_some_and(|only| !name.contains(only.as_str()))
        {
            continue;
        }
        let total = total / scale;
        let mut runs = Vec::new();
        let mut read_runs = Vec::new();
        for run in 0..RUNS {
            let path = dir.join(format!("append-{run}"));
            let config = LogConfig {
                flush_messages: flush,
                ..LogConfig::default()
            };
            let log = open(&path, config).await;
            let (bytes, elapsed) = append_all(&log, batch_len, total, appenders).await;
            runs.push(mb_per_s(bytes, elapsed));
            if flush.is_none() && batch_len == MIB && appenders == 1 {
                let start = Instant::now();
                let read = read_all(&log).await;
                assert_eq!(read as usize, bytes);
                read_runs.push(mb_per_s(bytes, start.elapsed()));
            }
            log.delete().await.expect("delete");
            sync();
        }
        println!(
            "append {name}, {} MiB: {:.0} MB/s",
            total / MIB,
            median_of(runs)
        );
        if !read_runs.is_empty() {
            println!(
                "read back (copy path, 1 MiB per read, page cache warm), {} MiB: {:.0} MB/s",
                total / MIB,
                median_of(read_runs)
            );
        }
    }
    if only.is_some() {
        return;
    }
    for segments in [1usize, 1000] {
        let mut medians = Vec::new();
        let mut p99s = Vec::new();
        for run in 0..RUNS {
            let (median, p99) =
                lookup_latency(&dir.join(format!("lookup-{run}")), segments, scale).await;
            medians.push(median);
            p99s.push(p99);
        }
        println!(
            "index lookup (read() of 1 byte at a random offset), {segments} segment(s): median {:.1} us, p99 {:.1} us",
            median_of(medians),
            median_of(p99s)
        );
    }
}

async fn open(path: &Path, config: LogConfig) -> Rc<PartitionLog> {
    let _ = std::fs::remove_dir_all(path);
    PartitionLog::open(path, config, Rc::new(SystemClock) as Rc<dyn Clock>)
        .await
        .expect("open")
}

fn one_batch(len: usize) -> BytesMut {
    let value = vec![b'v'; len - record_batch::BATCH_HEADER_LEN - 16];
    let batch = record_batch::build_batch(0, &[value]);
    BytesMut::from(&batch[..])
}

/// Appends about `total` bytes of `batch_len`-byte batches from `appenders` concurrent
/// tasks. Returns the bytes appended and the time taken.
async fn append_all(
    log: &Rc<PartitionLog>,
    batch_len: usize,
    total: usize,
    appenders: usize,
) -> (usize, Duration) {
    let batch = one_batch(batch_len);
    let per_task = total / batch.len() / appenders;
    let start = Instant::now();
    let tasks: Vec<_> = (0..appenders)
        .map(|_| {
            let log = log.clone();
            let batch = batch.clone();
            glommio::spawn_local(async move {
                for _ in 0..per_task {
                    log.append(batch.clone(), 0).await.expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await;
    }
    (per_task * appenders * batch.len(), start.elapsed())
}

/// Reads the whole log through `read` and copies each slice into memory.
async fn read_all(log: &PartitionLog) -> u64 {
    let mut offset = 0;
    let mut bytes = 0u64;
    while offset < log.log_end_offset() {
        let slice = log.read(offset, MIB, i64::MAX, true).await.expect("read");
        let data = slice
            .file
            .read_at(slice.position, slice.len)
            .await
            .expect("read_at");
        for batch in record_batch::split(&data) {
            offset = batch.expect("batch").1.last_offset() + 1;
        }
        bytes += data.len() as u64;
    }
    bytes
}

/// Median and p99 of `read(offset, 1 byte)` at random offsets of a 64 MiB log of 1 KiB
/// batches, split into `segments` segments.
async fn lookup_latency(path: &Path, segments: usize, scale: usize) -> (f64, f64) {
    let total = 64 * MIB / scale;
    let config = LogConfig {
        segment_bytes: (total / segments) as u64,
        ..LogConfig::default()
    };
    let log = open(path, config).await;
    append_all(&log, KIB, total, 1).await;
    assert!(
        log.segment_count() >= segments,
        "{} segments",
        log.segment_count()
    );
    let end = log.log_end_offset() as u64;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut latencies = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let offset = (rng % end) as i64;
        let start = Instant::now();
        let slice = log.read(offset, 1, i64::MAX, true).await.expect("read");
        latencies.push(start.elapsed().as_secs_f64() * 1e6);
        assert!(slice.len > 0);
    }
    log.delete().await.expect("delete");
    latencies.sort_by(f64::total_cmp);
    (
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
    )
}

/// Resident memory added by `count` open, idle partitions holding one small batch each.
async fn idle_memory(dir: &Path, count: usize) {
    let before = rss_kib();
    let mut logs = Vec::with_capacity(count);
    for i in 0..count {
        let log = open(&dir.join(format!("p-{i}")), LogConfig::default()).await;
        log.append(one_batch(KIB), 0).await.expect("append");
        logs.push(log);
    }
    let after = rss_kib();
    println!(
        "{count} idle partitions (open, one 1 KiB batch each): +{} MiB resident ({:.1} KiB each)",
        (after - before) / 1024,
        (after - before) as f64 / count as f64
    );
    for log in logs {
        log.delete().await.expect("delete");
    }
}

fn rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Runs `dd` writing `bytes` into a file in `dir` and returns its speed in MB/s.
fn dd(dir: &Path, bytes: usize, fdatasync: bool) -> f64 {
    let file = dir.join("dd.tmp");
    let mut cmd = Command::new("dd");
    cmd.arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .arg("bs=1M")
        .arg(format!("count={}", bytes / MIB));
    if fdatasync {
        cmd.arg("conv=fdatasync");
    }
    let start = Instant::now();
    let out = cmd.output().expect("run dd");
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "dd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&file).expect("remove dd file");
    sync();
    mb_per_s(bytes, elapsed)
}

fn sync() {
    Command::new("sync").status().expect("run sync");
}

fn mb_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64()
}

fn median(mut f: impl FnMut() -> f64) -> f64 {
    median_of((0..RUNS).map(|_| f()).collect())
}

fn median_of(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
