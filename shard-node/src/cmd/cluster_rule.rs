//! The cluster rule for one command, as Redis's getNodeByQuery, applied in one place: all keys in
//! one slot (CROSSSLOT), the slot served (CLUSTERDOWN) by this node (MOVED), and writes refused
//! while the node has lost the control plane.

use std::time::Instant;

use bytes::Bytes;
use tessera_proto::command::{self, CommandSpec, Server};
use tessera_proto::resp::Frame;
use tessera_proto::topology::{Access, NodeId, Topology};

use super::{parse, KnownSlot};
use crate::state::NodeState;

/// The cluster rule again for a client blocked in `args` (BLPOP, ...), as Redis's
/// clusterRedirectBlockedClientIfNeeded: a slot that moved away or went down while it waited
/// answers MOVED / CLUSTERDOWN instead of waiting on.
pub fn cluster_recheck(state: &NodeState, args: &[Bytes]) -> Option<Frame> {
    let spec = command::resolve_served(Server::ShardNode, args).ok()?;
    cluster_check(state, spec, args, false, false, Instant::now()).err()
}

/// The cluster rule for one command, as Redis's getNodeByQuery: keyless commands pass; all keys
/// must share one slot (CROSSSLOT); the slot's serving master must exist (CLUSTERDOWN) and be this
/// node (MOVED), or this node a replica of it and the client READONLY with a read, or this node
/// the slot's importing target and the client ASKING; and a node that lost the control plane
/// refuses writes. The slot comes back with the key it was hashed from, for the handler's
/// `Ctx::lock`. A slot being moved is checked again under its gate (`migration_check`).
pub(super) fn cluster_check(
    state: &NodeState,
    spec: &CommandSpec,
    args: &[Bytes],
    readonly: bool,
    asking: bool,
    now: Instant,
) -> Result<Option<KnownSlot>, Frame> {
    let found = spec.key_slot(args).map_err(|_| crossslot())?;
    route_at(
        state,
        found.map(|k| k.slot),
        spec.is_write(),
        readonly,
        asking,
        now,
    )?;
    Ok(found.map(|k| KnownSlot::new(k.first_key, k.slot)))
}

/// Why a command may not run now on a slot being moved.
#[derive(Debug)]
pub(super) enum MoveRefusal {
    /// It writes keys that are in a batch on its way to the target: it may run once the batch
    /// has landed (`keyspace::transit`), then here or, the keys gone, as an ASK.
    InTransit(Vec<Bytes>),
    /// Answered now: ASK or TRYAGAIN.
    Reply(Frame),
}

impl MoveRefusal {
    /// The reply where the command cannot wait for its keys to land (in a transaction).
    pub(super) fn into_reply(self) -> Frame {
        match self {
            MoveRefusal::InTransit(_) => parse::err(
                "TRYAGAIN A key of this command is being moved to another node, try again",
            ),
            MoveRefusal::Reply(reply) => reply,
        }
    }
}

/// Redis's getNodeByQuery for a slot being moved, run under the slot's gate so that no batch of
/// the move runs between the check and the command (or transaction: `keys` are then those of
/// every queued command). On the source, a write to keys in transit waits for them to land; a
/// command whose keys are all here runs (a read of keys in transit too: they cannot change until
/// they land); one whose keys are all gone answers ASK (they are, or will be created, on the
/// target); one with some of each answers TRYAGAIN. On the target, behind ASKING, a command over
/// several keys not all here yet answers TRYAGAIN. `keys` is called only for a slot being moved,
/// so other commands pay nothing for it.
pub(super) fn migration_check<'a>(
    state: &NodeState,
    slot: u16,
    asking: bool,
    write: bool,
    keys: impl FnOnce() -> Vec<&'a [u8]>,
) -> Result<(), MoveRefusal> {
    let snapshot = state.cluster.current();
    let topology = &snapshot.topology;
    let Some(migration) = topology.migration(slot) else {
        return Ok(());
    };
    let me = topology
        .index_of(state.cluster.myself())
        .and_then(|i| u16::try_from(i).ok());
    let source = me == Some(migration.source);
    let importing = me == Some(migration.target) && asking;
    if !(source || importing) {
        return Ok(());
    }
    let keys = keys();
    if source && write && state.keyspace.transit().holds_any(slot, &keys) {
        let keys = keys.iter().map(|key| Bytes::copy_from_slice(key)).collect();
        return Err(MoveRefusal::InTransit(keys));
    }
    let (mut existing, mut missing) = (0usize, 0usize);
    {
        let now = crate::keyspace::now_ms();
        let table = state.keyspace.lock(slot);
        for key in &keys {
            match table.get(key) {
                Some(entry) if !entry.is_expired(now) => existing += 1,
                _ => missing += 1,
            }
        }
    }
    if missing == 0 {
        return Ok(());
    }
    if source {
        if existing > 0 {
            return Err(MoveRefusal::Reply(rehashing()));
        }
        let target = &topology.nodes()[usize::from(migration.target)];
        return Err(MoveRefusal::Reply(Frame::error(format!(
            "ASK {slot} {}:{}",
            target.host, target.port
        ))));
    }
    if keys.iter().any(|key| Some(key) != keys.first()) {
        return Err(MoveRefusal::Reply(rehashing()));
    }
    Ok(())
}

/// The keys of one command, for `migration_check`: shard channels are not keys (they stay served
/// by the source until the slot's owner changes), and MIGRATE's are not checked (Redis's
/// getNodeByQuery runs it on a slot being moved whatever of its keys are here: NOKEY for none), so
/// that a client can move the slot's keys freely. Asked only for a slot being moved, so the
/// exceptions cost other commands nothing.
pub(super) fn command_keys<'a>(spec: &CommandSpec, args: &'a [Bytes]) -> Vec<&'a [u8]> {
    if spec.group == "pubsub" || spec.name == "migrate" {
        return Vec::new();
    }
    spec.key_indexes(args)
        .into_iter()
        .filter_map(|i| args.get(i).map(|key| &key[..]))
        .collect()
}

/// A command over several keys of a slot being moved, some here and some not yet (or no longer).
fn rehashing() -> Frame {
    parse::err("TRYAGAIN Multiple keys request during rehashing of slot")
}

/// The one slot of the keys of a command; CROSSSLOT when they span several.
pub(crate) fn key_slot(spec: &CommandSpec, args: &[Bytes]) -> Result<Option<u16>, Frame> {
    let found = spec.key_slot(args).map_err(|_| crossslot())?;
    Ok(found.map(|k| k.slot))
}

/// A write to a master in a manual failover: retried by cluster clients (and by the proxy, within
/// its bound), which find the slot's new master once the failover is done.
pub(crate) fn handing_over() -> Frame {
    parse::err("TRYAGAIN Manual failover in progress, try again")
}

pub(crate) fn crossslot() -> Frame {
    parse::err("CROSSSLOT Keys in request don't hash to the same slot")
}

/// The cluster rule for commands on `slot` (`None`: keyless): the slot's serving master must exist
/// (CLUSTERDOWN) and be this node (MOVED), or this node must be its replica and the commands
/// reads of a READONLY client; a node that lost the control plane refuses writes.
pub(crate) fn route(
    state: &NodeState,
    slot: Option<u16>,
    write: bool,
    readonly: bool,
    asking: bool,
) -> Result<(), Frame> {
    route_at(state, slot, write, readonly, asking, Instant::now())
}

/// `route` with the lease checked at `now`.
fn route_at(
    state: &NodeState,
    slot: Option<u16>,
    write: bool,
    readonly: bool,
    asking: bool,
    now: Instant,
) -> Result<(), Frame> {
    if slot.is_none() && !write {
        return Ok(());
    }
    let snapshot = state.cluster.current();
    if let Some(slot) = slot {
        let access = if write { Access::Write } else { Access::Read };
        match snapshot.topology.route_with(&snapshot.health, slot, access) {
            Err(down) => return Err(parse::err(down.message())),
            // Redis's getNodeByQuery: a replica serves its master's slots to READONLY clients'
            // reads (what it has applied of the master's stream).
            Ok(owner)
                if readonly
                    && !write
                    && state.cluster.assigned_role().master() == Some(&owner.id) => {}
            // Redis's importing slot: an ASKING client's command is served here.
            Ok(_) if asking && importing(&snapshot.topology, slot, state.cluster.myself()) => {}
            Ok(owner) if &owner.id != state.cluster.myself() => {
                return Err(Frame::error(format!(
                    "MOVED {slot} {}:{}",
                    owner.host, owner.port
                )));
            }
            Ok(_) => {}
        }
    }
    if write && state.cluster.is_handing_over() {
        return Err(handing_over());
    }
    if write && !state.cluster.writes_allowed_under(&snapshot.topology, now) {
        return Err(parse::err(
            "CLUSTERDOWN The cluster is down and only accepts read commands",
        ));
    }
    Ok(())
}

/// Whether `myself` is the target of `slot`'s move.
fn importing(topology: &Topology, slot: u16, myself: &NodeId) -> bool {
    topology.migration(slot).is_some_and(|m| {
        topology
            .nodes()
            .get(usize::from(m.target))
            .is_some_and(|n| &n.id == myself)
    })
}
