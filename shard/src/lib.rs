//! spate-shard: the thread-per-core runtime. One pinned glommio executor per core, each
//! owning a disjoint set of partitions; cross-shard messages; the per-shard partition manager.
//!
//! - `executor`: starts the shards; `start_barrier`: no shard serves before all have started.
//! - `placement`: which shard owns a partition.
//! - `router`: calls from one shard to another over glommio shared channels.
//! - `shard`: a shard's partitions and the operations the Kafka server calls;
//!   `topic_admin`: topic creation and deletion; `maintenance`: scheduled flush and retention.
//! - `metadata_sync`: shard 0 publishes the controller's images; metadata writes wait for them.
//!   `foreign_await`: awaiting what the cluster thread completes, without lost wake-ups.
//! - `controller`: the cluster metadata quorum (openraft) and the broker's link to it.
//! - `replication`: followers fetching from leaders, the ISR and the high watermark.
//! - `group_coordinator`: consumer groups and committed offsets; `offsets_topic`: the
//!   replicated `__consumer_offsets` topic they live in.
//! - `topics`: the topic table (one shard owns it, the others get snapshots) and its files.

mod connection_load;
pub mod controller;
pub mod executor;
mod foreign_await;
pub mod group_coordinator;
mod maintenance;
pub mod messages;
mod metadata_sync;
mod notify;
mod offsets_topic;
mod partition;
pub mod partition_admin;
pub mod placement;
mod producer_ids;
pub mod replication;
mod router;
pub mod shard;
mod start_barrier;
mod topic_admin;
pub mod topic_config;
pub mod topics;

/// Runs `test` to its end on a fresh executor of this thread, with a small io_uring memory
/// budget (RLIMIT_MEMLOCK is 8 MiB for unprivileged users): the unit tests' executor.
#[cfg(test)]
pub(crate) fn run_local<T>(test: impl std::future::Future<Output = T>) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 * 1024)
        .make()
        .expect("a test executor")
        .run(test)
}

pub use connection_load::{ConnectionLoad, OpenConnection};
pub use messages::{
    AppendRequest, Appended, Commit, ListedOffset, NewReplicas, NewTopic, PartitionOffsets,
    ProduceResult, ReadBatch, ReadRequest, ReadResult, TopicError, WaitRequest,
};
pub use shard::{HandedOff, Records, Shard};
