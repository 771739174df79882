//! One shard: the partitions it owns, its snapshot of the topic table, and its router.
//!
//! The public methods are what the Kafka server calls. Each finds the partition's owner
//! (see `placement`) and either runs the operation here or sends it to the owner.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{join_all, select_all, FutureExt, LocalBoxFuture};
use futures_util::StreamExt;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::channels::shared_channel::ConnectedReceiver;
use glommio::net::{AcceptedTcpStream, TcpStream};
use kafka_protocol::ResponseError;
use spate_core::config::BrokerConfig;
use spate_log::{Clock, PartitionLog, ReadSlice, SharedSlice, SystemClock};

use crate::connection_load::{ConnectionLoad, OpenConnection};
use crate::controller::broker_link::BrokerLink;
use crate::group_coordinator::{
    coordinator_shard, GroupAnswer, GroupCall, GroupConfig, GroupCoordinator, ListedGroup,
};
use crate::messages::{
    AppendRequest, Appended, Commit, ListedOffset, ReadBatch, ReadResult, Reply, Request,
    WaitRequest,
};
use crate::notify::Notify;
use crate::partition::Partition;
use crate::placement::owner_shard;
use crate::producer_ids;
use crate::replication::{assign_from, Replication, ReplicationConfig};
use crate::router::{Body, Envelope, Links, Router};
use crate::topic_config::topic_settings;
use crate::topics::{partition_dir, write_new_partition_files, TopicInfo, TopicTable};

/// The shard that follows the controller's images and publishes them to the others.
pub const CONTROLLER_SHARD: usize = 0;

/// Partitions a shard closes at once at shutdown: enough to keep the disk's queue full,
/// few enough to bound the open files and memory of closes in flight.
pub const CLOSE_CONCURRENCY: usize = 64;

/// Records a read returned: a range of a segment file, of this shard's (`File`) or of another
/// shard's (`Shared`), or bytes in memory.
pub enum Records {
    File(ReadSlice),
    Shared(SharedSlice),
    Bytes(Bytes),
}

/// Appends handed to their owner shard by [`Shard::hand_off`].
pub struct HandedOff(Handed);

enum Handed {
    /// Appended on this shard: one outcome per append.
    Appended(Vec<Result<Appended, ResponseError>>),
    /// Sent to another shard, `count` appends; `reply: None` if it is gone (shutting down).
    Sent {
        reply: Option<LocalReceiver<Reply>>,
        count: usize,
    },
}

impl HandedOff {
    /// The outcomes, if they are known already (the appends were on this shard).
    pub fn known(self) -> Result<Vec<Result<Appended, ResponseError>>, HandedOff> {
        match self.0 {
            Handed::Appended(outcomes) => Ok(outcomes),
            sent => Err(HandedOff(sent)),
        }
    }
}

impl Records {
    pub fn len(&self) -> usize {
        match self {
            Records::File(slice) => slice.len,
            Records::Shared(slice) => slice.len,
            Records::Bytes(bytes) => bytes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

type TopicPartition = (String, i32);

/// A client connection another shard accepted and placed here, with its count.
type Adopted = (AcceptedTcpStream, OpenConnection);

pub struct Shard {
    pub(crate) id: usize,
    pub(crate) count: usize,
    pub(crate) config: Arc<BrokerConfig>,
    pub(crate) router: Router,
    pub(crate) topics: RefCell<Arc<TopicTable>>,
    /// Set once the first topic table has been applied; connections wait for it.
    pub(crate) ready: Cell<bool>,
    pub(crate) table_applied: Notify,
    pub(crate) partitions: RefCell<HashMap<TopicPartition, Rc<Partition>>>,
    /// The last producer id this shard handed out (see `next_producer_id`).
    pub(crate) last_producer_id: Cell<i64>,
    /// Every request in progress holds a pass; shutdown closes the gate and waits for them,
    /// so no append runs on a log being closed.
    pub(crate) gate: glommio::sync::Gate,
    /// Fired when shutdown starts: long polls and calls to other shards give up.
    pub(crate) stopping: Notify,
    pub(crate) closing: Cell<bool>,
    pub(crate) clock: Rc<dyn Clock>,
    /// The consumer groups this shard coordinates.
    pub(crate) groups: GroupCoordinator,
    /// Set while this shard asks the controller for `__consumer_offsets`.
    pub(crate) creating_offsets_topic: Cell<bool>,
    /// Shard 0: the last table every shard has applied (metadata writes wait on it).
    pub(crate) published: RefCell<Arc<TopicTable>>,
    /// The broker's link to the controller: images in, metadata writes out.
    pub(crate) cluster: BrokerLink,
    /// Followers, ISR and high watermarks of this shard's partitions.
    pub(crate) replication: Rc<Replication>,
    /// Every shard's count of client connections.
    load: Arc<ConnectionLoad>,
    /// Connections other shards handed to this one, for its listener to serve.
    adopted: (LocalSender<Adopted>, LocalReceiver<Adopted>),
}

impl Shard {
    /// Connects the shard to its peers, starts serving their requests, and returns once the
    /// topic table is installed and this shard's partitions are open. Shard 0 follows the
    /// controller's images (`metadata_sync`) and publishes each to every shard.
    pub async fn start(
        id: usize,
        count: usize,
        config: Arc<BrokerConfig>,
        links: Links,
        cluster: BrokerLink,
        load: Arc<ConnectionLoad>,
    ) -> Rc<Shard> {
        let (router, receivers) = Router::connect(id, links).await;
        let clock: Rc<dyn Clock> = Rc::new(SystemClock);
        let groups = GroupCoordinator::new(
            id,
            &config,
            GroupConfig::from_broker(&config),
            clock.clone(),
        );
        let replication = Replication::new(
            config.node_id,
            ReplicationConfig::from_broker(&config),
            clock.clone(),
        );
        replication.set_isr_updater(Rc::new(cluster.clone()));
        let shard = Rc::new(Shard {
            id,
            count,
            config,
            router,
            topics: RefCell::new(Arc::new(TopicTable::default())),
            ready: Cell::new(false),
            table_applied: Notify::default(),
            partitions: RefCell::new(HashMap::new()),
            last_producer_id: Cell::new(-1),
            gate: glommio::sync::Gate::new(),
            stopping: Notify::default(),
            closing: Cell::new(false),
            clock,
            groups,
            creating_offsets_topic: Cell::new(false),
            published: RefCell::new(Arc::new(TopicTable::default())),
            cluster,
            replication,
            load,
            adopted: local_channel::new_unbounded(),
        });
        for (_, receiver) in receivers {
            glommio::spawn_local(shard.clone().serve_peer(receiver)).detach();
        }
        if id == CONTROLLER_SHARD {
            glommio::spawn_local(shard.clone().follow_images()).detach();
        }
        while !shard.ready.get() {
            let seen = shard.table_applied.version();
            if shard.ready.get() {
                break;
            }
            shard.table_applied.changed_since(seen).await;
        }
        // Coordinator partitions this broker leads in the first table load before the shard
        // serves; those it comes to lead later load in the timer loop (`tick`).
        shard.groups.load_pending().await;
        glommio::spawn_local(shard.clone().group_timer_loop()).detach();
        glommio::spawn_local(shard.clone().retention_loop()).detach();
        glommio::spawn_local(shard.clone().flush_loop()).detach();
        shard
    }

    pub fn id(&self) -> usize {
        self.id
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The current snapshot of the topic table.
    pub fn topics(&self) -> Arc<TopicTable> {
        self.topics.borrow().clone()
    }

    /// How many partitions this shard has open.
    pub fn partition_count(&self) -> usize {
        self.partitions.borrow().len()
    }

    /// Places a client connection this shard has just accepted: here, or on a shard that
    /// serves fewer (see `connection_load`). The guard counts it there while it lives.
    pub fn place_connection(&self) -> OpenConnection {
        self.load.place(self.id)
    }

    /// Hands a client connection to the shard it was placed on, to serve. (Should that
    /// shard be shutting down, the connection stays open, unserved, until the process exits.)
    pub async fn hand_connection(&self, connection: AcceptedTcpStream, open: OpenConnection) {
        let _ = self
            .call(open.shard(), Request::Adopt(connection, open))
            .await;
    }

    /// The next client connection another shard handed to this one, with its count.
    pub async fn adopted_connection(&self) -> Option<(TcpStream, OpenConnection)> {
        let (connection, open) = self.adopted.1.recv().await?;
        Some((connection.bind_to_executor(), open))
    }

    /// The shard that owns `topic`-`partition`.
    pub fn owner_of(&self, topic: &str, partition: i32) -> usize {
        owner_shard(topic, partition, self.count)
    }

    /// A producer id for InitProducerId, unique without asking another shard (see
    /// `producer_ids`).
    pub fn next_producer_id(&self) -> i64 {
        let next = producer_ids::next(self.id, self.count, self.last_producer_id.get());
        self.last_producer_id.set(next);
        next
    }

    /// Hands appends to partitions that shard `owner` owns: one message to that shard however
    /// many of its partitions a Produce names. This shard's own are appended before this
    /// returns, concurrently (so their writes share group commits); another shard's are on
    /// their way, and [`Shard::appended`] gives their outcomes. Either way, appends handed
    /// off after this returns land after these: a connection that goes on to its next
    /// request keeps its appends in order.
    pub async fn hand_off(&self, owner: usize, appends: Vec<AppendRequest>) -> HandedOff {
        if owner == self.id {
            return HandedOff(Handed::Appended(self.produce_local(appends).await));
        }
        let count = appends.len();
        let reply = self.send(owner, Request::Produce(appends)).await;
        HandedOff(Handed::Sent { reply, count })
    }

    /// The outcomes of handed-off appends, one per append in order; `acks=all` appends
    /// carry the wait still owed, for [`Shard::await_commits`].
    pub async fn appended(&self, handed: HandedOff) -> Vec<Result<Appended, ResponseError>> {
        match handed.0 {
            Handed::Appended(outcomes) => outcomes,
            Handed::Sent { reply, count } => {
                let reply = match reply {
                    Some(reply) => self.receive(reply).await,
                    None => None,
                };
                match reply {
                    Some(Reply::Produce(outcomes)) => outcomes,
                    _ => vec![Err(ResponseError::NotLeaderOrFollower); count],
                }
            }
        }
    }

    /// Waits for `acks=all` appends to partitions that shard `owner` owns to be committed,
    /// concurrently; one result per wait, in order.
    pub async fn await_commits(
        &self,
        owner: usize,
        waits: Vec<Commit>,
    ) -> Vec<Result<(), ResponseError>> {
        if owner == self.id {
            return self.await_commits_local(waits).await;
        }
        let count = waits.len();
        match self.call(owner, Request::AwaitCommits(waits)).await {
            Some(Reply::Committed(results)) => results,
            _ => vec![Err(ResponseError::NotLeaderOrFollower); count],
        }
    }

    /// Reads partitions that shard `owner` owns, in order, within `batch.budget` bytes;
    /// one result per read.
    pub async fn read_batch(&self, owner: usize, batch: ReadBatch) -> Vec<ReadResult<Records>> {
        if owner == self.id {
            return self
                .read_local(batch)
                .await
                .into_iter()
                .map(|r| r.map(|(slice, offsets)| (Records::File(slice), offsets)))
                .collect();
        }
        let count = batch.reads.len();
        match self.call(owner, Request::Read(batch)).await {
            Some(Reply::Read(results)) => results
                .into_iter()
                .map(|r| r.map(|(slice, offsets)| (Records::Shared(slice), offsets)))
                .collect(),
            _ => (0..count)
                .map(|_| Err(ResponseError::NotLeaderOrFollower))
                .collect(),
        }
    }

    /// Resolves when any of `partitions` (all owned by shard `owner`) gets data past its
    /// offset, after `timeout`, or at shutdown. Woken by the append, not by a timer tick.
    pub async fn wait_any(&self, owner: usize, partitions: Vec<WaitRequest>, timeout: Duration) {
        if owner == self.id {
            self.wait_local(partitions, timeout).await;
        } else {
            self.call(
                owner,
                Request::Wait {
                    partitions,
                    timeout,
                },
            )
            .await;
        }
    }

    /// ListOffsets for one partition; `None` when no record matches the timestamp.
    /// `for_replica`: a follower asks (the latest offset is then the log end).
    pub async fn list_offset(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
        current_leader_epoch: i32,
        for_replica: bool,
    ) -> Result<Option<ListedOffset>, ResponseError> {
        let owner = self.owner_of(topic, partition);
        if owner == self.id {
            return match self.partition(topic, partition) {
                Some(p) => {
                    p.list_offset(timestamp, current_leader_epoch, for_replica)
                        .await
                }
                None => Err(ResponseError::UnknownTopicOrPartition),
            };
        }
        let request = Request::ListOffset {
            topic: topic.to_string(),
            partition,
            timestamp,
            current_leader_epoch,
            for_replica,
        };
        match self.call(owner, request).await {
            Some(Reply::ListOffset(result)) => result,
            _ => Err(ResponseError::NotLeaderOrFollower),
        }
    }

    /// Runs one call on the shard that coordinates `group_id`.
    pub async fn group_call(&self, group_id: &str, call: GroupCall) -> GroupAnswer {
        if self.group_coordinator(group_id) != Ok(self.config.node_id) {
            return GroupAnswer::Error(ResponseError::NotCoordinator);
        }
        let owner = coordinator_shard(group_id, self.groups.config(), self.count);
        if owner == self.id {
            return self.group_local(group_id, call).await;
        }
        let request = Request::Group {
            group_id: group_id.to_string(),
            call,
        };
        match self.call(owner, request).await {
            Some(Reply::Group(answer)) => answer,
            _ => GroupAnswer::Error(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// A group call on this shard. A JoinGroup or SyncGroup may wait for a whole rebalance;
    /// shutdown does not wait for it.
    async fn group_local(&self, group_id: &str, call: GroupCall) -> GroupAnswer {
        futures_lite::future::or(self.groups.handle(group_id, call), async {
            self.until_stopping().await;
            GroupAnswer::Error(ResponseError::CoordinatorNotAvailable)
        })
        .await
    }

    /// Every group of every shard (ListGroups).
    pub async fn list_groups(&self) -> Vec<ListedGroup> {
        let mut all = self.groups.list();
        for peer in (0..self.count).filter(|s| *s != self.id) {
            if let Some(Reply::ListGroups(groups)) = self.call(peer, Request::ListGroups).await {
                all.extend(groups);
            }
        }
        all
    }

    /// Drives the group coordinator's timers (session timeouts, rebalance deadlines).
    async fn group_timer_loop(self: Rc<Self>) {
        loop {
            futures_lite::future::or(
                glommio::timer::sleep(crate::group_coordinator::TIMER_INTERVAL),
                self.until_stopping(),
            )
            .await;
            // The pass keeps close() from closing the offsets logs under a tick's append.
            let Some(_pass) = self.enter() else {
                return;
            };
            self.groups.tick().await;
        }
    }

    /// A pass for one request; `None` once shutdown has begun. Hold it until the response
    /// is written.
    pub fn enter(&self) -> Option<glommio::sync::Pass> {
        self.gate.enter().ok()
    }

    /// True once shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.closing.get()
    }

    /// Resolves once shutdown has begun.
    pub async fn until_stopping(&self) {
        loop {
            let seen = self.stopping.version();
            if self.closing.get() {
                return;
            }
            self.stopping.changed_since(seen).await;
        }
    }

    /// Stops taking requests, waits for those in progress (long polls and calls to other
    /// shards end early), then flushes and closes every partition this shard owns
    /// (clean-shutdown marker included).
    pub async fn close(&self) {
        self.closing.set(true);
        self.stopping.notify_all();
        self.replication.stop();
        if let Err(e) = self.gate.close().await {
            tracing::warn!(
                shard = self.id,
                "waiting for requests in progress failed: {e}"
            );
        }
        self.replication.close().await;
        let partitions: Vec<_> = self.partitions.borrow_mut().drain().collect();
        // Each close waits on a few fsyncs: one after another, 10,000 partitions took close
        // to a minute; concurrently the disk queues them together.
        futures_util::stream::iter(partitions)
            .for_each_concurrent(CLOSE_CONCURRENCY, |((topic, partition), p)| async move {
                if let Err(e) = p.log.close().await {
                    tracing::error!("closing {topic}-{partition} failed: {e}");
                }
            })
            .await;
    }

    /// A call to another shard that gives up (`None`) when this shard starts shutting down,
    /// since the other shard may already have stopped answering.
    pub(crate) async fn call(&self, to: usize, request: Request) -> Option<Reply> {
        let reply = self.send(to, request).await?;
        self.receive(reply).await
    }

    /// The first half of [`Shard::call`]: sends the request and returns where its reply
    /// will arrive.
    async fn send(&self, to: usize, request: Request) -> Option<LocalReceiver<Reply>> {
        futures_lite::future::or(self.router.send(to, request), async {
            self.until_stopping().await;
            None
        })
        .await
    }

    /// The second half of [`Shard::call`]: waits for the reply.
    async fn receive(&self, reply: LocalReceiver<Reply>) -> Option<Reply> {
        futures_lite::future::or(reply.recv(), async {
            self.until_stopping().await;
            None
        })
        .await
    }

    pub(crate) fn partition(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        self.partitions
            .borrow()
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    /// Answers the requests one peer sends; each runs as its own task so a long poll never
    /// holds up the requests behind it. The tasks first run in the order they are spawned
    /// (glommio's run queue is FIFO), and an append is staged at its first poll: so appends
    /// keep the order they were sent in, even when a connection sends the next before the
    /// last is answered (see [`Shard::hand_off`]).
    async fn serve_peer(self: Rc<Self>, receiver: ConnectedReceiver<Envelope>) {
        while let Some(envelope) = receiver.recv().await {
            match envelope.body {
                Body::Request(request) => {
                    // Once shutdown has begun the request is dropped unanswered; the caller
                    // is shutting down too and gives up on its own.
                    let Some(pass) = self.enter() else {
                        continue;
                    };
                    let shard = self.clone();
                    glommio::spawn_local(async move {
                        let _pass = pass;
                        let reply = shard.handle(request).await;
                        shard.router.reply(envelope.from, envelope.id, reply).await;
                    })
                    .detach();
                }
                Body::Reply(reply) => self.router.deliver(envelope.id, reply),
            }
        }
    }

    pub(crate) async fn handle(&self, request: Request) -> Reply {
        match request {
            Request::Produce(appends) => Reply::Produce(self.produce_local(appends).await),
            Request::AwaitCommits(waits) => Reply::Committed(self.await_commits_local(waits).await),
            Request::Read(batch) => Reply::Read(self.read_for_peer(batch).await),
            Request::Wait {
                partitions,
                timeout,
            } => {
                self.wait_local(partitions, timeout).await;
                Reply::Waited
            }
            Request::ListOffset {
                topic,
                partition,
                timestamp,
                current_leader_epoch,
                for_replica,
            } => Reply::ListOffset(match self.partition(&topic, partition) {
                Some(p) => {
                    p.list_offset(timestamp, current_leader_epoch, for_replica)
                        .await
                }
                None => Err(ResponseError::UnknownTopicOrPartition),
            }),
            Request::Apply(table) => {
                self.apply(table).await;
                Reply::Applied
            }
            Request::CreateTopics {
                topics,
                validate_only,
            } => Reply::CreateTopics(self.create_topics_here(topics, validate_only).await),
            Request::DeleteTopics { names } => {
                Reply::DeleteTopics(self.delete_topics_here(names).await)
            }
            Request::TopicChanges {
                changes,
                validate_only,
            } => Reply::TopicChanges(self.change_topics_here(changes, validate_only).await),
            Request::PartitionQueries(queries) => {
                Reply::PartitionAnswers(self.query_local(queries).await)
            }
            Request::Group { group_id, call } => {
                Reply::Group(self.group_local(&group_id, call).await)
            }
            Request::ListGroups => Reply::ListGroups(self.groups.list()),
            Request::Adopt(connection, open) => {
                // Unbounded, and this shard holds the receiver: the send cannot fail.
                let _ = self.adopted.0.try_send((connection, open));
                Reply::Adopted
            }
        }
    }

    async fn produce_local(
        &self,
        appends: Vec<AppendRequest>,
    ) -> Vec<Result<Appended, ResponseError>> {
        join_all(appends.into_iter().map(|a| async move {
            match self.partition(&a.topic, a.partition) {
                Some(p) => p.append_produced(a.records, a.acks, a.timeout).await,
                None => Err(ResponseError::UnknownTopicOrPartition),
            }
        }))
        .await
    }

    async fn await_commits_local(&self, waits: Vec<Commit>) -> Vec<Result<(), ResponseError>> {
        join_all(waits.into_iter().map(|w| async move {
            match self.partition(&w.topic, w.partition) {
                Some(p) => p.committed(w).await,
                // Deleted or moved meanwhile: the append is not known to be replicated.
                None => Err(ResponseError::NotLeaderOrFollower),
            }
        }))
        .await
    }

    async fn read_local(&self, batch: ReadBatch) -> Vec<ReadResult<ReadSlice>> {
        let mut total = 0;
        let mut results = Vec::with_capacity(batch.reads.len());
        for req in batch.reads {
            let result = match self.partition(&req.topic, req.partition) {
                Some(p) => {
                    let max_bytes = req.max_bytes.min(batch.budget.saturating_sub(total));
                    let min_one_batch = batch.min_one_batch && total == 0;
                    if batch.replica_id >= 0 {
                        p.read_for_replica(
                            batch.replica_id,
                            req.offset,
                            max_bytes,
                            min_one_batch,
                            req.current_leader_epoch,
                        )
                        .await
                    } else {
                        p.read(
                            req.offset,
                            max_bytes,
                            min_one_batch,
                            req.current_leader_epoch,
                        )
                        .await
                    }
                }
                None => Err(ResponseError::UnknownTopicOrPartition),
            };
            if let Ok((slice, _)) = &result {
                total += slice.len;
            }
            results.push(result);
        }
        results
    }

    /// A read for another shard: the ranges cross threads as shared descriptors of the
    /// segment files, which the other shard splices or copies from as from its own.
    async fn read_for_peer(&self, batch: ReadBatch) -> Vec<ReadResult<SharedSlice>> {
        self.read_local(batch)
            .await
            .into_iter()
            .map(|result| {
                let (slice, offsets) = result?;
                let shared = slice.share().map_err(|e| e.kafka_error())?;
                Ok((shared, offsets))
            })
            .collect()
    }

    async fn wait_local(&self, partitions: Vec<WaitRequest>, timeout: Duration) {
        let waits: Vec<LocalBoxFuture<'static, ()>> = partitions
            .into_iter()
            .filter_map(|w| {
                let p = self.partition(&w.topic, w.partition)?;
                let wait = async move { p.wait_for_data(w.offset, timeout, w.for_replica).await };
                Some(wait.boxed_local())
            })
            .collect();
        if !waits.is_empty() {
            futures_lite::future::or(select_all(waits).map(|_| ()), self.until_stopping()).await;
        }
    }

    /// Installs a new topic table: opens the partitions this shard owns and this broker is a
    /// replica of, deletes those whose topic is gone, closes (keeping the data) those this
    /// broker no longer holds a replica of.
    pub(crate) async fn apply(&self, table: Arc<TopicTable>) {
        *self.topics.borrow_mut() = table.clone();
        self.apply_topic_configs(&table);
        let node_id = self.config.node_id;
        let not_replica: Vec<_> = self
            .partitions
            .borrow()
            .keys()
            .filter(|(topic, partition)| {
                table
                    .assignment(topic, *partition)
                    .is_some_and(|a| !a.replicas.contains(&node_id))
            })
            .cloned()
            .collect();
        for key in not_replica {
            let removed = self.partitions.borrow_mut().remove(&key);
            if let Some(p) = removed {
                p.stop_replicating();
                if let Err(e) = p.log.close().await {
                    tracing::error!("closing partition {}-{} failed: {e}", key.0, key.1);
                }
            }
        }
        let gone: Vec<_> = self
            .partitions
            .borrow()
            .keys()
            .filter(|(topic, partition)| {
                table.get(topic).is_none_or(|t| *partition >= t.partitions)
            })
            .cloned()
            .collect();
        for key in gone {
            let removed = self.partitions.borrow_mut().remove(&key);
            if let Some(p) = removed {
                p.stop_replicating();
                match p.log.delete().await {
                    Ok(()) => tracing::info!("deleted partition {}-{}", key.0, key.1),
                    Err(e) => tracing::error!("deleting partition {}-{} failed: {e}", key.0, key.1),
                }
            }
        }
        for topic in table.iter() {
            for (partition, assignment) in (0..).zip(&topic.assignments) {
                if self.owner_of(&topic.name, partition) != self.id
                    || !assignment.replicas.contains(&node_id)
                    || self.partition(&topic.name, partition).is_some()
                {
                    continue;
                }
                if let Err(e) = self.open_partition(topic, partition).await {
                    tracing::error!("cannot open partition {}-{partition}: {e}", topic.name);
                }
            }
        }
        self.apply_assignments(&table);
        self.groups
            .follow_leadership(self.led_coordinator_partitions());
        self.ready.set(true);
        self.table_applied.notify_all();
    }

    async fn open_partition(&self, topic: &TopicInfo, partition: i32) -> Result<(), String> {
        let broker = self.broker_config_for(&self.topics());
        let settings = topic_settings(&broker, &topic.config);
        let dir = partition_dir(&self.config.log_dir, &topic.name, partition);
        write_new_partition_files(&dir, topic)
            .map_err(|e| format!("cannot write the files of {}: {e}", dir.display()))?;
        let log = PartitionLog::open(&dir, settings.log, self.clock.clone())
            .await
            .map_err(|e| e.to_string())?;
        // The owner check ran before the await; the table may have changed meanwhile.
        let table = self.topics();
        if table.get(&topic.name).map(|t| t.id) != Some(topic.id)
            || !table
                .assignment(&topic.name, partition)
                .is_some_and(|a| a.replicas.contains(&self.config.node_id))
        {
            return log.close().await.map_err(|e| e.to_string());
        }
        tracing::info!(
            shard = self.id,
            "partition {}-{partition} owned by shard {}",
            topic.name,
            self.id
        );
        producer_ids::note_seen(log.max_producer_id());
        log.set_producer_id_expiration_ms(broker.producer_id_expiration_ms);
        let p = Partition::new(
            log,
            &topic.name,
            partition,
            topic.id,
            self.replication.clone(),
        );
        p.max_message_bytes.set(settings.max_message_bytes);
        p.min_insync_replicas.set(settings.min_insync_replicas);
        // Its replica state before anyone can reach it: until then it would lead alone, so a
        // new topic's first acks=all writes were refused (NOT_ENOUGH_REPLICAS) or, with
        // min.insync.replicas=1, acknowledged before any follower had them.
        assign_from(&table, &topic.name, partition, &p);
        self.partitions
            .borrow_mut()
            .insert((topic.name.clone(), partition), p);
        Ok(())
    }
}
