//! MIGRATE host port key|"" destination-db timeout [COPY] [REPLACE] [AUTH password | AUTH2
//! username password] [KEYS key ...], as Redis 7.0's migrateCommand (src/cluster.c): what
//! `redis-cli --cluster reshard` moves a slot's keys with. The keys' values are taken here as DUMP
//! payloads; the connection then sends them to the target (a Tessera node or any Redis) as one
//! pipeline of `RESTORE-ASKING key ttl payload [REPLACE]`, after AUTH and SELECT when needed, and
//! deletes each key the target acknowledged (unless COPY), logged as one DEL (AOF, replicas).
//!
//! Connections to targets are cached per address, as Redis's migrateGetSocket does, and dropped
//! after 10 s unused (MIGRATE_SOCKET_CACHE_TTL) or on a socket error. A socket error on a cached
//! connection before anything was acknowledged is retried once on a new one, as Redis does.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tessera_proto::resp::connect::{connect, read_reply, ConnectError, Login};
use tessera_proto::resp::encode::command_bytes;
use tessera_proto::resp::Frame;
use tessera_proto::slot::key_hash_slot;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::cmd::parse::{self, err, ERR_NOT_INTEGER, ERR_SYNTAX};
use crate::cmd::{apply_moved, ClientSession, Ctx};
use crate::keyspace::transit::Held;
use crate::rdb;
use crate::state::NodeState;

/// Redis's MIGRATE_SOCKET_CACHE_TTL: a cached connection unused this long is closed.
const LINK_IDLE: Duration = Duration::from_secs(10);
/// Redis's MIGRATE_SOCKET_CACHE_ITEMS: at most this many cached connections.
const MAX_LINKS: usize = 64;

/// One key to send: its name, TTL in ms (0: none) and DUMP payload.
struct Outgoing {
    key: Bytes,
    ttl_ms: i64,
    payload: Vec<u8>,
}

/// One MIGRATE, checked, with its keys' values taken.
struct Migration {
    address: String,
    db: i64,
    timeout: Duration,
    copy: bool,
    replace: bool,
    /// AUTH's password, or AUTH2's username and password.
    auth: Option<(Option<Bytes>, Bytes)>,
    keys: Vec<Outgoing>,
    /// The keys are in flight (`keyspace::transit`) from when their values are taken until the
    /// Migration is dropped, after the acknowledged ones are deleted: a command over one of them
    /// meanwhile answers TRYAGAIN on a slot being moved, so no write lands between the copy and
    /// the delete and is lost with it.
    in_flight: Vec<Held>,
}

pub fn migrate(ctx: &Ctx<'_>, session: &mut ClientSession, args: &[Bytes]) -> Frame {
    let mut migration = match parse(args) {
        Ok(migration) => migration,
        Err(reply) => return reply,
    };
    let names: Vec<Bytes> = match args.iter().position(|a| parse::eq(a, "keys")) {
        Some(at) if args[3].is_empty() && at >= 6 => args[at + 1..].to_vec(),
        _ => vec![args[3].clone()],
    };
    for key in names {
        let mut txn = ctx.lock(&key);
        let Some(entry) = txn.read(&key) else {
            continue;
        };
        // Redis sends the TTL left, at least 1 ms (a key expiring meanwhile is not sent).
        let ttl_ms = match entry.expires_at_ms {
            None => 0,
            Some(at) => (at as i64 - ctx.now_ms as i64).max(1),
        };
        let payload = rdb::dump(entry.value);
        let held = ctx
            .state
            .keyspace
            .transit()
            .hold(key_hash_slot(&key), vec![key.clone()]);
        migration.in_flight.push(held);
        migration.keys.push(Outgoing {
            key,
            ttl_ms,
            payload,
        });
    }
    if migration.keys.is_empty() {
        return Frame::Simple(Bytes::from_static(b"NOKEY"));
    }
    if session.deny_blocking {
        return err("ERR MIGRATE cannot run inside a transaction on this node");
    }
    session.deferred = Some(Box::new(move |state: &NodeState, _: &mut ClientSession| {
        Box::pin(transfer(state, migration))
    }));
    // Not sent: the connection answers once the target has.
    Frame::Null
}

/// The arguments, checked in Redis's order: options, then timeout and db.
fn parse(args: &[Bytes]) -> Result<Migration, Frame> {
    let (mut copy, mut replace, mut auth) = (false, false, None);
    let mut j = 6;
    while j < args.len() {
        let more = args.len() - 1 - j;
        let arg = &args[j];
        if parse::eq(arg, "copy") {
            copy = true;
        } else if parse::eq(arg, "replace") {
            replace = true;
        } else if parse::eq(arg, "auth") {
            if more < 1 {
                return Err(err(ERR_SYNTAX));
            }
            auth = Some((None, args[j + 1].clone()));
            j += 1;
        } else if parse::eq(arg, "auth2") {
            if more < 2 {
                return Err(err(ERR_SYNTAX));
            }
            auth = Some((Some(args[j + 1].clone()), args[j + 2].clone()));
            j += 2;
        } else if parse::eq(arg, "keys") {
            if !args[3].is_empty() {
                return Err(err(
                    "ERR When using MIGRATE KEYS option, the key argument must be set to the \
                     empty string",
                ));
            }
            break;
        } else {
            return Err(err(ERR_SYNTAX));
        }
        j += 1;
    }
    let timeout = parse::parse_i64(&args[5]).ok_or_else(|| err(ERR_NOT_INTEGER))?;
    let db = parse::parse_i64(&args[4]).ok_or_else(|| err(ERR_NOT_INTEGER))?;
    let timeout = if timeout <= 0 { 1000 } else { timeout as u64 };
    let host = String::from_utf8_lossy(&args[1]);
    let port = String::from_utf8_lossy(&args[2]);
    let address = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok(Migration {
        address,
        db,
        timeout: Duration::from_millis(timeout),
        copy,
        replace,
        auth,
        keys: Vec::new(),
        in_flight: Vec::new(),
    })
}

/// A connection to a MIGRATE target.
struct Link {
    stream: TcpStream,
    buf: BytesMut,
    /// The db last selected without error (Redis's last_dbid): SELECT is sent when it differs.
    selected: Option<i64>,
    used: Instant,
}

/// The node's cached connections to MIGRATE targets, by address.
#[derive(Default)]
pub struct Links(Mutex<HashMap<String, Link>>);

impl Links {
    /// The cached connection to `address` if it was used recently, else a new one.
    async fn take(&self, address: &str, timeout: Duration) -> Result<Link, ConnectError> {
        let cached = self.0.lock().remove(address);
        if let Some(link) = cached.filter(|l| l.used.elapsed() < LINK_IDLE) {
            return Ok(link);
        }
        let (stream, buf) = connect(address, Login::default(), timeout).await?;
        Ok(Link {
            stream,
            buf,
            selected: None,
            used: Instant::now(),
        })
    }

    /// Caches `link` for the next MIGRATE to `address`, dropping idle ones.
    fn put(&self, address: String, mut link: Link) {
        link.used = Instant::now();
        let mut links = self.0.lock();
        links.retain(|_, l| l.used.elapsed() < LINK_IDLE);
        if links.len() >= MAX_LINKS {
            if let Some(oldest) = links
                .iter()
                .min_by_key(|(_, l)| l.used)
                .map(|(a, _)| a.clone())
            {
                links.remove(&oldest);
            }
        }
        links.insert(address, link);
    }
}

/// What the target answered to one pipeline.
#[derive(Default)]
struct Answered {
    /// Keys the target acknowledged, in order.
    acked: Vec<Bytes>,
    /// The first error reply (AUTH's, SELECT's, else a RESTORE's), without its '-'.
    error: Option<String>,
}

/// A socket error: while writing or reading, whether it was a timeout, and whether anything
/// the target answered was read before it.
struct SocketError {
    writing: bool,
    timed_out: bool,
    answered: Option<Answered>,
}

/// Sends the keys and answers MIGRATE as Redis does, deleting the acknowledged keys.
async fn transfer(state: &NodeState, migration: Migration) -> Frame {
    let links = &state.migrate_links;
    let mut may_retry = true;
    loop {
        let mut link = match links.take(&migration.address, migration.timeout).await {
            Ok(link) => link,
            Err(ConnectError::TimedOut) => {
                return err("IOERR error or timeout connecting to the client")
            }
            // Redis connects without blocking and learns of a refusal when it writes.
            Err(_) => return err("IOERR error or timeout writing to target instance"),
        };
        match exchange(&mut link, &migration).await {
            Ok(answered) => {
                delete_acked(state, &migration, &answered.acked);
                return match answered.error {
                    Some(error) => {
                        link.selected = None;
                        links.put(migration.address, link);
                        Frame::error(format!("ERR Target instance replied with error: {error}"))
                    }
                    None => {
                        link.selected = Some(migration.db);
                        links.put(migration.address, link);
                        Frame::ok()
                    }
                };
            }
            Err(failed) => {
                // The connection is dropped here; a retry opens a new one.
                let answered = failed.answered.unwrap_or_default();
                let nothing_done = answered.acked.is_empty() && answered.error.is_none();
                if nothing_done && !failed.timed_out && may_retry {
                    may_retry = false;
                    continue;
                }
                delete_acked(state, &migration, &answered.acked);
                if let Some(error) = answered.error {
                    return Frame::error(format!(
                        "ERR Target instance replied with error: {error}"
                    ));
                }
                let doing = if failed.writing { "writing" } else { "reading" };
                return Frame::error(format!("IOERR error or timeout {doing} to target instance"));
            }
        }
    }
}

/// Deletes the keys the target acknowledged (unless COPY), logged as one DEL.
fn delete_acked(state: &NodeState, migration: &Migration, acked: &[Bytes]) {
    if migration.copy || acked.is_empty() {
        return;
    }
    let mut del = Vec::with_capacity(acked.len() + 1);
    del.push(Bytes::from_static(b"DEL"));
    del.extend(acked.iter().cloned());
    if let Err(error) = apply_moved(state, del) {
        tracing::warn!(%error, "MIGRATE could not delete the keys it moved");
    }
}

/// Writes AUTH, SELECT and the RESTORE-ASKINGs as one pipeline and reads their replies.
async fn exchange(link: &mut Link, migration: &Migration) -> Result<Answered, SocketError> {
    let timeout = migration.timeout;
    let mut out = Vec::new();
    if let Some((user, password)) = &migration.auth {
        match user {
            Some(user) => out.extend(command_bytes(&[b"AUTH", user, password])),
            None => out.extend(command_bytes(&[b"AUTH", password])),
        }
    }
    let select = link.selected != Some(migration.db);
    if select {
        out.extend(command_bytes(&[
            b"SELECT",
            migration.db.to_string().as_bytes(),
        ]));
    }
    for k in &migration.keys {
        let ttl = k.ttl_ms.to_string();
        let mut args: Vec<&[u8]> = vec![b"RESTORE-ASKING", &k.key, ttl.as_bytes(), &k.payload];
        if migration.replace {
            args.push(b"REPLACE");
        }
        out.extend(command_bytes(&args));
    }
    let socket_error = |writing, timed_out, answered| SocketError {
        writing,
        timed_out,
        answered,
    };
    match tokio::time::timeout(timeout, link.stream.write_all(&out)).await {
        Err(_) => return Err(socket_error(true, true, None)),
        Ok(Err(_)) => return Err(socket_error(true, false, None)),
        Ok(Ok(())) => {}
    }
    let mut answered = Answered::default();
    let handshake = usize::from(migration.auth.is_some()) + usize::from(select);
    let mut handshake_error = None;
    for _ in 0..handshake {
        match read_line(link, timeout).await {
            Ok(reply) => handshake_error = handshake_error.or(reply),
            Err(timed_out) => return Err(socket_error(false, timed_out, None)),
        }
    }
    answered.error.clone_from(&handshake_error);
    for k in &migration.keys {
        match read_line(link, timeout).await {
            Ok(reply) => {
                if reply.is_none() && handshake_error.is_none() {
                    answered.acked.push(k.key.clone());
                }
                answered.error = answered.error.take().or(reply);
            }
            Err(timed_out) => return Err(socket_error(false, timed_out, Some(answered))),
        }
    }
    Ok(answered)
}

/// Reads one reply: `Ok(None)` for a success, `Ok(Some(text))` for an error reply (without its
/// '-' and CRLF), `Err(timed_out)` on a socket error.
async fn read_line(link: &mut Link, timeout: Duration) -> Result<Option<String>, bool> {
    let reply = tokio::time::timeout(timeout, read_reply(&mut link.stream, &mut link.buf))
        .await
        .map_err(|_| true)?
        .map_err(|_| false)?;
    Ok((reply.first() == Some(&b'-'))
        .then(|| String::from_utf8_lossy(&reply[1..]).trim_end().to_string()))
}
