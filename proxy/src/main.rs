//! The proxy binary: CLI -> tracing -> bind -> `run`, with SIGTERM / SIGINT cancelling.

use anyhow::Context;
use clap::Parser;
use tessera_proto::process::shutdown_on_signal;
use tessera_proxy::config::{Cli, Command};
use tokio::net::TcpListener;

/// mimalloc instead of glibc's malloc: the proxy allocates and frees a few small blocks per
/// request (arguments, the reply channel), in bursts of a pipeline's depth that overflow glibc's
/// per-thread cache; mimalloc's per-page free lists serve them in a few instructions.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// CLI -> runtime (`--worker-threads`) -> `run_main`.
fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tessera_proto::process::runtime(usize::from(cli.worker_threads))
        .context("cannot start the tokio runtime")?;
    runtime.block_on(run_main(cli))
}

async fn run_main(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Healthcheck { address, timeout }) = cli.command {
        tessera_proto::resp::ping::ping(&address, timeout)
            .await
            .with_context(|| format!("healthcheck {address}"))?;
        return Ok(());
    }
    let config = cli.config;
    tessera_proto::process::init_logging(config.service.log_format);
    config.service.validate()?;
    let listener = TcpListener::bind((config.service.bind, config.port))
        .await
        .with_context(|| format!("binding {}:{}", config.service.bind, config.port))?;
    tessera_proxy::run(config, listener, shutdown_on_signal()).await?;
    Ok(())
}
