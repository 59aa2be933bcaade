//! The cluster rule for one command, as Redis's getNodeByQuery, applied in one place: all keys in
//! one slot (CROSSSLOT), the slot served (CLUSTERDOWN) by this node (MOVED), and writes refused
//! while the node has lost the control plane.

use std::time::Instant;

use bytes::Bytes;
use tessera_proto::command::{self, CommandSpec, Server};
use tessera_proto::resp::Frame;
use tessera_proto::topology::Access;

use super::{parse, KnownSlot};
use crate::state::NodeState;

/// The cluster rule again for a client blocked in `args` (BLPOP, ...), as Redis's
/// clusterRedirectBlockedClientIfNeeded: a slot that moved away or went down while it waited
/// answers MOVED / CLUSTERDOWN instead of waiting on.
pub fn cluster_recheck(state: &NodeState, args: &[Bytes]) -> Option<Frame> {
    let spec = command::resolve_served(Server::ShardNode, args).ok()?;
    cluster_check(state, spec, args, false, Instant::now()).err()
}

/// The cluster rule for one command, as Redis's getNodeByQuery: keyless commands pass; all keys
/// must share one slot (CROSSSLOT); the slot's serving master must exist (CLUSTERDOWN) and be this
/// node (MOVED), or this node a replica of it and the client READONLY with a read; and a node
/// that lost the control plane refuses writes. The slot comes back with the key it was hashed
/// from, for the handler's `Ctx::lock`.
pub(super) fn cluster_check(
    state: &NodeState,
    spec: &CommandSpec,
    args: &[Bytes],
    readonly: bool,
    now: Instant,
) -> Result<Option<KnownSlot>, Frame> {
    let found = spec.key_slot(args).map_err(|_| crossslot())?;
    route_at(state, found.map(|k| k.slot), spec.is_write(), readonly, now)?;
    Ok(found.map(|k| KnownSlot::new(k.first_key, k.slot)))
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
) -> Result<(), Frame> {
    route_at(state, slot, write, readonly, Instant::now())
}

/// `route` with the lease checked at `now`.
fn route_at(
    state: &NodeState,
    slot: Option<u16>,
    write: bool,
    readonly: bool,
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
