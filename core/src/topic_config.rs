//! Per-topic configs with Kafka's names (`retention.ms`, `segment.bytes`, ...), as they arrive
//! in CreateTopics, AlterConfigs and IncrementalAlterConfigs and leave in DescribeConfigs.
//!
//! A topic stores only its overrides; every other key takes the broker's value (its
//! `log.*` synonym in the profile), so changing the profile changes every topic that did not
//! override the key, as in Kafka. Validation follows Kafka's `LogConfig` ranges. Keys Kafka
//! has but Spate does not implement are refused with a message that says so rather than
//! accepted and ignored: a client that asks for compaction must not silently get deletion.

use std::collections::BTreeMap;
use std::fmt;

use kafka_protocol::ResponseError;

use crate::config::BrokerConfig;

/// A topic config Spate supports. Ordered by name, the order DescribeConfigs lists them in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TopicConfigKey {
    CleanupPolicy,
    CompressionType,
    FlushMessages,
    FlushMs,
    IndexIntervalBytes,
    MaxMessageBytes,
    MessageTimestampType,
    MinInsyncReplicas,
    RetentionBytes,
    RetentionMs,
    SegmentBytes,
    SegmentMs,
    UncleanLeaderElectionEnable,
}

/// Kafka's `ConfigType` codes (DescribeConfigs v3+ `config_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Long,
    List,
}

impl ConfigType {
    pub fn code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Long => 5,
            ConfigType::List => 7,
        }
    }
}

/// Where an effective value comes from: Kafka's `ConfigSource` codes (DescribeConfigs v1+).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic (Kafka's `DYNAMIC_TOPIC_CONFIG`).
    DynamicTopic,
    /// Set at run time on this broker (`DYNAMIC_BROKER_CONFIG`).
    DynamicBroker,
    /// Set at run time as the cluster-wide default (`DYNAMIC_DEFAULT_BROKER_CONFIG`).
    DynamicDefaultBroker,
    /// Set in the broker's profile (`STATIC_BROKER_CONFIG`).
    StaticBroker,
    /// Nobody set it (`DEFAULT_CONFIG`).
    Default,
}

impl ConfigSource {
    pub fn code(self) -> i8 {
        match self {
            ConfigSource::DynamicTopic => 1,
            ConfigSource::DynamicBroker => 2,
            ConfigSource::DynamicDefaultBroker => 3,
            ConfigSource::StaticBroker => 4,
            ConfigSource::Default => 5,
        }
    }
}

/// IncrementalAlterConfigs' operations, by Kafka's codes 0..=3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlterOp {
    Set,
    Delete,
    Append,
    Subtract,
}

impl AlterOp {
    pub fn from_code(code: i8) -> Option<AlterOp> {
        match code {
            0 => Some(AlterOp::Set),
            1 => Some(AlterOp::Delete),
            2 => Some(AlterOp::Append),
            3 => Some(AlterOp::Subtract),
            _ => None,
        }
    }
}

/// A validated value. Text values are always one of the key's allowed spellings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigValue {
    Long(i64),
    Bool(bool),
    Text(&'static str),
}

impl fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigValue::Long(v) => write!(f, "{v}"),
            ConfigValue::Bool(v) => write!(f, "{v}"),
            ConfigValue::Text(v) => f.write_str(v),
        }
    }
}

/// A refused topic config. Answer it with `kafka_error()` (INVALID_CONFIG) and `message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TopicConfigError {
    /// The config name as the client sent it.
    pub key: String,
    pub message: String,
}

impl TopicConfigError {
    fn new(key: &str, message: String) -> TopicConfigError {
        TopicConfigError {
            key: key.to_string(),
            message,
        }
    }

    pub fn kafka_error(&self) -> ResponseError {
        ResponseError::InvalidConfig
    }
}

/// Kafka's "never" for the flush settings, shown when the broker never forces an fsync.
const NEVER: i64 = i64::MAX;
const INT_MAX: i64 = i32::MAX as i64;

/// Kafka topic configs Spate knows of but does not implement yet; naming them in the error
/// tells the user it is Spate's gap, not their typo.
const KAFKA_ONLY: &[&str] = &[
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.zstd.level",
    "delete.retention.ms",
    "file.delete.delay.ms",
    "follower.replication.throttled.replicas",
    "leader.replication.throttled.replicas",
    "local.retention.bytes",
    "local.retention.ms",
    "max.compaction.lag.ms",
    "message.downconversion.enable",
    "message.format.version",
    "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.difference.max.ms",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "preallocate",
    "remote.log.copy.disable",
    "remote.log.delete.on.disable",
    "remote.storage.enable",
    "segment.index.bytes",
    "segment.jitter.ms",
];

impl TopicConfigKey {
    pub const ALL: [TopicConfigKey; 13] = [
        TopicConfigKey::CleanupPolicy,
        TopicConfigKey::CompressionType,
        TopicConfigKey::FlushMessages,
        TopicConfigKey::FlushMs,
        TopicConfigKey::IndexIntervalBytes,
        TopicConfigKey::MaxMessageBytes,
        TopicConfigKey::MessageTimestampType,
        TopicConfigKey::MinInsyncReplicas,
        TopicConfigKey::RetentionBytes,
        TopicConfigKey::RetentionMs,
        TopicConfigKey::SegmentBytes,
        TopicConfigKey::SegmentMs,
        TopicConfigKey::UncleanLeaderElectionEnable,
    ];

    /// Kafka's topic config name.
    pub fn name(self) -> &'static str {
        match self {
            TopicConfigKey::CleanupPolicy => "cleanup.policy",
            TopicConfigKey::CompressionType => "compression.type",
            TopicConfigKey::FlushMessages => "flush.messages",
            TopicConfigKey::FlushMs => "flush.ms",
            TopicConfigKey::IndexIntervalBytes => "index.interval.bytes",
            TopicConfigKey::MaxMessageBytes => "max.message.bytes",
            TopicConfigKey::MessageTimestampType => "message.timestamp.type",
            TopicConfigKey::MinInsyncReplicas => "min.insync.replicas",
            TopicConfigKey::RetentionBytes => "retention.bytes",
            TopicConfigKey::RetentionMs => "retention.ms",
            TopicConfigKey::SegmentBytes => "segment.bytes",
            TopicConfigKey::SegmentMs => "segment.ms",
            TopicConfigKey::UncleanLeaderElectionEnable => "unclean.leader.election.enable",
        }
    }

    pub fn from_name(name: &str) -> Option<TopicConfigKey> {
        TopicConfigKey::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The broker property that supplies the value when the topic does not override it.
    pub fn broker_synonym(self) -> &'static str {
        match self {
            TopicConfigKey::CleanupPolicy => "log.cleanup.policy",
            TopicConfigKey::CompressionType => "compression.type",
            TopicConfigKey::FlushMessages => "log.flush.interval.messages",
            TopicConfigKey::FlushMs => "log.flush.interval.ms",
            TopicConfigKey::IndexIntervalBytes => "log.index.interval.bytes",
            TopicConfigKey::MaxMessageBytes => "message.max.bytes",
            TopicConfigKey::MessageTimestampType => "log.message.timestamp.type",
            TopicConfigKey::MinInsyncReplicas => "min.insync.replicas",
            TopicConfigKey::RetentionBytes => "log.retention.bytes",
            TopicConfigKey::RetentionMs => "log.retention.ms",
            TopicConfigKey::SegmentBytes => "log.segment.bytes",
            TopicConfigKey::SegmentMs => "log.roll.ms",
            TopicConfigKey::UncleanLeaderElectionEnable => "unclean.leader.election.enable",
        }
    }

    pub fn config_type(self) -> ConfigType {
        match self {
            TopicConfigKey::CleanupPolicy => ConfigType::List,
            TopicConfigKey::CompressionType | TopicConfigKey::MessageTimestampType => {
                ConfigType::String
            }
            TopicConfigKey::IndexIntervalBytes
            | TopicConfigKey::MaxMessageBytes
            | TopicConfigKey::MinInsyncReplicas
            | TopicConfigKey::SegmentBytes => ConfigType::Int,
            TopicConfigKey::FlushMessages
            | TopicConfigKey::FlushMs
            | TopicConfigKey::RetentionBytes
            | TopicConfigKey::RetentionMs
            | TopicConfigKey::SegmentMs => ConfigType::Long,
            TopicConfigKey::UncleanLeaderElectionEnable => ConfigType::Boolean,
        }
    }

    /// One line for DescribeConfigs' `documentation` field.
    pub fn documentation(self) -> &'static str {
        match self {
            TopicConfigKey::CleanupPolicy => {
                "What happens to old segments: `delete` removes them by age or size. \
                 Spate does not support `compact` yet."
            }
            TopicConfigKey::CompressionType => {
                "Batches are stored as the producer compressed them (`producer`); Spate never \
                 recompresses."
            }
            TopicConfigKey::FlushMessages => {
                "Force an fsync after this many messages; 1 fsyncs every batch before it is \
                 acknowledged."
            }
            TopicConfigKey::FlushMs => "Force an fsync once unflushed data is this old (ms).",
            TopicConfigKey::IndexIntervalBytes => {
                "Bytes of log between two entries of the sparse offset and time indexes."
            }
            TopicConfigKey::MaxMessageBytes => {
                "Largest record batch (after compression) a produce may append."
            }
            TopicConfigKey::MessageTimestampType => {
                "Records keep the timestamp the producer gave them (CreateTime)."
            }
            TopicConfigKey::MinInsyncReplicas => {
                "Replicas that must have a record before an acks=all produce is acknowledged."
            }
            TopicConfigKey::RetentionBytes => {
                "Delete the oldest segments while a partition is larger than this; -1: no limit."
            }
            TopicConfigKey::RetentionMs => {
                "Delete a segment once its newest record is older than this (ms); -1: never."
            }
            TopicConfigKey::SegmentBytes => "Roll to a new segment file at this size.",
            TopicConfigKey::SegmentMs => {
                "Roll to a new segment when the active one is this old (ms), even if not full."
            }
            TopicConfigKey::UncleanLeaderElectionEnable => {
                "Allow an out-of-sync replica to become leader, losing records, rather than \
                 wait for an in-sync one."
            }
        }
    }

    /// Checks `value` against Kafka's rules for this key and Spate's support.
    pub fn parse(self, value: &str) -> Result<ConfigValue, TopicConfigError> {
        let name = self.name();
        let invalid = |allowed: &str| {
            TopicConfigError::new(
                name,
                format!("invalid value {value:?} for topic config `{name}`: {allowed}"),
            )
        };
        let long = |min: i64, max: i64| {
            let allowed = if max == i64::MAX {
                format!("must be an integer >= {min}")
            } else {
                format!("must be an integer from {min} to {max}")
            };
            match value.trim().parse::<i64>() {
                Ok(v) if (min..=max).contains(&v) => Ok(ConfigValue::Long(v)),
                _ => Err(invalid(&allowed)),
            }
        };
        match self {
            TopicConfigKey::CleanupPolicy => {
                let mut policies = value.split(',').map(str::trim).peekable();
                if policies.peek().is_none_or(|p| p.is_empty()) {
                    return Err(invalid("allowed: delete"));
                }
                for policy in policies {
                    match policy {
                        "delete" => {}
                        "compact" => {
                            return Err(invalid(
                                "log compaction (`compact`) is not supported by Spate yet; \
                                 only `delete` is",
                            ))
                        }
                        _ => return Err(invalid("allowed: delete")),
                    }
                }
                Ok(ConfigValue::Text("delete"))
            }
            TopicConfigKey::CompressionType => match value.trim() {
                "producer" => Ok(ConfigValue::Text("producer")),
                "uncompressed" | "zstd" | "lz4" | "snappy" | "gzip" => Err(invalid(
                    "Spate stores batches as the producer compressed them and never \
                     recompresses, so only `producer` is supported; set the codec on the \
                     producer instead",
                )),
                _ => Err(invalid("allowed: producer")),
            },
            TopicConfigKey::MessageTimestampType => match value.trim() {
                "CreateTime" => Ok(ConfigValue::Text("CreateTime")),
                "LogAppendTime" => Err(invalid(
                    "LogAppendTime is not supported by Spate yet (it would rewrite every \
                     batch's timestamps and CRC); only CreateTime is",
                )),
                _ => Err(invalid("allowed: CreateTime")),
            },
            TopicConfigKey::UncleanLeaderElectionEnable => {
                // Kafka parses booleans ignoring case and surrounding blanks.
                match value.trim().to_ascii_lowercase().as_str() {
                    "true" => Ok(ConfigValue::Bool(true)),
                    "false" => Ok(ConfigValue::Bool(false)),
                    _ => Err(invalid("must be true or false")),
                }
            }
            TopicConfigKey::FlushMessages => long(1, i64::MAX),
            TopicConfigKey::FlushMs => long(0, i64::MAX),
            TopicConfigKey::IndexIntervalBytes | TopicConfigKey::MaxMessageBytes => {
                long(0, INT_MAX)
            }
            TopicConfigKey::MinInsyncReplicas => long(1, INT_MAX),
            // Kafka allows any value; every negative one means "no limit".
            TopicConfigKey::RetentionBytes => long(i64::MIN, i64::MAX),
            TopicConfigKey::RetentionMs => long(-1, i64::MAX),
            // Kafka 4 refuses segments under 1 MiB.
            TopicConfigKey::SegmentBytes => long(1024 * 1024, INT_MAX),
            TopicConfigKey::SegmentMs => long(1, i64::MAX),
        }
    }

    /// The value a topic without an override gets from `broker`.
    pub fn broker_value(self, broker: &BrokerConfig) -> ConfigValue {
        let never = |v: Option<u64>| ConfigValue::Long(v.map_or(NEVER, |v| v as i64));
        match self {
            TopicConfigKey::CleanupPolicy => ConfigValue::Text("delete"),
            TopicConfigKey::CompressionType => ConfigValue::Text("producer"),
            TopicConfigKey::MessageTimestampType => ConfigValue::Text("CreateTime"),
            TopicConfigKey::FlushMessages => never(broker.log_flush_interval_messages),
            TopicConfigKey::FlushMs => never(broker.log_flush_interval_ms),
            TopicConfigKey::IndexIntervalBytes => {
                ConfigValue::Long(broker.log_index_interval_bytes.into())
            }
            TopicConfigKey::MaxMessageBytes => ConfigValue::Long(broker.message_max_bytes as i64),
            TopicConfigKey::MinInsyncReplicas => {
                ConfigValue::Long(broker.min_insync_replicas.into())
            }
            TopicConfigKey::RetentionBytes => ConfigValue::Long(broker.log_retention_bytes),
            TopicConfigKey::RetentionMs => ConfigValue::Long(broker.log_retention_ms),
            TopicConfigKey::SegmentBytes => ConfigValue::Long(broker.log_segment_bytes as i64),
            TopicConfigKey::SegmentMs => ConfigValue::Long(broker.log_roll_ms),
            TopicConfigKey::UncleanLeaderElectionEnable => {
                ConfigValue::Bool(broker.unclean_leader_election_enable)
            }
        }
    }
}

/// Looks a name up, telling an unsupported Kafka config apart from an unknown name.
fn key_for(name: &str) -> Result<TopicConfigKey, TopicConfigError> {
    if let Some(key) = TopicConfigKey::from_name(name) {
        return Ok(key);
    }
    let supported: Vec<&str> = TopicConfigKey::ALL.iter().map(|k| k.name()).collect();
    let message = if KAFKA_ONLY.contains(&name) {
        format!(
            "topic config `{name}` is a Kafka setting Spate does not support yet; \
             supported: {}",
            supported.join(", ")
        )
    } else {
        format!(
            "unknown topic config `{name}`; supported: {}",
            supported.join(", ")
        )
    };
    Err(TopicConfigError::new(name, message))
}

/// One topic's overrides. `Default` is a topic that overrides nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicConfig {
    overrides: BTreeMap<TopicConfigKey, ConfigValue>,
}

/// What a topic's partitions run with: every key resolved against the broker's profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectiveTopicConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub index_interval_bytes: u32,
    /// -1: keep forever.
    pub retention_ms: i64,
    /// -1: no size limit.
    pub retention_bytes: i64,
    /// `None`: never force an fsync by count.
    pub flush_messages: Option<u64>,
    /// `None`: never force an fsync by age.
    pub flush_ms: Option<u64>,
    pub max_message_bytes: usize,
    pub min_insync_replicas: i32,
    pub unclean_leader_election_enable: bool,
}

/// One DescribeConfigs result entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: &'static str,
    pub value: String,
    pub source: ConfigSource,
    /// Topic configs can all be altered.
    pub read_only: bool,
    /// None of Spate's topic configs is a secret.
    pub sensitive: bool,
    pub config_type: ConfigType,
    pub documentation: &'static str,
    /// Where the value could come from, strongest first (DescribeConfigs v1+ with
    /// `include_synonyms`).
    pub synonyms: Vec<ConfigSynonym>,
}

impl ConfigEntry {
    /// DescribeConfigs v0's `is_default`.
    pub fn is_default(&self) -> bool {
        self.source == ConfigSource::Default
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigSynonym {
    pub name: &'static str,
    pub value: String,
    pub source: ConfigSource,
}

impl TopicConfig {
    /// Validates CreateTopics' configs. All or nothing: the first bad pair is the error.
    /// A null value is refused, as Kafka does for CreateTopics.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<TopicConfig, TopicConfigError> {
        let mut config = TopicConfig::default();
        for (name, value) in pairs {
            let value = value.ok_or_else(|| {
                TopicConfigError::new(
                    name,
                    format!("topic config `{name}` needs a value; null is not allowed here"),
                )
            })?;
            config.set(name, value)?;
        }
        Ok(config)
    }

    /// Sets one override after validating it.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), TopicConfigError> {
        let key = key_for(name)?;
        self.overrides.insert(key, key.parse(value)?);
        Ok(())
    }

    /// Applies one IncrementalAlterConfigs operation. `Delete` drops the override (the
    /// topic follows the broker again); `Append`/`Subtract` apply to list configs only.
    /// On error the config is unchanged; a caller applying several operations should work
    /// on a clone and keep it only if all succeed.
    pub fn alter(
        &mut self,
        name: &str,
        op: AlterOp,
        value: Option<&str>,
    ) -> Result<(), TopicConfigError> {
        let key = key_for(name)?;
        let needs_value = || {
            TopicConfigError::new(
                name,
                format!("{op:?} of topic config `{name}` needs a value"),
            )
        };
        match op {
            AlterOp::Delete => {
                self.overrides.remove(&key);
                Ok(())
            }
            AlterOp::Set => self.set(name, value.ok_or_else(needs_value)?),
            AlterOp::Append | AlterOp::Subtract => {
                if key.config_type() != ConfigType::List {
                    return Err(TopicConfigError::new(
                        name,
                        format!(
                            "{op:?} applies to list configs only; `{name}` is a single {:?}",
                            key.config_type()
                        ),
                    ));
                }
                let value = value.ok_or_else(needs_value)?;
                // The only list config, cleanup.policy, does not depend on the broker profile.
                let current = self.value(key, &BrokerConfig::default()).to_string();
                let mut items: Vec<&str> = current.split(',').collect();
                for item in value.split(',').map(str::trim) {
                    if op == AlterOp::Append && !items.contains(&item) {
                        items.push(item);
                    } else if op == AlterOp::Subtract {
                        items.retain(|i| *i != item);
                    }
                }
                self.set(name, &items.join(","))
            }
        }
    }

    /// The topic's own value for `key`, if it overrides it.
    pub fn get(&self, key: TopicConfigKey) -> Option<ConfigValue> {
        self.overrides.get(&key).copied()
    }

    /// The value the topic runs with: its override, else the broker's.
    pub fn value(&self, key: TopicConfigKey, broker: &BrokerConfig) -> ConfigValue {
        self.get(key).unwrap_or_else(|| key.broker_value(broker))
    }

    /// Every setting resolved, typed for the log and the produce path.
    pub fn effective(&self, broker: &BrokerConfig) -> EffectiveTopicConfig {
        let long = |key| match self.value(key, broker) {
            ConfigValue::Long(v) => v,
            other => unreachable!("{key:?} holds {other:?}, validated as a number"),
        };
        // Kafka's Long.MAX_VALUE means "never".
        let never = |key| match long(key) {
            NEVER => None,
            v => Some(v as u64),
        };
        EffectiveTopicConfig {
            segment_bytes: long(TopicConfigKey::SegmentBytes) as u64,
            segment_ms: long(TopicConfigKey::SegmentMs),
            index_interval_bytes: long(TopicConfigKey::IndexIntervalBytes) as u32,
            retention_ms: long(TopicConfigKey::RetentionMs),
            retention_bytes: long(TopicConfigKey::RetentionBytes).max(-1),
            flush_messages: never(TopicConfigKey::FlushMessages),
            flush_ms: never(TopicConfigKey::FlushMs),
            max_message_bytes: long(TopicConfigKey::MaxMessageBytes) as usize,
            min_insync_replicas: long(TopicConfigKey::MinInsyncReplicas) as i32,
            unclean_leader_election_enable: self
                .value(TopicConfigKey::UncleanLeaderElectionEnable, broker)
                == ConfigValue::Bool(true),
        }
    }

    /// DescribeConfigs' entries for every supported key, by name. A broker value that
    /// differs from Spate's default counts as set in the profile (`StaticBroker`).
    pub fn describe(&self, broker: &BrokerConfig) -> Vec<ConfigEntry> {
        let defaults = BrokerConfig::default();
        TopicConfigKey::ALL
            .into_iter()
            .map(|key| {
                let default = key.broker_value(&defaults);
                let from_broker = key.broker_value(broker);
                let mut synonyms = Vec::new();
                if let Some(v) = self.get(key) {
                    synonyms.push(ConfigSynonym {
                        name: key.name(),
                        value: v.to_string(),
                        source: ConfigSource::DynamicTopic,
                    });
                }
                if from_broker != default {
                    synonyms.push(ConfigSynonym {
                        name: key.broker_synonym(),
                        value: from_broker.to_string(),
                        source: ConfigSource::StaticBroker,
                    });
                }
                synonyms.push(ConfigSynonym {
                    name: key.broker_synonym(),
                    value: default.to_string(),
                    source: ConfigSource::Default,
                });
                let strongest = &synonyms[0];
                ConfigEntry {
                    name: key.name(),
                    value: strongest.value.clone(),
                    source: strongest.source,
                    read_only: false,
                    sensitive: false,
                    config_type: key.config_type(),
                    documentation: key.documentation(),
                    synonyms,
                }
            })
            .collect()
    }

    /// The overrides as (Kafka name, value text) pairs, in name order.
    pub fn pairs(&self) -> BTreeMap<String, String> {
        self.overrides
            .iter()
            .map(|(key, value)| (key.name().to_string(), value.to_string()))
            .collect()
    }

    /// The overrides as `key=value` lines (Java-properties style), to keep beside the topic.
    pub fn to_properties(&self) -> String {
        let mut text = String::from("# Topic config overrides, Kafka names.\n");
        for (key, value) in self.pairs() {
            text.push_str(&format!("{key}={value}\n"));
        }
        text
    }

    /// Reads what `to_properties` wrote. Blank lines and `#` or `!` comments are skipped;
    /// anything else must be a valid `key=value` line, and a key may appear once.
    pub fn from_properties(text: &str) -> Result<TopicConfig, TopicConfigError> {
        let mut config = TopicConfig::default();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let at_line = |e: TopicConfigError| TopicConfigError {
                message: format!("line {}: {}", number + 1, e.message),
                key: e.key,
            };
            let Some((name, value)) = line.split_once('=') else {
                return Err(TopicConfigError::new(
                    line,
                    format!("line {}: expected `key=value`, found {line:?}", number + 1),
                ));
            };
            let name = name.trim();
            if key_for(name).is_ok_and(|k| config.get(k).is_some()) {
                return Err(at_line(TopicConfigError::new(
                    name,
                    format!("topic config `{name}` appears twice"),
                )));
            }
            config.set(name, value.trim()).map_err(at_line)?;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&'static str, &'static str)]) -> Result<TopicConfig, TopicConfigError> {
        TopicConfig::from_pairs(list.iter().map(|(k, v)| (*k, Some(*v))))
    }

    #[test]
    fn names_round_trip_and_are_sorted() {
        for key in TopicConfigKey::ALL {
            assert_eq!(TopicConfigKey::from_name(key.name()), Some(key));
        }
        let names: Vec<&str> = TopicConfigKey::ALL.iter().map(|k| k.name()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert!(KAFKA_ONLY
            .iter()
            .all(|n| TopicConfigKey::from_name(n).is_none()));
    }

    #[test]
    fn valid_overrides_are_typed() {
        let config = pairs(&[
            ("retention.ms", "86400000"),
            ("retention.bytes", "1000000"),
            ("segment.bytes", "1048576"),
            ("segment.ms", "3600000"),
            ("flush.messages", "1"),
            ("flush.ms", "0"),
            ("max.message.bytes", "2097152"),
            ("cleanup.policy", "delete"),
            ("min.insync.replicas", "2"),
            ("unclean.leader.election.enable", " TRUE "),
            ("message.timestamp.type", "CreateTime"),
            ("index.interval.bytes", "0"),
            ("compression.type", "producer"),
        ])
        .unwrap();
        let e = config.effective(&BrokerConfig::default());
        assert_eq!(
            e,
            EffectiveTopicConfig {
                segment_bytes: 1 << 20,
                segment_ms: 3_600_000,
                index_interval_bytes: 0,
                retention_ms: 86_400_000,
                retention_bytes: 1_000_000,
                flush_messages: Some(1),
                flush_ms: Some(0),
                max_message_bytes: 2 << 20,
                min_insync_replicas: 2,
                unclean_leader_election_enable: true,
            }
        );
        assert_eq!(
            config.get(TopicConfigKey::UncleanLeaderElectionEnable),
            Some(ConfigValue::Bool(true))
        );
    }

    #[test]
    fn no_overrides_follow_the_broker() {
        let broker = BrokerConfig {
            log_segment_bytes: 4 << 20,
            log_flush_interval_messages: Some(1),
            log_retention_bytes: -1,
            ..BrokerConfig::default()
        };
        let e = TopicConfig::default().effective(&broker);
        assert_eq!(e.segment_bytes, 4 << 20);
        assert_eq!(e.flush_messages, Some(1));
        assert_eq!(e.flush_ms, None);
        assert_eq!(e.segment_ms, broker.log_roll_ms);
        assert_eq!(e.max_message_bytes, broker.message_max_bytes);
        // Kafka's spelling of "never" given explicitly is still never.
        let never = pairs(&[("flush.messages", "9223372036854775807")]).unwrap();
        assert_eq!(never.effective(&broker).flush_messages, None);
        let negative = pairs(&[("retention.bytes", "-5")]).unwrap();
        assert_eq!(negative.effective(&broker).retention_bytes, -1);
    }

    fn refused(name: &'static str, value: &'static str) -> TopicConfigError {
        let err = pairs(&[("retention.ms", "1"), (name, value)]).unwrap_err();
        assert_eq!(err.key, name);
        assert_eq!(err.kafka_error(), ResponseError::InvalidConfig);
        assert!(err.message.contains(&format!("`{name}`")), "{err}");
        err
    }

    #[test]
    fn bad_values_name_the_key_and_what_is_allowed() {
        let e = refused("segment.bytes", "1000");
        assert!(e.message.contains("from 1048576 to 2147483647"), "{e}");
        assert!(refused("segment.bytes", "3000000000")
            .message
            .contains("2147483647"));
        assert!(refused("retention.ms", "-2").message.contains(">= -1"));
        assert!(refused("flush.messages", "0").message.contains(">= 1"));
        assert!(refused("segment.ms", "soon").message.contains("integer"));
        assert!(refused("min.insync.replicas", "0")
            .message
            .contains("from 1"));
        assert!(refused("max.message.bytes", "1.5")
            .message
            .contains("integer"));
        let e = refused("unclean.leader.election.enable", "yes");
        assert!(e.message.contains("true or false"), "{e}");
        assert!(refused("cleanup.policy", "").message.contains("delete"));
        assert!(refused("cleanup.policy", "shred")
            .message
            .contains("delete"));
    }

    #[test]
    fn unsupported_kafka_choices_say_so() {
        let e = refused("cleanup.policy", "compact");
        assert!(e.message.contains("compaction") && e.message.contains("not supported"));
        let e = refused("cleanup.policy", "delete,compact");
        assert!(e.message.contains("not supported"), "{e}");
        let e = refused("message.timestamp.type", "LogAppendTime");
        assert!(e.message.contains("not supported"), "{e}");
        assert!(refused("message.timestamp.type", "Whenever")
            .message
            .contains("CreateTime"));
        let e = refused("compression.type", "zstd");
        assert!(e.message.contains("producer"), "{e}");
        let e = refused("segment.jitter.ms", "10");
        assert!(e.message.contains("Spate does not support"), "{e}");
    }

    #[test]
    fn unknown_names_and_null_values_are_refused() {
        let e = refused("retention.msec", "1");
        assert!(
            e.message
                .starts_with("unknown topic config `retention.msec`"),
            "{e}"
        );
        assert!(e.message.contains("retention.ms"), "{e}");
        let e = TopicConfig::from_pairs([("retention.ms", None)]).unwrap_err();
        assert_eq!(e.key, "retention.ms");
        assert!(e.message.contains("null"), "{e}");
    }

    #[test]
    fn incremental_alter_ops() {
        let mut config = pairs(&[("retention.ms", "5")]).unwrap();
        config.alter("segment.ms", AlterOp::Set, Some("9")).unwrap();
        assert_eq!(
            config.get(TopicConfigKey::SegmentMs),
            Some(ConfigValue::Long(9))
        );
        config.alter("retention.ms", AlterOp::Delete, None).unwrap();
        assert_eq!(config.get(TopicConfigKey::RetentionMs), None);
        // Appending what is already there changes nothing; appending compact is refused.
        config
            .alter("cleanup.policy", AlterOp::Append, Some("delete"))
            .unwrap();
        assert_eq!(
            config.get(TopicConfigKey::CleanupPolicy),
            Some(ConfigValue::Text("delete"))
        );
        let before = config.clone();
        let e = config
            .alter("cleanup.policy", AlterOp::Append, Some("compact"))
            .unwrap_err();
        assert!(e.message.contains("not supported"), "{e}");
        let e = config
            .alter("cleanup.policy", AlterOp::Subtract, Some("delete"))
            .unwrap_err();
        assert!(e.message.contains("allowed: delete"), "{e}");
        let e = config
            .alter("retention.ms", AlterOp::Append, Some("1"))
            .unwrap_err();
        assert!(e.message.contains("list configs only"), "{e}");
        let e = config
            .alter("retention.ms", AlterOp::Set, None)
            .unwrap_err();
        assert!(e.message.contains("needs a value"), "{e}");
        assert!(config.alter("nope", AlterOp::Delete, None).is_err());
        assert_eq!(config, before);
        assert_eq!(AlterOp::from_code(1), Some(AlterOp::Delete));
        assert_eq!(AlterOp::from_code(4), None);
    }

    #[test]
    fn describe_reports_value_source_and_synonyms() {
        let broker = BrokerConfig {
            log_segment_bytes: 4 << 20,
            ..BrokerConfig::default()
        };
        let config = pairs(&[("retention.ms", "1000")]).unwrap();
        let entries = config.describe(&broker);
        assert_eq!(entries.len(), TopicConfigKey::ALL.len());
        let find = |name: &str| entries.iter().find(|e| e.name == name).unwrap();

        let retention = find("retention.ms");
        assert_eq!(retention.value, "1000");
        assert_eq!(retention.source, ConfigSource::DynamicTopic);
        assert_eq!(retention.source.code(), 1);
        assert!(!retention.is_default() && !retention.read_only && !retention.sensitive);
        assert_eq!(retention.config_type.code(), 5);
        assert_eq!(retention.synonyms.len(), 2);
        assert_eq!(retention.synonyms[1].name, "log.retention.ms");
        assert_eq!(retention.synonyms[1].value, "604800000");

        let segment = find("segment.bytes");
        assert_eq!(segment.value, "4194304");
        assert_eq!(segment.source, ConfigSource::StaticBroker);
        assert_eq!(segment.config_type, ConfigType::Int);
        assert_eq!(segment.synonyms[0].name, "log.segment.bytes");

        let flush = find("flush.messages");
        assert_eq!(flush.value, "9223372036854775807");
        assert!(flush.is_default());
        assert_eq!(flush.source.code(), 5);
        assert_eq!(find("cleanup.policy").value, "delete");
        assert_eq!(find("cleanup.policy").config_type.code(), 7);
        assert_eq!(find("unclean.leader.election.enable").value, "false");
        assert!(entries.iter().all(|e| !e.documentation.is_empty()));
    }

    #[test]
    fn properties_round_trip() {
        let config = pairs(&[
            ("retention.ms", "-1"),
            ("cleanup.policy", "delete"),
            ("unclean.leader.election.enable", "True"),
            ("segment.bytes", "2097152"),
        ])
        .unwrap();
        let text = config.to_properties();
        assert!(text.contains("\nretention.ms=-1\n"), "{text}");
        assert!(
            text.contains("\nunclean.leader.election.enable=true\n"),
            "{text}"
        );
        assert_eq!(TopicConfig::from_properties(&text).unwrap(), config);
        let empty = TopicConfig::default();
        assert_eq!(
            TopicConfig::from_properties(&empty.to_properties()).unwrap(),
            empty
        );
        let spaced = "\n! comment\n  segment.ms = 12 \n";
        let parsed = TopicConfig::from_properties(spaced).unwrap();
        assert_eq!(
            parsed.get(TopicConfigKey::SegmentMs),
            Some(ConfigValue::Long(12))
        );
    }

    #[test]
    fn corrupt_properties_are_errors_with_line_numbers() {
        let e = TopicConfig::from_properties("# c\nretention.ms\n").unwrap_err();
        assert!(e.message.starts_with("line 2: expected `key=value`"), "{e}");
        let e = TopicConfig::from_properties("segment.bytes=12\n").unwrap_err();
        assert!(e.message.starts_with("line 1: invalid value"), "{e}");
        let e = TopicConfig::from_properties("a.b=1\n").unwrap_err();
        assert!(e.message.contains("unknown topic config `a.b`"), "{e}");
        let e = TopicConfig::from_properties("flush.ms=1\nflush.ms=2\n").unwrap_err();
        assert!(
            e.message.starts_with("line 2:") && e.message.contains("twice"),
            "{e}"
        );
    }
}
