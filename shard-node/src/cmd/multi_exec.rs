//! MULTI EXEC DISCARD WATCH UNWATCH, as Redis 7.0's multi.c and the MULTI rules of its
//! processCommand: between MULTI and EXEC every command but EXEC, DISCARD, MULTI, WATCH, QUIT and
//! RESET is checked (table, arity, cluster rule, no_multi) and queued; a refused one makes EXEC
//! answer EXECABORT. EXEC runs the queue under its slot's gate (`transaction::gate`), so no other
//! client's command on that slot runs in between, and logs the writes as one MULTI ... EXEC unit.

use bytes::Bytes;
use tessera_proto::command::CommandSpec;
use tessera_proto::resp::Frame;

use super::dispatch::DispatchEntry;
use super::parse::err;
use super::{execute_queued, key_slot, route, ClientSession, Ctx};
use crate::keyspace::now_ms;
use crate::state::NodeState;
use crate::transaction::{Multi, Queued, Unit};

const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

/// Marks the open transaction, if any, as refused (Redis's flagTransaction): a command was
/// rejected while queueing, so EXEC will answer EXECABORT.
pub fn refuse_queueing(session: &mut ClientSession) {
    if let Some(multi) = session.multi.as_mut() {
        multi.refused = true;
    }
}

/// The reply to a command the table refused (unknown, wrong arity), as Redis's rejectCommand:
/// an open transaction is flagged, and a refused EXEC itself discards it (execCommandAbort).
pub fn refuse(
    state: &NodeState,
    session: &mut ClientSession,
    args: &[Bytes],
    error: String,
) -> Frame {
    if args
        .first()
        .is_some_and(|name| name.eq_ignore_ascii_case(b"exec"))
    {
        session.multi = None;
        session.watched.unwatch_all(&state.keyspace);
        let reason = error.strip_prefix("ERR ").unwrap_or(&error);
        return Frame::error(format!(
            "EXECABORT Transaction discarded because of: {reason}"
        ));
    }
    refuse_queueing(session);
    Frame::error(error)
}

/// Queues a checked command when a transaction is open; `None` when the command runs now.
pub fn queue(
    session: &mut ClientSession,
    spec: &'static CommandSpec,
    args: &[Bytes],
) -> Option<Frame> {
    let multi = session.multi.as_mut()?;
    if spec.runs_inside_multi() {
        return None;
    }
    if spec.flags.contains(&"no_multi") {
        multi.refused = true;
        return Some(err("ERR Command not allowed inside a transaction"));
    }
    multi.queued.push(Queued {
        spec,
        args: args.to_vec(),
    });
    Some(Frame::Simple(Bytes::from_static(b"QUEUED")))
}

pub fn multi(session: &mut ClientSession) -> Frame {
    if session.multi.is_some() {
        return err("ERR MULTI calls can not be nested");
    }
    session.multi = Some(Multi::default());
    Frame::ok()
}

pub fn discard(ctx: &Ctx<'_>, session: &mut ClientSession) -> Frame {
    if session.multi.take().is_none() {
        return err("ERR DISCARD without MULTI");
    }
    session.watched.unwatch_all(&ctx.state.keyspace);
    Frame::ok()
}

pub fn watch(ctx: &Ctx<'_>, session: &mut ClientSession, args: &[Bytes]) -> Frame {
    if session.multi.is_some() {
        return err("ERR WATCH inside MULTI is not allowed");
    }
    for key in &args[1..] {
        session.watched.watch(&ctx.state.keyspace, key, ctx.now_ms);
    }
    Frame::ok()
}

pub fn unwatch(ctx: &Ctx<'_>, session: &mut ClientSession) -> Frame {
    session.watched.unwatch_all(&ctx.state.keyspace);
    Frame::ok()
}

/// EXEC: the cluster rule over the whole queue (as Redis's getNodeByQuery for EXEC: its errors
/// discard the transaction), EXECABORT when a command was refused, a null array when a watched
/// key changed, else the array of the queued commands' replies.
pub fn exec(state: &NodeState, session: &mut ClientSession, asking: bool) -> Frame {
    let Some(multi) = session.multi.take() else {
        return err("ERR EXEC without MULTI");
    };
    let keyspace = &state.keyspace;
    let slot = match transaction_slot(state, &multi.queued, session.readonly, asking) {
        Ok(slot) => slot,
        Err(reply) => {
            session.watched.unwatch_all(keyspace);
            return reply;
        }
    };
    if multi.refused {
        session.watched.unwatch_all(keyspace);
        return err(EXECABORT);
    }
    let _gate = slot.map(|slot| keyspace.gates().exclusive(slot));
    if let Some(slot) = slot {
        let keys = || {
            let queued = multi.queued.iter();
            queued
                .flat_map(|q| super::cluster_rule::command_keys(q.spec, &q.args))
                .collect()
        };
        // A transaction cannot wait for keys in transit: they count as written.
        if let Err(refusal) = super::cluster_rule::migration_check(state, slot, asking, true, keys)
        {
            session.watched.unwatch_all(keyspace);
            return refusal.into_reply();
        }
    }
    if multi.queued.iter().any(|q| q.spec.is_write()) && state.cluster.is_handing_over() {
        // As a write outside MULTI (`execute`): the transaction is not run.
        session.watched.unwatch_all(keyspace);
        return super::cluster_rule::handing_over();
    }
    if session.watched.changed(keyspace, now_ms()) {
        session.watched.unwatch_all(keyspace);
        return Frame::NullArray;
    }
    // As Redis: unwatch before running, so the transaction's own writes mark nobody's flag here.
    session.watched.unwatch_all(keyspace);

    let unit = Unit::default();
    // Blocking commands answer at once inside a transaction (Redis's CLIENT_DENY_BLOCKING).
    let deny_blocking = std::mem::replace(&mut session.deny_blocking, true);
    let mut replies = Vec::with_capacity(multi.queued.len());
    for queued in &multi.queued {
        let mut ctx = Ctx::new(state, true);
        ctx.unit = Some(&unit);
        replies.push(execute_queued(&ctx, session, queued.spec, &queued.args));
    }
    session.deny_blocking = deny_blocking;

    // Logged under the gate: an AOF rewrite (and a replica's snapshot) takes each slot under its
    // gate, so the slot is taken wholly before or wholly after the transaction and its log.
    let records = unit.into_records();
    if !records.is_empty() {
        state.replication.log.append_all(&records);
    }
    if let Some(slot) = slot {
        // Serves the clients blocked on keys the transaction gave data to, now it is over.
        drop(Ctx::new(state, true).lock_slot(slot));
    }
    Frame::Array(replies)
}

/// The slot all queued commands' keys share (`None`: no keys), checked by the cluster rule.
fn transaction_slot(
    state: &NodeState,
    queued: &[Queued],
    readonly: bool,
    asking: bool,
) -> Result<Option<u16>, Frame> {
    let mut slot = None;
    let mut write = false;
    for command in queued {
        write |= command.spec.is_write();
        match (slot, key_slot(command.spec, &command.args)?) {
            (_, None) => {}
            (None, found) => slot = found,
            (Some(s), Some(found)) if s != found => return Err(super::crossslot()),
            (Some(_), Some(_)) => {}
        }
    }
    route(state, slot, write, readonly, asking)?;
    Ok(slot)
}

/// The commands of this family, for the node's dispatch table (`cmd::dispatch`).
pub(super) const COMMANDS: &[DispatchEntry] = &[
    ("multi", |_, session, _| multi(session)),
    ("discard", |ctx, session, _| discard(ctx, session)),
    ("watch", watch),
    ("unwatch", |ctx, session, _| unwatch(ctx, session)),
];
