//! COMMAND, COMMAND COUNT / INFO / DOCS / LIST / GETKEYS, rendered from the shared command table
//! by `command::reply`, so the proxy and the shard nodes answer alike; only the commands the
//! proxy serves are shown.

use bytes::Bytes;
use tessera_proto::command::{self, reply, CommandSpec, Server};
use tessera_proto::resp::Frame;

use super::frame;
use crate::session::{Reply, Session};

pub fn handle(session: &Session, args: &[Bytes]) -> Option<Reply> {
    let Some(sub) = args.get(1) else {
        let all = command::served(Server::Proxy).map(reply::info).collect();
        return Some(frame(session, Frame::Array(all)));
    };
    Some(match sub.to_ascii_lowercase().as_slice() {
        b"count" => frame(
            session,
            Frame::Integer(command::served(Server::Proxy).count() as i64),
        ),
        b"list" => {
            let names = command::served(Server::Proxy)
                .map(|c| Frame::Bulk(Bytes::from_static(c.name.as_bytes())))
                .collect();
            frame(session, Frame::Array(names))
        }
        b"info" => {
            let entries = if args.len() == 2 {
                command::served(Server::Proxy).map(reply::info).collect()
            } else {
                args[2..]
                    .iter()
                    .map(|name| {
                        command::lookup_served(Server::Proxy, name)
                            .map(reply::info)
                            .unwrap_or(Frame::Null)
                    })
                    .collect()
            };
            frame(session, Frame::Array(entries))
        }
        b"docs" => {
            let entry = |spec: &'static CommandSpec| {
                (
                    Frame::Bulk(Bytes::from_static(spec.name.as_bytes())),
                    reply::docs(spec),
                )
            };
            let pairs = if args.len() == 2 {
                command::served(Server::Proxy).map(entry).collect()
            } else {
                args[2..]
                    .iter()
                    .filter_map(|name| command::lookup_served(Server::Proxy, name))
                    .map(entry)
                    .collect()
            };
            frame(session, Frame::Map(pairs))
        }
        b"getkeys" => getkeys(session, &args[2..]),
        _ => return None,
    })
}

fn getkeys(session: &Session, command_args: &[Bytes]) -> Reply {
    let Some(spec) = command::lookup_served(Server::Proxy, &command_args[0]) else {
        return Reply::error("ERR Invalid command specified");
    };
    if !spec.arity_ok(command_args.len()) {
        return Reply::error("ERR Invalid number of arguments specified for command");
    }
    let keys: Vec<Frame> = spec
        .key_indexes(command_args)
        .into_iter()
        .filter_map(|i| command_args.get(i).cloned().map(Frame::Bulk))
        .collect();
    if keys.is_empty() {
        return Reply::error("ERR The command has no key arguments");
    }
    frame(session, Frame::Array(keys))
}
