//! The coordinator's durable side: the coordinator partitions' logs under
//! `<log.dir>/__consumer_offsets/<partition>/`. Loading (replay, start-up compaction),
//! appending offsets and membership snapshots, the timed flush and offsets expiry.

use std::collections::HashMap;
use std::rc::Rc;

use bytes::BytesMut;
use kafka_protocol::ResponseError;
use spate_core::record_batch::{build_batch, split};
use spate_log::PartitionLog;

use super::group::{Group, GroupSnapshot, GroupState};
use super::offsets::{batch_values, OffsetRecord};
use super::{coordinator_partition, GroupCoordinator, OFFSETS_DIR};

/// Start-up compaction runs on a partition that replayed at least this many records...
const COMPACT_MIN_RECORDS: usize = 1_000;
/// ...and this many times its live entries.
const COMPACT_RATIO: usize = 2;
/// Records per batch of a compaction checkpoint.
const CHECKPOINT_BATCH_RECORDS: usize = 500;

impl GroupCoordinator {
    /// Opens the coordinator partitions this shard owns that exist on disk and replays
    /// them. Until it is done, calls get COORDINATOR_LOAD_IN_PROGRESS. A partition that
    /// cannot be read is logged and its groups answer COORDINATOR_NOT_AVAILABLE from then
    /// on: better than serving them without their offsets (consumers would silently reset).
    pub async fn load(&self) {
        let mut snapshots = HashMap::new();
        match std::fs::read_dir(&self.dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let Some(partition) = entry
                        .file_name()
                        .to_str()
                        .and_then(|n| n.parse::<i32>().ok())
                    else {
                        continue;
                    };
                    if self.owns_partition(partition) {
                        self.load_partition(partition, &mut snapshots).await;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::error!(
                    "cannot read {}: {e}; the groups of shard {} are unavailable",
                    self.dir.display(),
                    self.shard
                );
                let owned = (0..self.config.offsets_partitions).filter(|p| self.owns_partition(*p));
                self.failed.borrow_mut().extend(owned);
            }
        }
        let now = self.clock.now_ms();
        let mut groups = self.groups.borrow_mut();
        for (id, snapshot) in snapshots {
            groups.insert(
                id.clone(),
                Group::restore(&id, self.config.limits, snapshot, now),
            );
        }
        drop(groups);
        self.loaded.set(true);
    }

    async fn load_partition(&self, partition: i32, snapshots: &mut HashMap<String, GroupSnapshot>) {
        let replayed = match self.log(partition).await {
            Ok(log) => match self.replay(partition, &log, snapshots).await {
                Ok(records) => self
                    .compact(partition, &log, records, snapshots)
                    .await
                    .map(|()| records),
                Err(e) => Err(e),
            },
            Err(_) => Err("cannot open the log (see above)".to_string()),
        };
        match replayed {
            Ok(records) => tracing::info!(
                shard = self.shard,
                "replayed {records} offset records of {OFFSETS_DIR}/{partition}"
            ),
            Err(e) => {
                tracing::error!(
                    "{OFFSETS_DIR}/{partition} under {}: {e}. Its groups answer \
                     COORDINATOR_NOT_AVAILABLE until the directory is repaired or removed \
                     (removing it loses their committed offsets)",
                    self.dir.display()
                );
                self.failed.borrow_mut().insert(partition);
            }
        }
    }

    /// Start-up compaction (spate-log has no log compaction): when a replayed partition
    /// held many more records than live entries, its live state is appended as a
    /// checkpoint, flushed, and the log start moved to it, so the old records' segments
    /// are deleted and the next start replays only the checkpoint and what followed.
    /// A crash at any step leaves a log that replays to the same state.
    async fn compact(
        &self,
        partition: i32,
        log: &PartitionLog,
        replayed: usize,
        snapshots: &HashMap<String, GroupSnapshot>,
    ) -> Result<(), String> {
        let n = self.config.offsets_partitions;
        let mut live = Vec::new();
        {
            let table = self.offsets.borrow();
            for group in table.groups() {
                if coordinator_partition(group, n) != partition {
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
            if coordinator_partition(group, n) == partition {
                live.push(OffsetRecord::GroupMetadata {
                    group: group.clone(),
                    snapshot: snapshot.clone(),
                });
            }
        }
        if replayed < COMPACT_MIN_RECORDS || replayed < COMPACT_RATIO * live.len() {
            return Ok(());
        }
        let what = format!("compacting {OFFSETS_DIR}/{partition}");
        let start = log.log_end_offset();
        for chunk in live.chunks(CHECKPOINT_BATCH_RECORDS) {
            self.append_to(partition, chunk)
                .await
                .map_err(|e| format!("{what}: append failed ({e:?})"))?;
        }
        log.flush().await.map_err(|e| format!("{what}: {e}"))?;
        log.delete_before(start)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        tracing::info!(
            shard = self.shard,
            "compacted {OFFSETS_DIR}/{partition}: {replayed} records down to {}",
            live.len()
        );
        Ok(())
    }

    /// Replays one coordinator partition: offsets into the table, the last membership
    /// snapshot of each group into `snapshots`.
    async fn replay(
        &self,
        partition: i32,
        log: &PartitionLog,
        snapshots: &mut HashMap<String, GroupSnapshot>,
    ) -> Result<usize, String> {
        let what = format!("{OFFSETS_DIR}/{partition}");
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

    /// The log of coordinator partition `partition`, opened (created) on first use.
    async fn log(&self, partition: i32) -> Result<Rc<PartitionLog>, ResponseError> {
        if let Some(log) = self.logs.borrow().get(&partition) {
            return Ok(log.clone());
        }
        let _permit = self
            .opening
            .acquire_permit(1)
            .await
            .map_err(|_| ResponseError::CoordinatorNotAvailable)?;
        if let Some(log) = self.logs.borrow().get(&partition) {
            return Ok(log.clone());
        }
        let dir = self.dir.join(partition.to_string());
        let log = PartitionLog::open(&dir, self.log_config.clone(), self.clock.clone())
            .await
            .map_err(|e| {
                tracing::error!("cannot open {}: {e}", dir.display());
                ResponseError::CoordinatorNotAvailable
            })?;
        // Everything in it is committed: one replica.
        log.set_high_watermark(log.log_end_offset());
        self.logs.borrow_mut().insert(partition, log.clone());
        Ok(log)
    }

    /// Appends offset records for `group`; returns the log offset of the first.
    pub(super) async fn append(
        &self,
        group: &str,
        records: &[OffsetRecord],
    ) -> Result<i64, ResponseError> {
        let partition = coordinator_partition(group, self.config.offsets_partitions);
        self.append_to(partition, records).await
    }

    async fn append_to(
        &self,
        partition: i32,
        records: &[OffsetRecord],
    ) -> Result<i64, ResponseError> {
        let log = self.log(partition).await?;
        let values: Vec<Vec<u8>> = records.iter().map(OffsetRecord::encode).collect();
        let batch = build_batch(self.clock.now_ms(), &values);
        match log.append(BytesMut::from(&batch[..]), 0).await {
            Ok(info) => {
                log.set_high_watermark(info.last_offset + 1);
                Ok(info.base_offset)
            }
            Err(e) => {
                tracing::error!("appending to {OFFSETS_DIR}/{partition} failed: {e}");
                // Kafka answers a failed offsets append as a coordinator problem, so the
                // client retries.
                Err(ResponseError::CoordinatorNotAvailable)
            }
        }
    }

    /// Flushes and closes the logs (shutdown).
    pub async fn close(&self) {
        let logs: Vec<_> = self.logs.borrow_mut().drain().collect();
        for (partition, log) in logs {
            if let Err(e) = log.close().await {
                tracing::error!("closing {OFFSETS_DIR}/{partition} failed: {e}");
            }
        }
    }

    /// `offsets.retention.minutes`: deletes (with tombstones) the offsets of groups without
    /// members whose last commit is older than the retention. A group with members keeps
    /// them, whatever their age.
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

    /// `log.flush.interval.ms` for the offsets logs: a log that took commits and then went
    /// quiet is still flushed on time (appends only flush when they arrive).
    pub(super) async fn flush_due(&self, now: i64) {
        let Some(interval) = self.log_config.flush_ms.filter(|ms| *ms > 0) else {
            return;
        };
        if now - self.last_flush_ms.get() < interval as i64 {
            return;
        }
        self.last_flush_ms.set(now);
        let logs: Vec<_> = self
            .logs
            .borrow()
            .iter()
            .map(|(p, l)| (*p, l.clone()))
            .collect();
        for (partition, log) in logs {
            if log.recovery_point() < log.log_end_offset() {
                if let Err(e) = log.flush().await {
                    tracing::error!("flushing {OFFSETS_DIR}/{partition} failed: {e}");
                }
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
