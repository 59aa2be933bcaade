//! The node's configuration: one clap-derive struct (flags, or `TESSERA_*` environment variables),
//! with the defaults that depend on other settings resolved by methods and checked once by
//! `validate`.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::aof::FsyncPolicy;
use crate::error::ConfigError;
use crate::evict::Policy;

pub mod live;

pub use live::Live;

/// A shard node of Tessera: serves the keys of its hash slots over RESP and keeps them on disk.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// RESP port clients connect to (0 picks a free one).
    #[arg(long, env = "TESSERA_PORT", default_value_t = 7000)]
    pub port: u16,

    /// Address to bind the RESP listener to.
    #[arg(long, env = "TESSERA_BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,

    /// Host that peers, proxies and clients use to reach this node (what MOVED and CLUSTER NODES
    /// name). Default: the bind address, or 127.0.0.1 when binding an unspecified address.
    #[arg(long, env = "TESSERA_ANNOUNCE_HOST")]
    pub announce_host: Option<String>,

    /// Port announced to the cluster. Default: the port actually bound.
    #[arg(long, env = "TESSERA_ANNOUNCE_PORT")]
    pub announce_port: Option<u16>,

    /// Port of the cluster bus, the listener for node-to-node traffic (peer probes, forwarded
    /// PUBLISH), bound on the same address and shown in CLUSTER NODES after '@'. Default: the
    /// client port + 10000, as Redis; 0, or a default that is taken or does not fit, binds any
    /// free port (the port bound is the one announced).
    #[arg(long, env = "TESSERA_BUS_PORT")]
    pub bus_port: Option<u16>,

    /// URL of the control plane's gRPC API.
    #[arg(
        long,
        env = "TESSERA_CONTROL_PLANE",
        default_value = "http://127.0.0.1:50051"
    )]
    pub control_plane: String,

    /// Directory holding the node id and the append-only file. Default: ./data/node-<port>.
    #[arg(long, env = "TESSERA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Whether writes are kept in the append-only file (and replayed at start).
    #[arg(long, env = "TESSERA_APPENDONLY", value_enum, default_value_t = YesNo::Yes)]
    pub appendonly: YesNo,

    /// When the append-only file is fsynced: after every write, once a second, or never (the OS
    /// decides).
    #[arg(long, env = "TESSERA_APPENDFSYNC", value_enum, default_value_t = FsyncPolicy::Everysec)]
    pub appendfsync: FsyncPolicy,

    /// Rewrite the append-only file in the background once it has grown by this many percent
    /// since the last rewrite (or start); 0 turns automatic rewrites off.
    #[arg(
        long,
        env = "TESSERA_AUTO_AOF_REWRITE_PERCENTAGE",
        default_value_t = 100
    )]
    pub auto_aof_rewrite_percentage: u32,

    /// No automatic rewrite while the append-only file is smaller than this (bytes, or with a
    /// unit as Redis spells them: 64mb, 1gb, 512k).
    #[arg(
        long,
        env = "TESSERA_AUTO_AOF_REWRITE_MIN_SIZE",
        default_value = "64mb",
        value_parser = parse_memory
    )]
    pub auto_aof_rewrite_min_size: u64,

    /// Memory limit (bytes, or with a unit: 100mb, 1gb); 0 is none. Over it, keys are evicted by
    /// --maxmemory-policy before each command, and commands that add data are refused when
    /// nothing can be evicted. Measured as the heap the process has allocated (INFO used_memory).
    #[arg(long, env = "TESSERA_MAXMEMORY", default_value = "0", value_parser = parse_memory)]
    pub maxmemory: u64,

    /// Which keys go when memory is over --maxmemory.
    #[arg(long, env = "TESSERA_MAXMEMORY_POLICY", value_enum, default_value_t = Policy::NoEviction)]
    pub maxmemory_policy: Policy,

    /// Keys sampled per eviction round: more is closer to true LRU/LFU and slower.
    #[arg(long, env = "TESSERA_MAXMEMORY_SAMPLES", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=i32::MAX as i64))]
    pub maxmemory_samples: u32,

    /// How many hits it takes to saturate a key's LFU counter (Redis's lfu-log-factor).
    #[arg(long, env = "TESSERA_LFU_LOG_FACTOR", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(0..=i32::MAX as i64))]
    pub lfu_log_factor: u32,

    /// Minutes per step of decay of a key's LFU counter (Redis's lfu-decay-time).
    #[arg(long, env = "TESSERA_LFU_DECAY_TIME", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(0..=i32::MAX as i64))]
    pub lfu_decay_time: u32,

    /// Log line format (logs go to stderr); the level comes from RUST_LOG (default info).
    #[arg(long, env = "TESSERA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// The cluster's node secret: clients must send `AUTH <secret>` (or `AUTH default <secret>`,
    /// or HELLO with AUTH) before any other command, as with Redis's requirepass. The proxy sends
    /// it on every backend connection; the control plane does not need it.
    #[arg(long, env = "TESSERA_NODE_SECRET", hide_env_values = true)]
    pub node_secret: Option<String>,
}

/// Redis's boolean spelling for config values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum YesNo {
    Yes,
    No,
}

pub use tessera_proto::process::LogFormat;

impl Config {
    /// The defaults, with the given data directory: what tests start from.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            port: 7000,
            bind: IpAddr::from([127, 0, 0, 1]),
            announce_host: None,
            announce_port: None,
            bus_port: None,
            control_plane: "http://127.0.0.1:50051".to_string(),
            data_dir: Some(data_dir.into()),
            appendonly: YesNo::Yes,
            appendfsync: FsyncPolicy::Everysec,
            auto_aof_rewrite_percentage: 100,
            auto_aof_rewrite_min_size: 64 * 1024 * 1024,
            maxmemory: 0,
            maxmemory_policy: Policy::NoEviction,
            maxmemory_samples: 5,
            lfu_log_factor: 10,
            lfu_decay_time: 1,
            log_format: LogFormat::Text,
            node_secret: None,
        }
    }

    /// The automatic rewrite threshold.
    pub fn auto_rewrite(&self) -> crate::aof::rewrite::AutoRewrite {
        crate::aof::rewrite::AutoRewrite {
            percentage: self.auto_aof_rewrite_percentage,
            min_size: self.auto_aof_rewrite_min_size,
        }
    }

    /// Checks what clap's types cannot: called once by `node::run` (and by `main` before binding,
    /// to fail early).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url_error = |reason: String| ConfigError::ControlPlaneUrl {
            url: self.control_plane.clone(),
            reason,
        };
        let uri: tonic::transport::Uri = self
            .control_plane
            .parse()
            .map_err(|e: tonic::codegen::http::uri::InvalidUri| url_error(e.to_string()))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => return Err(url_error("the scheme must be http or https".to_string())),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(url_error("no host".to_string()));
        }
        if self
            .announce_host
            .as_deref()
            .is_some_and(|h| h.trim().is_empty())
        {
            return Err(ConfigError::EmptyAnnounceHost);
        }
        if self
            .data_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err(ConfigError::EmptyDataDir);
        }
        Ok(())
    }

    /// The host announced to the cluster.
    pub fn announce_host(&self) -> String {
        match &self.announce_host {
            Some(host) => host.clone(),
            None if self.bind.is_unspecified() => "127.0.0.1".to_string(),
            None => self.bind.to_string(),
        }
    }

    /// The port announced to the cluster, given the port the listener actually bound (differs
    /// from `port` when that is 0).
    pub fn announce_port(&self, bound_port: u16) -> u16 {
        self.announce_port.unwrap_or(bound_port)
    }

    /// The bus port shown in CLUSTER NODES: Redis's port + 10000, or 0 when that would not fit.
    pub fn bus_port(&self, client_port: u16) -> u16 {
        self.bus_port
            .unwrap_or_else(|| client_port.checked_add(10_000).unwrap_or(0))
    }

    /// The data directory, defaulting to `./data/node-<port>`.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("./data/node-{}", self.port)))
    }

    pub fn appendonly(&self) -> bool {
        self.appendonly == YesNo::Yes
    }
}

/// A size as Redis's config reads it (memtoull): digits with an optional, case-insensitive unit,
/// `k`/`m`/`g` in thousands, `kb`/`mb`/`gb` in 1024s.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let multiplier: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => {
            return Err(format!(
                "unknown unit in '{text}' (use b, k, kb, m, mb, g or gb)"
            ))
        }
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a size"))?;
    value
        .checked_mul(multiplier)
        .ok_or_else(|| format!("'{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["shard-node"];
        all.extend_from_slice(args);
        Cli::parse_from(all).config
    }

    #[test]
    fn defaults_follow_the_design() {
        let config = parse(&[]);
        assert_eq!(config.port, 7000);
        assert_eq!(config.announce_host(), "127.0.0.1");
        assert_eq!(config.announce_port(7000), 7000);
        assert_eq!(config.bus_port(7000), 17000);
        assert_eq!(config.data_dir(), PathBuf::from("./data/node-7000"));
        assert!(config.appendonly());
        assert_eq!(config.appendfsync, FsyncPolicy::Everysec);
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.auto_aof_rewrite_percentage, 100);
        assert_eq!(config.auto_aof_rewrite_min_size, 64 * 1024 * 1024);
        assert_eq!(config.maxmemory, 0);
        assert_eq!(config.maxmemory_policy, Policy::NoEviction);
        assert_eq!(config.maxmemory_samples, 5);
        config.validate().expect("defaults are valid");
        let limited = parse(&["--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru"]);
        assert_eq!(limited.maxmemory, 100 * 1024 * 1024);
        assert_eq!(limited.maxmemory_policy, Policy::AllkeysLru);
    }

    #[test]
    fn rewrite_thresholds_parse_as_redis_sizes() {
        let config = parse(&[
            "--auto-aof-rewrite-percentage",
            "0",
            "--auto-aof-rewrite-min-size",
            "1MB",
        ]);
        assert_eq!(config.auto_aof_rewrite_percentage, 0);
        assert_eq!(config.auto_aof_rewrite_min_size, 1024 * 1024);
        assert_eq!(parse_memory("100"), Ok(100));
        assert_eq!(parse_memory("2k"), Ok(2000));
        assert_eq!(parse_memory("1gb"), Ok(1 << 30));
        assert!(parse_memory("12x").is_err());
        assert!(parse_memory("mb").is_err());
        assert!(parse_memory("99999999999gb").is_err());
    }

    #[test]
    fn announce_host_defaults_to_loopback_when_binding_everything() {
        assert_eq!(parse(&["--bind", "0.0.0.0"]).announce_host(), "127.0.0.1");
        assert_eq!(parse(&["--bind", "127.0.0.2"]).announce_host(), "127.0.0.2");
        let config = parse(&["--bind", "0.0.0.0", "--announce-host", "node1"]);
        assert_eq!(config.announce_host(), "node1");
    }

    #[test]
    fn bus_port_that_does_not_fit_is_zero() {
        assert_eq!(parse(&[]).bus_port(60000), 0);
        assert_eq!(parse(&["--bus-port", "5"]).bus_port(60000), 5);
    }

    #[test]
    fn yes_no_and_policies_parse() {
        let config = parse(&[
            "--appendonly",
            "no",
            "--appendfsync",
            "always",
            "--log-format",
            "json",
        ]);
        assert!(!config.appendonly());
        assert_eq!(config.appendfsync, FsyncPolicy::Always);
        assert_eq!(config.log_format, LogFormat::Json);
    }

    #[test]
    fn bad_control_plane_urls_are_refused() {
        for url in ["127.0.0.1:50051", "ftp://host:1", "http://", "not a url"] {
            let config = parse(&["--control-plane", url]);
            assert!(config.validate().is_err(), "{url} accepted");
        }
        assert!(parse(&["--control-plane", "http://cp:50051"])
            .validate()
            .is_ok());
    }
}
