//! spate-log: one partition's log on disk, stored exactly as Kafka stores it.
//!
//! It owns the segments (`NNNNNNNNNNNNNNNNNNNN.log` of v2 record batches), their sparse
//! offset and time indexes (`.index`, `.timeindex`), recovery after a crash, retention, the
//! leader-epoch cache (`leader-epoch-checkpoint`) and the per-partition checkpoints
//! (recovery point, high watermark, log start, clean-shutdown marker). No network, no
//! shards: the broker holds one `Rc<PartitionLog>` per partition on the shard that owns it.
//!
//! The broker's view: [`PartitionLog::open`] a directory; [`PartitionLog::append`] record
//! batches (offsets assigned, group-committed); [`PartitionLog::read`] a [`ReadSlice`] of
//! whole batches to send without copying; move the high watermark; call
//! [`PartitionLog::flush`] and [`PartitionLog::enforce_retention`] periodically;
//! [`PartitionLog::close`] on shutdown. Errors carry the Kafka error code they map to
//! ([`LogError::kafka_error`]). Appends deduplicate idempotent producers' retries and
//! check their sequences (`producer_state`), as Kafka's `ProducerStateManager` does.

mod checkpoint;
mod clock;
mod config;
mod deletion;
mod error;
mod inline_write;
mod leader_epoch;
mod offset_index;
mod partition_log;
mod producer_snapshot;
mod producer_state;
mod recovery;
mod retention;
mod segment;
mod time_index;

pub use checkpoint::{
    CLEAN_SHUTDOWN_FILE, HIGH_WATERMARK_FILE, LOG_START_FILE, RECOVERY_POINT_FILE,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::LogConfig;
pub use error::LogError;
pub use leader_epoch::FILE_NAME as LEADER_EPOCH_FILE;
pub use partition_log::{AppendInfo, LogStats, PartitionLog, ProducerInfo, ReadSlice, SharedSlice};
pub use producer_snapshot::SNAPSHOT_SUFFIX as PRODUCER_SNAPSHOT_SUFFIX;
pub use producer_state::{BATCHES_TO_RETAIN, DEFAULT_PRODUCER_ID_EXPIRATION_MS};
pub use segment::SegmentFile;
