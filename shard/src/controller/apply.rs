//! `ClusterImage::apply`: the Raft state machine's transition function. It must be
//! deterministic: it reads nothing but the image, the command and the log index.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::commands::{Command, CommandOutcome, Refusal};
use super::election::{change, is_alive};
use super::image::{BrokerRegistration, ClusterImage, PartitionAssignment, TopicImage};

impl ClusterImage {
    /// Applies one committed command found at `log_index`, returning what it did. A refused
    /// command leaves everything but `version` unchanged.
    pub fn apply(&mut self, log_index: u64, command: Command) -> CommandOutcome {
        self.version = log_index;
        let result = match command {
            Command::ActivateController {
                cluster_id,
                unclean_leader_election_enable,
            } => {
                if self.cluster_id.is_empty() {
                    self.cluster_id = cluster_id;
                }
                self.unclean_leader_election_enable = unclean_leader_election_enable;
                self.elect_offline_partitions();
                Ok(CommandOutcome::Applied)
            }
            Command::RegisterBroker {
                node_id,
                host,
                port,
                rack,
                incarnation,
            } => Ok(self.register(log_index, node_id, host, port, rack, incarnation)),
            Command::FenceBroker { node_id, epoch } => self.set_fenced(node_id, epoch, true),
            Command::UnfenceBroker { node_id, epoch } => self.set_fenced(node_id, epoch, false),
            Command::CreateTopic {
                name,
                id,
                partitions,
                config,
            } => self.create_topic(name, id, partitions, config),
            Command::DeleteTopic { name } => match self.topics.remove(&name) {
                Some(_) => Ok(CommandOutcome::Applied),
                None => Err(unknown_topic(&name)),
            },
            Command::CreatePartitions {
                topic,
                new_partitions,
            } => self.create_partitions(&topic, new_partitions),
            Command::AlterTopicConfig {
                topic,
                changes,
                replace,
            } => match self.topics.get_mut(&topic) {
                Some(t) => {
                    alter_config(&mut t.config, changes, replace);
                    // The topic may now allow unclean election.
                    self.elect_offline_partitions();
                    Ok(CommandOutcome::Applied)
                }
                None => Err(unknown_topic(&topic)),
            },
            Command::AlterBrokerConfig {
                resource,
                changes,
                replace,
            } => {
                let config = self.broker_configs.entry(resource.clone()).or_default();
                alter_config(config, changes, replace);
                if config.is_empty() {
                    self.broker_configs.remove(&resource);
                }
                self.elect_offline_partitions();
                Ok(CommandOutcome::Applied)
            }
            Command::ElectLeaders {
                unclean,
                partitions,
            } => Ok(CommandOutcome::Elected(
                self.elect_leaders(unclean, partitions),
            )),
            Command::AlterPartition {
                topic,
                partition,
                leader_id,
                leader_epoch,
                partition_epoch,
                new_isr,
            } => self.alter_partition(
                &topic,
                partition,
                leader_id,
                leader_epoch,
                partition_epoch,
                new_isr,
            ),
        };
        result.unwrap_or_else(CommandOutcome::Refused)
    }

    fn register(
        &mut self,
        log_index: u64,
        node_id: i32,
        host: String,
        port: u16,
        rack: Option<String>,
        incarnation: Uuid,
    ) -> CommandOutcome {
        let epoch = match self.brokers.get(&node_id) {
            // The same process registering again (a retry, or after a controller failover):
            // it keeps its epoch.
            Some(b) if b.incarnation == incarnation => b.epoch,
            Some(b) => {
                // A restart the controller did not see as a fence (a crash shorter than the
                // session timeout): fence the old process first, so its leaderships move and
                // it must rejoin the ISRs.
                if !b.fenced {
                    if let Some(b) = self.brokers.get_mut(&node_id) {
                        b.fenced = true;
                    }
                    self.move_away_from(node_id);
                }
                log_index
            }
            None => log_index,
        };
        self.brokers.insert(
            node_id,
            BrokerRegistration {
                node_id,
                host,
                port,
                rack,
                incarnation,
                epoch,
                fenced: false,
            },
        );
        self.elect_offline_partitions();
        CommandOutcome::BrokerRegistered { epoch }
    }

    fn set_fenced(
        &mut self,
        node_id: i32,
        epoch: u64,
        fenced: bool,
    ) -> Result<CommandOutcome, Refusal> {
        let Some(broker) = self.brokers.get_mut(&node_id) else {
            return Err(Refusal::new(
                ResponseError::BrokerIdNotRegistered,
                format!("broker {node_id} is not registered"),
            ));
        };
        if broker.epoch != epoch {
            return Err(Refusal::new(
                ResponseError::StaleBrokerEpoch,
                format!(
                    "broker {node_id} has epoch {}, not {epoch}: it registered again",
                    broker.epoch
                ),
            ));
        }
        if broker.fenced == fenced {
            return Ok(CommandOutcome::Applied);
        }
        broker.fenced = fenced;
        if fenced {
            self.move_away_from(node_id);
        } else {
            self.elect_offline_partitions();
        }
        Ok(CommandOutcome::Applied)
    }

    fn create_topic(
        &mut self,
        name: String,
        id: Uuid,
        partitions: Vec<Vec<i32>>,
        config: BTreeMap<String, String>,
    ) -> Result<CommandOutcome, Refusal> {
        if self.topics.contains_key(&name) {
            return Err(Refusal::new(
                ResponseError::TopicAlreadyExists,
                format!("topic '{name}' already exists"),
            ));
        }
        if partitions.is_empty() {
            return Err(Refusal::new(
                ResponseError::InvalidPartitions,
                "a topic needs at least one partition",
            ));
        }
        let partitions = self.new_partitions(0, partitions)?;
        self.topics.insert(
            name,
            TopicImage {
                id,
                config,
                partitions,
            },
        );
        Ok(CommandOutcome::Applied)
    }

    fn create_partitions(
        &mut self,
        topic: &str,
        new_partitions: Vec<Vec<i32>>,
    ) -> Result<CommandOutcome, Refusal> {
        let Some(existing) = self.topics.get(topic) else {
            return Err(unknown_topic(topic));
        };
        if new_partitions.is_empty() {
            return Err(Refusal::new(
                ResponseError::InvalidPartitions,
                format!(
                    "topic '{topic}' already has {} partitions",
                    existing.partitions.len()
                ),
            ));
        }
        let added = self.new_partitions(existing.partitions.len(), new_partitions)?;
        if let Some(t) = self.topics.get_mut(topic) {
            t.partitions.extend(added);
        }
        Ok(CommandOutcome::Applied)
    }

    /// New partitions numbered from `first`: the ISR is every live replica and the leader the
    /// first of them (the preferred leader when all are alive).
    fn new_partitions(
        &self,
        first: usize,
        replica_lists: Vec<Vec<i32>>,
    ) -> Result<Vec<PartitionAssignment>, Refusal> {
        let invalid =
            |message: String| Refusal::new(ResponseError::InvalidReplicaAssignment, message);
        let width = replica_lists[0].len();
        let mut out = Vec::with_capacity(replica_lists.len());
        for (i, replicas) in replica_lists.into_iter().enumerate() {
            let n = first + i;
            if replicas.is_empty() || replicas.len() != width {
                return Err(invalid(format!(
                    "partition {n} has {} replicas; every new partition needs the same number (at least 1)",
                    replicas.len()
                )));
            }
            for (j, r) in replicas.iter().enumerate() {
                if replicas[..j].contains(r) {
                    return Err(invalid(format!("partition {n} lists broker {r} twice")));
                }
                if !self.brokers.contains_key(r) {
                    return Err(invalid(format!(
                        "partition {n} names broker {r}, which is not registered"
                    )));
                }
            }
            let isr: Vec<i32> = replicas
                .iter()
                .copied()
                .filter(|&r| is_alive(&self.brokers, r))
                .collect();
            let Some(&leader) = isr.first() else {
                return Err(invalid(format!(
                    "every replica of partition {n} ({replicas:?}) is fenced"
                )));
            };
            out.push(PartitionAssignment {
                replicas,
                isr,
                leader,
                leader_epoch: 0,
                partition_epoch: 0,
            });
        }
        Ok(out)
    }

    fn alter_partition(
        &mut self,
        topic: &str,
        partition: i32,
        leader_id: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<i32>,
    ) -> Result<CommandOutcome, Refusal> {
        let brokers = &self.brokers;
        let p = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(usize::try_from(partition).ok()?))
            .ok_or_else(|| {
                Refusal::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("no partition {topic}-{partition}"),
                )
            })?;
        if leader_id != p.leader || leader_epoch != p.leader_epoch {
            return Err(Refusal::new(
                ResponseError::FencedLeaderEpoch,
                format!(
                    "{topic}-{partition} is led by {} at epoch {}, not by {leader_id} at {leader_epoch}",
                    p.leader, p.leader_epoch
                ),
            ));
        }
        if partition_epoch != p.partition_epoch {
            return Err(Refusal::new(
                ResponseError::InvalidUpdateVersion,
                format!(
                    "{topic}-{partition} is at partition epoch {}, not {partition_epoch}",
                    p.partition_epoch
                ),
            ));
        }
        let malformed = new_isr
            .iter()
            .enumerate()
            .any(|(i, r)| new_isr[..i].contains(r) || !p.replicas.contains(r));
        if malformed || !new_isr.contains(&leader_id) {
            return Err(Refusal::new(
                ResponseError::InvalidRequest,
                format!(
                    "ISR {new_isr:?} for {topic}-{partition} must be distinct replicas of {:?} including the leader {leader_id}",
                    p.replicas
                ),
            ));
        }
        if let Some(r) = new_isr.iter().find(|&&r| !is_alive(brokers, r)) {
            return Err(Refusal::new(
                ResponseError::IneligibleReplica,
                format!("broker {r} is fenced and cannot join the ISR of {topic}-{partition}"),
            ));
        }
        change(p, p.leader, new_isr);
        Ok(CommandOutcome::Partition(p.clone()))
    }
}

fn alter_config(
    config: &mut BTreeMap<String, String>,
    changes: BTreeMap<String, Option<String>>,
    replace: bool,
) {
    if replace {
        config.clear();
    }
    for (key, value) in changes {
        match value {
            Some(v) => config.insert(key, v),
            None => config.remove(&key),
        };
    }
}

fn unknown_topic(name: &str) -> Refusal {
    Refusal::new(
        ResponseError::UnknownTopicOrPartition,
        format!("topic '{name}' does not exist"),
    )
}
