//! `--compare A,B`: runs the workload against two brokers in alternation (A, B, A, B, ...)
//! so drift in the machine (page cache, thermal, neighbours) hits both alike, then prints
//! each figure's median per broker and the ratio B/A.

use crate::report::{median, Report};
use crate::runner::{run, RunOptions};
use crate::workload::Workload;
use crate::Result;
use serde::Serialize;
use std::fmt::Write;

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
    let mut ra = Vec::new();
    let mut rb = Vec::new();
    for round in 1..=rounds {
        for (name, opts, out) in [("A", &a, &mut ra), ("B", &b, &mut rb)] {
            println!("-- round {round}/{rounds}: {name} = {}", opts.broker);
            let r = run(w, opts)?;
            print!("{}", r.table());
            out.push(r);
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
