//! A producer thread: generates records on schedule, builds batches, and pipelines produce
//! requests, up to `max_in_flight` per connection. A reader thread per connection matches
//! responses to requests (Kafka answers in order) and records latency.
//!
//! Latency runs from each record's *intended* send time: with a target rate the schedule is
//! fixed in advance (record i is due at t0 + i/rate), so when the broker stalls, the records
//! that should have been sent meanwhile are charged the stall too (no coordinated omission).
//! At max rate the intended time is when the record was generated.

use crate::batch::BatchBuilder;
use crate::client::{
    decode_response, encode_request, error_name, read_frame, topic_name, Conn, Slot,
};
use crate::error::io_err;
use crate::payload::{now_ns, Stamp, HEADER_LEN};
use crate::rng::Rng;
use crate::stats::Stats;
use crate::workload::{Acks, SizeSpec, Workload};
use crate::Result;
use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest};
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Records generated per loop turn at max rate, between checks of the stop flag and clock.
const MAX_RATE_CHUNK: u64 = 256;
/// Most records a rate-limited producer generates between checks of the stop flag.
const MAX_CATCH_UP: u64 = 16 * 1024;
/// Shortest sleep of a rate-limited producer between bursts of due records.
const MIN_SLEEP: Duration = Duration::from_micros(100);

pub struct ProducerConfig {
    pub id: u32,
    pub run: u32,
    pub slots: Arc<Vec<Slot>>,
    pub workload: Arc<Workload>,
    /// Messages per second for this producer; `None` is as fast as possible.
    pub rate: Option<f64>,
    /// Stop after this many records.
    pub limit: Option<u64>,
}

/// What a batch in flight needs for accounting when its response arrives.
struct BatchMeta {
    slot: usize,
    count: u32,
    bytes: u64,
    /// Intended send time of every record (rate mode), or one time for all (max rate).
    intended: Vec<u64>,
}

struct InFlight {
    correlation_id: i32,
    batches: Vec<BatchMeta>,
}

struct ProducerConn {
    stream: TcpStream,
    version: i16,
    conn_correlation: i32,
    in_flight: Option<SyncSender<InFlight>>,
    reader: Option<JoinHandle<()>>,
}

/// Runs one producer until `stop` is set or its limit is reached. Returns, per slot, how
/// many records it wrote (the next sequence number).
pub fn spawn(
    cfg: ProducerConfig,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Result<Vec<u64>>> {
    std::thread::Builder::new()
        .name(format!("producer-{}", cfg.id))
        .spawn(move || {
            let result = Producer::new(cfg, stats.clone()).and_then(|p| p.run(&stop));
            stats.add_thread_cpu();
            result
        })
        .expect("spawn producer thread")
}

struct Producer {
    cfg: ProducerConfig,
    stats: Arc<Stats>,
    conns: Vec<ProducerConn>,
    conn_of_slot: Vec<usize>,
    builders: Vec<BatchBuilder>,
    pending: Vec<BatchMeta>,
    seqs: Vec<u64>,
    /// Random bytes that fill each value after its stamp.
    filler: Vec<u8>,
    key: Vec<u8>,
    rng: Rng,
    /// Sticky partitioning: the slot being filled (unkeyed records).
    sticky: usize,
    /// For keyed records: first slot index of each topic, and its partition count.
    topic_slots: Vec<(usize, u32)>,
    topic_turn: usize,
}

impl Producer {
    fn new(cfg: ProducerConfig, stats: Arc<Stats>) -> Result<Producer> {
        let w = &cfg.workload;
        let p = &w.producers;
        let mut leaders: Vec<&str> = Vec::new();
        let mut conn_of_slot = Vec::new();
        for s in cfg.slots.iter() {
            let i = match leaders.iter().position(|l| *l == s.leader) {
                Some(i) => i,
                None => {
                    leaders.push(&s.leader);
                    leaders.len() - 1
                }
            };
            conn_of_slot.push(i);
        }
        let mut conns = Vec::new();
        for leader in leaders {
            let conn = Conn::connect(leader)?;
            let version = conn.versions.get(ApiKey::Produce)?;
            let (in_flight, reader) = if p.acks == Acks::None {
                (None, None)
            } else {
                let read_half = conn.stream.try_clone().map_err(io_err("clone socket"))?;
                read_half
                    .set_read_timeout(Some(p.request_timeout.0))
                    .map_err(io_err("set read timeout"))?;
                // The reader holds one request besides those queued, hence the - 1.
                let (tx, rx) = sync_channel(p.max_in_flight as usize - 1);
                let stats = stats.clone();
                let slots = cfg.slots.clone();
                let reader = std::thread::Builder::new()
                    .name(format!("acks-{}", cfg.id))
                    .spawn(move || {
                        read_acks(read_half, version, rx, &slots, &stats);
                        stats.add_thread_cpu();
                    })
                    .expect("spawn ack reader");
                (Some(tx), Some(reader))
            };
            conns.push(ProducerConn {
                stream: conn.stream,
                version,
                conn_correlation: 0,
                in_flight,
                reader,
            });
        }
        let n = cfg.slots.len();
        let mut topic_slots = Vec::new();
        let mut first = 0;
        for t in &w.topics {
            topic_slots.push((first, t.partitions));
            first += t.partitions as usize;
        }
        let mut rng = Rng::new(((cfg.run as u64) << 32) | cfg.id as u64);
        let mut filler = vec![0u8; w.record.size.max() as usize];
        rng.fill(&mut filler);
        let key_len = w.record.keys.as_ref().map_or(0, |k| k.size.0 as usize);
        Ok(Producer {
            stats,
            conns,
            conn_of_slot,
            builders: (0..n)
                .map(|_| BatchBuilder::new(p.batch_size.0 as usize))
                .collect(),
            pending: (0..n)
                .map(|slot| BatchMeta {
                    slot,
                    count: 0,
                    bytes: 0,
                    intended: Vec::new(),
                })
                .collect(),
            seqs: vec![0; n],
            filler,
            key: vec![b'0'; key_len],
            rng,
            sticky: cfg.id as usize % n,
            topic_slots,
            topic_turn: 0,
            cfg,
        })
    }

    fn run(mut self, stop: &AtomicBool) -> Result<Vec<u64>> {
        let result = self.generate(stop);
        // Closing the queues lets each reader finish the responses still due, then exit.
        for c in &mut self.conns {
            c.in_flight = None;
        }
        for c in &mut self.conns {
            if let Some(r) = c.reader.take() {
                let _ = r.join();
            }
        }
        result.map(|()| self.seqs)
    }

    fn generate(&mut self, stop: &AtomicBool) -> Result<()> {
        let w = self.cfg.workload.clone();
        let linger_ns = w.producers.linger.0.as_nanos() as u64;
        let t0 = now_ns();
        let mut generated = 0u64;
        let limit = self.cfg.limit.unwrap_or(u64::MAX);
        loop {
            if stop.load(Relaxed) || generated >= limit {
                let all: Vec<usize> = (0..self.builders.len()).collect();
                return self.flush(&all);
            }
            let now = now_ns();
            let due = match self.cfg.rate {
                None => MAX_RATE_CHUNK,
                // Behind schedule, catch up in bounded steps so `stop` is still seen.
                Some(r) => (((now - t0) as f64 * r / 1e9) as u64)
                    .saturating_sub(generated)
                    .min(MAX_CATCH_UP),
            }
            .min(limit - generated);
            for _ in 0..due {
                let intended = match self.cfg.rate {
                    None => now,
                    Some(r) => t0 + (generated as f64 * 1e9 / r) as u64,
                };
                self.one_record(&w, intended)?;
                generated += 1;
            }
            if let Some(r) = self.cfg.rate {
                // Flush what has lingered long enough, then sleep until the next record.
                let now = now_ns();
                let ready: Vec<usize> = (0..self.pending.len())
                    .filter(|&s| {
                        let m = &self.pending[s];
                        m.count > 0 && m.intended[0] + linger_ns <= now
                    })
                    .collect();
                self.flush(&ready)?;
                let next_due = t0 + (generated as f64 * 1e9 / r) as u64;
                let linger_due = self
                    .pending
                    .iter()
                    .filter(|m| m.count > 0)
                    .map(|m| m.intended[0] + linger_ns)
                    .min()
                    .unwrap_or(u64::MAX);
                // Never spin: records carry their scheduled times, so waking in steps of at
                // least MIN_SLEEP and catching up costs accuracy nothing (the wait is counted
                // as latency) and leaves the CPU to the broker.
                let now = now_ns();
                let wake = next_due
                    .min(linger_due)
                    .max(now + MIN_SLEEP.as_nanos() as u64);
                std::thread::sleep(Duration::from_nanos(wake - now));
            }
        }
    }

    fn one_record(&mut self, w: &Workload, intended: u64) -> Result<()> {
        let size = match w.record.size {
            SizeSpec::Fixed(n) => n,
            SizeSpec::Uniform { min, max } => min + self.rng.below(max - min + 1),
            spec @ SizeSpec::Normal { mean, stddev } => {
                let v = mean as f64 + stddev as f64 * self.rng.normal();
                (v.round() as u64).clamp(spec.min(), spec.max())
            }
        } as usize;
        let keyed = w.record.keys.as_ref().map(|k| k.count);
        let mut slot = match keyed {
            Some(count) => {
                let k = self.rng.below(count);
                write_key(&mut self.key, k);
                // Keyed records rotate over the topics, then hash to a partition.
                self.topic_turn = (self.topic_turn + 1) % self.topic_slots.len();
                let (first, parts) = self.topic_slots[self.topic_turn];
                first + (murmur2(&self.key) & 0x7fff_ffff) as usize % parts as usize
            }
            None => self.sticky,
        };
        let key = keyed.map(|_| &self.key[..]);
        let key_len = key.map_or(0, |k| k.len());
        if !self.builders[slot].fits(key_len, size) {
            self.flush(&[slot])?;
            if keyed.is_none() {
                // Sticky partitioner: a full batch moves us to the next partition.
                self.sticky = (self.sticky + 1) % self.builders.len();
                slot = self.sticky;
            }
        }
        let mut stamp = [0u8; HEADER_LEN];
        Stamp {
            run: self.cfg.run,
            producer: self.cfg.id,
            sequence: self.seqs[slot],
            sent_ns: intended,
        }
        .write(&mut stamp);
        let key = keyed.map(|_| &self.key[..]);
        self.builders[slot].append(key, &[&stamp, &self.filler[..size - HEADER_LEN]]);
        self.seqs[slot] += 1;
        let meta = &mut self.pending[slot];
        meta.count += 1;
        meta.bytes += (size + key_len) as u64;
        // At max rate every record of a batch shares one intended time: keep the first.
        if self.cfg.rate.is_some() || meta.intended.is_empty() {
            meta.intended.push(intended);
        }
        Ok(())
    }

    /// Sends the batches of `slots` (empty ones skipped), one request per connection.
    fn flush(&mut self, slots: &[usize]) -> Result<()> {
        let compression = self.cfg.workload.producers.compression;
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut per_conn: Vec<Vec<(Bytes, BatchMeta)>> =
            (0..self.conns.len()).map(|_| Vec::new()).collect();
        for &s in slots {
            if self.builders[s].is_empty() {
                continue;
            }
            let batch = self.builders[s].finish(compression, ts)?;
            let meta = std::mem::replace(
                &mut self.pending[s],
                BatchMeta {
                    slot: s,
                    count: 0,
                    bytes: 0,
                    intended: Vec::new(),
                },
            );
            per_conn[self.conn_of_slot[s]].push((batch, meta));
        }
        for (ci, batches) in per_conn.into_iter().enumerate() {
            if !batches.is_empty() {
                self.send(ci, batches)?;
            }
        }
        Ok(())
    }

    fn send(&mut self, ci: usize, batches: Vec<(Bytes, BatchMeta)>) -> Result<()> {
        let p = &self.cfg.workload.producers;
        let mut topics: Vec<TopicProduceData> = Vec::new();
        let mut metas = Vec::with_capacity(batches.len());
        for (batch, meta) in batches {
            let slot = &self.cfg.slots[meta.slot];
            let part = PartitionProduceData::default()
                .with_index(slot.partition)
                .with_records(Some(batch));
            match topics.iter_mut().find(|t| t.name.0.as_str() == slot.topic) {
                Some(t) => t.partition_data.push(part),
                None => topics.push(
                    TopicProduceData::default()
                        .with_name(topic_name(&slot.topic))
                        .with_partition_data(vec![part]),
                ),
            }
            metas.push(meta);
        }
        let req = ProduceRequest::default()
            .with_acks(p.acks.wire())
            .with_timeout_ms(p.request_timeout.0.as_millis() as i32)
            .with_topic_data(topics);
        let conn = &mut self.conns[ci];
        conn.conn_correlation = conn.conn_correlation.wrapping_add(1);
        let frame = encode_request(&req, conn.version, conn.conn_correlation)?;
        let (msgs, bytes) = metas
            .iter()
            .fold((0u64, 0u64), |(m, b), x| (m + x.count as u64, b + x.bytes));
        self.stats.sent_msgs.fetch_add(msgs, Relaxed);
        self.stats.sent_bytes.fetch_add(bytes, Relaxed);
        match &conn.in_flight {
            Some(tx) => {
                // Blocks while max_in_flight requests await answers: the pipelining window.
                if tx
                    .send(InFlight {
                        correlation_id: conn.conn_correlation,
                        batches: metas,
                    })
                    .is_err()
                {
                    return Err(crate::Error::Protocol(
                        "the connection's response reader stopped (see errors)".into(),
                    ));
                }
            }
            None => {
                // acks=0: the broker never answers, so sending is all there is.
                self.stats.acked_msgs.fetch_add(msgs, Relaxed);
                self.stats.acked_bytes.fetch_add(bytes, Relaxed);
            }
        }
        conn.stream
            .write_all(&frame)
            .map_err(io_err("send produce request"))?;
        Ok(())
    }
}

fn read_acks(
    mut stream: TcpStream,
    version: i16,
    rx: Receiver<InFlight>,
    slots: &[Slot],
    stats: &Stats,
) {
    while let Ok(req) = rx.recv() {
        let resp = read_frame(&mut stream)
            .map_err(io_err("read produce response"))
            .and_then(|f| decode_response::<ProduceRequest>(f, version, req.correlation_id));
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                stats.error(e.to_string(), 1);
                // Everything still queued on this connection is lost to us.
                let failed: u64 = std::iter::once(req)
                    .chain(rx.try_iter())
                    .flat_map(|r| r.batches)
                    .map(|b| b.count as u64)
                    .sum();
                stats.failed_msgs.fetch_add(failed, Relaxed);
                return;
            }
        };
        let now = now_ns();
        let mut hist = stats.produce_latency.lock().unwrap();
        for b in &req.batches {
            let slot = &slots[b.slot];
            let code = resp
                .responses
                .iter()
                .filter(|t| t.name.0.as_str() == slot.topic)
                .flat_map(|t| t.partition_responses.iter())
                .find(|p| p.index == slot.partition)
                .map(|p| p.error_code);
            match code {
                Some(0) => {
                    stats.acked_msgs.fetch_add(b.count as u64, Relaxed);
                    stats.acked_bytes.fetch_add(b.bytes, Relaxed);
                    if b.intended.len() == 1 {
                        let us = now.saturating_sub(b.intended[0]) / 1000;
                        hist.saturating_record_n(us.max(1), b.count as u64);
                    } else {
                        for &t in &b.intended {
                            hist.saturating_record((now.saturating_sub(t) / 1000).max(1));
                        }
                    }
                }
                Some(code) => {
                    stats.failed_msgs.fetch_add(b.count as u64, Relaxed);
                    stats.error(format!("produce: {}", error_name(code)), 1);
                }
                None => {
                    stats.failed_msgs.fetch_add(b.count as u64, Relaxed);
                    stats.error("produce: response lacks a partition", 1);
                }
            }
        }
    }
}

/// Writes key number `k` as zero-padded decimal filling `out`.
fn write_key(out: &mut [u8], mut k: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (k % 10) as u8;
        k /= 10;
    }
}

/// Kafka's default partitioner hash (murmur2, seed 0x9747b28c), so keyed records land on the
/// partitions a Java producer would choose.
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58897971
        );
        assert_eq!(murmur2(b"abc") as i32, 479470107);
    }

    #[test]
    fn keys_are_padded_decimal() {
        let mut k = [0u8; 6];
        write_key(&mut k, 42);
        assert_eq!(&k, b"000042");
    }
}
