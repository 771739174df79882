//! `--compare A,B`: runs the workload against two brokers in alternation (A, B, A, B, ...)
//! so drift in the machine (page cache, thermal, neighbours) hits both alike, then prints
//! each figure's median per broker and the ratio B/A.

use crate::report::{median, Report};
use crate::runner::{run, RunOptions};
use crate::workload::Workload;
use crate::Result;
use serde::Serialize;
use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub figure: String,
    pub a: f64,
    pub b: f64,
    /// b / a.
    pub ratio: f64,
    pub higher_is_better: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub a: Vec<Report>,
    pub b: Vec<Report>,
    pub ratios: Vec<Ratio>,
}

pub fn compare(w: &Workload, a: RunOptions, b: RunOptions, rounds: u32) -> Result<Comparison> {
    let mut ra: Vec<Report> = Vec::new();
    let mut rb: Vec<Report> = Vec::new();
    'rounds: for round in 1..=rounds {
        for (name, opts) in [("A", &a), ("B", &b)] {
            println!("-- round {round}/{rounds}: {name} = {}", opts.broker);
            let r = run(w, opts)?;
            print!("{}", r.table());
            if name == "A" {
                ra.push(r)
            } else {
                rb.push(r)
            }
            if opts.interrupted.load(Relaxed) {
                // Interrupted: compare only the rounds both brokers completed.
                let n = ra.len().min(rb.len());
                ra.truncate(n);
                rb.truncate(n);
                break 'rounds;
            }
        }
    }
    let ratios = ratios(&ra, &rb);
    Ok(Comparison {
        a: ra,
        b: rb,
        ratios,
    })
}

/// Median of each figure over the rounds, per broker, and B/A.
pub fn ratios(a: &[Report], b: &[Report]) -> Vec<Ratio> {
    let Some(first) = a.first() else {
        return Vec::new();
    };
    let pick = |reports: &[Report], name: &str| -> Option<f64> {
        let mut v: Vec<f64> = reports
            .iter()
            .filter_map(|r| r.figures().into_iter().find(|f| f.0 == name).map(|f| f.1))
            .collect();
        (!v.is_empty()).then(|| median(&mut v))
    };
    first
        .figures()
        .into_iter()
        .filter_map(|(name, _, higher)| {
            let (va, vb) = (pick(a, &name)?, pick(b, &name)?);
            Some(Ratio {
                ratio: if va == 0.0 { f64::NAN } else { vb / va },
                figure: name,
                a: va,
                b: vb,
                higher_is_better: higher,
            })
        })
        .collect()
}

pub fn table(c: &Comparison, a: &str, b: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "== comparison over {} rounds (medians); A = {a}, B = {b}",
        c.a.len()
    );
    let _ = writeln!(s, "{:<28} {:>14} {:>14} {:>8}", "figure", "A", "B", "B/A");
    for r in &c.ratios {
        let better = if r.ratio.is_nan() || r.ratio == 1.0 {
            ""
        } else if (r.ratio > 1.0) == r.higher_is_better {
            " (B better)"
        } else {
            " (A better)"
        };
        let _ = writeln!(
            s,
            "{:<28} {:>14.1} {:>14.1} {:>8.3}{better}",
            r.figure, r.a, r.b, r.ratio
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Percentiles, Throughput};

    fn report(msgs_per_sec: f64, p99: u64) -> Report {
        Report {
            workload: "w".into(),
            mode: "Produce".into(),
            broker: "b".into(),
            run_id: 1,
            measured_seconds: 1.0,
            produce: Some(Throughput::new(
                msgs_per_sec as u64,
                msgs_per_sec as u64 * 100,
                1.0,
            )),
            consume: None,
            produce_latency_us: Some(Percentiles {
                count: 1,
                mean: 1.0,
                p50: 1,
                p90: 1,
                p99,
                p999: 1,
                p9999: 1,
                max: 1,
            }),
            e2e_latency_us: None,
            failed_msgs: 0,
            errors: Default::default(),
            check: None,
            generator_cpu_seconds: 0.0,
            generator_msgs_per_cpu_second: None,
            broker_cpu_seconds: None,
            broker_cpu_seconds_per_million_msgs: None,
            samples: Vec::new(),
        }
    }

    #[test]
    fn ratios_use_medians() {
        let a = [report(100.0, 10), report(300.0, 30), report(200.0, 20)];
        let b = [report(400.0, 5), report(1000.0, 5), report(600.0, 50)];
        let r = ratios(&a, &b);
        let msgs = r.iter().find(|x| x.figure == "produce msg/s").unwrap();
        assert_eq!((msgs.a, msgs.b, msgs.ratio), (200.0, 600.0, 3.0));
        assert!(msgs.higher_is_better);
        let p99 = r
            .iter()
            .find(|x| x.figure == "produce latency p99 us")
            .unwrap();
        assert_eq!((p99.a, p99.b, p99.ratio), (20.0, 5.0, 0.25));
        assert!(!p99.higher_is_better);
        let text = table(
            &Comparison {
                a: a.to_vec(),
                b: b.to_vec(),
                ratios: r,
            },
            "A",
            "B",
        );
        assert!(text.contains("produce msg/s"), "{text}");
        assert!(text.contains("(B better)"), "{text}");
    }
}
