//! spate-shard: the thread-per-core runtime. One pinned glommio executor per core, each
//! owning a disjoint set of partitions; cross-shard messages; the per-shard partition manager.
//!
//! - `executor`: starts the shards; `start_barrier`: no shard serves before all have started.
//! - `placement`: which shard owns a partition.
//! - `router`: calls from one shard to another over glommio shared channels.
//! - `shard`: a shard's partitions and the operations the Kafka server calls;
//!   `topic_admin`: topic creation and deletion (on the controller shard); `maintenance`:
//!   scheduled flush and retention.
//! - `controller`: the cluster metadata quorum (openraft) and the broker's link to it.
//! - `group_coordinator`: consumer groups and committed offsets.
//! - `topics`: the topic table (one shard owns it, the others get snapshots) and its files.

pub mod controller;
pub mod executor;
pub mod group_coordinator;
mod maintenance;
pub mod messages;
mod notify;
mod partition;
pub mod partition_admin;
pub mod placement;
mod producer_ids;
mod router;
pub mod shard;
mod start_barrier;
mod topic_admin;
pub mod topic_config;
pub mod topics;

pub use messages::{
    AppendRequest, ListedOffset, NewTopic, PartitionOffsets, ProduceResult, ReadBatch, ReadRequest,
    ReadResult, TopicError, WaitRequest,
};
pub use shard::{Records, Shard};
