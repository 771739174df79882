//! The owner side of a partition: the log, the signal fetches wait on, and the operations a
//! shard runs on the partitions it owns.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use spate_core::record_batch;
use spate_log::{PartitionLog, ReadSlice};

use crate::messages::{ListedOffset, PartitionOffsets, ProduceResult};
use crate::notify::Notify;

/// ListOffsets' special timestamps.
const EARLIEST_TIMESTAMP: i64 = -2;
const LATEST_TIMESTAMP: i64 = -1;
const MAX_TIMESTAMP: i64 = -3;
/// The first offset kept on this broker's disk: with no tiered storage, the log start.
const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;
/// The last offset in tiered storage: there is none, so no offset.
const LATEST_TIERED_TIMESTAMP: i64 = -5;

/// Spate is single-replica for now: every partition is led at epoch 0.
pub const LEADER_EPOCH: i32 = 0;

pub struct Partition {
    pub log: Rc<PartitionLog>,
    /// Fired after every append that moved the high watermark.
    pub appended: Notify,
    /// `max.message.bytes` of the topic (changed live by the config APIs).
    pub max_message_bytes: Cell<usize>,
}

impl Partition {
    /// Checks each batch's size, appends, and (one replica) moves the high watermark to the
    /// new log end so consumers see the data.
    pub async fn produce(&self, records: BytesMut) -> Result<ProduceResult, ResponseError> {
        for batch in record_batch::split(&records) {
            let (_, header, _) = batch.map_err(|e| e.kafka_error())?;
            if header.total_len() > self.max_message_bytes.get() {
                return Err(ResponseError::MessageTooLarge);
            }
        }
        let info = self
            .log
            .append(records, LEADER_EPOCH)
            .await
            .map_err(|e| e.kafka_error())?;
        self.log.set_high_watermark(self.log.log_end_offset());
        self.appended.notify_all();
        Ok(ProduceResult {
            base_offset: info.base_offset,
            log_start_offset: info.log_start_offset,
        })
    }

    /// Whole batches from `offset`, at most `max_bytes` (but the first batch regardless with
    /// `min_one_batch`), below the high watermark.
    pub async fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<(ReadSlice, PartitionOffsets), ResponseError> {
        let offsets = self.offsets();
        let slice = self
            .log
            .read(offset, max_bytes, offsets.high_watermark, min_one_batch)
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

    /// Waits until the high watermark passes `offset` or `timeout` elapses, woken by the
    /// append itself rather than a polling tick.
    pub async fn wait_for_data(&self, offset: i64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.appended.version();
            if self.log.high_watermark() > offset {
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

    pub async fn list_offset(&self, timestamp: i64) -> Result<Option<ListedOffset>, ResponseError> {
        let log = &self.log;
        let listed = match timestamp {
            EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP => Some(ListedOffset {
                timestamp: -1,
                offset: log.log_start_offset(),
            }),
            LATEST_TIMESTAMP => Some(ListedOffset {
                timestamp: -1,
                offset: log.high_watermark(),
            }),
            LATEST_TIERED_TIMESTAMP => None,
            MAX_TIMESTAMP => {
                let (timestamp, offset) = log.max_timestamp();
                (offset >= 0).then_some(ListedOffset { timestamp, offset })
            }
            ts if ts < 0 => return Err(ResponseError::InvalidRequest),
            ts => log
                .offset_for_timestamp(ts)
                .await
                .map_err(|e| e.kafka_error())?
                .map(|(offset, timestamp)| ListedOffset { timestamp, offset }),
        };
        Ok(listed)
    }
}

/// Copies a read range out of its segment file: a read for another shard crosses threads as
/// bytes (the owner's file handles stay on the owner). Local reads are spliced instead.
pub(crate) async fn read_slice_to_bytes(slice: &ReadSlice) -> Result<Bytes, ResponseError> {
    if slice.len == 0 {
        return Ok(Bytes::new());
    }
    slice
        .file
        .read_at(slice.position, slice.len)
        .await
        .map(Bytes::from)
        .map_err(|e| e.kafka_error())
}
