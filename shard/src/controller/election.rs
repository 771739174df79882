//! Leader election over a [`ClusterImage`]: what happens to partitions when a broker is fenced,
//! and how partitions without a leader get one, cleanly from the ISR or, where the topic
//! allows it, uncleanly from any live replica (losing what only the old ISR held, as Kafka
//! documents for `unclean.leader.election.enable`).

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;

use super::commands::{Election, Refusal};
use super::image::{BrokerRegistration, ClusterImage, PartitionAssignment, NO_LEADER};

/// Kafka's topic (and dynamic broker) config name.
pub const UNCLEAN_LEADER_ELECTION_ENABLE: &str = "unclean.leader.election.enable";

pub(crate) fn is_alive(brokers: &BTreeMap<i32, BrokerRegistration>, id: i32) -> bool {
    brokers.get(&id).is_some_and(|b| !b.fenced)
}

impl ClusterImage {
    /// Whether a topic with these overrides may elect an out-of-sync replica: the topic's
    /// override, else the dynamic cluster default (`broker_configs[""]`), else the
    /// controller's default carried in the image.
    pub fn unclean_election_enabled(&self, topic_config: &BTreeMap<String, String>) -> bool {
        let parse = |v: &String| v.trim().eq_ignore_ascii_case("true");
        topic_config
            .get(UNCLEAN_LEADER_ELECTION_ENABLE)
            .or_else(|| {
                self.broker_configs
                    .get("")
                    .and_then(|c| c.get(UNCLEAN_LEADER_ELECTION_ENABLE))
            })
            .map(parse)
            .unwrap_or(self.unclean_leader_election_enable)
    }

    /// `node` was fenced: it leaves every ISR it is in (unless it is the last member, which
    /// KRaft keeps so the partition remembers who has its data) and every partition it led
    /// gets a new leader, or none.
    pub(crate) fn move_away_from(&mut self, node: i32) {
        let flags: Vec<bool> = self
            .topics
            .values()
            .map(|t| self.unclean_election_enabled(&t.config))
            .collect();
        let brokers = &self.brokers;
        for (topic, unclean) in self.topics.values_mut().zip(flags) {
            for p in topic.partitions.iter_mut() {
                if !p.replicas.contains(&node) {
                    continue;
                }
                let mut isr = p.isr.clone();
                if isr.len() > 1 {
                    isr.retain(|&r| r != node);
                }
                let mut leader = p.leader;
                if leader == node {
                    (leader, isr) =
                        elect(&p.replicas, &isr, brokers, unclean).unwrap_or((NO_LEADER, isr));
                }
                change(p, leader, isr);
            }
        }
    }

    /// Gives a leader to every partition without one that can have one now.
    pub(crate) fn elect_offline_partitions(&mut self) {
        let flags: Vec<bool> = self
            .topics
            .values()
            .map(|t| self.unclean_election_enabled(&t.config))
            .collect();
        let brokers = &self.brokers;
        for (topic, unclean) in self.topics.values_mut().zip(flags) {
            for p in topic.partitions.iter_mut() {
                if p.leader != NO_LEADER {
                    continue;
                }
                if let Some((leader, isr)) = elect(&p.replicas, &p.isr, brokers, unclean) {
                    change(p, leader, isr);
                }
            }
        }
    }
}

impl ClusterImage {
    /// ElectLeaders (see [`Command::ElectLeaders`](super::commands::Command)), with
    /// Kafka's answers: ELECTION_NOT_NEEDED when the preferred replica already leads (or,
    /// unclean, the partition has a leader), PREFERRED_LEADER_NOT_AVAILABLE when it is dead
    /// or out of sync, ELIGIBLE_LEADERS_NOT_AVAILABLE when no replica is alive.
    pub(crate) fn elect_leaders(
        &mut self,
        unclean: bool,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Vec<Election> {
        let every = partitions.is_none();
        let wanted = partitions.unwrap_or_else(|| {
            self.topics
                .iter()
                .flat_map(|(name, t)| (0..).zip(&t.partitions).map(|(i, _)| (name.clone(), i)))
                .collect()
        });
        let brokers = &self.brokers;
        let mut results = Vec::new();
        for (topic, partition) in wanted {
            let found = self.topics.get_mut(&topic).and_then(|t| {
                usize::try_from(partition)
                    .ok()
                    .and_then(|i| t.partitions.get_mut(i))
            });
            let refusal = match found {
                None => Some(Refusal::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("{topic}-{partition} does not exist"),
                )),
                Some(p) if unclean => elect_unclean(p, brokers),
                Some(p) => elect_preferred(p, brokers),
            };
            if !every || refusal.is_none() {
                results.push(Election {
                    topic,
                    partition,
                    refusal,
                });
            }
        }
        results
    }

    /// Partitions whose preferred replica could lead (alive, in sync) but does not: what
    /// the active controller's leader rebalance moves back.
    pub fn imbalanced_partitions(&self) -> Vec<(String, i32)> {
        self.topics
            .iter()
            .flat_map(|(name, t)| {
                (0..).zip(&t.partitions).filter_map(|(i, p)| {
                    let preferred = *p.replicas.first()?;
                    let could = preferred != p.leader
                        && p.isr.contains(&preferred)
                        && is_alive(&self.brokers, preferred);
                    could.then(|| (name.clone(), i))
                })
            })
            .collect()
    }
}

fn elect_preferred(
    p: &mut PartitionAssignment,
    brokers: &BTreeMap<i32, BrokerRegistration>,
) -> Option<Refusal> {
    let preferred = p.replicas.first().copied().unwrap_or(NO_LEADER);
    if p.leader == preferred {
        return Some(Refusal::new(
            ResponseError::ElectionNotNeeded,
            format!("broker {preferred}, the preferred replica, already leads"),
        ));
    }
    if !p.isr.contains(&preferred) || !is_alive(brokers, preferred) {
        return Some(Refusal::new(
            ResponseError::PreferredLeaderNotAvailable,
            format!("the preferred replica, broker {preferred}, is not alive and in sync"),
        ));
    }
    let isr = p.isr.clone();
    change(p, preferred, isr);
    None
}

fn elect_unclean(
    p: &mut PartitionAssignment,
    brokers: &BTreeMap<i32, BrokerRegistration>,
) -> Option<Refusal> {
    if p.leader != NO_LEADER {
        return Some(Refusal::new(
            ResponseError::ElectionNotNeeded,
            format!("broker {} leads", p.leader),
        ));
    }
    match elect(&p.replicas, &p.isr, brokers, true) {
        Some((leader, isr)) => {
            change(p, leader, isr);
            None
        }
        None => Some(Refusal::new(
            ResponseError::EligibleLeadersNotAvailable,
            "no replica is alive",
        )),
    }
}

/// The new leader and ISR: the first replica (in replica order, so the preferred leader
/// wins) that is in the ISR and alive; else, if allowed, the first live replica with an ISR of
/// itself alone.
fn elect(
    replicas: &[i32],
    isr: &[i32],
    brokers: &BTreeMap<i32, BrokerRegistration>,
    unclean: bool,
) -> Option<(i32, Vec<i32>)> {
    if let Some(&leader) = replicas
        .iter()
        .find(|&&r| isr.contains(&r) && is_alive(brokers, r))
    {
        return Some((leader, isr.to_vec()));
    }
    if unclean {
        if let Some(&leader) = replicas.iter().find(|&&r| is_alive(brokers, r)) {
            return Some((leader, vec![leader]));
        }
    }
    None
}

/// Sets a partition's leader and ISR. A leader change bumps the leader epoch; any change
/// bumps the partition epoch (so a stale AlterPartition is refused).
pub(crate) fn change(p: &mut PartitionAssignment, leader: i32, isr: Vec<i32>) {
    if p.leader == leader && p.isr == isr {
        return;
    }
    if p.leader != leader {
        p.leader_epoch += 1;
    }
    p.leader = leader;
    p.isr = isr;
    p.partition_epoch += 1;
}
