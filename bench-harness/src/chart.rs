//! A self-contained SVG chart of a run: throughput (top) and latency p50/p99 (bottom) over
//! time. Hand-written so the harness needs no plotting dependency.

use crate::report::{Report, Sample};
use std::fmt::Write;

const W: f64 = 900.0;
const PANEL_H: f64 = 220.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 60.0;

struct Series<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

pub fn svg(report: &Report) -> String {
    let s = &report.samples;
    let t_max = s.last().map_or(1.0, |x| x.t).max(1.0);
    let pick =
        |f: fn(&Sample) -> f64| -> Vec<(f64, f64)> { s.iter().map(|x| (x.t, f(x))).collect() };
    let mut throughput = vec![Series {
        name: "produce msg/s",
        color: "#1f77b4",
        points: pick(|x| x.produce_msgs_per_sec),
    }];
    if s.iter().any(|x| x.consume_msgs_per_sec > 0.0) {
        throughput.push(Series {
            name: "consume msg/s",
            color: "#2ca02c",
            points: pick(|x| x.consume_msgs_per_sec),
        });
    }
    let lat = |f: fn(&Sample) -> Option<u64>| -> Vec<(f64, f64)> {
        s.iter()
            .filter_map(|x| f(x).map(|v| (x.t, v as f64 / 1000.0)))
            .collect()
    };
    let latency = vec![
        Series {
            name: "p50 ms",
            color: "#ff7f0e",
            points: lat(|x| x.latency_p50_us),
        },
        Series {
            name: "p99 ms",
            color: "#d62728",
            points: lat(|x| x.latency_p99_us),
        },
    ];
    let height = TOP + 2.0 * PANEL_H + GAP + 40.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="20" font-size="15">{} ({}) against {}</text>"#,
        escape(&report.workload),
        escape(&report.mode),
        escape(&report.broker)
    );
    panel(&mut out, TOP, "throughput (msg/s)", &throughput, t_max);
    panel(
        &mut out,
        TOP + PANEL_H + GAP,
        "latency (ms)",
        &latency,
        t_max,
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">seconds</text>"#,
        LEFT + (W - LEFT - RIGHT) / 2.0,
        height - 8.0
    );
    out.push_str("</svg>\n");
    out
}

fn panel(out: &mut String, y0: f64, title: &str, series: &[Series], t_max: f64) {
    let pw = W - LEFT - RIGHT;
    let v_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    let x = |t: f64| LEFT + t / t_max * pw;
    let y = |v: f64| y0 + PANEL_H - v / v_max * PANEL_H;
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{y0}" width="{pw}" height="{PANEL_H}" fill="none" stroke="#888"/>"##
    );
    let _ = writeln!(out, r#"<text x="{LEFT}" y="{}">{title}</text>"#, y0 - 6.0);
    for i in 0..=4 {
        let v = v_max * i as f64 / 4.0;
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy}" y2="{yy}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y(v) + 4.0,
            short(v),
            yy = y(v)
        );
    }
    for i in 0..=5 {
        let t = t_max * i as f64 / 5.0;
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            x(t),
            y0 + PANEL_H + 16.0,
            if t_max < 10.0 {
                format!("{t:.1}")
            } else {
                format!("{t:.0}")
            }
        );
    }
    for (i, s) in series.iter().enumerate() {
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
            s.color,
            pts.join(" ")
        );
        let lx = LEFT + pw - 150.0;
        let ly = y0 + 16.0 + 16.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" x2="{}" y1="{}" y2="{}" stroke="{}" stroke-width="3"/><text x="{}" y="{ly}">{}</text>"#,
            lx + 20.0,
            ly - 4.0,
            ly - 4.0,
            s.color,
            lx + 26.0,
            s.name
        );
    }
}

fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.1}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_both_panels() {
        let samples = (1..=5)
            .map(|i| Sample {
                t: i as f64,
                phase: "measure",
                produce_msgs_per_sec: 1000.0 * i as f64,
                produce_mb_per_sec: 0.1,
                consume_msgs_per_sec: 900.0,
                consume_mb_per_sec: 0.09,
                latency_p50_us: Some(100),
                latency_p99_us: Some(900),
            })
            .collect();
        let report = Report {
            workload: "a<b".into(),
            mode: "EndToEnd".into(),
            broker: "x".into(),
            run_id: 0,
            measured_seconds: 5.0,
            produce: None,
            consume: None,
            produce_latency_us: None,
            e2e_latency_us: None,
            failed_msgs: 0,
            errors: Default::default(),
            check: None,
            generator_cpu_seconds: 0.0,
            generator_msgs_per_cpu_second: None,
            broker_cpu_seconds: None,
            broker_cpu_seconds_per_million_msgs: None,
            samples,
        };
        let svg = svg(&report);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // produce, consume, p50, p99
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.contains("a&lt;b"), "titles are escaped");
        assert!(svg.contains(">5.5k<"), "axis top is 110% of the peak");
    }
}
