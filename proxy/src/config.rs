//! The proxy's configuration: command-line flags (each also read from a `TESSERA_*` environment
//! variable), validated once into `Config`.

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

pub use crate::read_policy::ReadPolicy;
pub use tessera_proto::process::LogFormat;
pub use tessera_proto::service_flags::{parse_memory, ServiceFlags};

/// Everything `run` needs to know; tests build it with `Config::for_tests`.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// RESP port to listen on.
    #[arg(long, env = "TESSERA_PORT", default_value_t = 6379)]
    pub port: u16,
    #[command(flatten)]
    pub service: ServiceFlags,
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
    /// Password of the default user, as Redis's requirepass: clients must AUTH before anything
    /// but AUTH, HELLO, QUIT and RESET. Users of this proxy only (never sent to the nodes).
    #[arg(long, env = "TESSERA_REQUIREPASS", hide_env_values = true)]
    pub requirepass: Option<String>,
    /// ACL users to load at start, in Redis's aclfile format (`user <name> <rules...>` per line).
    #[arg(long, env = "TESSERA_ACLFILE")]
    pub aclfile: Option<PathBuf>,
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
    /// Where single-key reads go: `master`, `prefer-replica` (a healthy replica of the slot's
    /// master, else the master) or `any` (the master or a healthy replica). Replicas may lag
    /// behind the master's writes.
    #[arg(long, env = "TESSERA_READ_POLICY", value_enum, default_value_t = ReadPolicy::Master)]
    pub read_policy: ReadPolicy,
}

impl Config {
    /// A configuration for in-process tests: the given control plane, everything else default.
    pub fn for_tests(control_plane: String) -> Config {
        Config {
            port: 0,
            service: ServiceFlags {
                control_plane,
                ..ServiceFlags::default()
            },
            backend_timeout: Duration::from_secs(5),
            backend_connections: 1,
            requirepass: None,
            aclfile: None,
            maxclients: 10000,
            timeout: 0,
            client_query_buffer_limit: 1024 * 1024 * 1024,
            read_policy: ReadPolicy::Master,
        }
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
        assert_eq!(c.service, ServiceFlags::default());
        assert_eq!(c.backend_timeout, Duration::from_secs(5));
        assert_eq!(c.maxclients, 10000);
        assert_eq!(c.timeout, 0);
        assert_eq!(c.client_query_buffer_limit, 1 << 30);
        assert_eq!(c.read_policy, ReadPolicy::Master);
        assert!(c.requirepass.is_none());
    }

    #[test]
    fn announce_defaults_to_loopback_when_binding_everything() {
        let c =
            Cli::parse_from(["proxy", "--bind", "0.0.0.0", "--backend-timeout", "250ms"]).config;
        assert_eq!(c.service.announced_host(), "127.0.0.1");
        assert_eq!(c.backend_timeout, Duration::from_millis(250));
        let c =
            Cli::parse_from(["proxy", "--announce-host", "proxy", "--announce-port", "1"]).config;
        assert_eq!(c.service.announced_host(), "proxy");
        assert_eq!(c.service.announced_port(6379), 1);
    }

    #[test]
    fn healthcheck_subcommand_parses() {
        let cli = Cli::parse_from(["proxy", "healthcheck", "--address", "127.0.0.1:1"]);
        assert!(matches!(cli.command, Some(Command::Healthcheck { .. })));
    }
}
