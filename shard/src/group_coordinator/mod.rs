//! The group coordinator: consumer group membership (`group`) and committed offsets
//! (`offsets`), one instance per shard.
//!
//! A group belongs to a coordinator partition, `abs(java_hash(group_id)) %
//! offsets.topic.num.partitions` as in Kafka: a partition of the replicated
//! `__consumer_offsets` topic. The partition's leader coordinates the group, on the shard
//! that owns the partition, so a group's state is touched by one thread only. Offsets, and
//! each settled membership (after the leader's SyncGroup, when the group empties, when a
//! static member takes over), are appended to the partition with acks=all before they are
//! acknowledged, and replayed by whichever broker leads the partition next (`store`).

pub mod group;
pub mod offsets;
mod store;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalSender};
use kafka_protocol::ResponseError;
use spate_core::config::BrokerConfig;
use spate_log::Clock;

pub use group::{
    GroupLimits, GroupState, JoinArgs, JoinResult, JoinedMember, MemberDescription, SyncResult,
};
pub use offsets::Committed;
use store::Led;

use crate::placement::owner_shard;
use group::{Delivery, Group, Reply};
use offsets::{OffsetRecord, OffsetTable};

/// Kafka's internal topic of committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How often the coordinator looks for expired sessions and rebalance deadlines: the
/// precision of session.timeout.ms and rebalance.timeout.ms.
pub const TIMER_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// The group settings of the broker config (see tuning/README.md).
#[derive(Debug, Clone, Copy)]
pub struct GroupConfig {
    pub limits: GroupLimits,
    /// `offsets.topic.num.partitions`
    pub offsets_partitions: i32,
    /// `offset.metadata.max.bytes`
    pub offset_metadata_max_bytes: usize,
    /// `offsets.retention.minutes`, in ms.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`
    pub retention_check_interval_ms: i64,
}

impl GroupConfig {
    pub fn from_broker(config: &BrokerConfig) -> GroupConfig {
        GroupConfig {
            limits: GroupLimits {
                min_session_timeout_ms: config.group_min_session_timeout_ms,
                max_session_timeout_ms: config.group_max_session_timeout_ms,
                max_size: config.group_max_size,
                initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
            },
            offsets_partitions: config.offsets_topic_num_partitions,
            offset_metadata_max_bytes: config.offset_metadata_max_bytes,
            offsets_retention_ms: config.offsets_retention_minutes.saturating_mul(60_000),
            retention_check_interval_ms: config.offsets_retention_check_interval_ms,
        }
    }
}

/// The coordinator partition of a group: Kafka's `Utils.abs(groupId.hashCode) % n`, with
/// Java's `String.hashCode` over UTF-16 code units, so a group lands where Kafka puts it.
pub fn coordinator_partition(group_id: &str, partitions: i32) -> i32 {
    let hash = group_id.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

/// The shard that coordinates a group: the owner of its coordinator partition.
pub fn coordinator_shard(group_id: &str, config: &GroupConfig, shards: usize) -> usize {
    let partition = coordinator_partition(group_id, config.offsets_partitions);
    owner_shard(OFFSETS_TOPIC, partition, shards)
}

/// One partition's commit in an OffsetCommit.
#[derive(Debug, Clone)]
pub struct CommitOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// Topic and partitions named by OffsetFetch and OffsetDelete.
pub type TopicPartitions = Vec<(String, Vec<i32>)>;

/// A request for one group (crosses shards).
#[derive(Debug)]
pub enum GroupCall {
    Join(JoinArgs),
    Sync {
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
        protocol_type: Option<String>,
        protocol_name: Option<String>,
        assignments: Vec<(String, Bytes)>,
    },
    Heartbeat {
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
    },
    /// (member id, instance id) per leaving member.
    Leave(Vec<(String, Option<String>)>),
    Commit {
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
        offsets: Vec<CommitOffset>,
    },
    /// `None`: every partition the group has an offset for.
    FetchOffsets(Option<TopicPartitions>),
    Describe,
    Delete,
    DeleteOffsets(TopicPartitions),
}

/// A group's answer. `Error` answers any call when the coordinator cannot serve it.
#[derive(Debug)]
pub enum GroupAnswer {
    Join(JoinResult),
    Sync(Result<SyncResult, ResponseError>),
    Heartbeat(Result<(), ResponseError>),
    Leave(Vec<Result<(), ResponseError>>),
    /// One result per committed partition, in order.
    Commit(Vec<Result<(), ResponseError>>),
    /// (topic, partition, committed) per partition asked for (or held).
    Offsets(Vec<(String, i32, Option<Committed>)>),
    Describe(GroupDescription),
    Delete(Result<(), ResponseError>),
    DeleteOffsets(Result<Vec<Result<(), ResponseError>>, ResponseError>),
    Error(ResponseError),
}

/// DescribeGroups' view of a group. A group Spate does not know is `Dead` with no members,
/// as in Kafka.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

/// ListGroups' view of a group.
#[derive(Debug, Clone)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
}

type MemberKey = (String, String);

pub struct GroupCoordinator {
    shard: usize,
    config: GroupConfig,
    /// `offsets.commit.timeout.ms`
    commit_timeout: Duration,
    clock: Rc<dyn Clock>,
    groups: RefCell<HashMap<String, Group>>,
    offsets: RefCell<OffsetTable>,
    /// The coordinator partitions this broker leads on this shard.
    led: RefCell<HashMap<i32, Led>>,
    joins: RefCell<HashMap<MemberKey, LocalSender<JoinResult>>>,
    syncs: RefCell<HashMap<MemberKey, LocalSender<Result<SyncResult, ResponseError>>>>,
    /// When `expire_offsets` last looked.
    last_expiry_ms: Cell<i64>,
}

impl GroupCoordinator {
    pub fn new(
        shard: usize,
        broker: &BrokerConfig,
        config: GroupConfig,
        clock: Rc<dyn Clock>,
    ) -> GroupCoordinator {
        GroupCoordinator {
            shard,
            config,
            commit_timeout: Duration::from_millis(broker.offsets_commit_timeout_ms),
            clock,
            groups: RefCell::new(HashMap::new()),
            offsets: RefCell::new(OffsetTable::default()),
            led: RefCell::new(HashMap::new()),
            joins: RefCell::new(HashMap::new()),
            syncs: RefCell::new(HashMap::new()),
            last_expiry_ms: Cell::new(0),
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// Serves one call for `group_id`, whose coordinator partition the metadata says this
    /// broker leads (`Shard::group_call` checks).
    pub async fn handle(&self, group_id: &str, call: GroupCall) -> GroupAnswer {
        if let Err(e) = self.check_loaded(group_id) {
            return GroupAnswer::Error(e);
        }
        let now = self.clock.now_ms();
        match call {
            GroupCall::Join(args) => GroupAnswer::Join(self.join(group_id, args, now).await),
            GroupCall::Sync {
                member_id,
                instance_id,
                generation,
                protocol_type,
                protocol_name,
                assignments,
            } => {
                let before = self.settled_state(group_id);
                let (reply, deliveries) = match self.groups.borrow_mut().get_mut(group_id) {
                    Some(group) => group.sync(
                        &member_id,
                        instance_id.as_deref(),
                        generation,
                        protocol_type.as_deref(),
                        protocol_name.as_deref(),
                        assignments,
                        now,
                    ),
                    None => (Reply::Now(Err(ResponseError::UnknownMemberId)), Vec::new()),
                };
                let waiting = match reply {
                    Reply::Now(result) => return GroupAnswer::Sync(result),
                    Reply::Later { member_id } => {
                        let (tx, rx) = local_channel::new_bounded(1);
                        self.syncs
                            .borrow_mut()
                            .insert((group_id.to_string(), member_id), tx);
                        rx
                    }
                };
                // The members learn their assignment once it is durable.
                self.persist_if_settled(group_id, before).await;
                self.deliver(group_id, deliveries);
                GroupAnswer::Sync(
                    waiting
                        .recv()
                        .await
                        .unwrap_or(Err(ResponseError::UnknownMemberId)),
                )
            }
            GroupCall::Heartbeat {
                member_id,
                instance_id,
                generation,
            } => GroupAnswer::Heartbeat(match self.groups.borrow_mut().get_mut(group_id) {
                Some(group) => group.heartbeat(&member_id, instance_id.as_deref(), generation, now),
                None => Err(ResponseError::UnknownMemberId),
            }),
            GroupCall::Leave(members) => {
                let before = self.settled_state(group_id);
                let (results, deliveries) = match self.groups.borrow_mut().get_mut(group_id) {
                    Some(group) => group.leave(&members, now),
                    None => (
                        vec![Err(ResponseError::UnknownMemberId); members.len()],
                        Vec::new(),
                    ),
                };
                self.deliver(group_id, deliveries);
                self.persist_if_settled(group_id, before).await;
                GroupAnswer::Leave(results)
            }
            GroupCall::Commit {
                member_id,
                instance_id,
                generation,
                offsets,
            } => GroupAnswer::Commit(
                self.commit(
                    group_id,
                    &member_id,
                    instance_id.as_deref(),
                    generation,
                    offsets,
                    now,
                )
                .await,
            ),
            GroupCall::FetchOffsets(topics) => GroupAnswer::Offsets(self.fetch(group_id, topics)),
            GroupCall::Describe => GroupAnswer::Describe(self.describe(group_id)),
            GroupCall::Delete => GroupAnswer::Delete(self.delete(group_id).await),
            GroupCall::DeleteOffsets(topics) => {
                GroupAnswer::DeleteOffsets(self.delete_offsets(group_id, topics).await)
            }
        }
    }

    async fn join(&self, group_id: &str, args: JoinArgs, now: i64) -> JoinResult {
        if group_id.is_empty() {
            return JoinResult::error(ResponseError::InvalidGroupId, &args.member_id);
        }
        let before = self.settled_state(group_id);
        let (reply, deliveries) = {
            let mut groups = self.groups.borrow_mut();
            if !groups.contains_key(group_id) && !args.member_id.is_empty() {
                return JoinResult::error(ResponseError::UnknownMemberId, &args.member_id);
            }
            groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id, self.config.limits))
                .join(args, now)
        };
        let waiting = match reply {
            Reply::Now(result) => {
                self.deliver(group_id, deliveries);
                if result.error.is_none() && before.0 == GroupState::Stable {
                    // A static member took over its old member id: record the new one.
                    self.persist(group_id).await;
                }
                return result;
            }
            Reply::Later { member_id } => {
                let (tx, rx) = local_channel::new_bounded(1);
                self.joins
                    .borrow_mut()
                    .insert((group_id.to_string(), member_id.clone()), tx);
                (rx, member_id)
            }
        };
        self.deliver(group_id, deliveries);
        let (rx, member_id) = waiting;
        rx.recv()
            .await
            .unwrap_or_else(|| JoinResult::error(ResponseError::UnknownMemberId, &member_id))
    }

    fn deliver(&self, group_id: &str, deliveries: Vec<Delivery>) {
        for delivery in deliveries {
            match delivery {
                Delivery::Join(member, result) => {
                    if let Some(tx) = self
                        .joins
                        .borrow_mut()
                        .remove(&(group_id.to_string(), member))
                    {
                        let _ = tx.try_send(result);
                    }
                }
                Delivery::Sync(member, result) => {
                    if let Some(tx) = self
                        .syncs
                        .borrow_mut()
                        .remove(&(group_id.to_string(), member))
                    {
                        let _ = tx.try_send(result);
                    }
                }
            }
        }
    }

    async fn commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        offsets: Vec<CommitOffset>,
        now: i64,
    ) -> Vec<Result<(), ResponseError>> {
        let checked = match self.groups.borrow_mut().get_mut(group_id) {
            Some(group) => group.check_commit(member_id, instance_id, generation, now),
            // A commit for a group with no members yet: only as a client (or admin) not
            // using group management, with generation -1 (Kafka's rule).
            None if generation < 0 => Ok(()),
            None => Err(ResponseError::IllegalGeneration),
        };
        let checked = checked.and(if group_id.is_empty() {
            Err(ResponseError::InvalidGroupId)
        } else {
            Ok(())
        });
        if let Err(e) = checked {
            return vec![Err(e); offsets.len()];
        }
        let max_metadata = self.config.offset_metadata_max_bytes;
        let mut results = Vec::with_capacity(offsets.len());
        let mut records = Vec::with_capacity(offsets.len());
        for o in offsets {
            if o.metadata.as_ref().is_some_and(|m| m.len() > max_metadata) {
                results.push(Err(ResponseError::OffsetMetadataTooLarge));
                continue;
            }
            results.push(Ok(()));
            records.push(OffsetRecord::Commit {
                group: group_id.to_string(),
                topic: o.topic,
                partition: o.partition,
                committed: Committed {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata,
                    commit_time_ms: now,
                },
            });
        }
        if records.is_empty() {
            return results;
        }
        match self.append(group_id, &records).await {
            Ok(base) => {
                let mut table = self.offsets.borrow_mut();
                for (i, record) in records.into_iter().enumerate() {
                    table.apply(record, base + i as i64);
                }
                results
            }
            Err(e) => results.into_iter().map(|r| r.and(Err(e))).collect(),
        }
    }

    fn fetch(
        &self,
        group_id: &str,
        topics: Option<TopicPartitions>,
    ) -> Vec<(String, i32, Option<Committed>)> {
        let table = self.offsets.borrow();
        match topics {
            Some(topics) => topics
                .into_iter()
                .flat_map(|(topic, partitions)| {
                    let table = &table;
                    partitions.into_iter().map(move |p| {
                        let committed = table.get(group_id, &topic, p).cloned();
                        (topic.clone(), p, committed)
                    })
                })
                .collect(),
            None => table
                .all(group_id)
                .into_iter()
                .map(|(t, p, c)| (t.to_string(), p, Some(c.clone())))
                .collect(),
        }
    }

    fn describe(&self, group_id: &str) -> GroupDescription {
        match self.groups.borrow().get(group_id) {
            Some(group) => GroupDescription {
                state: group.state().name(),
                protocol_type: group.protocol_type().unwrap_or_default().to_string(),
                protocol: match group.state() {
                    GroupState::Stable => group.protocol().unwrap_or_default().to_string(),
                    _ => String::new(),
                },
                members: group.describe_members(),
            },
            None if self.offsets.borrow().has_group(group_id) => GroupDescription {
                state: GroupState::Empty.name(),
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            },
            None => GroupDescription {
                state: GroupState::Dead.name(),
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            },
        }
    }

    /// The groups this shard coordinates.
    pub fn list(&self) -> Vec<ListedGroup> {
        let groups = self.groups.borrow();
        let mut listed: Vec<ListedGroup> = groups
            .values()
            .map(|g| ListedGroup {
                group_id: g.id().to_string(),
                protocol_type: g.protocol_type().unwrap_or_default().to_string(),
                state: g.state().name(),
            })
            .collect();
        for id in self.offsets.borrow().groups() {
            if !groups.contains_key(id) {
                listed.push(ListedGroup {
                    group_id: id.clone(),
                    protocol_type: String::new(),
                    state: GroupState::Empty.name(),
                });
            }
        }
        listed
    }

    async fn delete(&self, group_id: &str) -> Result<(), ResponseError> {
        let known = {
            let groups = self.groups.borrow();
            if groups.get(group_id).is_some_and(|g| !g.is_empty()) {
                return Err(ResponseError::NonEmptyGroup);
            }
            groups.contains_key(group_id) || self.offsets.borrow().has_group(group_id)
        };
        if !known {
            return Err(ResponseError::GroupIdNotFound);
        }
        if let Some(group) = self.groups.borrow_mut().get_mut(group_id) {
            group.mark_dead();
        }
        let tombstone = OffsetRecord::DeleteGroup {
            group: group_id.to_string(),
        };
        let appended = self
            .append(group_id, std::slice::from_ref(&tombstone))
            .await;
        let mut groups = self.groups.borrow_mut();
        match appended {
            Ok(at) => {
                groups.remove(group_id);
                self.offsets.borrow_mut().apply(tombstone, at);
                Ok(())
            }
            Err(e) => {
                // Not deleted after all: the group comes back to life, empty.
                groups.remove(group_id);
                Err(e)
            }
        }
    }

    async fn delete_offsets(
        &self,
        group_id: &str,
        topics: TopicPartitions,
    ) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
        let subscribed = {
            let groups = self.groups.borrow();
            let group = groups.get(group_id);
            if group.is_none() && !self.offsets.borrow().has_group(group_id) {
                return Err(ResponseError::GroupIdNotFound);
            }
            match group {
                Some(g) if !g.is_empty() && g.protocol_type() == Some("consumer") => Some(
                    g.member_metadata()
                        .iter()
                        .flat_map(subscribed_topics)
                        .collect::<Vec<String>>(),
                ),
                Some(g) if !g.is_empty() => return Err(ResponseError::NonEmptyGroup),
                _ => None,
            }
        };
        let mut results = Vec::new();
        let mut records = Vec::new();
        for (topic, partitions) in topics {
            let busy = subscribed.as_ref().is_some_and(|s| s.contains(&topic));
            for partition in partitions {
                if busy {
                    results.push(Err(ResponseError::GroupSubscribedToTopic));
                } else {
                    results.push(Ok(()));
                    records.push(OffsetRecord::DeleteOffset {
                        group: group_id.to_string(),
                        topic: topic.clone(),
                        partition,
                    });
                }
            }
        }
        if !records.is_empty() {
            let base = self.append(group_id, &records).await?;
            let mut table = self.offsets.borrow_mut();
            for (i, record) in records.into_iter().enumerate() {
                table.apply(record, base + i as i64);
            }
        }
        Ok(results)
    }

    /// Runs the groups' timers (session expiry, rebalance deadlines), records groups that
    /// emptied, and forgets groups that are empty and hold no offsets. Call periodically.
    pub async fn tick(&self) {
        self.load_pending().await;
        let now = self.clock.now_ms();
        let mut all = Vec::new();
        let mut emptied = Vec::new();
        {
            let mut groups = self.groups.borrow_mut();
            for (id, group) in groups.iter_mut() {
                let generation = group.generation();
                let deliveries = group.tick(now);
                if group.state() == GroupState::Empty && group.generation() != generation {
                    emptied.push(id.clone());
                }
                if !deliveries.is_empty() {
                    all.push((id.clone(), deliveries));
                }
            }
            let offsets = self.offsets.borrow();
            groups.retain(|id, g| !g.is_idle() || offsets.has_group(id));
        }
        for (id, deliveries) in all {
            self.deliver(&id, deliveries);
        }
        for id in emptied {
            self.persist(&id).await;
        }
        self.expire_offsets(now).await;
    }

    /// A group's (state, generation), to tell afterwards whether a call settled it.
    fn settled_state(&self, group_id: &str) -> (GroupState, i32) {
        self.groups
            .borrow()
            .get(group_id)
            .map_or((GroupState::Dead, -1), |g| (g.state(), g.generation()))
    }
}

/// The topics a consumer-protocol subscription (`ConsumerProtocolSubscription`: i16
/// version, array of strings, ...) names; empty if it cannot be parsed.
fn subscribed_topics(metadata: &Bytes) -> Vec<String> {
    let mut buf = &metadata[..];
    let mut topics = Vec::new();
    let take = |buf: &mut &[u8], n: usize| -> Option<Vec<u8>> {
        if buf.len() < n {
            return None;
        }
        let (head, rest) = buf.split_at(n);
        *buf = rest;
        Some(head.to_vec())
    };
    let parse = |buf: &mut &[u8], topics: &mut Vec<String>| -> Option<()> {
        take(buf, 2)?;
        let count = i32::from_be_bytes(take(buf, 4)?.try_into().ok()?);
        for _ in 0..count.max(0) {
            let len = i16::from_be_bytes(take(buf, 2)?.try_into().ok()?);
            let name = take(buf, usize::try_from(len).ok()?)?;
            topics.push(String::from_utf8(name).ok()?);
        }
        Some(())
    };
    let _ = parse(&mut buf, &mut topics);
    topics
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::Partition;
    use crate::replication::{Replication, ReplicationConfig};
    use crate::topics::partition_dir;
    use spate_log::{LogConfig, ManualClock, PartitionLog};

    /// A coordinator over `broker`'s log dir that leads every coordinator partition alone,
    /// as a single broker does, and has loaded them.
    struct Opened {
        coordinator: GroupCoordinator,
        partitions: Vec<Rc<Partition>>,
    }

    impl std::ops::Deref for Opened {
        type Target = GroupCoordinator;
        fn deref(&self) -> &GroupCoordinator {
            &self.coordinator
        }
    }

    impl Opened {
        fn led(&self) -> Vec<(i32, i32, Rc<Partition>)> {
            (0..)
                .zip(&self.partitions)
                .map(|(i, p)| (i, p.leader_epoch(), p.clone()))
                .collect()
        }

        async fn close(&self) {
            for p in &self.partitions {
                p.log.close().await.unwrap();
            }
        }
    }

    async fn open(broker: &BrokerConfig, clock: Rc<ManualClock>) -> Opened {
        let config = GroupConfig::from_broker(broker);
        let replication = Replication::new(
            broker.node_id,
            ReplicationConfig::from_broker(broker),
            clock.clone(),
        );
        let log_config = LogConfig {
            segment_bytes: broker.offsets_topic_segment_bytes,
            ..LogConfig::default()
        };
        let mut partitions = Vec::new();
        for index in 0..config.offsets_partitions {
            let dir = partition_dir(&broker.log_dir, OFFSETS_TOPIC, index);
            let log = PartitionLog::open(&dir, log_config.clone(), clock.clone())
                .await
                .unwrap();
            partitions.push(Partition::new(
                log,
                OFFSETS_TOPIC,
                index,
                uuid::Uuid::nil(),
                replication.clone(),
            ));
        }
        let opened = Opened {
            coordinator: GroupCoordinator::new(0, broker, config, clock),
            partitions,
        };
        opened.follow_leadership(opened.led());
        opened.load_pending().await;
        opened
    }

    /// Runs `test` on a fresh executor with a loaded coordinator over `broker`'s log dir and a
    /// manual clock starting at `start_ms`; `broker` is handed back for reopening.
    fn with_coordinator<F, Fut>(broker: BrokerConfig, start_ms: i64, test: F)
    where
        F: FnOnce(BrokerConfig, Opened, Rc<ManualClock>) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        crate::run_local(async move {
            let clock = Rc::new(ManualClock::new(start_ms));
            let c = open(&broker, clock.clone()).await;
            test(broker, c, clock).await;
        });
    }

    fn join_args(member_id: &str) -> JoinArgs {
        JoinArgs {
            member_id: member_id.to_string(),
            instance_id: None,
            client_id: "c".into(),
            client_host: String::new(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"m"))],
            require_known_member_id: true,
        }
    }

    #[test]
    fn a_join_waits_for_the_rebalance_and_commits_are_replayed_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let broker = BrokerConfig {
            log_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        };
        with_coordinator(broker, 1_000, |broker, c, clock| async move {
            let GroupAnswer::Join(first) = c.handle("g", GroupCall::Join(join_args(""))).await
            else {
                panic!("expected a join answer")
            };
            assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
            let member = first.member_id.clone();
            let join = c.handle("g", GroupCall::Join(join_args(&member)));
            futures_lite::pin!(join);
            assert!(
                futures_lite::future::poll_once(&mut join).await.is_none(),
                "the initial delay holds the join"
            );
            clock.set(1_000 + 3_000);
            c.tick().await;
            let GroupAnswer::Join(joined) = join.await else {
                panic!("expected a join answer")
            };
            assert_eq!(joined.error, None);
            assert_eq!(joined.generation, 1);
            let sync = GroupCall::Sync {
                member_id: member.clone(),
                instance_id: None,
                generation: 1,
                protocol_type: None,
                protocol_name: None,
                assignments: vec![(member.clone(), Bytes::from_static(b"a"))],
            };
            assert!(matches!(
                c.handle("g", sync).await,
                GroupAnswer::Sync(Ok(_))
            ));
            let offsets = (0..3)
                .map(|p| CommitOffset {
                    topic: "t".into(),
                    partition: p,
                    offset: 10 + i64::from(p),
                    leader_epoch: -1,
                    metadata: Some("x".repeat(if p == 2 { 5_000 } else { 1 })),
                })
                .collect();
            let commit = GroupCall::Commit {
                member_id: member.clone(),
                instance_id: None,
                generation: 1,
                offsets,
            };
            let GroupAnswer::Commit(results) = c.handle("g", commit).await else {
                panic!("expected commit results")
            };
            assert_eq!(
                results,
                vec![Ok(()), Ok(()), Err(ResponseError::OffsetMetadataTooLarge)]
            );
            c.close().await;

            let c = open(&broker, clock).await;
            let GroupAnswer::Offsets(offsets) = c.handle("g", GroupCall::FetchOffsets(None)).await
            else {
                panic!("expected offsets")
            };
            let offsets: Vec<(i32, i64)> = offsets
                .into_iter()
                .map(|(_, p, c)| (p, c.unwrap().offset))
                .collect();
            assert_eq!(offsets, vec![(0, 10), (1, 11)]);
            // The membership is back too: the member carries on in its generation.
            let heartbeat = GroupCall::Heartbeat {
                member_id: member.clone(),
                instance_id: None,
                generation: 1,
            };
            assert!(matches!(
                c.handle("g", heartbeat).await,
                GroupAnswer::Heartbeat(Ok(()))
            ));
            let GroupAnswer::Describe(described) = c.handle("g", GroupCall::Describe).await else {
                panic!("expected a description")
            };
            assert_eq!(described.state, "Stable");
            assert_eq!(&described.members[0].assignment[..], b"a");
            // Leaving empties the group; that is recorded as well.
            assert!(matches!(
                c.handle("g", GroupCall::Leave(vec![(member, None)])).await,
                GroupAnswer::Leave(r) if r == vec![Ok(())]
            ));
            c.close().await;
            let c = open(&broker, Rc::new(ManualClock::new(1_000))).await;
            let GroupAnswer::Describe(described) = c.handle("g", GroupCall::Describe).await else {
                panic!("expected a description")
            };
            assert_eq!(described.state, "Empty");
            assert!(described.members.is_empty());
            c.close().await;
        });
    }

    #[test]
    fn groups_of_a_partition_led_elsewhere_are_unloaded_until_it_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let broker = BrokerConfig {
            log_dir: dir.path().to_path_buf(),
            group_initial_rebalance_delay_ms: 60_000,
            ..BrokerConfig::default()
        };
        with_coordinator(broker, 0, |_, c, _| async move {
            let commit = GroupCall::Commit {
                member_id: String::new(),
                instance_id: None,
                generation: -1,
                offsets: vec![CommitOffset {
                    topic: "t".into(),
                    partition: 0,
                    offset: 7,
                    leader_epoch: -1,
                    metadata: None,
                }],
            };
            assert!(
                matches!(c.handle("g", commit).await, GroupAnswer::Commit(r) if r == vec![Ok(())])
            );
            let GroupAnswer::Join(first) = c.handle("w", GroupCall::Join(join_args(""))).await
            else {
                panic!("expected a join answer")
            };
            let join = c.handle("w", GroupCall::Join(join_args(&first.member_id)));
            futures_lite::pin!(join);
            assert!(futures_lite::future::poll_once(&mut join).await.is_none());

            // Leadership of both groups' partitions moves to another broker.
            let n = c.config().offsets_partitions;
            let moved = [coordinator_partition("g", n), coordinator_partition("w", n)];
            let kept = c
                .led()
                .into_iter()
                .filter(|(i, _, _)| !moved.contains(i))
                .collect::<Vec<_>>();
            c.follow_leadership(kept.clone());
            let GroupAnswer::Join(waiting) = join.await else {
                panic!("expected a join answer")
            };
            assert_eq!(waiting.error, Some(ResponseError::NotCoordinator));
            // (The shard answers NOT_COORDINATOR before asking: its table names the new
            // leader. Here no table says so: the partition is not loaded.)
            assert!(matches!(
                c.handle("g", GroupCall::FetchOffsets(None)).await,
                GroupAnswer::Error(ResponseError::CoordinatorLoadInProgress)
            ));
            assert!(c.offsets.borrow().all("g").is_empty(), "unloaded");

            // Led here again at a later epoch: loading, then the offsets are back.
            let mut again = kept;
            for i in moved {
                again.push((i, 1, c.partitions[i as usize].clone()));
            }
            c.follow_leadership(again);
            assert!(matches!(
                c.handle("g", GroupCall::FetchOffsets(None)).await,
                GroupAnswer::Error(ResponseError::CoordinatorLoadInProgress)
            ));
            c.load_pending().await;
            let GroupAnswer::Offsets(offsets) = c.handle("g", GroupCall::FetchOffsets(None)).await
            else {
                panic!("expected offsets")
            };
            assert_eq!(offsets.len(), 1);
            assert_eq!(offsets[0].2.as_ref().map(|c| c.offset), Some(7));
            c.close().await;
        });
    }

    #[test]
    fn start_up_compaction_drops_overwritten_commits_and_keeps_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let broker = BrokerConfig {
            log_dir: dir.path().to_path_buf(),
            // Small segments, so the compacted prefix is whole segments and gets deleted.
            offsets_topic_segment_bytes: 16 * 1024,
            ..BrokerConfig::default()
        };
        crate::run_local(async move {
            let open = || open(&broker, Rc::new(ManualClock::new(0)));
            let commit = |group: &str, partition: i32, offset: i64| GroupCall::Commit {
                member_id: String::new(),
                instance_id: None,
                generation: -1,
                offsets: vec![CommitOffset {
                    topic: format!("topic-of-{group}"),
                    partition,
                    offset,
                    leader_epoch: -1,
                    metadata: None,
                }],
            };
            let c = open().await;
            for i in 0..1_500 {
                let answer = c.handle("g", commit("g", i % 3, i64::from(i))).await;
                assert!(matches!(answer, GroupAnswer::Commit(r) if r == vec![Ok(())]));
            }
            // A deleted group's offsets must not come back with the checkpoint.
            let deleted = (0..100)
                .map(|i| format!("d-{i}"))
                .find(|g| coordinator_partition(g, 50) == coordinator_partition("g", 50))
                .unwrap();
            assert!(matches!(
                c.handle(&deleted, commit(&deleted, 0, 1)).await,
                GroupAnswer::Commit(_)
            ));
            assert!(matches!(
                c.handle(&deleted, GroupCall::Delete).await,
                GroupAnswer::Delete(Ok(()))
            ));
            c.close().await;

            let expect = |c: &GroupCoordinator| {
                let offsets = c.fetch("g", None);
                let got: Vec<(i32, i64)> = offsets
                    .into_iter()
                    .map(|(_, p, c)| (p, c.unwrap().offset))
                    .collect();
                assert_eq!(got, vec![(0, 1_497), (1, 1_498), (2, 1_499)]);
                assert!(c.fetch(&deleted, None).is_empty());
            };
            let partition = coordinator_partition("g", 50);
            let c = open().await;
            expect(&c);
            let log = c.partitions[partition as usize].log.clone();
            assert!(log.log_start_offset() >= 1_500, "compacted");
            assert!(log.segment_count() < 5, "old segments deleted");
            drop(log);
            c.close().await;
            let c = open().await;
            expect(&c);
            c.close().await;
        });
    }

    #[test]
    fn offsets_of_a_group_without_members_expire_after_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let broker = BrokerConfig {
            log_dir: dir.path().to_path_buf(),
            offsets_retention_minutes: 1,
            offsets_retention_check_interval_ms: 1_000,
            ..BrokerConfig::default()
        };
        with_coordinator(broker, 1_000_000, |broker, c, clock| async move {
            let commit = |partition: i32| GroupCall::Commit {
                member_id: String::new(),
                instance_id: None,
                generation: -1,
                offsets: vec![CommitOffset {
                    topic: "t".into(),
                    partition,
                    offset: 5,
                    leader_epoch: -1,
                    metadata: None,
                }],
            };
            assert!(matches!(
                c.handle("g", commit(0)).await,
                GroupAnswer::Commit(_)
            ));
            clock.set(1_030_000);
            assert!(matches!(
                c.handle("g", commit(1)).await,
                GroupAnswer::Commit(_)
            ));
            // A group with a member keeps even old offsets.
            assert!(matches!(
                c.handle("live", commit(0)).await,
                GroupAnswer::Commit(_)
            ));
            let GroupAnswer::Join(j) = c.handle("live", GroupCall::Join(join_args(""))).await
            else {
                panic!()
            };
            let join = c.handle("live", GroupCall::Join(join_args(&j.member_id)));
            futures_lite::pin!(join);
            assert!(futures_lite::future::poll_once(&mut join).await.is_none());
            clock.set(1_060_500);
            c.tick().await;
            // Partition 0 (committed 60.5 s ago) expired; partition 1 not yet.
            let left: Vec<i32> = c.fetch("g", None).into_iter().map(|(_, p, _)| p).collect();
            assert_eq!(left, vec![1]);
            assert_eq!(c.fetch("live", None).len(), 1);
            c.close().await;
            // The expiry is durable.
            let c = open(&broker, clock).await;
            let left: Vec<i32> = c.fetch("g", None).into_iter().map(|(_, p, _)| p).collect();
            assert_eq!(left, vec![1]);
            c.close().await;
        });
    }

    #[test]
    fn coordinator_partition_matches_kafka() {
        // Java: "my-group".hashCode() == -1_906_497_762; abs % 50 == 12.
        assert_eq!(coordinator_partition("my-group", 50), 12);
        assert_eq!(coordinator_partition("", 50), 0);
        for g in ["a", "group-1", "ünïcode", "x".repeat(300).as_str()] {
            let p = coordinator_partition(g, 50);
            assert!((0..50).contains(&p));
        }
    }

    #[test]
    fn subscription_topics_are_parsed_and_garbage_is_ignored() {
        let mut m = vec![0u8, 1, 0, 0, 0, 2];
        for t in ["orders", "users"] {
            m.extend((t.len() as i16).to_be_bytes());
            m.extend(t.as_bytes());
        }
        m.extend([0xff, 0xff, 0xff, 0xff]);
        assert_eq!(subscribed_topics(&Bytes::from(m)), vec!["orders", "users"]);
        assert!(subscribed_topics(&Bytes::from_static(&[0, 1, 0x7f, 0xff, 0xff, 0xff])).is_empty());
    }
}
