//! The flags every serving member of a cluster takes the same way (shard nodes and proxies):
//! where to listen, what to announce, where the control plane is, how to log, the node secret.
//! One clap struct, flattened into each binary's own configuration, so the two cannot drift in
//! spelling, environment variable, default or validation.

use std::net::IpAddr;

use crate::process::LogFormat;

/// The flags shared by `shard-node` and `proxy` (each also read from a `TESSERA_*` variable).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ServiceFlags {
    /// Address to bind.
    #[arg(long, env = "TESSERA_BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,

    /// Host that clients and peers are told to use (MOVED, CLUSTER NODES / SLOTS / SHARDS).
    /// Default: the bind address, or 127.0.0.1 when binding an unspecified address.
    #[arg(long, env = "TESSERA_ANNOUNCE_HOST")]
    pub announce_host: Option<String>,

    /// Port that clients and peers are told to use. Default: the port actually bound.
    #[arg(long, env = "TESSERA_ANNOUNCE_PORT")]
    pub announce_port: Option<u16>,

    /// URL of the control plane's gRPC API; with several control planes, each one's URL,
    /// comma-separated (calls follow the leader, whichever is listed first).
    #[arg(
        long,
        env = "TESSERA_CONTROL_PLANE",
        default_value = "http://127.0.0.1:50051"
    )]
    pub control_plane: String,

    /// Log line format (logs go to stderr); the level comes from RUST_LOG (default info).
    #[arg(long, env = "TESSERA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// The cluster's node secret. A node requires `AUTH <secret>` (or `AUTH default <secret>`,
    /// or HELLO with AUTH) from every client and peer before any other command, as Redis's
    /// requirepass; the proxy sends it on every backend connection (it is never a proxy client's
    /// password). Unset: none.
    #[arg(long, env = "TESSERA_NODE_SECRET", hide_env_values = true)]
    pub node_secret: Option<String>,
}

/// A shared flag that cannot work, found once at start-up.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServiceFlagsError {
    #[error("--control-plane {url:?} is not a usable http(s) URL: {reason}")]
    ControlPlaneUrl { url: String, reason: String },
    #[error("--announce-host must not be empty")]
    EmptyAnnounceHost,
}

impl Default for ServiceFlags {
    /// The defaults clap gives, for tests and embedders that build a configuration in code.
    fn default() -> ServiceFlags {
        ServiceFlags {
            bind: IpAddr::from([127, 0, 0, 1]),
            announce_host: None,
            announce_port: None,
            control_plane: "http://127.0.0.1:50051".to_string(),
            log_format: LogFormat::Text,
            node_secret: None,
        }
    }
}

impl ServiceFlags {
    /// The host announced: `--announce-host`, else the bind address (127.0.0.1 for an
    /// unspecified one, which no client can connect to).
    pub fn announced_host(&self) -> String {
        match &self.announce_host {
            Some(host) => host.clone(),
            None if self.bind.is_unspecified() => "127.0.0.1".to_string(),
            None => self.bind.to_string(),
        }
    }

    /// The port announced, given the port the listener actually bound (differs from the
    /// configured one when that is 0).
    pub fn announced_port(&self, bound_port: u16) -> u16 {
        self.announce_port.unwrap_or(bound_port)
    }

    /// The node secret, if one is set and not empty.
    pub fn node_secret(&self) -> Option<&str> {
        self.node_secret.as_deref().filter(|s| !s.is_empty())
    }

    /// Checks what clap's types cannot; each binary calls it before binding anything.
    pub fn validate(&self) -> Result<(), ServiceFlagsError> {
        for url in crate::control_plane::urls(&self.control_plane) {
            check_url(url)?;
        }
        if self
            .announce_host
            .as_deref()
            .is_some_and(|h| h.trim().is_empty())
        {
            return Err(ServiceFlagsError::EmptyAnnounceHost);
        }
        Ok(())
    }
}

/// Checks one control plane URL: http(s) with a host.
fn check_url(url: &str) -> Result<(), ServiceFlagsError> {
    let url_error = |reason: String| ServiceFlagsError::ControlPlaneUrl {
        url: url.to_string(),
        reason,
    };
    let uri: tonic::transport::Uri = url
        .parse()
        .map_err(|e: tonic::codegen::http::uri::InvalidUri| url_error(e.to_string()))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(url_error("the scheme must be http or https".to_string())),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(url_error("no host".to_string()));
    }
    Ok(())
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
        flags: ServiceFlags,
    }

    fn parse(args: &[&str]) -> ServiceFlags {
        Cli::parse_from(std::iter::once("binary").chain(args.iter().copied())).flags
    }

    #[test]
    fn the_defaults_are_clap_s() {
        let flags = parse(&[]);
        assert_eq!(flags, ServiceFlags::default());
        assert_eq!(flags.announced_host(), "127.0.0.1");
        assert_eq!(flags.announced_port(7000), 7000);
        flags.validate().expect("defaults are valid");
    }

    #[test]
    fn announce_follows_the_bind_address_unless_set() {
        assert_eq!(parse(&["--bind", "0.0.0.0"]).announced_host(), "127.0.0.1");
        assert_eq!(
            parse(&["--bind", "127.0.0.2"]).announced_host(),
            "127.0.0.2"
        );
        let set = parse(&["--announce-host", "node1", "--announce-port", "1"]);
        assert_eq!(
            (set.announced_host(), set.announced_port(7000)),
            ("node1".into(), 1)
        );
        assert_eq!(
            parse(&["--announce-host", " "]).validate(),
            Err(ServiceFlagsError::EmptyAnnounceHost)
        );
    }

    #[test]
    fn control_plane_urls_are_checked() {
        for url in [
            "127.0.0.1:50051",
            "ftp://cp:1",
            "http://",
            "not a url",
            "http://cp-1:50051,cp-2:50051",
            "http://cp-1:50051,",
        ] {
            assert!(
                parse(&["--control-plane", url]).validate().is_err(),
                "{url}"
            );
        }
        parse(&["--control-plane", "https://cp:50051"])
            .validate()
            .expect("https is fine");
        parse(&["--control-plane", "http://cp-1:50051, http://cp-2:50051"])
            .validate()
            .expect("a list");
    }

    #[test]
    fn an_empty_secret_is_none() {
        assert_eq!(parse(&["--node-secret", ""]).node_secret(), None);
        assert_eq!(parse(&["--node-secret", "s"]).node_secret(), Some("s"));
    }

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("1gb"), Ok(1 << 30));
        assert_eq!(parse_memory("64MB"), Ok(64 << 20));
        assert_eq!(parse_memory("1k"), Ok(1000));
        assert_eq!(parse_memory("100"), Ok(100));
        assert!(parse_memory("1xb").is_err());
        assert!(parse_memory("").is_err());
        assert!(parse_memory("99999999999gb").is_err());
    }
}
