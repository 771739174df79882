//! spate-bench: Kafka load generator. See `spate-bench --help` and docs/bench-harness.md.

use clap::{Parser, Subcommand};
use signal_hook::consts::SIGINT;
use spate_bench::runner::{run, RunOptions};
use spate_bench::sink::SinkOptions;
use spate_bench::units::{parse_duration, parse_rate};
use spate_bench::workload::{Mode, Workload};
use spate_bench::{chart, compare, sink, Error, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "spate-bench",
    version,
    about = "Kafka load generator: throughput, latency, correctness"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a workload against a broker (or the built-in sink).
    Run(RunArgs),
    /// Serve as a do-nothing broker that counts and discards produced records.
    Sink {
        #[arg(long, default_value = "127.0.0.1:9092")]
        listen: String,
        /// Keep produced batches in memory and serve them to Fetch (a toy broker).
        #[arg(long)]
        retain: bool,
    },
    /// Parse and check workload files without running them.
    Check { workloads: Vec<PathBuf> },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Workload YAML file.
    workload: PathBuf,
    /// Bootstrap broker, host:port.
    #[arg(long, default_value = "127.0.0.1:9092")]
    broker: String,
    /// Run against an in-process sink instead of a broker (measures the generator alone;
    /// modes that read keep the data in memory).
    #[arg(long, conflicts_with_all = ["compare", "broker_pid"])]
    sink: bool,
    /// Broker pid(s) whose CPU time to measure; with --compare, `PID_A,PID_B`.
    #[arg(long)]
    broker_pid: Option<String>,
    /// Run against two brokers in alternation, `A,B`, and print B/A for each figure.
    #[arg(long)]
    compare: Option<String>,
    /// Rounds for --compare.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Override the workload's duration (e.g. 30s).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Override the workload's warm-up.
    #[arg(long, value_parser = parse_duration)]
    warmup: Option<Duration>,
    /// Override the producers' rate (`max`, `N msg/s`, `N MB/s`).
    #[arg(long)]
    rate: Option<String>,
    /// Override the total message count (producers stop after it).
    #[arg(long)]
    messages: Option<u64>,
    /// Write the report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a chart of throughput and latency over time (.svg, or .html wrapping the SVG).
    #[arg(long)]
    chart: Option<PathBuf>,
    /// No per-second progress lines.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Run(args) => cmd_run(args),
        Cmd::Sink { listen, retain } => cmd_sink(&listen, retain),
        Cmd::Check { workloads } => cmd_check(&workloads),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("spate-bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn load(args: &RunArgs) -> Result<Workload> {
    let mut w = Workload::from_file(&args.workload)?;
    if let Some(d) = args.duration {
        w.duration.0 = d;
    }
    if let Some(d) = args.warmup {
        w.warmup.0 = d;
    }
    if let Some(r) = &args.rate {
        w.producers.rate = parse_rate(r).map_err(|e| Error::Workload(format!("--rate: {e}")))?;
    }
    if args.messages.is_some() {
        w.producers.messages = args.messages;
    }
    Ok(w)
}

fn pids(arg: &Option<String>, n: usize) -> Result<Vec<Option<u32>>> {
    let Some(s) = arg else {
        return Ok(vec![None; n]);
    };
    let v: Vec<Option<u32>> = s
        .split(',')
        .map(|p| p.trim().parse().map(Some))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::Workload(format!("--broker-pid: `{s}` is not a pid list")))?;
    if v.len() != n {
        return Err(Error::Workload(format!(
            "--broker-pid: expected {n} pid(s), got {}",
            v.len()
        )));
    }
    Ok(v)
}

fn cmd_run(args: RunArgs) -> Result<bool> {
    let w = load(&args)?;
    // First Ctrl-C: finish the run early and report; a second one exits at once.
    let interrupted = Arc::new(AtomicBool::new(false));
    for (i, flag) in [interrupted.clone(), interrupted.clone()]
        .into_iter()
        .enumerate()
    {
        let installed = if i == 0 {
            signal_hook::flag::register_conditional_shutdown(SIGINT, 130, flag)
        } else {
            signal_hook::flag::register(SIGINT, flag)
        };
        installed.map_err(spate_bench::error::io_err("cannot handle Ctrl-C"))?;
    }
    if let Some(pair) = &args.compare {
        let brokers: Vec<&str> = pair.split(',').map(str::trim).collect();
        let [a, b] = brokers[..] else {
            return Err(Error::Workload(format!(
                "--compare: expected `A,B`, got `{pair}`"
            )));
        };
        let p = pids(&args.broker_pid, 2)?;
        let opts = |broker: &str, pid| RunOptions {
            broker: broker.to_string(),
            broker_pid: pid,
            quiet: args.quiet,
            interrupted: interrupted.clone(),
        };
        let c = compare::compare(&w, opts(a, p[0]), opts(b, p[1]), args.rounds.max(1))?;
        print!("{}", compare::table(&c, a, b));
        if let Some(path) = &args.json {
            write(
                path,
                &serde_json::to_string_pretty(&c).expect("report serializes"),
            )?;
        }
        let clean =
            c.a.iter()
                .chain(&c.b)
                .all(|r| r.check.as_ref().is_none_or(|k| k.is_clean()));
        return Ok(clean);
    }
    let sink = if args.sink {
        // Modes that read need the data kept (in memory); produce-only runs discard it.
        let retain = w.mode != Mode::Produce;
        Some(sink::start_with(
            "127.0.0.1:0",
            SinkOptions {
                retain,
                fault: None,
            },
        )?)
    } else {
        None
    };
    let broker = match &sink {
        Some(s) => s.addr.to_string(),
        None => args.broker.clone(),
    };
    let opts = RunOptions {
        broker,
        broker_pid: pids(&args.broker_pid, 1)?[0],
        quiet: args.quiet,
        interrupted,
    };
    let mut report = run(&w, &opts)?;
    if let Some(s) = &sink {
        report.broker = "built-in sink".into();
        println!(
            "sink received {} records in {} requests",
            s.counters().records.load(Relaxed),
            s.counters().requests.load(Relaxed)
        );
    }
    print!("{}", report.table());
    if let Some(path) = &args.json {
        write(
            path,
            &serde_json::to_string_pretty(&report).expect("report serializes"),
        )?;
    }
    if let Some(path) = &args.chart {
        let svg = chart::svg(&report);
        let body = if path.extension().is_some_and(|e| e == "html") {
            format!("<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title></head><body>\n{svg}</body></html>\n", report.workload)
        } else {
            svg
        };
        write(path, &body)?;
    }
    Ok(report.check.as_ref().is_none_or(|c| c.is_clean())
        && report.failed_msgs == 0
        && report.errors.is_empty())
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(spate_bench::error::io_err(format!(
        "cannot write {}",
        path.display()
    )))
}

fn cmd_sink(listen: &str, retain: bool) -> Result<bool> {
    let s = sink::start_with(
        listen,
        SinkOptions {
            retain,
            fault: None,
        },
    )?;
    println!("sink listening on {}", s.addr);
    let c = s.counters();
    let mut last = (c.records.load(Relaxed), c.bytes.load(Relaxed));
    let mut at = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = (c.records.load(Relaxed), c.bytes.load(Relaxed));
        let dt = at.elapsed().as_secs_f64();
        at = Instant::now();
        if now != last {
            println!(
                "sink: {:>11.0} msg/s {:>8.1} MB/s (total {} records, {} corrupt batches)",
                (now.0 - last.0) as f64 / dt,
                (now.1 - last.1) as f64 / 1e6 / dt,
                now.0,
                c.corrupt_batches.load(Relaxed)
            );
        }
        last = now;
    }
}

fn cmd_check(paths: &[PathBuf]) -> Result<bool> {
    let mut ok = true;
    for p in paths {
        match Workload::from_file(p) {
            Ok(w) => println!(
                "{}: ok ({:?}, {} topic(s))",
                p.display(),
                w.mode,
                w.topics.len()
            ),
            Err(e) => {
                println!("{e}");
                ok = false;
            }
        }
    }
    Ok(ok)
}
