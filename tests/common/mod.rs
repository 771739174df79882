//! Shared helpers for the broker's integration tests: start the real `spate` binary on a free
//! port with a temporary data dir, and talk Kafka's protocol to it over TCP.
#![allow(dead_code)] // each test file uses its own subset of the helpers

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, FetchRequest, ProduceRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// How long a test waits for the broker to start or a response to arrive before failing
/// (a hang must fail the test, not block it forever).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A running broker process with its own data dir.
pub struct Broker {
    pub port: u16,
    pub shards: usize,
    pub data: tempfile::TempDir,
    pub extra_args: Vec<String>,
    /// The broker's `RUST_LOG`.
    log_filter: String,
    child: Option<Child>,
    starts: usize,
}

impl Broker {
    /// Starts `spate serve --shards <shards>` plus `extra_args`.
    pub fn start(shards: usize, extra_args: &[&str]) -> Broker {
        Broker::start_logging(shards, extra_args, "info")
    }

    /// Like `start`, logging what `log_filter` (a `RUST_LOG` value) lets through.
    pub fn start_logging(shards: usize, extra_args: &[&str], log_filter: &str) -> Broker {
        let mut broker = Broker {
            port: 0,
            shards,
            data: tempfile::tempdir().unwrap(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            log_filter: log_filter.to_string(),
            child: None,
            starts: 0,
        };
        broker.launch();
        broker
    }

    /// Starts the process again on a fresh port, with the same data dir.
    pub fn launch(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        self.port = free_port();
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_spate"))
            .arg("serve")
            .arg("--data-dir")
            .arg(self.data.path().join("data"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--shards")
            .arg(self.shards.to_string())
            .args(&self.extra_args)
            .env("RUST_LOG", &self.log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start spate");
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while !listening(self.port) {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("spate exited at start with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "spate did not listen:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log of the current run (stderr).
    pub fn log_path(&self) -> PathBuf {
        self.data.path().join(format!("spate-{}.log", self.starts))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data.path().join("data")
    }

    pub fn client(&self) -> Client {
        Client::connect(self.port)
    }

    /// Sends `signal` and waits for the process to exit.
    pub fn stop(&mut self, signal: i32) -> ExitStatus {
        let mut child = self.child.take().expect("broker not running");
        // SAFETY: kill(2) on our own child's pid; no memory is touched.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("spate did not exit after signal {signal}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, and checks the clean exit.
    pub fn terminate(&mut self) {
        let status = self.stop(libc::SIGTERM);
        assert!(
            status.success(),
            "spate exited with {status}:\n{}",
            self.log()
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The data dir, and the log in it, go with the broker: show why the test failed.
            eprintln!("spate's log (run {}):\n{}", self.starts, self.log());
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `spate serve` with `args` (plus a free `--listen` port) where it is expected to
/// refuse to start; returns its exit status and stderr. Fails the test if it keeps running.
pub fn serve_expecting_exit(args: &[&str]) -> (ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spate"))
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start spate");
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("spate kept running with {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stderr)
}

/// A port nothing listens on. Never the same twice in one test process: the broker binds
/// with SO_REUSEPORT, so two brokers given one port would both listen on it.
/// Whether something listens on `port`. A connect to a free port from the ephemeral range
/// can pick that same port as its own and connect to itself (TCP simultaneous open), which
/// is not a listener.
fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port))
        .and_then(|s| Ok(s.local_addr()? != s.peer_addr()?))
        .unwrap_or(false)
}

fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if HANDED_OUT.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// A Kafka connection speaking the protocol through kafka-protocol's codecs.
pub struct Client {
    pub stream: TcpStream,
    correlation_id: i32,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            correlation_id: 0,
        }
    }

    /// Encodes a request frame (size, header, body) with the next correlation id.
    pub fn frame<R: Request>(&mut self, request: &R, version: i16) -> (i32, Bytes) {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("spate-tests")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .unwrap();
        request.encode(&mut body, version).unwrap();
        let mut frame = BytesMut::new();
        frame.put_i32(body.len() as i32);
        frame.put(body);
        (self.correlation_id, frame.freeze())
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one response frame; `None` if the broker closed the connection.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        if self.stream.read_exact(&mut size).is_err() {
            return None;
        }
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut body).ok()?;
        Some(Bytes::from(body))
    }

    /// True when the broker has closed this connection (reads EOF or reset).
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte), Ok(0) | Err(_))
    }

    pub fn send<R: Request>(&mut self, request: &R, version: i16) -> R::Response {
        let (correlation_id, frame) = self.frame(request, version);
        self.send_raw(&frame);
        self.receive::<R>(correlation_id, version)
    }

    /// Reads the response to request `correlation_id`, an `R` of `version`, sent earlier.
    pub fn receive<R: Request>(&mut self, correlation_id: i32, version: i16) -> R::Response {
        let mut response = self.read_frame().expect("the broker closed the connection");
        let header =
            ResponseHeader::decode(&mut response, R::Response::header_version(version)).unwrap();
        assert_eq!(header.correlation_id, correlation_id);
        let decoded = R::Response::decode(&mut response, version).unwrap();
        assert!(!response.has_remaining(), "response has trailing bytes");
        decoded
    }

    pub fn create_topic(&mut self, name: &str, partitions: i32) {
        let request = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(name))
                .with_num_partitions(partitions)
                .with_replication_factor(1)])
            .with_timeout_ms(10_000);
        let response = self.send(&request, 7);
        assert_eq!(response.topics[0].error_code, 0, "{:?}", response.topics[0]);
    }

    /// Produces `records` (v2 batches) with acks=all; returns (error code, base offset).
    pub fn produce(&mut self, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
        let response = self.send(&produce_request(topic, partition, records, -1), 9);
        let p = &response.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }

    /// Fetches from one partition (v12, by name) and returns its part of the response.
    pub fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
    ) -> kafka_protocol::messages::fetch_response::PartitionData {
        let request = fetch_request(topic, partition, offset, max_wait_ms);
        let mut response = self.send(&request, 12);
        assert_eq!(response.error_code, 0);
        response.responses.remove(0).partitions.remove(0)
    }
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub fn produce_request(topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

pub fn fetch_request(topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

/// The timestamp `batch` stamps its records with (November 2023).
pub const BATCH_TIMESTAMP: i64 = 1_700_000_000_000;

/// One v2 batch holding `values`.
pub fn batch(values: &[&str]) -> Bytes {
    batch_at(BATCH_TIMESTAMP, values)
}

/// One v2 batch holding `values`, stamped `timestamp`.
pub fn batch_at(timestamp: i64, values: &[&str]) -> Bytes {
    Bytes::from(spate_core::record_batch::build_batch(timestamp, values))
}

/// Splits fetched records into batches and returns (base offset, record count) of each.
pub fn batches_in(records: &[u8]) -> Vec<(i64, i32)> {
    spate_core::record_batch::split(records)
        .map(|b| {
            let (_, header, _) = b.unwrap();
            (header.base_offset, header.record_count)
        })
        .collect()
}

/// Writes a broker profile into the test's temp dir and returns its path.
pub fn write_profile(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("profile.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}
