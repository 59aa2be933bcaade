//! The control plane's configuration: one clap-derive struct (flags, or `TESSERA_*` environment
//! variables), validated by clap once at start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::leader::ElectionOptions;
use crate::store::EtcdOptions;

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

    /// Where the cluster state lives: `file` (`state.json` in --data-dir, for one control plane)
    /// or `etcd` (under --etcd-prefix in the etcd at --etcd-endpoints, for several control
    /// planes of which one, elected through an etcd lease, leads).
    #[arg(long, env = "TESSERA_STORE", value_enum, default_value_t = StoreKind::File)]
    pub store: StoreKind,

    /// etcd client URLs, comma-separated (with --store etcd).
    #[arg(
        long,
        env = "TESSERA_ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub etcd_endpoints: Vec<String>,

    /// This cluster's key prefix in etcd: the state is `<prefix>/state`, the leader key
    /// `<prefix>/leader`. One prefix per cluster, so clusters can share an etcd.
    #[arg(long, env = "TESSERA_ETCD_PREFIX", default_value = "/tessera/default")]
    pub etcd_prefix: String,

    /// The leader's lease TTL (humantime, whole seconds, at least 1s): a leader that vanishes is
    /// replaced about this long after its last renewal, and one cut off from etcd stops leading
    /// within it.
    #[arg(long, env = "TESSERA_ELECTION_TTL", default_value = "3s", value_parser = parse_ttl)]
    pub election_ttl: Duration,

    /// The address other control planes name this one by when it leads (host:port, as clients
    /// reach it); default: the --listen address.
    #[arg(long, env = "TESSERA_ADVERTISE")]
    pub advertise: Option<String>,

    /// Log line format (logs go to stderr); the level comes from RUST_LOG (default info).
    #[arg(long, env = "TESSERA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

pub use tessera_proto::process::LogFormat;

/// The state store backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    File,
    Etcd,
}

/// A lease TTL: etcd counts whole seconds, so below one there is nothing to ask for.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if ttl < Duration::from_secs(1) {
        return Err(format!(
            "{text} is below etcd's one-second lease granularity"
        ));
    }
    Ok(ttl)
}

impl Config {
    /// A configuration for tests and embedding: data in `data_dir`, the given node-timeout.
    pub fn new(data_dir: impl Into<PathBuf>, node_timeout: Duration) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            node_timeout,
            store: StoreKind::File,
            etcd_endpoints: vec!["http://127.0.0.1:2379".into()],
            etcd_prefix: "/tessera/default".into(),
            election_ttl: ElectionOptions::DEFAULT_TTL,
            advertise: None,
            log_format: LogFormat::Text,
        }
    }

    /// The same, with the state in etcd at `endpoints` under `prefix`.
    pub fn with_etcd(mut self, endpoints: Vec<String>, prefix: impl Into<String>) -> Config {
        self.store = StoreKind::Etcd;
        self.etcd_endpoints = endpoints;
        self.etcd_prefix = prefix.into();
        self
    }

    /// Where the etcd backend connects and keeps its keys.
    pub fn etcd_options(&self) -> EtcdOptions {
        EtcdOptions::new(self.etcd_endpoints.clone(), self.etcd_prefix.clone())
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

    #[test]
    fn store_flags() {
        let config = Config::try_parse_from(["control-plane"]).expect("defaults");
        assert_eq!(config.store, StoreKind::File);
        assert_eq!(config.election_ttl, Duration::from_secs(3));
        let config = Config::try_parse_from([
            "control-plane",
            "--store",
            "etcd",
            "--etcd-endpoints",
            "http://127.0.0.1:2379,http://127.0.0.1:22379",
            "--etcd-prefix",
            "/tessera/blue",
            "--election-ttl",
            "5s",
            "--advertise",
            "cp1:50051",
        ])
        .expect("flags");
        assert_eq!(config.store, StoreKind::Etcd);
        assert_eq!(config.etcd_endpoints.len(), 2);
        let options = config.etcd_options();
        assert_eq!(options.state_key(), "/tessera/blue/state");
        assert_eq!(options.leader_key(), "/tessera/blue/leader");
        assert_eq!(config.election_ttl, Duration::from_secs(5));
        assert_eq!(config.advertise.as_deref(), Some("cp1:50051"));
        assert!(Config::try_parse_from(["control-plane", "--store", "zk"]).is_err());
        assert!(Config::try_parse_from(["control-plane", "--election-ttl", "500ms"]).is_err());
    }
}
