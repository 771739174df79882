//! Replication, Kafka's way (DESIGN.md, "Replication and the cluster").
//!
//! - Leader (`leader`): tracks each follower's log end from its Fetch requests; the high
//!   watermark is the smallest log end over the ISR; followers lagging for
//!   `replica.lag.time.max.ms` are proposed out of the ISR, caught-up ones back in, through
//!   the controller ([`IsrUpdater`]).
//! - Follower (`fetcher`, `follower`): one fetcher task per shard per leader broker (Kafka's
//!   ReplicaFetcherThread) fetches every partition this shard follows from that leader, first
//!   truncating a diverged tail found with OffsetForLeaderEpoch.
//! - `link`: the traits the broker implements to reach the controller and other brokers;
//!   `controller_isr` implements [`IsrUpdater`] over the controller link (`BrokerLink`).
//!
//! A partition's role lives in `Partition` (partition.rs); this module holds the per-shard
//! machinery: settings, the controller and network hooks, the fetchers, the ISR check timer.

mod controller_isr;
mod fetcher;
pub mod follower;
pub mod leader;
pub mod link;

#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::Duration;

use spate_core::config::BrokerConfig;
use spate_log::Clock;

pub use link::{
    AlterIsr, BrokerEndpoint, EpochEnd, EpochQuery, FetchPartition, FetchedPartition, IsrUpdater,
    LeaderConnector, LeaderLink, LinkError, OffsetQuery, ReplicaFetch, EARLIEST, LATEST,
};

use crate::controller::image::PartitionAssignment;
use crate::notify::Notify;
use crate::partition::Partition;
use crate::shard::Shard;
use crate::topics::TopicTable;
use fetcher::Fetcher;

/// The replication settings, with Kafka's names (`BrokerConfig` holds their defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// `replica.lag.time.max.ms`: a follower not caught up for this long leaves the ISR.
    pub replica_lag_time_max_ms: i64,
    /// `replica.fetch.max.bytes`: per partition in a follower's Fetch.
    pub replica_fetch_max_bytes: i32,
    /// `replica.fetch.response.max.bytes`: a follower's whole Fetch response.
    pub replica_fetch_response_max_bytes: i32,
    /// `replica.fetch.wait.max.ms`: how long a follower's Fetch waits on the leader.
    pub replica_fetch_wait_max_ms: i32,
    /// `replica.fetch.min.bytes`.
    pub replica_fetch_min_bytes: i32,
    /// `replica.fetch.backoff.ms`: the pause after a failed fetch.
    pub replica_fetch_backoff_ms: u64,
}

impl ReplicationConfig {
    /// The broker's `replica.*` keys.
    pub fn from_broker(broker: &BrokerConfig) -> ReplicationConfig {
        let int = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
        ReplicationConfig {
            replica_lag_time_max_ms: i64::try_from(broker.replica_lag_time_max_ms)
                .unwrap_or(i64::MAX),
            replica_fetch_max_bytes: int(broker.replica_fetch_max_bytes),
            replica_fetch_response_max_bytes: int(broker.replica_fetch_response_max_bytes),
            replica_fetch_wait_max_ms: i32::try_from(broker.replica_fetch_wait_max_ms)
                .unwrap_or(i32::MAX),
            replica_fetch_min_bytes: int(broker.replica_fetch_min_bytes),
            replica_fetch_backoff_ms: broker.replica_fetch_backoff_ms,
        }
    }
}

type PartitionKey = (String, i32);

/// One shard's replication machinery.
pub struct Replication {
    node_id: i32,
    clock: Rc<dyn Clock>,
    config: RefCell<ReplicationConfig>,
    updater: RefCell<Option<Rc<dyn IsrUpdater>>>,
    connector: RefCell<Option<Rc<dyn LeaderConnector>>>,
    /// By leader broker id.
    fetchers: RefCell<HashMap<i32, Rc<Fetcher>>>,
    /// Partitions led here with followers: the ISR check looks at them.
    leaders: RefCell<HashMap<PartitionKey, Weak<Partition>>>,
    /// Fetcher tasks hold a pass: shutdown waits for their appends before closing logs.
    tasks: glommio::sync::Gate,
    stopping: Cell<bool>,
    stopped: Notify,
}

impl Replication {
    /// Starts the ISR check timer on the current executor.
    pub fn new(node_id: i32, config: ReplicationConfig, clock: Rc<dyn Clock>) -> Rc<Replication> {
        let replication = Rc::new(Replication {
            node_id,
            clock,
            config: RefCell::new(config),
            updater: RefCell::new(None),
            connector: RefCell::new(None),
            fetchers: RefCell::new(HashMap::new()),
            leaders: RefCell::new(HashMap::new()),
            tasks: glommio::sync::Gate::new(),
            stopping: Cell::new(false),
            stopped: Notify::default(),
        });
        if let Ok(pass) = replication.tasks.enter() {
            let weak = Rc::downgrade(&replication);
            glommio::spawn_local(async move {
                let _pass = pass;
                isr_check_loop(weak).await;
            })
            .detach();
        }
        replication
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn config(&self) -> ReplicationConfig {
        self.config.borrow().clone()
    }

    pub fn set_config(&self, config: ReplicationConfig) {
        *self.config.borrow_mut() = config;
    }

    pub fn set_isr_updater(&self, updater: Rc<dyn IsrUpdater>) {
        *self.updater.borrow_mut() = Some(updater);
    }

    pub fn set_leader_connector(&self, connector: Rc<dyn LeaderConnector>) {
        *self.connector.borrow_mut() = Some(connector);
    }

    pub(crate) fn isr_updater(&self) -> Option<Rc<dyn IsrUpdater>> {
        self.updater.borrow().clone()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    pub(crate) async fn until_stopping(&self) {
        loop {
            let seen = self.stopped.version();
            if self.stopping.get() {
                return;
            }
            self.stopped.changed_since(seen).await;
        }
    }

    /// Tells the fetchers, the ISR check and acks=all waits to stop (shutdown begins).
    pub fn stop(&self) {
        self.stopping.set(true);
        self.stopped.notify_all();
        for (_, fetcher) in self.fetchers.borrow_mut().drain() {
            fetcher.stop();
        }
    }

    /// Stops, and waits for the fetchers' appends in progress: after this, nothing here
    /// touches a log.
    pub async fn close(&self) {
        self.stop();
        if let Err(e) = self.tasks.close().await {
            tracing::warn!("waiting for the replica fetchers failed: {e}");
        }
    }

    /// Makes `partition` fetch from `leader` at `leader_epoch` (truncating first), moving it
    /// from any other fetcher. Nothing changes when it already does.
    pub(crate) fn follow(
        self: &Rc<Self>,
        partition: &Rc<Partition>,
        leader: BrokerEndpoint,
        leader_epoch: i32,
    ) {
        if self.stopping.get() {
            return;
        }
        let existing = self.fetchers.borrow().get(&leader.node_id).cloned();
        let fetcher = match existing {
            Some(f) if *f.leader() == leader => f,
            stale => {
                if let Some(f) = stale {
                    // The leader moved to another address: start over there.
                    f.stop();
                }
                let Some(connector) = self.connector.borrow().clone() else {
                    tracing::warn!(
                        "{}-{}: no inter-broker client configured; cannot follow broker {}",
                        partition.topic,
                        partition.index,
                        leader.node_id
                    );
                    return;
                };
                let Ok(pass) = self.tasks.enter() else {
                    return;
                };
                let link = connector.link(&leader);
                let f = Fetcher::start(leader.clone(), link, Rc::downgrade(self), pass);
                self.fetchers.borrow_mut().insert(leader.node_id, f.clone());
                f
            }
        };
        let others: Vec<Rc<Fetcher>> = self
            .fetchers
            .borrow()
            .iter()
            .filter(|(id, _)| **id != leader.node_id)
            .map(|(_, f)| f.clone())
            .collect();
        for other in others {
            self.remove_from(&other, partition);
        }
        fetcher.add(partition, leader_epoch);
    }

    /// Stops fetching `partition` (it leads now, or has no leader).
    pub(crate) fn unfollow(&self, partition: &Partition) {
        let fetchers: Vec<Rc<Fetcher>> = self.fetchers.borrow().values().cloned().collect();
        for f in fetchers {
            self.remove_from(&f, partition);
        }
    }

    /// Removes `partition` from `fetcher`, and stops a fetcher left with nothing to fetch.
    fn remove_from(&self, fetcher: &Rc<Fetcher>, partition: &Partition) {
        if fetcher.remove(partition) && fetcher.is_idle() {
            fetcher.stop();
            self.fetchers.borrow_mut().remove(&fetcher.leader().node_id);
        }
    }

    /// Notes whether `partition` is led here with followers (the ISR check watches those).
    pub(crate) fn note_leader(&self, partition: &Rc<Partition>, with_followers: bool) {
        let key = (partition.topic.clone(), partition.index);
        if with_followers {
            self.leaders
                .borrow_mut()
                .insert(key, Rc::downgrade(partition));
        } else {
            self.leaders.borrow_mut().remove(&key);
        }
    }

    pub(crate) fn forget_leader(&self, partition: &Partition) {
        self.leaders
            .borrow_mut()
            .remove(&(partition.topic.clone(), partition.index));
    }

    /// Proposes ISR shrinks where followers lag. Returns how many were proposed.
    pub fn check_isr(&self) -> usize {
        let partitions: Vec<Rc<Partition>> = {
            let mut leaders = self.leaders.borrow_mut();
            leaders.retain(|_, p| p.strong_count() > 0);
            leaders.values().filter_map(Weak::upgrade).collect()
        };
        partitions.iter().filter(|p| p.maybe_shrink_isr()).count()
    }
}

/// Looks for lagging followers every half `replica.lag.time.max.ms`, as Kafka does.
async fn isr_check_loop(replication: Weak<Replication>) {
    loop {
        let Some(r) = replication.upgrade() else {
            return;
        };
        let period = Duration::from_millis((r.config().replica_lag_time_max_ms / 2).max(1) as u64);
        let stopped = futures_lite::future::or(
            async {
                glommio::timer::sleep(period).await;
                false
            },
            async {
                r.until_stopping().await;
                true
            },
        )
        .await;
        if stopped {
            return;
        }
        r.check_isr();
    }
}

/// Gives partition `index` of `topic` its replica state from `table`, if it is there.
pub(crate) fn assign_from(table: &TopicTable, topic: &str, index: i32, p: &Rc<Partition>) {
    let Some(assignment) = table.assignment(topic, index) else {
        return;
    };
    let leader = table.broker(assignment.leader).map(|b| BrokerEndpoint {
        node_id: b.node_id,
        host: b.host.clone(),
        port: b.port,
    });
    p.set_assignment(assignment, leader);
}

impl Shard {
    /// Gives each partition this shard holds its replica state from `table`: lead, follow
    /// (fetching from the leader's advertised address) or wait for a leader.
    pub(crate) fn apply_assignments(&self, table: &TopicTable) {
        let partitions: Vec<_> = self
            .partitions
            .borrow()
            .iter()
            .map(|(key, p)| (key.clone(), p.clone()))
            .collect();
        for ((topic, index), p) in partitions {
            assign_from(table, &topic, index, &p);
        }
    }

    /// Gives one partition of this shard a replica state directly, outside a topic table
    /// (tests and tools; the broker's path is `apply_assignments`). False if this shard
    /// does not hold the partition.
    pub fn assign_partition(
        &self,
        topic: &str,
        partition: i32,
        assignment: &PartitionAssignment,
        leader: Option<BrokerEndpoint>,
    ) -> bool {
        match self.partition(topic, partition) {
            Some(p) => {
                p.set_assignment(assignment, leader);
                true
            }
            None => false,
        }
    }

    /// How this shard's leaders reach the controller for ISR changes. Without one (a
    /// single broker), ISR changes are never proposed.
    pub fn set_isr_updater(&self, updater: Rc<dyn IsrUpdater>) {
        self.replication.set_isr_updater(updater);
    }

    /// How this shard's followers reach their leaders. Followers of the current topic
    /// table start fetching now.
    pub fn set_leader_connector(&self, connector: Rc<dyn LeaderConnector>) {
        self.replication.set_leader_connector(connector);
        self.apply_assignments(&self.topics());
    }

    pub fn set_replication_config(&self, config: ReplicationConfig) {
        self.replication.set_config(config);
    }
}
