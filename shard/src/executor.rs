//! Starts the shards: one glommio executor per shard, pinned to a core, each with its own
//! io_uring rings, all joined by the router's channel mesh.

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};
use spate_core::config::BrokerConfig;

use crate::router::mesh;
use crate::shard::{Shard, CONTROLLER_SHARD};
use crate::topics::scan_log_dir;

/// Messages in flight from one shard to another before a sender waits. Not yet a
/// `BrokerConfig` key (the config schema is owned elsewhere); a request only waits here when
/// its peer is this far behind.
pub const SHARD_QUEUE_DEPTH: usize = 1024;

/// The shard count to run: `config.shards`, or one per available core when it is 0.
pub fn shard_count(config: &BrokerConfig) -> usize {
    if config.shards > 0 {
        config.shards
    } else {
        std::thread::available_parallelism().map_or(1, usize::from)
    }
}

/// Runs `serve` on every shard once the shard is started, then closes the shard's
/// partitions when `serve` returns. Blocks until every shard has finished; the first
/// error (a shard that could not start or serve) is returned.
pub fn run<F, Fut>(config: Arc<BrokerConfig>, serve: F) -> Result<(), String>
where
    F: Fn(Rc<Shard>) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = Result<(), String>> + 'static,
{
    let count = shard_count(&config);
    // Read before any shard starts, so a bad log dir stops start-up with nothing running.
    let topics = scan_log_dir(&config.log_dir)
        .map_err(|e| format!("cannot read the log dir {}: {e}", config.log_dir.display()))?;
    tracing::info!(
        topics = topics.len(),
        "loaded topics from {}",
        config.log_dir.display()
    );
    let mut topics = Some(Arc::new(topics));
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut handles = Vec::with_capacity(count);
    for (id, links) in mesh(count, SHARD_QUEUE_DEPTH).into_iter().enumerate() {
        let config = config.clone();
        let serve = serve.clone();
        let initial_topics = if id == CONTROLLER_SHARD {
            topics.take()
        } else {
            None
        };
        let builder = LocalExecutorBuilder::new(Placement::Fixed(id % cores))
            .name(&format!("spate-shard-{id}"))
            .io_memory(config.io_memory_bytes)
            .spin_before_park(Duration::from_micros(config.spin_before_park_us));
        let handle = builder
            .spawn(move || async move {
                let shard = Shard::start(id, count, config, links, initial_topics).await;
                let served = serve(shard.clone()).await;
                shard.close().await;
                served
            })
            .map_err(|e| format!("cannot start shard {id}: {e}"))?;
        handles.push(handle);
    }
    let mut first_error = None;
    for (id, handle) in handles.into_iter().enumerate() {
        let result = match handle.join() {
            Ok(result) => result,
            Err(e) => Err(format!("shard {id} failed: {e}")),
        };
        if let Err(e) = result {
            tracing::error!("{e}");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
