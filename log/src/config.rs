//! Per-partition log settings, named after Kafka's topic-level configs.

/// One partition's log settings. `Default` gives Kafka's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `log.segment.bytes`: roll to a new segment before the active one would exceed this.
    pub segment_bytes: u64,
    /// `log.roll.ms`: roll when the active segment's first batch is older than this.
    pub roll_ms: i64,
    /// `log.index.interval.bytes`: bytes of batches between two sparse index entries.
    pub index_interval_bytes: u32,
    /// `retention.ms`: delete segments whose newest timestamp is older (-1 = unlimited).
    pub retention_ms: i64,
    /// `retention.bytes`: delete oldest segments while the log is larger (-1 = unlimited).
    pub retention_bytes: i64,
    /// `flush.messages`: fsync once this many offsets are unflushed. None = never (Kafka's
    /// default: durability comes from replication); Some(1) = every batch.
    pub flush_messages: Option<u64>,
    /// `flush.ms`: fsync on append when the last fsync is at least this old. None = never.
    pub flush_ms: Option<u64>,
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            roll_ms: 7 * DAY_MS,
            index_interval_bytes: 4096,
            retention_ms: 7 * DAY_MS,
            retention_bytes: -1,
            flush_messages: None,
            flush_ms: None,
        }
    }
}
