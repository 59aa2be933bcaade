//! The shard node binary: CLI -> config -> tracing -> bind -> `run`, stopped by SIGTERM or SIGINT.
//! Also `shard-node healthcheck`, for container images that have no shell.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tessera_shard_node::config::{Config, LogFormat};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Tessera shard node: serves the keys of its hash slots over RESP (Redis Cluster compatible) and
/// keeps them on disk.
#[derive(Parser)]
#[command(name = "shard-node", version)]
struct Cli {
    #[command(flatten)]
    config: Config,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Sends PING to a node and exits 0 on PONG, 1 otherwise (container healthchecks).
    Healthcheck {
        /// Port of the node to check.
        #[arg(long, env = "TESSERA_PORT", default_value_t = 7000)]
        port: u16,
        /// Host of the node to check.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// How long to wait for PONG.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

/// The runtime: one current-thread runtime by default, so a connection's tasks hand work over on
/// one thread (a wake-up is a queue push, not a cross-thread unpark; see docs/benchmarks.md).
/// `TESSERA_WORKER_THREADS=N` (N > 1) runs a multi-thread runtime with N workers instead.
fn main() -> ExitCode {
    let threads = std::env::var("TESSERA_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1);
    let runtime = if threads > 1 {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run_main())
}

async fn run_main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Healthcheck {
        port,
        host,
        timeout,
    }) = cli.command
    {
        return match tessera_shard_node::cluster::probe::ping(&host, port, timeout).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("healthcheck {host}:{port}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    init_tracing(cli.config.log_format);
    match serve(cli.config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a terminal: the launchers write logs to files.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    config.validate()?;
    let listener = TcpListener::bind((config.bind, config.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.bind, config.port))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    tessera_shard_node::run(config, listener, shutdown).await?;
    Ok(())
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT; a second one exits at once.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot install signal handlers; stop the node with SIGKILL");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
    }
    shutdown.cancel();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::warn!("second signal received; exiting without a clean shutdown");
    std::process::exit(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthcheck_is_a_subcommand_with_its_own_port() {
        let cli =
            Cli::try_parse_from(["shard-node", "healthcheck", "--port", "7001"]).expect("parse");
        match cli.command {
            Some(Command::Healthcheck {
                port,
                host,
                timeout,
            }) => {
                assert_eq!(port, 7001);
                assert_eq!(host, "127.0.0.1");
                assert_eq!(timeout, Duration::from_secs(2));
            }
            None => panic!("no subcommand"),
        }
    }

    #[test]
    fn serving_flags_parse_without_a_subcommand() {
        let cli = Cli::try_parse_from(["shard-node", "--port", "7002", "--log-format", "json"])
            .expect("parse");
        assert!(cli.command.is_none());
        assert_eq!(cli.config.port, 7002);
        assert_eq!(cli.config.log_format, LogFormat::Json);
        assert!(Cli::try_parse_from(["shard-node", "--appendonly", "maybe"]).is_err());
    }
}
