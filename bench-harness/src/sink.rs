//! A do-nothing broker: accepts Kafka connections, answers ApiVersions, Metadata,
//! CreateTopics, ListOffsets, Fetch and Produce with success, checks each produced batch's
//! framing and CRC, counts the records, and discards them. Running the generator against it
//! measures the generator alone.
//!
//! With `retain` it keeps the batches in memory and serves them to Fetch (a toy broker, so
//! consumers, end-to-end and catch-up runs can be tested without a real one), and `fault`
//! makes it lose or duplicate one batch, to show the checker catches it.

use crate::client::{client_range, read_frame};
use crate::error::{io_err, protocol};
use crate::Result;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable, StrBytes};
use spate_core::record_batch::{set_base_offset, split, validate};
use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Longest a Fetch waits before its empty answer, whatever the client asks.
const MAX_FETCH_WAIT: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
pub struct SinkCounters {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub requests: AtomicU64,
    /// Batches refused because their framing or CRC was wrong.
    pub corrupt_batches: AtomicU64,
}

/// A deliberate misbehaviour, for testing the harness's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Acknowledge the n-th produced batch (1-based, over all partitions) but never store it.
    LoseBatch(u64),
    /// Store the n-th produced batch twice.
    DuplicateBatch(u64),
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SinkOptions {
    /// Keep produced batches in memory and serve them to Fetch.
    pub retain: bool,
    pub fault: Option<Fault>,
}

/// One partition as the sink keeps it.
#[derive(Default)]
struct PartitionLog {
    end: i64,
    /// (base offset, last offset, batch) in offset order; empty unless retaining.
    batches: Vec<(i64, i64, Bytes)>,
}

#[derive(Default)]
struct SinkState {
    options: SinkOptions,
    counters: SinkCounters,
    batches_seen: AtomicU64,
    /// Partition count per created topic.
    topics: Mutex<HashMap<String, i32>>,
    /// Per (topic, partition): offsets, so produce responses carry real base offsets, and
    /// the retained batches.
    logs: Mutex<HashMap<(String, i32), PartitionLog>>,
    /// Signalled on every append, for fetches waiting for data.
    appended: Condvar,
}

pub struct Sink {
    pub addr: SocketAddr,
    state: Arc<SinkState>,
}

impl Sink {
    pub fn counters(&self) -> &SinkCounters {
        &self.state.counters
    }
}

/// Binds `listen` and serves in background threads for the rest of the process.
pub fn start(listen: &str) -> Result<Sink> {
    start_with(listen, SinkOptions::default())
}

pub fn start_with(listen: &str, options: SinkOptions) -> Result<Sink> {
    let listener =
        TcpListener::bind(listen).map_err(io_err(format!("sink cannot listen on {listen}")))?;
    let addr = listener.local_addr().map_err(io_err("sink address"))?;
    let state = Arc::new(SinkState {
        options,
        ..SinkState::default()
    });
    let st = state.clone();
    std::thread::Builder::new()
        .name("sink-accept".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let st = st.clone();
                let _ = std::thread::Builder::new()
                    .name("sink-conn".into())
                    .spawn(move || {
                        // A client that sends garbage just loses its connection.
                        let _ = serve(stream, addr, &st);
                    });
            }
        })
        .map_err(io_err("spawn sink thread"))?;
    Ok(Sink { addr, state })
}

fn serve(mut stream: TcpStream, addr: SocketAddr, st: &SinkState) -> Result<()> {
    stream
        .set_nodelay(true)
        .map_err(io_err("set TCP_NODELAY"))?;
    let mut out = BytesMut::new();
    loop {
        let frame = match read_frame(&mut stream) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(io_err("sink read")(e)),
        };
        st.counters.requests.fetch_add(1, Relaxed);
        out.clear();
        if handle(frame, addr, st, &mut out)? {
            stream.write_all(&out).map_err(io_err("sink write"))?;
        }
    }
}

/// Handles one request; returns whether `out` holds a response to send.
fn handle(mut frame: Bytes, addr: SocketAddr, st: &SinkState, out: &mut BytesMut) -> Result<bool> {
    if frame.len() < 4 {
        return Err(protocol("request shorter than its header"));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api = ApiKey::try_from(key).map_err(|_| protocol(format!("unknown api key {key}")))?;
    if api == ApiKey::ApiVersions && version > 3 {
        // Kafka answers an ApiVersions it cannot parse with a v0 UNSUPPORTED_VERSION.
        let corr = i32::from_be_bytes(
            frame
                .get(4..8)
                .ok_or_else(|| protocol("short header"))?
                .try_into()
                .unwrap(),
        );
        let resp = api_versions().with_error_code(35);
        respond(out, corr, 0, 0, &resp)?;
        return Ok(true);
    }
    let header = decode_request_header_from_buffer(&mut frame).map_err(protocol)?;
    let corr = header.correlation_id;
    let hv = api.response_header_version(version);
    match api {
        ApiKey::ApiVersions => respond(out, corr, 0, version, &api_versions())?,
        ApiKey::Metadata => {
            let req = MetadataRequest::decode(&mut frame, version).map_err(protocol)?;
            let known = st.topics.lock().unwrap().clone();
            let names: Vec<String> = match req.topics {
                Some(ts) => ts
                    .into_iter()
                    .filter_map(|t| t.name.map(|n| n.0.to_string()))
                    .collect(),
                None => known.keys().cloned().collect(),
            };
            let topics = names
                .into_iter()
                .map(|name| {
                    let t = MetadataResponseTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(name.clone()))));
                    match known.get(&name) {
                        Some(&n) => t.with_partitions(
                            (0..n)
                                .map(|p| {
                                    MetadataResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_leader_id(BrokerId(0))
                                        .with_replica_nodes(vec![BrokerId(0)])
                                        .with_isr_nodes(vec![BrokerId(0)])
                                })
                                .collect(),
                        ),
                        None => t.with_error_code(3), // UNKNOWN_TOPIC_OR_PARTITION
                    }
                })
                .collect();
            let resp = MetadataResponse::default()
                .with_brokers(vec![MetadataResponseBroker::default()
                    .with_node_id(BrokerId(0))
                    .with_host(StrBytes::from_string(addr.ip().to_string()))
                    .with_port(addr.port() as i32)])
                .with_controller_id(BrokerId(0))
                .with_topics(topics);
            respond(out, corr, hv, version, &resp)?
        }
        ApiKey::CreateTopics => {
            let req = CreateTopicsRequest::decode(&mut frame, version).map_err(protocol)?;
            let mut topics = st.topics.lock().unwrap();
            let results = req
                .topics
                .into_iter()
                .map(|t| {
                    let name = t.name.0.to_string();
                    let exists = topics.contains_key(&name);
                    topics.entry(name).or_insert(t.num_partitions.max(1));
                    CreatableTopicResult::default()
                        .with_name(t.name)
                        .with_error_code(if exists { 36 } else { 0 })
                        .with_num_partitions(t.num_partitions)
                        .with_replication_factor(t.replication_factor)
                })
                .collect();
            respond(
                out,
                corr,
                hv,
                version,
                &CreateTopicsResponse::default().with_topics(results),
            )?
        }
        ApiKey::Produce => {
            let req = ProduceRequest::decode(&mut frame, version).map_err(protocol)?;
            let mut responses = Vec::new();
            for t in req.topic_data {
                let mut parts = Vec::new();
                for p in t.partition_data {
                    let records = p.records.unwrap_or_default();
                    let (count, ok) = count_batches(&records);
                    let c = &st.counters;
                    let mut code = 0;
                    let mut base = -1;
                    if ok {
                        c.records.fetch_add(count, Relaxed);
                        c.bytes.fetch_add(records.len() as u64, Relaxed);
                        base = append(st, t.name.0.as_str(), p.index, &records);
                    } else {
                        c.corrupt_batches.fetch_add(1, Relaxed);
                        code = 2; // CORRUPT_MESSAGE
                    }
                    parts.push(
                        PartitionProduceResponse::default()
                            .with_index(p.index)
                            .with_error_code(code)
                            .with_base_offset(base),
                    );
                }
                responses.push(
                    TopicProduceResponse::default()
                        .with_name(t.name)
                        .with_partition_responses(parts),
                );
            }
            if req.acks == 0 {
                return Ok(false);
            }
            respond(
                out,
                corr,
                hv,
                version,
                &ProduceResponse::default().with_responses(responses),
            )?
        }
        ApiKey::ListOffsets => {
            let req = ListOffsetsRequest::decode(&mut frame, version).map_err(protocol)?;
            let logs = st.logs.lock().unwrap();
            let topics = req
                .topics
                .into_iter()
                .map(|t| {
                    let parts = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let end = logs
                                .get(&(t.name.0.to_string(), p.partition_index))
                                .map_or(0, |l| l.end);
                            ListOffsetsPartitionResponse::default()
                                .with_partition_index(p.partition_index)
                                .with_timestamp(-1)
                                .with_offset(if p.timestamp == -2 { 0 } else { end })
                        })
                        .collect();
                    ListOffsetsTopicResponse::default()
                        .with_name(t.name)
                        .with_partitions(parts)
                })
                .collect();
            respond(
                out,
                corr,
                hv,
                version,
                &ListOffsetsResponse::default().with_topics(topics),
            )?
        }
        ApiKey::Fetch => {
            let req = FetchRequest::decode(&mut frame, version).map_err(protocol)?;
            let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_FETCH_WAIT);
            let deadline = std::time::Instant::now() + wait;
            let mut logs = st.logs.lock().unwrap();
            // Long poll: answer as soon as any asked partition has data, or at the deadline.
            let topics = loop {
                let (topics, any) = fetch(&logs, &req);
                let now = std::time::Instant::now();
                if any || now >= deadline {
                    break topics;
                }
                logs = st.appended.wait_timeout(logs, deadline - now).unwrap().0;
            };
            drop(logs);
            respond(
                out,
                corr,
                hv,
                version,
                &FetchResponse::default().with_responses(topics),
            )?
        }
        other => return Err(protocol(format!("the sink does not serve {other:?}"))),
    }
    Ok(true)
}

/// Counts records in a produce request's records field; `ok` is false if any batch is
/// malformed or fails its CRC.
fn count_batches(records: &[u8]) -> (u64, bool) {
    let mut count = 0u64;
    for item in split(records) {
        match item.and_then(|(_, _, batch)| validate(batch)) {
            Ok(h) => count += h.record_count as u64,
            Err(_) => return (0, false),
        }
    }
    (count, true)
}

/// Assigns offsets to validated batches (storing them when retaining); returns the base.
fn append(st: &SinkState, topic: &str, partition: i32, records: &Bytes) -> i64 {
    let mut logs = st.logs.lock().unwrap();
    let log = logs.entry((topic.to_string(), partition)).or_default();
    let base = log.end;
    for (_, header, batch) in split(records).flatten() {
        let n = st.batches_seen.fetch_add(1, Relaxed) + 1;
        let copies = match st.options.fault {
            Some(Fault::LoseBatch(k)) if k == n => 0,
            Some(Fault::DuplicateBatch(k)) if k == n => 2,
            _ => 1,
        };
        for _ in 0..copies {
            if st.options.retain {
                let mut stored = batch.to_vec();
                set_base_offset(&mut stored, log.end);
                log.batches.push((
                    log.end,
                    log.end + header.last_offset_delta as i64,
                    Bytes::from(stored),
                ));
            }
            log.end += header.offset_count();
        }
    }
    st.appended.notify_all();
    base
}

/// Builds the fetch answer from retained batches; `any` says whether it holds records.
fn fetch(
    logs: &HashMap<(String, i32), PartitionLog>,
    req: &FetchRequest,
) -> (Vec<FetchableTopicResponse>, bool) {
    let mut any = false;
    let mut budget = req.max_bytes.max(1) as usize;
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    let log = logs.get(&(t.topic.0.to_string(), p.partition));
                    let mut data = BytesMut::new();
                    if let Some(log) = log {
                        let first = log.batches.partition_point(|b| b.1 < p.fetch_offset);
                        let limit = (p.partition_max_bytes.max(1) as usize).min(budget);
                        for (_, _, b) in &log.batches[first..] {
                            // Like Kafka, the first batch goes out even when over the limit.
                            if !data.is_empty() && data.len() + b.len() > limit {
                                break;
                            }
                            data.put_slice(b);
                        }
                    }
                    budget = budget.saturating_sub(data.len());
                    any |= !data.is_empty();
                    PartitionData::default()
                        .with_partition_index(p.partition)
                        .with_high_watermark(log.map_or(0, |l| l.end))
                        .with_records(Some(data.freeze()))
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_partitions(parts)
        })
        .collect();
    (topics, any)
}

fn api_versions() -> ApiVersionsResponse {
    let keys = [
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::Metadata,
        ApiKey::CreateTopics,
        ApiKey::ApiVersions,
    ];
    ApiVersionsResponse::default().with_api_keys(
        keys.iter()
            .map(|&k| {
                let (lo, hi) =
                    client_range(k as i16).expect("the client speaks every api the sink serves");
                ApiVersion::default()
                    .with_api_key(k as i16)
                    .with_min_version(lo)
                    .with_max_version(hi)
            })
            .collect(),
    )
}

fn respond<M: Encodable>(
    out: &mut BytesMut,
    corr: i32,
    header_version: i16,
    version: i16,
    body: &M,
) -> Result<()> {
    let header = ResponseHeader::default().with_correlation_id(corr);
    let size = header.compute_size(header_version).map_err(protocol)?
        + body.compute_size(version).map_err(protocol)?;
    out.put_i32(size as i32);
    header.encode(out, header_version).map_err(protocol)?;
    body.encode(out, version).map_err(protocol)?;
    Ok(())
}
