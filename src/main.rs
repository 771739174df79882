//! `spate`: the broker binary. `spate serve` starts one shard per core (or `--shards N`), each
//! accepting Kafka clients on the same address, until SIGTERM or SIGINT.

use std::fs::File;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Parser, Subcommand};

use spate_core::config::BrokerConfig;
use spate_net::lazy_alloc::LazyHugeAlloc;
use spate_shard::controller::node::ClusterNode;

mod cluster;

#[global_allocator]
static ALLOCATOR: LazyHugeAlloc = LazyHugeAlloc;

#[derive(Parser)]
#[command(name = "spate", version, about = "A Kafka-compatible message broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Broker profile (YAML, Kafka property names), e.g. tuning/default.yaml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where partitions live (`log.dirs`); default ./data.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to accept clients on (`listeners`); default 127.0.0.1:9092.
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Number of shards (executors, one per core); default one per available core.
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("spate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let mut config = BrokerConfig::load(args.config.as_deref()).map_err(|e| e.to_string())?;
    if let Some(dir) = args.data_dir {
        config.log_dir = dir;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(shards) = args.shards {
        config.shards = shards;
    }
    // Held until exit: a second broker on the same data would corrupt it (and, with
    // SO_REUSEPORT, could even share the port unnoticed).
    let _lock = lock_log_dir(&config.log_dir)?;
    raise_open_files_limit();
    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, shutdown.clone())
            .map_err(|e| format!("cannot install the handler for signal {signal}: {e}"))?;
    }
    // Read before the controller creates its metadata directory.
    let legacy = cluster::legacy_topics(&config)?;
    let node = ClusterNode::start(cluster::settings(&config)).map_err(|e| e.to_string())?;
    // At the signal the broker fences itself first, so its partitions get new leaders while
    // its shards drain their requests and close.
    let stop = node.stopper();
    let signalled = shutdown.clone();
    std::thread::spawn(move || {
        while !signalled.load(Ordering::SeqCst) {
            std::thread::sleep(spate_net::server::SHUTDOWN_POLL_INTERVAL);
        }
        stop();
    });
    let served = match node.broker() {
        Some(link) => {
            if let Some(table) = legacy {
                cluster::import(link, table)?;
            }
            tracing::info!(
                shards = spate_shard::executor::shard_count(&config),
                "spate starting: listening on {}, data in {}",
                config.listen,
                config.log_dir.display()
            );
            spate_shard::executor::run(Arc::new(config), link.clone(), move |shard| {
                spate_net::serve(shard, shutdown.clone())
            })
        }
        None => {
            tracing::info!(
                "spate controller {} running, metadata in {}",
                config.node_id,
                config.log_dir.display()
            );
            while !shutdown.load(Ordering::SeqCst) {
                std::thread::sleep(spate_net::server::SHUTDOWN_POLL_INTERVAL);
            }
            Ok(())
        }
    };
    node.shutdown();
    served?;
    tracing::info!("spate stopped: every partition closed");
    Ok(())
}

/// Open files below which the broker warns at start-up. Each partition keeps its active
/// segment open (plus the offsets logs and the clients' sockets), so the usual soft limit of
/// 1,024 stops a broker near a thousand partitions; Kafka's docs suggest 100,000.
const RECOMMENDED_OPEN_FILES: u64 = 100_000;

/// Raises the soft RLIMIT_NOFILE to the hard limit (what any process may do unprivileged),
/// as Kafka's docs tell operators to, and warns naming the limit when it stays low.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(
            "cannot read the open files limit (RLIMIT_NOFILE): {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit from a struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::info!(
                "raised the open files limit (RLIMIT_NOFILE) from {} to its hard limit {}",
                limit.rlim_cur,
                limit.rlim_max
            );
            limit = raised;
        } else {
            tracing::warn!(
                "cannot raise the open files limit (RLIMIT_NOFILE) from {}: {}",
                limit.rlim_cur,
                std::io::Error::last_os_error()
            );
        }
    }
    let soft = limit.rlim_cur;
    if soft < RECOMMENDED_OPEN_FILES {
        tracing::warn!(
            "the open files limit (RLIMIT_NOFILE, `ulimit -n`) is {soft}: each partition keeps a \
             file open, so the broker cannot hold much more than {soft} partitions; raise the \
             hard limit to at least {RECOMMENDED_OPEN_FILES} (e.g. LimitNOFILE= in systemd)"
        );
    }
}

/// Takes Kafka's `.lock` file in the log dir, creating the dir if needed.
fn lock_log_dir(dir: &Path) -> Result<File, String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the log dir {}: {e}", dir.display()))?;
    let path = dir.join(".lock");
    let file = File::create(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.try_lock().map_err(|e| {
        format!(
            "the log dir {} is in use by another broker ({}): stop it or use another --data-dir",
            dir.display(),
            e
        )
    })?;
    Ok(file)
}
