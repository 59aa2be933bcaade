//! CLIENT ID / GETNAME / SETNAME / INFO / LIST / KILL / NO-EVICT / TRACKING / SETINFO, as Redis
//! 7.0 answers them, over the proxy's own clients (`crate::client_list`).

use std::sync::Arc;

use bytes::Bytes;
use tessera_proto::client::{self, valid_name, ClientType, ListFilter, BAD_NAME};
use tessera_proto::resp::Frame;

use super::{frame, ok, verbatim};
use crate::client_list::{ClientHandle, ClientState, Stop};
use crate::router::parse_i64;
use crate::session::{Reply, Session};
use crate::shared::Shared;

pub fn handle(shared: &Arc<Shared>, session: &mut Session, args: &[Bytes]) -> Option<Reply> {
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
            session.last_command = "client|info";
            session.publish_state(0, 0, false);
            let line = session.handle.describe(&session.handle.snapshot());
            verbatim(session, line)
        }
        b"list" => {
            session.last_command = "client|list";
            session.publish_state(0, 0, false);
            list(shared, session, args)
        }
        b"kill" => kill(shared, session, args),
        // Redis 7.2's CLIENT SETINFO (the table knows it; redis-py sends it on connect).
        // Checked, not shown: CLIENT LIST keeps redis-server 7.0's fields.
        b"setinfo" => match client::setinfo(&args[2], &args[3]) {
            Ok(_) => ok(),
            Err(text) => Reply::error(&text),
        },
        b"no-evict" => match args[2].to_ascii_lowercase().as_slice() {
            b"on" | b"off" => ok(),
            _ => Reply::error("ERR syntax error"),
        },
        // Tracking is off and stays off: turning it on would promise invalidations the proxy
        // does not send.
        b"tracking" => match args[2].to_ascii_lowercase().as_slice() {
            b"off" => ok(),
            b"on" => {
                Reply::error("ERR CLIENT TRACKING on is not supported by the Tessera proxy yet")
            }
            _ => Reply::error("ERR syntax error"),
        },
        _ => return None,
    })
}

fn type_of(state: &ClientState) -> ClientType {
    if ClientHandle::is_pubsub(state) {
        ClientType::PubSub
    } else {
        ClientType::Normal
    }
}

/// CLIENT LIST [TYPE type] [ID id ...].
fn list(shared: &Shared, session: &Session, args: &[Bytes]) -> Reply {
    let filter = match ListFilter::parse(&args[2..]) {
        Ok(filter) => filter,
        Err(text) => return Reply::error(&text),
    };
    let mut out = String::new();
    match filter {
        ListFilter::All => {
            for client in shared.clients.all() {
                out.push_str(&client.describe(&client.snapshot()));
            }
        }
        ListFilter::Type(wanted) => {
            for client in shared.clients.all() {
                let state = client.snapshot();
                if type_of(&state) == wanted {
                    out.push_str(&client.describe(&state));
                }
            }
        }
        ListFilter::Ids(ids) => {
            for id in ids {
                if let Some(client) = u64::try_from(id).ok().and_then(|id| shared.clients.get(id)) {
                    out.push_str(&client.describe(&client.snapshot()));
                }
            }
        }
    }
    verbatim(session, out)
}

/// CLIENT KILL addr:port (old form: +OK or "No such client"), or CLIENT KILL with filters (ID,
/// ADDR, LADDR, USER, SKIPME, TYPE): the number of clients killed. A client killing itself gets
/// its reply first, then is closed.
fn kill(shared: &Shared, session: &mut Session, args: &[Bytes]) -> Reply {
    if args.len() == 3 {
        let addr = String::from_utf8_lossy(&args[2]);
        let found = shared
            .clients
            .all()
            .into_iter()
            .find(|c| c.peer.to_string() == addr);
        return match found {
            Some(client) => {
                kill_one(session, &client);
                ok()
            }
            None => Reply::error("ERR No such client"),
        };
    }
    let mut id = None;
    let mut addr = None;
    let mut laddr = None;
    let mut user = None;
    let mut kind = None;
    let mut skipme = true;
    let mut i = 2;
    while i < args.len() {
        let Some(value) = args.get(i + 1) else {
            return Reply::error("ERR syntax error");
        };
        match args[i].to_ascii_lowercase().as_slice() {
            b"id" => match parse_i64(value) {
                Some(n) if n > 0 => id = Some(n as u64),
                _ => return Reply::error("ERR client-id should be greater than 0"),
            },
            b"type" => match ClientType::parse(value) {
                Ok(t) => kind = Some(t),
                Err(text) => return Reply::error(&text),
            },
            b"addr" => addr = Some(String::from_utf8_lossy(value).into_owned()),
            b"laddr" => laddr = Some(String::from_utf8_lossy(value).into_owned()),
            b"user" => {
                if shared.acl.get(value).is_none() {
                    return Reply::error(&format!(
                        "ERR No such user '{}'",
                        String::from_utf8_lossy(value)
                    ));
                }
                user = Some(value.clone());
            }
            b"skipme" => match value.to_ascii_lowercase().as_slice() {
                b"yes" => skipme = true,
                b"no" => skipme = false,
                _ => return Reply::error("ERR syntax error"),
            },
            _ => return Reply::error("ERR syntax error"),
        }
        i += 2;
    }
    let mut killed = 0;
    for client in shared.clients.all() {
        if client.id == session.id {
            // The live session knows its own state better than its last published snapshot.
            session.publish_state(0, 0, false);
        }
        let state = client.snapshot();
        let matches = id.is_none_or(|id| client.id == id)
            && addr.as_ref().is_none_or(|a| client.peer.to_string() == *a)
            && laddr
                .as_ref()
                .is_none_or(|a| client.local.to_string() == *a)
            && user.as_ref().is_none_or(|u| state.user == *u)
            && kind.is_none_or(|k| type_of(&state) == k)
            && !(skipme && client.id == session.id);
        if matches {
            kill_one(session, &client);
            killed += 1;
        }
    }
    frame(session, Frame::Integer(killed))
}

fn kill_one(session: &mut Session, client: &ClientHandle) {
    if client.id == session.id {
        // Redis's CLIENT_CLOSE_AFTER_REPLY.
        session.quit = true;
    } else {
        client.stop.ask(Stop::Kill);
    }
}
