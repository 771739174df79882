//! A consumer thread: fetches its assigned partitions from one broker by offset (no group
//! membership yet), checks each batch's CRC and each record's stamp, and records end-to-end
//! latency for records of this run.

use crate::batch::records;
use crate::client::{error_name, topic_name, Conn, Slot};
use crate::payload::{now_ns, Stamp};
use crate::sequence::SequenceChecker;
use crate::stats::Stats;
use crate::workload::Workload;
use crate::Result;
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest};
use kafka_protocol::records::RecordBatchDecoder;
use spate_core::record_batch::{split, validate, BatchError};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Log end offsets per slot at which consumers stop; set by the runner when the end of the
/// data is known (catch-up: from the start; end-to-end: once producers stop).
pub type StopAt = Arc<Mutex<Option<Vec<i64>>>>;

pub struct ConsumerConfig {
    pub id: u32,
    pub run: u32,
    pub slots: Arc<Vec<Slot>>,
    /// Slot indices this consumer reads; all led by the same broker.
    pub assigned: Vec<usize>,
    /// Next offset to read, per assigned slot.
    pub start: Vec<i64>,
    /// Once set, stop when every assigned slot reaches these offsets (indexed by slot).
    pub stop_at: StopAt,
    pub workload: Arc<Workload>,
    /// Whether this run's sequences must start at 0 (see `SequenceChecker`).
    pub from_zero: bool,
}

pub fn spawn(
    cfg: ConsumerConfig,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Result<SequenceChecker>> {
    std::thread::Builder::new()
        .name(format!("consumer-{}", cfg.id))
        .spawn(move || run(cfg, &stats, &stop))
        .expect("spawn consumer thread")
}

fn run(cfg: ConsumerConfig, stats: &Stats, stop: &AtomicBool) -> Result<SequenceChecker> {
    let mut checker = SequenceChecker::new(cfg.run, cfg.from_zero);
    let Some(&first) = cfg.assigned.first() else {
        return Ok(checker);
    };
    let mut conn = Conn::connect(&cfg.slots[first].leader)?;
    let c = &cfg.workload.consumers;
    let mut offsets = cfg.start.clone();
    while !stop.load(Relaxed) {
        if let Some(end) = cfg.stop_at.lock().unwrap().as_ref() {
            if cfg
                .assigned
                .iter()
                .zip(&offsets)
                .all(|(&s, &o)| o >= end[s])
            {
                break;
            }
        }
        let mut topics: Vec<FetchTopic> = Vec::new();
        for (i, &s) in cfg.assigned.iter().enumerate() {
            let slot = &cfg.slots[s];
            let part = FetchPartition::default()
                .with_partition(slot.partition)
                .with_fetch_offset(offsets[i])
                .with_current_leader_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(c.partition_max_bytes.0.min(i32::MAX as u64) as i32);
            match topics.iter_mut().find(|t| t.topic.0.as_str() == slot.topic) {
                Some(t) => t.partitions.push(part),
                None => topics.push(
                    FetchTopic::default()
                        .with_topic(topic_name(&slot.topic))
                        .with_partitions(vec![part]),
                ),
            }
        }
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(c.fetch_max_wait.0.as_millis() as i32)
            .with_min_bytes(1)
            .with_max_bytes(c.fetch_max_bytes.0.min(i32::MAX as u64) as i32)
            .with_session_epoch(-1)
            .with_topics(topics);
        let resp = conn.call(&req)?;
        if resp.error_code != 0 {
            stats.error(format!("fetch: {}", error_name(resp.error_code)), 1);
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let now = now_ns();
        let mut tally = Tally::default();
        for t in resp.responses {
            for p in t.partitions {
                let Some(i) = cfg.assigned.iter().position(|&s| {
                    cfg.slots[s].topic == t.topic.0.as_str()
                        && cfg.slots[s].partition == p.partition_index
                }) else {
                    continue;
                };
                if p.error_code != 0 {
                    stats.error(format!("fetch: {}", error_name(p.error_code)), 1);
                    // Back off: an error repeats on every fetch until something changes.
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                if let Some(bytes) = p.records {
                    let slot = cfg.assigned[i] as u32;
                    read_batches(
                        &bytes,
                        slot,
                        &mut offsets[i],
                        now,
                        cfg.run,
                        &mut checker,
                        &mut tally,
                        stats,
                    );
                }
            }
        }
        stats.consumed_msgs.fetch_add(tally.msgs, Relaxed);
        stats.consumed_bytes.fetch_add(tally.bytes, Relaxed);
    }
    Ok(checker)
}

#[derive(Default)]
struct Tally {
    msgs: u64,
    bytes: u64,
}

/// Reads the batches of one partition's fetched bytes, advancing `offset`. A trailing
/// partial batch (brokers cut responses at the size limit) is left for the next fetch.
#[allow(clippy::too_many_arguments)]
fn read_batches(
    bytes: &Bytes,
    slot: u32,
    offset: &mut i64,
    now: u64,
    run: u32,
    checker: &mut SequenceChecker,
    tally: &mut Tally,
    stats: &Stats,
) {
    let mut hist = stats.e2e_latency.lock().unwrap();
    let fetched_from = *offset;
    let mut on_value = |off: i64, value: Option<&[u8]>, key_len: usize| {
        if off < fetched_from {
            return; // before the fetch offset: the broker sent the whole batch
        }
        tally.msgs += 1;
        let value = value.unwrap_or(&[]);
        tally.bytes += (value.len() + key_len) as u64;
        match Stamp::read(value) {
            Some(stamp) => {
                checker.observe(slot, &stamp);
                if stamp.run == run {
                    hist.saturating_record((now.saturating_sub(stamp.sent_ns) / 1000).max(1));
                }
            }
            None => checker.foreign(),
        }
    };
    for item in split(bytes) {
        let (_, header, batch) = match item {
            Ok(b) => b,
            Err(BatchError::Truncated { .. }) => break,
            Err(e) => {
                stats.error(format!("fetch: bad batch framing: {e}"), 1);
                break;
            }
        };
        if let Err(e) = validate(batch) {
            stats.error(format!("fetch: corrupt batch: {e}"), 1);
            break;
        }
        if !header.is_control() {
            if header.attributes & 0x7 == 0 {
                for r in records(batch) {
                    match r {
                        Ok(r) => on_value(
                            header.base_offset + r.offset_delta,
                            r.value,
                            r.key.map_or(0, |k| k.len()),
                        ),
                        Err(e) => {
                            stats.error(format!("fetch: {e}"), 1);
                            break;
                        }
                    }
                }
            } else {
                let mut buf = bytes.slice_ref(batch);
                match RecordBatchDecoder::decode(&mut buf) {
                    Ok(set) => {
                        for r in set.records {
                            on_value(r.offset, r.value.as_deref(), r.key.map_or(0, |k| k.len()));
                        }
                    }
                    Err(e) => stats.error(format!("fetch: cannot decompress batch: {e}"), 1),
                }
            }
        }
        *offset = (*offset).max(header.last_offset() + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchBuilder;
    use crate::payload::HEADER_LEN;
    use crate::workload::Compression;
    use spate_core::record_batch::set_base_offset;

    /// A fetched byte run: batches of `seqs` (one batch per inner list) at consecutive offsets.
    fn fetched(batches: &[&[u64]], compression: Compression) -> Bytes {
        let mut out = Vec::new();
        let mut offset = 0i64;
        for seqs in batches {
            let mut b = BatchBuilder::new(1 << 20);
            for &s in seqs.iter() {
                let mut stamp = [0u8; HEADER_LEN];
                Stamp {
                    run: 5,
                    producer: 0,
                    sequence: s,
                    sent_ns: 0,
                }
                .write(&mut stamp);
                b.append(None, &[&stamp, b"payload"]);
            }
            let mut batch = b.finish(compression, 0).unwrap().to_vec();
            set_base_offset(&mut batch, offset);
            offset += seqs.len() as i64;
            out.extend_from_slice(&batch);
        }
        Bytes::from(out)
    }

    fn read(bytes: &Bytes, offset: &mut i64) -> (SequenceChecker, Tally, Stats) {
        let stats = Stats::default();
        let mut checker = SequenceChecker::new(5, true);
        let mut tally = Tally::default();
        read_batches(
            bytes,
            0,
            offset,
            now_ns(),
            5,
            &mut checker,
            &mut tally,
            &stats,
        );
        (checker, tally, stats)
    }

    #[test]
    fn reads_checks_and_advances() {
        for compression in [Compression::None, Compression::Gzip] {
            let bytes = fetched(&[&[0, 1, 2], &[3, 4]], compression);
            let mut offset = 0;
            let (checker, tally, stats) = read(&bytes, &mut offset);
            assert_eq!(offset, 5);
            assert_eq!(tally.msgs, 5);
            assert_eq!(tally.bytes, 5 * (HEADER_LEN as u64 + 7));
            assert!(stats.errors.lock().unwrap().is_empty());
            assert_eq!(stats.e2e_latency.lock().unwrap().len(), 5);
            assert!(checker.finish(&[vec![5]]).is_clean());
        }
    }

    #[test]
    fn skips_records_before_the_fetch_offset() {
        let bytes = fetched(&[&[0, 1, 2]], Compression::None);
        let mut offset = 2;
        let (checker, tally, _) = read(&bytes, &mut offset);
        assert_eq!((offset, tally.msgs), (3, 1));
        assert_eq!(checker.finish(&[vec![3]]).lost, 2);
    }

    #[test]
    fn leaves_a_partial_trailing_batch() {
        let bytes = fetched(&[&[0, 1], &[2, 3]], Compression::None);
        let cut = bytes.slice(..bytes.len() - 10);
        let mut offset = 0;
        let (_, tally, stats) = read(&cut, &mut offset);
        assert_eq!((offset, tally.msgs), (2, 2));
        assert!(stats.errors.lock().unwrap().is_empty());
    }

    #[test]
    fn reports_a_corrupt_batch() {
        let mut raw = fetched(&[&[0, 1]], Compression::None).to_vec();
        let last = raw.len() - 1;
        raw[last] ^= 0xff;
        let mut offset = 0;
        let (_, tally, stats) = read(&Bytes::from(raw), &mut offset);
        assert_eq!((offset, tally.msgs), (0, 0));
        let errors = stats.errors.lock().unwrap();
        assert!(errors.keys().any(|e| e.contains("corrupt")), "{errors:?}");
    }

    #[test]
    fn detects_duplicates_across_batches() {
        let bytes = fetched(&[&[0, 1], &[1, 2]], Compression::None);
        let mut offset = 0;
        let (checker, _, _) = read(&bytes, &mut offset);
        let s = checker.finish(&[vec![3]]);
        assert_eq!((s.duplicates, s.lost), (1, 0));
    }
}
