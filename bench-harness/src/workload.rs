//! The workload file: what to create, what to send, how fast and for how long. In the spirit
//! of the OpenMessaging Benchmark's workloads, but one file holds the driver settings too.
//! Every struct denies unknown keys, so a typo stops the run with the key's name.

use crate::payload::HEADER_LEN;
use crate::units::{ByteSize, Dur, Rate};
use crate::{Error, Result};
use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Producers only; latency is intended send time to acknowledgement.
    Produce,
    /// Consumers only, from the start of the log or its tail.
    Consume,
    /// Producers and tailing consumers; latency is intended send time to consumption.
    EndToEnd,
    /// Write a backlog first, then measure reading it from the start.
    CatchUp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub mode: Mode,
    pub topics: Vec<TopicSpec>,
    #[serde(default)]
    pub record: RecordSpec,
    #[serde(default)]
    pub producers: ProducerSpec,
    #[serde(default)]
    pub consumers: ConsumerSpec,
    /// Measured time after warm-up. In catch-up mode, a cap on the read phase.
    pub duration: Dur,
    #[serde(default = "zero")]
    pub warmup: Dur,
    /// Catch-up only: bytes of records to write before reading.
    #[serde(default)]
    pub backlog: Option<ByteSize>,
}

fn zero() -> Dur {
    Dur(Duration::ZERO)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    #[serde(default = "one")]
    pub replication_factor: u16,
}

fn one() -> u16 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSpec {
    /// Value size: a fixed size, or `{uniform: {min, max}}`, or `{normal: {mean, stddev}}`.
    #[serde(default = "default_size")]
    pub size: SizeSpec,
    /// Keys; absent means null keys and sticky round-robin partitioning.
    #[serde(default)]
    pub keys: Option<KeySpec>,
}

impl Default for RecordSpec {
    fn default() -> Self {
        RecordSpec {
            size: default_size(),
            keys: None,
        }
    }
}

fn default_size() -> SizeSpec {
    SizeSpec::Fixed(1024)
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SizeSpec {
    Fixed(u64),
    Uniform { min: u64, max: u64 },
    Normal { mean: u64, stddev: u64 },
}

/// `{uniform: {min, max}}` or `{normal: {mean, stddev}}`: a struct of options rather than an
/// enum, because serde_yaml_ng reads enums from a `Value` only as YAML tags.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SizeDist {
    uniform: Option<Uniform>,
    normal: Option<Normal>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Uniform {
    min: ByteSize,
    max: ByteSize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Normal {
    mean: ByteSize,
    stddev: ByteSize,
}

impl SizeSpec {
    pub fn mean(&self) -> f64 {
        match *self {
            SizeSpec::Fixed(n) => n as f64,
            SizeSpec::Uniform { min, max } => (min + max) as f64 / 2.0,
            SizeSpec::Normal { mean, .. } => mean as f64,
        }
    }

    pub fn max(&self) -> u64 {
        match *self {
            SizeSpec::Fixed(n) => n,
            SizeSpec::Uniform { max, .. } => max,
            // Samples are clamped to mean + 4 stddev.
            SizeSpec::Normal { mean, stddev } => mean + 4 * stddev,
        }
    }

    pub fn min(&self) -> u64 {
        match *self {
            SizeSpec::Fixed(n) => n,
            SizeSpec::Uniform { min, .. } => min,
            SizeSpec::Normal { mean, stddev } => mean.saturating_sub(4 * stddev),
        }
    }
}

impl<'de> Deserialize<'de> for SizeSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        // A scalar is a fixed size; a mapping names a distribution. Going through a Value
        // keeps serde's own messages (which name unknown keys) for the mapping case.
        let v = serde_yaml_ng::Value::deserialize(d)?;
        if v.is_mapping() {
            let dist: SizeDist = serde_yaml_ng::from_value(v).map_err(de::Error::custom)?;
            match (dist.uniform, dist.normal) {
                (Some(u), None) => Ok(SizeSpec::Uniform {
                    min: u.min.0,
                    max: u.max.0,
                }),
                (None, Some(n)) => Ok(SizeSpec::Normal {
                    mean: n.mean.0,
                    stddev: n.stddev.0,
                }),
                _ => Err(de::Error::custom(
                    "size: give exactly one of `uniform` or `normal`",
                )),
            }
        } else {
            let size: ByteSize = serde_yaml_ng::from_value(v).map_err(de::Error::custom)?;
            Ok(SizeSpec::Fixed(size.0))
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// Number of distinct keys, drawn uniformly at random.
    pub count: u64,
    /// Key length in bytes.
    #[serde(default = "default_key_size")]
    pub size: ByteSize,
}

fn default_key_size() -> ByteSize {
    ByteSize(16)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    None,
    Leader,
    All,
}

impl Acks {
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl<'de> Deserialize<'de> for Acks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = serde_yaml_ng::Value::deserialize(d)?;
        match &v {
            serde_yaml_ng::Value::Number(n) if n.as_i64() == Some(0) => Ok(Acks::None),
            serde_yaml_ng::Value::Number(n) if n.as_i64() == Some(1) => Ok(Acks::Leader),
            serde_yaml_ng::Value::Number(n) if n.as_i64() == Some(-1) => Ok(Acks::All),
            serde_yaml_ng::Value::String(s) if s == "all" => Ok(Acks::All),
            _ => Err(de::Error::custom(format!(
                "acks must be 0, 1 or all, not {}",
                serde_yaml_ng::to_string(&v).unwrap_or_default().trim()
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerSpec {
    /// Producer threads, each with its own connection(s) and producer id.
    #[serde(default = "one_u32")]
    pub count: u32,
    #[serde(default = "default_acks")]
    pub acks: Acks,
    #[serde(default = "default_batch")]
    pub batch_size: ByteSize,
    #[serde(default = "zero")]
    pub linger: Dur,
    #[serde(default = "no_compression")]
    pub compression: Compression,
    /// Produce requests in flight per connection (pipelining).
    #[serde(default = "default_in_flight")]
    pub max_in_flight: u32,
    /// Total rate over all producers.
    #[serde(default = "max_rate")]
    pub rate: Rate,
    #[serde(default = "default_timeout")]
    pub request_timeout: Dur,
    /// Stop after this many records in total (instead of at the end of the duration).
    #[serde(default)]
    pub messages: Option<u64>,
}

impl Default for ProducerSpec {
    fn default() -> Self {
        serde_yaml_ng::from_str("{}").expect("all producer keys have defaults")
    }
}

fn one_u32() -> u32 {
    1
}
fn default_acks() -> Acks {
    Acks::Leader
}
fn default_batch() -> ByteSize {
    ByteSize(64 * 1024)
}
fn no_compression() -> Compression {
    Compression::None
}
fn default_in_flight() -> u32 {
    5
}
fn max_rate() -> Rate {
    Rate::Max
}
fn default_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    Earliest,
    Latest,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSpec {
    /// Consumer threads; partitions are assigned round-robin (partition i to consumer i % count).
    #[serde(default)]
    pub count: u32,
    /// A group name, for the record. Groups are not joined: consumers read by assignment.
    #[serde(default)]
    pub group: Option<String>,
    /// Consume mode only: where to start reading.
    #[serde(default = "earliest")]
    pub start: StartAt,
    #[serde(default = "default_wait")]
    pub fetch_max_wait: Dur,
    #[serde(default = "default_fetch_max")]
    pub fetch_max_bytes: ByteSize,
    #[serde(default = "default_partition_max")]
    pub partition_max_bytes: ByteSize,
}

impl Default for ConsumerSpec {
    fn default() -> Self {
        serde_yaml_ng::from_str("{}").expect("all consumer keys have defaults")
    }
}

fn earliest() -> StartAt {
    StartAt::Earliest
}
fn default_wait() -> Dur {
    Dur(Duration::from_millis(100))
}
fn default_fetch_max() -> ByteSize {
    ByteSize(50 * 1024 * 1024)
}
fn default_partition_max() -> ByteSize {
    ByteSize(4 * 1024 * 1024)
}

impl Workload {
    pub fn from_file(path: &Path) -> Result<Workload> {
        let text = std::fs::read_to_string(path).map_err(crate::error::io_err(format!(
            "cannot read workload {}",
            path.display()
        )))?;
        Workload::parse(&text).map_err(|e| Error::Workload(format!("{}: {e}", path.display())))
    }

    /// Parses and checks a workload; the error names the offending key.
    pub fn parse(text: &str) -> std::result::Result<Workload, String> {
        let w: Workload = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        w.check()?;
        Ok(w)
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.topics.is_empty() {
            return Err("topics: list at least one topic".into());
        }
        for (i, t) in self.topics.iter().enumerate() {
            if self.topics[..i].iter().any(|o| o.name == t.name) {
                return Err(format!("topics.name: `{}` is listed twice", t.name));
            }
            if t.name.is_empty() || t.name.len() > 249 {
                return Err(format!(
                    "topics.name: `{}` must be 1 to 249 characters",
                    t.name
                ));
            }
            if t.partitions == 0 {
                return Err(format!(
                    "topics.partitions: topic `{}` needs at least 1",
                    t.name
                ));
            }
        }
        let size = self.record.size;
        if size.min() < HEADER_LEN as u64 {
            return Err(format!(
                "record.size: records must be at least {HEADER_LEN} bytes (the payload carries producer id, sequence and send time)"
            ));
        }
        if let SizeSpec::Uniform { min, max } = size {
            if min > max {
                return Err("record.size.uniform: min is above max".into());
            }
        }
        let p = &self.producers;
        let needs_producers = self.mode != Mode::Consume;
        if needs_producers && p.count == 0 {
            return Err("producers.count: this mode needs at least one producer".into());
        }
        if p.batch_size.0 < size.max() + 128 {
            return Err(
                "producers.batch_size: must hold at least one record of the largest size".into(),
            );
        }
        if p.batch_size.0 > 64 * 1024 * 1024 {
            return Err("producers.batch_size: at most 64MiB".into());
        }
        if p.max_in_flight == 0 {
            return Err("producers.max_in_flight: at least 1".into());
        }
        if let Some(k) = &self.record.keys {
            if k.count == 0 || k.size.0 == 0 {
                return Err("record.keys: count and size must be above 0".into());
            }
        }
        let needs_consumers = matches!(self.mode, Mode::Consume | Mode::EndToEnd | Mode::CatchUp);
        if needs_consumers && self.consumers.count == 0 {
            return Err("consumers.count: this mode needs at least one consumer".into());
        }
        match (self.mode, &self.backlog) {
            (Mode::CatchUp, None) => {
                return Err("backlog: catch-up mode needs a backlog size".into())
            }
            (Mode::CatchUp, Some(_)) => {}
            (_, Some(_)) => return Err("backlog: only catch-up mode writes a backlog".into()),
            _ => {}
        }
        if self.duration.0.is_zero() {
            return Err("duration: must be above 0".into());
        }
        Ok(())
    }

    /// Every (topic, partition) the run touches, in a stable order: the "slots" that
    /// producers and consumers index by.
    pub fn slots(&self) -> Vec<(String, i32)> {
        self.topics
            .iter()
            .flat_map(|t| (0..t.partitions as i32).map(move |p| (t.name.clone(), p)))
            .collect()
    }
}
