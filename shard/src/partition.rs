//! The owner side of a partition: the log, its replica role (leader or follower, see
//! `replication`), the signal fetches and acks=all producers wait on, and the operations a
//! shard runs on the partitions it owns.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::ResponseError;
use spate_core::record_batch;
use spate_log::{LogError, PartitionLog, ReadSlice};
use uuid::Uuid;

use crate::controller::image::{PartitionAssignment, NO_LEADER};
use crate::messages::{Appended, Commit, ListedOffset, PartitionOffsets, ProduceResult};
use crate::notify::Notify;
use crate::replication::leader::LeaderState;
use crate::replication::{AlterIsr, BrokerEndpoint, Replication};

/// ListOffsets' special timestamps.
const EARLIEST_TIMESTAMP: i64 = -2;
const LATEST_TIMESTAMP: i64 = -1;
const MAX_TIMESTAMP: i64 = -3;
/// The first offset kept on this broker's disk: with no tiered storage, the log start.
const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;
/// The last offset in tiered storage: there is none, so no offset.
const LATEST_TIERED_TIMESTAMP: i64 = -5;

/// Produce's `acks=all`: answer once every in-sync replica has the records.
pub const ACKS_ALL: i16 = -1;
/// A request's `current_leader_epoch` of -1: the client does not check epochs.
pub const NO_EPOCH_CHECK: i32 = -1;

/// This broker's part in the partition.
pub(crate) enum Role {
    Leader(LeaderState),
    /// Following `assignment.leader` (or nobody, with [`NO_LEADER`]).
    Follower(PartitionAssignment),
}

pub struct Partition {
    pub log: Rc<PartitionLog>,
    /// Fired when the log end, the high watermark or the role changes: long polls, replica
    /// fetches and acks=all producers wait on it.
    pub appended: Notify,
    /// `max.message.bytes` of the topic (changed live by the config APIs).
    pub max_message_bytes: Cell<usize>,
    /// `min.insync.replicas` of the topic (changed live by the config APIs).
    pub min_insync_replicas: Cell<i32>,
    pub(crate) topic: String,
    pub(crate) index: i32,
    pub(crate) topic_id: Uuid,
    pub(crate) role: RefCell<Role>,
    pub(crate) replication: Rc<Replication>,
}

impl Partition {
    /// A partition this broker leads alone (the single-broker case) until an assignment
    /// says otherwise: everything in the log is committed.
    pub fn new(
        log: Rc<PartitionLog>,
        topic: &str,
        index: i32,
        topic_id: Uuid,
        replication: Rc<Replication>,
    ) -> Rc<Partition> {
        let me = replication.node_id();
        let end = log.log_end_offset();
        let role = Role::Leader(LeaderState::new(
            me,
            PartitionAssignment::single(me),
            end,
            replication.now_ms(),
        ));
        log.set_high_watermark(end);
        Rc::new(Partition {
            log,
            appended: Notify::default(),
            max_message_bytes: Cell::new(usize::MAX),
            min_insync_replicas: Cell::new(1),
            topic: topic.to_string(),
            index,
            topic_id,
            role: RefCell::new(role),
            replication,
        })
    }

    /// The leader epoch this broker knows for the partition.
    pub fn leader_epoch(&self) -> i32 {
        match &*self.role.borrow() {
            Role::Leader(s) => s.assignment().leader_epoch,
            Role::Follower(a) => a.leader_epoch,
        }
    }

    /// The committed ISR as this broker knows it.
    pub fn isr(&self) -> Vec<i32> {
        match &*self.role.borrow() {
            Role::Leader(s) => s.isr().to_vec(),
            Role::Follower(a) => a.isr.clone(),
        }
    }

    /// Checks that this broker leads the partition and that a request's
    /// `current_leader_epoch` matches: older is FENCED_LEADER_EPOCH, newer (we have not
    /// heard of it yet) UNKNOWN_LEADER_EPOCH. Answers the leader epoch.
    pub fn check_leader(&self, current_leader_epoch: i32) -> Result<i32, ResponseError> {
        let epoch = match &*self.role.borrow() {
            Role::Leader(s) => s.assignment().leader_epoch,
            Role::Follower(_) => return Err(ResponseError::NotLeaderOrFollower),
        };
        match current_leader_epoch {
            NO_EPOCH_CHECK => Ok(epoch),
            e if e < epoch => Err(ResponseError::FencedLeaderEpoch),
            e if e > epoch => Err(ResponseError::UnknownLeaderEpoch),
            _ => Ok(epoch),
        }
    }

    /// Checks each batch's size and appends at the current leader epoch. `acks=all` then
    /// waits until the high watermark passes the batch (REQUEST_TIMED_OUT after `timeout`),
    /// after checking `min.insync.replicas` before the append (NOT_ENOUGH_REPLICAS) and
    /// again once committed (NOT_ENOUGH_REPLICAS_AFTER_APPEND: the ISR shrank meanwhile).
    pub async fn produce(
        &self,
        records: BytesMut,
        acks: i16,
        timeout: Duration,
    ) -> Result<ProduceResult, ResponseError> {
        let appended = self.append_produced(records, acks, timeout).await?;
        if let Some(commit) = appended.commit {
            self.committed(commit).await?;
        }
        Ok(appended.result)
    }

    /// The first half of [`Partition::produce`]: the checks and the append. For `acks=all`
    /// the answer carries the wait still owed ([`Partition::committed`]), so a connection
    /// can append its next request meanwhile; `timeout` runs from now.
    pub async fn append_produced(
        &self,
        records: BytesMut,
        acks: i16,
        timeout: Duration,
    ) -> Result<Appended, ResponseError> {
        let epoch = self.check_leader(NO_EPOCH_CHECK)?;
        for batch in record_batch::split(&records) {
            let (_, header, _) = batch.map_err(|e| e.kafka_error())?;
            if header.total_len() > self.max_message_bytes.get() {
                return Err(ResponseError::MessageTooLarge);
            }
        }
        if acks == ACKS_ALL && self.isr_too_small() {
            return Err(ResponseError::NotEnoughReplicas);
        }
        let info = self
            .log
            .append(records, epoch)
            .await
            .map_err(|e| e.kafka_error())?;
        self.maybe_advance_high_watermark();
        self.appended.notify_all();
        Ok(Appended {
            result: ProduceResult {
                base_offset: info.base_offset,
                log_start_offset: info.log_start_offset,
            },
            commit: (acks == ACKS_ALL).then(|| Commit {
                topic: self.topic.clone(),
                partition: self.index,
                last_offset: info.last_offset,
                leader_epoch: epoch,
                deadline: Instant::now() + timeout,
            }),
        })
    }

    fn isr_too_small(&self) -> bool {
        self.isr().len() < usize::try_from(self.min_insync_replicas.get()).unwrap_or(0)
    }

    /// The second half of an `acks=all` produce: waits until the high watermark passes the
    /// appended records while this broker still leads at the append's epoch.
    pub async fn committed(&self, commit: Commit) -> Result<(), ResponseError> {
        let Commit {
            last_offset,
            leader_epoch: epoch,
            deadline,
            ..
        } = commit;
        loop {
            let seen = self.appended.version();
            if self.check_leader(epoch).is_err() || self.replication.is_stopping() {
                return Err(ResponseError::NotLeaderOrFollower);
            }
            if self.log.high_watermark() > last_offset {
                return if self.isr_too_small() {
                    Err(ResponseError::NotEnoughReplicasAfterAppend)
                } else {
                    Ok(())
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ResponseError::RequestTimedOut);
            }
            futures_lite::future::or(
                futures_lite::future::or(
                    self.appended.changed_since(seen),
                    self.replication.until_stopping(),
                ),
                glommio::timer::sleep(left),
            )
            .await;
        }
    }

    /// A consumer's read: whole batches from `offset`, at most `max_bytes` (but the first
    /// batch regardless with `min_one_batch`), below the high watermark. Leader only.
    pub async fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        current_leader_epoch: i32,
    ) -> Result<(ReadSlice, PartitionOffsets), ResponseError> {
        self.check_leader(current_leader_epoch)?;
        let offsets = self.offsets();
        let slice = self
            .log
            .read(offset, max_bytes, offsets.high_watermark, min_one_batch)
            .await
            .map_err(|e| e.kafka_error())?;
        Ok((slice, offsets))
    }

    /// A follower's Fetch: notes its log end (the fetch offset), which may move the high
    /// watermark and bring it back into the ISR, then reads up to the log end.
    pub async fn read_for_replica(
        self: &Rc<Self>,
        replica_id: i32,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        current_leader_epoch: i32,
    ) -> Result<(ReadSlice, PartitionOffsets), ResponseError> {
        self.check_leader(current_leader_epoch)?;
        let end = self.log.log_end_offset();
        if offset > end || offset < self.log.log_start_offset() {
            // A diverged or far-behind follower: not progress to note. It truncates (or
            // restarts from the log start) and asks again.
            return Err(ResponseError::OffsetOutOfRange);
        }
        let known = match &mut *self.role.borrow_mut() {
            Role::Leader(s) => s.record_fetch(replica_id, offset, end, self.replication.now_ms()),
            Role::Follower(_) => false,
        };
        if !known {
            // Kafka's answer to a broker that is not a replica of the partition.
            return Err(ResponseError::NotLeaderOrFollower);
        }
        if self.maybe_advance_high_watermark() {
            self.appended.notify_all();
        }
        self.maybe_expand_isr(replica_id);
        let offsets = self.offsets();
        let slice = self
            .log
            .read(offset, max_bytes, i64::MAX, min_one_batch)
            .await
            .map_err(|e| e.kafka_error())?;
        Ok((slice, offsets))
    }

    pub fn offsets(&self) -> PartitionOffsets {
        PartitionOffsets {
            high_watermark: self.log.high_watermark(),
            log_start_offset: self.log.log_start_offset(),
        }
    }

    /// Waits until there is data past `offset` for the reader (the high watermark for a
    /// consumer, the log end for a follower) or `timeout` elapses, woken by the append
    /// itself rather than a polling tick.
    pub async fn wait_for_data(&self, offset: i64, timeout: Duration, for_replica: bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.appended.version();
            let end = if for_replica {
                self.log.log_end_offset()
            } else {
                self.log.high_watermark()
            };
            if end > offset {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            futures_lite::future::or(
                self.appended.changed_since(seen),
                glommio::timer::sleep(left),
            )
            .await;
        }
    }

    /// ListOffsets for `timestamp`. The latest offset is the log end for a follower
    /// (`for_replica`: it may read up to there) and the high watermark for a consumer, as
    /// in Kafka.
    pub async fn list_offset(
        &self,
        timestamp: i64,
        current_leader_epoch: i32,
        for_replica: bool,
    ) -> Result<Option<ListedOffset>, ResponseError> {
        let leader_epoch = self.check_leader(current_leader_epoch)?;
        let log = &self.log;
        let listed = |timestamp, offset| ListedOffset {
            timestamp,
            offset,
            leader_epoch,
        };
        let found = match timestamp {
            EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP => {
                Some(listed(-1, log.log_start_offset()))
            }
            LATEST_TIMESTAMP if for_replica => Some(listed(-1, log.log_end_offset())),
            LATEST_TIMESTAMP => Some(listed(-1, log.high_watermark())),
            LATEST_TIERED_TIMESTAMP => None,
            MAX_TIMESTAMP => {
                let (timestamp, offset) = log.max_timestamp();
                (offset >= 0).then(|| listed(timestamp, offset))
            }
            ts if ts < 0 => return Err(ResponseError::InvalidRequest),
            ts => log
                .offset_for_timestamp(ts)
                .await
                .map_err(|e| e.kafka_error())?
                .map(|(offset, timestamp)| listed(timestamp, offset)),
        };
        Ok(found)
    }

    /// Takes the partition's state from the cluster metadata: leads it, follows
    /// `leader` (whose address is `leader_endpoint`), or waits without a leader. A newer
    /// state of the same leadership (an ISR change) only updates the ISR.
    pub fn set_assignment(
        self: &Rc<Self>,
        assignment: &PartitionAssignment,
        leader_endpoint: Option<BrokerEndpoint>,
    ) {
        let me = self.replication.node_id();
        let current_epoch = self.leader_epoch();
        if assignment.leader_epoch < current_epoch {
            return; // older metadata than we already acted on
        }
        let unchanged = match &*self.role.borrow() {
            Role::Leader(s) => s.assignment() == assignment,
            Role::Follower(a) => a == assignment,
        };
        if assignment.leader == me {
            if unchanged {
                return;
            }
            let became_leader = {
                let mut role = self.role.borrow_mut();
                match &mut *role {
                    Role::Leader(s) if s.assignment().leader_epoch == assignment.leader_epoch => {
                        if assignment.partition_epoch >= s.assignment().partition_epoch {
                            s.update(assignment.clone(), self.replication.now_ms());
                        }
                        false
                    }
                    _ => {
                        *role = Role::Leader(LeaderState::new(
                            me,
                            assignment.clone(),
                            self.log.log_end_offset(),
                            self.replication.now_ms(),
                        ));
                        true
                    }
                }
            };
            if became_leader {
                self.replication.unfollow(self);
                tracing::info!(
                    "{}-{} led here at epoch {}",
                    self.topic,
                    self.index,
                    assignment.leader_epoch
                );
            }
            self.replication
                .note_leader(self, assignment.replicas.len() > 1);
            self.maybe_advance_high_watermark();
        } else {
            if !unchanged {
                *self.role.borrow_mut() = Role::Follower(assignment.clone());
                self.replication.forget_leader(self);
            }
            // Also when unchanged: the leader's address may have arrived only now.
            match leader_endpoint {
                Some(leader) if assignment.leader != NO_LEADER => {
                    self.replication
                        .follow(self, leader, assignment.leader_epoch)
                }
                // No leader, or no address for it: stop fetching until one arrives.
                _ => self.replication.unfollow(self),
            }
            if unchanged {
                return;
            }
        }
        // Waiting producers and fetches look again: the role or the ISR changed.
        self.appended.notify_all();
    }

    /// The partition leaves this shard (deleted, or no longer a replica here): no more
    /// fetching or ISR checks, and waiting producers and fetches give up.
    pub(crate) fn stop_replicating(&self) {
        self.replication.unfollow(self);
        self.replication.forget_leader(self);
        let mut follower = PartitionAssignment::single(NO_LEADER);
        follower.leader_epoch = self.leader_epoch();
        *self.role.borrow_mut() = Role::Follower(follower);
        self.appended.notify_all();
    }

    /// Moves the leader's high watermark to the smallest log end over the ISR, never
    /// backwards. True when it moved.
    pub(crate) fn maybe_advance_high_watermark(&self) -> bool {
        let end = self.log.log_end_offset();
        let candidate = match &*self.role.borrow() {
            Role::Leader(s) => s.high_watermark(end),
            Role::Follower(_) => return false,
        };
        let old = self.log.high_watermark();
        if candidate > old {
            self.log.set_high_watermark(candidate);
            return true;
        }
        false
    }

    /// Asks the controller to add `replica` to the ISR if it has caught up.
    fn maybe_expand_isr(self: &Rc<Self>, replica: i32) {
        let proposal = match &*self.role.borrow() {
            Role::Leader(s) => s.expand_proposal(replica, self.log.high_watermark()),
            Role::Follower(_) => None,
        };
        if let Some(isr) = proposal {
            self.propose_isr(isr);
        }
    }

    /// Asks the controller to drop ISR members that have lagged for more than
    /// `replica.lag.time.max.ms`. True when a change was proposed.
    pub fn maybe_shrink_isr(self: &Rc<Self>) -> bool {
        let lag = self.replication.config().replica_lag_time_max_ms;
        let proposal = match &*self.role.borrow() {
            Role::Leader(s) => {
                s.shrink_proposal(self.log.log_end_offset(), self.replication.now_ms(), lag)
            }
            Role::Follower(_) => None,
        };
        match proposal {
            Some(isr) => self.propose_isr(isr),
            None => false,
        }
    }

    /// Sends an AlterPartition in the background and applies the committed state it
    /// returns. One change at a time; none without a controller.
    fn propose_isr(self: &Rc<Self>, isr: Vec<i32>) -> bool {
        let Some(updater) = self.replication.isr_updater() else {
            return false;
        };
        let change = {
            let mut role = self.role.borrow_mut();
            let Role::Leader(s) = &mut *role else {
                return false;
            };
            let a = s.assignment();
            let change = AlterIsr {
                topic: self.topic.clone(),
                partition: self.index,
                leader_id: a.leader,
                leader_epoch: a.leader_epoch,
                partition_epoch: a.partition_epoch,
                new_isr: isr.clone(),
            };
            s.set_pending(isr);
            change
        };
        tracing::info!(
            "{}-{}: proposing ISR {:?} (was {:?})",
            self.topic,
            self.index,
            change.new_isr,
            self.isr()
        );
        let partition = self.clone();
        glommio::spawn_local(async move {
            let answer = updater.alter_partition(change).await;
            match answer {
                Ok(committed) => partition.set_assignment(&committed, None),
                Err(e) => {
                    tracing::warn!(
                        "{}-{}: the controller refused the ISR change: {e:?}",
                        partition.topic,
                        partition.index
                    );
                    if let Role::Leader(s) = &mut *partition.role.borrow_mut() {
                        s.clear_pending();
                    }
                }
            }
            if partition.maybe_advance_high_watermark() {
                partition.appended.notify_all();
            }
        })
        .detach();
        true
    }

    /// A follower's append of what its leader sent, then its high watermark (the leader's,
    /// but never past its own log end, and never backwards) and its log start (the leader's
    /// DeleteRecords reach followers this way, as in Kafka).
    pub(crate) async fn append_from_leader(
        &self,
        records: BytesMut,
        leader_high_watermark: i64,
        leader_log_start: i64,
    ) -> Result<(), LogError> {
        if !records.is_empty() {
            self.append_as_follower(records).await?;
        }
        self.follow_high_watermark(leader_high_watermark);
        let start = leader_log_start.min(self.log.high_watermark());
        if start > self.log.log_start_offset() {
            self.log.delete_before(start).await?;
        }
        self.appended.notify_all();
        Ok(())
    }

    /// A follower cuts its diverged tail (see `replication::follower`).
    pub(crate) async fn truncate(&self, offset: i64) -> Result<(), LogError> {
        self.log.truncate_to(offset).await?;
        self.appended.notify_all();
        Ok(())
    }

    /// Appends the leader's batches. An empty log restarted at the leader's log start may
    /// get a first batch that begins before it (DeleteRecords moved the leader's start into
    /// a batch): the log then restarts at that batch's base offset and takes it, as Kafka's
    /// follower does; the leader's log start reaches it right after.
    async fn append_as_follower(&self, records: BytesMut) -> Result<(), LogError> {
        let log = &self.log;
        let end = log.log_end_offset();
        let straddling = record_batch::BatchHeader::parse(&records)
            .ok()
            .filter(|h| h.base_offset < end && h.last_offset() >= end)
            .filter(|_| end == log.log_start_offset());
        if let Some(first) = straddling {
            tracing::info!(
                "{}-{}: the first batch fetched starts at {}, before the log start {end}; \
                 restarting the log there",
                self.topic,
                self.index,
                first.base_offset
            );
            log.truncate_fully_and_start_at(first.base_offset).await?;
        }
        log.append_as_follower(records).await.map(|_| ())
    }

    /// A follower behind its leader's log start empties its log and restarts it there
    /// (Kafka's `truncateFullyAndStartAt`).
    pub(crate) async fn restart_at(&self, leader_log_start: i64) -> Result<(), LogError> {
        self.log
            .truncate_fully_and_start_at(leader_log_start)
            .await?;
        self.appended.notify_all();
        Ok(())
    }

    /// DeleteRecords: moves the log start to `offset` (at most the high watermark). Only
    /// the leader takes it, as in Kafka; followers follow the leader's log start.
    pub async fn delete_records(&self, offset: i64) -> Result<i64, ResponseError> {
        self.check_leader(NO_EPOCH_CHECK)?;
        self.log
            .delete_before(offset)
            .await
            .map_err(|e| e.kafka_error())
    }

    fn follow_high_watermark(&self, leader_high_watermark: i64) {
        let hw = leader_high_watermark.min(self.log.log_end_offset());
        if hw > self.log.high_watermark() {
            self.log.set_high_watermark(hw);
        }
    }
}
