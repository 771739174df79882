//! Workload parsing: the shipped files parse, and bad files fail with the key named.

use spate_bench::units::Rate;
use spate_bench::workload::{Acks, Mode, SizeSpec, Workload};
use std::path::Path;

#[test]
fn standard_workloads_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let w = Workload::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        names.push(w.name.clone());
    }
    names.sort();
    assert_eq!(
        names,
        [
            "catch-up-read",
            "durable-large",
            "e2e-latency",
            "small-records"
        ]
    );
}

#[test]
fn small_records_is_as_specified() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/small-records.yaml");
    let w = Workload::from_file(&path).unwrap();
    assert_eq!(w.mode, Mode::Produce);
    assert_eq!(w.record.size, SizeSpec::Fixed(100));
    assert_eq!(w.producers.acks, Acks::Leader);
    assert_eq!(w.producers.batch_size.0, 65536);
    assert_eq!(w.producers.rate, Rate::Max);
    assert_eq!(w.topics[0].partitions, 6);
}

const BASE: &str = "
name: t
mode: produce
topics: [{name: t, partitions: 3}]
duration: 10s
";

fn parse_with(extra: &str) -> Result<Workload, String> {
    Workload::parse(&format!("{BASE}{extra}"))
}

#[test]
fn full_workload_with_every_key() {
    let w = Workload::parse(
        "
name: everything
description: all keys
mode: end-to-end
topics:
  - {name: a, partitions: 2, replication_factor: 1}
  - {name: b, partitions: 1}
record:
  size: {uniform: {min: 100, max: 1KiB}}
  keys: {count: 1000, size: 12}
producers:
  count: 2
  acks: all
  batch_size: 128KiB
  linger: 5ms
  compression: gzip
  max_in_flight: 3
  rate: 20 MB/s
  request_timeout: 10s
  messages: 1000000
consumers:
  count: 2
  group: g
  start: latest
  fetch_max_wait: 50ms
  fetch_max_bytes: 10MiB
  partition_max_bytes: 1MiB
duration: 1m
warmup: 10s
",
    )
    .unwrap();
    assert_eq!(
        w.record.size,
        SizeSpec::Uniform {
            min: 100,
            max: 1024
        }
    );
    assert_eq!(w.producers.rate, Rate::BytesPerSec(20e6));
    assert_eq!(w.producers.acks, Acks::All);
    assert_eq!(w.slots().len(), 3);
    assert_eq!(w.duration.0.as_secs(), 60);
}

#[test]
fn normal_size_distribution() {
    let w = parse_with("record: {size: {normal: {mean: 1KiB, stddev: 100}}}").unwrap();
    assert_eq!(
        w.record.size,
        SizeSpec::Normal {
            mean: 1024,
            stddev: 100
        }
    );
}

#[test]
fn unknown_keys_are_named() {
    let cases = [
        ("bogus: 1", "bogus"),
        ("producers: {acks: 1, lingr: 5ms}", "lingr"),
        ("record: {size: 100, keyz: 3}", "keyz"),
        (
            "record: {size: {uniform: {min: 50, maximum: 100}}}",
            "maximum",
        ),
        ("record: {size: {poisson: {mean: 50}}}", "poisson"),
        ("consumers: {count: 1, strat: latest}", "strat"),
    ];
    for (extra, key) in cases {
        let err = parse_with(extra).unwrap_err();
        assert!(
            err.contains(key),
            "error for `{extra}` should name `{key}`: {err}"
        );
    }
    let err =
        Workload::parse(&BASE.replace("partitions: 3", "partitions: 3, replicas: 2")).unwrap_err();
    assert!(err.contains("replicas"), "{err}");
}

#[test]
fn bad_values_are_explained() {
    let cases = [
        ("producers: {acks: 2}", "acks"),
        ("producers: {rate: fast}", "fast"),
        ("producers: {batch_size: 12 parsecs}", "parsecs"),
        ("producers: {linger: 5}", "unit"),
        ("record: {size: 10}", "record.size"),
        (
            "record: {size: {uniform: {min: 500, max: 100}}}",
            "min is above max",
        ),
        ("producers: {max_in_flight: 0}", "max_in_flight"),
        ("producers: {count: 0}", "producers.count"),
        ("record: {size: 1MiB}", "batch_size"),
        ("backlog: 1GiB", "backlog"),
    ];
    for (extra, needle) in cases {
        let err = parse_with(extra).unwrap_err();
        assert!(
            err.contains(needle),
            "error for `{extra}` should mention `{needle}`: {err}"
        );
    }
    let err = Workload::parse(&BASE.replace("mode: produce", "mode: catch-up")).unwrap_err();
    assert!(err.contains("consumers.count"), "{err}");
    let err = Workload::parse(&BASE.replace("mode: produce", "mode: sideways")).unwrap_err();
    assert!(err.contains("sideways"), "{err}");
    let err = Workload::parse(&BASE.replace("partitions: 3", "partitions: 0")).unwrap_err();
    assert!(err.contains("partitions"), "{err}");
    let err = Workload::parse(&BASE.replace(
        "partitions: 3}]",
        "partitions: 3}, {name: t, partitions: 1}]",
    ))
    .unwrap_err();
    assert!(err.contains("twice"), "{err}");
    let err = Workload::parse("name: t\nmode: produce\n").unwrap_err();
    assert!(err.contains("topics"), "{err}");
}

#[test]
fn missing_file_is_a_clear_error() {
    let err = Workload::from_file(Path::new("/nonexistent/w.yaml")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/w.yaml"), "{err}");
}
