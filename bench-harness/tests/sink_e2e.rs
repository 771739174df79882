//! End to end against the built-in sink: the generator sends exactly what it says, and the
//! sink counts exactly that. No timing assertions.

use spate_bench::runner::{run, RunOptions};
use spate_bench::sink::{self, Fault, SinkOptions};
use spate_bench::workload::Workload;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

fn produce(extra: &str, n: u64) -> (u64, spate_bench::report::Report) {
    let sink = sink::start("127.0.0.1:0").unwrap();
    let report = produce_to(&sink, extra, n);
    (sink.counters().records.load(Relaxed), report)
}

fn produce_to(sink: &sink::Sink, extra: &str, n: u64) -> spate_bench::report::Report {
    let w = Workload::parse(&format!(
        "
name: sink-test
mode: produce
topics: [{{name: a, partitions: 4}}, {{name: b, partitions: 2}}]
duration: 60s
{extra}
"
    ))
    .unwrap();
    let mut w = w;
    w.producers.messages = Some(n);
    run(
        &w,
        &RunOptions {
            broker: sink.addr.to_string(),
            broker_pid: None,
            quiet: true,
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn sink_counts_exactly_what_was_produced() {
    let (counted, report) = produce(
        "record: {size: 100}\nproducers: {count: 2, batch_size: 16KiB}",
        100_003,
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(counted, 100_003, "report: {:?}", report.produce);
    let p = report.produce.unwrap();
    assert_eq!(p.msgs, 100_003);
    assert_eq!(p.bytes, 100_003 * 100);
    assert_eq!(report.failed_msgs, 0);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.produce_latency_us.unwrap().count, 100_003);
}

#[test]
fn keyed_variable_size_compressed_rate_limited() {
    let (counted, report) = produce(
        "
record:
  size: {uniform: {min: 40, max: 400}}
  keys: {count: 50}
producers: {acks: all, compression: snappy, linger: 2ms, rate: 20000 msg/s, max_in_flight: 1}
",
        5_000,
    );
    assert_eq!(counted, 5_000);
    assert_eq!(report.produce.unwrap().msgs, 5_000);
    assert_eq!(report.produce_latency_us.unwrap().count, 5_000);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

#[test]
fn unreachable_broker_is_an_error_not_a_hang() {
    // Bind then drop a listener to get a port nobody serves.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let w = Workload::parse(
        "name: t\nmode: produce\ntopics: [{name: t, partitions: 1}]\nduration: 1s\n",
    )
    .unwrap();
    let err = run(
        &w,
        &RunOptions {
            broker: format!("127.0.0.1:{port}"),
            broker_pid: None,
            quiet: true,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

#[test]
fn fire_and_forget_acks_zero() {
    let sink = sink::start("127.0.0.1:0").unwrap();
    let report = produce_to(&sink, "producers: {acks: 0}", 20_000);
    assert_eq!(report.produce.unwrap().msgs, 20_000);
    assert!(report.produce_latency_us.is_none());
    // Nothing acknowledges acks=0 requests: wait (generously) for the sink to read them all.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while sink.counters().records.load(Relaxed) < 20_000 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(sink.counters().records.load(Relaxed), 20_000);
}

/// Runs `mode` against a retaining sink (with an optional fault), `n` records of 200 bytes.
fn read_run(mode: &str, fault: Option<Fault>, n: u64) -> spate_bench::report::Report {
    let sink = sink::start_with(
        "127.0.0.1:0",
        SinkOptions {
            retain: true,
            fault,
        },
    )
    .unwrap();
    let backlog = if mode == "catch-up" {
        format!("backlog: {}", n * 200)
    } else {
        String::new()
    };
    let mut w = Workload::parse(&format!(
        "
name: read-test
mode: {mode}
topics: [{{name: r, partitions: 3}}]
record: {{size: 200}}
producers: {{batch_size: 8KiB}}
consumers: {{count: 2, fetch_max_wait: 50ms, partition_max_bytes: 32KiB}}
duration: 60s
{backlog}
"
    ))
    .unwrap();
    if mode == "end-to-end" {
        w.producers.messages = Some(n);
    }
    run(
        &w,
        &RunOptions {
            broker: sink.addr.to_string(),
            broker_pid: None,
            quiet: true,
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn end_to_end_reads_everything_in_order() {
    let r = read_run("end-to-end", None, 20_000);
    let check = r.check.clone().unwrap();
    assert!(check.is_clean(), "{check:?}");
    assert_eq!(check.checked, 20_000);
    // The throughput window closes when the producers finish; reading what is left (the
    // drain) is checked and timed, but not counted as throughput.
    assert!(r.consume.unwrap().msgs <= 20_000);
    assert_eq!(r.e2e_latency_us.unwrap().count, 20_000);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
}

#[test]
fn catch_up_reads_the_backlog() {
    let r = read_run("catch-up", None, 10_000);
    let check = r.check.clone().unwrap();
    assert!(check.is_clean(), "{check:?}");
    assert_eq!(check.checked, 10_000);
    assert_eq!(r.consume.unwrap().msgs, 10_000);
    assert_eq!(r.consume.unwrap().bytes, 10_000 * 200);
}

/// Records of 200 bytes in one full 8 KiB batch: what one lost or doubled batch holds.
fn per_batch() -> u64 {
    let mut b = spate_bench::batch::BatchBuilder::new(8 * 1024);
    while b.fits(0, 200) {
        b.append(None, &[&[0u8; 200]]);
    }
    b.count() as u64
}

#[test]
fn a_lost_batch_is_reported() {
    let r = read_run("end-to-end", Some(Fault::LoseBatch(7)), 20_000);
    let check = r.check.unwrap();
    assert_eq!(check.lost, per_batch(), "{check:?}");
    assert_eq!((check.duplicates, check.reordered), (0, 0));
}

#[test]
fn a_duplicated_batch_is_reported() {
    let r = read_run("catch-up", Some(Fault::DuplicateBatch(3)), 10_000);
    let check = r.check.unwrap();
    assert_eq!(check.duplicates, per_batch(), "{check:?}");
    assert_eq!((check.lost, check.reordered), (0, 0));
}

#[test]
fn an_interrupted_run_stops_and_reports() {
    let sink = sink::start_with(
        "127.0.0.1:0",
        SinkOptions {
            retain: true,
            fault: None,
        },
    )
    .unwrap();
    // A backlog far too large to finish: only the interruption can end this run.
    let w = Workload::parse(
        "
name: interrupted
mode: catch-up
topics: [{name: i, partitions: 2}]
record: {size: 100}
consumers: {count: 1}
backlog: 100GB
duration: 1h
",
    )
    .unwrap();
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let trigger = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(200));
        flag.store(true, Relaxed);
    });
    let report = run(
        &w,
        &RunOptions {
            broker: sink.addr.to_string(),
            quiet: true,
            interrupted,
            ..Default::default()
        },
    )
    .unwrap();
    trigger.join().unwrap();
    assert_eq!(report.mode, "CatchUp");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}
