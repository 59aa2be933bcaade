//! Commands the proxy answers itself, as a Redis 7.0.15 cluster node would: connection commands
//! (`conn`), ACL (`acl`), CLIENT (`client`), COMMAND (`command`), CONFIG (`config`), INFO
//! (`info`) and CLUSTER (`cluster`, presenting one virtual master per real master at the proxy's
//! address, and the real cluster state).

mod acl;
mod client;
mod cluster;
mod command;
mod config;
mod conn;
mod info;

pub use cluster::MyselfPicker;

use std::sync::Arc;

use bytes::Bytes;
use tessera_proto::command::CommandSpec;
use tessera_proto::resp::{Frame, Protocol};

use crate::session::{Reply, Session};
use crate::shared::Shared;
use crate::topology::Routes;

/// Answers a command the router marked local. `spec` is what `command::resolve` found (the
/// subcommand's entry for containers), so arity and subcommand names are already checked.
pub fn handle(
    shared: &Arc<Shared>,
    session: &mut Session,
    snapshot: &Routes,
    spec: &'static CommandSpec,
    args: &[Bytes],
) -> Reply {
    let name = args[0].to_ascii_lowercase();
    let reply = match name.as_slice() {
        b"ping" => Some(conn::ping(session, args)),
        b"echo" => Some(frame(session, Frame::Bulk(args[1].clone()))),
        b"quit" => {
            session.quit = true;
            Some(ok())
        }
        b"hello" => Some(conn::hello(shared, session, args)),
        b"auth" => Some(conn::auth(shared, session, args)),
        b"select" => Some(conn::select(args)),
        b"readonly" | b"readwrite" | b"asking" => Some(ok()),
        b"reset" => {
            crate::transaction::reset(session);
            Some(conn::reset(shared, session))
        }
        b"multi" => Some(crate::transaction::multi(session)),
        b"exec" => Some(crate::transaction::exec(shared, session)),
        b"discard" => Some(crate::transaction::discard(session)),
        b"watch" => Some(crate::transaction::watch(shared, session, snapshot, args)),
        b"unwatch" => Some(crate::transaction::unwatch(session)),
        b"subscribe" | b"psubscribe" | b"ssubscribe" | b"unsubscribe" | b"punsubscribe"
        | b"sunsubscribe" => Some(crate::pubsub::command(shared, session, snapshot, args)),
        b"time" => Some(conn::time(session)),
        b"client" => client::handle(shared, session, args),
        b"acl" => acl::handle(shared, session, args),
        b"command" => command::handle(session, args),
        b"config" => config::handle(shared, session, args),
        b"info" => Some(info::handle(shared, session, snapshot, args)),
        b"cluster" => cluster::handle(shared, session, snapshot, args),
        b"wait" => Some(crate::wait::run(shared, session, snapshot, args)),
        _ => None,
    };
    // Known to the table but not (yet) served by the proxy: say so rather than pretend.
    reply.unwrap_or_else(|| Reply::error(&crate::router::unsupported_error(spec.name)))
}

fn ok() -> Reply {
    Reply::ready(Bytes::from_static(b"+OK\r\n"))
}

fn frame(session: &Session, frame: Frame) -> Reply {
    Reply::ready(frame.to_bytes(session.protocol))
}

/// A long text reply: a bulk string in RESP2, a verbatim string in RESP3 (as Redis's
/// `addReplyVerbatim`).
fn verbatim(session: &Session, text: String) -> Reply {
    let frame = match session.protocol {
        Protocol::Resp2 => Frame::Bulk(text.into()),
        Protocol::Resp3 => Frame::Verbatim(text.into()),
    };
    Reply::ready(frame.to_bytes(session.protocol))
}
