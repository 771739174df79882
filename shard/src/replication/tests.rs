//! A leader and a follower partition on one executor, joined by an in-memory link that
//! serves the follower's Fetch and OffsetForLeaderEpoch from the leader partition, and a
//! controller stand-in that commits ISR changes.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::future::{FutureExt, LocalBoxFuture};
use kafka_protocol::ResponseError;
use spate_core::record_batch::{self, build_batch};
use spate_log::{Clock, LogConfig, ManualClock, PartitionLog, ReadSlice};
use uuid::Uuid;

use super::*;
use crate::controller::image::PartitionAssignment;
use crate::messages::ListedOffset;
use crate::partition::{Partition, ACKS_ALL, NO_EPOCH_CHECK};

/// The bytes of a read range.
async fn read_slice_to_bytes(slice: &ReadSlice) -> Result<Bytes, ResponseError> {
    slice
        .file
        .read_at(slice.position, slice.len)
        .await
        .map(Bytes::from)
        .map_err(|e| e.kafka_error())
}

const LEADER: i32 = 1;
const FOLLOWER: i32 = 2;
const ACKS_LEADER: i16 = 1;
const LONG: Duration = Duration::from_secs(30);

use crate::run_local as run;

/// The leader partition, as the follower's link sees it.
struct MemoryLink {
    leader: Rc<Partition>,
    /// While cut, every call fails as a broken connection would.
    cut: Cell<bool>,
}

impl LeaderLink for MemoryLink {
    fn fetch(
        &self,
        request: ReplicaFetch,
    ) -> LocalBoxFuture<'_, Result<Vec<FetchedPartition>, LinkError>> {
        async move {
            if self.cut.get() {
                glommio::timer::sleep(Duration::from_millis(5)).await;
                return Err(LinkError("cut".into()));
            }
            let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms as u64);
            loop {
                let mut out = Vec::new();
                let mut found = 0;
                for fp in &request.partitions {
                    let read = self
                        .leader
                        .read_for_replica(
                            request.replica_id,
                            fp.fetch_offset,
                            fp.partition_max_bytes as usize,
                            true,
                            fp.current_leader_epoch,
                        )
                        .await;
                    out.push(match read {
                        Ok((slice, offsets)) => {
                            let bytes = read_slice_to_bytes(&slice).await.unwrap();
                            found += bytes.len();
                            FetchedPartition {
                                topic: fp.topic.clone(),
                                partition: fp.partition,
                                error: None,
                                high_watermark: offsets.high_watermark,
                                log_start_offset: offsets.log_start_offset,
                                records: BytesMut::from(&bytes[..]),
                            }
                        }
                        Err(e) => FetchedPartition {
                            topic: fp.topic.clone(),
                            partition: fp.partition,
                            error: Some(e),
                            high_watermark: -1,
                            log_start_offset: -1,
                            records: BytesMut::new(),
                        },
                    });
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if found > 0 || left.is_zero() || self.cut.get() {
                    return Ok(out);
                }
                let offset = request.partitions[0].fetch_offset;
                self.leader.wait_for_data(offset, left, true).await;
            }
        }
        .boxed_local()
    }

    fn epoch_end_offsets(
        &self,
        _replica_id: i32,
        queries: Vec<EpochQuery>,
    ) -> LocalBoxFuture<'_, Result<Vec<EpochEnd>, LinkError>> {
        async move {
            if self.cut.get() {
                return Err(LinkError("cut".into()));
            }
            Ok(queries
                .into_iter()
                .map(|q| {
                    let (error, end) = match self.leader.check_leader(q.current_leader_epoch) {
                        Ok(_) => (None, self.leader.log.end_offset_for_epoch(q.leader_epoch)),
                        Err(e) => (Some(e), None),
                    };
                    EpochEnd {
                        topic: q.topic,
                        partition: q.partition,
                        error,
                        end,
                    }
                })
                .collect())
        }
        .boxed_local()
    }

    fn list_offset(
        &self,
        replica_id: i32,
        query: OffsetQuery,
    ) -> LocalBoxFuture<'_, Result<Result<i64, ResponseError>, LinkError>> {
        async move {
            if self.cut.get() {
                return Err(LinkError("cut".into()));
            }
            let listed = self
                .leader
                .list_offset(query.timestamp, query.current_leader_epoch, replica_id >= 0)
                .await;
            Ok(listed.map(|l| l.map_or(-1, |l| l.offset)))
        }
        .boxed_local()
    }
}

struct MemoryConnector(Rc<MemoryLink>);

impl LeaderConnector for MemoryConnector {
    fn link(&self, _leader: &BrokerEndpoint) -> Rc<dyn LeaderLink> {
        self.0.clone()
    }
}

/// Commits every ISR change it is asked for, as an accepting controller would.
#[derive(Default)]
struct Controller {
    changes: RefCell<Vec<AlterIsr>>,
}

impl IsrUpdater for Rc<Controller> {
    fn alter_partition(
        &self,
        change: AlterIsr,
    ) -> LocalBoxFuture<'static, Result<PartitionAssignment, ResponseError>> {
        self.changes.borrow_mut().push(change.clone());
        async move {
            Ok(PartitionAssignment {
                replicas: vec![LEADER, FOLLOWER],
                isr: change.new_isr,
                leader: change.leader_id,
                leader_epoch: change.leader_epoch,
                partition_epoch: change.partition_epoch + 1,
            })
        }
        .boxed_local()
    }
}

struct Pair {
    leader: Rc<Partition>,
    follower: Rc<Partition>,
    link: Rc<MemoryLink>,
    controller: Rc<Controller>,
    clock: Rc<ManualClock>,
    follower_replication: Rc<Replication>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

const CONFIG: ReplicationConfig = ReplicationConfig {
    replica_lag_time_max_ms: 10_000,
    replica_fetch_max_bytes: 1_048_576,
    replica_fetch_response_max_bytes: 10_485_760,
    replica_fetch_wait_max_ms: 200,
    replica_fetch_min_bytes: 1,
    replica_fetch_backoff_ms: 10,
};

#[test]
fn the_replication_config_takes_the_brokers_replica_keys() {
    let broker = BrokerConfig {
        replica_lag_time_max_ms: 12_000,
        replica_fetch_max_bytes: 2_097_152,
        replica_fetch_response_max_bytes: 20_971_520,
        replica_fetch_wait_max_ms: 250,
        replica_fetch_min_bytes: 16,
        replica_fetch_backoff_ms: 200,
        ..BrokerConfig::default()
    };
    let expected = ReplicationConfig {
        replica_lag_time_max_ms: 12_000,
        replica_fetch_max_bytes: 2_097_152,
        replica_fetch_response_max_bytes: 20_971_520,
        replica_fetch_wait_max_ms: 250,
        replica_fetch_min_bytes: 16,
        replica_fetch_backoff_ms: 200,
    };
    assert_eq!(ReplicationConfig::from_broker(&broker), expected);
}

async fn partition(
    dir: &tempfile::TempDir,
    node: i32,
    clock: Rc<ManualClock>,
) -> (Rc<Partition>, Rc<Replication>) {
    let log = PartitionLog::open(dir.path(), LogConfig::default(), clock.clone())
        .await
        .unwrap();
    let replication = Replication::new(node, CONFIG, clock);
    let p = Partition::new(log, "t", 0, Uuid::nil(), replication.clone());
    (p, replication)
}

fn assignment(isr: &[i32], leader_epoch: i32, partition_epoch: i32) -> PartitionAssignment {
    PartitionAssignment {
        replicas: vec![LEADER, FOLLOWER],
        isr: isr.to_vec(),
        leader: LEADER,
        leader_epoch,
        partition_epoch,
    }
}

fn leader_endpoint() -> Option<BrokerEndpoint> {
    Some(BrokerEndpoint {
        node_id: LEADER,
        host: "memory".into(),
        port: 0,
    })
}

/// A leader and a follower, logs empty, the link cut (the follower fetches nothing until
/// the test joins it). Both know `assignment`.
async fn pair(assignment: &PartitionAssignment) -> Pair {
    let clock = Rc::new(ManualClock::new(1_000_000));
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader, leader_replication) = partition(&dirs.0, LEADER, clock.clone()).await;
    let (follower, follower_replication) = partition(&dirs.1, FOLLOWER, clock.clone()).await;
    let controller = Rc::new(Controller::default());
    leader_replication.set_isr_updater(Rc::new(controller.clone()));
    let link = Rc::new(MemoryLink {
        leader: leader.clone(),
        cut: Cell::new(true),
    });
    follower_replication.set_leader_connector(Rc::new(MemoryConnector(link.clone())));
    leader.set_assignment(assignment, None);
    follower.set_assignment(assignment, leader_endpoint());
    Pair {
        leader,
        follower,
        link,
        controller,
        clock,
        follower_replication,
        _dirs: dirs,
    }
}

fn batch(values: &[&str]) -> BytesMut {
    BytesMut::from(&build_batch(1, values)[..])
}

/// Waits (woken by the partitions' appends, or at worst every few ms) until `done`; a
/// bound that only stops a broken test from hanging.
async fn until(what: &str, done: impl Fn() -> bool) {
    let give_up = Instant::now() + LONG;
    while !done() {
        assert!(Instant::now() < give_up, "never happened: {what}");
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
}

/// Every byte of a log, batch by batch.
async fn contents(p: &Partition) -> Vec<u8> {
    let slice = p
        .log
        .read(p.log.log_start_offset(), usize::MAX, i64::MAX, true)
        .await
        .unwrap();
    read_slice_to_bytes(&slice).await.unwrap().to_vec()
}

#[test]
fn the_high_watermark_waits_for_the_follower_and_acks_all_completes() {
    run(async {
        let pair = pair(&assignment(&[LEADER, FOLLOWER], 1, 1)).await;
        let (leader, follower) = (&pair.leader, &pair.follower);
        let r = leader
            .produce(batch(&["a", "b", "c"]), ACKS_LEADER, LONG)
            .await;
        assert_eq!(r.unwrap().base_offset, 0);
        assert_eq!(leader.log.log_end_offset(), 3);
        assert_eq!(
            leader.log.high_watermark(),
            0,
            "the follower has nothing yet"
        );
        pair.link.cut.set(false);
        until("the follower fetches", || {
            follower.log.log_end_offset() == 3
        })
        .await;
        until("the high watermark moves", || {
            leader.log.high_watermark() == 3
        })
        .await;
        assert_eq!(
            follower.log.latest_epoch(),
            Some(1),
            "the leader's epoch stamped"
        );
        // acks=all returns once the follower has the batch.
        let r = leader.produce(batch(&["d", "e"]), ACKS_ALL, LONG).await;
        assert_eq!(r.unwrap().base_offset, 3);
        assert!(leader.log.high_watermark() >= 5);
        assert!(
            follower.log.log_end_offset() >= 5,
            "committed means the follower has it"
        );
        until("the follower learns the high watermark", || {
            follower.log.high_watermark() == 5
        })
        .await;
        assert_eq!(contents(leader).await, contents(follower).await);
        // DeleteRecords on the leader reaches the follower with the next fetch.
        assert_eq!(leader.log.delete_before(3).await.unwrap(), 3);
        leader
            .produce(batch(&["f"]), ACKS_LEADER, LONG)
            .await
            .unwrap();
        until("the follower moves its log start", || {
            follower.log.log_start_offset() == 3
        })
        .await;
        // A follower refuses clients.
        let refused = follower.produce(batch(&["x"]), ACKS_LEADER, LONG).await;
        assert_eq!(refused, Err(ResponseError::NotLeaderOrFollower));
        let read = follower.read(0, 1024, true, NO_EPOCH_CHECK).await;
        assert_eq!(read.err(), Some(ResponseError::NotLeaderOrFollower));
        pair.follower_replication.close().await;
    });
}

#[test]
fn acks_all_times_out_while_the_follower_is_away() {
    run(async {
        let pair = pair(&assignment(&[LEADER, FOLLOWER], 1, 1)).await;
        let r = pair
            .leader
            .produce(batch(&["a"]), ACKS_ALL, Duration::from_millis(50))
            .await;
        assert_eq!(r, Err(ResponseError::RequestTimedOut));
        assert_eq!(pair.leader.log.log_end_offset(), 1, "appended all the same");
        assert_eq!(pair.leader.log.high_watermark(), 0);
        pair.follower_replication.close().await;
    });
}

#[test]
fn min_insync_replicas_refuses_before_and_after_the_append() {
    run(async {
        let pair = pair(&assignment(&[LEADER], 1, 1)).await;
        let leader = &pair.leader;
        leader.min_insync_replicas.set(2);
        let r = leader.produce(batch(&["a"]), ACKS_ALL, LONG).await;
        assert_eq!(r, Err(ResponseError::NotEnoughReplicas));
        assert_eq!(leader.log.log_end_offset(), 0, "refused before appending");
        // acks=1 does not care.
        leader
            .produce(batch(&["a"]), ACKS_LEADER, LONG)
            .await
            .unwrap();
        // With both in the ISR the append goes ahead, but the ISR shrinks while it waits.
        leader.set_assignment(&assignment(&[LEADER, FOLLOWER], 1, 2), None);
        let waiting = {
            let leader = leader.clone();
            glommio::spawn_local(async move { leader.produce(batch(&["b"]), ACKS_ALL, LONG).await })
        };
        until("the append", || leader.log.log_end_offset() == 2).await;
        leader.set_assignment(&assignment(&[LEADER], 1, 3), None);
        assert_eq!(
            waiting.await,
            Err(ResponseError::NotEnoughReplicasAfterAppend)
        );
        pair.follower_replication.close().await;
    });
}

#[test]
fn a_lagging_follower_is_proposed_out_of_the_isr_and_back_in_once_caught_up() {
    run(async {
        let pair = pair(&assignment(&[LEADER, FOLLOWER], 1, 1)).await;
        let leader = &pair.leader;
        leader
            .produce(batch(&["a", "b"]), ACKS_LEADER, LONG)
            .await
            .unwrap();
        assert!(!leader.maybe_shrink_isr(), "within replica.lag.time.max.ms");
        pair.clock.advance(CONFIG.replica_lag_time_max_ms + 1);
        assert!(leader.maybe_shrink_isr());
        until("the shrink is committed", || leader.isr() == vec![LEADER]).await;
        let change = pair.controller.changes.borrow()[0].clone();
        assert_eq!(
            change,
            AlterIsr {
                topic: "t".into(),
                partition: 0,
                leader_id: LEADER,
                leader_epoch: 1,
                partition_epoch: 1,
                new_isr: vec![LEADER],
            }
        );
        // Alone in the ISR, the leader commits by itself.
        assert_eq!(leader.log.high_watermark(), 2);
        let r = leader.produce(batch(&["c"]), ACKS_ALL, LONG).await;
        assert_eq!(r.unwrap().base_offset, 2);
        // The follower comes back, catches up and is proposed back in.
        pair.link.cut.set(false);
        until("the follower rejoins", || {
            leader.isr() == vec![LEADER, FOLLOWER]
        })
        .await;
        assert!(pair.follower.log.log_end_offset() >= 3);
        let changes = pair.controller.changes.borrow().clone();
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[1].new_isr, vec![LEADER, FOLLOWER]);
        assert_eq!(changes[1].partition_epoch, 2);
        pair.follower_replication.close().await;
    });
}

#[test]
fn a_diverged_follower_truncates_to_the_leaders_epoch_end_and_converges() {
    run(async {
        let clock = Rc::new(ManualClock::new(1_000));
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (leader, leader_r) = partition(&dirs.0, LEADER, clock.clone()).await;
        let (follower, follower_r) = partition(&dirs.1, FOLLOWER, clock.clone()).await;
        // Both hold the same epoch-0 batch; then the follower, leading at epoch 1, took
        // records nobody else got, and the leader took others at epoch 2.
        let common = build_batch(5, &["a", "b", "c"]);
        leader
            .log
            .append(BytesMut::from(&common[..]), 0)
            .await
            .unwrap();
        follower
            .log
            .append(BytesMut::from(&common[..]), 0)
            .await
            .unwrap();
        follower
            .log
            .append(batch(&["lost1", "lost2"]), 1)
            .await
            .unwrap();
        leader
            .log
            .append(batch(&["x", "y", "z", "w"]), 2)
            .await
            .unwrap();
        assert_eq!(follower.log.log_end_offset(), 5);
        let link = Rc::new(MemoryLink {
            leader: leader.clone(),
            cut: Cell::new(false),
        });
        follower_r.set_leader_connector(Rc::new(MemoryConnector(link)));
        let a = assignment(&[LEADER, FOLLOWER], 2, 5);
        leader.set_assignment(&a, None);
        follower.set_assignment(&a, leader_endpoint());
        until("the follower converges", || {
            follower.log.log_end_offset() == 7 && follower.log.latest_epoch() == Some(2)
        })
        .await;
        assert_eq!(contents(&leader).await, contents(&follower).await);
        assert_eq!(follower.log.end_offset_for_epoch(1), Some((0, 3)));
        until("the leader commits", || leader.log.high_watermark() == 7).await;
        follower_r.close().await;
        leader_r.close().await;
    });
}

#[test]
fn one_replica_commits_at_once() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let clock: Rc<ManualClock> = Rc::new(ManualClock::new(0));
        let (p, r) = partition(&dir, LEADER, clock.clone()).await;
        p.min_insync_replicas.set(1);
        let done = p
            .produce(batch(&["a", "b"]), ACKS_ALL, Duration::ZERO)
            .await;
        assert_eq!(done.unwrap().base_offset, 0);
        assert_eq!(p.log.high_watermark(), 2);
        clock.advance(1_000_000);
        assert_eq!(r.check_isr(), 0, "nothing to shrink");
        assert_eq!(p.check_leader(0), Ok(0));
        assert_eq!(p.check_leader(1), Err(ResponseError::UnknownLeaderEpoch));
        assert_eq!(clock.now_ms(), 1_000_000);
        r.close().await;
    });
}

#[test]
fn leader_epochs_fence_stale_and_unknown_readers() {
    run(async {
        let pair = pair(&assignment(&[LEADER, FOLLOWER], 3, 1)).await;
        let l = &pair.leader;
        assert_eq!(l.check_leader(2), Err(ResponseError::FencedLeaderEpoch));
        assert_eq!(l.check_leader(4), Err(ResponseError::UnknownLeaderEpoch));
        assert_eq!(l.check_leader(3), Ok(3));
        let listed = l.list_offset(-1, 2, false).await;
        assert_eq!(listed, Err(ResponseError::FencedLeaderEpoch));
        let listed = pair.follower.list_offset(-1, NO_EPOCH_CHECK, true).await;
        assert_eq!(listed, Err(ResponseError::NotLeaderOrFollower));
        pair.follower_replication.close().await;
    });
}

#[test]
fn a_leader_change_ends_acks_all_waits_and_the_follower_takes_over() {
    run(async {
        let pair = pair(&assignment(&[LEADER, FOLLOWER], 1, 1)).await;
        let (leader, follower) = (&pair.leader, &pair.follower);
        pair.link.cut.set(false);
        let r = leader.produce(batch(&["a", "b"]), ACKS_ALL, LONG).await;
        assert_eq!(r.unwrap().base_offset, 0);
        pair.link.cut.set(true);
        let waiting = {
            let leader = leader.clone();
            glommio::spawn_local(async move { leader.produce(batch(&["c"]), ACKS_ALL, LONG).await })
        };
        until("the append", || leader.log.log_end_offset() == 3).await;
        // The controller moves leadership to node 2 at epoch 2.
        let moved = PartitionAssignment {
            replicas: vec![LEADER, FOLLOWER],
            isr: vec![FOLLOWER],
            leader: FOLLOWER,
            leader_epoch: 2,
            partition_epoch: 2,
        };
        follower.set_assignment(&moved, None);
        leader.set_assignment(&moved, None);
        assert_eq!(waiting.await, Err(ResponseError::NotLeaderOrFollower));
        let refused = leader.produce(batch(&["x"]), ACKS_LEADER, LONG).await;
        assert_eq!(refused, Err(ResponseError::NotLeaderOrFollower));
        // The new leader appends after what it had (2 records, or 3 if its fetch in flight
        // when the link was cut brought "c"), at its epoch.
        let end = follower.log.log_end_offset();
        assert!(end >= 2);
        let r = follower.produce(batch(&["d"]), ACKS_ALL, LONG).await;
        assert_eq!(r.unwrap().base_offset, end);
        assert_eq!(follower.log.latest_epoch(), Some(2));
        assert_eq!(
            follower.check_leader(1),
            Err(ResponseError::FencedLeaderEpoch)
        );
        pair.follower_replication.close().await;
    });
}

/// A batch as a leader stored it, at `base` with no leader epoch.
fn stored_batch(base: i64, values: &[&str]) -> BytesMut {
    let mut b = batch(values);
    record_batch::set_base_offset(&mut b, base);
    b
}

#[test]
fn a_follower_behind_the_leaders_log_start_restarts_there_and_converges() {
    run(async {
        let pair = pair(&assignment(&[LEADER], 1, 1)).await;
        let (leader, follower) = (&pair.leader, &pair.follower);
        leader
            .produce(batch(&["a", "b"]), ACKS_LEADER, LONG)
            .await
            .unwrap();
        pair.link.cut.set(false);
        until("the follower joins the ISR", || {
            leader.isr() == vec![LEADER, FOLLOWER]
        })
        .await;
        assert_eq!(follower.log.log_end_offset(), 2);
        // It goes away and the controller drops it from the ISR.
        pair.link.cut.set(true);
        leader.set_assignment(&assignment(&[LEADER], 1, 10), None);
        for i in 0..5 {
            let values = [format!("v{i}"), format!("w{i}")];
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            leader
                .produce(batch(&values), ACKS_LEADER, LONG)
                .await
                .unwrap();
        }
        assert_eq!(leader.log.high_watermark(), 12);
        // DeleteRecords moves the leader's start past the follower's end, into the batch
        // 6..=7; the follower cannot refuse it, being away.
        assert_eq!(leader.delete_records(7).await, Ok(7));
        pair.link.cut.set(false);
        until("the follower converges", || {
            follower.log.log_end_offset() == 12 && follower.log.log_start_offset() == 7
        })
        .await;
        assert_eq!(contents(leader).await, contents(follower).await);
        assert_eq!(follower.log.latest_epoch(), Some(1));
        // And keeps following.
        leader
            .produce(batch(&["x"]), ACKS_LEADER, LONG)
            .await
            .unwrap();
        until("the next record", || follower.log.log_end_offset() == 13).await;
        assert_eq!(contents(leader).await, contents(follower).await);
        until("the follower learns the high watermark", || {
            follower.log.high_watermark() == 13
        })
        .await;
        pair.follower_replication.close().await;
    });
}

#[test]
fn a_follower_past_the_leaders_end_truncates_to_it() {
    run(async {
        let pair = pair(&assignment(&[LEADER], 1, 1)).await;
        let (leader, follower) = (&pair.leader, &pair.follower);
        // Batches without leader epochs: no OffsetForLeaderEpoch can find the divergence,
        // so the first fetch is out of range and ListOffsets settles it.
        let common = stored_batch(0, &["a", "b"]);
        leader.log.append_as_follower(common.clone()).await.unwrap();
        leader.set_assignment(&assignment(&[LEADER], 1, 2), None);
        assert_eq!(leader.log.high_watermark(), 2);
        follower.log.append_as_follower(common).await.unwrap();
        follower
            .log
            .append_as_follower(stored_batch(2, &["c", "d", "e"]))
            .await
            .unwrap();
        pair.link.cut.set(false);
        until("the follower truncates", || {
            follower.log.log_end_offset() == 2
        })
        .await;
        assert_eq!(contents(leader).await, contents(follower).await);
        leader
            .produce(batch(&["f"]), ACKS_LEADER, LONG)
            .await
            .unwrap();
        until("the follower fetches on", || {
            follower.log.log_end_offset() == 3
        })
        .await;
        assert_eq!(contents(leader).await, contents(follower).await);
        pair.follower_replication.close().await;
    });
}

#[test]
fn latest_is_the_log_end_for_a_follower_and_the_high_watermark_for_a_consumer() {
    run(async {
        let pair = pair(&assignment(&[LEADER, FOLLOWER], 1, 1)).await;
        let leader = &pair.leader;
        leader
            .produce(batch(&["a", "b", "c"]), ACKS_LEADER, LONG)
            .await
            .unwrap();
        assert_eq!(
            leader.log.high_watermark(),
            0,
            "the follower has nothing yet"
        );
        let listed = |offset| {
            Ok(Some(ListedOffset {
                timestamp: -1,
                offset,
                leader_epoch: 1,
            }))
        };
        assert_eq!(leader.list_offset(LATEST, 1, true).await, listed(3));
        assert_eq!(leader.list_offset(LATEST, 1, false).await, listed(0));
        for for_replica in [true, false] {
            let earliest = leader.list_offset(EARLIEST, 1, for_replica).await;
            assert_eq!(earliest, listed(0));
        }
        pair.follower_replication.close().await;
    });
}

#[test]
fn delete_records_is_for_the_leader_only() {
    run(async {
        let pair = pair(&assignment(&[LEADER, FOLLOWER], 1, 1)).await;
        let (leader, follower) = (&pair.leader, &pair.follower);
        pair.link.cut.set(false);
        leader
            .produce(batch(&["a", "b", "c"]), ACKS_ALL, LONG)
            .await
            .unwrap();
        until("the follower has it", || follower.log.high_watermark() == 3).await;
        assert_eq!(
            follower.delete_records(2).await,
            Err(ResponseError::NotLeaderOrFollower)
        );
        assert_eq!(follower.log.log_start_offset(), 0);
        assert_eq!(
            leader.delete_records(4).await,
            Err(ResponseError::OffsetOutOfRange),
            "past the high watermark"
        );
        assert_eq!(leader.delete_records(2).await, Ok(2));
        pair.follower_replication.close().await;
    });
}
