//! The start-up barrier: no shard serves clients until every shard has opened its
//! partitions and loaded its consumer-offsets logs.
//!
//! With SO_REUSEPORT the kernel hands a connection to any shard that listens. If one shard
//! listened while another was still recovering its logs (after a crash that can take
//! seconds), a request for the slow shard's partitions would get UNKNOWN_TOPIC_OR_PARTITION
//! and a group call COORDINATOR_LOAD_IN_PROGRESS. Kafka too accepts connections only once
//! its logs are recovered.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// How often a waiting shard looks whether the others have arrived. The wait is once per
/// start, so polling costs nothing that matters; a blocking wait would stall the shard's
/// executor, which must keep answering its peers while they finish starting.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

pub struct StartBarrier {
    shards: usize,
    arrived: AtomicUsize,
    /// Set when a shard stopped before arriving (its thread panicked): the rest must not
    /// wait for it forever.
    abandoned: AtomicBool,
}

impl StartBarrier {
    pub fn new(shards: usize) -> StartBarrier {
        StartBarrier {
            shards,
            arrived: AtomicUsize::new(0),
            abandoned: AtomicBool::new(false),
        }
    }

    /// Arrives and waits for every other shard. `false` when a shard will never arrive.
    pub async fn arrive_and_wait(&self) -> bool {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        loop {
            if self.abandoned.load(Ordering::SeqCst) {
                return false;
            }
            if self.arrived.load(Ordering::SeqCst) >= self.shards {
                return true;
            }
            glommio::timer::sleep(POLL_INTERVAL).await;
        }
    }

    /// A guard that abandons the barrier if dropped before `disarm` (a shard that unwinds
    /// while starting).
    pub fn guard(&self) -> AbandonOnDrop<'_> {
        AbandonOnDrop {
            barrier: self,
            armed: true,
        }
    }
}

pub struct AbandonOnDrop<'a> {
    barrier: &'a StartBarrier,
    armed: bool,
}

impl AbandonOnDrop<'_> {
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for AbandonOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.barrier.abandoned.store(true, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// One shard's wait, on its own executor.
    fn wait_on_executor(barrier: Arc<StartBarrier>) -> bool {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(512 * 1024)
            .spawn(move || async move { barrier.arrive_and_wait().await })
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn nobody_passes_until_everyone_arrives() {
        let barrier = Arc::new(StartBarrier::new(2));
        let first = barrier.clone();
        let waiter = std::thread::spawn(move || wait_on_executor(first));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "passed with one shard of two");
        assert!(wait_on_executor(barrier));
        assert!(waiter.join().unwrap());
    }

    #[test]
    fn a_shard_that_dies_starting_releases_the_others() {
        let barrier = Arc::new(StartBarrier::new(2));
        drop(barrier.guard());
        assert!(!wait_on_executor(barrier.clone()));
        // A disarmed guard (a shard that started) abandons nothing.
        let fresh = Arc::new(StartBarrier::new(1));
        fresh.guard().disarm();
        assert!(wait_on_executor(fresh));
    }
}
