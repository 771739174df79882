//! The coordinator's durable side: each group lives in one partition of the replicated
//! `__consumer_offsets` topic, and a shard coordinates the groups of the partitions it holds
//! and this broker leads (Kafka's `GroupMetadataManager`). A partition this broker starts to
//! lead is replayed (loading, with start-up compaction); one it stops leading has its groups
//! dropped. Offsets and membership snapshots are appended with acks=all, so an acknowledged
//! commit survives its coordinator; offsets expiry.

use std::collections::HashMap;
use std::rc::Rc;

use bytes::BytesMut;
use kafka_protocol::ResponseError;
use spate_core::record_batch::{build_batch, split};
use spate_log::PartitionLog;

use super::group::{Group, GroupSnapshot, GroupState, JoinResult};
use super::offsets::{batch_values, OffsetRecord};
use super::{coordinator_partition, GroupCoordinator, OFFSETS_TOPIC};
use crate::partition::{Partition, ACKS_ALL};

/// Start-up compaction runs on a partition that replayed at least this many records...
const COMPACT_MIN_RECORDS: usize = 1_000;
/// ...and this many times its live entries.
const COMPACT_RATIO: usize = 2;
/// Records per batch of a compaction checkpoint.
const CHECKPOINT_BATCH_RECORDS: usize = 500;

/// A coordinator partition this broker leads, on this shard.
pub(super) struct Led {
    pub(super) partition: Rc<Partition>,
    /// The leader epoch its groups were (or are being) loaded at.
    pub(super) epoch: i32,
    pub(super) state: LoadState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LoadState {
    /// Waiting to be replayed: its groups answer COORDINATOR_LOAD_IN_PROGRESS.
    Loading,
    Loaded,
    /// Its log could not be read: its groups answer COORDINATOR_NOT_AVAILABLE rather than
    /// being served without their offsets (consumers would silently reset).
    Failed,
}

impl GroupCoordinator {
    /// Takes the coordinator partitions this broker now leads on this shard, as
    /// (partition, leader epoch, partition). Partitions led anew, or at a new epoch, wait
    /// for `load_pending`; the groups of partitions no longer led are dropped, and their
    /// waiting joins and syncs answered NOT_COORDINATOR.
    pub fn follow_leadership(&self, led: Vec<(i32, i32, Rc<Partition>)>) {
        let lost: Vec<i32> = self
            .led
            .borrow()
            .iter()
            .filter(|(p, l)| !led.iter().any(|(q, e, _)| q == *p && *e == l.epoch))
            .map(|(p, _)| *p)
            .collect();
        for partition in lost {
            self.led.borrow_mut().remove(&partition);
            self.unload(partition);
            tracing::info!(
                shard = self.shard,
                "no longer coordinating {OFFSETS_TOPIC}-{partition}"
            );
        }
        let mut current = self.led.borrow_mut();
        for (partition, epoch, p) in led {
            current.entry(partition).or_insert(Led {
                partition: p,
                epoch,
                state: LoadState::Loading,
            });
        }
    }

    /// Replays every led partition still waiting to be loaded, one at a time.
    pub(crate) async fn load_pending(&self) {
        loop {
            let next = self
                .led
                .borrow()
                .iter()
                .find(|(_, l)| l.state == LoadState::Loading)
                .map(|(i, l)| (*i, l.epoch, l.partition.clone()));
            let Some((index, epoch, partition)) = next else {
                return;
            };
            let state = match self.load(index, &partition).await {
                Ok(records) => {
                    tracing::info!(
                        shard = self.shard,
                        "coordinating {OFFSETS_TOPIC}-{index} at leader epoch {epoch}: \
                         replayed {records} records"
                    );
                    LoadState::Loaded
                }
                Err(e) => {
                    tracing::error!(
                        "{OFFSETS_TOPIC}-{index}: {e}. Its groups answer \
                         COORDINATOR_NOT_AVAILABLE until its leadership changes"
                    );
                    LoadState::Failed
                }
            };
            let mut led = self.led.borrow_mut();
            match led.get_mut(&index) {
                Some(l) if l.epoch == epoch && l.state == LoadState::Loading => l.state = state,
                // Leadership moved on while loading: what was replayed is not ours.
                _ => {
                    drop(led);
                    self.unload(index);
                }
            }
        }
    }

    /// Replays one partition into the offsets table and the groups, and compacts it.
    /// Returns the records replayed.
    async fn load(&self, index: i32, partition: &Partition) -> Result<usize, String> {
        let mut snapshots = HashMap::new();
        let records = self.replay(index, &partition.log, &mut snapshots).await?;
        if let Err(e) = self.compact(index, partition, records, &snapshots).await {
            // The state is loaded all the same; the next load tries again.
            tracing::warn!("{OFFSETS_TOPIC}-{index}: {e}");
        }
        let now = self.clock.now_ms();
        let mut groups = self.groups.borrow_mut();
        for (id, snapshot) in snapshots {
            groups.insert(
                id.clone(),
                Group::restore(&id, self.config.limits, snapshot, now),
            );
        }
        Ok(records)
    }

    /// Forgets the groups and offsets of a partition this shard no longer coordinates.
    fn unload(&self, index: i32) {
        let n = self.config.offsets_partitions;
        let mine = |group: &str| coordinator_partition(group, n) == index;
        self.groups.borrow_mut().retain(|id, _| !mine(id));
        self.offsets.borrow_mut().forget_groups(|g| mine(g));
        self.joins.borrow_mut().retain(|(group, member), tx| {
            let keep = !mine(group);
            if !keep {
                let _ = tx.try_send(JoinResult::error(ResponseError::NotCoordinator, member));
            }
            keep
        });
        self.syncs.borrow_mut().retain(|(group, _), tx| {
            let keep = !mine(group);
            if !keep {
                let _ = tx.try_send(Err(ResponseError::NotCoordinator));
            }
            keep
        });
    }

    /// Whether a group's partition is loaded here: the error to answer otherwise. The
    /// caller has checked that the metadata names this broker as the partition's leader,
    /// so a partition not led here yet is one whose table is still being applied (its log
    /// opened): loading, as far as the client is concerned.
    pub(super) fn check_loaded(&self, group_id: &str) -> Result<(), ResponseError> {
        let index = coordinator_partition(group_id, self.config.offsets_partitions);
        match self.led.borrow().get(&index).map(|l| l.state) {
            Some(LoadState::Loaded) => Ok(()),
            Some(LoadState::Loading) | None => Err(ResponseError::CoordinatorLoadInProgress),
            Some(LoadState::Failed) => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// Start-up compaction (spate-log has no log compaction): when a replayed partition
    /// held many more records than live entries, its live state is appended as a
    /// checkpoint, flushed, and the log start moved to it, so the old records' segments
    /// are deleted (on the followers too, which follow the leader's log start) and the next
    /// load replays only the checkpoint and what followed. A crash at any step leaves a log
    /// that replays to the same state.
    async fn compact(
        &self,
        index: i32,
        partition: &Partition,
        replayed: usize,
        snapshots: &HashMap<String, GroupSnapshot>,
    ) -> Result<(), String> {
        let n = self.config.offsets_partitions;
        let mut live = Vec::new();
        {
            let table = self.offsets.borrow();
            for group in table.groups() {
                if coordinator_partition(group, n) != index {
                    continue;
                }
                for (topic, p, committed) in table.all(group) {
                    live.push(OffsetRecord::Commit {
                        group: group.clone(),
                        topic: topic.to_string(),
                        partition: p,
                        committed: committed.clone(),
                    });
                }
            }
        }
        for (group, snapshot) in snapshots {
            live.push(OffsetRecord::GroupMetadata {
                group: group.clone(),
                snapshot: snapshot.clone(),
            });
        }
        if replayed < COMPACT_MIN_RECORDS || replayed < COMPACT_RATIO * live.len() {
            return Ok(());
        }
        let what = format!("compacting {OFFSETS_TOPIC}-{index}");
        let start = partition.log.log_end_offset();
        for chunk in live.chunks(CHECKPOINT_BATCH_RECORDS) {
            self.append_to(index, partition, chunk)
                .await
                .map_err(|e| format!("{what}: append failed ({e:?})"))?;
        }
        partition
            .log
            .flush()
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        partition
            .delete_records(start)
            .await
            .map_err(|e| format!("{what}: {e:?}"))?;
        tracing::info!(
            shard = self.shard,
            "compacted {OFFSETS_TOPIC}-{index}: {replayed} records down to {}",
            live.len()
        );
        Ok(())
    }

    async fn replay(
        &self,
        index: i32,
        log: &PartitionLog,
        snapshots: &mut HashMap<String, GroupSnapshot>,
    ) -> Result<usize, String> {
        let what = format!("{OFFSETS_TOPIC}-{index}");
        let mut offset = log.log_start_offset();
        let end = log.log_end_offset();
        let mut count = 0;
        while offset < end {
            let slice = log
                .read(offset, 1 << 20, i64::MAX, true)
                .await
                .map_err(|e| format!("reading {what}: {e}"))?;
            if slice.len == 0 {
                break;
            }
            let bytes = slice
                .file
                .read_at(slice.position, slice.len)
                .await
                .map_err(|e| format!("reading {what}: {e}"))?;
            for batch in split(&bytes) {
                let (_, header, batch) = batch.map_err(|e| format!("{what}: {e}"))?;
                offset = header.last_offset() + 1;
                let values = match batch_values(batch) {
                    Ok(values) => values,
                    Err(e) => {
                        tracing::warn!("{what} at offset {}: {e}; skipped", header.base_offset);
                        continue;
                    }
                };
                for (delta, value) in values.into_iter().enumerate() {
                    match OffsetRecord::decode(value) {
                        Ok(OffsetRecord::GroupMetadata { group, snapshot }) => {
                            snapshots.insert(group, snapshot);
                            count += 1;
                        }
                        Ok(record) => {
                            if let OffsetRecord::DeleteGroup { group } = &record {
                                snapshots.remove(group);
                            }
                            self.offsets
                                .borrow_mut()
                                .apply(record, header.base_offset + delta as i64);
                            count += 1;
                        }
                        Err(e) => tracing::warn!(
                            "{what} at offset {}: {e}; skipped",
                            header.base_offset + delta as i64
                        ),
                    }
                }
            }
        }
        Ok(count)
    }

    /// Appends records to the group's coordinator partition once every in-sync replica has
    /// them; returns the offset of the first.
    pub(super) async fn append(
        &self,
        group: &str,
        records: &[OffsetRecord],
    ) -> Result<i64, ResponseError> {
        let index = coordinator_partition(group, self.config.offsets_partitions);
        let partition = match self.led.borrow().get(&index) {
            Some(l) if l.state == LoadState::Loaded => l.partition.clone(),
            _ => return Err(ResponseError::NotCoordinator),
        };
        self.append_to(index, &partition, records).await
    }

    async fn append_to(
        &self,
        index: i32,
        partition: &Partition,
        records: &[OffsetRecord],
    ) -> Result<i64, ResponseError> {
        let values: Vec<Vec<u8>> = records.iter().map(OffsetRecord::encode).collect();
        let batch = build_batch(self.clock.now_ms(), &values);
        match partition
            .produce(BytesMut::from(&batch[..]), ACKS_ALL, self.commit_timeout)
            .await
        {
            Ok(result) => Ok(result.base_offset),
            Err(e) => {
                tracing::warn!("appending to {OFFSETS_TOPIC}-{index} failed: {e:?}");
                Err(commit_error(e))
            }
        }
    }

    pub(super) async fn expire_offsets(&self, now: i64) {
        if now - self.last_expiry_ms.get() < self.config.retention_check_interval_ms {
            return;
        }
        self.last_expiry_ms.set(now);
        let expired: Vec<(String, Vec<OffsetRecord>)> = {
            let groups = self.groups.borrow();
            let table = self.offsets.borrow();
            table
                .groups()
                .filter(|g| groups.get(*g).is_none_or(|group| group.is_empty()))
                .map(|g| {
                    let records = table
                        .all(g)
                        .into_iter()
                        .filter(|(_, _, c)| {
                            c.commit_time_ms
                                .saturating_add(self.config.offsets_retention_ms)
                                <= now
                        })
                        .map(|(topic, partition, _)| OffsetRecord::DeleteOffset {
                            group: g.clone(),
                            topic: topic.to_string(),
                            partition,
                        })
                        .collect();
                    (g.clone(), records)
                })
                .filter(|(_, records): &(String, Vec<OffsetRecord>)| !records.is_empty())
                .collect()
        };
        for (group, records) in expired {
            match self.append(&group, &records).await {
                Ok(base) => {
                    tracing::info!(%group, "{} committed offsets expired", records.len());
                    let mut table = self.offsets.borrow_mut();
                    for (i, record) in records.into_iter().enumerate() {
                        table.apply(record, base + i as i64);
                    }
                }
                Err(e) => tracing::warn!(%group, "expiring offsets failed: {e:?}"),
            }
        }
    }

    /// Records the group's membership if the call ended a rebalance (Stable) or emptied it.
    pub(super) async fn persist_if_settled(&self, group_id: &str, before: (GroupState, i32)) {
        let after = self.settled_state(group_id);
        if after != before && matches!(after.0, GroupState::Stable | GroupState::Empty) {
            self.persist(group_id).await;
        }
    }

    /// Appends the group's membership snapshot. A failure is logged, not answered: offsets
    /// do not depend on it, and after a restart without it the members simply rejoin.
    pub(super) async fn persist(&self, group_id: &str) {
        let Some(snapshot) = self.groups.borrow().get(group_id).map(Group::snapshot) else {
            return;
        };
        let record = OffsetRecord::GroupMetadata {
            group: group_id.to_string(),
            snapshot,
        };
        if let Err(e) = self.append(group_id, &[record]).await {
            tracing::warn!(
                group = group_id,
                "recording the group's members failed: {e:?}"
            );
        }
    }
}

/// What an offset commit answers when its append fails: Kafka's mapping in
/// `GroupMetadataManager.storeOffsets`.
fn commit_error(e: ResponseError) -> ResponseError {
    match e {
        ResponseError::NotLeaderOrFollower
        | ResponseError::FencedLeaderEpoch
        | ResponseError::KafkaStorageError => ResponseError::NotCoordinator,
        ResponseError::MessageTooLarge
        | ResponseError::RecordListTooLarge
        | ResponseError::InvalidFetchSize => ResponseError::InvalidCommitOffsetSize,
        _ => ResponseError::CoordinatorNotAvailable,
    }
}
