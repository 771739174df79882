//! What a run produces: per-second samples, the final figures (throughput, latency
//! percentiles, broker CPU, correctness), rendered as a table or JSON.

use crate::sequence::CheckSummary;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
    pub max: u64,
}

impl Percentiles {
    /// `None` when nothing was recorded.
    pub fn from_histogram(h: &Histogram<u64>) -> Option<Percentiles> {
        if h.is_empty() {
            return None;
        }
        Some(Percentiles {
            count: h.len(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            p9999: h.value_at_quantile(0.9999),
            max: h.max(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Throughput {
    pub msgs: u64,
    pub bytes: u64,
    pub msgs_per_sec: f64,
    /// Megabytes (10^6) of keys and values per second.
    pub mb_per_sec: f64,
}

impl Throughput {
    pub fn new(msgs: u64, bytes: u64, secs: f64) -> Throughput {
        let secs = secs.max(1e-9);
        Throughput {
            msgs,
            bytes,
            msgs_per_sec: msgs as f64 / secs,
            mb_per_sec: bytes as f64 / 1e6 / secs,
        }
    }
}

/// One second of the run, for the progress line and the chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the run started (end of this interval).
    pub t: f64,
    pub phase: &'static str,
    pub produce_msgs_per_sec: f64,
    pub produce_mb_per_sec: f64,
    pub consume_msgs_per_sec: f64,
    pub consume_mb_per_sec: f64,
    /// Produce latency (produce mode) or end-to-end latency (modes with consumers), µs.
    pub latency_p50_us: Option<u64>,
    pub latency_p99_us: Option<u64>,
}

impl Sample {
    /// One line for the terminal; `producing` and `consuming` say which columns the mode has.
    pub fn progress_line(&self, producing: bool, consuming: bool) -> String {
        let mut s = format!("[{:>6.1}s {:<8}]", self.t, self.phase);
        if producing && (self.produce_msgs_per_sec > 0.0 || !consuming) {
            let _ = write!(
                s,
                " produce {:>11.0} msg/s {:>8.1} MB/s",
                self.produce_msgs_per_sec, self.produce_mb_per_sec
            );
        }
        if consuming && (self.consume_msgs_per_sec > 0.0 || !producing) {
            let _ = write!(
                s,
                " consume {:>11.0} msg/s {:>8.1} MB/s",
                self.consume_msgs_per_sec, self.consume_mb_per_sec
            );
        }
        if let (Some(p50), Some(p99)) = (self.latency_p50_us, self.latency_p99_us) {
            let _ = write!(s, "  p50 {}  p99 {}", fmt_us(p50), fmt_us(p99));
        }
        s
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub workload: String,
    pub mode: String,
    pub broker: String,
    pub run_id: u32,
    /// Length of the measured window (after warm-up), seconds.
    pub measured_seconds: f64,
    pub produce: Option<Throughput>,
    pub consume: Option<Throughput>,
    pub produce_latency_us: Option<Percentiles>,
    pub e2e_latency_us: Option<Percentiles>,
    /// Records the broker refused or never answered for.
    pub failed_msgs: u64,
    pub errors: BTreeMap<String, u64>,
    pub check: Option<CheckSummary>,
    /// CPU time of spate-bench's producer and ack-reader threads over the whole run
    /// (warm-up included), and records sent per second of it: the generator's own cost,
    /// independent of how busy the machine is.
    pub generator_cpu_seconds: f64,
    pub generator_msgs_per_cpu_second: Option<f64>,
    pub broker_cpu_seconds: Option<f64>,
    pub broker_cpu_seconds_per_million_msgs: Option<f64>,
    pub samples: Vec<Sample>,
}

/// Formats microseconds with a readable unit.
pub fn fmt_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

impl Report {
    /// Named figures for comparisons, each with whether higher is better.
    pub fn figures(&self) -> Vec<(String, f64, bool)> {
        let mut f = Vec::new();
        for (name, t) in [("produce", self.produce), ("consume", self.consume)] {
            if let Some(t) = t {
                f.push((format!("{name} msg/s"), t.msgs_per_sec, true));
                f.push((format!("{name} MB/s"), t.mb_per_sec, true));
            }
        }
        for (name, p) in [
            ("produce latency", self.produce_latency_us),
            ("e2e latency", self.e2e_latency_us),
        ] {
            if let Some(p) = p {
                for (q, v) in [
                    ("p50", p.p50),
                    ("p99", p.p99),
                    ("p99.9", p.p999),
                    ("max", p.max),
                ] {
                    f.push((format!("{name} {q} us"), v as f64, false));
                }
            }
        }
        if let Some(c) = self.broker_cpu_seconds_per_million_msgs {
            f.push(("broker CPU s / M msgs".into(), c, false));
        }
        f
    }

    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "== {} ({}) against {}: {:.1} s measured",
            self.workload, self.mode, self.broker, self.measured_seconds
        );
        let _ = writeln!(
            s,
            "{:<10} {:>14} {:>12} {:>14} {:>10}",
            "", "messages", "msg/s", "bytes", "MB/s"
        );
        for (name, t) in [("produce", self.produce), ("consume", self.consume)] {
            if let Some(t) = t {
                let _ = writeln!(
                    s,
                    "{:<10} {:>14} {:>12.0} {:>14} {:>10.1}",
                    name, t.msgs, t.msgs_per_sec, t.bytes, t.mb_per_sec
                );
            }
        }
        let any_latency = self.produce_latency_us.is_some() || self.e2e_latency_us.is_some();
        if any_latency {
            let _ = writeln!(
                s,
                "{:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                "latency", "p50", "p90", "p99", "p99.9", "p99.99", "max", "mean"
            );
        }
        for (name, p) in [
            ("produce (ack)", self.produce_latency_us),
            ("end-to-end", self.e2e_latency_us),
        ] {
            if let Some(p) = p {
                let _ = writeln!(
                    s,
                    "{:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                    name,
                    fmt_us(p.p50),
                    fmt_us(p.p90),
                    fmt_us(p.p99),
                    fmt_us(p.p999),
                    fmt_us(p.p9999),
                    fmt_us(p.max),
                    fmt_us(p.mean as u64)
                );
            }
        }
        if let (Some(cpu), Some(per)) = (
            self.broker_cpu_seconds,
            self.broker_cpu_seconds_per_million_msgs,
        ) {
            let _ = writeln!(
                s,
                "broker CPU: {cpu:.2} s, {per:.3} CPU-s per million messages"
            );
        }
        if let Some(rate) = self.generator_msgs_per_cpu_second {
            let _ = writeln!(
                s,
                "generator CPU: {:.2} s (producer and ack threads), {:.0} msg per CPU-second",
                self.generator_cpu_seconds, rate
            );
        }
        if let Some(c) = &self.check {
            let verdict = if c.is_clean() { "OK" } else { "FAILED" };
            let _ = writeln!(
                s,
                "check {verdict}: {} records checked, {} lost, {} duplicated, {} reordered, {} foreign",
                c.checked, c.lost, c.duplicates, c.reordered, c.foreign
            );
        }
        if self.failed_msgs > 0 {
            let _ = writeln!(
                s,
                "failed records (refused or unanswered): {}",
                self.failed_msgs
            );
        }
        for (e, n) in &self.errors {
            let _ = writeln!(s, "error x{n}: {e}");
        }
        s
    }
}

/// Median of a non-empty list (mean of the middle two for even lengths).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    #[test]
    fn percentiles_of_uniform_values() {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let p = Percentiles::from_histogram(&h).unwrap();
        // hdrhistogram keeps 3 significant digits: allow 0.1% of the value.
        let close = |got: u64, want: u64| got.abs_diff(want) <= want / 1000 + 1;
        assert!(close(p.p50, 5_000), "{p:?}");
        assert!(close(p.p90, 9_000), "{p:?}");
        assert!(close(p.p99, 9_900), "{p:?}");
        assert!(close(p.p999, 9_990), "{p:?}");
        assert!(close(p.max, 10_000), "{p:?}");
        assert_eq!(p.count, 10_000);
        assert!((p.mean - 5_000.5).abs() < 5.0, "{p:?}");
    }

    #[test]
    fn empty_histogram_has_no_percentiles() {
        assert_eq!(Percentiles::from_histogram(&new_histogram()), None);
    }

    #[test]
    fn weighted_records_count() {
        let mut h = new_histogram();
        h.record_n(100, 99).unwrap();
        h.record(5_000).unwrap();
        let p = Percentiles::from_histogram(&h).unwrap();
        assert_eq!((p.count, p.p50, p.p90), (100, 100, 100));
        assert!(p.max.abs_diff(5_000) <= 5);
    }

    #[test]
    fn throughput_rates() {
        let t = Throughput::new(5_000_000, 500_000_000, 2.0);
        assert_eq!(t.msgs_per_sec, 2_500_000.0);
        assert_eq!(t.mb_per_sec, 250.0);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn microsecond_formatting() {
        assert_eq!(fmt_us(950), "950us");
        assert_eq!(fmt_us(1_500), "1.50ms");
        assert_eq!(fmt_us(2_000_000), "2.00s");
    }
}
