//! Leader election over a [`ClusterImage`]: what happens to partitions when a broker is fenced,
//! and how partitions without a leader get one, cleanly from the ISR or, where the topic
//! allows it, uncleanly from any live replica (losing what only the old ISR held, as Kafka
//! documents for `unclean.leader.election.enable`).

use std::collections::BTreeMap;

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
