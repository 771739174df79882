//! Runs one workload against one broker: prepares topics, starts producer and consumer
//! threads for the workload's mode, prints a progress line every second, and gathers the
//! final report. Warm-up intervals are shown but left out of the figures.

use crate::client::{list_offsets, prepare_topics, Slot};
use crate::consumer::{self, ConsumerConfig, StopAt};
use crate::cpu::cpu_seconds;
use crate::producer::{self, ProducerConfig};
use crate::report::{Percentiles, Report, Sample, Throughput};
use crate::sequence::SequenceChecker;
use crate::stats::{new_histogram, Counters, Stats};
use crate::workload::{Acks, Mode, StartAt, Workload};
use crate::Result;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long, after producers stop, consumers may take to read what was acknowledged.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub broker: String,
    /// Broker process whose CPU time to measure over the measured window.
    pub broker_pid: Option<u32>,
    /// Print no progress lines.
    pub quiet: bool,
    /// Set (by Ctrl-C) to end every phase now and report what was measured so far.
    pub interrupted: Arc<AtomicBool>,
}

type Producers = Vec<JoinHandle<Result<Vec<u64>>>>;
type Consumers = Vec<JoinHandle<Result<SequenceChecker>>>;

pub fn run(workload: &Workload, opts: &RunOptions) -> Result<Report> {
    if let Some(pid) = opts.broker_pid {
        cpu_seconds(pid)?; // a wrong pid fails now, not after the warm-up
    }
    let w = Arc::new(workload.clone());
    let run_id = run_id();
    let slots = Arc::new(prepare_topics(
        &opts.broker,
        &w.topics,
        TOPIC_READY_TIMEOUT,
    )?);
    let stats = Arc::new(Stats::default());
    let stop_producers = Arc::new(AtomicBool::new(false));
    let stop_consumers = Arc::new(AtomicBool::new(false));
    let mut rep = Reporter::new(stats.clone(), w.mode, opts.quiet, opts.interrupted.clone());
    let written: Vec<Vec<u64>>;
    let mut checkers = Vec::new();
    let (window, cpu): (Window, Option<f64>);

    match w.mode {
        Mode::Produce => {
            let early = rep.measure_now_unless_warmup(&w, &stats, opts.broker_pid)?;
            let producers = spawn_producers(
                &w,
                run_id,
                &slots,
                &stats,
                &stop_producers,
                w.producers.messages,
            );
            let done = || producers.iter().all(|p| p.is_finished());
            let m = rep.warm_up(&w, early, &stats, opts.broker_pid, &done)?;
            rep.phase("measure", w.duration.0, &done);
            (window, cpu) = m.stop(&stats, opts.broker_pid)?;
            stop_producers.store(true, Relaxed);
            written = join_producers(producers, &stats);
            rep.tick("drain");
        }
        Mode::EndToEnd | Mode::Consume => {
            let e2e = w.mode == Mode::EndToEnd;
            let ts = if e2e || w.consumers.start == StartAt::Latest {
                -1
            } else {
                -2
            };
            let start = list_offsets(&slots, ts)?;
            let early = rep.measure_now_unless_warmup(&w, &stats, opts.broker_pid)?;
            let stop_at = Arc::new(Mutex::new(None));
            let consumers = spawn_consumers(
                &w,
                run_id,
                &slots,
                &start,
                &stop_at,
                e2e,
                &stats,
                &stop_consumers,
            );
            let producers = if e2e {
                spawn_producers(
                    &w,
                    run_id,
                    &slots,
                    &stats,
                    &stop_producers,
                    w.producers.messages,
                )
            } else {
                Vec::new()
            };
            let done = || {
                consumers.iter().all(|c| c.is_finished())
                    || (e2e && producers.iter().all(|p| p.is_finished()))
            };
            let m = rep.warm_up(&w, early, &stats, opts.broker_pid, &done)?;
            rep.phase("measure", w.duration.0, &done);
            (window, cpu) = m.stop(&stats, opts.broker_pid)?;
            stop_producers.store(true, Relaxed);
            written = join_producers(producers, &stats);
            if e2e {
                // Consumers read on to the log end as it stands now that producers stopped.
                *stop_at.lock().unwrap() = Some(list_offsets(&slots, -1)?);
                rep.phase("drain", DRAIN_TIMEOUT, &|| {
                    consumers.iter().all(|c| c.is_finished())
                });
            }
            stop_consumers.store(true, Relaxed);
            checkers = join_consumers(consumers, &stats);
        }
        Mode::CatchUp => {
            let before = list_offsets(&slots, -1)?;
            let backlog = w.backlog.map_or(0, |b| b.0);
            let records = (backlog as f64 / w.record.size.mean()).ceil() as u64;
            let producers = spawn_producers(
                &w,
                run_id,
                &slots,
                &stats,
                &stop_producers,
                Some(records.max(1)),
            );
            rep.phase("backlog", Duration::MAX, &|| {
                producers.iter().all(|p| p.is_finished())
            });
            stop_producers.store(true, Relaxed); // only matters when interrupted
            written = join_producers(producers, &stats);
            let after = list_offsets(&slots, -1)?;
            let m = Measure::start(&stats, opts.broker_pid)?;
            rep.measuring = true;
            let consumers = spawn_consumers(
                &w,
                run_id,
                &slots,
                &before,
                &Arc::new(Mutex::new(Some(after))),
                true,
                &stats,
                &stop_consumers,
            );
            rep.phase("read", w.duration.0, &|| {
                consumers.iter().all(|c| c.is_finished())
            });
            (window, cpu) = m.stop(&stats, opts.broker_pid)?;
            stop_consumers.store(true, Relaxed);
            checkers = join_consumers(consumers, &stats);
        }
    }

    let check = (!checkers.is_empty()).then(|| {
        let mut all = SequenceChecker::new(run_id, true);
        for c in checkers {
            all.merge(c);
        }
        all.finish(&written)
    });
    let c = window.counters;
    let secs = window.seconds;
    let producing = w.mode != Mode::Consume && w.mode != Mode::CatchUp;
    let produce = producing.then(|| {
        if w.producers.acks == Acks::None {
            Throughput::new(c.sent_msgs, c.sent_bytes, secs)
        } else {
            Throughput::new(c.acked_msgs, c.acked_bytes, secs)
        }
    });
    let consume =
        (w.mode != Mode::Produce).then(|| Throughput::new(c.consumed_msgs, c.consumed_bytes, secs));
    let msgs = produce.or(consume).map_or(0, |t| t.msgs);
    let errors = stats.errors.lock().unwrap().clone();
    let gen_cpu = stats.generator_cpu_us.load(Relaxed) as f64 / 1e6;
    let sent = stats.sent_msgs.load(Relaxed);
    Ok(Report {
        workload: w.name.clone(),
        mode: format!("{:?}", w.mode),
        broker: opts.broker.clone(),
        run_id,
        measured_seconds: secs,
        produce,
        consume,
        produce_latency_us: if producing {
            Percentiles::from_histogram(&rep.produce_total)
        } else {
            None
        },
        e2e_latency_us: if w.mode == Mode::EndToEnd {
            Percentiles::from_histogram(&rep.e2e_total)
        } else {
            None
        },
        failed_msgs: stats.failed_msgs.load(Relaxed),
        errors,
        check,
        generator_cpu_seconds: gen_cpu,
        generator_msgs_per_cpu_second: (gen_cpu > 0.0 && sent > 0).then(|| sent as f64 / gen_cpu),
        broker_cpu_seconds: cpu,
        broker_cpu_seconds_per_million_msgs: cpu
            .filter(|_| msgs > 0)
            .map(|s| s / (msgs as f64 / 1e6)),
        samples: rep.samples,
    })
}

fn run_id() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (nanos as u32) ^ (std::process::id() << 16)
}

fn spawn_producers(
    w: &Arc<Workload>,
    run: u32,
    slots: &Arc<Vec<Slot>>,
    stats: &Arc<Stats>,
    stop: &Arc<AtomicBool>,
    total: Option<u64>,
) -> Producers {
    let n = w.producers.count as u64;
    let rate = w.producers.rate.messages_per_sec(w.record.size.mean());
    (0..n)
        .map(|i| {
            let cfg = ProducerConfig {
                id: i as u32,
                run,
                slots: slots.clone(),
                workload: w.clone(),
                rate: rate.map(|r| r / n as f64),
                // Split the total so the first `total % n` producers write one more.
                limit: total.map(|t| t / n + u64::from(i < t % n)),
            };
            producer::spawn(cfg, stats.clone(), stop.clone())
        })
        .collect()
}

/// Partition i goes to consumer i % count; a consumer gets one thread per leader it reads.
#[allow(clippy::too_many_arguments)]
fn spawn_consumers(
    w: &Arc<Workload>,
    run: u32,
    slots: &Arc<Vec<Slot>>,
    start: &[i64],
    stop_at: &StopAt,
    from_zero: bool,
    stats: &Arc<Stats>,
    stop: &Arc<AtomicBool>,
) -> Consumers {
    let n = w.consumers.count as usize;
    let mut handles = Vec::new();
    for c in 0..n {
        let mine: Vec<usize> = (0..slots.len()).filter(|s| s % n == c).collect();
        let mut leaders: Vec<&str> = mine.iter().map(|&s| slots[s].leader.as_str()).collect();
        leaders.dedup();
        leaders.sort();
        leaders.dedup();
        for leader in leaders {
            let assigned: Vec<usize> = mine
                .iter()
                .copied()
                .filter(|&s| slots[s].leader == leader)
                .collect();
            let cfg = ConsumerConfig {
                id: c as u32,
                run,
                slots: slots.clone(),
                start: assigned.iter().map(|&s| start[s]).collect(),
                stop_at: stop_at.clone(),
                assigned,
                workload: w.clone(),
                from_zero,
            };
            handles.push(consumer::spawn(cfg, stats.clone(), stop.clone()));
        }
    }
    handles
}

/// Records written per (producer, slot); a failed producer is reported as an error.
fn join_producers(producers: Producers, stats: &Stats) -> Vec<Vec<u64>> {
    producers
        .into_iter()
        .map(|p| match p.join() {
            Ok(Ok(seqs)) => seqs,
            Ok(Err(e)) => {
                stats.error(format!("producer stopped: {e}"), 1);
                Vec::new()
            }
            Err(_) => {
                stats.error("producer thread panicked", 1);
                Vec::new()
            }
        })
        .collect()
}

fn join_consumers(consumers: Consumers, stats: &Stats) -> Vec<SequenceChecker> {
    consumers
        .into_iter()
        .filter_map(|c| match c.join() {
            Ok(Ok(checker)) => Some(checker),
            Ok(Err(e)) => {
                stats.error(format!("consumer stopped: {e}"), 1);
                None
            }
            Err(_) => {
                stats.error("consumer thread panicked", 1);
                None
            }
        })
        .collect()
}

struct Window {
    counters: Counters,
    seconds: f64,
}

/// The measured window: counters and broker CPU at its start.
struct Measure {
    at: Instant,
    counters: Counters,
    cpu: Option<f64>,
}

impl Measure {
    fn start(stats: &Stats, pid: Option<u32>) -> Result<Measure> {
        Ok(Measure {
            at: Instant::now(),
            counters: stats.counters(),
            cpu: pid.map(cpu_seconds).transpose()?,
        })
    }

    fn stop(self, stats: &Stats, pid: Option<u32>) -> Result<(Window, Option<f64>)> {
        let cpu_end = pid.map(cpu_seconds).transpose()?;
        let window = Window {
            counters: stats.counters().minus(&self.counters),
            seconds: self.at.elapsed().as_secs_f64(),
        };
        Ok((window, self.cpu.zip(cpu_end).map(|(a, b)| b - a)))
    }
}

/// Turns the shared counters into one sample per second, and keeps the measured
/// histograms.
struct Reporter {
    interrupted: Arc<AtomicBool>,
    stats: Arc<Stats>,
    mode: Mode,
    quiet: bool,
    started: Instant,
    last_at: Instant,
    last: Counters,
    measuring: bool,
    produce_total: Histogram<u64>,
    e2e_total: Histogram<u64>,
    samples: Vec<Sample>,
}

impl Reporter {
    fn new(stats: Arc<Stats>, mode: Mode, quiet: bool, interrupted: Arc<AtomicBool>) -> Reporter {
        let now = Instant::now();
        Reporter {
            interrupted,
            last: stats.counters(),
            stats,
            mode,
            quiet,
            started: now,
            last_at: now,
            measuring: false,
            produce_total: new_histogram(),
            e2e_total: new_histogram(),
            samples: Vec::new(),
        }
    }

    /// Without a warm-up the measured window opens before any thread starts, so that a
    /// run limited by message count measures every message.
    fn measure_now_unless_warmup(
        &mut self,
        w: &Workload,
        stats: &Stats,
        pid: Option<u32>,
    ) -> Result<Option<Measure>> {
        if !w.warmup.0.is_zero() {
            return Ok(None);
        }
        self.measuring = true;
        Measure::start(stats, pid).map(Some)
    }

    /// Runs the warm-up (if any) and opens the measured window after it.
    fn warm_up(
        &mut self,
        w: &Workload,
        early: Option<Measure>,
        stats: &Stats,
        pid: Option<u32>,
        done: &dyn Fn() -> bool,
    ) -> Result<Measure> {
        if let Some(m) = early {
            return Ok(m);
        }
        self.phase("warmup", w.warmup.0, done);
        self.measuring = true;
        Measure::start(stats, pid)
    }

    /// Ticks every second for `len`, or until `done` says the work has ended.
    fn phase(&mut self, name: &'static str, len: Duration, done: &dyn Fn() -> bool) {
        let start = Instant::now();
        let end = start.checked_add(len);
        let mut next_tick = start + Duration::from_secs(1);
        loop {
            let now = Instant::now();
            if end.is_some_and(|e| now >= e) || done() || self.interrupted.load(Relaxed) {
                break;
            }
            if now >= next_tick {
                self.tick(name);
                next_tick += Duration::from_secs(1);
            }
            let mut wake = next_tick;
            if let Some(e) = end {
                wake = wake.min(e);
            }
            std::thread::sleep(
                wake.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(20)),
            );
        }
        self.tick(name);
    }

    fn tick(&mut self, phase: &'static str) {
        let now = Instant::now();
        let dt = now.duration_since(self.last_at).as_secs_f64().max(1e-9);
        let c = self.stats.counters();
        let d = c.minus(&self.last);
        let (produce, e2e) = self.stats.take_intervals();
        if self.measuring {
            self.produce_total
                .add(&produce)
                .expect("same histogram bounds");
            self.e2e_total.add(&e2e).expect("same histogram bounds");
        }
        let shown = if self.mode == Mode::EndToEnd {
            &e2e
        } else {
            &produce
        };
        let pct = Percentiles::from_histogram(shown);
        let produced = if d.acked_msgs > 0 {
            (d.acked_msgs, d.acked_bytes)
        } else {
            (d.sent_msgs, d.sent_bytes)
        };
        let sample = Sample {
            t: now.duration_since(self.started).as_secs_f64(),
            phase,
            produce_msgs_per_sec: produced.0 as f64 / dt,
            produce_mb_per_sec: produced.1 as f64 / 1e6 / dt,
            consume_msgs_per_sec: d.consumed_msgs as f64 / dt,
            consume_mb_per_sec: d.consumed_bytes as f64 / 1e6 / dt,
            latency_p50_us: pct.map(|p| p.p50),
            latency_p99_us: pct.map(|p| p.p99),
        };
        // Sub-second leftovers at phase ends are folded into the totals but not shown.
        if dt >= 0.5 {
            if !self.quiet {
                let producing = self.mode != Mode::Consume;
                let consuming = self.mode != Mode::Produce;
                println!("{}", sample.progress_line(producing, consuming));
            }
            self.samples.push(sample);
        }
        self.last = c;
        self.last_at = now;
    }
}
