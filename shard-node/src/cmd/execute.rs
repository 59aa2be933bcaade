//! The one path every client command takes: look it up in the shared command table (unknown
//! command, arity), the node secret, the cluster rule (`cluster_rule`), eviction, the subscribed-
//! mode and MULTI rules, then its family's handler (`dispatch`), counted for INFO. `replay`
//! applies commands read back from the append-only file.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tessera_proto::command::{self, CommandSpec, Server};
use tessera_proto::resp::Frame;

use super::cluster_rule::{cluster_check, command_keys, migration_check, MoveRefusal};
use super::dispatch::dispatch;
use super::{multi_exec, parse, ClientSession, Ctx};
use crate::state::NodeState;

/// Runs one client command and returns its reply. Between MULTI and EXEC a command is checked
/// and queued instead (see `multi_exec`).
pub fn execute(state: &NodeState, session: &mut ClientSession, args: &[Bytes]) -> Frame {
    // The table resolves container subcommands and checks arity with Redis's exact errors.
    let spec = match command::resolve_served(Server::ShardNode, args) {
        Ok(spec) => spec,
        Err(text) => {
            state.stats.commands.reject_unresolved(args);
            return multi_exec::refuse(state, session, args, text);
        }
    };
    // The node secret, as Redis's requirepass: after unknown command and arity, before the
    // cluster rule; AUTH, HELLO, QUIT and RESET (flagged no_auth) pass.
    if session.must_authenticate(state) && !spec.flags.contains(&"no_auth") {
        state.stats.commands.reject(spec);
        multi_exec::refuse_queueing(session);
        return parse::err("NOAUTH Authentication required.");
    }
    // One clock reading serves CLIENT LIST's idle time and the lease the cluster rule checks.
    let now = Instant::now();
    session.info.lock().touch(spec.name, now);
    // ASKING holds for the next command only (inside MULTI, until EXEC or DISCARD), as Redis's
    // resetClient; RESTORE-ASKING (Redis 7.0's one command flagged `asking`) carries its own.
    let asking = session.asking || spec.name == "restore-asking";
    if spec.name != "multi" && (session.multi.is_none() || matches!(spec.name, "exec" | "discard"))
    {
        session.asking = false;
    }
    if spec.name == "exec" {
        if let Some(reply) = pubsub_refusal(session, spec) {
            state.stats.commands.reject(spec);
            return reply;
        }
        let reply = run_counted(state, spec, now, || {
            multi_exec::exec(state, session, asking)
        });
        session.woff = state.replication.offset();
        return reply;
    }
    let known_slot = match cluster_check(state, spec, args, session.readonly, asking, now) {
        Ok(known) => known,
        Err(reply) => {
            state.stats.commands.reject(spec);
            multi_exec::refuse_queueing(session);
            return reply;
        }
    };
    // A replica refuses client writes, after the cluster rule, as Redis's processCommand.
    if spec.is_write() && state.replication.is_replica() {
        state.stats.commands.reject(spec);
        multi_exec::refuse_queueing(session);
        return parse::err("READONLY You can't write against a read only replica.");
    }
    // evict: Redis's processCommand: with maxmemory set, evict before any command runs, and
    // refuse the commands that may add data (denyoom) when nothing more can be evicted.
    // The command's time (INFO commandstats) starts at its clock reading, or after eviction when
    // that ran: Redis does not count eviction in the command's time. A replica does not evict
    // (Redis's replica-ignore-maxmemory): its master's DELs do.
    let mut started = now;
    if state.config.maxmemory() > 0 && !state.replication.is_replica() {
        let outcome = state.evictor.perform(state);
        started = Instant::now();
        if outcome == crate::evict::Outcome::Fail && spec.flags.contains(&"denyoom") {
            state.stats.commands.reject(spec);
            multi_exec::refuse_queueing(session);
            return parse::err("OOM command not allowed when used memory > 'maxmemory'.");
        }
    }
    if let Some(reply) = pubsub_refusal(session, spec) {
        state.stats.commands.reject(spec);
        return reply;
    }
    // Queued commands meet a slot's move as Redis's do: checked when queued (the redirect
    // flags the transaction), and all together again at EXEC.
    if let (Some(known), Some(_)) = (known_slot, &session.multi) {
        let keys = || command_keys(spec, args);
        if let Err(refusal) = migration_check(state, known.slot(), asking, spec.is_write(), keys) {
            state.stats.commands.reject(spec);
            multi_exec::refuse_queueing(session);
            return refusal.into_reply();
        }
    }
    if let Some(reply) = multi_exec::queue(session, spec, args) {
        return reply;
    }
    // No transaction runs on the slot while the command does (see `multi_exec::gate`).
    let gates = state.keyspace.gates();
    let _gate = match known_slot {
        Some(known) => Gate::Slot(gates.enter(known.slot())),
        None if spec.is_write() => Gate::All(gates.enter_all()),
        None => Gate::None,
    };
    if let Some(known) = known_slot {
        let keys = || command_keys(spec, args);
        match migration_check(state, known.slot(), asking, spec.is_write(), keys) {
            Ok(()) => {}
            // Blocking commands answer TRYAGAIN: the connection awaits one wait at a time.
            Err(MoveRefusal::InTransit(keys))
                if !session.deny_blocking && !spec.flags.contains(&"blocking") =>
            {
                return await_landing(session, known.slot(), keys, args);
            }
            Err(refusal) => {
                state.stats.commands.reject(spec);
                return refusal.into_reply();
            }
        }
    }
    let reply = run_counted(state, spec, started, || {
        let mut ctx = Ctx::new(state, true);
        ctx.touch = touches_keys(spec);
        ctx.known_slot = known_slot;
        dispatch(&ctx, session, spec, args)
    });
    if spec.is_write() {
        // Reads never pay for this; a write's offset may include other clients' concurrent
        // writes, which only makes WAIT wait for a little more.
        session.woff = state.replication.offset();
    }
    reply
}

/// How long a write waits for its keys in transit to land before it answers TRYAGAIN: a batch
/// is in flight for one round trip to the target, and the mover gives up on it after 5 s.
const LANDING_WAIT: Duration = Duration::from_secs(6);
/// Most times a write waits for its keys to land: more than once only when a failed batch is
/// taken again at once.
const LANDING_WAITS: usize = 3;

/// Leaves a write to keys in transit for the connection to await: once they have landed it runs
/// again from the start (then here, or as an ASK to the target). Past `LANDING_WAIT` or
/// `LANDING_WAITS`, TRYAGAIN, which clients retry.
fn await_landing(
    session: &mut ClientSession,
    slot: u16,
    keys: Vec<Bytes>,
    args: &[Bytes],
) -> Frame {
    let args = args.to_vec();
    session.deferred = Some(Box::new(
        move |state: &NodeState, session: &mut ClientSession| {
            Box::pin(async move {
                let transit = state.keyspace.transit();
                for _ in 0..LANDING_WAITS {
                    let landed = tokio::time::timeout(LANDING_WAIT, transit.released(slot, &keys));
                    if landed.await.is_err() {
                        break;
                    }
                    let reply = execute(state, session, &args);
                    // Only another wait for landing can be left here (blocking commands never wait).
                    if session.deferred.take().is_none() {
                        return reply;
                    }
                }
                MoveRefusal::InTransit(keys).into_reply()
            })
        },
    ));
    // Not sent: the connection answers once the keys have landed.
    Frame::Null
}

/// The transaction gates a command holds while it runs: its slot's alone for a keyed command
/// (no allocation on the common path), every slot's for a keyless write.
enum Gate<'a> {
    Slot(#[allow(dead_code)] parking_lot::RwLockReadGuard<'a, ()>),
    All(#[allow(dead_code)] Vec<parking_lot::RwLockReadGuard<'a, ()>>),
    None,
}

/// The error a RESP2 client in subscribed mode gets for a command it may not run there.
fn pubsub_refusal(session: &ClientSession, spec: &CommandSpec) -> Option<Frame> {
    if !session.pubsub.restricts(session.protocol) || spec.allowed_when_subscribed() {
        return None;
    }
    Some(Frame::error(format!(
        "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are \
         allowed in this context",
        spec.name
    )))
}

/// Runs `run` as the command `spec`, counting it for INFO; its time is measured from `started`
/// (the command's own clock reading: one fewer per command).
fn run_counted(
    state: &NodeState,
    spec: &'static CommandSpec,
    started: Instant,
    run: impl FnOnce() -> Frame,
) -> Frame {
    state
        .stats
        .commands_processed
        .fetch_add(1, Ordering::Relaxed);
    let reply = run();
    let failed = matches!(reply, Frame::Error(_));
    state.stats.commands.record(spec, started.elapsed(), failed);
    reply
}

/// The container of a subcommand entry (`config` for `config|get`), else the entry's own name.
/// A byte search: `str::split` with a char pattern costs ~100 instructions more, and this runs
/// for every command.
pub(crate) fn container_name(spec: &CommandSpec) -> &'static str {
    let name = spec.name;
    match name.bytes().position(|b| b == b'|') {
        Some(bar) => name.get(..bar).unwrap_or(name),
        None => name,
    }
}

/// evict: whether `spec` updates the access metadata of the keys it looks up. Redis 7.0 looks
/// keys up with LOOKUP_NOTOUCH in TYPE, EXISTS, the TTL and EXPIRETIME families, OBJECT and
/// MEMORY USAGE (checked against redis-server: OBJECT FREQ stays at 5 after each of them, and
/// goes to 6 after EXPIRE, PERSIST, TOUCH or a read).
fn touches_keys(spec: &CommandSpec) -> bool {
    let name = container_name(spec);
    !matches!(
        name,
        "type" | "exists" | "ttl" | "pttl" | "expiretime" | "pexpiretime" | "object" | "memory"
    )
}

/// Runs a command EXEC took from its queue: checked when queued, under the transaction's gate.
pub(crate) fn execute_queued(
    ctx: &Ctx<'_>,
    session: &mut ClientSession,
    spec: &'static CommandSpec,
    args: &[Bytes],
) -> Frame {
    run_counted(ctx.state, spec, Instant::now(), || {
        dispatch(ctx, session, spec, args)
    })
}

/// Applies one command read back from the append-only file: no cluster checks, not logged again.
/// Errs with Redis's error text when the command is not a valid write.
pub fn replay(state: &NodeState, args: Vec<Bytes>) -> Result<(), String> {
    apply_write(state, args, false)
}

/// Applies one write of a slot's move (a key arriving on the target, or leaving the source): no
/// cluster checks, logged as the node's own writes are (AOF, replicas).
pub fn apply_moved(state: &NodeState, args: Vec<Bytes>) -> Result<(), String> {
    apply_write(state, args, true)
}

fn apply_write(state: &NodeState, args: Vec<Bytes>, log: bool) -> Result<(), String> {
    let spec = command::resolve_served(Server::ShardNode, &args)?;
    if !spec.is_write() {
        return Err(format!("ERR '{}' is not a write command", spec.name));
    }
    let ctx = Ctx::new(state, log);
    match dispatch(&ctx, &mut ClientSession::detached(), spec, &args) {
        Frame::Error(text) => Err(String::from_utf8_lossy(&text).into_owned()),
        _ => Ok(()),
    }
}
