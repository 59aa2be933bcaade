//! The proxy's configuration: command-line flags (each also read from a `TESSERA_*` environment
//! variable), validated once into `Config`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Tessera's proxy: one Redis endpoint in front of the whole cluster. It routes every command by
/// hash slot to the master that serves it, following the topology the control plane streams.
#[derive(Debug, Clone, Parser)]
#[command(name = "proxy", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
    /// Runtime worker threads: 1 runs everything on one thread (fastest on small hosts; see
    /// docs/benchmarks.md), more runs a multi-thread runtime with that many workers.
    #[arg(long, env = "TESSERA_WORKER_THREADS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub worker_threads: u16,
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

pub use tessera_proto::process::LogFormat;

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
    /// own commands keep their order. One (as twemproxy) by default: the proxy's single thread
    /// then writes each node one larger batch per turn, so a node is woken less often per
    /// request (`docs/benchmarks.md`: about 0.75 system calls per request on a node instead of
    /// 1.05).
    #[arg(long, env = "TESSERA_BACKEND_CONNECTIONS", default_value_t = 1)]
    pub backend_connections: usize,
    /// Log line format (logs go to stderr); the level comes from RUST_LOG (default info).
    #[arg(long, env = "TESSERA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Password of the default user, as Redis's requirepass: clients must AUTH before anything
    /// but AUTH, HELLO, QUIT and RESET. Users of this proxy only (never sent to the nodes).
    #[arg(long, env = "TESSERA_REQUIREPASS", hide_env_values = true)]
    pub requirepass: Option<String>,
    /// ACL users to load at start, in Redis's aclfile format (`user <name> <rules...>` per line).
    #[arg(long, env = "TESSERA_ACLFILE")]
    pub aclfile: Option<PathBuf>,
    /// The cluster's node secret: the proxy sends `AUTH <secret>` on every backend connection
    /// (shard nodes started with the same --node-secret refuse clients that do not). Empty: none.
    #[arg(long, env = "TESSERA_NODE_SECRET", hide_env_values = true)]
    pub node_secret: Option<String>,
    /// Most clients connected at once; one more gets `-ERR max number of clients reached`.
    #[arg(long, env = "TESSERA_MAXCLIENTS", default_value_t = 10000)]
    pub maxclients: usize,
    /// Close a client idle for this many seconds (0: never); subscribers and clients blocked in
    /// a command are exempt, as in Redis.
    #[arg(long, env = "TESSERA_TIMEOUT", default_value_t = 0)]
    pub timeout: u64,
    /// Close a client whose unparsed input grows past this (bytes, or 64mb / 1gb as Redis
    /// spells it), as Redis's client-query-buffer-limit.
    #[arg(long, env = "TESSERA_CLIENT_QUERY_BUFFER_LIMIT", default_value = "1gb", value_parser = parse_memory)]
    pub client_query_buffer_limit: u64,
}

/// Redis's memory units: a plain byte count, or k / kb / m / mb / g / gb (any case).
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    let multiplier: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return Err(format!("unknown unit in '{text}'")),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("not a memory size: '{text}'"))
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
            backend_connections: 1,
            log_format: LogFormat::Text,
            requirepass: None,
            aclfile: None,
            node_secret: None,
            maxclients: 10000,
            timeout: 0,
            client_query_buffer_limit: 1024 * 1024 * 1024,
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
        assert_eq!(c.maxclients, 10000);
        assert_eq!(c.timeout, 0);
        assert_eq!(c.client_query_buffer_limit, 1 << 30);
        assert!(c.requirepass.is_none() && c.node_secret.is_none());
    }

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("1gb"), Ok(1 << 30));
        assert_eq!(parse_memory("64MB"), Ok(64 << 20));
        assert_eq!(parse_memory("1k"), Ok(1000));
        assert_eq!(parse_memory("100"), Ok(100));
        assert!(parse_memory("1xb").is_err());
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
