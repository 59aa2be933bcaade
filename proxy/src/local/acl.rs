//! ACL WHOAMI / USERS / LIST / GETUSER / SETUSER / DELUSER / CAT over the proxy's own users
//! (`crate::acl`), in Redis 7.0's reply shapes. ACL LOAD / SAVE / LOG / DRYRUN / GENPASS are not
//! served (the honest "not supported" error).

use std::sync::Arc;

use bytes::Bytes;
use tessera_proto::command;
use tessera_proto::resp::Frame;

use super::{frame, ok};
use crate::acl::CATEGORIES;
use crate::client_list::Stop;
use crate::session::{Reply, Session};
use crate::shared::Shared;

fn bulk(text: impl Into<Bytes>) -> Frame {
    Frame::Bulk(text.into())
}

fn text(s: &'static str) -> Frame {
    Frame::Bulk(Bytes::from_static(s.as_bytes()))
}

pub fn handle(shared: &Arc<Shared>, session: &mut Session, args: &[Bytes]) -> Option<Reply> {
    let acl = &shared.acl;
    Some(match args[1].to_ascii_lowercase().as_slice() {
        b"whoami" => frame(session, bulk(session.user_name.clone())),
        b"users" => {
            let names = acl.users().iter().map(|u| bulk(u.name.clone())).collect();
            frame(session, Frame::Array(names))
        }
        b"list" => {
            let lines = acl.users().iter().map(|u| bulk(u.describe())).collect();
            frame(session, Frame::Array(lines))
        }
        b"getuser" => match acl.get(&args[2]) {
            None => frame(session, Frame::Null),
            Some(user) => {
                let flags = Frame::Set(user.flags().into_iter().map(text).collect());
                let passwords = user.passwords.iter().map(|p| bulk(p.clone())).collect();
                frame(
                    session,
                    Frame::Map(vec![
                        (text("flags"), flags),
                        (text("passwords"), Frame::Array(passwords)),
                        (text("commands"), bulk(user.describe_commands())),
                        (text("keys"), bulk(user.describe_keys())),
                        (text("channels"), bulk(user.describe_channels())),
                        (text("selectors"), Frame::Array(Vec::new())),
                    ]),
                )
            }
        },
        b"setuser" => {
            let name = &args[2];
            if name.iter().any(|b| *b == b' ' || *b == 0) {
                return Some(Reply::error(
                    "ERR Usernames can't contain spaces or null characters",
                ));
            }
            match acl.set_user(name, &args[3..]) {
                Ok(()) => ok(),
                Err((rule, error)) => Reply::error(&format!(
                    "ERR Error in ACL SETUSER modifier '{}': {}",
                    String::from_utf8_lossy(&rule),
                    error.message()
                )),
            }
        }
        b"deluser" => {
            if args[2..].iter().any(|n| &n[..] == b"default") {
                return Some(Reply::error("ERR The 'default' user cannot be removed"));
            }
            let removed = acl.delete_users(&args[2..]);
            // Redis frees the clients of a deleted user (the caller after its reply).
            for client in shared.clients.all() {
                if client.id == session.id {
                    if args[2..].contains(&session.user_name) {
                        session.quit = true;
                    }
                } else if args[2..].contains(&client.snapshot().user) {
                    client.stop.ask(Stop::Kill);
                }
            }
            frame(session, Frame::Integer(removed as i64))
        }
        b"cat" => match args.get(2) {
            None => frame(
                session,
                Frame::Array(CATEGORIES.iter().copied().map(text).collect()),
            ),
            Some(category) => {
                let category = String::from_utf8_lossy(category).to_ascii_lowercase();
                if !CATEGORIES.contains(&category.as_str()) {
                    return Some(Reply::error(&format!("ERR Unknown category '{category}'")));
                }
                let mut names = Vec::new();
                for spec in command::all() {
                    if spec.acl_categories.contains(&category.as_str()) {
                        names.push(text(spec.name));
                    }
                    for sub in spec.subcommands {
                        if sub.acl_categories.contains(&category.as_str()) {
                            names.push(text(sub.name));
                        }
                    }
                }
                frame(session, Frame::Array(names))
            }
        },
        _ => return None,
    })
}
