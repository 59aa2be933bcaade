//! CLIENT ID / GETNAME / SETNAME / INFO / LIST / NO-EVICT, as Redis 7.0 answers them. CLIENT LIST
//! shows the calling connection only (the proxy keeps no registry of clients yet).

use std::sync::Arc;

use bytes::Bytes;
use tessera_proto::resp::{Frame, Protocol};

use super::{frame, ok, verbatim};
use crate::client::{Reply, Session};
use crate::shared::Shared;

pub const BAD_NAME: &str =
    "ERR Client names cannot contain spaces, newlines or special characters.";

/// Redis accepts names of printable ASCII without spaces.
pub fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

pub fn handle(_shared: &Arc<Shared>, session: &mut Session, args: &[Bytes]) -> Option<Reply> {
    let sub = args[1].to_ascii_lowercase();
    Some(match sub.as_slice() {
        b"id" => frame(session, Frame::Integer(session.id as i64)),
        b"getname" => match &session.name {
            Some(name) => frame(session, Frame::Bulk(name.clone())),
            None => frame(session, Frame::Null),
        },
        b"setname" => {
            if !valid_name(&args[2]) {
                return Some(Reply::error(BAD_NAME));
            }
            session.name = (!args[2].is_empty()).then(|| args[2].clone());
            ok()
        }
        b"info" => {
            let line = describe(session, "client|info");
            verbatim(session, line)
        }
        b"list" => {
            let line = describe(session, "client|list");
            verbatim(session, line)
        }
        // Redis 7.2's CLIENT SETINFO (the table knows it; redis-py sends it on connect).
        b"setinfo" => match args[2].to_ascii_lowercase().as_slice() {
            b"lib-name" | b"lib-ver" => ok(),
            _ => Reply::error(&format!(
                "ERR Unrecognized option '{}'",
                String::from_utf8_lossy(&args[2])
            )),
        },
        b"no-evict" => match args[2].to_ascii_lowercase().as_slice() {
            b"on" | b"off" => ok(),
            _ => Reply::error("ERR syntax error"),
        },
        _ => return None,
    })
}

/// One CLIENT LIST line for this connection, in Redis's field order.
fn describe(session: &Session, cmd: &str) -> String {
    let name = session
        .name
        .as_ref()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .unwrap_or_default();
    let age = session.created.elapsed().as_secs();
    let resp = if session.protocol == Protocol::Resp3 {
        3
    } else {
        2
    };
    format!(
        "id={} addr={} laddr={} fd=0 name={name} age={age} idle=0 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=16384 rbp=16384 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={cmd} user=default redir=-1 resp={resp}\n",
        session.id, session.peer, session.local
    )
}
