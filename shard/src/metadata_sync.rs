//! The broker follows the controller: shard 0 turns every cluster image the broker link
//! receives into a [`TopicTable`] and publishes it to every shard, which open, lead, follow
//! or drop their partitions accordingly. Metadata writes (topic creation, configs, ...) go
//! to the controller, and the shard answers once the image carrying them is applied here,
//! so a client that created a topic finds it in its next Metadata request.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;

use crate::controller::commands::{Command, CommandOutcome};
use crate::foreign_await::foreign;
use crate::messages::{Reply, Request, TopicError};
use crate::shard::{Shard, CONTROLLER_SHARD};
use crate::topics::TopicTable;

/// How long a metadata write waits for the controller's answer and then for its image
/// (Kafka's admin `request.timeout.ms` default).
pub const METADATA_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

impl Shard {
    /// Shard 0: publishes each new image until shutdown. Images that arrive while one is
    /// being applied are coalesced: only the newest is applied next.
    pub(crate) async fn follow_images(self: std::rc::Rc<Self>) {
        let mut watch = self.cluster.watch();
        let mut image = self.cluster.latest();
        loop {
            // The first table waits for this broker's own registration: until then the
            // controller cannot place replicas on it, and clients would be refused.
            let registered = image.brokers.contains_key(&self.config.node_id);
            if image.version > 0 && (registered || self.ready.get()) {
                let table = Arc::new(TopicTable::from_image(&image, self.config.node_id));
                self.publish(table.clone()).await;
                *self.published.borrow_mut() = table;
                self.table_applied.notify_all();
            }
            let next = futures_lite::future::or(foreign(watch.changed()), async {
                self.until_stopping().await;
                None
            })
            .await;
            match next {
                Some(newer) => image = newer,
                None => return,
            }
        }
    }

    /// Installs `table` on every shard and waits until each has opened, closed or deleted
    /// its partitions accordingly.
    pub(crate) async fn publish(&self, table: Arc<TopicTable>) {
        let peers = (0..self.count).filter(|s| *s != self.id).map(|s| {
            let table = table.clone();
            async move { self.call(s, Request::Apply(table)).await }
        });
        futures_util::future::join(
            self.apply(table.clone()),
            futures_util::future::join_all(peers),
        )
        .await;
    }

    /// Runs a metadata write on shard 0, which publishes the images, so that its answer can
    /// wait until every shard has applied the change (see [`Shard::wait_for_table`]).
    pub(crate) async fn call_metadata_shard(&self, request: Request) -> Option<Reply> {
        if self.id == CONTROLLER_SHARD {
            Some(self.handle(request).await)
        } else {
            self.call(CONTROLLER_SHARD, request).await
        }
    }

    /// Runs a metadata request answered with one result per item (`count` of them) on shard
    /// 0; `unpack` takes the results out of the reply. Without an answer (shutdown) every
    /// item gets "shutting down".
    pub(crate) async fn on_metadata_shard<T>(
        &self,
        request: Request,
        count: usize,
        unpack: impl FnOnce(Reply) -> Option<Vec<Result<T, TopicError>>>,
    ) -> Vec<Result<T, TopicError>> {
        self.call_metadata_shard(request)
            .await
            .and_then(unpack)
            .unwrap_or_else(|| (0..count).map(|_| Err(shutting_down())).collect())
    }

    /// Commits `command` through the controller, then waits until this shard's table shows
    /// its effect on every shard (`applied`), so the caller answers with the change visible.
    /// Runs on shard 0.
    pub(crate) async fn write_metadata(
        &self,
        command: Command,
        applied: impl Fn(&TopicTable) -> bool,
    ) -> Result<(), TopicError> {
        self.await_write(self.cluster.submit(command), applied)
            .await
    }

    /// Waits for a write the broker link is carrying (see [`Shard::write_metadata`]).
    pub(crate) async fn await_write(
        &self,
        write: impl std::future::Future<
            Output = Result<CommandOutcome, crate::controller::client::LinkError>,
        >,
        applied: impl Fn(&TopicTable) -> bool,
    ) -> Result<(), TopicError> {
        committed(write).await?;
        if self.wait_for_table(applied, METADATA_WRITE_TIMEOUT).await {
            Ok(())
        } else {
            Err(timed_out())
        }
    }

    /// Shard 0: waits until the table every shard has applied satisfies `done`; false after
    /// `timeout` or at shutdown.
    pub(crate) async fn wait_for_table(
        &self,
        done: impl Fn(&TopicTable) -> bool,
        timeout: Duration,
    ) -> bool {
        let wait = async {
            loop {
                let seen = self.table_applied.version();
                if done(&self.published.borrow()) {
                    return true;
                }
                if self.is_stopping() {
                    return false;
                }
                futures_lite::future::or(self.table_applied.changed_since(seen), async {
                    self.until_stopping().await;
                })
                .await;
            }
        };
        futures_lite::future::or(wait, async {
            glommio::timer::sleep(timeout).await;
            false
        })
        .await
    }
}

/// Waits (on any shard) until the controller has committed a write, and returns what it did;
/// a refusal is an error.
pub(crate) async fn committed(
    write: impl std::future::Future<
        Output = Result<CommandOutcome, crate::controller::client::LinkError>,
    >,
) -> Result<CommandOutcome, TopicError> {
    let outcome = futures_lite::future::or(async { Some(foreign(write).await) }, async {
        glommio::timer::sleep(METADATA_WRITE_TIMEOUT).await;
        None
    })
    .await;
    match outcome {
        None => Err(timed_out()),
        Some(Err(e)) => Err(TopicError {
            error: ResponseError::NotController,
            message: e.to_string(),
        }),
        Some(Ok(CommandOutcome::Refused(refusal))) => Err(TopicError {
            error: refusal.error(),
            message: refusal.message,
        }),
        Some(Ok(outcome)) => Ok(outcome),
    }
}

fn timed_out() -> TopicError {
    TopicError {
        error: ResponseError::RequestTimedOut,
        message: "the controller did not apply the change in time; it may still be applied".into(),
    }
}

fn shutting_down() -> TopicError {
    TopicError {
        error: ResponseError::BrokerNotAvailable,
        message: "the broker is shutting down".into(),
    }
}
