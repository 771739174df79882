//! What replication needs from outside the shard, as traits: the controller that commits ISR
//! changes ([`IsrUpdater`]) and the Kafka client followers use to reach leaders
//! ([`LeaderConnector`], [`LeaderLink`]). The shard cannot depend on the network crate, so
//! `spate-net` implements the client (`inter_broker.rs`) and the broker wires both in.

use std::fmt;
use std::rc::Rc;

use bytes::BytesMut;
use futures_util::future::LocalBoxFuture;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::controller::image::PartitionAssignment;

/// An ISR change a leader asks the controller to commit (Kafka's AlterPartition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterIsr {
    pub topic: String,
    pub partition: i32,
    pub leader_id: i32,
    /// The leader epoch and partition epoch the leader holds: a stale pair is refused.
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

/// The controller side of ISR changes.
pub trait IsrUpdater {
    /// Commits `change`; answers the partition's new state, or Kafka's refusal
    /// (FENCED_LEADER_EPOCH, INVALID_UPDATE_VERSION, INELIGIBLE_REPLICA, ...).
    fn alter_partition(
        &self,
        change: AlterIsr,
    ) -> LocalBoxFuture<'static, Result<PartitionAssignment, ResponseError>>;
}

/// Where a broker listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BrokerEndpoint {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
}

/// Makes the client a follower uses for one leader broker.
pub trait LeaderConnector {
    /// A link to `leader`. Connecting may be lazy: errors show up on the link's calls.
    fn link(&self, leader: &BrokerEndpoint) -> Rc<dyn LeaderLink>;
}

/// Why a call to a leader failed as a whole (no answer per partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkError(pub String);

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The Kafka requests a follower sends its leader.
pub trait LeaderLink {
    /// A Fetch with `replica_id` set: records up to the leader's log end.
    fn fetch(
        &self,
        request: ReplicaFetch,
    ) -> LocalBoxFuture<'_, Result<Vec<FetchedPartition>, LinkError>>;

    /// OffsetForLeaderEpoch: where each asked epoch ends on the leader.
    fn epoch_end_offsets(
        &self,
        replica_id: i32,
        queries: Vec<EpochQuery>,
    ) -> LocalBoxFuture<'_, Result<Vec<EpochEnd>, LinkError>>;

    /// ListOffsets for one partition: the offset the leader lists for `query.timestamp`
    /// ([`EARLIEST`] or [`LATEST`]; Kafka's `fetchEarliestOffset` / `fetchLatestOffset`).
    /// A follower whose fetch offset is out of range asks both to tell "past the leader's
    /// log end" (truncate) from "behind the leader's log start" (restart there).
    fn list_offset(
        &self,
        replica_id: i32,
        query: OffsetQuery,
    ) -> LocalBoxFuture<'_, Result<Result<i64, ResponseError>, LinkError>>;
}

/// A follower's Fetch (Kafka's field names).
#[derive(Debug, Clone)]
pub struct ReplicaFetch {
    pub replica_id: i32,
    pub max_wait_ms: i32,
    pub min_bytes: i32,
    pub max_bytes: i32,
    pub partitions: Vec<FetchPartition>,
}

#[derive(Debug, Clone)]
pub struct FetchPartition {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub fetch_offset: i64,
    /// The follower's idea of the leader epoch: the leader refuses a mismatch.
    pub current_leader_epoch: i32,
    pub log_start_offset: i64,
    pub partition_max_bytes: i32,
}

/// One partition of a Fetch response.
#[derive(Debug)]
pub struct FetchedPartition {
    pub topic: String,
    pub partition: i32,
    pub error: Option<ResponseError>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Whole batches, offsets and epochs as the leader stored them.
    pub records: BytesMut,
}

#[derive(Debug, Clone)]
pub struct EpochQuery {
    pub topic: String,
    pub partition: i32,
    pub current_leader_epoch: i32,
    /// The follower's latest epoch: the leader answers where that epoch ends in its log.
    pub leader_epoch: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochEnd {
    pub topic: String,
    pub partition: i32,
    pub error: Option<ResponseError>,
    /// The largest epoch at or below the asked one on the leader and where it ends; `None`
    /// is Kafka's UNDEFINED_EPOCH (the leader has no such epoch).
    pub end: Option<(i32, i64)>,
}

/// ListOffsets' timestamp for the log start.
pub const EARLIEST: i64 = -2;
/// ListOffsets' timestamp for the end: as in Kafka, a leader lists a follower its log end
/// (consumers get the high watermark), so a follower past it truncates to exactly there.
pub const LATEST: i64 = -1;

/// One partition of a follower's ListOffsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetQuery {
    pub topic: String,
    pub partition: i32,
    pub current_leader_epoch: i32,
    /// [`EARLIEST`] or [`LATEST`].
    pub timestamp: i64,
}
