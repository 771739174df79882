//! The Kafka client followers use to reach their leaders (`spate_shard::replication`'s
//! [`LeaderLink`]): one TCP connection per fetcher, opened on first use and again after any
//! failure, speaking Fetch v15 (the follower's id in `replica_state`),
//! OffsetForLeaderEpoch v4 and ListOffsets v7 with kafka-protocol's codecs. One request at a time, as a
//! fetcher sends them.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_lite::io::BufReader;
use futures_lite::AsyncWriteExt;
use futures_util::future::{FutureExt, LocalBoxFuture};
use glommio::net::TcpStream;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, ListOffsetsRequest, OffsetForLeaderEpochRequest, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::ResponseError;
use spate_shard::replication::{
    BrokerEndpoint, EpochEnd, EpochQuery, FetchedPartition, LeaderConnector, LeaderLink, LinkError,
    OffsetQuery, ReplicaFetch,
};
use uuid::Uuid;

use crate::frame::read_frame;

/// Fetch v15: the first with `replica_state`; topics by id.
const FETCH_VERSION: i16 = 15;
/// OffsetForLeaderEpoch v4: flexible, with `replica_id`.
const OFFSET_FOR_LEADER_EPOCH_VERSION: i16 = 4;
/// ListOffsets v7: flexible, with `current_leader_epoch` (what Kafka 3.x followers send).
const LIST_OFFSETS_VERSION: i16 = 7;
/// "Unknown broker epoch" in `replica_state` (Spate's leaders do not check it).
const NO_BROKER_EPOCH: i64 = -1;
/// The client id followers send: Kafka's fetchers name themselves like this.
const CLIENT_ID: &str = "spate-replica-fetcher";

/// Makes [`InterBrokerLink`]s.
pub struct InterBrokerConnector {
    /// The largest response accepted (`socket.request.max.bytes` is the natural bound: a
    /// leader never sends more than a follower asks for).
    pub max_response_bytes: usize,
    /// How long a call may take beyond the Fetch's own wait (Kafka's
    /// `replica.socket.timeout.ms`) before the connection is dropped.
    pub socket_timeout: Duration,
}

impl LeaderConnector for InterBrokerConnector {
    fn link(&self, leader: &BrokerEndpoint) -> Rc<dyn LeaderLink> {
        Rc::new(InterBrokerLink::new(
            leader.clone(),
            self.max_response_bytes,
            self.socket_timeout,
        ))
    }
}

/// A connection to one leader broker.
pub struct InterBrokerLink {
    leader: BrokerEndpoint,
    max_response_bytes: usize,
    socket_timeout: Duration,
    /// Taken by the call in progress; dropped (closed) when a call fails.
    connection: RefCell<Option<BufReader<TcpStream>>>,
    correlation_id: Cell<i32>,
}

impl InterBrokerLink {
    pub fn new(
        leader: BrokerEndpoint,
        max_response_bytes: usize,
        socket_timeout: Duration,
    ) -> InterBrokerLink {
        InterBrokerLink {
            leader,
            max_response_bytes,
            socket_timeout,
            connection: RefCell::new(None),
            correlation_id: Cell::new(0),
        }
    }

    fn error(&self, what: impl std::fmt::Display) -> LinkError {
        LinkError(format!(
            "broker {} at {}:{}: {what}",
            self.leader.node_id, self.leader.host, self.leader.port
        ))
    }

    /// Sends `request` and reads its response, within `wait` plus the socket timeout.
    async fn call<R: Request>(
        &self,
        request: &R,
        version: i16,
        wait: Duration,
    ) -> Result<R::Response, LinkError> {
        let timeout = wait + self.socket_timeout;
        let exchange = self.exchange(request, version);
        let timed_out = async {
            glommio::timer::sleep(timeout).await;
            Err(self.error(format!("no answer within {timeout:?}")))
        };
        futures_lite::future::or(exchange, timed_out).await
    }

    async fn exchange<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, LinkError> {
        let correlation_id = self.correlation_id.get().wrapping_add(1);
        self.correlation_id.set(correlation_id);
        let frame = encode(request, version, correlation_id).map_err(|e| self.error(e))?;
        let taken = self.connection.borrow_mut().take();
        let mut stream = match taken {
            Some(stream) => stream,
            None => {
                let address = format!("{}:{}", self.leader.host, self.leader.port);
                let stream = TcpStream::connect(address.as_str())
                    .await
                    .map_err(|e| self.error(format!("cannot connect: {e}")))?;
                // Requests are written whole; Nagle would only delay them.
                stream
                    .set_nodelay(true)
                    .map_err(|e| self.error(format!("cannot set TCP_NODELAY: {e}")))?;
                BufReader::new(stream)
            }
        };
        stream
            .get_mut()
            .write_all(&frame)
            .await
            .map_err(|e| self.error(format!("cannot send: {e}")))?;
        let body = read_frame(&mut stream, self.max_response_bytes)
            .await
            .map_err(|e| self.error(format!("cannot read the response: {e}")))?
            .ok_or_else(|| self.error("connection closed"))?;
        let response =
            decode::<R>(body.freeze(), version, correlation_id).map_err(|e| self.error(e))?;
        // Only a complete exchange leaves the connection reusable.
        *self.connection.borrow_mut() = Some(stream);
        Ok(response)
    }
}

impl LeaderLink for InterBrokerLink {
    fn fetch(
        &self,
        request: ReplicaFetch,
    ) -> LocalBoxFuture<'_, Result<Vec<FetchedPartition>, LinkError>> {
        async move {
            let names: HashMap<Uuid, String> = request
                .partitions
                .iter()
                .map(|p| (p.topic_id, p.topic.clone()))
                .collect();
            let wire = fetch_request(&request);
            let wait = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0));
            let response = self.call(&wire, FETCH_VERSION, wait).await?;
            if let Some(e) = ResponseError::try_from_code(response.error_code) {
                return Err(self.error(format!("Fetch refused: {e:?}")));
            }
            let mut out = Vec::new();
            for topic in response.responses {
                let Some(name) = names.get(&topic.topic_id) else {
                    continue; // not asked for
                };
                for p in topic.partitions {
                    out.push(FetchedPartition {
                        topic: name.clone(),
                        partition: p.partition_index,
                        error: ResponseError::try_from_code(p.error_code),
                        high_watermark: p.high_watermark,
                        log_start_offset: p.log_start_offset,
                        // The log patches nothing in a follower's append, but takes a
                        // BytesMut; the copy keeps the response frame free.
                        records: p
                            .records
                            .map(|r| BytesMut::from(&r[..]))
                            .unwrap_or_default(),
                    });
                }
            }
            Ok(out)
        }
        .boxed_local()
    }

    fn epoch_end_offsets(
        &self,
        replica_id: i32,
        queries: Vec<EpochQuery>,
    ) -> LocalBoxFuture<'_, Result<Vec<EpochEnd>, LinkError>> {
        async move {
            let wire = epoch_request(replica_id, &queries);
            let response = self
                .call(&wire, OFFSET_FOR_LEADER_EPOCH_VERSION, Duration::ZERO)
                .await?;
            let mut out = Vec::new();
            for topic in response.topics {
                for p in topic.partitions {
                    // Kafka's UNDEFINED_EPOCH (-1): the leader has no epoch that old.
                    let end = (p.leader_epoch >= 0 && p.end_offset >= 0)
                        .then_some((p.leader_epoch, p.end_offset));
                    out.push(EpochEnd {
                        topic: topic.topic.0.to_string(),
                        partition: p.partition,
                        error: ResponseError::try_from_code(p.error_code),
                        end,
                    });
                }
            }
            Ok(out)
        }
        .boxed_local()
    }

    fn list_offset(
        &self,
        replica_id: i32,
        query: OffsetQuery,
    ) -> LocalBoxFuture<'_, Result<Result<i64, ResponseError>, LinkError>> {
        async move {
            let wire = list_offsets_request(replica_id, &query);
            let response = self
                .call(&wire, LIST_OFFSETS_VERSION, Duration::ZERO)
                .await?;
            let answer = response
                .topics
                .into_iter()
                .filter(|t| t.name.0.as_str() == query.topic)
                .flat_map(|t| t.partitions)
                .find(|p| p.partition_index == query.partition)
                .ok_or_else(|| self.error("ListOffsets answered without the partition"))?;
            Ok(match ResponseError::try_from_code(answer.error_code) {
                Some(e) => Err(e),
                None => Ok(answer.offset),
            })
        }
        .boxed_local()
    }
}

fn list_offsets_request(replica_id: i32, query: &OffsetQuery) -> ListOffsetsRequest {
    let partition = ListOffsetsPartition::default()
        .with_partition_index(query.partition)
        .with_current_leader_epoch(query.current_leader_epoch)
        .with_timestamp(query.timestamp);
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(replica_id))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(query.topic.clone())))
            .with_partitions(vec![partition])])
}

fn fetch_request(request: &ReplicaFetch) -> FetchRequest {
    // One FetchTopic per topic id, in request order.
    let mut topics: Vec<FetchTopic> = Vec::new();
    for p in &request.partitions {
        let partition = FetchPartition::default()
            .with_partition(p.partition)
            .with_current_leader_epoch(p.current_leader_epoch)
            .with_fetch_offset(p.fetch_offset)
            .with_log_start_offset(p.log_start_offset)
            .with_partition_max_bytes(p.partition_max_bytes);
        match topics.iter_mut().find(|t| t.topic_id == p.topic_id) {
            Some(t) => t.partitions.push(partition),
            None => topics.push(
                FetchTopic::default()
                    .with_topic_id(p.topic_id)
                    .with_partitions(vec![partition]),
            ),
        }
    }
    FetchRequest::default()
        .with_replica_state(
            ReplicaState::default()
                .with_replica_id(BrokerId(request.replica_id))
                .with_replica_epoch(NO_BROKER_EPOCH),
        )
        .with_max_wait_ms(request.max_wait_ms)
        .with_min_bytes(request.min_bytes)
        .with_max_bytes(request.max_bytes)
        .with_topics(topics)
}

fn epoch_request(replica_id: i32, queries: &[EpochQuery]) -> OffsetForLeaderEpochRequest {
    let mut topics: Vec<OffsetForLeaderTopic> = Vec::new();
    for q in queries {
        let partition = OffsetForLeaderPartition::default()
            .with_partition(q.partition)
            .with_current_leader_epoch(q.current_leader_epoch)
            .with_leader_epoch(q.leader_epoch);
        match topics.iter_mut().find(|t| t.topic.0.as_str() == q.topic) {
            Some(t) => t.partitions.push(partition),
            None => topics.push(
                OffsetForLeaderTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(q.topic.clone())))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(replica_id))
        .with_topics(topics)
}

/// A whole request frame: size, header, body.
fn encode<R: Request>(request: &R, version: i16, correlation_id: i32) -> Result<Bytes, String> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, R::header_version(version))
        .map_err(|e| format!("cannot encode the request header: {e}"))?;
    request
        .encode(&mut body, version)
        .map_err(|e| format!("cannot encode {:?}: {e}", api_key::<R>()))?;
    let len = i32::try_from(body.len()).map_err(|_| "request too large".to_string())?;
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(len);
    frame.put(body);
    Ok(frame.freeze())
}

fn decode<R: Request>(
    mut frame: Bytes,
    version: i16,
    correlation_id: i32,
) -> Result<R::Response, String> {
    let header_version = R::Response::header_version(version);
    let header = ResponseHeader::decode(&mut frame, header_version)
        .map_err(|e| format!("cannot decode the response header: {e}"))?;
    if header.correlation_id != correlation_id {
        return Err(format!(
            "response to request {} arrived for request {correlation_id}",
            header.correlation_id
        ));
    }
    R::Response::decode(&mut frame, version)
        .map_err(|e| format!("cannot decode the {:?} response: {e}", api_key::<R>()))
}

fn api_key<R: Request>() -> ApiKey {
    ApiKey::try_from(R::KEY).unwrap_or(ApiKey::ApiVersions)
}
