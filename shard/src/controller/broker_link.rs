//! The broker's side of the cluster: on the cluster thread it registers with the active
//! controller (a new incarnation at every process start), heartbeats every
//! `broker.heartbeat.interval.ms`, keeps a long poll open for new images, and carries the
//! shards' metadata writes. At shutdown it fences itself, so the partitions it leads move
//! before it exits (Kafka's controlled shutdown).
//!
//! [`BrokerLink`] is the handle the shards hold. It is `Send + Sync + Clone` and its futures
//! (tokio's `sync` channels) need no tokio runtime, so glommio executors await them while the
//! cluster thread completes them.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use uuid::Uuid;

use super::client::{ControllerClient, LinkError};
use super::commands::{Command, CommandOutcome};
use super::image::ClusterImage;
use super::rpc::{Request, Response, Write};
use super::settings::BrokerSettings;

/// The shards' handle on the cluster metadata.
#[derive(Clone)]
pub struct BrokerLink {
    node_id: i32,
    images: watch::Receiver<Arc<ClusterImage>>,
    writes: mpsc::UnboundedSender<PendingWrite>,
}

/// Waits for new images.
pub struct ImageWatch {
    images: watch::Receiver<Arc<ClusterImage>>,
}

struct PendingWrite {
    write: Write,
    reply: oneshot::Sender<Result<CommandOutcome, LinkError>>,
}

impl BrokerLink {
    /// This broker's `node.id`.
    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// The newest image this broker has received (empty, version 0, before the first).
    pub fn latest(&self) -> Arc<ClusterImage> {
        self.images.borrow().clone()
    }

    /// A watch whose [`ImageWatch::changed`] wakes when a newer image arrives.
    pub fn watch(&self) -> ImageWatch {
        let mut images = self.images.clone();
        images.mark_unchanged();
        ImageWatch { images }
    }

    /// Commits a command through the active controller and returns its outcome (which may
    /// be a refusal carrying a Kafka error). `Err` means no controller could be reached in
    /// the broker's request timeout, or the link is shutting down.
    pub fn submit(
        &self,
        command: Command,
    ) -> impl Future<Output = Result<CommandOutcome, LinkError>> + Send + 'static {
        self.write(Write::Command(command))
    }

    /// Creates a topic whose replicas the active controller places over the unfenced
    /// brokers (Kafka's rack-unaware assignment).
    pub fn create_topic(
        &self,
        name: String,
        partitions: u32,
        replication_factor: u16,
        config: BTreeMap<String, String>,
    ) -> impl Future<Output = Result<CommandOutcome, LinkError>> + Send + 'static {
        self.write(Write::CreateTopic {
            name,
            partitions,
            replication_factor,
            config,
        })
    }

    /// Grows a topic to `total` partitions, placed by the active controller.
    pub fn create_partitions(
        &self,
        topic: String,
        total: u32,
    ) -> impl Future<Output = Result<CommandOutcome, LinkError>> + Send + 'static {
        self.write(Write::CreatePartitions { topic, total })
    }

    fn write(
        &self,
        write: Write,
    ) -> impl Future<Output = Result<CommandOutcome, LinkError>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let sent = self.writes.send(PendingWrite { write, reply });
        async move {
            sent.map_err(|_| LinkError::ShutDown)?;
            answer.await.map_err(|_| LinkError::ShutDown)?
        }
    }
}

impl ImageWatch {
    /// Waits for an image newer than the last one this watch returned (or than the one
    /// current when it was made); `None` once the link has shut down.
    pub async fn changed(&mut self) -> Option<Arc<ClusterImage>> {
        self.images.changed().await.ok()?;
        Some(self.images.borrow_and_update().clone())
    }
}

/// The link's tasks on the cluster thread.
pub(crate) struct LinkTasks {
    node_id: i32,
    settings: BrokerSettings,
    client: Arc<ControllerClient>,
    images: Arc<watch::Sender<Arc<ClusterImage>>>,
}

/// Starts the link's tasks on the current (cluster thread's) runtime. They run until
/// `shutdown` turns true; the returned future then resolves after the controlled-shutdown
/// fence.
pub(crate) fn start(
    node_id: i32,
    settings: BrokerSettings,
    client: Arc<ControllerClient>,
    shutdown: watch::Receiver<bool>,
) -> (BrokerLink, impl Future<Output = ()>) {
    let (images, images_rx) = watch::channel(Arc::new(ClusterImage::default()));
    let (writes, writes_rx) = mpsc::unbounded_channel();
    let tasks = Arc::new(LinkTasks {
        node_id,
        settings,
        client,
        images: Arc::new(images),
    });
    tokio::spawn(tasks.clone().watch_images(shutdown.clone()));
    tokio::spawn(tasks.clone().carry_writes(writes_rx, shutdown.clone()));
    let session = tokio::spawn(tasks.clone().session(shutdown));
    let done = async move {
        if let Ok(Some(epoch)) = session.await {
            tasks.fence_self(epoch).await;
        }
    };
    (
        BrokerLink {
            node_id,
            images: images_rx,
            writes,
        },
        done,
    )
}

impl LinkTasks {
    fn publish(&self, image: ClusterImage) {
        self.images.send_if_modified(|current| {
            let newer = image.version > current.version;
            if newer {
                *current = Arc::new(image);
            }
            newer
        });
    }

    fn version(&self) -> u64 {
        self.images.borrow().version
    }

    /// Registers, then heartbeats, until shutdown; returns the epoch it holds then.
    async fn session(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) -> Option<u64> {
        let incarnation = Uuid::new_v4();
        let interval = self.settings.heartbeat_interval;
        let mut epoch: Option<u64> = None;
        let mut next = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return epoch;
            }
            next = Instant::now() + interval;
            let request = match epoch {
                None => Request::Register {
                    node_id: self.node_id,
                    host: self.settings.host.clone(),
                    port: self.settings.port,
                    rack: self.settings.rack.clone(),
                    incarnation,
                },
                Some(epoch) => Request::Heartbeat {
                    node_id: self.node_id,
                    epoch,
                    image_version: self.version(),
                },
            };
            // A heartbeat that cannot get through within its interval is simply late.
            match self.client.call(&request, next).await {
                Ok(Response::Registered { epoch: e }) => {
                    tracing::info!("broker {} registered with epoch {e}", self.node_id);
                    epoch = Some(e);
                    // Heartbeat at once: it brings the image.
                    next = Instant::now();
                }
                Ok(Response::Heartbeat { image, .. }) => {
                    if let Some(image) = image {
                        self.publish(*image);
                    }
                }
                Ok(Response::UnknownRegistration) => {
                    tracing::info!(
                        "broker {}: the controller lost its registration; registering again",
                        self.node_id
                    );
                    epoch = None;
                    next = Instant::now();
                }
                Ok(other) => tracing::warn!(
                    "broker {}: unexpected controller answer {other:?}",
                    self.node_id
                ),
                Err(e) => tracing::warn!(
                    "broker {}: {}: {e}",
                    self.node_id,
                    if epoch.is_some() {
                        "heartbeat"
                    } else {
                        "registration"
                    }
                ),
            }
        }
    }

    async fn watch_images(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let wait = self.settings.heartbeat_interval;
        loop {
            let request = Request::WatchImage {
                image_version: self.version(),
                max_wait_ms: wait.as_millis() as u64,
            };
            // The poll may be held for `wait`; allow as long again to get through.
            let deadline = Instant::now() + wait * 2;
            tokio::select! {
                answer = self.client.call(&request, deadline) => match answer {
                    Ok(Response::Image(Some(image))) => self.publish(*image),
                    Ok(Response::Image(None)) => {}
                    Ok(other) => {
                        tracing::warn!("broker {}: unexpected controller answer {other:?}", self.node_id);
                        tokio::time::sleep(wait).await;
                    }
                    // `call` already retried and backed off until the deadline.
                    Err(e) => tracing::debug!("broker {}: image watch: {e}", self.node_id),
                },
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    async fn carry_writes(
        self: Arc<Self>,
        mut writes: mpsc::UnboundedReceiver<PendingWrite>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let pending = tokio::select! {
                pending = writes.recv() => pending,
                _ = shutdown.changed() => None,
            };
            let Some(PendingWrite { write, reply }) = pending else {
                return;
            };
            let this = self.clone();
            tokio::spawn(async move {
                let deadline = Instant::now() + this.settings.request_timeout;
                let answer = match this.client.call(&Request::Write(write), deadline).await {
                    Ok(Response::Written(outcome)) => Ok(outcome),
                    Ok(other) => Err(LinkError::Unexpected(format!("{other:?}"))),
                    Err(e) => Err(e),
                };
                // The asker may have given up; nothing to do then.
                let _ = reply.send(answer);
            });
        }
    }

    /// Controlled shutdown: fence this broker so its leaderships move now rather than after
    /// the session timeout.
    async fn fence_self(&self, epoch: u64) {
        let request = Request::Write(Write::Command(Command::FenceBroker {
            node_id: self.node_id,
            epoch,
        }));
        let deadline = Instant::now() + self.settings.request_timeout;
        match self.client.call(&request, deadline).await {
            Ok(Response::Written(CommandOutcome::Applied)) => {
                tracing::info!("broker {} fenced itself for shutdown", self.node_id)
            }
            Ok(other) => tracing::warn!(
                "broker {}: controlled shutdown fence answered {other:?}",
                self.node_id
            ),
            Err(e) => tracing::warn!(
                "broker {}: controlled shutdown fence failed: {e}",
                self.node_id
            ),
        }
    }
}
