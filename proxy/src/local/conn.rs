//! PING, HELLO, AUTH, SELECT, RESET: what every client sends on connect. AUTH and HELLO AUTH
//! check the proxy's own users (`crate::acl`).

use bytes::Bytes;
use tessera_proto::client::{hello_reply, Hello, HELLO_NOAUTH};
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
    let hello = match Hello::parse(args) {
        Ok(hello) => hello,
        Err(text) => return Reply::error(&text),
    };
    if let Some((user, password)) = hello.credentials {
        match shared.acl.authenticate(user, password) {
            Some(user) => session.log_in(shared, &user),
            None => return Reply::error(WRONGPASS),
        }
    }
    if session.user.is_none() {
        return Reply::error(HELLO_NOAUTH);
    }
    if let Some(name) = hello.name {
        session.name = (!name.is_empty()).then(|| name.clone());
    }
    if let Some(protocol) = hello.protocol {
        session.protocol = protocol;
    }
    frame(session, hello_reply(session.protocol, session.id, "master"))
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
