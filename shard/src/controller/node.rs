//! The cluster thread: a dedicated OS thread running a tokio runtime (openraft needs tokio;
//! the shards run glommio) that hosts this node's controller (if it has the role) and its
//! broker link (if it has that role).
//!
//! ```text
//! let node = ClusterNode::start(settings)?;         // errors: bad settings, metadata, bind
//! let link = node.broker().cloned();                 // hand to the shards
//! ...
//! node.shutdown();                                   // fence self, stop Raft, join the thread
//! ```

use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::broker_link::{self, BrokerLink};
use super::client::{ControllerClient, Transport};
use super::metadata_files::MetadataError;
use super::server;
use super::settings::ClusterSettings;
use super::voter::Voter;

/// Why the cluster thread could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster settings: {0}")]
    Config(String),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("cannot listen for controller traffic on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("controller: {0}")]
    Raft(String),
    #[error("cannot start the cluster thread: {0}")]
    Thread(std::io::Error),
}

/// A running cluster thread.
pub struct ClusterNode {
    shutdown: Arc<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
    broker: Option<BrokerLink>,
    controller: Option<Arc<Voter>>,
    controller_addr: Option<SocketAddr>,
}

struct Started {
    broker: Option<BrokerLink>,
    controller: Option<Arc<Voter>>,
    controller_addr: Option<SocketAddr>,
}

impl ClusterNode {
    /// Starts the cluster thread and returns once the controller (if any) has opened its
    /// metadata and bound its listener, and the broker link (if any) is running.
    pub fn start(settings: ClusterSettings) -> Result<ClusterNode, ClusterError> {
        check(&settings)?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (started_tx, started_rx) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("spate-cluster-{}", settings.node_id))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = started_tx.send(Err(ClusterError::Thread(e)));
                        return;
                    }
                };
                runtime.block_on(run(settings, shutdown_rx, started_tx));
            })
            .map_err(ClusterError::Thread)?;
        let started = started_rx.recv().unwrap_or_else(|_| {
            Err(ClusterError::Thread(std::io::Error::other(
                "the cluster thread ended while starting",
            )))
        });
        match started {
            Ok(s) => Ok(ClusterNode {
                shutdown: Arc::new(shutdown),
                thread: Some(thread),
                broker: s.broker,
                controller: s.controller,
                controller_addr: s.controller_addr,
            }),
            Err(e) => {
                let _ = thread.join();
                Err(e)
            }
        }
    }

    /// The broker link, if this node has the broker role.
    pub fn broker(&self) -> Option<&BrokerLink> {
        self.broker.as_ref()
    }

    /// The controller, if this node has the controller role.
    pub fn controller(&self) -> Option<&Arc<Voter>> {
        self.controller.as_ref()
    }

    /// The bound controller listener address, if there is one.
    pub fn controller_addr(&self) -> Option<SocketAddr> {
        self.controller_addr
    }

    /// Begins the controlled shutdown from any thread (at SIGTERM, before the shards close,
    /// so leadership moves while they drain); [`ClusterNode::shutdown`] then waits for it.
    pub fn stopper(&self) -> impl Fn() + Send + 'static {
        let shutdown = self.shutdown.clone();
        move || {
            let _ = shutdown.send(true);
        }
    }

    /// Controlled shutdown: the broker fences itself (bounded by its request timeout), the
    /// controller stops, the thread ends. Blocks until done.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the cluster thread panicked");
            }
        }
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        self.stop();
    }
}

fn check(settings: &ClusterSettings) -> Result<(), ClusterError> {
    let in_voters = settings
        .voters
        .iter()
        .any(|v| v.node_id == settings.node_id);
    match (&settings.controller, settings.voters.is_empty()) {
        (None, true) => Err(ClusterError::Config(format!(
            "node {} has no controller role and controller.quorum.voters is empty: it has no controller to join",
            settings.node_id
        ))),
        (Some(_), false) if !in_voters => Err(ClusterError::Config(format!(
            "node {} has the controller role but is not in controller.quorum.voters",
            settings.node_id
        ))),
        (None, false) if in_voters => Err(ClusterError::Config(format!(
            "node {} is in controller.quorum.voters but has no controller role",
            settings.node_id
        ))),
        _ if settings.controller.is_none() && settings.broker.is_none() => Err(ClusterError::Config(
            format!("node {} has neither the broker nor the controller role", settings.node_id),
        )),
        _ => Ok(()),
    }
}

async fn run(
    settings: ClusterSettings,
    mut shutdown: watch::Receiver<bool>,
    started: std_mpsc::Sender<Result<Started, ClusterError>>,
) {
    let mut controller = None;
    let mut controller_addr = None;
    if let Some(cs) = settings.controller.clone() {
        let listener = if settings.voters.is_empty() {
            None
        } else {
            let own = settings
                .voters
                .iter()
                .find(|v| v.node_id == settings.node_id);
            let addr = cs
                .listen
                .clone()
                .or_else(|| own.map(|v| v.addr.clone()))
                .unwrap_or_default();
            match TcpListener::bind(&addr).await {
                Ok(l) => Some(l),
                Err(source) => {
                    let _ = started.send(Err(ClusterError::Bind { addr, source }));
                    return;
                }
            }
        };
        let voter = match Voter::start(
            settings.node_id,
            &settings.voters,
            cs,
            settings.max_frame_bytes,
        )
        .await
        {
            Ok(v) => v,
            Err(e) => {
                let _ = started.send(Err(e));
                return;
            }
        };
        if let Some(listener) = listener {
            controller_addr = listener.local_addr().ok();
            tokio::spawn(server::serve(
                listener,
                voter.clone(),
                settings.max_frame_bytes,
            ));
        }
        tokio::spawn(voter.clone().run_duties(shutdown.clone()));
        controller = Some(voter);
    }
    let mut link_done = None;
    let mut broker = None;
    if let Some(bs) = settings.broker.clone() {
        let transport = match (&controller, settings.voters.is_empty()) {
            (Some(voter), true) => Transport::Local(voter.clone()),
            _ => Transport::Remote {
                voters: settings.voters.clone(),
                pool: Default::default(),
                max_frame_bytes: settings.max_frame_bytes,
            },
        };
        let client = Arc::new(ControllerClient::new(transport));
        let (link, done) = broker_link::start(settings.node_id, bs, client, shutdown.clone());
        broker = Some(link);
        link_done = Some(done);
    }
    let _ = started.send(Ok(Started {
        broker,
        controller: controller.clone(),
        controller_addr,
    }));
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            break;
        }
    }
    // The fence needs the quorum, so the broker goes first.
    if let Some(done) = link_done {
        done.await;
    }
    if let Some(voter) = controller {
        voter.shutdown().await;
    }
}
