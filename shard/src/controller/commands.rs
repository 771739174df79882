//! The commands that change the cluster metadata: what the controllers replicate in their Raft
//! log. Each one is applied by [`ClusterImage::apply`](super::image::ClusterImage::apply), a
//! pure function of the image, the command and its log index, so every controller (and every
//! replay after a restart) reaches the same image.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::image::PartitionAssignment;

/// One change of the cluster metadata.
///
/// Kafka's multi-topic requests (CreateTopics, DeleteTopics) become one command per topic, so
/// each topic gets its own outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Proposed by a controller each time it becomes the active one: sets the cluster id the
    /// first time (later ones keep it) and the controller's own default for
    /// `unclean.leader.election.enable` (used when neither the topic nor the dynamic cluster
    /// default sets it).
    ActivateController {
        cluster_id: String,
        unclean_leader_election_enable: bool,
    },
    /// A broker (re)starts. A new incarnation is a new process: its previous one is fenced
    /// first (it may have lost what it had not flushed), then it is registered afresh.
    RegisterBroker {
        node_id: i32,
        host: String,
        port: u16,
        rack: Option<String>,
        incarnation: Uuid,
    },
    /// The broker missed its heartbeats or is shutting down.
    FenceBroker {
        node_id: i32,
        epoch: u64,
    },
    /// A fenced broker heartbeats again.
    UnfenceBroker {
        node_id: i32,
        epoch: u64,
    },
    /// `partitions[i]` is partition i's replica list, computed by the active controller
    /// (see [`assign_replicas`](super::assignment::assign_replicas)) or given by the client.
    CreateTopic {
        name: String,
        id: Uuid,
        partitions: Vec<Vec<i32>>,
        config: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    /// Appends partitions with these replica lists.
    CreatePartitions {
        topic: String,
        new_partitions: Vec<Vec<i32>>,
    },
    /// `Some(value)` sets a key, `None` removes it; `replace` clears the other keys first
    /// (legacy AlterConfigs) instead of keeping them (IncrementalAlterConfigs).
    AlterTopicConfig {
        topic: String,
        changes: BTreeMap<String, Option<String>>,
        replace: bool,
    },
    /// `resource` is `""` for the cluster default or a node id as text.
    AlterBrokerConfig {
        resource: String,
        changes: BTreeMap<String, Option<String>>,
        replace: bool,
    },
    /// ElectLeaders (KIP-460): the preferred replica (the first) takes the lead where it is
    /// alive and in sync, or, with `unclean`, a partition without a leader takes any live
    /// replica. `None`: every partition. Also proposed by the active controller itself to
    /// move leaders back to their preferred replicas (`auto.leader.rebalance.enable`).
    ElectLeaders {
        unclean: bool,
        partitions: Option<Vec<(String, i32)>>,
    },
    /// A leader changes its partition's ISR (shrink or expand).
    AlterPartition {
        topic: String,
        partition: i32,
        leader_id: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<i32>,
    },
}

impl Command {
    /// An AlterTopicConfig that makes `pairs` the topic's only overrides.
    pub fn replace_topic_config(topic: String, pairs: BTreeMap<String, String>) -> Command {
        Command::AlterTopicConfig {
            topic,
            changes: setting(pairs),
            replace: true,
        }
    }

    /// An AlterBrokerConfig that makes `pairs` the resource's only overrides.
    pub fn replace_broker_config(resource: String, pairs: BTreeMap<String, String>) -> Command {
        Command::AlterBrokerConfig {
            resource,
            changes: setting(pairs),
            replace: true,
        }
    }
}

fn setting(pairs: BTreeMap<String, String>) -> BTreeMap<String, Option<String>> {
    pairs.into_iter().map(|(k, v)| (k, Some(v))).collect()
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandOutcome {
    Applied,
    /// The broker's epoch (the log index of its registration).
    BrokerRegistered {
        epoch: u64,
    },
    /// The partition's state after an AlterPartition.
    Partition(PartitionAssignment),
    /// One result per partition an ElectLeaders named; for every partition (`None`), only
    /// those that got a new leader.
    Elected(Vec<Election>),
    /// Nothing changed.
    Refused(Refusal),
}

/// One partition's ElectLeaders result: `None` when it got a new leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Election {
    pub topic: String,
    pub partition: i32,
    pub refusal: Option<Refusal>,
}

/// A refused command: a Kafka error code and a message saying why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub code: i16,
    pub message: String,
}

impl Refusal {
    pub fn new(error: ResponseError, message: impl Into<String>) -> Refusal {
        Refusal {
            code: error.code(),
            message: message.into(),
        }
    }

    pub fn error(&self) -> ResponseError {
        ResponseError::try_from_code(self.code).unwrap_or(ResponseError::UnknownServerError)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.error(), self.message)
    }
}
