//! CONFIG GET over the few parameters clients ask about (redis-benchmark reads save and
//! appendonly); CONFIG SET and the rest are refused honestly, CONFIG RESETSTAT accepted.

use bytes::Bytes;
use tessera_proto::resp::Frame;

use tessera_proto::glob;

use super::{frame, ok};
use crate::session::{Reply, Session};
use crate::shared::Shared;

/// What the proxy reports; it has no persistence of its own.
const PARAMETERS: &[(&str, &str)] = &[
    ("save", ""),
    ("appendonly", "no"),
    ("cluster-enabled", "yes"),
    ("databases", "1"),
    ("maxmemory", "0"),
    ("maxmemory-policy", "noeviction"),
];

pub fn handle(shared: &Shared, session: &Session, args: &[Bytes]) -> Option<Reply> {
    Some(match args[1].to_ascii_lowercase().as_slice() {
        b"get" => {
            // The client limits this proxy runs with (`--timeout`, `--maxclients`,
            // `--client-query-buffer-limit`).
            let limits = &shared.limits;
            let timeout = limits.idle_timeout.map(|t| t.as_secs()).unwrap_or(0);
            let configured = [
                ("timeout", timeout.to_string()),
                ("maxclients", limits.maxclients.to_string()),
                ("client-query-buffer-limit", limits.query_buffer.to_string()),
            ];
            let all = PARAMETERS
                .iter()
                .map(|(name, value)| (*name, value.to_string()))
                .chain(configured);
            // Parameter names are lowercase; CONFIG GET matches patterns case-insensitively.
            let patterns: Vec<Vec<u8>> = args[2..].iter().map(|p| p.to_ascii_lowercase()).collect();
            let mut pairs = Vec::new();
            for (name, value) in all {
                if patterns.iter().any(|p| glob::matches(p, name.as_bytes())) {
                    pairs.push((
                        Frame::Bulk(Bytes::from_static(name.as_bytes())),
                        Frame::Bulk(Bytes::from(value)),
                    ));
                }
            }
            frame(session, Frame::Map(pairs))
        }
        b"resetstat" => ok(),
        _ => return None,
    })
}
