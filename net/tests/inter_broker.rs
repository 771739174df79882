//! The follower's Kafka client (`spate_net::inter_broker`) against a real broker on a real
//! socket: a broker (node 1) leads a partition whose other replica is node 2; this test
//! plays node 2 with `InterBrokerLink` and checks what a follower sees: records up to the
//! log end while consumers see only up to the high watermark, the high watermark moving
//! when the follower's fetch offset does, acks=all answered once the follower has the batch,
//! OffsetForLeaderEpoch, and leader-epoch fencing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    FetchRequest, ProduceRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::ResponseError;
use spate_core::config::BrokerConfig;
use spate_core::record_batch::{build_batch, split};
use spate_core::topic_config::TopicConfig;
use spate_net::inter_broker::InterBrokerLink;
use spate_shard::controller::image::PartitionAssignment;
use spate_shard::controller::node::ClusterNode;
use spate_shard::controller::settings::{BrokerSettings, ClusterSettings, ControllerSettings};
use spate_shard::replication::{
    BrokerEndpoint, EpochQuery, FetchPartition as ReplicaPartition, LeaderLink, OffsetQuery,
    ReplicaFetch, EARLIEST, LATEST,
};
use spate_shard::{NewReplicas, NewTopic};
use uuid::Uuid;

const TOPIC: &str = "replicated";
const LEADER: i32 = 1;
const FOLLOWER: i32 = 2;
/// The `replica_id` a consumer sends.
const CONSUMER: i32 = -1;
const EPOCH: i32 = 3;
const PATIENCE: Duration = Duration::from_secs(30);

/// The broker (its own single-voter controller), running on its own thread until dropped.
struct Broker {
    port: u16,
    topic_id: Uuid,
    shutdown: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
    node: Option<ClusterNode>,
    _data: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap().unwrap();
        }
        if let Some(node) = self.node.take() {
            node.shutdown();
        }
    }
}

fn start_broker() -> Broker {
    let data = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = BrokerConfig {
        node_id: LEADER,
        listen: format!("127.0.0.1:{port}"),
        log_dir: data.path().to_path_buf(),
        shards: 1,
        io_memory_bytes: 512 * 1024,
        ..BrokerConfig::default()
    };
    let settings = ClusterSettings {
        node_id: LEADER,
        voters: Vec::new(),
        controller: Some(ControllerSettings::new(data.path().join("spate-metadata"))),
        broker: Some(BrokerSettings::new("127.0.0.1".into(), port)),
        max_frame_bytes: config.socket_request_max_bytes,
    };
    let node = ClusterNode::start(settings).unwrap();
    let link = node.broker().unwrap().clone();
    let shutdown = Arc::new(AtomicBool::new(false));
    let (ids, id) = mpsc::channel();
    let stop = shutdown.clone();
    let thread = std::thread::spawn(move || {
        spate_shard::executor::run(Arc::new(config), link, move |shard| {
            let (stop, ids) = (stop.clone(), ids.clone());
            async move {
                let topic = NewTopic {
                    name: TOPIC.into(),
                    partitions: 1,
                    replicas: NewReplicas::Factor(1),
                    config: TopicConfig::default(),
                };
                let info = shard.create_topics(vec![topic], false).await.remove(0);
                let info = info.map_err(|e| e.message)?;
                // Node 2 is a replica and in the ISR: nothing commits until it fetches.
                let assignment = PartitionAssignment {
                    replicas: vec![LEADER, FOLLOWER],
                    isr: vec![LEADER, FOLLOWER],
                    leader: LEADER,
                    leader_epoch: EPOCH,
                    partition_epoch: 1,
                };
                assert!(shard.assign_partition(TOPIC, 0, &assignment, None));
                ids.send(info.id).unwrap();
                spate_net::serve(shard, stop).await
            }
        })
    });
    let topic_id = id.recv_timeout(PATIENCE).expect("the broker starts");
    // The topic exists before the listener does; the follower's link does not retry a
    // refused connection, so wait here (Client::connect retries) until the broker listens.
    drop(Client::connect(port));
    Broker {
        port,
        topic_id,
        shutdown,
        thread: Some(thread),
        node: Some(node),
        _data: data,
    }
}

/// A blocking Kafka client: one request at a time.
struct Client {
    stream: TcpStream,
    correlation_id: i32,
}

impl Client {
    fn connect(port: u16) -> Client {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(PATIENCE)).unwrap();
                    return Client {
                        stream,
                        correlation_id: 0,
                    };
                }
                Err(e) if Instant::now() > deadline => panic!("cannot connect: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn send<R: Request>(&mut self, request: &R, version: i16) -> R::Response {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id);
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .unwrap();
        request.encode(&mut body, version).unwrap();
        let mut frame = BytesMut::new();
        frame.put_i32(body.len() as i32);
        frame.put(body);
        self.stream.write_all(&frame).unwrap();
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).unwrap();
        let mut response = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut response).unwrap();
        let mut response = Bytes::from(response);
        let header =
            ResponseHeader::decode(&mut response, R::Response::header_version(version)).unwrap();
        assert_eq!(header.correlation_id, self.correlation_id);
        R::Response::decode(&mut response, version).unwrap()
    }

    /// Produces one batch; the partition's error code and base offset.
    fn produce(&mut self, values: &[&str], acks: i16) -> (i16, i64) {
        let request = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(PATIENCE.as_millis() as i32)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(Bytes::from(build_batch(1, values))))])]);
        let response = self.send(&request, 9);
        let p = &response.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }

    /// A consumer's fetch from `offset`: records found and the high watermark.
    fn consume(&mut self, offset: i64) -> (usize, i64) {
        let request = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partitions(vec![FetchPartition::default()
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])]);
        let response = self.send(&request, 12);
        let p = &response.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        (
            record_count(p.records.as_deref().unwrap_or_default()),
            p.high_watermark,
        )
    }
}

fn record_count(records: &[u8]) -> usize {
    split(records)
        .map(|b| {
            let (_, header, _) = b.unwrap();
            (header.last_offset() - header.base_offset + 1) as usize
        })
        .sum()
}

/// A Fetch as node 2 sends it. `wait`: whether to long-poll for data (up to PATIENCE).
fn replica_fetch(broker: &Broker, offset: i64, leader_epoch: i32, wait: bool) -> ReplicaFetch {
    ReplicaFetch {
        replica_id: FOLLOWER,
        max_wait_ms: if wait { PATIENCE.as_millis() as i32 } else { 0 },
        min_bytes: 1,
        max_bytes: 1 << 20,
        partitions: vec![ReplicaPartition {
            topic: TOPIC.into(),
            topic_id: broker.topic_id,
            partition: 0,
            fetch_offset: offset,
            current_leader_epoch: leader_epoch,
            log_start_offset: 0,
            partition_max_bytes: 1 << 20,
        }],
    }
}

fn as_follower<T: 'static>(test: impl std::future::Future<Output = T> + 'static) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 * 1024)
        .make()
        .unwrap()
        .run(test)
}

fn endpoint(broker: &Broker) -> BrokerEndpoint {
    BrokerEndpoint {
        node_id: LEADER,
        host: "127.0.0.1".into(),
        port: broker.port,
    }
}

#[test]
fn a_follower_fetches_to_the_log_end_and_moves_the_high_watermark() {
    let broker = start_broker();
    let mut client = Client::connect(broker.port);
    assert_eq!(client.produce(&["a", "b", "c"], 1), (0, 0));
    assert_eq!(
        client.consume(0),
        (0, 0),
        "nothing committed: node 2 lacks it"
    );
    let (first, second, stale, epochs) = as_follower({
        let endpoint = endpoint(&broker);
        let r0 = replica_fetch(&broker, 0, EPOCH, false);
        let r3 = replica_fetch(&broker, 3, EPOCH, false);
        let stale = replica_fetch(&broker, 3, EPOCH - 1, false);
        async move {
            let link = Rc::new(InterBrokerLink::new(endpoint, 100 << 20, PATIENCE));
            let list = |timestamp, current_leader_epoch| OffsetQuery {
                topic: TOPIC.into(),
                partition: 0,
                current_leader_epoch,
                timestamp,
            };
            // Before node 2 fetched: the log end is 3, the high watermark 0.
            let latest = [
                link.list_offset(FOLLOWER, list(LATEST, EPOCH))
                    .await
                    .unwrap(),
                link.list_offset(CONSUMER, list(LATEST, EPOCH))
                    .await
                    .unwrap(),
            ];
            let first = link.fetch(r0).await.unwrap().remove(0);
            // Fetching at 3 tells the leader node 2 has 0..3.
            let second = link.fetch(r3).await.unwrap().remove(0);
            let stale = link.fetch(stale).await.unwrap().remove(0);
            let query = EpochQuery {
                topic: TOPIC.into(),
                partition: 0,
                current_leader_epoch: EPOCH,
                leader_epoch: EPOCH,
            };
            let epochs = link.epoch_end_offsets(FOLLOWER, vec![query]).await.unwrap();
            let listed = [
                link.list_offset(FOLLOWER, list(EARLIEST, EPOCH))
                    .await
                    .unwrap(),
                link.list_offset(FOLLOWER, list(LATEST, EPOCH))
                    .await
                    .unwrap(),
                link.list_offset(FOLLOWER, list(LATEST, EPOCH - 1))
                    .await
                    .unwrap(),
            ];
            (first, second, stale, (epochs, latest, listed))
        }
    });
    let (epochs, latest, listed) = epochs;
    assert_eq!(
        latest,
        [Ok(3), Ok(0)],
        "latest: the log end for a follower, the high watermark for a consumer"
    );
    assert_eq!(
        listed,
        [Ok(0), Ok(3), Err(ResponseError::FencedLeaderEpoch)],
        "log start, log end, stale epoch"
    );
    assert_eq!(first.error, None);
    assert_eq!(record_count(&first.records), 3, "up to the log end");
    assert_eq!(first.high_watermark, 0);
    assert_eq!(second.error, None);
    assert_eq!(second.high_watermark, 3);
    assert_eq!(stale.error, Some(ResponseError::FencedLeaderEpoch));
    assert_eq!(epochs[0].error, None);
    assert_eq!(
        epochs[0].end,
        Some((EPOCH, 3)),
        "the leader stamped its epoch"
    );
    assert_eq!(client.consume(0), (3, 3), "committed once node 2 had it");

    // acks=all waits for node 2: it is answered only after the follower fetched past it.
    let producer = std::thread::spawn({
        let port = broker.port;
        move || Client::connect(port).produce(&["d"], -1)
    });
    let (got, after) = as_follower({
        let endpoint = endpoint(&broker);
        let r3 = replica_fetch(&broker, 3, EPOCH, true);
        let r4 = replica_fetch(&broker, 4, EPOCH, false);
        async move {
            let link = InterBrokerLink::new(endpoint, 100 << 20, PATIENCE);
            let got = link.fetch(r3).await.unwrap().remove(0);
            let after = link.fetch(r4).await.unwrap().remove(0);
            (got, after)
        }
    });
    assert_eq!(record_count(&got.records), 1);
    assert_eq!(after.high_watermark, 4);
    assert_eq!(producer.join().unwrap(), (0, 3));
}

#[test]
fn a_broker_that_is_not_a_replica_is_refused() {
    let broker = start_broker();
    let mut request = replica_fetch(&broker, 0, EPOCH, false);
    request.replica_id = 7;
    let endpoint = endpoint(&broker);
    let answer = as_follower(async move {
        let link = InterBrokerLink::new(endpoint, 100 << 20, PATIENCE);
        link.fetch(request).await.unwrap().remove(0)
    });
    assert_eq!(answer.error, Some(ResponseError::NotLeaderOrFollower));
}
