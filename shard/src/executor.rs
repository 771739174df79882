//! Starts the shards: one glommio executor per shard, pinned to a core, each with its own
//! io_uring rings, all joined by the router's channel mesh.

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};
use spate_core::config::{BrokerConfig, CpuPinning};

use crate::connection_load::ConnectionLoad;
use crate::controller::broker_link::BrokerLink;
use crate::router::mesh;
use crate::shard::Shard;
use crate::start_barrier::StartBarrier;

/// Messages in flight from one shard to another before a sender waits. Not yet a
/// `BrokerConfig` key (the config schema is owned elsewhere); a request only waits here when
/// its peer is this far behind.
pub const SHARD_QUEUE_DEPTH: usize = 1024;

/// The CPUs this process may run on, from `Cpus_allowed_list` in /proc/self/status
/// (e.g. `0-3,8`); empty when it cannot be read.
fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let Some(list) = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
    else {
        return Vec::new();
    };
    parse_cpu_list(list.trim()).unwrap_or_default()
}

/// Parses the kernel's CPU list format: comma-separated ids and inclusive ranges.
fn parse_cpu_list(list: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((from, to)) => cpus.extend(from.parse::<usize>().ok()?..=to.parse().ok()?),
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// Where shard `id` of `count` runs, by `cpu.pinning` (see [`CpuPinning`]) over `cpus`, the
/// CPUs this process may use (a container or taskset may allow only some). Without that list
/// the kernel places the shard.
fn placement(pinning: CpuPinning, id: usize, count: usize, cpus: &[usize]) -> Placement {
    let pinned = match pinning {
        CpuPinning::Auto => count == cpus.len(),
        CpuPinning::Always => true,
        CpuPinning::Never => false,
    };
    match cpus.get(id % cpus.len().max(1)) {
        Some(cpu) if pinned => Placement::Fixed(*cpu),
        _ => Placement::Unbound,
    }
}

/// The shard count to run: `config.shards`, or one per available core when it is 0.
pub fn shard_count(config: &BrokerConfig) -> usize {
    if config.shards > 0 {
        config.shards
    } else {
        std::thread::available_parallelism().map_or(1, usize::from)
    }
}

/// Runs `serve` on every shard once every shard has started (opened its partitions and
/// loaded its group offsets; see `start_barrier`), then closes the shard's partitions when
/// `serve` returns. Blocks until every shard has finished; the first
/// error (a shard that could not start or serve) is returned.
pub fn run<F, Fut>(config: Arc<BrokerConfig>, cluster: BrokerLink, serve: F) -> Result<(), String>
where
    F: Fn(Rc<Shard>) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = Result<(), String>> + 'static,
{
    let count = shard_count(&config);
    let cpus = allowed_cpus();
    let barrier = Arc::new(StartBarrier::new(count));
    let load = Arc::new(ConnectionLoad::new(count));
    let mut handles = Vec::with_capacity(count);
    for (id, links) in mesh(count, SHARD_QUEUE_DEPTH).into_iter().enumerate() {
        let config = config.clone();
        let serve = serve.clone();
        let barrier = barrier.clone();
        let cluster = cluster.clone();
        let load = load.clone();
        let placement = placement(config.cpu_pinning, id, count, &cpus);
        let builder = LocalExecutorBuilder::new(placement)
            .name(&format!("spate-shard-{id}"))
            .io_memory(config.io_memory_bytes)
            .spin_before_park(Duration::from_micros(config.spin_before_park_us));
        let handle = builder
            .spawn(move || async move {
                let guard = barrier.guard();
                let shard = Shard::start(id, count, config, links, cluster, load).await;
                guard.disarm();
                tracing::info!(
                    shard = id,
                    partitions = shard.partition_count(),
                    "shard started"
                );
                let served = if barrier.arrive_and_wait().await {
                    serve(shard.clone()).await
                } else {
                    Err(format!("shard {id} stops: another shard failed to start"))
                };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_like_the_kernel_writes_them() {
        assert_eq!(parse_cpu_list("0-3,8"), Some(vec![0, 1, 2, 3, 8]));
        assert_eq!(parse_cpu_list("5"), Some(vec![5]));
        assert_eq!(parse_cpu_list("x"), None);
        assert!(!allowed_cpus().is_empty());
    }

    #[test]
    fn shards_are_pinned_by_default_only_when_there_is_one_per_allowed_cpu() {
        let pinned_to = |p: Placement| match p {
            Placement::Fixed(cpu) => Some(cpu),
            _ => None,
        };
        let auto =
            |id, count, cpus: &[usize]| pinned_to(placement(CpuPinning::Auto, id, count, cpus));
        assert_eq!(auto(1, 2, &[4, 6]), Some(6));
        // One shard on a 2-CPU host: another broker there would be pinned to CPU 4 too.
        assert_eq!(auto(0, 1, &[4, 6]), None);
        assert_eq!(auto(2, 3, &[4, 6]), None);
        assert_eq!(auto(0, 1, &[]), None);
        let always =
            |id, count, cpus: &[usize]| pinned_to(placement(CpuPinning::Always, id, count, cpus));
        assert_eq!(always(0, 1, &[4, 6]), Some(4));
        assert_eq!(always(2, 3, &[4, 6]), Some(4));
        assert_eq!(always(0, 1, &[]), None);
        assert_eq!(pinned_to(placement(CpuPinning::Never, 0, 2, &[4, 6])), None);
    }
}
