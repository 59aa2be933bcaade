//! MULTI / EXEC / DISCARD / WATCH / UNWATCH through the proxy, for transactions whose keys share
//! one slot. Between MULTI and EXEC the proxy checks each command as a Redis cluster node would
//! (unknown command, arity, CROSSSLOT, cluster state: an error flags the transaction, so EXEC
//! answers EXECABORT), answers `+QUEUED`, and keeps the encoded command. The first keyed command
//! (or the WATCH before MULTI) decides the slot. EXEC sends MULTI, the queued commands and EXEC
//! in one batch on a dedicated connection taken from the owner's idle pool, answers the backend's
//! EXEC reply, and hands the connection back. WATCH takes that connection at once and keeps it
//! until EXEC, DISCARD or UNWATCH. Redirects (MOVED, ASK, TRYAGAIN; a queued command's or EXEC's)
//! are followed by the one follower (`backend::follow`): the whole transaction runs again where
//! it says, behind ASKING for an ASK (Redis keeps ASKING's flag for the whole MULTI). WATCH is
//! followed the same way and pins the connection that answered; a watched transaction is not
//! run again elsewhere (its watches live on its connection): redirected, it did not run, and
//! EXEC answers as a failed watch (null), as a node does when a watched key is migrated away.
//! A WATCH redirected away from a connection that holds earlier watches makes EXEC answer as a
//! failed watch, as a node does when a watched key is migrated away.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tessera_proto::command;
use tessera_proto::slot::key_hash_slot;
use tessera_proto::topology::Access;

use crate::backend::dedicated::Dedicated;
use crate::backend::follow::{self, Outcome, Redirection};
use crate::backend::Backend;
use crate::error::BackendError;
use crate::forward::error_bytes;
use crate::router::{self, Route, CROSSSLOT};
use crate::session::{Reply, Session};
use crate::shared::Shared;
use crate::topology::Routes;

const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";
const MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";
const EXEC: &[u8] = b"*1\r\n$4\r\nEXEC\r\n";
const UNWATCH: &[u8] = b"*1\r\n$7\r\nUNWATCH\r\n";

/// Keyless commands answered by the proxy elsewhere that mean the same on a backend, so they may
/// be queued; other proxy-local commands are refused inside MULTI.
const QUEUEABLE_LOCAL: &[&str] = &["ping", "echo", "time", "select", "unwatch"];

/// A client's transaction state. Empty (the default) for a client outside MULTI and WATCH.
#[derive(Debug, Default)]
pub struct Transaction {
    multi: bool,
    /// An error was answered while queuing: EXEC must abort.
    flagged: bool,
    /// The slot the transaction's keys hash to (or that WATCH pinned).
    slot: Option<u16>,
    /// Encoded commands, in order.
    queued: Vec<Bytes>,
    /// The connection WATCH took; shared with the reply future that uses it.
    pinned: Option<Arc<Mutex<Pinned>>>,
}

/// The connection WATCH took, and how its watches were made.
#[derive(Debug, Default)]
struct Pinned {
    conn: Option<Dedicated>,
    /// The watches were made behind ASKING (an ASK redirect): so must MULTI be.
    asking: bool,
    /// Earlier watches were left on a connection to a node the slot moved away from: EXEC
    /// answers as a failed watch.
    lost: bool,
}

impl Transaction {
    /// Commands queued in MULTI, or -1 outside a transaction (CLIENT LIST's multi).
    pub fn queued_count(&self) -> i64 {
        if self.multi {
            self.queued.len() as i64
        } else {
            -1
        }
    }

    /// Inside MULTI: every command goes through `queue` rather than the normal path.
    pub fn in_multi(&self) -> bool {
        self.multi
    }
}

/// Answers `text` and flags the transaction, so EXEC aborts (Redis's rejectCommand in MULTI).
pub fn flag(session: &mut Session, text: &str) -> Reply {
    session.txn.flagged = true;
    Reply::error(text)
}

fn not_in_transaction(name: &str) -> String {
    format!("ERR command '{name}' is not supported inside a transaction by the Tessera proxy")
}

/// MULTI.
pub fn multi(session: &mut Session) -> Reply {
    if session.txn.multi {
        return Reply::error("ERR MULTI calls can not be nested");
    }
    session.txn.multi = true;
    session.txn.flagged = false;
    session.txn.queued.clear();
    Reply::ready(Bytes::from_static(b"+OK\r\n"))
}

/// Any command of a client inside MULTI.
pub fn queue(shared: &Arc<Shared>, session: &mut Session, args: &[Bytes]) -> Reply {
    let spec = match command::resolve_served(command::Server::Proxy, args) {
        Ok(spec) => spec,
        Err(text) => return flag(session, &text),
    };
    // Not queued, as in Redis: these act at once.
    match spec.name {
        "multi" => return multi(session),
        "watch" => return Reply::error("ERR WATCH inside MULTI is not allowed"),
        "exec" => return exec(shared, session),
        "discard" => return discard(session),
        "quit" | "reset" => return session.handle_now(shared, args),
        _ => {}
    }
    let snapshot = shared.view.load();
    let slot = match router::route(args, &snapshot.topology, &snapshot.health) {
        Route::Error(text) => return flag(session, &text),
        Route::Forward { slot, .. } | Route::Blocking { slot, .. } => {
            (!spec.key_indexes(args).is_empty()).then_some(slot)
        }
        Route::Split(_) => return flag(session, CROSSSLOT),
        Route::FanOut(_) => return flag(session, &not_in_transaction(spec.name)),
        Route::Local(local) => {
            let top = local.name.split('|').next().unwrap_or(local.name);
            if !QUEUEABLE_LOCAL.contains(&top) {
                return flag(session, &not_in_transaction(local.name));
            }
            None
        }
    };
    if let Some(slot) = slot {
        match session.txn.slot {
            None => session.txn.slot = Some(slot),
            Some(first) if first != slot => return flag(session, CROSSSLOT),
            Some(_) => {}
        }
    }
    let request = session.encode_args(args);
    session.txn.queued.push(request);
    Reply::ready(Bytes::from_static(b"+QUEUED\r\n"))
}

/// Ends the transaction state (EXEC, DISCARD, RESET): what was queued and the pinned connection.
fn take(session: &mut Session) -> (Transaction, Option<Pinned>) {
    let txn = std::mem::take(&mut session.txn);
    let pinned = txn
        .pinned
        .as_ref()
        .map(|p| std::mem::take(&mut *p.lock().unwrap_or_else(|e| e.into_inner())))
        .filter(|p| p.conn.is_some());
    (txn, pinned)
}

/// Sends UNWATCH on a pinned connection, so it goes back to the pool clean.
async fn release(conn: Dedicated) {
    let limit = Some(conn.timeout());
    if let Ok(reply) = conn.call(Bytes::from_static(UNWATCH), limit).await {
        if reply.starts_with(b"+OK") {
            conn.set_dirty(false);
        }
    }
}

/// EXEC.
pub fn exec(shared: &Arc<Shared>, session: &mut Session) -> Reply {
    if !session.txn.multi {
        return Reply::error("ERR EXEC without MULTI");
    }
    // A transaction may write: WAIT counts its master.
    if let Ok(backend) = target(&shared.view.load(), session.txn.slot) {
        session.written.note(backend);
    }
    let (txn, pinned) = take(session);
    let pinned = pinned.and_then(|p| Some((p.conn?, p.asking, p.lost)));
    if txn.flagged {
        return match pinned {
            Some((conn, ..)) => Reply::Exclusive(Box::pin(async move {
                release(conn).await;
                error_bytes(EXECABORT)
            })),
            None => Reply::error(EXECABORT),
        };
    }
    let protocol = session.protocol;
    let shared = shared.clone();
    match pinned {
        Some((conn, _, true)) => Reply::Exclusive(Box::pin(async move {
            release(conn).await;
            tessera_proto::resp::Frame::NullArray.to_bytes(protocol)
        })),
        Some((conn, asking, false)) => Reply::Exclusive(Box::pin(async move {
            // Not run again elsewhere: the watches live on this connection.
            // Redirected (its keys moved, or are moving, away: a queued command or EXEC
            // answered MOVED, ASK or TRYAGAIN), it did not run: answered as a failed watch, as
            // Redis answers when a watched key is migrated away, so the client retries it.
            match run(&conn, asking, &txn.queued).await {
                Ok(Executed {
                    redirect: Some(redirect),
                    ..
                }) => {
                    if let Redirection::Moved { .. } = redirect {
                        shared.view.request_refresh();
                    }
                    tessera_proto::resp::Frame::NullArray.to_bytes(protocol)
                }
                Ok(executed) => executed.reply,
                Err(error) => crate::forward::failure(&shared, txn.slot, &error),
            }
        })),
        None if txn.queued.is_empty() => Reply::ready(Bytes::from_static(b"*0\r\n")),
        None => {
            let backend = match target(&shared.view.load(), txn.slot) {
                Ok(backend) => backend.clone(),
                Err(text) => return Reply::error(text),
            };
            Reply::Exclusive(Box::pin(async move {
                let queued = &txn.queued;
                let attempt = |target: Arc<Backend>, asking: bool| async move {
                    run(&target.dedicated(protocol), asking, queued).await
                };
                match shared.follow.run(backend, attempt).await {
                    Ok(executed) => executed.reply,
                    Err(error) => crate::forward::failure(&shared, txn.slot, &error),
                }
            }))
        }
    }
}

/// What one run of a transaction came back with: the reply for the client (EXEC's, or MULTI's
/// refusal), and the first redirect a queued command or EXEC answered.
struct Executed {
    reply: Bytes,
    redirect: Option<Redirection>,
}

impl Outcome for Executed {
    fn redirection(&self) -> Option<Redirection> {
        self.redirect.clone()
    }
}

/// Runs MULTI (behind ASKING when `asking`), the queued commands and EXEC on `conn`.
async fn run(conn: &Dedicated, asking: bool, queued: &[Bytes]) -> Result<Executed, BackendError> {
    let limit = Some(conn.timeout());
    let multi = Bytes::from_static(MULTI);
    let multi = if asking {
        conn.send_asking(multi)
    } else {
        conn.send(multi)
    };
    // MULTI alone first: were it refused (a backend without transactions), the queued commands
    // must not run one by one.
    let reply = conn.wait(multi, limit).await?;
    if &reply[..] != b"+OK\r\n" {
        return Ok(Executed {
            reply,
            redirect: None,
        });
    }
    let replies: Vec<_> = queued.iter().map(|r| conn.send(r.clone())).collect();
    let exec = conn.send(Bytes::from_static(EXEC));
    let mut redirect = None;
    for reply in replies {
        let reply = conn.wait(reply, limit).await?;
        if redirect.is_none() {
            redirect = follow::parse(&reply);
        }
    }
    let reply = conn.wait(exec, limit).await?;
    // EXEC (even an aborted one) unwatches every key: the connection is clean.
    conn.set_dirty(false);
    Ok(Executed {
        redirect: redirect.or_else(|| follow::parse(&reply)),
        reply,
    })
}

/// The backend that serves `slot` now (any master for a keyless transaction), or the
/// CLUSTERDOWN text.
fn target(snapshot: &Routes, slot: Option<u16>) -> Result<&Arc<Backend>, &'static str> {
    let slot = slot.unwrap_or_else(|| snapshot.topology.first_assigned_slot().unwrap_or(0));
    let node = snapshot
        .topology
        .route_with(&snapshot.health, slot, Access::Write)
        .map_err(|down| down.message())?;
    snapshot
        .backend_of(node)
        .ok_or("ERR no backend for a node of the topology")
}

/// DISCARD.
pub fn discard(session: &mut Session) -> Reply {
    if !session.txn.multi {
        return Reply::error("ERR DISCARD without MULTI");
    }
    match take(session).1.and_then(|p| p.conn) {
        Some(conn) => Reply::Exclusive(Box::pin(async move {
            release(conn).await;
            Bytes::from_static(b"+OK\r\n")
        })),
        None => Reply::ready(Bytes::from_static(b"+OK\r\n")),
    }
}

/// EXEC refused before it runs (NOAUTH, NOPERM): as Redis's execCommandAbort, the transaction
/// and its watched keys are discarded and the error comes as `EXECABORT ... because of: ...`.
pub fn abort_exec(session: &mut Session, text: &str) -> Reply {
    let reply = error_bytes(&format!(
        "EXECABORT Transaction discarded because of: {text}"
    ));
    match take(session).1.and_then(|p| p.conn) {
        Some(conn) => Reply::Exclusive(Box::pin(async move {
            release(conn).await;
            reply
        })),
        None => Reply::ready(reply),
    }
}

/// UNWATCH outside MULTI (inside, it is queued like any command).
pub fn unwatch(session: &mut Session) -> Reply {
    let pinned = session.txn.pinned.take();
    session.txn.slot = None;
    match pinned.and_then(|p| p.lock().unwrap_or_else(|e| e.into_inner()).conn.take()) {
        Some(conn) => Reply::Exclusive(Box::pin(async move {
            release(conn).await;
            Bytes::from_static(b"+OK\r\n")
        })),
        None => Reply::ready(Bytes::from_static(b"+OK\r\n")),
    }
}

/// WATCH outside MULTI: pins a dedicated connection to the keys' owner (CROSSSLOT when they, or
/// an earlier WATCH, name another slot) and sends WATCH there, on the pinned connection if an
/// earlier WATCH took one. A redirect is followed (`backend::follow`) on fresh dedicated
/// connections, and the one that answered is pinned.
pub fn watch(
    shared: &Arc<Shared>,
    session: &mut Session,
    snapshot: &Routes,
    args: &[Bytes],
) -> Reply {
    // WATCH is local in the command table (it must not take a pipelined connection): its keys
    // are routed here, as a keyed command's would be.
    let mut slot = None;
    for key in &args[1..] {
        let s = key_hash_slot(key);
        if slot.is_some_and(|first| first != s) {
            return Reply::error(CROSSSLOT);
        }
        slot = Some(s);
    }
    let slot = slot.unwrap_or(0);
    let node = match snapshot
        .topology
        .route_with(&snapshot.health, slot, Access::Read)
    {
        Ok(node) => node,
        Err(down) => return Reply::error(down.message()),
    };
    if session.txn.slot.is_some_and(|s| s != slot) {
        return Reply::error(CROSSSLOT);
    }
    let Some(owner) = snapshot.backend_of(node) else {
        return Reply::error("ERR no backend for a node of the topology");
    };
    let owner = owner.clone();
    let pinned = session
        .txn
        .pinned
        .get_or_insert_with(Default::default)
        .clone();
    session.txn.slot = Some(slot);
    let request = session.encode_args(args);
    let shared = shared.clone();
    let protocol = session.protocol;
    Reply::Exclusive(Box::pin(async move {
        let (earlier, asking) = {
            let pinned = pinned.lock().unwrap_or_else(|e| e.into_inner());
            (pinned.conn.as_ref().map(Dedicated::share), pinned.asking)
        };
        let held = earlier.is_some();
        let first = match earlier {
            Some(conn) => watch_on(conn, asking, request.clone()).await,
            None => watch_on(owner.dedicated(protocol), false, request.clone()).await,
        };
        let attempt = |target: Arc<Backend>, asking: bool| {
            let sent = watch_on(target.dedicated(protocol), asking, request.clone());
            async move {
                let mut watched = sent.await?;
                watched.redirected = true;
                Ok(watched)
            }
        };
        let watched = match shared.follow.follow(owner, first, attempt).await {
            Ok(watched) => watched,
            Err(error) => return crate::forward::failure(&shared, Some(slot), &error),
        };
        if watched.redirected {
            let mut pinned = pinned.lock().unwrap_or_else(|e| e.into_inner());
            pinned.lost |= held;
            pinned.asking = watched.asking;
            pinned.conn = Some(watched.conn);
        } else if !held {
            pinned.lock().unwrap_or_else(|e| e.into_inner()).conn = Some(watched.conn);
        }
        watched.reply
    }))
}

/// One WATCH sent: its reply and the connection that holds the watches.
struct Watched {
    reply: Bytes,
    conn: Dedicated,
    asking: bool,
    /// Sent after a redirect (not on the first connection asked).
    redirected: bool,
}

impl Outcome for Watched {
    fn redirection(&self) -> Option<Redirection> {
        follow::parse(&self.reply)
    }
}

/// Sends WATCH on `conn` (behind ASKING when `asking`); until UNWATCH, EXEC or DISCARD the
/// connection carries watched keys.
async fn watch_on(conn: Dedicated, asking: bool, request: Bytes) -> Result<Watched, BackendError> {
    conn.set_dirty(true);
    let reply = if asking {
        conn.send_asking(request)
    } else {
        conn.send(request)
    };
    let reply = conn.wait(reply, Some(conn.timeout())).await?;
    Ok(Watched {
        reply,
        conn,
        asking,
        redirected: false,
    })
}

/// RESET: the transaction and the watched keys are gone; the pinned connection, its state
/// unknown, is closed rather than reused.
pub fn reset(session: &mut Session) {
    let _ = take(session);
}
