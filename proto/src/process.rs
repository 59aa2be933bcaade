//! How every Tessera binary starts, the same way: logs through tracing-subscriber to stderr
//! (stdout stays for what a command prints), human-readable or JSON, level from `RUST_LOG`; and
//! the tokio runtime the serving binaries run on.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written (`--log-format`, `TESSERA_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the global tracing subscriber: stderr, `format`, level from `RUST_LOG` (default
/// `info`). Colours only when stderr is a terminal, so log files stay plain text. Call once, first
/// thing after parsing the command line.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The runtime of a serving binary: with one worker (the default) a current-thread runtime, so a
/// connection's tasks hand work over on one thread (a wake-up is a queue push, not a cross-thread
/// unpark; see docs/benchmarks.md); with more, a multi-thread runtime of that many workers.
pub fn runtime(worker_threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if worker_threads > 1 {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
}

/// A token that the first SIGTERM or SIGINT cancels (`stop_on_signal`, spawned here): what a
/// serving binary hands its `run`.
pub fn shutdown_on_signal() -> tokio_util::sync::CancellationToken {
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    shutdown
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT, so the service stops cleanly (flushing
/// what it must); a second signal exits at once. Spawn it beside the service.
pub async fn stop_on_signal(shutdown: tokio_util::sync::CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot install signal handlers; stop with SIGKILL");
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
