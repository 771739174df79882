//! What shards say to each other. Every type here is `Send`: it crosses threads over the
//! router's channels. Record bytes travel as `Bytes` (a reference-counted slice, no copy).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use glommio::net::AcceptedTcpStream;
use kafka_protocol::ResponseError;
use spate_core::topic_config::TopicConfig;
use spate_log::SharedSlice;

use crate::connection_load::OpenConnection;
use crate::group_coordinator::{GroupAnswer, GroupCall, ListedGroup};
use crate::partition_admin::{PartitionAnswer, PartitionQuery, TopicChange};
use crate::topics::{TopicInfo, TopicTable};

/// A topic to create, as CreateTopics asks for it (partition count resolved, configs
/// validated).
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replicas: NewReplicas,
    pub config: TopicConfig,
}

/// Where a new topic's replicas go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewReplicas {
    /// This many replicas per partition, placed by the controller.
    Factor(i16),
    /// Partition i's replicas are `lists[i]`, as the client gave them.
    Assigned(Vec<Vec<i32>>),
}

/// Why a topic could not be created or deleted: the Kafka error and a message for the user.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicError {
    pub error: ResponseError,
    pub message: String,
}

/// One partition's records from a Produce request: one or more v2 batches, as sent. Mutable
/// because the log patches offsets into them in place; usually a piece of the request frame.
#[derive(Debug)]
pub struct AppendRequest {
    pub topic: String,
    pub partition: i32,
    pub records: BytesMut,
    /// Produce's `acks` (-1: wait for the ISR) and `timeout_ms`.
    pub acks: i16,
    pub timeout: Duration,
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceResult {
    pub base_offset: i64,
    pub log_start_offset: i64,
}

/// A produce's append, with the `acks=all` wait still owed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub result: ProduceResult,
    pub commit: Option<Commit>,
}

/// What an `acks=all` produce waits for: the high watermark of `topic`-`partition` past
/// `last_offset` while its leader epoch is still `leader_epoch`, until `deadline`
/// (REQUEST_TIMED_OUT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub topic: String,
    pub partition: i32,
    pub last_offset: i64,
    pub leader_epoch: i32,
    pub deadline: Instant,
}

/// A read of one partition, as a Fetch asks for it.
#[derive(Debug, Clone)]
pub struct ReadRequest {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// `partition_max_bytes`.
    pub max_bytes: usize,
    /// The reader's leader epoch (-1: not checked).
    pub current_leader_epoch: i32,
}

/// Reads of partitions one shard owns, done in order within one byte budget: one message
/// to that shard however many of its partitions a Fetch names.
#[derive(Debug, Clone)]
pub struct ReadBatch {
    pub reads: Vec<ReadRequest>,
    /// What is left of the Fetch's `max_bytes`.
    pub budget: usize,
    /// Return the first batch found even if it exceeds the limits (Kafka does, so a
    /// consumer never gets stuck behind a large batch); set while the response is empty.
    pub min_one_batch: bool,
    /// The broker id of a follower fetching (it reads up to the log end and its progress is
    /// noted); -1 for a consumer.
    pub replica_id: i32,
}

/// One partition a long poll waits on: it wakes once the high watermark (or log end) passes
/// `offset`.
#[derive(Debug, Clone)]
pub struct WaitRequest {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// A follower waits for the log end to pass `offset`, not the high watermark.
    pub for_replica: bool,
}

/// The partition's offsets a Fetch response reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// One partition's part of a read: its records and offsets, or why it could not be read.
pub type ReadResult<R> = Result<(R, PartitionOffsets), ResponseError>;

/// An offset found by ListOffsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    pub timestamp: i64,
    pub offset: i64,
    pub leader_epoch: i32,
}

pub(crate) enum Request {
    Produce(Vec<AppendRequest>),
    AwaitCommits(Vec<Commit>),
    Read(ReadBatch),
    Wait {
        partitions: Vec<WaitRequest>,
        timeout: Duration,
    },
    ListOffset {
        topic: String,
        partition: i32,
        timestamp: i64,
        current_leader_epoch: i32,
        for_replica: bool,
    },
    CreateTopics {
        topics: Vec<NewTopic>,
        validate_only: bool,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    Apply(Arc<TopicTable>),
    PartitionQueries(Vec<PartitionQuery>),
    TopicChanges {
        changes: Vec<TopicChange>,
        validate_only: bool,
    },
    Group {
        group_id: String,
        call: GroupCall,
    },
    ListGroups,
    /// A client connection to serve (see `connection_load`).
    Adopt(AcceptedTcpStream, OpenConnection),
}

pub(crate) enum Reply {
    Produce(Vec<Result<Appended, ResponseError>>),
    Committed(Vec<Result<(), ResponseError>>),
    Read(Vec<ReadResult<SharedSlice>>),
    Waited,
    ListOffset(Result<Option<ListedOffset>, ResponseError>),
    CreateTopics(Vec<Result<TopicInfo, TopicError>>),
    DeleteTopics(Vec<Result<(), TopicError>>),
    Applied,
    PartitionAnswers(Vec<Result<PartitionAnswer, ResponseError>>),
    TopicChanges(Vec<Result<(), TopicError>>),
    Group(GroupAnswer),
    ListGroups(Vec<ListedGroup>),
    Adopted,
}
