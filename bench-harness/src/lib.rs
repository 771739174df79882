//! spate-bench: a Kafka load generator that speaks the wire protocol itself, so the same run
//! can drive Spate or any other Kafka-compatible broker.
//!
//! A run reads a workload (YAML, see `workload`), opens plain blocking TCP connections,
//! builds v2 record batches directly (`batch`) and pipelines produce requests (`producer`).
//! Consumers fetch by partition assignment (`consumer`) and check every record's
//! (producer, sequence) stamp (`sequence`). `stats` and `report` turn counters and
//! hdrhistograms into progress lines, a final table, JSON and an SVG chart. `sink` is a
//! built-in do-nothing broker that measures the generator alone.

pub mod batch;
pub mod chart;
pub mod client;
pub mod compare;
pub mod consumer;
pub mod cpu;
pub mod error;
pub mod payload;
pub mod producer;
pub mod report;
pub mod rng;
pub mod runner;
pub mod sequence;
pub mod sink;
pub mod stats;
pub mod units;
pub mod workload;

pub use error::{Error, Result};
