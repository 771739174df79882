//! The replicated cluster metadata. Every controller applies the same committed commands in
//! the same order to a `ClusterImage`, so every copy is identical; brokers receive copies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// "No leader": the partition is offline (Kafka's `NO_LEADER`, -1).
pub const NO_LEADER: i32 = -1;

/// The whole cluster metadata at one point of the controller's log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterImage {
    /// The Raft log index of the last command applied: a broker holding a larger version
    /// holds newer metadata.
    pub version: u64,
    /// Kafka's cluster id (Metadata, DescribeCluster), fixed when the image is created.
    pub cluster_id: String,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    pub topics: BTreeMap<String, TopicImage>,
    /// Dynamic broker configs (AlterConfigs on the broker resource): `""` is the cluster
    /// default, a node id (as text) that broker's own; key -> value text.
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// The active controller's `unclean.leader.election.enable` (its static broker config),
    /// used for a topic when neither the topic nor `broker_configs[""]` sets the key. Carried
    /// in the image (by `Command::ActivateController`) so `apply` stays deterministic.
    #[serde(default)]
    pub unclean_leader_election_enable: bool,
}

/// A broker as it registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub node_id: i32,
    /// The address clients reach it at (its advertised listener).
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    /// New at every start of the broker process: a re-registration with a new incarnation
    /// is a restart.
    pub incarnation: Uuid,
    /// The log index of its registration: Kafka's broker epoch.
    pub epoch: u64,
    /// A fenced broker missed its heartbeats (or shut down): it leads nothing and is not in
    /// any ISR, unless it was the last member.
    pub fenced: bool,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub id: Uuid,
    /// The topic's config overrides with Kafka's names (`retention.ms`, ...), as text.
    pub config: BTreeMap<String, String>,
    /// Indexed by partition number.
    pub partitions: Vec<PartitionAssignment>,
}

/// One partition's replicas, leader and in-sync set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAssignment {
    /// Broker ids holding a copy, the preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas: those that have every committed record.
    pub isr: Vec<i32>,
    /// The leading broker, or [`NO_LEADER`].
    pub leader: i32,
    /// Bumped at every leader change; stamped into the batches the leader appends.
    pub leader_epoch: i32,
    /// Bumped at every change of this record (leader or ISR): AlterPartition must name the
    /// current one, so a stale ISR change is refused.
    pub partition_epoch: i32,
}

impl PartitionAssignment {
    /// A partition on one broker that leads it: the single-node case.
    pub fn single(node_id: i32) -> PartitionAssignment {
        PartitionAssignment {
            replicas: vec![node_id],
            isr: vec![node_id],
            leader: node_id,
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }
}
