//! The control plane's configuration: one clap-derive struct (flags, or `TESSERA_*` environment
//! variables), validated by clap once at start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Tessera's control plane: the gRPC service that owns the cluster's membership, slot map, epochs,
/// failure state and settings.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "control-plane", version)]
pub struct Config {
    /// Address the gRPC server binds.
    #[arg(long, env = "TESSERA_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Directory holding the persisted cluster state (`state.json`); created if missing.
    #[arg(long, env = "TESSERA_DATA_DIR", default_value = "./data/control-plane")]
    pub data_dir: PathBuf,

    /// How long a node may stay silent before it is PFAIL (humantime: 15s, 500ms). Used only when
    /// no state is persisted yet; afterwards `clusterctl set node-timeout MS` changes it.
    #[arg(long, env = "TESSERA_NODE_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub node_timeout: Duration,

    /// Log line format (logs go to stderr); the level comes from RUST_LOG (default info).
    #[arg(long, env = "TESSERA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

pub use tessera_proto::process::LogFormat;

impl Config {
    /// A configuration for tests and embedding: data in `data_dir`, the given node-timeout.
    pub fn new(data_dir: impl Into<PathBuf>, node_timeout: Duration) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            node_timeout,
            log_format: LogFormat::Text,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn defaults_and_flags() {
        let config = Config::try_parse_from(["control-plane"]).expect("defaults");
        assert_eq!(config.listen, "127.0.0.1:50051".parse().expect("addr"));
        assert_eq!(config.node_timeout, Duration::from_secs(15));
        assert_eq!(config.data_dir, PathBuf::from("./data/control-plane"));
        let config = Config::try_parse_from([
            "control-plane",
            "--listen",
            "0.0.0.0:6000",
            "--node-timeout",
            "300ms",
            "--log-format",
            "json",
        ])
        .expect("flags");
        assert_eq!(config.node_timeout, Duration::from_millis(300));
        assert_eq!(config.log_format, LogFormat::Json);
        assert!(Config::try_parse_from(["control-plane", "--node-timeout", "soon"]).is_err());
    }
}
