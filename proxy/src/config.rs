//! The proxy's configuration: command-line flags (each also read from a `TESSERA_*` environment
//! variable), validated once into `Config`.

use std::net::IpAddr;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// Tessera's proxy: one Redis endpoint in front of the whole cluster. It routes every command by
/// hash slot to the master that serves it, following the topology the control plane streams.
#[derive(Debug, Clone, Parser)]
#[command(name = "proxy", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Connects to a proxy, sends PING and exits 0 on PONG (for container healthchecks: the images
    /// have no shell).
    Healthcheck {
        /// Address of the proxy to check.
        #[arg(long, default_value = "127.0.0.1:6379")]
        address: String,
        /// How long to wait for the reply.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything `run` needs to know; tests build it with `Config::for_tests`.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// RESP port to listen on.
    #[arg(long, env = "TESSERA_PORT", default_value_t = 6379)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, env = "TESSERA_BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Host that cluster-aware clients are told to use (CLUSTER SLOTS / NODES / SHARDS); defaults
    /// to the bind address, or 127.0.0.1 when binding 0.0.0.0.
    #[arg(long, env = "TESSERA_ANNOUNCE_HOST")]
    pub announce_host: Option<String>,
    /// Port that cluster-aware clients are told to use; defaults to the listening port.
    #[arg(long, env = "TESSERA_ANNOUNCE_PORT")]
    pub announce_port: Option<u16>,
    /// The control plane's gRPC URL.
    #[arg(
        long,
        env = "TESSERA_CONTROL_PLANE",
        default_value = "http://127.0.0.1:50051"
    )]
    pub control_plane: String,
    /// Longest wait for a backend's reply before the client gets an error (e.g. 5s, 500ms).
    #[arg(long, env = "TESSERA_BACKEND_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub backend_timeout: Duration,
    /// Pipelined connections per backend and protocol; each client sticks to one of them so its
    /// own commands keep their order.
    #[arg(long, env = "TESSERA_BACKEND_CONNECTIONS", default_value_t = 2)]
    pub backend_connections: usize,
    /// Log format (level from RUST_LOG).
    #[arg(long, env = "TESSERA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Config {
    /// A configuration for in-process tests: the given control plane, everything else default.
    pub fn for_tests(control_plane: String) -> Config {
        Config {
            port: 0,
            bind: IpAddr::from([127, 0, 0, 1]),
            announce_host: None,
            announce_port: None,
            control_plane,
            backend_timeout: Duration::from_secs(5),
            backend_connections: 2,
            log_format: LogFormat::Text,
        }
    }

    /// The host cluster-aware clients are told to use.
    pub fn announced_host(&self) -> String {
        match &self.announce_host {
            Some(host) => host.clone(),
            None if self.bind.is_unspecified() => "127.0.0.1".to_string(),
            None => self.bind.to_string(),
        }
    }

    /// The port cluster-aware clients are told to use; `listening` is the port actually bound
    /// (differs from `port` when that is 0).
    pub fn announced_port(&self, listening: u16) -> u16 {
        self.announce_port.unwrap_or(listening)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_design() {
        let cli = Cli::parse_from(["proxy"]);
        assert!(cli.command.is_none());
        let c = cli.config;
        assert_eq!(c.port, 6379);
        assert_eq!(c.announced_host(), "127.0.0.1");
        assert_eq!(c.announced_port(6379), 6379);
        assert_eq!(c.control_plane, "http://127.0.0.1:50051");
        assert_eq!(c.backend_timeout, Duration::from_secs(5));
    }

    #[test]
    fn announce_defaults_to_loopback_when_binding_everything() {
        let c =
            Cli::parse_from(["proxy", "--bind", "0.0.0.0", "--backend-timeout", "250ms"]).config;
        assert_eq!(c.announced_host(), "127.0.0.1");
        assert_eq!(c.backend_timeout, Duration::from_millis(250));
        let c =
            Cli::parse_from(["proxy", "--announce-host", "proxy", "--announce-port", "1"]).config;
        assert_eq!(c.announced_host(), "proxy");
        assert_eq!(c.announced_port(6379), 1);
    }

    #[test]
    fn healthcheck_subcommand_parses() {
        let cli = Cli::parse_from(["proxy", "healthcheck", "--address", "127.0.0.1:1"]);
        assert!(matches!(cli.command, Some(Command::Healthcheck { .. })));
    }
}
