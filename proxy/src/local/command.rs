//! COMMAND and its subcommands, answered by the shared implementation (`command::reply::command`)
//! over the commands the proxy serves, so the proxy and the shard nodes answer alike.

use bytes::Bytes;
use tessera_proto::command::{reply, Server};

use super::frame;
use crate::session::{Reply, Session};

pub fn handle(session: &Session, args: &[Bytes]) -> Option<Reply> {
    Some(frame(session, reply::command(Server::Proxy, args)))
}
