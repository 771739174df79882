//! Awaiting, on a shard, a future that another thread completes (the cluster thread's
//! replies and images). glommio can miss a wake-up sent from a thread outside its executors
//! while the executor goes to sleep: a test awaiting the broker link hung forever that way
//! under load. So such futures are also polled on a timer: a lost wake-up costs at most
//! [`FOREIGN_POLL_INTERVAL`], never a hang.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

/// How often a future completed by another thread is polled besides its own wake-ups.
pub const FOREIGN_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Awaits `future` on a glommio executor when another thread completes it.
pub async fn foreign<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    loop {
        let woken = futures_lite::future::or(async { Some(future.as_mut().await) }, async {
            glommio::timer::sleep(FOREIGN_POLL_INTERVAL).await;
            None
        });
        if let Some(output) = woken.await {
            return output;
        }
    }
}
