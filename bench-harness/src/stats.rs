//! Counters and latency histograms shared by the worker threads and read by the reporter.
//! Workers add to atomics and to *interval* histograms; once a second the reporter drains
//! the interval histograms (for the progress line and the chart) into run totals.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Latencies are recorded in microseconds, from 1 µs to one hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

#[derive(Debug)]
pub struct Stats {
    pub sent_msgs: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub acked_msgs: AtomicU64,
    pub acked_bytes: AtomicU64,
    pub failed_msgs: AtomicU64,
    pub consumed_msgs: AtomicU64,
    pub consumed_bytes: AtomicU64,
    /// Intended send time to acknowledgement, µs.
    pub produce_latency: Mutex<Histogram<u64>>,
    /// Intended send time to consumption, µs.
    pub e2e_latency: Mutex<Histogram<u64>>,
    /// CPU time of the producer and ack-reader threads, µs (added as each thread ends).
    pub generator_cpu_us: AtomicU64,
    /// Error name to occurrences (produce and fetch errors, broken connections).
    pub errors: Mutex<BTreeMap<String, u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            sent_msgs: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
            acked_msgs: AtomicU64::new(0),
            acked_bytes: AtomicU64::new(0),
            failed_msgs: AtomicU64::new(0),
            consumed_msgs: AtomicU64::new(0),
            consumed_bytes: AtomicU64::new(0),
            generator_cpu_us: AtomicU64::new(0),
            produce_latency: Mutex::new(new_histogram()),
            e2e_latency: Mutex::new(new_histogram()),
            errors: Mutex::new(BTreeMap::new()),
        }
    }
}

/// A point-in-time copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub sent_msgs: u64,
    pub sent_bytes: u64,
    pub acked_msgs: u64,
    pub acked_bytes: u64,
    pub failed_msgs: u64,
    pub consumed_msgs: u64,
    pub consumed_bytes: u64,
}

impl Counters {
    pub fn minus(&self, earlier: &Counters) -> Counters {
        Counters {
            sent_msgs: self.sent_msgs - earlier.sent_msgs,
            sent_bytes: self.sent_bytes - earlier.sent_bytes,
            acked_msgs: self.acked_msgs - earlier.acked_msgs,
            acked_bytes: self.acked_bytes - earlier.acked_bytes,
            failed_msgs: self.failed_msgs - earlier.failed_msgs,
            consumed_msgs: self.consumed_msgs - earlier.consumed_msgs,
            consumed_bytes: self.consumed_bytes - earlier.consumed_bytes,
        }
    }
}

impl Stats {
    pub fn counters(&self) -> Counters {
        Counters {
            sent_msgs: self.sent_msgs.load(Relaxed),
            sent_bytes: self.sent_bytes.load(Relaxed),
            acked_msgs: self.acked_msgs.load(Relaxed),
            acked_bytes: self.acked_bytes.load(Relaxed),
            failed_msgs: self.failed_msgs.load(Relaxed),
            consumed_msgs: self.consumed_msgs.load(Relaxed),
            consumed_bytes: self.consumed_bytes.load(Relaxed),
        }
    }

    /// Adds the calling thread's CPU time to `generator_cpu_us`.
    pub fn add_thread_cpu(&self) {
        if let Ok(s) = crate::cpu::thread_cpu_seconds() {
            self.generator_cpu_us.fetch_add((s * 1e6) as u64, Relaxed);
        }
    }

    pub fn error(&self, what: impl Into<String>, n: u64) {
        *self.errors.lock().unwrap().entry(what.into()).or_default() += n;
    }

    /// Moves the interval histograms out, leaving empty ones.
    pub fn take_intervals(&self) -> (Histogram<u64>, Histogram<u64>) {
        let take = |m: &Mutex<Histogram<u64>>| {
            let mut h = m.lock().unwrap();
            let out = h.clone();
            h.reset();
            out
        };
        (take(&self.produce_latency), take(&self.e2e_latency))
    }
}
