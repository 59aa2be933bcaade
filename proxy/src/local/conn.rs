//! PING, HELLO, AUTH, SELECT: what every client sends on connect. No password is configured on
//! the proxy yet (issue 5 brings requirepass and ACL users), so AUTH answers as Redis does then.

use bytes::Bytes;
use tessera_proto::resp::{Frame, Protocol};

use super::{frame, ok};
use crate::client::{Reply, Session};
use crate::router::parse_i64;

pub fn ping(session: &Session, args: &[Bytes]) -> Reply {
    match args.len() {
        1 => Reply::ready(Bytes::from_static(b"+PONG\r\n")),
        2 => frame(session, Frame::Bulk(args[1].clone())),
        _ => Reply::error("ERR wrong number of arguments for 'ping' command"),
    }
}

const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// With no password set, only the default user exists and any password opens it.
fn check_user(user: &[u8]) -> Result<(), Reply> {
    if user == b"default" {
        Ok(())
    } else {
        Err(Reply::error(WRONGPASS))
    }
}

pub fn auth(args: &[Bytes]) -> Reply {
    match args.len() {
        2 => Reply::error(
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        ),
        3 => match check_user(&args[1]) {
            Ok(()) => ok(),
            Err(reply) => reply,
        },
        _ => Reply::error("ERR syntax error"),
    }
}

pub fn select(args: &[Bytes]) -> Reply {
    match parse_i64(&args[1]) {
        None => Reply::error("ERR value is not an integer or out of range"),
        Some(0) => ok(),
        Some(_) => Reply::error("ERR SELECT is not allowed in cluster mode"),
    }
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`.
pub fn hello(session: &mut Session, args: &[Bytes]) -> Reply {
    let mut protocol = session.protocol;
    if let Some(version) = args.get(1) {
        protocol = match parse_i64(version) {
            None => return Reply::error("ERR Protocol version is not an integer or out of range"),
            Some(2) => Protocol::Resp2,
            Some(3) => Protocol::Resp3,
            Some(_) => return Reply::error("NOPROTO unsupported protocol version"),
        };
    }
    let mut name = None;
    let mut i = 2;
    while i < args.len() {
        let option = args[i].to_ascii_lowercase();
        let more = args.len() - i - 1;
        if option == b"auth" && more >= 2 {
            if let Err(reply) = check_user(&args[i + 1]) {
                return reply;
            }
            i += 3;
        } else if option == b"setname" && more >= 1 {
            if !super::client::valid_name(&args[i + 1]) {
                return Reply::error(super::client::BAD_NAME);
            }
            name = Some(args[i + 1].clone());
            i += 2;
        } else {
            return Reply::error(&format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(&args[i])
            ));
        }
    }
    if let Some(name) = name {
        session.name = (!name.is_empty()).then_some(name);
    }
    session.protocol = protocol;
    let proto = if protocol == Protocol::Resp3 { 3 } else { 2 };
    let text = |s: &'static str| Frame::Bulk(Bytes::from_static(s.as_bytes()));
    let map = Frame::Map(vec![
        (text("server"), text("redis")),
        (text("version"), text("7.0.15")),
        (text("proto"), Frame::Integer(proto)),
        (text("id"), Frame::Integer(session.id as i64)),
        (text("mode"), text("cluster")),
        (text("role"), text("master")),
        (text("modules"), Frame::Array(Vec::new())),
    ]);
    frame(session, map)
}

/// RESET: back to a fresh connection's state (RESP2, no name); Redis answers `+RESET`.
pub fn reset(session: &mut Session) -> Reply {
    session.protocol = Protocol::Resp2;
    session.name = None;
    Reply::ready(Bytes::from_static(b"+RESET\r\n"))
}

/// TIME: seconds and microseconds, as two bulk strings.
pub fn time(session: &Session) -> Reply {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    frame(
        session,
        Frame::Array(vec![
            Frame::Bulk(Bytes::from(now.as_secs().to_string())),
            Frame::Bulk(Bytes::from(now.subsec_micros().to_string())),
        ]),
    )
}
