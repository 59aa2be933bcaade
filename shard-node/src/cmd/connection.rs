//! Connection commands: PING ECHO QUIT RESET HELLO AUTH SELECT CLIENT.

use bytes::Bytes;
use tessera_proto::client::{
    self, valid_name, ClientType, Hello, ListFilter, BAD_NAME, HELLO_NOAUTH,
};
use tessera_proto::resp::{Frame, Protocol};

use super::dispatch::DispatchEntry;
use super::parse::{self, err, ERR_NOT_INTEGER, ERR_SYNTAX};
use super::{subcommand_arity, unknown_subcommand, ClientSession, Ctx};

const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

pub fn ping(_session: &ClientSession, args: &[Bytes]) -> Frame {
    match args.len() {
        1 => Frame::Simple(Bytes::from_static(b"PONG")),
        2 => Frame::Bulk(args[1].clone()),
        _ => Frame::error(tessera_proto::command::arity_error("ping")),
    }
}

pub fn echo(args: &[Bytes]) -> Frame {
    Frame::Bulk(args[1].clone())
}

pub fn quit(session: &mut ClientSession) -> Frame {
    session.quit = true;
    Frame::ok()
}

/// RESET, as Redis 7.0's clearClientConnectionState: the transaction is discarded and every key
/// unwatched, every subscription dropped, the protocol back to RESP2, the name cleared, and the
/// client is the default user again (so with a node secret it must AUTH anew).
pub fn reset(ctx: &Ctx<'_>, session: &mut ClientSession) -> Frame {
    session.multi = None;
    session.watched.unwatch_all(&ctx.state.keyspace);
    ctx.state.pubsub.remove_client(&mut session.pubsub);
    session.protocol = Protocol::Resp2;
    session.authenticated = false;
    {
        let mut info = session.info.lock();
        info.resp = 2;
        info.name = Bytes::new();
    }
    Frame::Simple(Bytes::from_static(b"RESET"))
}

/// The only user is `default`. Without a node secret it has no password (as a fresh Redis): any
/// password is accepted for it. With one, the password must be the secret (compared in constant
/// time). Any other user name is refused.
fn authenticate(ctx: &Ctx<'_>, user: &[u8], password: &[u8]) -> bool {
    if user != b"default" {
        return false;
    }
    match &ctx.state.stats.node_secret {
        None => true,
        Some(secret) => secret_matches(secret, password),
    }
}

/// Whether `password` is the node secret, compared in constant time (for equal lengths), so the
/// time of a refusal tells nothing of how much was right.
pub fn secret_matches(secret: &[u8], password: &[u8]) -> bool {
    secret.len() == password.len()
        && secret
            .iter()
            .zip(password)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// AUTH [user] password, as Redis 7.0's authCommand with requirepass set to the node secret.
pub fn auth(ctx: &Ctx<'_>, session: &mut ClientSession, args: &[Bytes]) -> Frame {
    let (user, password) =
        match args.len() {
            2 if ctx.state.stats.node_secret.is_none() => return err(
                "ERR AUTH <password> called without any password configured for the default user. \
                 Are you sure your configuration is correct?",
            ),
            2 => (&b"default"[..], &args[1]),
            3 => (&args[1][..], &args[2]),
            _ => return err(ERR_SYNTAX),
        };
    if authenticate(ctx, user, password) {
        session.authenticated = true;
        Frame::ok()
    } else {
        err(WRONGPASS)
    }
}

pub fn select(args: &[Bytes]) -> Frame {
    match parse::parse_i64(&args[1]) {
        Some(n) if i32::try_from(n).is_err() => {
            err("ERR value is out of range, value must between -2147483648 and 2147483647")
        }
        None => err(ERR_NOT_INTEGER),
        Some(0) => Frame::ok(),
        Some(_) => err("ERR SELECT is not allowed in cluster mode"),
    }
}

/// Redis's clientSetNameOrReply check: printable ASCII without spaces.
fn set_name(session: &ClientSession, name: &Bytes) -> Result<(), Frame> {
    if !valid_name(name) {
        return Err(err(BAD_NAME));
    }
    session.info.lock().name = name.clone();
    Ok(())
}

pub fn hello(ctx: &Ctx<'_>, session: &mut ClientSession, args: &[Bytes]) -> Frame {
    let hello = match Hello::parse(args) {
        Ok(hello) => hello,
        Err(text) => return Frame::error(text),
    };
    // Redis's order: options parsed, then AUTH, then the NOAUTH check, then the changes.
    if let Some((user, password)) = hello.credentials {
        if !authenticate(ctx, user, password) {
            return err(WRONGPASS);
        }
        session.authenticated = true;
    }
    if session.must_authenticate(ctx.state) {
        return err(HELLO_NOAUTH);
    }
    if let Some(name) = hello.name {
        if let Err(e) = set_name(session, name) {
            return e;
        }
    }
    if let Some(protocol) = hello.protocol {
        session.protocol = protocol;
        session.info.lock().resp = if protocol == Protocol::Resp3 { 3 } else { 2 };
    }
    client::hello_reply(session.protocol, session.id, "master")
}

pub fn client(ctx: &Ctx<'_>, session: &mut ClientSession, args: &[Bytes]) -> Frame {
    let sub = &args[1];
    let lower = String::from_utf8_lossy(sub).to_ascii_lowercase();
    let arity_ok = match lower.as_str() {
        "id" | "info" | "getname" => args.len() == 2,
        "setname" => args.len() == 3,
        "setinfo" => args.len() == 4,
        "list" => args.len() >= 2,
        "help" => args.len() == 2,
        _ => return unknown_subcommand("client", sub),
    };
    if !arity_ok {
        return subcommand_arity("client", sub);
    }
    match lower.as_str() {
        "id" => Frame::Integer(session.id as i64),
        "info" => Frame::Verbatim(Bytes::from(session.info.lock().line())),
        "getname" => {
            let name = session.info.lock().name.clone();
            if name.is_empty() {
                Frame::Null
            } else {
                Frame::Bulk(name)
            }
        }
        "setname" => match set_name(session, &args[2]) {
            Ok(()) => Frame::ok(),
            Err(e) => e,
        },
        "setinfo" => set_info(&args[2], &args[3]),
        "list" => client_list(ctx, &args[2..]),
        _ => Frame::Array(
            [
                "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GETNAME",
                "    Return the name of the current connection.",
                "ID",
                "    Return the ID of the current connection.",
                "INFO",
                "    Return information about the current client connection.",
                "LIST [TYPE <type>] [ID <id> [<id> ...]]",
                "    Return information about client connections.",
                "SETINFO <option> <value>",
                "    Set client meta attr. Options are: LIB-NAME, LIB-VER.",
                "SETNAME <name>",
                "    Assign the name <name> to the current connection.",
                "HELP",
                "    Print this help.",
            ]
            .iter()
            .map(|line| Frame::Simple(Bytes::from_static(line.as_bytes())))
            .collect(),
        ),
    }
}

/// CLIENT SETINFO: checked as Redis checks it; not shown by CLIENT LIST, which keeps
/// redis-server 7.0's fields.
fn set_info(attr: &Bytes, value: &Bytes) -> Frame {
    match client::setinfo(attr, value) {
        Ok(_) => Frame::ok(),
        Err(text) => Frame::error(text),
    }
}

/// CLIENT LIST [TYPE normal|master|replica|pubsub] | [ID id ...]: IDs in the order given. A
/// client with a subscription is of type `pubsub`, every other one `normal` (replication links
/// are not clients).
fn client_list(ctx: &Ctx<'_>, options: &[Bytes]) -> Frame {
    let filter = match ListFilter::parse(options) {
        Ok(filter) => filter,
        Err(text) => return Frame::error(text),
    };
    let clients = ctx.stats().clients.lock();
    let mut text = String::new();
    match filter {
        ListFilter::All => {
            for info in clients.values() {
                text.push_str(&info.lock().line());
            }
        }
        ListFilter::Type(wanted) => {
            for info in clients.values() {
                let info = info.lock();
                let kind = if info.status.is_pubsub() {
                    ClientType::PubSub
                } else {
                    ClientType::Normal
                };
                if kind == wanted {
                    text.push_str(&info.line());
                }
            }
        }
        ListFilter::Ids(ids) => {
            for id in ids {
                if let Some(info) = u64::try_from(id).ok().and_then(|id| clients.get(&id)) {
                    text.push_str(&info.lock().line());
                }
            }
        }
    }
    Frame::Verbatim(Bytes::from(text))
}

/// PING answers `["pong", arg]` to a RESP2 client in subscribed mode, as Redis.
fn ping_or_subscribed_ping(_ctx: &Ctx<'_>, session: &mut ClientSession, args: &[Bytes]) -> Frame {
    if session.pubsub.restricts(session.protocol) {
        super::pubsub::subscribed_ping(args)
    } else {
        ping(session, args)
    }
}

/// The commands of this family, for the node's dispatch table (`cmd::dispatch`).
pub(super) const COMMANDS: &[DispatchEntry] = &[
    ("ping", ping_or_subscribed_ping),
    ("echo", |_, _, args| echo(args)),
    ("quit", |_, session, _| quit(session)),
    ("reset", |ctx, session, _| reset(ctx, session)),
    ("hello", hello),
    ("auth", auth),
    ("select", |_, _, args| select(args)),
    ("client", client),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn args(parts: &[&str]) -> Vec<Bytes> {
        parts.iter().map(|p| Bytes::from(p.to_string())).collect()
    }

    #[test]
    fn auth_and_select_errors() {
        let state = crate::cmd::testing::state();
        let ctx = Ctx::new(&state, false);
        let mut session = ClientSession::detached();
        assert!(
            matches!(auth(&ctx, &mut session, &args(&["auth", "x"])), Frame::Error(e) if e.starts_with(b"ERR AUTH <password>"))
        );
        assert_eq!(
            auth(&ctx, &mut session, &args(&["auth", "default", "x"])),
            Frame::ok()
        );
        assert!(
            matches!(auth(&ctx, &mut session, &args(&["auth", "bob", "x"])), Frame::Error(e) if e.starts_with(b"WRONGPASS"))
        );
        assert_eq!(select(&args(&["select", "0"])), Frame::ok());
        assert_eq!(
            select(&args(&["select", "1"])),
            err("ERR SELECT is not allowed in cluster mode")
        );
        assert_eq!(select(&args(&["select", "x"])), err(ERR_NOT_INTEGER));
    }

    #[test]
    fn the_node_secret_gates_every_command_but_auth() {
        use crate::cmd::testing::run;
        let mut state = crate::cmd::testing::state();
        state.stats.node_secret = Some(Bytes::from_static(b"s3cret"));
        assert_eq!(run(&state, "GET k"), "-NOAUTH Authentication required.\r\n");
        assert_eq!(
            run(&state, "NOSUCH"),
            "-ERR unknown command 'NOSUCH', with args beginning with: \r\n"
        );
        assert_eq!(run(&state, "AUTH wrong"), format!("-{WRONGPASS}\r\n"));
        assert!(run(&state, "HELLO 3").starts_with("-NOAUTH HELLO must be called"));
        let ctx = Ctx::new(&state, false);
        let mut session = ClientSession::detached();
        assert_eq!(
            auth(&ctx, &mut session, &args(&["auth", "s3cret"])),
            Frame::ok()
        );
        assert!(session.authenticated);
        let mut other = ClientSession::detached();
        assert!(matches!(
            hello(
                &ctx,
                &mut other,
                &args(&["hello", "3", "auth", "default", "s3cret"])
            ),
            Frame::Map(_)
        ));
        assert!(other.authenticated);
        assert_eq!(
            crate::cmd::execute(&state, &mut other, &args(&["get", "k"])),
            Frame::Null
        );
    }

    #[test]
    fn ping_and_names() {
        let session = ClientSession::detached();
        assert_eq!(
            ping(&session, &args(&["ping"])),
            Frame::Simple(Bytes::from_static(b"PONG"))
        );
        assert_eq!(ping(&session, &args(&["ping", "a"])), Frame::bulk("a"));
        assert!(set_name(&session, &Bytes::from_static(b"a b")).is_err());
        assert!(set_name(&session, &Bytes::from_static(b"ab")).is_ok());
        assert_eq!(session.info.lock().name.as_ref(), b"ab");
    }
}
