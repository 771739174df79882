//! One controller: an openraft node over the [`MetadataStore`], answering the controller RPCs
//! and, while it is the active controller (the Raft leader), doing the leader's duties:
//! tracking broker heartbeats, fencing brokers silent for `broker.session.timeout.ms`,
//! unfencing them when they return, and placing new partitions' replicas.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kafka_protocol::ResponseError;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use super::assignment::assign_replicas;
use super::commands::{Command, CommandOutcome, Refusal};
use super::image::ClusterImage;
use super::node::ClusterError;
use super::raft_network::PeerNetwork;
use super::raft_store::MetadataStore;
use super::raft_types::{NodeId, Raft};
use super::rpc::{Request, Response, Write};
use super::settings::{ControllerSettings, VoterAddress};

/// A running controller. Shared by the listener's connections, the broker link of the same
/// node (single-node mode) and the duties loop.
pub struct Voter {
    node_id: NodeId,
    raft: Raft,
    images: watch::Receiver<Arc<ClusterImage>>,
    sessions: Mutex<Sessions>,
    settings: ControllerSettings,
}

/// Heartbeats seen by the active controller (in memory only: a new active controller starts
/// afresh and gives every broker a whole session timeout).
#[derive(Default)]
struct Sessions {
    leader_since: Option<Instant>,
    last_seen: HashMap<i32, Instant>,
}

impl Voter {
    /// Opens the metadata directory and starts the Raft node. With `voters` empty this is a
    /// single-node quorum of itself.
    pub(crate) async fn start(
        node_id: i32,
        voters: &[VoterAddress],
        settings: ControllerSettings,
        max_frame_bytes: usize,
    ) -> Result<Arc<Voter>, ClusterError> {
        let id = raft_id(node_id)?;
        let store = MetadataStore::open(&settings.metadata_dir, id)?;
        let empty = store.is_empty();
        let images = store.images();
        let (log_store, state_machine) = openraft::storage::Adaptor::new(store);
        let election = settings.election_timeout.as_millis().max(3) as u64;
        let config = Config {
            cluster_name: "spate".to_string(),
            election_timeout_min: election,
            election_timeout_max: election * 2,
            heartbeat_interval: (election / 3).max(1),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_after_entries),
            // A voter that was away briefly catches up from the log, not a snapshot.
            max_in_snapshot_log_to_keep: settings.snapshot_after_entries,
            // Keeps a snapshot chunk (JSON-encoded bytes) well inside a frame.
            snapshot_max_chunk_size: (max_frame_bytes as u64 / 8).clamp(1024, 1 << 20),
            ..Config::default()
        }
        .validate()
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let network = PeerNetwork { max_frame_bytes };
        let raft = Raft::new(id, Arc::new(config), network, log_store, state_machine)
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let members: BTreeMap<NodeId, BasicNode> = if voters.is_empty() {
            [(id, BasicNode::new(""))].into()
        } else {
            voters
                .iter()
                .map(|v| Ok((raft_id(v.node_id)?, BasicNode::new(&v.addr))))
                .collect::<Result<_, ClusterError>>()?
        };
        // The voter set is created once, by the smallest id, when it has never run.
        if empty && members.keys().next() == Some(&id) {
            match raft.initialize(members).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(ClusterError::Raft(e.to_string())),
            }
        }
        Ok(Arc::new(Voter {
            node_id: id,
            raft,
            images,
            sessions: Mutex::new(Sessions::default()),
            settings,
        }))
    }

    /// The image as applied on this controller.
    pub fn image(&self) -> Arc<ClusterImage> {
        self.images.borrow().clone()
    }

    /// Follows the image applied on this controller.
    pub fn images(&self) -> watch::Receiver<Arc<ClusterImage>> {
        self.images.clone()
    }

    /// The active controller as this one knows it.
    pub fn current_leader(&self) -> Option<i32> {
        self.raft
            .metrics()
            .borrow()
            .current_leader
            .and_then(|l| i32::try_from(l).ok())
    }

    /// Whether this controller is the active one.
    pub fn is_active(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.node_id)
    }

    pub(crate) async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("controller {}: raft shutdown: {e}", self.node_id);
        }
    }

    /// Answers one controller RPC.
    pub(crate) async fn handle(&self, request: Request) -> Response {
        match request {
            Request::AppendEntries(r) => Response::AppendEntries(self.raft.append_entries(r).await),
            Request::Vote(r) => Response::Vote(self.raft.vote(r).await),
            Request::InstallSnapshot(r) => {
                Response::InstallSnapshot(self.raft.install_snapshot(r).await)
            }
            Request::Register {
                node_id,
                host,
                port,
                rack,
                incarnation,
            } => {
                if !self.is_active() {
                    return self.not_controller();
                }
                let command = Command::RegisterBroker {
                    node_id,
                    host,
                    port,
                    rack,
                    incarnation,
                };
                match self.propose(command).await {
                    Ok(CommandOutcome::BrokerRegistered { epoch }) => {
                        self.seen(node_id);
                        Response::Registered { epoch }
                    }
                    Ok(other) => Response::Written(other),
                    Err(response) => response,
                }
            }
            Request::Heartbeat {
                node_id,
                epoch,
                image_version,
            } => self.heartbeat(node_id, epoch, image_version).await,
            Request::WatchImage {
                image_version,
                max_wait_ms,
            } => self.watch_image(image_version, max_wait_ms).await,
            Request::Write(write) => match self.write(write).await {
                Ok(outcome) => Response::Written(outcome),
                Err(response) => response,
            },
        }
    }

    fn not_controller(&self) -> Response {
        Response::NotController {
            leader: self
                .current_leader()
                .filter(|&l| l as NodeId != self.node_id),
        }
    }

    /// Commits a command; `Err` is the answer to give instead (not the active controller, or
    /// the node is failing).
    async fn propose(&self, command: Command) -> Result<CommandOutcome, Response> {
        match self.raft.client_write(command).await {
            Ok(written) => Ok(written.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(Response::NotController {
                    leader: f.leader_id.and_then(|l| i32::try_from(l).ok()),
                })
            }
            Err(e) => Err(Response::Failed {
                message: format!("controller {}: {e}", self.node_id),
            }),
        }
    }

    fn seen(&self, node_id: i32) {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.last_seen.insert(node_id, Instant::now());
    }

    async fn heartbeat(&self, node_id: i32, epoch: u64, image_version: u64) -> Response {
        if !self.is_active() {
            return self.not_controller();
        }
        let mut image = self.image();
        let Some(broker) = image.brokers.get(&node_id) else {
            return Response::UnknownRegistration;
        };
        if broker.epoch != epoch {
            return Response::UnknownRegistration;
        }
        self.seen(node_id);
        if broker.fenced {
            if let Err(response) = self
                .propose(Command::UnfenceBroker { node_id, epoch })
                .await
            {
                return response;
            }
            image = self.image();
        }
        Response::Heartbeat {
            fenced: image.brokers.get(&node_id).is_none_or(|b| b.fenced),
            image: (image.version > image_version).then(|| Box::new((*image).clone())),
        }
    }

    async fn watch_image(&self, image_version: u64, max_wait_ms: u64) -> Response {
        if !self.is_active() {
            return self.not_controller();
        }
        let mut images = self.images.clone();
        let deadline = Instant::now() + Duration::from_millis(max_wait_ms);
        loop {
            let image = images.borrow_and_update().clone();
            if image.version > image_version {
                return Response::Image(Some(Box::new((*image).clone())));
            }
            match tokio::time::timeout_at(deadline, images.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Response::Failed {
                        message: format!("controller {} is shutting down", self.node_id),
                    }
                }
                Err(_) => return Response::Image(None),
            }
        }
    }

    async fn write(&self, write: Write) -> Result<CommandOutcome, Response> {
        let command = match write {
            Write::Command(command) => command,
            Write::CreateTopic {
                name,
                partitions,
                replication_factor,
                config,
            } => {
                if !self.is_active() {
                    return Err(self.not_controller());
                }
                let brokers = self.unfenced_brokers();
                match assign_replicas(
                    &brokers,
                    0,
                    partitions as usize,
                    usize::from(replication_factor),
                    random_start(),
                ) {
                    Ok(lists) => Command::CreateTopic {
                        name,
                        id: Uuid::new_v4(),
                        partitions: lists,
                        config,
                    },
                    Err(refusal) => return Ok(CommandOutcome::Refused(refusal)),
                }
            }
            Write::CreatePartitions { topic, total } => {
                if !self.is_active() {
                    return Err(self.not_controller());
                }
                let image = self.image();
                let Some(t) = image.topics.get(&topic) else {
                    return Ok(CommandOutcome::Refused(Refusal::new(
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic '{topic}' does not exist"),
                    )));
                };
                let existing = t.partitions.len();
                if total as usize <= existing {
                    return Ok(CommandOutcome::Refused(Refusal::new(
                        ResponseError::InvalidPartitions,
                        format!("topic '{topic}' has {existing} partitions; asked for {total}"),
                    )));
                }
                let rf = t.partitions.first().map_or(1, |p| p.replicas.len());
                let brokers = self.unfenced_brokers();
                match assign_replicas(
                    &brokers,
                    existing,
                    total as usize - existing,
                    rf,
                    random_start(),
                ) {
                    Ok(lists) => Command::CreatePartitions {
                        topic,
                        new_partitions: lists,
                    },
                    Err(refusal) => return Ok(CommandOutcome::Refused(refusal)),
                }
            }
        };
        self.propose(command).await
    }

    fn unfenced_brokers(&self) -> Vec<i32> {
        // BTreeMap order: sorted by id, as Kafka's assignment expects.
        self.image()
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| b.node_id)
            .collect()
    }

    /// The active controller's duties, until `shutdown` turns true: on becoming active,
    /// announce itself (cluster id, unclean default) and give every broker a fresh session;
    /// while active, fence brokers whose session expired and rebalance leaders.
    pub(crate) async fn run_duties(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let timeout = self.settings.broker_session_timeout;
        let mut tick = tokio::time::interval(
            (timeout / 4).clamp(Duration::from_millis(5), Duration::from_secs(1)),
        );
        let mut metrics = self.raft.metrics();
        let mut was_active = false;
        let mut last_rebalance = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = metrics.changed() => if changed.is_err() { return },
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            let active = self.is_active();
            if active && !was_active {
                tracing::info!("controller {} is now the active controller", self.node_id);
                *self.sessions.lock().unwrap_or_else(PoisonError::into_inner) = Sessions {
                    leader_since: Some(Instant::now()),
                    last_seen: HashMap::new(),
                };
                let activate = Command::ActivateController {
                    // Kafka's form: a random UUID as 22 characters of URL-safe base64.
                    cluster_id: crate::topics::encode_topic_id(Uuid::new_v4()),
                    unclean_leader_election_enable: self.settings.unclean_leader_election_enable,
                };
                if let Err(response) = self.propose(activate).await {
                    tracing::info!(
                        "controller {}: activation not committed: {response:?}",
                        self.node_id
                    );
                    continue;
                }
            }
            was_active = active;
            if active {
                self.fence_expired(timeout).await;
                if let Some(interval) = self.settings.leader_rebalance_interval {
                    if last_rebalance.elapsed() >= interval {
                        last_rebalance = Instant::now();
                        self.rebalance_leaders().await;
                    }
                }
            }
        }
    }

    /// Kafka's `auto.leader.rebalance.enable`: partitions led by another replica than
    /// their preferred one, while that one is alive and in sync, get it back as leader, so
    /// leadership spreads evenly again after brokers restart.
    async fn rebalance_leaders(&self) {
        let partitions = self.image().imbalanced_partitions();
        if partitions.is_empty() {
            return;
        }
        tracing::info!(
            "controller {}: moving {} partition leaders back to their preferred replicas",
            self.node_id,
            partitions.len()
        );
        let command = Command::ElectLeaders {
            unclean: false,
            partitions: Some(partitions),
        };
        if let Err(response) = self.propose(command).await {
            tracing::info!(
                "controller {}: leader rebalance not committed: {response:?}",
                self.node_id
            );
        }
    }

    async fn fence_expired(&self, timeout: Duration) {
        let now = Instant::now();
        let expired: Vec<(i32, u64)> = {
            let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(since) = sessions.leader_since else {
                return;
            };
            self.image()
                .brokers
                .values()
                .filter(|b| !b.fenced)
                .filter(|b| {
                    let last = sessions
                        .last_seen
                        .get(&b.node_id)
                        .map_or(since, |&t| t.max(since));
                    now.duration_since(last) >= timeout
                })
                .map(|b| (b.node_id, b.epoch))
                .collect()
        };
        for (node_id, epoch) in expired {
            tracing::warn!(
                "controller {}: broker {node_id} missed its heartbeats; fencing it",
                self.node_id
            );
            if let Err(response) = self.propose(Command::FenceBroker { node_id, epoch }).await {
                tracing::info!(
                    "controller {}: fencing {node_id} not committed: {response:?}",
                    self.node_id
                );
                return;
            }
        }
    }
}

fn raft_id(node_id: i32) -> Result<NodeId, ClusterError> {
    NodeId::try_from(node_id)
        .map_err(|_| ClusterError::Config(format!("node.id {node_id} must not be negative")))
}

/// Kafka picks the first broker of a new topic's assignment at random.
fn random_start() -> usize {
    (Uuid::new_v4().as_u128() % usize::MAX as u128) as usize
}
