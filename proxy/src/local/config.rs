//! CONFIG GET over the few parameters clients ask about (redis-benchmark reads save and
//! appendonly); CONFIG SET and the rest are refused honestly, CONFIG RESETSTAT accepted.

use bytes::Bytes;
use tessera_proto::resp::Frame;

use super::{frame, glob_match, ok};
use crate::client::{Reply, Session};

/// What the proxy reports; it has no persistence of its own.
const PARAMETERS: &[(&str, &str)] = &[
    ("save", ""),
    ("appendonly", "no"),
    ("cluster-enabled", "yes"),
    ("databases", "1"),
    ("maxmemory", "0"),
    ("maxmemory-policy", "noeviction"),
    ("timeout", "0"),
];

pub fn handle(session: &Session, args: &[Bytes]) -> Option<Reply> {
    Some(match args[1].to_ascii_lowercase().as_slice() {
        b"get" => {
            let mut pairs = Vec::new();
            for (name, value) in PARAMETERS {
                if args[2..].iter().any(|p| glob_match(p, name.as_bytes())) {
                    pairs.push((
                        Frame::Bulk(Bytes::from_static(name.as_bytes())),
                        Frame::Bulk(Bytes::from_static(value.as_bytes())),
                    ));
                }
            }
            frame(session, Frame::Map(pairs))
        }
        b"resetstat" => ok(),
        _ => return None,
    })
}
