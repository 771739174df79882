//! The broker's configuration, read from a `tuning/*.yaml` profile. Keys are Kafka's broker
//! property names wherever Kafka has one, written flat and dotted as in `server.properties`
//! (`log.segment.bytes: 1073741824`); Spate's own keys (`shards`, `io.memory.bytes`,
//! `spin.before.park.us`) follow the same style. `tuning/README.md` documents every key.
//!
//! Loading is strict on purpose: a typo in a profile silently falling back to a default is the
//! kind of mistake that shows up weeks later as lost data or a full disk, so an unknown key, a
//! wrong type or an out-of-range value stops start-up with an error naming the key.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

mod cluster;

use cluster::Listener;
pub use cluster::{ProcessRoles, QuorumVoter};

/// Everything a broker needs to start. `Default` is what `spate serve` runs with no flags.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    /// `node.id`: this broker's id in metadata responses.
    pub node_id: i32,
    /// `process.roles`: broker, controller or both.
    pub process_roles: ProcessRoles,
    /// `listeners`, its PLAINTEXT entry: the address clients connect to, as `HOST:PORT`.
    pub listen: String,
    /// `listeners`, the entry named in `controller.listener.names`: where this controller
    /// takes Raft and broker traffic, as `HOST:PORT`; `None` without one.
    pub controller_listen: Option<String>,
    /// `controller.listener.names`: the listener names that are the controller's.
    pub controller_listener_names: Vec<String>,
    /// `controller.quorum.voters`: every controller's id and controller endpoint; empty means
    /// a single node running its own voter in-process.
    pub controller_quorum_voters: Vec<QuorumVoter>,
    /// `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub broker_session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms`: how often a broker heartbeats to the controller.
    pub broker_heartbeat_interval_ms: u64,
    /// `replica.lag.time.max.ms`: a follower not caught up for this long leaves the ISR.
    pub replica_lag_time_max_ms: u64,
    /// `replica.fetch.max.bytes`: bytes a follower asks for per partition in one fetch.
    pub replica_fetch_max_bytes: usize,
    /// `replica.fetch.wait.max.ms`: how long a follower's fetch waits for data at the leader.
    pub replica_fetch_wait_max_ms: u64,
    /// `replica.fetch.min.bytes`: bytes a follower's fetch waits for before it is answered.
    pub replica_fetch_min_bytes: usize,
    /// `replica.fetch.response.max.bytes`: bytes a follower asks for in one whole fetch, over
    /// all its partitions.
    pub replica_fetch_response_max_bytes: usize,
    /// `replica.fetch.backoff.ms`: how long a follower pauses after a failed fetch.
    pub replica_fetch_backoff_ms: u64,
    /// `replica.socket.timeout.ms`: how long a follower's call to its leader may take beyond
    /// the fetch's own wait before the connection is dropped and made again.
    pub replica_socket_timeout_ms: u64,
    /// `default.replication.factor`: replicas of an auto-created topic or a CreateTopics
    /// with -1.
    pub default_replication_factor: i16,
    /// `advertised.listeners`: the address put in metadata; `None` means `listen`.
    pub advertised_listen: Option<String>,
    /// `log.dirs`: where partitions live.
    pub log_dir: PathBuf,
    /// `shards`: executors (one per core); 0 means one per available core.
    pub shards: usize,
    /// `num.partitions`: partitions of an auto-created topic or a CreateTopics with -1.
    pub num_partitions: i32,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// `socket.request.max.bytes`: largest request frame accepted, checked before reading it.
    pub socket_request_max_bytes: usize,
    /// `message.max.bytes`: largest record batch a produce may carry.
    pub message_max_bytes: usize,
    /// `log.segment.bytes`.
    pub log_segment_bytes: u64,
    /// `log.roll.ms`.
    pub log_roll_ms: i64,
    /// `log.index.interval.bytes`.
    pub log_index_interval_bytes: u32,
    /// `log.retention.ms`; -1 keeps data forever.
    pub log_retention_ms: i64,
    /// `log.retention.bytes`; -1 means no size limit.
    pub log_retention_bytes: i64,
    /// `log.retention.check.interval.ms`.
    pub log_retention_check_interval_ms: u64,
    /// `log.flush.interval.messages`: fsync after this many messages; `None` never forces one.
    pub log_flush_interval_messages: Option<u64>,
    /// `log.flush.interval.ms`: fsync data older than this; `None` never forces one.
    pub log_flush_interval_ms: Option<u64>,
    /// `producer.id.expiration.ms`: how long an idempotent producer may stay silent before
    /// its partitions forget its sequence state.
    pub producer_id_expiration_ms: i64,
    /// `io.memory.bytes`: memory each executor registers with io_uring (counts against
    /// RLIMIT_MEMLOCK).
    pub io_memory_bytes: usize,
    /// `spin.before.park.us`: how long an idle executor spins before sleeping, to keep
    /// cross-shard wake-ups fast.
    pub spin_before_park_us: u64,
    /// `cpu.pinning`: whether each shard is pinned to a CPU.
    pub cpu_pinning: CpuPinning,
    /// `min.insync.replicas`: replicas that must have a record before `acks=all` answers.
    pub min_insync_replicas: i32,
    /// `unclean.leader.election.enable`: let an out-of-sync replica become leader (may lose
    /// acknowledged records) rather than wait for an in-sync one.
    pub unclean_leader_election_enable: bool,
    /// `auto.leader.rebalance.enable`: the active controller moves leaders back to their
    /// preferred replicas every `leader.imbalance.check.interval.seconds`.
    pub auto_leader_rebalance_enable: bool,
    pub leader_imbalance_check_interval_seconds: u64,
    /// `group.min.session.timeout.ms`: the shortest session timeout a group member may ask for.
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`: the longest session timeout a group member may ask for.
    pub group_max_session_timeout_ms: i32,
    /// `group.max.size`: members one consumer group may hold.
    pub group_max_size: usize,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group
    /// waits for more members to join.
    pub group_initial_rebalance_delay_ms: i64,
    /// `offsets.topic.num.partitions`: coordinator partitions groups are spread over.
    pub offsets_topic_num_partitions: i32,
    /// `offset.metadata.max.bytes`: the longest metadata string an offset commit may carry.
    pub offset_metadata_max_bytes: usize,
    /// `offsets.topic.segment.bytes`: segment size of the coordinator partitions' logs.
    pub offsets_topic_segment_bytes: u64,
    /// `offsets.topic.replication.factor`: replicas of each `__consumer_offsets` partition.
    /// The topic is created only once that many brokers are alive (as in Kafka); a single
    /// node without `controller.quorum.voters` uses 1.
    pub offsets_topic_replication_factor: i16,
    /// `offsets.commit.timeout.ms`: how long an offset commit waits for every in-sync
    /// replica of its coordinator partition.
    pub offsets_commit_timeout_ms: u64,
    /// `offsets.retention.minutes`: how long the committed offsets of a group without
    /// members are kept after their last commit.
    pub offsets_retention_minutes: i64,
    /// `offsets.retention.check.interval.ms`: how often expired offsets are looked for.
    pub offsets_retention_check_interval_ms: i64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 1,
            process_roles: ProcessRoles::default(),
            listen: "127.0.0.1:9092".to_string(),
            controller_listen: None,
            controller_listener_names: vec!["CONTROLLER".to_string()],
            controller_quorum_voters: Vec::new(),
            broker_session_timeout_ms: 9_000,
            broker_heartbeat_interval_ms: 2_000,
            replica_lag_time_max_ms: 30_000,
            replica_fetch_max_bytes: 1_048_576,
            replica_fetch_wait_max_ms: 500,
            replica_fetch_min_bytes: 1,
            replica_fetch_response_max_bytes: 10_485_760,
            replica_fetch_backoff_ms: 1_000,
            replica_socket_timeout_ms: 30_000,
            default_replication_factor: 1,
            advertised_listen: None,
            log_dir: PathBuf::from("data"),
            shards: 0,
            num_partitions: 1,
            auto_create_topics: true,
            socket_request_max_bytes: 100 * 1024 * 1024,
            message_max_bytes: 1_048_588,
            log_segment_bytes: 1 << 30,
            log_roll_ms: 7 * 24 * 3600 * 1000,
            log_index_interval_bytes: 4096,
            log_retention_ms: 7 * 24 * 3600 * 1000,
            log_retention_bytes: -1,
            log_retention_check_interval_ms: 300_000,
            log_flush_interval_messages: None,
            log_flush_interval_ms: None,
            producer_id_expiration_ms: 86_400_000,
            io_memory_bytes: 2 * 1024 * 1024,
            spin_before_park_us: 0,
            cpu_pinning: CpuPinning::Auto,
            min_insync_replicas: 1,
            unclean_leader_election_enable: false,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_seconds: 300,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_size: 1_000,
            group_initial_rebalance_delay_ms: 3_000,
            offsets_topic_num_partitions: 50,
            offset_metadata_max_bytes: 4096,
            offsets_topic_segment_bytes: 100 * 1024 * 1024,
            offsets_topic_replication_factor: 3,
            offsets_commit_timeout_ms: 5_000,
            offsets_retention_minutes: 7 * 24 * 60,
            offsets_retention_check_interval_ms: 600_000,
        }
    }
}

/// `cpu.pinning`: where the shards' threads run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuPinning {
    /// Pinned, shard `i` to the `i`th CPU the process may use, when there is one shard per
    /// such CPU (the broker owns them); otherwise placed by the kernel, since several
    /// brokers on one host would all pin their first shard to the same first CPU.
    Auto,
    /// Pinned round robin over the CPUs the process may use, whatever the shard count.
    Always,
    /// Placed by the kernel.
    Never,
}

/// Why a profile was refused. Every variant names the file, and all but the first two the key
/// (or, when keys do not fit together, the keys).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin} is not valid YAML: {message}")]
    Yaml { origin: String, message: String },
    #[error(
        "{origin} must be a mapping of flat `key: value` lines such as \
         `log.segment.bytes: 1073741824`, found {found}"
    )]
    NotAMapping { origin: String, found: String },
    #[error("unknown key `{key}` in {origin}{hint}")]
    UnknownKey {
        key: String,
        origin: String,
        hint: Hint,
    },
    #[error("`{key}` in {origin} must be {expected}, found {found}")]
    WrongType {
        key: String,
        origin: String,
        expected: &'static str,
        found: String,
    },
    #[error("`{key}` in {origin} is {value}; allowed: {allowed}")]
    OutOfRange {
        key: String,
        origin: String,
        value: String,
        allowed: String,
    },
    /// Keys that are each valid but do not fit together; the message names them.
    #[error("{origin}: {message}")]
    Inconsistent { origin: String, message: String },
}

/// The end of an unknown-key message: a likely spelling, or what keys look like.
#[derive(Debug)]
pub struct Hint(String);

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl BrokerConfig {
    /// Reads a profile; `None` gives the defaults. Keys the profile leaves out keep their
    /// defaults.
    pub fn load(path: Option<&Path>) -> Result<BrokerConfig, ConfigError> {
        let Some(path) = path else {
            return Ok(BrokerConfig::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        BrokerConfig::parse(&text, &path.display().to_string())
    }

    /// Parses profile text; `origin` (usually the file name) is only used in error messages.
    pub fn parse(yaml: &str, origin: &str) -> Result<BrokerConfig, ConfigError> {
        let doc: Value = serde_yaml_ng::from_str(yaml).map_err(|e| ConfigError::Yaml {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        let mapping = match doc {
            // An empty file (or one holding only comments) is a profile of defaults.
            Value::Null => return Ok(BrokerConfig::default()),
            Value::Mapping(m) => m,
            other => {
                return Err(ConfigError::NotAMapping {
                    origin: origin.to_string(),
                    found: describe(&other),
                })
            }
        };
        let mut pending = Pending::default();
        for (key, value) in &mapping {
            let Value::String(key) = key else {
                return Err(ConfigError::NotAMapping {
                    origin: origin.to_string(),
                    found: format!("the key {}", describe(key)),
                });
            };
            let field = Field { key, value, origin };
            match KEYS.iter().find(|k| k.name == key) {
                Some(k) => (k.apply)(&mut pending, &field)?,
                None => return Err(unknown_key(&field)),
            }
        }
        let listeners = pending.listeners.take();
        let mut cfg = pending.finish();
        let inconsistent = |message| ConfigError::Inconsistent {
            origin: origin.to_string(),
            message,
        };
        let mut client_listener_given = None;
        if let Some(listeners) = listeners {
            let (client, controller) =
                cluster::resolve_listeners(&listeners, &cfg.controller_listener_names)
                    .map_err(|m| inconsistent(format!("`listeners`: {m}")))?;
            client_listener_given = Some(client.is_some());
            if let Some(client) = client {
                cfg.listen = client;
            }
            cfg.controller_listen = controller;
        }
        cluster::check(&cluster::ClusterKeys {
            node_id: cfg.node_id,
            roles: cfg.process_roles,
            voters: &cfg.controller_quorum_voters,
            client_listener_given,
            controller_listen: cfg.controller_listen.as_deref(),
            controller_listener_names: &cfg.controller_listener_names,
            heartbeat_interval_ms: cfg.broker_heartbeat_interval_ms,
            session_timeout_ms: cfg.broker_session_timeout_ms,
            fetch_wait_max_ms: cfg.replica_fetch_wait_max_ms,
            lag_time_max_ms: cfg.replica_lag_time_max_ms,
            socket_timeout_ms: cfg.replica_socket_timeout_ms,
        })
        .map_err(inconsistent)?;
        Ok(cfg)
    }
}

impl BrokerConfig {
    /// `advertised.listeners`, else `listeners`, split into host and port: where clients
    /// reach this broker. A wildcard bind address (`0.0.0.0`, `::`) cannot be connected to
    /// from elsewhere: like Kafka, advertise the machine's host name instead.
    pub fn advertised_address(&self) -> (String, u16) {
        let address = self.advertised_listen.as_deref().unwrap_or(&self.listen);
        let (host, port) = match address.rsplit_once(':') {
            Some((host, port)) => (
                host.trim_start_matches('[').trim_end_matches(']'),
                port.parse().unwrap_or(0),
            ),
            None => (address, 0),
        };
        let host = match host {
            "" | "0.0.0.0" | "::" => host_name(),
            host => host.to_string(),
        };
        (host, port)
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The broker keys AlterConfigs may change while the broker runs (Kafka's dynamic broker
/// configs); every other key needs a restart.
pub const DYNAMIC_KEYS: &[&str] = &[
    "log.retention.ms",
    "log.retention.bytes",
    "log.segment.bytes",
    "log.roll.ms",
    "log.index.interval.bytes",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "message.max.bytes",
    "producer.id.expiration.ms",
];

impl BrokerConfig {
    /// This config with run-time overrides (`key`, `value` text) applied in order, each
    /// checked against the same ranges as a profile. Only [`DYNAMIC_KEYS`] are accepted.
    pub fn with_dynamic(
        &self,
        overrides: &[(String, String)],
    ) -> Result<BrokerConfig, ConfigError> {
        const ORIGIN: &str = "the dynamic broker config";
        let mut pending = Pending {
            cfg: self.clone(),
            ..Pending::default()
        };
        for (key, text) in overrides {
            // The wire carries text; read it as YAML so "100" is a number, as in a profile.
            let value: Value = serde_yaml_ng::from_str(text).unwrap_or(Value::String(text.clone()));
            let field = Field {
                key,
                value: &value,
                origin: ORIGIN,
            };
            match KEYS.iter().find(|k| k.name == key) {
                Some(k) if DYNAMIC_KEYS.contains(&k.name) => (k.apply)(&mut pending, &field)?,
                _ => {
                    return Err(ConfigError::UnknownKey {
                        key: key.clone(),
                        origin: ORIGIN.to_string(),
                        hint: Hint(format!(
                            "; keys changeable at run time: {}",
                            DYNAMIC_KEYS.join(", ")
                        )),
                    })
                }
            }
        }
        Ok(pending.finish())
    }
}

/// Values read so far, plus the keys Kafka resolves by precedence once all are known.
#[derive(Default)]
struct Pending {
    cfg: BrokerConfig,
    /// `listeners` as written; which entry is the controller's depends on
    /// `controller.listener.names`, which may come later in the file.
    listeners: Option<Vec<Listener>>,
    log_dirs: Option<PathBuf>,
    log_dir: Option<PathBuf>,
    roll_ms: Option<i64>,
    roll_hours: Option<i64>,
    retention_ms: Option<i64>,
    retention_minutes: Option<i64>,
    retention_hours: Option<i64>,
}

impl Pending {
    /// Applies Kafka's precedence: `log.dirs` over `log.dir`; `log.roll.ms` over
    /// `log.roll.hours`; `log.retention.ms` over `.minutes` over `.hours`.
    fn finish(self) -> BrokerConfig {
        let mut cfg = self.cfg;
        if let Some(dir) = self.log_dirs.or(self.log_dir) {
            cfg.log_dir = dir;
        }
        if let Some(ms) = self.roll_ms.or(self.roll_hours.map(|h| h * 3_600_000)) {
            cfg.log_roll_ms = ms;
        }
        let retention = self
            .retention_ms
            .or(self.retention_minutes.map(|m| m * 60_000))
            .or(self.retention_hours.map(|h| h * 3_600_000));
        if let Some(ms) = retention {
            // Kafka reads any negative retention as "forever"; store the one spelling of it.
            cfg.log_retention_ms = ms.max(-1);
        }
        cfg
    }
}

/// One `key: value` line of the profile being read.
struct Field<'a> {
    key: &'a str,
    value: &'a Value,
    origin: &'a str,
}

impl Field<'_> {
    fn wrong_type(&self, expected: &'static str) -> ConfigError {
        ConfigError::WrongType {
            key: self.key.to_string(),
            origin: self.origin.to_string(),
            expected,
            found: describe(self.value),
        }
    }

    fn out_of_range(&self, value: impl fmt::Display, allowed: impl Into<String>) -> ConfigError {
        ConfigError::OutOfRange {
            key: self.key.to_string(),
            origin: self.origin.to_string(),
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }

    /// An integer in `min..=max`.
    fn int(&self, min: i64, max: i64) -> Result<i64, ConfigError> {
        let Value::Number(n) = self.value else {
            return Err(self.wrong_type("an integer"));
        };
        if n.is_f64() {
            return Err(self.wrong_type("an integer"));
        }
        match n.as_i64() {
            Some(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(self.out_of_range(n, range_text(min, max))),
        }
    }

    fn boolean(&self) -> Result<bool, ConfigError> {
        match self.value {
            Value::Bool(b) => Ok(*b),
            _ => Err(self.wrong_type("true or false")),
        }
    }

    fn string(&self) -> Result<&str, ConfigError> {
        match self.value {
            Value::String(s) => Ok(s),
            _ => Err(self.wrong_type("a string")),
        }
    }

    /// A flush interval: `null` or Kafka's default `Long.MAX_VALUE` mean "never force one".
    fn flush_interval(&self, min: i64) -> Result<Option<u64>, ConfigError> {
        if self.value.is_null() {
            return Ok(None);
        }
        match self.int(min, i64::MAX)? {
            i64::MAX => Ok(None),
            v => Ok(Some(v as u64)),
        }
    }

    /// One directory; Kafka allows a comma-separated list, Spate one directory for now.
    fn directory(&self) -> Result<PathBuf, ConfigError> {
        let s = self.string()?.trim();
        if s.is_empty() || s.contains(',') {
            return Err(self.out_of_range(
                format!("{s:?}"),
                "one directory (Spate does not spread partitions over several log dirs yet)",
            ));
        }
        Ok(PathBuf::from(s))
    }

    /// A single listener, `PLAINTEXT://HOST:PORT` or `HOST:PORT`, returned as `HOST:PORT`.
    /// An empty host means every interface, as in Kafka.
    fn listener(&self) -> Result<String, ConfigError> {
        const ALLOWED: &str = "one listener `PLAINTEXT://HOST:PORT` or `HOST:PORT` \
                               (Spate serves plaintext only: no SSL or SASL listeners yet)";
        let raw = self.string()?.trim();
        let bad = || self.out_of_range(format!("{raw:?}"), ALLOWED);
        if raw.contains(',') {
            return Err(bad());
        }
        let address = match raw.split_once("://") {
            Some((protocol, rest)) if protocol.eq_ignore_ascii_case("PLAINTEXT") => rest,
            Some(_) => return Err(bad()),
            None => raw,
        };
        let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
        port.parse::<u16>().map_err(|_| bad())?;
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        Ok(format!("{host}:{port}"))
    }
}

fn range_text(min: i64, max: i64) -> String {
    match (min, max) {
        (i64::MIN, i64::MAX) => "any 64-bit integer".to_string(),
        (min, i64::MAX) => format!("an integer >= {min}"),
        (min, max) => format!("an integer from {min} to {max}"),
    }
}

/// A short description of a YAML value for error messages.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".to_string(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Sequence(_) => "a list".to_string(),
        Value::Mapping(_) => "a nested mapping".to_string(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

fn unknown_key(field: &Field<'_>) -> ConfigError {
    let nearest = KEYS
        .iter()
        .map(|k| (edit_distance(field.key, k.name), k.name))
        .min()
        .filter(|(d, _)| *d <= 3);
    let hint = match (nearest, field.value) {
        (Some((_, name)), _) => format!("; did you mean `{name}`?"),
        (None, Value::Mapping(_)) => "; keys are flat, dotted Kafka property names: write \
                                      `log.segment.bytes: 1073741824`, not nested mappings"
            .to_string(),
        (None, _) => "; see tuning/README.md for every key Spate knows".to_string(),
    };
    ConfigError::UnknownKey {
        key: field.key.to_string(),
        origin: field.origin.to_string(),
        hint: Hint(hint),
    }
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

const I32_MAX: i64 = i32::MAX as i64;

/// A key Spate knows and how it lands in the config.
struct Key {
    name: &'static str,
    apply: fn(&mut Pending, &Field<'_>) -> Result<(), ConfigError>,
}

/// Every key a profile may hold, with Kafka's ranges (`ConfigDef` validators) where Kafka has
/// the key. Kafka's INT keys stop at `i32::MAX`, as they do in Kafka.
static KEYS: &[Key] = &[
    Key {
        name: "node.id",
        apply: |p, f| {
            p.cfg.node_id = f.int(0, I32_MAX)? as i32;
            Ok(())
        },
    },
    Key {
        name: "process.roles",
        apply: |p, f| {
            const ALLOWED: &str = "[broker], [controller] or [broker, controller]";
            let names: Vec<&str> = match f.value {
                Value::Sequence(items) => items
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s.as_str()),
                        _ => Err(f.wrong_type("a list of roles such as [broker, controller]")),
                    })
                    .collect::<Result<_, _>>()?,
                // Kafka's properties form: `broker,controller`.
                Value::String(s) => s.split(',').filter(|r| !r.trim().is_empty()).collect(),
                _ => return Err(f.wrong_type("a list of roles such as [broker, controller]")),
            };
            p.cfg.process_roles = ProcessRoles::from_names(names.iter().copied())
                .map_err(|why| f.out_of_range(format!("{names:?} ({why})"), ALLOWED))?;
            Ok(())
        },
    },
    Key {
        name: "listeners",
        apply: |p, f| {
            let text = f.string()?;
            p.listeners = Some(cluster::parse_listeners(text).map_err(|why| {
                f.out_of_range(
                    format!("{text:?} ({why})"),
                    "`PLAINTEXT://HOST:PORT` (or `HOST:PORT`) for clients and, on a \
                     controller, `CONTROLLER://HOST:PORT`, separated by commas; an empty host \
                     means every interface. Spate serves plaintext only (no SSL or SASL \
                     listeners yet)",
                )
            })?);
            Ok(())
        },
    },
    Key {
        name: "controller.listener.names",
        apply: |p, f| {
            let text = f.string()?;
            p.cfg.controller_listener_names =
                cluster::parse_listener_names(text).map_err(|why| {
                    f.out_of_range(
                        format!("{text:?} ({why})"),
                        "listener names separated by commas, such as CONTROLLER",
                    )
                })?;
            Ok(())
        },
    },
    Key {
        name: "controller.quorum.voters",
        apply: |p, f| {
            let text = match f.value {
                Value::Null => "",
                _ => f.string()?,
            };
            p.cfg.controller_quorum_voters = cluster::parse_voters(text).map_err(|why| {
                f.out_of_range(
                    format!("{text:?} ({why})"),
                    "ID@HOST:PORT entries separated by commas, such as \
                     `1@127.0.0.1:19093,2@127.0.0.1:29093,3@127.0.0.1:39093`; empty for a \
                     single node",
                )
            })?;
            Ok(())
        },
    },
    Key {
        name: "broker.session.timeout.ms",
        apply: |p, f| {
            p.cfg.broker_session_timeout_ms = f.int(1, I32_MAX)? as u64;
            Ok(())
        },
    },
    Key {
        name: "broker.heartbeat.interval.ms",
        apply: |p, f| {
            p.cfg.broker_heartbeat_interval_ms = f.int(1, I32_MAX)? as u64;
            Ok(())
        },
    },
    Key {
        name: "replica.lag.time.max.ms",
        apply: |p, f| {
            p.cfg.replica_lag_time_max_ms = f.int(1, i64::MAX)? as u64;
            Ok(())
        },
    },
    Key {
        name: "replica.fetch.max.bytes",
        apply: |p, f| {
            p.cfg.replica_fetch_max_bytes = f.int(0, I32_MAX)? as usize;
            Ok(())
        },
    },
    Key {
        name: "replica.fetch.wait.max.ms",
        apply: |p, f| {
            p.cfg.replica_fetch_wait_max_ms = f.int(0, I32_MAX)? as u64;
            Ok(())
        },
    },
    Key {
        name: "replica.fetch.min.bytes",
        apply: |p, f| {
            p.cfg.replica_fetch_min_bytes = f.int(0, I32_MAX)? as usize;
            Ok(())
        },
    },
    Key {
        name: "replica.fetch.response.max.bytes",
        apply: |p, f| {
            p.cfg.replica_fetch_response_max_bytes = f.int(0, I32_MAX)? as usize;
            Ok(())
        },
    },
    Key {
        name: "replica.fetch.backoff.ms",
        apply: |p, f| {
            p.cfg.replica_fetch_backoff_ms = f.int(0, I32_MAX)? as u64;
            Ok(())
        },
    },
    Key {
        name: "replica.socket.timeout.ms",
        apply: |p, f| {
            p.cfg.replica_socket_timeout_ms = f.int(1, I32_MAX)? as u64;
            Ok(())
        },
    },
    Key {
        name: "default.replication.factor",
        apply: |p, f| {
            p.cfg.default_replication_factor = f.int(1, i64::from(i16::MAX))? as i16;
            Ok(())
        },
    },
    Key {
        name: "advertised.listeners",
        apply: |p, f| {
            let listener = f.listener()?;
            // Clients must be able to dial what metadata tells them.
            if listener.starts_with("0.0.0.0:") {
                return Err(f.out_of_range(
                    format!("{:?}", f.string()?),
                    "a host clients can connect to (not empty or 0.0.0.0)",
                ));
            }
            p.cfg.advertised_listen = Some(listener);
            Ok(())
        },
    },
    Key {
        name: "log.dirs",
        apply: |p, f| {
            p.log_dirs = Some(f.directory()?);
            Ok(())
        },
    },
    Key {
        name: "log.dir",
        apply: |p, f| {
            p.log_dir = Some(f.directory()?);
            Ok(())
        },
    },
    Key {
        name: "shards",
        apply: |p, f| {
            p.cfg.shards = f.int(0, 1024)? as usize;
            Ok(())
        },
    },
    Key {
        name: "num.partitions",
        apply: |p, f| {
            p.cfg.num_partitions = f.int(1, I32_MAX)? as i32;
            Ok(())
        },
    },
    Key {
        name: "auto.create.topics.enable",
        apply: |p, f| {
            p.cfg.auto_create_topics = f.boolean()?;
            Ok(())
        },
    },
    Key {
        name: "socket.request.max.bytes",
        apply: |p, f| {
            p.cfg.socket_request_max_bytes = f.int(1, I32_MAX)? as usize;
            Ok(())
        },
    },
    Key {
        name: "message.max.bytes",
        apply: |p, f| {
            p.cfg.message_max_bytes = f.int(0, I32_MAX)? as usize;
            Ok(())
        },
    },
    Key {
        name: "log.segment.bytes",
        // Kafka 4 refuses segments under 1 MiB.
        apply: |p, f| {
            p.cfg.log_segment_bytes = f.int(1024 * 1024, I32_MAX)? as u64;
            Ok(())
        },
    },
    Key {
        name: "log.roll.ms",
        apply: |p, f| {
            p.roll_ms = Some(f.int(1, i64::MAX)?);
            Ok(())
        },
    },
    Key {
        name: "log.roll.hours",
        apply: |p, f| {
            p.roll_hours = Some(f.int(1, I32_MAX)?);
            Ok(())
        },
    },
    Key {
        name: "log.index.interval.bytes",
        apply: |p, f| {
            p.cfg.log_index_interval_bytes = f.int(0, I32_MAX)? as u32;
            Ok(())
        },
    },
    Key {
        name: "log.retention.ms",
        apply: |p, f| {
            p.retention_ms = Some(f.int(i64::MIN, i64::MAX)?);
            Ok(())
        },
    },
    Key {
        name: "log.retention.minutes",
        apply: |p, f| {
            p.retention_minutes = Some(f.int(i32::MIN.into(), I32_MAX)?);
            Ok(())
        },
    },
    Key {
        name: "log.retention.hours",
        apply: |p, f| {
            p.retention_hours = Some(f.int(i32::MIN.into(), I32_MAX)?);
            Ok(())
        },
    },
    Key {
        name: "log.retention.bytes",
        // Kafka reads any negative size as "no limit"; keep the one spelling, -1.
        apply: |p, f| {
            p.cfg.log_retention_bytes = f.int(i64::MIN, i64::MAX)?.max(-1);
            Ok(())
        },
    },
    Key {
        name: "log.retention.check.interval.ms",
        apply: |p, f| {
            p.cfg.log_retention_check_interval_ms = f.int(1, i64::MAX)? as u64;
            Ok(())
        },
    },
    Key {
        name: "log.flush.interval.messages",
        apply: |p, f| {
            p.cfg.log_flush_interval_messages = f.flush_interval(1)?;
            Ok(())
        },
    },
    Key {
        name: "log.flush.interval.ms",
        apply: |p, f| {
            p.cfg.log_flush_interval_ms = f.flush_interval(0)?;
            Ok(())
        },
    },
    Key {
        name: "producer.id.expiration.ms",
        apply: |p, f| {
            p.cfg.producer_id_expiration_ms = f.int(1, i64::MAX)?;
            Ok(())
        },
    },
    Key {
        name: "min.insync.replicas",
        apply: |p, f| {
            p.cfg.min_insync_replicas = f.int(1, I32_MAX)? as i32;
            Ok(())
        },
    },
    Key {
        name: "unclean.leader.election.enable",
        apply: |p, f| {
            p.cfg.unclean_leader_election_enable = f.boolean()?;
            Ok(())
        },
    },
    Key {
        name: "auto.leader.rebalance.enable",
        apply: |p, f| {
            p.cfg.auto_leader_rebalance_enable = f.boolean()?;
            Ok(())
        },
    },
    Key {
        name: "leader.imbalance.check.interval.seconds",
        apply: |p, f| {
            p.cfg.leader_imbalance_check_interval_seconds = f.int(1, I32_MAX)? as u64;
            Ok(())
        },
    },
    Key {
        name: "group.min.session.timeout.ms",
        apply: |p, f| {
            p.cfg.group_min_session_timeout_ms = f.int(0, I32_MAX)? as i32;
            Ok(())
        },
    },
    Key {
        name: "group.max.session.timeout.ms",
        apply: |p, f| {
            p.cfg.group_max_session_timeout_ms = f.int(0, I32_MAX)? as i32;
            Ok(())
        },
    },
    Key {
        name: "group.max.size",
        apply: |p, f| {
            p.cfg.group_max_size = f.int(1, I32_MAX)? as usize;
            Ok(())
        },
    },
    Key {
        name: "group.initial.rebalance.delay.ms",
        apply: |p, f| {
            p.cfg.group_initial_rebalance_delay_ms = f.int(0, I32_MAX)?;
            Ok(())
        },
    },
    Key {
        name: "offsets.topic.num.partitions",
        apply: |p, f| {
            p.cfg.offsets_topic_num_partitions = f.int(1, I32_MAX)? as i32;
            Ok(())
        },
    },
    Key {
        name: "offset.metadata.max.bytes",
        apply: |p, f| {
            p.cfg.offset_metadata_max_bytes = f.int(0, I32_MAX)? as usize;
            Ok(())
        },
    },
    Key {
        name: "offsets.topic.segment.bytes",
        apply: |p, f| {
            p.cfg.offsets_topic_segment_bytes = f.int(1, I32_MAX)? as u64;
            Ok(())
        },
    },
    Key {
        name: "offsets.topic.replication.factor",
        apply: |p, f| {
            p.cfg.offsets_topic_replication_factor = f.int(1, i64::from(i16::MAX))? as i16;
            Ok(())
        },
    },
    Key {
        name: "offsets.commit.timeout.ms",
        apply: |p, f| {
            p.cfg.offsets_commit_timeout_ms = f.int(1, I32_MAX)? as u64;
            Ok(())
        },
    },
    Key {
        name: "offsets.retention.minutes",
        apply: |p, f| {
            p.cfg.offsets_retention_minutes = f.int(1, I32_MAX)?;
            Ok(())
        },
    },
    Key {
        name: "offsets.retention.check.interval.ms",
        apply: |p, f| {
            p.cfg.offsets_retention_check_interval_ms = f.int(1, i64::MAX)?;
            Ok(())
        },
    },
    Key {
        name: "io.memory.bytes",
        // glommio needs room for its rings' buffers; more than 1 GiB of pinned memory per
        // core is almost certainly a typo.
        apply: |p, f| {
            p.cfg.io_memory_bytes = f.int(64 * 1024, 1 << 30)? as usize;
            Ok(())
        },
    },
    Key {
        name: "spin.before.park.us",
        apply: |p, f| {
            p.cfg.spin_before_park_us = f.int(0, 1_000_000)? as u64;
            Ok(())
        },
    },
    Key {
        name: "cpu.pinning",
        apply: |p, f| {
            p.cfg.cpu_pinning = match f.string()? {
                "auto" => CpuPinning::Auto,
                "always" => CpuPinning::Always,
                "never" => CpuPinning::Never,
                other => return Err(f.out_of_range(format!("{other:?}"), "auto, always or never")),
            };
            Ok(())
        },
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertises_the_listener_or_the_host_name_for_a_wildcard() {
        let mut config = BrokerConfig {
            listen: "127.0.0.1:9092".into(),
            ..BrokerConfig::default()
        };
        assert_eq!(config.advertised_address(), ("127.0.0.1".into(), 9092));
        config.listen = "0.0.0.0:9093".into();
        let (host, port) = config.advertised_address();
        assert_eq!(port, 9093);
        assert!(!host.is_empty() && host != "0.0.0.0");
        config.advertised_listen = Some("[::1]:19092".into());
        assert_eq!(config.advertised_address(), ("::1".into(), 19092));
    }

    fn parse(yaml: &str) -> Result<BrokerConfig, ConfigError> {
        BrokerConfig::parse(yaml, "test.yaml")
    }

    fn error(yaml: &str) -> String {
        parse(yaml)
            .expect_err("profile should be refused")
            .to_string()
    }

    #[test]
    fn dynamic_overrides_use_the_profile_ranges() {
        let base = parse("log.retention.ms: 1000\nlog.segment.bytes: 2000000").unwrap();
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let cfg = base
            .with_dynamic(&pairs(&[
                ("log.retention.bytes", "5000"),
                ("log.flush.interval.ms", "9223372036854775807"),
                ("log.retention.ms", "-7"),
            ]))
            .unwrap();
        assert_eq!(cfg.log_retention_bytes, 5000);
        assert_eq!(cfg.log_retention_ms, -1);
        assert_eq!(cfg.log_flush_interval_ms, None);
        assert_eq!(cfg.log_segment_bytes, 2_000_000);
        let err = |v| base.with_dynamic(&pairs(v)).unwrap_err().to_string();
        assert!(err(&[("log.segment.bytes", "10")]).contains("`log.segment.bytes`"));
        assert!(err(&[("log.retention.ms", "soon")]).contains("an integer"));
        assert!(err(&[("log.dirs", "/tmp")]).contains("`log.dirs`"));
        assert!(err(&[("no.such.key", "1")]).contains("`no.such.key`"));
    }

    #[test]
    fn none_and_empty_files_give_defaults() {
        assert_eq!(BrokerConfig::load(None).unwrap(), BrokerConfig::default());
        assert_eq!(parse("").unwrap(), BrokerConfig::default());
        assert_eq!(
            parse("# only a comment\n").unwrap(),
            BrokerConfig::default()
        );
    }

    #[test]
    fn every_key_lands_in_its_field() {
        let cfg = parse(
            "node.id: 7\n\
             process.roles: [broker, controller]\n\
             listeners: \"PLAINTEXT://10.0.0.1:19092,CTL://10.0.0.1:19093\"\n\
             controller.listener.names: CTL\n\
             controller.quorum.voters: \"7@10.0.0.1:19093,8@10.0.0.2:19093\"\n\
             broker.session.timeout.ms: 6000\n\
             broker.heartbeat.interval.ms: 1000\n\
             replica.lag.time.max.ms: 10000\n\
             replica.fetch.max.bytes: 2097152\n\
             replica.fetch.wait.max.ms: 250\n\
             replica.fetch.min.bytes: 16\n\
             replica.fetch.response.max.bytes: 20971520\n\
             replica.fetch.backoff.ms: 200\n\
             replica.socket.timeout.ms: 15000\n\
             default.replication.factor: 3\n\
             advertised.listeners: broker7.example:9092\n\
             log.dirs: /var/lib/spate\n\
             shards: 4\n\
             num.partitions: 6\n\
             auto.create.topics.enable: false\n\
             socket.request.max.bytes: 209715200\n\
             message.max.bytes: 10485760\n\
             log.segment.bytes: 536870912\n\
             log.roll.ms: 3600000\n\
             log.index.interval.bytes: 8192\n\
             log.retention.ms: 86400000\n\
             log.retention.bytes: 1000000000\n\
             log.retention.check.interval.ms: 60000\n\
             log.flush.interval.messages: 1\n\
             log.flush.interval.ms: 1000\n\
             producer.id.expiration.ms: 3600000\n\
             min.insync.replicas: 2\n\
             unclean.leader.election.enable: true\n\
             auto.leader.rebalance.enable: false\n\
             leader.imbalance.check.interval.seconds: 30\n\
             io.memory.bytes: 4194304\n\
             spin.before.park.us: 50\n\
             cpu.pinning: always\n\
             group.min.session.timeout.ms: 1000\n\
             group.max.session.timeout.ms: 60000\n\
             group.max.size: 50\n\
             group.initial.rebalance.delay.ms: 0\n\
             offsets.topic.num.partitions: 8\n\
             offset.metadata.max.bytes: 100\n\
             offsets.topic.segment.bytes: 1048576\n\
             offsets.topic.replication.factor: 2\n\
             offsets.commit.timeout.ms: 7000\n\
             offsets.retention.minutes: 60\n\
             offsets.retention.check.interval.ms: 1000\n",
        )
        .unwrap();
        let expected = BrokerConfig {
            node_id: 7,
            process_roles: ProcessRoles::default(),
            listen: "10.0.0.1:19092".to_string(),
            controller_listen: Some("10.0.0.1:19093".to_string()),
            controller_listener_names: vec!["CTL".to_string()],
            controller_quorum_voters: vec![
                QuorumVoter {
                    id: 7,
                    host: "10.0.0.1".into(),
                    port: 19093,
                },
                QuorumVoter {
                    id: 8,
                    host: "10.0.0.2".into(),
                    port: 19093,
                },
            ],
            broker_session_timeout_ms: 6000,
            broker_heartbeat_interval_ms: 1000,
            replica_lag_time_max_ms: 10_000,
            replica_fetch_max_bytes: 2_097_152,
            replica_fetch_wait_max_ms: 250,
            replica_fetch_min_bytes: 16,
            replica_fetch_response_max_bytes: 20_971_520,
            replica_fetch_backoff_ms: 200,
            replica_socket_timeout_ms: 15_000,
            default_replication_factor: 3,
            advertised_listen: Some("broker7.example:9092".to_string()),
            log_dir: PathBuf::from("/var/lib/spate"),
            shards: 4,
            num_partitions: 6,
            auto_create_topics: false,
            socket_request_max_bytes: 209_715_200,
            message_max_bytes: 10_485_760,
            log_segment_bytes: 536_870_912,
            log_roll_ms: 3_600_000,
            log_index_interval_bytes: 8192,
            log_retention_ms: 86_400_000,
            log_retention_bytes: 1_000_000_000,
            log_retention_check_interval_ms: 60_000,
            log_flush_interval_messages: Some(1),
            log_flush_interval_ms: Some(1000),
            producer_id_expiration_ms: 3_600_000,
            io_memory_bytes: 4 * 1024 * 1024,
            spin_before_park_us: 50,
            cpu_pinning: CpuPinning::Always,
            min_insync_replicas: 2,
            unclean_leader_election_enable: true,
            auto_leader_rebalance_enable: false,
            leader_imbalance_check_interval_seconds: 30,
            group_min_session_timeout_ms: 1000,
            group_max_session_timeout_ms: 60_000,
            group_max_size: 50,
            group_initial_rebalance_delay_ms: 0,
            offsets_topic_num_partitions: 8,
            offset_metadata_max_bytes: 100,
            offsets_topic_segment_bytes: 1_048_576,
            offsets_topic_replication_factor: 2,
            offsets_commit_timeout_ms: 7_000,
            offsets_retention_minutes: 60,
            offsets_retention_check_interval_ms: 1000,
        };
        assert_eq!(cfg, expected);
    }

    #[test]
    fn retention_follows_kafka_precedence() {
        let hours = parse("log.retention.hours: 2").unwrap();
        assert_eq!(hours.log_retention_ms, 2 * 3_600_000);
        let minutes = parse("log.retention.hours: 2\nlog.retention.minutes: 3").unwrap();
        assert_eq!(minutes.log_retention_ms, 3 * 60_000);
        let ms = parse("log.retention.minutes: 3\nlog.retention.ms: 5\nlog.retention.hours: 2");
        assert_eq!(ms.unwrap().log_retention_ms, 5);
        assert_eq!(
            parse("log.retention.hours: -1").unwrap().log_retention_ms,
            -1
        );
        assert_eq!(parse("log.retention.ms: -7").unwrap().log_retention_ms, -1);
    }

    #[test]
    fn roll_and_dirs_follow_kafka_precedence() {
        assert_eq!(parse("log.roll.hours: 1").unwrap().log_roll_ms, 3_600_000);
        let both = parse("log.roll.ms: 10\nlog.roll.hours: 1").unwrap();
        assert_eq!(both.log_roll_ms, 10);
        assert_eq!(parse("log.dir: a").unwrap().log_dir, PathBuf::from("a"));
        let both = parse("log.dir: a\nlog.dirs: b").unwrap();
        assert_eq!(both.log_dir, PathBuf::from("b"));
    }

    #[test]
    fn flush_never_has_three_spellings() {
        for never in ["~", "null", "9223372036854775807"] {
            let cfg = parse(&format!(
                "log.flush.interval.messages: {never}\nlog.flush.interval.ms: {never}"
            ))
            .unwrap();
            assert_eq!(cfg.log_flush_interval_messages, None, "{never}");
            assert_eq!(cfg.log_flush_interval_ms, None, "{never}");
        }
        let msg = error("log.flush.interval.messages: 0");
        assert!(
            msg.contains("`log.flush.interval.messages`") && msg.contains(">= 1"),
            "{msg}"
        );
    }

    #[test]
    fn listeners_accept_kafka_and_plain_forms() {
        assert_eq!(
            parse("listeners: \"127.0.0.1:9\"").unwrap().listen,
            "127.0.0.1:9"
        );
        assert_eq!(
            parse("listeners: \"PLAINTEXT://:9092\"").unwrap().listen,
            "0.0.0.0:9092"
        );
        assert_eq!(
            parse("listeners: \"[::1]:9092\"").unwrap().listen,
            "[::1]:9092"
        );
        for bad in [
            "SSL://host:9093",
            "PLAINTEXT://a:1,PLAINTEXT://b:2",
            "host",
            "host:99999",
        ] {
            let msg = error(&format!("listeners: \"{bad}\""));
            assert!(
                msg.contains("`listeners`") && msg.contains("PLAINTEXT"),
                "{msg}"
            );
        }
        let msg = error("advertised.listeners: \"PLAINTEXT://:9092\"");
        assert!(
            msg.contains("`advertised.listeners`") && msg.contains("0.0.0.0"),
            "{msg}"
        );
    }

    #[test]
    fn cluster_keys_parse_in_kafkas_forms() {
        let cfg = parse(
            "node.id: 4\n\
             process.roles: broker\n\
             listeners: \"PLAINTEXT://:9092\"\n\
             controller.quorum.voters: \"1@h1:9093,2@h2:9093,3@h3:9093\"\n",
        )
        .unwrap();
        assert_eq!(
            cfg.process_roles,
            ProcessRoles {
                broker: true,
                controller: false
            }
        );
        assert_eq!(cfg.listen, "0.0.0.0:9092");
        assert_eq!(cfg.controller_listen, None);
        let ids: Vec<_> = cfg.controller_quorum_voters.iter().map(|v| v.id).collect();
        assert_eq!(ids, [1, 2, 3]);
        // A controller-only node has no client listener; `listen` keeps its default.
        let cfg = parse(
            "node.id: 2\n\
             process.roles: [controller]\n\
             listeners: \"CONTROLLER://127.0.0.1:29093\"\n\
             controller.quorum.voters: \"1@h1:9093,2@127.0.0.1:29093\"\n",
        )
        .unwrap();
        assert!(!cfg.process_roles.broker && cfg.process_roles.controller);
        assert_eq!(cfg.controller_listen.as_deref(), Some("127.0.0.1:29093"));
        assert_eq!(cfg.listen, BrokerConfig::default().listen);
        // Listener names may be given after the listeners.
        let cfg =
            parse("listeners: \"PLAINTEXT://h:1,RAFT://h:2\"\ncontroller.listener.names: RAFT\n")
                .unwrap();
        assert_eq!(cfg.controller_listen.as_deref(), Some("h:2"));
        // A null voters list is a single node, as is leaving it out.
        assert!(parse("controller.quorum.voters: null")
            .unwrap()
            .controller_quorum_voters
            .is_empty());
    }

    #[test]
    fn bad_cluster_values_name_the_key() {
        for (yaml, key) in [
            ("process.roles: [broker, zookeeper]", "`process.roles`"),
            ("process.roles: []", "`process.roles`"),
            ("process.roles: 3", "`process.roles`"),
            (
                "controller.quorum.voters: \"1@h\"",
                "`controller.quorum.voters`",
            ),
            ("controller.quorum.voters: 7", "`controller.quorum.voters`"),
            (
                "controller.listener.names: \"\"",
                "`controller.listener.names`",
            ),
            (
                "broker.session.timeout.ms: 0",
                "`broker.session.timeout.ms`",
            ),
            (
                "broker.heartbeat.interval.ms: -5",
                "`broker.heartbeat.interval.ms`",
            ),
            ("replica.lag.time.max.ms: 0", "`replica.lag.time.max.ms`"),
            ("replica.fetch.max.bytes: -1", "`replica.fetch.max.bytes`"),
            (
                "replica.fetch.wait.max.ms: x",
                "`replica.fetch.wait.max.ms`",
            ),
            ("replica.fetch.min.bytes: -1", "`replica.fetch.min.bytes`"),
            (
                "replica.fetch.response.max.bytes: -1",
                "`replica.fetch.response.max.bytes`",
            ),
            ("replica.fetch.backoff.ms: -1", "`replica.fetch.backoff.ms`"),
            (
                "replica.socket.timeout.ms: 0",
                "`replica.socket.timeout.ms`",
            ),
            (
                "default.replication.factor: 0",
                "`default.replication.factor`",
            ),
            (
                "default.replication.factor: 40000",
                "`default.replication.factor`",
            ),
            ("listeners: \"INTERNAL://h:1\"", "`listeners`"),
        ] {
            let msg = error(yaml);
            assert!(msg.contains(key), "{yaml}: {msg}");
        }
    }

    #[test]
    fn cluster_keys_must_fit_together() {
        let voters = "controller.quorum.voters: \"1@h:9093,2@h:9094\"\n";
        for (yaml, expect) in [
            // A controller with voters must be one of them...
            (
                format!("node.id: 3\nlisteners: \"PLAINTEXT://h:1,CONTROLLER://h:2\"\n{voters}"),
                "not among `controller.quorum.voters` (1, 2)",
            ),
            // ...and have a controller listener.
            (
                format!("node.id: 1\nlisteners: \"PLAINTEXT://h:1\"\n{voters}"),
                "needs a listener named in `controller.listener.names`",
            ),
            (
                format!("node.id: 1\n{voters}"),
                "needs a listener named in `controller.listener.names`",
            ),
            // A broker-only node needs voters, is not one, and has no controller listener.
            (
                "process.roles: [broker]\n".to_string(),
                "needs `controller.quorum.voters`",
            ),
            (
                format!("node.id: 2\nprocess.roles: [broker]\n{voters}"),
                "a voter must have the controller role",
            ),
            (
                format!(
                    "node.id: 5\nprocess.roles: [broker]\n\
                     listeners: \"PLAINTEXT://h:1,CONTROLLER://h:2\"\n{voters}"
                ),
                "must not have a controller listener",
            ),
            // A broker needs a client listener; a controller-only node needs voters.
            (
                format!(
                    "node.id: 1\nprocess.roles: [broker, controller]\n\
                     listeners: \"CONTROLLER://h:2\"\n{voters}"
                ),
                "needs a PLAINTEXT listener",
            ),
            (
                "process.roles: [controller]\n".to_string(),
                "a controller-only node",
            ),
            // Heartbeats must come more often than the session times out.
            (
                "broker.session.timeout.ms: 2000\n".to_string(),
                "`broker.heartbeat.interval.ms` (2000) must be less than \
                 `broker.session.timeout.ms` (2000)",
            ),
            (
                "replica.fetch.wait.max.ms: 40000\n".to_string(),
                "must not exceed `replica.lag.time.max.ms`",
            ),
            // A follower's call must be allowed at least the fetch's wait.
            (
                "replica.socket.timeout.ms: 400\n".to_string(),
                "`replica.socket.timeout.ms` (400) must be at least \
                 `replica.fetch.wait.max.ms` (500)",
            ),
        ] {
            let msg = error(&yaml);
            assert!(msg.contains(expect), "{yaml}: {msg}");
            assert!(msg.starts_with("test.yaml: "), "{msg}");
        }
        // The same keys, fitting together, load.
        parse(&format!(
            "node.id: 2\nlisteners: \"PLAINTEXT://h:1,CONTROLLER://h:9094\"\n{voters}"
        ))
        .unwrap();
        parse(&format!("node.id: 5\nprocess.roles: [broker]\n{voters}")).unwrap();
        parse("broker.heartbeat.interval.ms: 100\nbroker.session.timeout.ms: 101").unwrap();
        parse("replica.fetch.wait.max.ms: 500\nreplica.socket.timeout.ms: 500").unwrap();
    }

    #[test]
    fn unknown_key_suggests_the_nearest() {
        let msg = error("log.segmnt.bytes: 1073741824");
        assert_eq!(
            msg,
            "unknown key `log.segmnt.bytes` in test.yaml; did you mean `log.segment.bytes`?"
        );
        let msg = error("completely.different.thing: 1");
        assert!(msg.contains("`completely.different.thing`"), "{msg}");
        assert!(msg.contains("tuning/README.md"), "{msg}");
        let msg = error("log:\n  segment:\n    bytes: 1");
        assert!(
            msg.contains("unknown key `log`") && msg.contains("flat"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_types_name_the_key_and_the_type() {
        let msg = error("log.segment.bytes: \"1GiB\"");
        assert_eq!(
            msg,
            "`log.segment.bytes` in test.yaml must be an integer, found the string \"1GiB\""
        );
        let msg = error("num.partitions: 1.5");
        assert!(
            msg.contains("`num.partitions`") && msg.contains("an integer"),
            "{msg}"
        );
        let msg = error("auto.create.topics.enable: 1");
        assert!(msg.contains("`auto.create.topics.enable`") && msg.contains("true or false"));
        let msg = error("log.dirs: [a, b]");
        assert!(
            msg.contains("`log.dirs`") && msg.contains("a string"),
            "{msg}"
        );
        let msg = error("shards: ~");
        assert!(msg.contains("`shards`") && msg.contains("null"), "{msg}");
    }

    #[test]
    fn out_of_range_values_name_the_key_and_the_range() {
        let msg = error("log.segment.bytes: 1000");
        assert_eq!(
            msg,
            "`log.segment.bytes` in test.yaml is 1000; allowed: an integer from 1048576 to 2147483647"
        );
        let msg = error("num.partitions: 0");
        assert!(
            msg.contains("`num.partitions`") && msg.contains("from 1 to"),
            "{msg}"
        );
        let msg = error("message.max.bytes: 4294967296");
        assert!(
            msg.contains("`message.max.bytes`") && msg.contains("2147483647"),
            "{msg}"
        );
        let msg = error("log.retention.ms: 18446744073709551615");
        assert!(msg.contains("`log.retention.ms`"), "{msg}");
        let msg = error("log.dirs: \"a,b\"");
        assert!(
            msg.contains("`log.dirs`") && msg.contains("one directory"),
            "{msg}"
        );
        let msg = error("producer.id.expiration.ms: 0");
        assert!(
            msg.contains("`producer.id.expiration.ms`") && msg.contains(">= 1"),
            "{msg}"
        );
        let msg = error("io.memory.bytes: 1024");
        assert!(
            msg.contains("`io.memory.bytes`") && msg.contains("65536"),
            "{msg}"
        );
        let msg = error("cpu.pinning: sometimes");
        assert!(
            msg.contains("`cpu.pinning`") && msg.contains("auto, always or never"),
            "{msg}"
        );
    }

    #[test]
    fn malformed_files_are_refused_not_panicked_on() {
        assert!(error("a: [unclosed").contains("not valid YAML"));
        assert!(error("- a\n- b").contains("must be a mapping"));
        assert!(error("42").contains("must be a mapping"));
        assert!(error("1: 2").contains("must be a mapping"));
        let dup = error("shards: 1\nshards: 2");
        assert!(dup.contains("shards"), "{dup}");
        let missing = BrokerConfig::load(Some(Path::new("/nonexistent/x.yaml"))).unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/x.yaml"),
            "{missing}"
        );
    }

    #[test]
    fn every_profile_in_tuning_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tuning");
        let mut profiles = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                BrokerConfig::load(Some(&path)).unwrap_or_else(|e| panic!("{e}"));
                profiles += 1;
            }
        }
        assert!(profiles >= 3, "expected the profiles in {}", dir.display());
        let durable = BrokerConfig::load(Some(&dir.join("durable.yaml"))).unwrap();
        assert_eq!(durable.log_flush_interval_messages, Some(1));
        let default = BrokerConfig::load(Some(&dir.join("default.yaml"))).unwrap();
        assert_eq!(default, BrokerConfig::default());
    }

    #[test]
    fn every_key_is_documented_in_the_tuning_readme() {
        let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tuning/README.md");
        let readme = std::fs::read_to_string(readme).unwrap();
        for key in KEYS {
            assert!(readme.contains(&format!("`{}`", key.name)), "{}", key.name);
        }
    }
}
