//! `spate`: the broker binary. `spate serve` starts one shard per core (or `--shards N`), each
//! accepting Kafka clients on the same address, until SIGTERM or SIGINT.

use std::fs::File;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use spate_core::config::BrokerConfig;
use spate_net::lazy_alloc::LazyHugeAlloc;

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
    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, shutdown.clone())
            .map_err(|e| format!("cannot install the handler for signal {signal}: {e}"))?;
    }
    tracing::info!(
        shards = spate_shard::executor::shard_count(&config),
        "spate starting: listening on {}, data in {}",
        config.listen,
        config.log_dir.display()
    );
    spate_shard::executor::run(Arc::new(config), move |shard| {
        spate_net::serve(shard, shutdown.clone())
    })?;
    tracing::info!("spate stopped: every partition closed");
    Ok(())
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
