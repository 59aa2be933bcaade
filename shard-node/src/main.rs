//! The shard node binary: CLI -> config -> tracing -> bind -> `run`, stopped by SIGTERM or SIGINT.
//! Also `shard-node healthcheck`, for container images that have no shell.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tessera_proto::process::shutdown_on_signal;
use tessera_shard_node::config::Config;
use tokio::net::TcpListener;

/// Tessera shard node: serves the keys of its hash slots over RESP (Redis Cluster compatible) and
/// keeps them on disk.
#[derive(Parser)]
#[command(name = "shard-node", version)]
struct Cli {
    #[command(flatten)]
    config: Config,

    /// Runtime worker threads: 1 runs everything on one thread (fastest on small hosts; see
    /// docs/benchmarks.md), more runs a multi-thread runtime with that many workers.
    #[arg(long, env = "TESSERA_WORKER_THREADS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..))]
    worker_threads: u16,

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

/// CLI -> runtime (`--worker-threads`) -> `run_main`.
fn main() -> ExitCode {
    let cli = Cli::parse();
    match tessera_proto::process::runtime(usize::from(cli.worker_threads)) {
        Ok(runtime) => runtime.block_on(run_main(cli)),
        Err(e) => {
            eprintln!("cannot start the tokio runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_main(cli: Cli) -> ExitCode {
    if let Some(Command::Healthcheck {
        port,
        host,
        timeout,
    }) = cli.command
    {
        return match tessera_proto::resp::ping::ping(&format!("{host}:{port}"), timeout).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("healthcheck {host}:{port}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    tessera_proto::process::init_logging(cli.config.service.log_format);
    match serve(cli.config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    config.validate()?;
    let listener = TcpListener::bind((config.service.bind, config.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.service.bind, config.port))?;
    tessera_shard_node::run(config, listener, shutdown_on_signal()).await?;
    Ok(())
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
        assert_eq!(
            cli.config.service.log_format,
            tessera_shard_node::config::LogFormat::Json
        );
        assert!(Cli::try_parse_from(["shard-node", "--appendonly", "maybe"]).is_err());
    }
}
