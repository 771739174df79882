//! The broker's configuration, read from a `tuning/*.yaml` profile. Keys are Kafka's broker
//! property names wherever Kafka has one.

use std::path::PathBuf;

/// Everything a broker needs to start. `Default` is what `spate serve` runs with no flags.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    /// `node.id`: this broker's id in metadata responses.
    pub node_id: i32,
    /// `listeners`: the address clients connect to, as `HOST:PORT`.
    pub listen: String,
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
    /// `io.memory.bytes`: memory each executor registers with io_uring (counts against
    /// RLIMIT_MEMLOCK).
    pub io_memory_bytes: usize,
    /// `spin.before.park.us`: how long an idle executor spins before sleeping, to keep
    /// cross-shard wake-ups fast.
    pub spin_before_park_us: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 1,
            listen: "127.0.0.1:9092".to_string(),
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
            io_memory_bytes: 2 * 1024 * 1024,
            spin_before_park_us: 0,
        }
    }
}
