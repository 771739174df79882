//! Tests of `ClusterImage::apply`: each command's meaning, the "all brokers go down"
//! sequence for both unclean settings, and a proptest of the invariants over random command
//! sequences.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use proptest::prelude::*;
use uuid::Uuid;

use super::commands::{Command, CommandOutcome};
use super::election::UNCLEAN_LEADER_ELECTION_ENABLE;
use super::image::{ClusterImage, PartitionAssignment, NO_LEADER};

/// An image plus the next log index, so tests read like a log.
struct Log {
    image: ClusterImage,
    index: u64,
    incarnations: BTreeMap<i32, Uuid>,
    history: Vec<Command>,
}

impl Log {
    fn new() -> Log {
        Log {
            image: ClusterImage::default(),
            index: 0,
            incarnations: BTreeMap::new(),
            history: Vec::new(),
        }
    }

    fn apply(&mut self, command: Command) -> CommandOutcome {
        self.index += 1;
        self.history.push(command.clone());
        self.image.apply(self.index, command)
    }

    /// Registers `node` as a new process (a new incarnation).
    fn start(&mut self, node: i32) -> u64 {
        let incarnation = Uuid::new_v4();
        self.incarnations.insert(node, incarnation);
        match self.apply(register(node, incarnation)) {
            CommandOutcome::BrokerRegistered { epoch } => epoch,
            other => panic!("register {node}: {other:?}"),
        }
    }

    fn epoch(&self, node: i32) -> u64 {
        self.image.brokers[&node].epoch
    }

    fn fence(&mut self, node: i32) {
        let epoch = self.epoch(node);
        assert_eq!(
            self.apply(Command::FenceBroker {
                node_id: node,
                epoch
            }),
            CommandOutcome::Applied
        );
    }

    fn unfence(&mut self, node: i32) {
        let epoch = self.epoch(node);
        assert_eq!(
            self.apply(Command::UnfenceBroker {
                node_id: node,
                epoch
            }),
            CommandOutcome::Applied
        );
    }

    fn create(&mut self, name: &str, partitions: Vec<Vec<i32>>) {
        self.create_with(name, partitions, BTreeMap::new());
    }

    fn create_with(
        &mut self,
        name: &str,
        partitions: Vec<Vec<i32>>,
        config: BTreeMap<String, String>,
    ) {
        let out = self.apply(Command::CreateTopic {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions,
            config,
        });
        assert_eq!(out, CommandOutcome::Applied);
    }

    fn part(&self, topic: &str, p: usize) -> &PartitionAssignment {
        &self.image.topics[topic].partitions[p]
    }

    fn alter_isr(&mut self, topic: &str, p: usize, new_isr: Vec<i32>) -> CommandOutcome {
        let cur = self.part(topic, p).clone();
        self.apply(Command::AlterPartition {
            topic: topic.to_string(),
            partition: p as i32,
            leader_id: cur.leader,
            leader_epoch: cur.leader_epoch,
            partition_epoch: cur.partition_epoch,
            new_isr,
        })
    }
}

fn register(node: i32, incarnation: Uuid) -> Command {
    Command::RegisterBroker {
        node_id: node,
        host: "127.0.0.1".to_string(),
        port: 9000 + node as u16,
        rack: None,
        incarnation,
    }
}

fn refused(out: CommandOutcome) -> ResponseError {
    match out {
        CommandOutcome::Refused(r) => r.error(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn three_brokers() -> Log {
    let mut log = Log::new();
    for b in 1..=3 {
        log.start(b);
    }
    log
}

#[test]
fn registration_epoch_is_the_log_index_and_a_retry_keeps_it() {
    let mut log = Log::new();
    log.apply(Command::ActivateController {
        cluster_id: "c1".into(),
        unclean_leader_election_enable: false,
    });
    let epoch = log.start(5);
    assert_eq!(epoch, 2);
    assert_eq!(log.image.version, 2);
    let same = log.incarnations[&5];
    assert_eq!(
        log.apply(register(5, same)),
        CommandOutcome::BrokerRegistered { epoch: 2 }
    );
    assert_eq!(log.start(5), 4, "a new incarnation is a new epoch");
    assert!(!log.image.brokers[&5].fenced);
    // The cluster id is fixed by the first activation.
    log.apply(Command::ActivateController {
        cluster_id: "c2".into(),
        unclean_leader_election_enable: false,
    });
    assert_eq!(log.image.cluster_id, "c1");
}

#[test]
fn create_topic_leads_with_the_first_replica_and_refuses_bad_assignments() {
    let mut log = three_brokers();
    log.create("t", vec![vec![2, 3, 1], vec![3, 1, 2]]);
    assert_eq!(
        *log.part("t", 0),
        PartitionAssignment {
            replicas: vec![2, 3, 1],
            isr: vec![2, 3, 1],
            leader: 2,
            leader_epoch: 0,
            partition_epoch: 0
        }
    );
    let mut create = |name: &str, partitions: Vec<Vec<i32>>| {
        refused(log.apply(Command::CreateTopic {
            name: name.into(),
            id: Uuid::new_v4(),
            partitions,
            config: BTreeMap::new(),
        }))
    };
    assert_eq!(
        create("t", vec![vec![1]]),
        ResponseError::TopicAlreadyExists
    );
    assert_eq!(create("u", vec![]), ResponseError::InvalidPartitions);
    assert_eq!(
        create("u", vec![vec![1, 9]]),
        ResponseError::InvalidReplicaAssignment
    );
    assert_eq!(
        create("u", vec![vec![1, 1]]),
        ResponseError::InvalidReplicaAssignment
    );
    assert_eq!(
        create("u", vec![vec![1], vec![1, 2]]),
        ResponseError::InvalidReplicaAssignment
    );
    assert_eq!(
        create("u", vec![vec![]]),
        ResponseError::InvalidReplicaAssignment
    );
    assert!(!log.image.topics.contains_key("u"));
}

#[test]
fn create_topic_leaves_fenced_replicas_out_of_the_isr() {
    let mut log = three_brokers();
    log.fence(1);
    log.create("t", vec![vec![1, 2, 3]]);
    assert_eq!(log.part("t", 0).leader, 2);
    assert_eq!(log.part("t", 0).isr, vec![2, 3]);
    log.fence(2);
    log.fence(3);
    let out = log.apply(Command::CreateTopic {
        name: "u".into(),
        id: Uuid::new_v4(),
        partitions: vec![vec![1, 2]],
        config: BTreeMap::new(),
    });
    assert_eq!(refused(out), ResponseError::InvalidReplicaAssignment);
}

#[test]
fn fencing_moves_leadership_along_the_isr_in_replica_order() {
    let mut log = three_brokers();
    log.create("t", vec![vec![1, 2, 3]]);
    log.fence(3);
    let p = log.part("t", 0).clone();
    assert_eq!(
        (p.leader, p.isr.clone(), p.leader_epoch, p.partition_epoch),
        (1, vec![1, 2], 0, 1)
    );
    log.fence(1);
    let p = log.part("t", 0).clone();
    assert_eq!(
        (p.leader, p.isr.clone(), p.leader_epoch, p.partition_epoch),
        (2, vec![2], 1, 2)
    );
    // Fencing the last ISR member keeps it in the ISR and leaves the partition offline.
    log.fence(2);
    let p = log.part("t", 0).clone();
    assert_eq!(
        (p.leader, p.isr.clone(), p.leader_epoch, p.partition_epoch),
        (NO_LEADER, vec![2], 2, 3)
    );
    // An out-of-sync replica returning changes nothing (unclean election is off).
    log.unfence(3);
    assert_eq!(log.part("t", 0).leader, NO_LEADER);
    log.unfence(2);
    let p = log.part("t", 0).clone();
    assert_eq!((p.leader, p.isr.clone(), p.leader_epoch), (2, vec![2], 3));
}

/// Runs ElectLeaders and returns (topic, partition, error) per result.
fn elect(
    log: &mut Log,
    unclean: bool,
    partitions: Option<Vec<(&str, i32)>>,
) -> Vec<(String, i32, Option<ResponseError>)> {
    let partitions = partitions.map(|ps| ps.into_iter().map(|(t, p)| (t.to_string(), p)).collect());
    match log.apply(Command::ElectLeaders {
        unclean,
        partitions,
    }) {
        CommandOutcome::Elected(results) => results
            .into_iter()
            .map(|e| (e.topic, e.partition, e.refusal.map(|r| r.error())))
            .collect(),
        other => panic!("expected elections, got {other:?}"),
    }
}

#[test]
fn preferred_election_moves_leadership_back_once_the_preferred_replica_is_in_sync() {
    let mut log = three_brokers();
    log.create("t", vec![vec![1, 2, 3], vec![2, 3, 1]]);
    log.fence(1);
    assert_eq!(log.part("t", 0).leader, 2);
    let t0 = ("t", 0);
    let not_available = Some(ResponseError::PreferredLeaderNotAvailable);
    // Dead, then alive but out of sync: not available.
    assert_eq!(
        elect(&mut log, false, Some(vec![t0])),
        vec![("t".into(), 0, not_available)]
    );
    log.unfence(1);
    assert_eq!(
        elect(&mut log, false, Some(vec![t0])),
        vec![("t".into(), 0, not_available)]
    );
    assert!(log.image.imbalanced_partitions().is_empty());
    // Back in sync: the rebalance would move it, and an election does.
    log.alter_isr("t", 0, vec![2, 3, 1]);
    assert_eq!(
        log.image.imbalanced_partitions(),
        vec![("t".to_string(), 0)]
    );
    let before = log.part("t", 0).clone();
    let all = elect(&mut log, false, None);
    assert_eq!(
        all,
        vec![("t".into(), 0, None)],
        "only elected partitions are listed"
    );
    let after = log.part("t", 0).clone();
    assert_eq!((after.leader, after.isr.clone()), (1, vec![2, 3, 1]));
    assert_eq!(after.leader_epoch, before.leader_epoch + 1);
    assert!(log.image.imbalanced_partitions().is_empty());
    assert_eq!(
        elect(
            &mut log,
            false,
            Some(vec![t0, ("t", 1), ("t", 2), ("nope", 0)])
        ),
        vec![
            ("t".into(), 0, Some(ResponseError::ElectionNotNeeded)),
            ("t".into(), 1, Some(ResponseError::ElectionNotNeeded)),
            ("t".into(), 2, Some(ResponseError::UnknownTopicOrPartition)),
            (
                "nope".into(),
                0,
                Some(ResponseError::UnknownTopicOrPartition)
            ),
        ]
    );
}

#[test]
fn unclean_election_gives_a_leaderless_partition_any_live_replica() {
    let mut log = three_brokers();
    log.create("t", vec![vec![1, 2, 3]]);
    for b in [3, 2, 1] {
        log.fence(b);
    }
    assert_eq!(log.part("t", 0).leader, NO_LEADER);
    let t0 = Some(vec![("t", 0)]);
    assert_eq!(
        elect(&mut log, true, t0.clone()),
        vec![(
            "t".into(),
            0,
            Some(ResponseError::EligibleLeadersNotAvailable)
        )]
    );
    // 3 left the ISR first: with unclean election off it cannot lead, but asked for an
    // unclean election it does, alone in the ISR.
    log.unfence(3);
    assert_eq!(log.part("t", 0).leader, NO_LEADER);
    assert_eq!(
        elect(&mut log, true, t0.clone()),
        vec![("t".into(), 0, None)]
    );
    let p = log.part("t", 0);
    assert_eq!((p.leader, p.isr.clone()), (3, vec![3]));
    assert_eq!(
        elect(&mut log, true, t0),
        vec![("t".into(), 0, Some(ResponseError::ElectionNotNeeded))]
    );
}

#[test]
fn fence_and_unfence_check_the_broker_epoch() {
    let mut log = three_brokers();
    let old = log.epoch(1);
    log.start(1);
    let out = log.apply(Command::FenceBroker {
        node_id: 1,
        epoch: old,
    });
    assert_eq!(refused(out), ResponseError::StaleBrokerEpoch);
    assert!(!log.image.brokers[&1].fenced);
    let out = log.apply(Command::UnfenceBroker {
        node_id: 9,
        epoch: 1,
    });
    assert_eq!(refused(out), ResponseError::BrokerIdNotRegistered);
    // Fencing twice is harmless.
    log.fence(2);
    log.fence(2);
    assert!(log.image.brokers[&2].fenced);
}

#[test]
fn a_restarted_leader_is_fenced_then_leads_again_at_a_new_epoch() {
    let mut log = three_brokers();
    log.create("t", vec![vec![1, 2, 3]]);
    log.create("u", vec![vec![1]]);
    log.start(1);
    // Partition 0 moved to 2 (1 left the ISR and must catch up again).
    let p0 = log.part("t", 0).clone();
    assert_eq!(
        (p0.leader, p0.isr.clone(), p0.leader_epoch),
        (2, vec![2, 3], 1)
    );
    // Partition 1 has only broker 1: it leads again, at a new epoch, so followers of the old
    // process could tell.
    let p1 = log.part("u", 0).clone();
    assert_eq!(
        (p1.leader, p1.isr.clone(), p1.leader_epoch),
        (1, vec![1], 2)
    );
}

#[test]
fn alter_partition_refuses_stale_or_ineligible_changes() {
    let mut log = three_brokers();
    log.create("t", vec![vec![1, 2, 3]]);
    // Shrink: fine, partition epoch bumps, leader epoch does not.
    let out = log.alter_isr("t", 0, vec![1, 2]);
    let p = log.part("t", 0).clone();
    assert_eq!(out, CommandOutcome::Partition(p.clone()));
    assert_eq!(
        (p.isr.clone(), p.leader_epoch, p.partition_epoch),
        (vec![1, 2], 0, 1)
    );

    let alter =
        |leader_id, leader_epoch, partition_epoch, new_isr: Vec<i32>| Command::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader_id,
            leader_epoch,
            partition_epoch,
            new_isr,
        };
    assert_eq!(
        refused(log.apply(alter(1, 0, 0, vec![1]))),
        ResponseError::InvalidUpdateVersion
    );
    assert_eq!(
        refused(log.apply(alter(2, 0, 1, vec![1]))),
        ResponseError::FencedLeaderEpoch
    );
    assert_eq!(
        refused(log.apply(alter(1, 1, 1, vec![1]))),
        ResponseError::FencedLeaderEpoch
    );
    assert_eq!(
        refused(log.apply(alter(1, 0, 1, vec![2]))),
        ResponseError::InvalidRequest
    );
    assert_eq!(
        refused(log.apply(alter(1, 0, 1, vec![1, 4]))),
        ResponseError::InvalidRequest
    );
    assert_eq!(
        refused(log.apply(alter(1, 0, 1, vec![1, 1]))),
        ResponseError::InvalidRequest
    );
    log.fence(3);
    assert_eq!(
        refused(log.apply(alter(1, 0, 1, vec![1, 2, 3]))),
        ResponseError::IneligibleReplica
    );
    let out = log.apply(Command::AlterPartition {
        topic: "t".into(),
        partition: 7,
        leader_id: 1,
        leader_epoch: 0,
        partition_epoch: 1,
        new_isr: vec![1],
    });
    assert_eq!(refused(out), ResponseError::UnknownTopicOrPartition);
    assert_eq!(log.part("t", 0).isr, vec![1, 2], "refusals changed nothing");
    // Expand back once 3 returns.
    log.unfence(3);
    assert!(matches!(
        log.alter_isr("t", 0, vec![1, 2, 3]),
        CommandOutcome::Partition(_)
    ));
    assert_eq!(log.part("t", 0).partition_epoch, 2);
}

#[test]
fn topics_partitions_and_configs_change() {
    let mut log = three_brokers();
    log.create("t", vec![vec![1, 2]]);
    let add = |new_partitions| Command::CreatePartitions {
        topic: "t".into(),
        new_partitions,
    };
    assert_eq!(
        log.apply(add(vec![vec![2, 3], vec![3, 1]])),
        CommandOutcome::Applied
    );
    assert_eq!(log.image.topics["t"].partitions.len(), 3);
    assert_eq!(log.part("t", 2).leader, 3);
    assert_eq!(
        refused(log.apply(add(vec![]))),
        ResponseError::InvalidPartitions
    );
    assert_eq!(
        refused(log.apply(add(vec![vec![8]]))),
        ResponseError::InvalidReplicaAssignment
    );

    let changes = |kv: &[(&str, Option<&str>)]| -> BTreeMap<String, Option<String>> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    };
    log.apply(Command::AlterTopicConfig {
        topic: "t".into(),
        changes: changes(&[("retention.ms", Some("5")), ("segment.bytes", Some("9"))]),
        replace: false,
    });
    log.apply(Command::AlterTopicConfig {
        topic: "t".into(),
        changes: changes(&[("retention.ms", None)]),
        replace: false,
    });
    let want: BTreeMap<String, String> = [("segment.bytes".to_string(), "9".to_string())].into();
    assert_eq!(log.image.topics["t"].config, want);
    log.apply(Command::AlterTopicConfig {
        topic: "t".into(),
        changes: changes(&[("cleanup.policy", Some("delete"))]),
        replace: true,
    });
    assert_eq!(log.image.topics["t"].config.len(), 1);
    let out = log.apply(Command::AlterTopicConfig {
        topic: "nope".into(),
        changes: BTreeMap::new(),
        replace: false,
    });
    assert_eq!(refused(out), ResponseError::UnknownTopicOrPartition);

    log.apply(Command::AlterBrokerConfig {
        resource: "2".into(),
        changes: changes(&[("log.retention.ms", Some("1000"))]),
        replace: false,
    });
    assert_eq!(log.image.broker_configs["2"]["log.retention.ms"], "1000");
    log.apply(Command::AlterBrokerConfig {
        resource: "2".into(),
        changes: changes(&[("log.retention.ms", None)]),
        replace: false,
    });
    assert!(log.image.broker_configs.is_empty());

    assert_eq!(
        log.apply(Command::DeleteTopic { name: "t".into() }),
        CommandOutcome::Applied
    );
    assert_eq!(
        refused(log.apply(Command::DeleteTopic { name: "t".into() })),
        ResponseError::UnknownTopicOrPartition
    );
}

/// The scenario at image level: RF 3 led by 1; broker 3 ("follower 2") goes down
/// first, then 2 ("follower 1"), then the leader 1. Returns the log with all three fenced.
fn all_brokers_go_down(topic_config: BTreeMap<String, String>) -> Log {
    let mut log = three_brokers();
    log.create_with("t", vec![vec![1, 2, 3]], topic_config);
    log.fence(3);
    log.fence(2);
    log.fence(1);
    let p = log.part("t", 0).clone();
    assert_eq!((p.leader, p.isr.clone()), (NO_LEADER, vec![1]));
    log
}

#[test]
fn all_brokers_go_down_without_unclean_election_waits_for_the_last_leader() {
    let mut log = all_brokers_go_down(BTreeMap::new());
    let epoch_offline = log.part("t", 0).leader_epoch;
    // Former followers come back (a restart is a new registration): still offline.
    log.start(3);
    assert_eq!(log.part("t", 0).leader, NO_LEADER);
    log.start(2);
    assert_eq!(log.part("t", 0).leader, NO_LEADER);
    assert_eq!(log.part("t", 0).leader_epoch, epoch_offline);
    // The last leader returns and leads; it has A, B and C.
    log.start(1);
    let p = log.part("t", 0).clone();
    assert_eq!(
        (p.leader, p.isr.clone(), p.leader_epoch),
        (1, vec![1], epoch_offline + 1)
    );
    // The followers catch up and rejoin.
    assert!(matches!(
        log.alter_isr("t", 0, vec![1, 2, 3]),
        CommandOutcome::Partition(_)
    ));
}

#[test]
fn all_brokers_go_down_with_unclean_election_elects_the_first_to_return() {
    let config: BTreeMap<String, String> = [(
        UNCLEAN_LEADER_ELECTION_ENABLE.to_string(),
        "true".to_string(),
    )]
    .into();
    let mut log = all_brokers_go_down(config);
    let epoch_offline = log.part("t", 0).leader_epoch;
    // Follower 2 (broker 3, holding only A) comes back first and leads; D goes to it.
    log.start(3);
    let p = log.part("t", 0).clone();
    assert_eq!(
        (p.leader, p.isr.clone(), p.leader_epoch),
        (3, vec![3], epoch_offline + 1)
    );
    // The others return as followers of 3 (they truncate B and C away and catch up).
    log.start(1);
    log.start(2);
    assert_eq!(log.part("t", 0).leader, 3);
    assert!(matches!(
        log.alter_isr("t", 0, vec![3, 1, 2]),
        CommandOutcome::Partition(_)
    ));
    assert_eq!(log.part("t", 0).leader_epoch, epoch_offline + 1);
}

#[test]
fn unclean_setting_comes_from_topic_then_cluster_default_then_controller() {
    let mut log = all_brokers_go_down(BTreeMap::new());
    log.start(3);
    assert_eq!(log.part("t", 0).leader, NO_LEADER);
    // The dynamic cluster default turns it on: election happens at once.
    log.apply(Command::AlterBrokerConfig {
        resource: String::new(),
        changes: [(
            UNCLEAN_LEADER_ELECTION_ENABLE.to_string(),
            Some("true".to_string()),
        )]
        .into(),
        replace: false,
    });
    assert_eq!(log.part("t", 0).leader, 3);

    // A topic override of false wins over a controller default of true.
    let mut log = all_brokers_go_down(
        [(
            UNCLEAN_LEADER_ELECTION_ENABLE.to_string(),
            "false".to_string(),
        )]
        .into(),
    );
    log.apply(Command::ActivateController {
        cluster_id: "c".into(),
        unclean_leader_election_enable: true,
    });
    log.start(2);
    assert_eq!(log.part("t", 0).leader, NO_LEADER);
    // Removing the override lets the controller default apply.
    log.apply(Command::AlterTopicConfig {
        topic: "t".into(),
        changes: [(UNCLEAN_LEADER_ELECTION_ENABLE.to_string(), None)].into(),
        replace: false,
    });
    assert_eq!(log.part("t", 0).leader, 2);
    assert_eq!(log.part("t", 0).isr, vec![2]);
}

/// Abstract operations; those that name partitions or epochs are resolved against the image
/// when applied, so most of them are meaningful.
#[derive(Debug, Clone)]
enum Op {
    Start(i32),
    Fence(i32),
    Unfence(i32),
    StaleFence(i32),
    Create {
        rf: usize,
        partitions: usize,
        start: usize,
        unclean: Option<bool>,
    },
    Delete(usize),
    AddPartitions(usize),
    AlterIsr {
        topic: usize,
        partition: usize,
        members: u8,
        stale: bool,
    },
    SetUncleanDefault(bool),
    /// ElectLeaders over every partition, unclean or preferred.
    Elect(bool),
}

fn op() -> impl Strategy<Value = Op> {
    let broker = 1..=4i32;
    prop_oneof![
        1 => broker.clone().prop_map(Op::Start),
        3 => broker.clone().prop_map(Op::Fence),
        3 => broker.clone().prop_map(Op::Unfence),
        1 => broker.prop_map(Op::StaleFence),
        1 => (1..=4usize, 1..=3usize, 0..4usize, proptest::option::of(any::<bool>()))
            .prop_map(|(rf, partitions, start, unclean)| Op::Create { rf, partitions, start, unclean }),
        1 => (0..4usize).prop_map(Op::Delete),
        1 => (0..4usize).prop_map(Op::AddPartitions),
        4 => (0..4usize, 0..3usize, any::<u8>(), any::<bool>())
            .prop_map(|(topic, partition, members, stale)| Op::AlterIsr { topic, partition, members, stale }),
        1 => any::<bool>().prop_map(Op::SetUncleanDefault),
        1 => any::<bool>().prop_map(Op::Elect),
    ]
}

impl Log {
    fn run(&mut self, op: &Op, seq: usize) {
        match op.clone() {
            Op::Start(b) => {
                self.start(b);
            }
            Op::Fence(b) | Op::Unfence(b) | Op::StaleFence(b) => {
                let Some(reg) = self.image.brokers.get(&b) else {
                    return;
                };
                let epoch = if matches!(op, Op::StaleFence(_)) {
                    reg.epoch.wrapping_sub(1)
                } else {
                    reg.epoch
                };
                let command = if matches!(op, Op::Unfence(_)) {
                    Command::UnfenceBroker { node_id: b, epoch }
                } else {
                    Command::FenceBroker { node_id: b, epoch }
                };
                self.apply(command);
            }
            Op::Create {
                rf,
                partitions,
                start,
                unclean,
            } => {
                let live: Vec<i32> = self
                    .image
                    .brokers
                    .values()
                    .filter(|b| !b.fenced)
                    .map(|b| b.node_id)
                    .collect();
                let Ok(lists) = super::assignment::assign_replicas(&live, 0, partitions, rf, start)
                else {
                    return;
                };
                let config = unclean
                    .map(|u| [(UNCLEAN_LEADER_ELECTION_ENABLE.to_string(), u.to_string())].into())
                    .unwrap_or_default();
                self.apply(Command::CreateTopic {
                    name: format!("t{seq}"),
                    id: Uuid::new_v4(),
                    partitions: lists,
                    config,
                });
            }
            Op::Delete(i) => {
                if let Some(name) = self.image.topics.keys().nth(i).cloned() {
                    self.apply(Command::DeleteTopic { name });
                }
            }
            Op::AddPartitions(i) => {
                if let Some((name, t)) = self.image.topics.iter().nth(i) {
                    let rf = t.partitions[0].replicas.len();
                    let live: Vec<i32> = self
                        .image
                        .brokers
                        .values()
                        .filter(|b| !b.fenced)
                        .map(|b| b.node_id)
                        .collect();
                    let Ok(lists) =
                        super::assignment::assign_replicas(&live, t.partitions.len(), 1, rf, seq)
                    else {
                        return;
                    };
                    let topic = name.clone();
                    self.apply(Command::CreatePartitions {
                        topic,
                        new_partitions: lists,
                    });
                }
            }
            Op::AlterIsr {
                topic,
                partition,
                members,
                stale,
            } => {
                let Some((name, t)) = self.image.topics.iter().nth(topic) else {
                    return;
                };
                let Some(p) = t.partitions.get(partition) else {
                    return;
                };
                let mut new_isr: Vec<i32> = p
                    .replicas
                    .iter()
                    .enumerate()
                    .filter(|(i, r)| **r == p.leader || members & (1 << i) != 0)
                    .map(|(_, r)| *r)
                    .collect();
                if members & 0x80 != 0 {
                    new_isr.retain(|&r| r != p.leader);
                }
                let command = Command::AlterPartition {
                    topic: name.clone(),
                    partition: partition as i32,
                    leader_id: p.leader,
                    leader_epoch: p.leader_epoch - i32::from(stale),
                    partition_epoch: p.partition_epoch,
                    new_isr,
                };
                self.apply(command);
            }
            Op::SetUncleanDefault(u) => {
                self.apply(Command::ActivateController {
                    cluster_id: "c".into(),
                    unclean_leader_election_enable: u,
                });
            }
            Op::Elect(unclean) => {
                self.apply(Command::ElectLeaders {
                    unclean,
                    partitions: None,
                });
            }
        }
    }
}

/// `asked_unclean`: the change was an unclean ElectLeaders, which may elect an out-of-sync
/// replica whatever the topic's setting.
fn check_invariants(
    before: &ClusterImage,
    after: &ClusterImage,
    asked_unclean: bool,
) -> Result<(), TestCaseError> {
    let alive = |id: i32| after.brokers.get(&id).is_some_and(|b| !b.fenced);
    for (name, t) in &after.topics {
        let unclean = asked_unclean || after.unclean_election_enabled(&t.config);
        for (i, p) in t.partitions.iter().enumerate() {
            prop_assert!(!p.isr.is_empty(), "{name}-{i}: empty ISR");
            prop_assert!(
                p.isr.iter().all(|r| p.replicas.contains(r)),
                "{name}-{i}: ISR {:?} not within {:?}",
                p.isr,
                p.replicas
            );
            prop_assert!(
                p.isr
                    .iter()
                    .enumerate()
                    .all(|(j, r)| !p.isr[..j].contains(r)),
                "{name}-{i}: duplicate in ISR"
            );
            if p.leader != NO_LEADER {
                prop_assert!(
                    p.isr.contains(&p.leader) && alive(p.leader),
                    "{name}-{i}: leader {} not a live ISR member {:?}",
                    p.leader,
                    p.isr
                );
            }
            if p.isr.len() > 1 {
                prop_assert!(
                    p.isr.iter().all(|&r| alive(r)),
                    "{name}-{i}: fenced broker kept in a multi-member ISR {:?}",
                    p.isr
                );
            }
            let Some(old) = before
                .topics
                .get(name)
                .filter(|o| o.id == t.id)
                .and_then(|o| o.partitions.get(i))
            else {
                continue;
            };
            prop_assert!(
                p.leader_epoch >= old.leader_epoch && p.partition_epoch >= old.partition_epoch,
                "{name}-{i}: epochs went back"
            );
            if p.leader != old.leader {
                prop_assert_eq!(
                    p.leader_epoch,
                    old.leader_epoch + 1,
                    "{}-{}: leader change without an epoch bump",
                    name,
                    i
                );
            }
            if p != old {
                prop_assert!(
                    p.partition_epoch > old.partition_epoch,
                    "{name}-{i}: change without a partition epoch bump"
                );
            }
            if p.leader != NO_LEADER && p.leader != old.leader && !old.isr.contains(&p.leader) {
                prop_assert!(
                    unclean,
                    "{name}-{i}: out-of-sync leader {} elected with unclean election off",
                    p.leader
                );
                prop_assert_eq!(&p.isr, &vec![p.leader]);
            }
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn apply_keeps_the_invariants(ops in proptest::collection::vec(op(), 1..60)) {
        let mut log = Log::new();
        for (seq, op) in ops.iter().enumerate() {
            let before = log.image.clone();
            log.run(op, seq);
            check_invariants(&before, &log.image, matches!(op, Op::Elect(true)))?;
        }
        // Determinism: replaying the log gives the same image.
        let mut replay = ClusterImage::default();
        for (i, command) in log.history.iter().enumerate() {
            replay.apply(i as u64 + 1, command.clone());
        }
        prop_assert_eq!(replay, log.image);
    }
}
