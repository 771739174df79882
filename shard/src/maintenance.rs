//! A shard's background work on its partitions: scheduled flushes and retention.

use std::rc::Rc;
use std::time::Duration;

use crate::shard::Shard;

impl Shard {
    /// Fsyncs partitions with a `flush.ms` policy whose data has waited that long. The log
    /// checks the policy on each append; this covers data that stops being appended to.
    /// It wakes every smallest `flush.ms` among this shard's partitions (or every
    /// `log.retention.check.interval.ms` to look again when none has one).
    pub(crate) async fn flush_loop(self: Rc<Self>) {
        let idle = Duration::from_millis(self.config.log_retention_check_interval_ms);
        loop {
            let partitions: Vec<_> = self.partitions.borrow().values().cloned().collect();
            // flush.ms 0 means every append is flushed as it lands: nothing waits.
            let timed: Vec<_> = partitions
                .into_iter()
                .filter_map(|p| {
                    p.log
                        .config()
                        .flush_ms
                        .filter(|ms| *ms > 0)
                        .map(|ms| (p, ms))
                })
                .collect();
            let interval = timed
                .iter()
                .map(|(_, ms)| Duration::from_millis(*ms))
                .min()
                .unwrap_or(idle);
            futures_lite::future::or(glommio::timer::sleep(interval), self.until_stopping()).await;
            // The pass keeps close() from closing a log under this flush.
            let Some(_pass) = self.enter() else {
                return;
            };
            for (p, _) in timed {
                if p.log.recovery_point() < p.log.log_end_offset() {
                    if let Err(e) = p.log.flush().await {
                        tracing::error!("scheduled flush failed: {e}");
                    }
                }
            }
        }
    }

    /// Deletes segments past retention, every `log.retention.check.interval.ms`.
    pub(crate) async fn retention_loop(self: Rc<Self>) {
        let interval = Duration::from_millis(self.config.log_retention_check_interval_ms);
        loop {
            futures_lite::future::or(glommio::timer::sleep(interval), self.until_stopping()).await;
            let Some(_pass) = self.enter() else {
                return;
            };
            let partitions: Vec<_> = self.partitions.borrow().values().cloned().collect();
            for p in partitions {
                if let Err(e) = p.log.enforce_retention().await {
                    tracing::warn!("retention failed: {e}");
                }
            }
        }
    }
}
