//! The proxy binary: CLI -> tracing -> bind -> `run`, with SIGTERM / SIGINT cancelling.

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use tessera_proxy::config::{Cli, Command, LogFormat};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: the proxy allocates and frees a few small blocks per
/// request (arguments, the reply channel), in bursts of a pipeline's depth that overflow glibc's
/// per-thread cache; mimalloc's per-page free lists serve them in a few instructions.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The runtime: one current-thread runtime by default, so a connection's tasks hand work over on
/// one thread (a wake-up is a queue push, not a cross-thread unpark; see docs/benchmarks.md).
/// `TESSERA_WORKER_THREADS=N` (N > 1) runs a multi-thread runtime with N workers instead.
fn main() -> anyhow::Result<()> {
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
        Err(e) => return Err(anyhow::anyhow!("cannot start the tokio runtime: {e}")),
    };
    runtime.block_on(run_main())
}

async fn run_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Healthcheck { address, timeout }) = cli.command {
        tessera_proxy::healthcheck::check(&address, timeout).await?;
        return Ok(());
    }
    let config = cli.config;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: logs in files (deploy/local.sh) stay plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    let listener = TcpListener::bind((config.bind, config.port))
        .await
        .with_context(|| format!("binding {}:{}", config.bind, config.port))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    tessera_proxy::run(config, listener, shutdown).await?;
    Ok(())
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("shutdown signal received");
    shutdown.cancel();
}
