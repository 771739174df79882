//! A minimal blocking Kafka client: framing, version negotiation (ApiVersions), and the
//! admin calls a run needs (Metadata, CreateTopics, ListOffsets). Produce and Fetch are
//! driven by `producer` and `consumer`, which pipeline on the same `Conn`.

use crate::error::{io_err, protocol};
use crate::workload::TopicSpec;
use crate::Result;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    create_topics_request::CreatableTopic, list_offsets_request::ListOffsetsPartition,
    list_offsets_request::ListOffsetsTopic, metadata_request::MetadataRequestTopic, ApiKey,
    ApiVersionsRequest, ApiVersionsResponse, BrokerId, CreateTopicsRequest, ListOffsetsRequest,
    MetadataRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest response frame we accept; a bigger length prefix means a broken stream.
pub const MAX_FRAME: usize = 256 * 1024 * 1024;
const CLIENT_ID: &str = "spate-bench";
/// Longest a socket read or write may block (produce acks use `request_timeout` instead).
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Versions this client speaks, per API key. Capped below the versions that address topics
/// by id only (Produce 13, Fetch 13), since the harness names topics.
pub fn client_range(key: i16) -> Option<(i16, i16)> {
    Some(match ApiKey::try_from(key).ok()? {
        ApiKey::Produce => (3, 12),
        ApiKey::Fetch => (4, 12),
        ApiKey::ListOffsets => (1, 7),
        ApiKey::Metadata => (1, 12),
        ApiKey::CreateTopics => (2, 7),
        ApiKey::ApiVersions => (0, 3),
        _ => return None,
    })
}

/// The version of each API both sides speak: the highest the broker and we share.
#[derive(Debug, Clone, Default)]
pub struct Versions(HashMap<i16, i16>);

impl Versions {
    fn from_response(resp: &ApiVersionsResponse) -> Versions {
        let mut map = HashMap::new();
        for api in &resp.api_keys {
            if let Some((lo, hi)) = client_range(api.api_key) {
                let v = hi.min(api.max_version);
                if v >= lo.max(api.min_version) {
                    map.insert(api.api_key, v);
                }
            }
        }
        Versions(map)
    }

    pub fn get(&self, key: ApiKey) -> Result<i16> {
        self.0.get(&(key as i16)).copied().ok_or_else(|| {
            protocol(format!(
                "the broker supports no version of {key:?} that spate-bench speaks {:?}",
                client_range(key as i16)
            ))
        })
    }
}

/// Reads one length-prefixed frame (the length is not included).
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Bytes> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = i32::from_be_bytes(len);
    if len < 0 || len as usize > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame length {len} is out of range"),
        ));
    }
    let mut buf = BytesMut::zeroed(len as usize);
    r.read_exact(&mut buf)?;
    Ok(buf.freeze())
}

/// Encodes `[length][header][body]` for request `req` at `version`.
pub fn encode_request<R: Request>(req: &R, version: i16, correlation_id: i32) -> Result<BytesMut> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let hv = R::header_version(version);
    let size =
        header.compute_size(hv).map_err(protocol)? + req.compute_size(version).map_err(protocol)?;
    let mut buf = BytesMut::with_capacity(size + 4);
    buf.put_i32(size as i32);
    header.encode(&mut buf, hv).map_err(protocol)?;
    req.encode(&mut buf, version).map_err(protocol)?;
    Ok(buf)
}

/// Decodes a response frame, checking its correlation id.
pub fn decode_response<R: Request>(
    mut frame: Bytes,
    version: i16,
    correlation_id: i32,
) -> Result<R::Response> {
    let hv = <R::Response as HeaderVersion>::header_version(version);
    let header = ResponseHeader::decode(&mut frame, hv).map_err(protocol)?;
    if header.correlation_id != correlation_id {
        return Err(protocol(format!(
            "response correlation id {} where {correlation_id} was expected",
            header.correlation_id
        )));
    }
    let resp = R::Response::decode(&mut frame, version).map_err(|e| {
        protocol(format!(
            "cannot decode {:?} v{version} response: {e}",
            ApiKey::try_from(R::KEY)
        ))
    })?;
    if frame.has_remaining() {
        return Err(protocol(format!(
            "{} trailing bytes after a response",
            frame.remaining()
        )));
    }
    Ok(resp)
}

/// A connection to one broker.
pub struct Conn {
    pub stream: TcpStream,
    pub addr: String,
    pub versions: Arc<Versions>,
    next_correlation: i32,
}

impl Conn {
    pub fn connect(addr: &str) -> Result<Conn> {
        let stream =
            TcpStream::connect(addr).map_err(io_err(format!("cannot connect to {addr}")))?;
        stream
            .set_nodelay(true)
            .map_err(io_err("set TCP_NODELAY"))?;
        // A broker that stops answering fails the run instead of hanging it.
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .map_err(io_err("set read timeout"))?;
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .map_err(io_err("set write timeout"))?;
        let mut conn = Conn {
            stream,
            addr: addr.to_string(),
            versions: Arc::new(Versions::default()),
            next_correlation: 0,
        };
        // v0 is answered by every broker, whatever versions it supports.
        let resp: ApiVersionsResponse = conn.call_at(&ApiVersionsRequest::default(), 0)?;
        if resp.error_code != 0 {
            return Err(protocol(format!(
                "ApiVersions failed: {}",
                error_name(resp.error_code)
            )));
        }
        conn.versions = Arc::new(Versions::from_response(&resp));
        Ok(conn)
    }

    pub fn next_correlation(&mut self) -> i32 {
        self.next_correlation = self.next_correlation.wrapping_add(1);
        self.next_correlation
    }

    /// Sends one request and waits for its response.
    pub fn call<R: Request>(&mut self, req: &R) -> Result<R::Response> {
        let version = self
            .versions
            .get(ApiKey::try_from(R::KEY).map_err(|_| protocol("unknown api"))?)?;
        self.call_at(req, version)
    }

    fn call_at<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        let corr = self.next_correlation();
        let frame = encode_request(req, version, corr)?;
        let ctx = format!("request to {}", self.addr);
        self.stream.write_all(&frame).map_err(io_err(ctx.clone()))?;
        let resp = read_frame(&mut self.stream).map_err(io_err(ctx))?;
        decode_response::<R>(resp, version, corr)
    }
}

/// Kafka's name for an error code, for messages.
pub fn error_name(code: i16) -> String {
    match kafka_protocol::ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?} ({code})"),
        None => format!("error code {code}"),
    }
}

/// One (topic, partition) of the run and the broker that leads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub topic: String,
    pub partition: i32,
    pub leader: String,
}

/// Creates the topics (an existing topic is fine) and waits until every partition has a
/// leader. Returns the slots in the workload's order.
pub fn prepare_topics(
    bootstrap: &str,
    topics: &[TopicSpec],
    timeout: Duration,
) -> Result<Vec<Slot>> {
    let mut conn = Conn::connect(bootstrap)?;
    create_topics(&mut conn, topics)?;
    let deadline = Instant::now() + timeout;
    loop {
        match leaders(&mut conn, bootstrap, topics) {
            Ok(slots) => return Ok(slots),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn create_topics(conn: &mut Conn, topics: &[TopicSpec]) -> Result<()> {
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(
            topics
                .iter()
                .map(|t| {
                    CreatableTopic::default()
                        .with_name(topic_name(&t.name))
                        .with_num_partitions(t.partitions as i32)
                        .with_replication_factor(t.replication_factor as i16)
                })
                .collect(),
        );
    let resp = conn.call(&req)?;
    for t in resp.topics {
        // 36 = TOPIC_ALREADY_EXISTS: reruns reuse the topic; `leaders` checks its size.
        if t.error_code != 0 && t.error_code != 36 {
            let msg = t.error_message.map(|m| m.to_string()).unwrap_or_default();
            return Err(protocol(format!(
                "cannot create topic {}: {} {msg}",
                t.name.0.as_str(),
                error_name(t.error_code)
            )));
        }
    }
    Ok(())
}

fn leaders(conn: &mut Conn, bootstrap: &str, topics: &[TopicSpec]) -> Result<Vec<Slot>> {
    let req = MetadataRequest::default().with_topics(Some(
        topics
            .iter()
            .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(&t.name))))
            .collect(),
    ));
    let resp = conn.call(&req)?;
    let mut brokers: HashMap<BrokerId, String> = resp
        .brokers
        .iter()
        .map(|b| (b.node_id, format!("{}:{}", b.host.as_str(), b.port)))
        .collect();
    if brokers.len() == 1 {
        // A single broker is the one we reached: its advertised name may not resolve here.
        for addr in brokers.values_mut() {
            *addr = bootstrap.to_string();
        }
    }
    let mut slots = Vec::new();
    for spec in topics {
        let t = resp
            .topics
            .iter()
            .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(spec.name.as_str()))
            .ok_or_else(|| protocol(format!("metadata has no topic {}", spec.name)))?;
        if t.error_code != 0 {
            return Err(protocol(format!(
                "topic {}: {}",
                spec.name,
                error_name(t.error_code)
            )));
        }
        if t.partitions.len() != spec.partitions as usize {
            return Err(crate::Error::Workload(format!(
                "topic {} exists with {} partitions, the workload asks for {}: delete it or rename the topic",
                spec.name,
                t.partitions.len(),
                spec.partitions
            )));
        }
        for p in 0..spec.partitions as i32 {
            let part = t
                .partitions
                .iter()
                .find(|x| x.partition_index == p)
                .ok_or_else(|| protocol(format!("metadata lacks {}-{p}", spec.name)))?;
            let leader = brokers
                .get(&part.leader_id)
                .ok_or_else(|| protocol(format!("{}-{p} has no live leader yet", spec.name)))?;
            slots.push(Slot {
                topic: spec.name.clone(),
                partition: p,
                leader: leader.clone(),
            });
        }
    }
    Ok(slots)
}

/// Offsets per slot: `timestamp` -2 is the log start, -1 the log end.
pub fn list_offsets(slots: &[Slot], timestamp: i64) -> Result<Vec<i64>> {
    let mut out = vec![0i64; slots.len()];
    let mut by_leader: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, s) in slots.iter().enumerate() {
        by_leader.entry(&s.leader).or_default().push(i);
    }
    for (leader, idxs) in by_leader {
        let mut conn = Conn::connect(leader)?;
        let mut topics: Vec<ListOffsetsTopic> = Vec::new();
        for &i in &idxs {
            let s = &slots[i];
            let part = ListOffsetsPartition::default()
                .with_partition_index(s.partition)
                .with_timestamp(timestamp);
            match topics.iter_mut().find(|t| t.name.0.as_str() == s.topic) {
                Some(t) => t.partitions.push(part),
                None => topics.push(
                    ListOffsetsTopic::default()
                        .with_name(topic_name(&s.topic))
                        .with_partitions(vec![part]),
                ),
            }
        }
        let resp = conn.call(
            &ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(topics),
        )?;
        for t in resp.topics {
            for p in t.partitions {
                let i = idxs
                    .iter()
                    .copied()
                    .find(|&i| {
                        slots[i].topic == t.name.0.as_str()
                            && slots[i].partition == p.partition_index
                    })
                    .ok_or_else(|| {
                        protocol("ListOffsets answered a partition we did not ask for")
                    })?;
                if p.error_code != 0 {
                    return Err(protocol(format!(
                        "ListOffsets {}-{}: {}",
                        slots[i].topic,
                        slots[i].partition,
                        error_name(p.error_code)
                    )));
                }
                out[i] = p.offset;
            }
        }
    }
    Ok(out)
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}
