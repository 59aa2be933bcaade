//! PING, HELLO, AUTH, SELECT, RESET: what every client sends on connect. AUTH and HELLO AUTH
//! check the proxy's own users (`crate::acl`).

use bytes::Bytes;
use tessera_proto::resp::{Frame, Protocol};

use super::{frame, ok};
use crate::acl::WRONGPASS;
use crate::router::parse_i64;
use crate::session::{Reply, Session};
use crate::shared::Shared;

pub fn ping(session: &Session, args: &[Bytes]) -> Reply {
    match args.len() {
        1 => Reply::ready(Bytes::from_static(b"+PONG\r\n")),
        2 => frame(session, Frame::Bulk(args[1].clone())),
        _ => Reply::error("ERR wrong number of arguments for 'ping' command"),
    }
}

/// AUTH [user] password, as Redis 7.0's authCommand.
pub fn auth(shared: &Shared, session: &mut Session, args: &[Bytes]) -> Reply {
    let (user, password) = match args.len() {
        2 => {
            let nopass = shared.acl.get(b"default").is_some_and(|d| d.nopass);
            if nopass {
                return Reply::error(
                    "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                );
            }
            (&b"default"[..], &args[1])
        }
        3 => (&args[1][..], &args[2]),
        _ => return Reply::error("ERR syntax error"),
    };
    match shared.acl.authenticate(user, password) {
        Some(user) => {
            session.log_in(shared, &user);
            ok()
        }
        None => Reply::error(WRONGPASS),
    }
}

pub fn select(args: &[Bytes]) -> Reply {
    match parse_i64(&args[1]) {
        None => Reply::error("ERR value is not an integer or out of range"),
        Some(0) => ok(),
        Some(_) => Reply::error("ERR SELECT is not allowed in cluster mode"),
    }
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`, in Redis 7.0's order: options parsed
/// (a bad name refused) first, then AUTH, then the NOAUTH check, then the changes.
pub fn hello(shared: &Shared, session: &mut Session, args: &[Bytes]) -> Reply {
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
    let mut credentials = None;
    let mut i = 2;
    while i < args.len() {
        let option = args[i].to_ascii_lowercase();
        let more = args.len() - i - 1;
        if option == b"auth" && more >= 2 {
            credentials = Some((&args[i + 1], &args[i + 2]));
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
    if let Some((user, password)) = credentials {
        match shared.acl.authenticate(user, password) {
            Some(user) => session.log_in(shared, &user),
            None => return Reply::error(WRONGPASS),
        }
    }
    if session.user.is_none() {
        return Reply::error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        );
    }
    if let Some(name) = name {
        session.name = (!name.is_empty()).then_some(name);
    }
    session.protocol = protocol;
    let proto = if protocol == Protocol::Resp3 { 3 } else { 2 };
    let text = |s: &'static str| Frame::Bulk(Bytes::from_static(s.as_bytes()));
    let map = Frame::Map(vec![
        (text("server"), text("redis")),
        (text("version"), text(tessera_proto::REDIS_VERSION)),
        (text("proto"), Frame::Integer(proto)),
        (text("id"), Frame::Integer(session.id as i64)),
        (text("mode"), text("cluster")),
        (text("role"), text("master")),
        (text("modules"), Frame::Array(Vec::new())),
    ]);
    frame(session, map)
}

/// RESET: back to a fresh connection's state (RESP2, no name, the default user and not
/// authenticated); Redis answers `+RESET`.
pub fn reset(shared: &Shared, session: &mut Session) -> Reply {
    session.protocol = Protocol::Resp2;
    session.name = None;
    session.user_name = Bytes::from_static(b"default");
    session.authenticated = false;
    session.refresh_acl(shared);
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
