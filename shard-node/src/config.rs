//! The node's configuration: one clap-derive struct (flags, or `TESSERA_*` environment variables),
//! with the defaults that depend on other settings resolved by methods and checked once by
//! `validate`.

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

    #[command(flatten)]
    pub service: ServiceFlags,

    /// Port of the cluster bus, the listener for node-to-node traffic (peer probes, forwarded
    /// PUBLISH), bound on the same address and shown in CLUSTER NODES after '@'. Default: the
    /// client port + 10000, as Redis; 0, or a default that is taken or does not fit, binds any
    /// free port (the port bound is the one announced).
    #[arg(long, env = "TESSERA_BUS_PORT")]
    pub bus_port: Option<u16>,

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

    /// Size of the replication backlog: the latest writes kept in memory (whether or not the AOF
    /// is on) so a replica that lost its link for a moment continues from its offset instead of
    /// taking a whole new snapshot (Redis's repl-backlog-size; bytes, or with a unit: 1mb).
    #[arg(
        long,
        env = "TESSERA_REPL_BACKLOG_SIZE",
        default_value = "1mb",
        value_parser = parse_memory
    )]
    pub repl_backlog_size: u64,

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
}

/// Redis's boolean spelling for config values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum YesNo {
    Yes,
    No,
}

pub use tessera_proto::process::LogFormat;
pub use tessera_proto::service_flags::{parse_memory, ServiceFlags};

impl Config {
    /// The defaults, with the given data directory: what tests start from.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            port: 7000,
            service: ServiceFlags::default(),
            bus_port: None,
            data_dir: Some(data_dir.into()),
            appendonly: YesNo::Yes,
            appendfsync: FsyncPolicy::Everysec,
            auto_aof_rewrite_percentage: 100,
            auto_aof_rewrite_min_size: 64 * 1024 * 1024,
            repl_backlog_size: crate::replication::log::DEFAULT_BACKLOG_SIZE,
            maxmemory: 0,
            maxmemory_policy: Policy::NoEviction,
            maxmemory_samples: 5,
            lfu_log_factor: 10,
            lfu_decay_time: 1,
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
        self.service.validate()?;
        if self
            .data_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err(ConfigError::EmptyDataDir);
        }
        Ok(())
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
        assert_eq!(config.bus_port(7000), 17000);
        assert_eq!(config.data_dir(), PathBuf::from("./data/node-7000"));
        assert!(config.appendonly());
        assert_eq!(config.appendfsync, FsyncPolicy::Everysec);
        assert_eq!(config.service.log_format, LogFormat::Text);
        assert_eq!(config.auto_aof_rewrite_percentage, 100);
        assert_eq!(config.auto_aof_rewrite_min_size, 64 * 1024 * 1024);
        assert_eq!(config.repl_backlog_size, 1024 * 1024);
        assert_eq!(
            parse(&["--repl-backlog-size", "64kb"]).repl_backlog_size,
            64 * 1024
        );
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
        assert_eq!(config.service.log_format, LogFormat::Json);
    }
}
