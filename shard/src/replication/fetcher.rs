//! One fetcher per shard per leader broker (Kafka's ReplicaFetcherThread): a task that
//! fetches every partition this shard follows from that leader in one Fetch at a time.
//! A partition starts in "truncating": the fetcher first asks the leader where the
//! partition's latest local epoch ends (OffsetForLeaderEpoch) and cuts the diverged tail;
//! then it fetches from its log end, appends what comes back as the leader stored it, and
//! takes the leader's high watermark (capped at its own log end). A fetch offset the
//! leader refuses as out of range is resolved as Kafka does (see `out_of_range`).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use spate_log::LogError;

use super::follower::{truncation, Truncation};
use super::link::{
    BrokerEndpoint, EpochQuery, FetchPartition, LeaderLink, LinkError, OffsetQuery, ReplicaFetch,
    EARLIEST, LATEST,
};
use super::{PartitionKey, Replication};
use crate::notify::Notify;
use crate::partition::Partition;

struct Followed {
    partition: Rc<Partition>,
    leader_epoch: i32,
    truncating: bool,
    /// Skipped until then after an error.
    retry_at: Option<Instant>,
}

pub(super) struct Fetcher {
    leader: BrokerEndpoint,
    link: Rc<dyn LeaderLink>,
    partitions: RefCell<BTreeMap<PartitionKey, Followed>>,
    /// Fired when partitions are added.
    changed: Notify,
    stopped: Cell<bool>,
    stop_signal: Notify,
}

impl Fetcher {
    pub(super) fn start(
        leader: BrokerEndpoint,
        link: Rc<dyn LeaderLink>,
        replication: Weak<Replication>,
        pass: glommio::sync::Pass,
    ) -> Rc<Fetcher> {
        let fetcher = Rc::new(Fetcher {
            leader,
            link,
            partitions: RefCell::new(BTreeMap::new()),
            changed: Notify::default(),
            stopped: Cell::new(false),
            stop_signal: Notify::default(),
        });
        let task = fetcher.clone();
        glommio::spawn_local(async move {
            let _pass = pass;
            task.run(replication).await;
        })
        .detach();
        fetcher
    }

    pub(super) fn leader(&self) -> &BrokerEndpoint {
        &self.leader
    }

    /// Starts (or restarts, for a new epoch) fetching `partition`, truncating first.
    pub(super) fn add(&self, partition: &Rc<Partition>, leader_epoch: i32) {
        let key = (partition.topic.clone(), partition.index);
        let mut partitions = self.partitions.borrow_mut();
        if partitions
            .get(&key)
            .is_some_and(|f| f.leader_epoch == leader_epoch)
        {
            return;
        }
        partitions.insert(
            key,
            Followed {
                partition: partition.clone(),
                leader_epoch,
                truncating: true,
                retry_at: None,
            },
        );
        drop(partitions);
        self.changed.notify_all();
    }

    /// True when `partition` was fetched here.
    pub(super) fn remove(&self, partition: &Partition) -> bool {
        self.partitions
            .borrow_mut()
            .remove(&(partition.topic.clone(), partition.index))
            .is_some()
    }

    pub(super) fn is_idle(&self) -> bool {
        self.partitions.borrow().is_empty()
    }

    pub(super) fn stop(&self) {
        self.stopped.set(true);
        self.stop_signal.notify_all();
    }

    /// Runs `call` unless the fetcher stops first (`None`).
    async fn or_stop<T>(&self, call: impl std::future::Future<Output = T>) -> Option<T> {
        let seen = self.stop_signal.version();
        if self.stopped.get() {
            return None;
        }
        futures_lite::future::or(async { Some(call.await) }, async {
            self.stop_signal.changed_since(seen).await;
            None
        })
        .await
    }

    async fn run(self: Rc<Self>, replication: Weak<Replication>) {
        tracing::info!("replica fetcher for broker {} started", self.leader.node_id);
        while !self.stopped.get() {
            let Some(r) = replication.upgrade() else {
                break;
            };
            let seen = self.changed.version();
            let backoff = Duration::from_millis(r.config().replica_fetch_backoff_ms);
            let round = if self.due(true).is_empty() {
                self.fetch_round(&r).await
            } else {
                self.truncate_round(&r).await
            };
            drop(r);
            match round {
                Some(Ok(true)) => {}
                // Nothing to do now: wait for a new partition or the next retry.
                Some(Ok(false)) => {
                    let wait = self.next_retry().unwrap_or(backoff);
                    self.or_stop(futures_lite::future::or(
                        self.changed.changed_since(seen),
                        glommio::timer::sleep(wait),
                    ))
                    .await;
                }
                Some(Err(e)) => {
                    tracing::warn!(
                        "fetching from broker {} ({}:{}) failed: {e}; retrying in {backoff:?}",
                        self.leader.node_id,
                        self.leader.host,
                        self.leader.port
                    );
                    self.or_stop(glommio::timer::sleep(backoff)).await;
                }
                None => break,
            }
        }
        tracing::info!("replica fetcher for broker {} stopped", self.leader.node_id);
    }

    /// The partitions in the given state whose retry time has come.
    fn due(&self, truncating: bool) -> Vec<(PartitionKey, Rc<Partition>, i32)> {
        let now = Instant::now();
        self.partitions
            .borrow()
            .iter()
            .filter(|(_, f)| f.truncating == truncating && f.retry_at.is_none_or(|t| t <= now))
            .map(|(k, f)| (k.clone(), f.partition.clone(), f.leader_epoch))
            .collect()
    }

    fn next_retry(&self) -> Option<Duration> {
        let now = Instant::now();
        self.partitions
            .borrow()
            .values()
            .filter_map(|f| f.retry_at)
            .min()
            .map(|t| t.saturating_duration_since(now))
    }

    /// Still followed at `epoch` (not removed or re-added meanwhile).
    fn current(&self, key: &PartitionKey, epoch: i32) -> bool {
        self.partitions
            .borrow()
            .get(key)
            .is_some_and(|f| f.leader_epoch == epoch)
    }

    fn update(&self, key: &PartitionKey, epoch: i32, change: impl FnOnce(&mut Followed)) {
        if let Some(f) = self.partitions.borrow_mut().get_mut(key) {
            if f.leader_epoch == epoch {
                change(f);
            }
        }
    }

    fn back_off(&self, key: &PartitionKey, epoch: i32, backoff: Duration) {
        self.update(key, epoch, |f| f.retry_at = Some(Instant::now() + backoff));
    }

    /// One OffsetForLeaderEpoch round for the truncating partitions.
    async fn truncate_round(&self, r: &Replication) -> Option<Result<bool, LinkError>> {
        let backoff = Duration::from_millis(r.config().replica_fetch_backoff_ms);
        let mut asked = Vec::new();
        let mut queries = Vec::new();
        for (key, p, epoch) in self.due(true) {
            match p.log.latest_epoch() {
                Some(latest) => {
                    queries.push(EpochQuery {
                        topic: key.0.clone(),
                        partition: key.1,
                        current_leader_epoch: epoch,
                        leader_epoch: latest,
                    });
                    asked.push((key, p, epoch));
                }
                // An empty log has nothing to diverge.
                None => self.update(&key, epoch, |f| f.truncating = false),
            }
        }
        if queries.is_empty() {
            return Some(Ok(true));
        }
        let answers = match self
            .or_stop(self.link.epoch_end_offsets(r.node_id(), queries))
            .await?
        {
            Ok(answers) => answers,
            Err(e) => return Some(Err(e)),
        };
        for (key, p, epoch) in asked {
            let answer = answers
                .iter()
                .find(|a| a.topic == key.0 && a.partition == key.1);
            if !self.current(&key, epoch) {
                continue;
            }
            let Some(answer) = answer.filter(|a| a.error.is_none()) else {
                let error = answer.and_then(|a| a.error);
                tracing::info!(
                    "{}-{}: OffsetForLeaderEpoch from broker {}: {error:?}; retrying",
                    key.0,
                    key.1,
                    self.leader.node_id
                );
                self.back_off(&key, epoch, backoff);
                continue;
            };
            let log = &p.log;
            let decision = truncation(
                answer.end,
                |e| log.end_offset_for_epoch(e),
                log.log_end_offset(),
                log.high_watermark(),
            );
            let (to, done) = match decision {
                Truncation::Done(to) => (to, true),
                Truncation::Again(to) => (to, false),
            };
            if to < log.log_end_offset() {
                tracing::info!(
                    "{}-{}: truncating from {} to {to} to match leader {} at epoch {epoch}",
                    key.0,
                    key.1,
                    log.log_end_offset(),
                    self.leader.node_id
                );
                if let Err(e) = p.truncate(to).await {
                    tracing::error!("{}-{}: truncation failed: {e}", key.0, key.1);
                    self.back_off(&key, epoch, backoff);
                    continue;
                }
            }
            if done {
                self.update(&key, epoch, |f| f.truncating = false);
            }
        }
        Some(Ok(true))
    }

    /// The leader refused our fetch offset (Kafka's `handleOutOfRangeError` /
    /// `fetchOffsetAndTruncate`). Past the leader's log end (an unclean election, or a
    /// leader that lost its tail): truncate to it. Below the leader's log start (we were
    /// away while its retention or DeleteRecords removed what we would fetch next): empty
    /// the log and restart it at the leader's log start. Otherwise (the leader moved
    /// meanwhile) fetch again from our log end. `None`: the fetcher stopped.
    async fn out_of_range(
        &self,
        r: &Replication,
        key: &PartitionKey,
        p: &Rc<Partition>,
        epoch: i32,
        fetch_offset: i64,
    ) -> Option<()> {
        let backoff = Duration::from_millis(r.config().replica_fetch_backoff_ms);
        let Some(leader_end) = self
            .leader_offset(r, key, p, epoch, fetch_offset, LATEST)
            .await?
        else {
            return Some(());
        };
        if leader_end < fetch_offset {
            tracing::warn!(
                "{}-{}: offset {fetch_offset} is past broker {}'s end {leader_end}; truncating",
                key.0,
                key.1,
                self.leader.node_id
            );
            if let Err(e) = p.truncate(leader_end).await {
                tracing::error!("{}-{}: truncation failed: {e}", key.0, key.1);
                self.back_off(key, epoch, backoff);
            }
            return Some(());
        }
        let Some(leader_start) = self
            .leader_offset(r, key, p, epoch, fetch_offset, EARLIEST)
            .await?
        else {
            return Some(());
        };
        if leader_start > fetch_offset {
            tracing::warn!(
                "{}-{}: offset {fetch_offset} is below broker {}'s log start {leader_start}; \
                 emptying the log to restart there",
                key.0,
                key.1,
                self.leader.node_id
            );
            if let Err(e) = p.restart_at(leader_start).await {
                tracing::error!("{}-{}: emptying the log failed: {e}", key.0, key.1);
                self.back_off(key, epoch, backoff);
            }
        } else {
            self.back_off(key, epoch, backoff);
        }
        Some(())
    }

    /// One ListOffsets answer for an out-of-range partition: `Some(None)` when it failed
    /// (the partition backs off) or the partition changed meanwhile; `None`: stopped.
    async fn leader_offset(
        &self,
        r: &Replication,
        key: &PartitionKey,
        p: &Rc<Partition>,
        epoch: i32,
        fetch_offset: i64,
        timestamp: i64,
    ) -> Option<Option<i64>> {
        let query = OffsetQuery {
            topic: key.0.clone(),
            partition: key.1,
            current_leader_epoch: epoch,
            timestamp,
        };
        let answer = self
            .or_stop(self.link.list_offset(r.node_id(), query))
            .await?;
        if !self.current(key, epoch) || p.log.log_end_offset() != fetch_offset {
            return Some(None); // changed meanwhile: the next round sees the new state
        }
        let error = match answer {
            Ok(Ok(offset)) if offset >= 0 => return Some(Some(offset)),
            Ok(Ok(offset)) => format!("no offset listed ({offset})"),
            Ok(Err(e)) => format!("{e:?}"),
            Err(e) => e.to_string(),
        };
        tracing::info!(
            "{}-{}: ListOffsets from broker {}: {error}; retrying",
            key.0,
            key.1,
            self.leader.node_id
        );
        let backoff = Duration::from_millis(r.config().replica_fetch_backoff_ms);
        self.back_off(key, epoch, backoff);
        Some(None)
    }

    /// One Fetch for the partitions being fetched. `Ok(false)`: none is due.
    async fn fetch_round(&self, r: &Replication) -> Option<Result<bool, LinkError>> {
        let config = r.config();
        let backoff = Duration::from_millis(config.replica_fetch_backoff_ms);
        let due = self.due(false);
        if due.is_empty() {
            return Some(Ok(false));
        }
        let partitions = due
            .iter()
            .map(|(key, p, epoch)| FetchPartition {
                topic: key.0.clone(),
                topic_id: p.topic_id,
                partition: key.1,
                fetch_offset: p.log.log_end_offset(),
                current_leader_epoch: *epoch,
                log_start_offset: p.log.log_start_offset(),
                partition_max_bytes: config.replica_fetch_max_bytes,
            })
            .collect::<Vec<_>>();
        let offsets: Vec<i64> = partitions.iter().map(|p| p.fetch_offset).collect();
        let request = ReplicaFetch {
            replica_id: r.node_id(),
            max_wait_ms: config.replica_fetch_wait_max_ms,
            min_bytes: config.replica_fetch_min_bytes,
            max_bytes: config.replica_fetch_response_max_bytes,
            partitions,
        };
        let response = match self.or_stop(self.link.fetch(request)).await? {
            Ok(response) => response,
            Err(e) => return Some(Err(e)),
        };
        for fetched in response {
            let Some(i) = due
                .iter()
                .position(|(k, _, _)| k.0 == fetched.topic && k.1 == fetched.partition)
            else {
                continue;
            };
            let (key, p, epoch) = &due[i];
            // Removed, re-added or truncated meanwhile: this answer is stale.
            if !self.current(key, *epoch) || p.log.log_end_offset() != offsets[i] {
                continue;
            }
            match fetched.error {
                None => match p
                    .append_from_leader(
                        fetched.records,
                        fetched.high_watermark,
                        fetched.log_start_offset,
                    )
                    .await
                {
                    Ok(()) => {}
                    // The records do not continue our log: find the divergence again.
                    Err(LogError::OffsetOutOfRange { .. }) => {
                        self.update(key, *epoch, |f| f.truncating = true)
                    }
                    Err(e) => {
                        tracing::error!("{}-{}: follower append failed: {e}", key.0, key.1);
                        self.back_off(key, *epoch, backoff);
                    }
                },
                Some(ResponseError::OffsetOutOfRange) => {
                    self.out_of_range(r, key, p, *epoch, offsets[i]).await?
                }
                // NOT_LEADER_OR_FOLLOWER, FENCED/UNKNOWN_LEADER_EPOCH, unknown topic: one
                // of us has stale metadata; wait for the next assignment or retry.
                Some(e) => {
                    tracing::debug!(
                        "{}-{}: fetch from broker {}: {e:?}",
                        key.0,
                        key.1,
                        self.leader.node_id
                    );
                    self.back_off(key, *epoch, backoff);
                }
            }
        }
        Some(Ok(true))
    }
}
