//! Redis's own resharding protocol at a node: CLUSTER SETSLOT (IMPORTING / MIGRATING / NODE /
//! STABLE), ADDSLOTS, ADDSLOTSRANGE, DELSLOTS and DELSLOTSRANGE. Arguments are checked here with
//! Redis 7.0's errors (clusterCommand in src/cluster.c); the change is then asked of the control
//! plane (SetSlot / AssignSlots), which checks it against the cluster's own state with Redis's
//! texts and publishes it. The node answers +OK only once it holds the published topology: the
//! control plane's answer carries it, and it is offered to the node's view at once, so the next
//! step a client sends (redis-cli sends MIGRATE right after SETSLOT MIGRATING) sees the change.

use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use tessera_proto::pb;
use tessera_proto::resp::Frame;
use tessera_proto::slot::SLOT_COUNT;
use tessera_proto::topology::{Role, Topology};

use super::parse::{self, err};
use super::{subcommand_arity, ClientSession, Ctx};
use crate::state::NodeState;

/// Bound on the control plane's answer: a client waits no longer for a change.
const CONTROL_PLANE_TIMEOUT: Duration = Duration::from_secs(5);

const ERR_SLOT: &str = "ERR Invalid or out of range slot";

/// CLUSTER SETSLOT <slot> IMPORTING|MIGRATING|NODE <node-id> | STABLE.
pub fn setslot(ctx: &Ctx<'_>, session: &mut ClientSession, args: &[Bytes]) -> Frame {
    let view = &ctx.state.cluster;
    if view.my_role() == Role::Replica {
        return err("ERR Please use SETSLOT only with masters.");
    }
    let slot = match slot_arg(&args[2]) {
        Ok(slot) => slot,
        Err(reply) => return reply,
    };
    let other = args
        .get(4)
        .map(|id| String::from_utf8_lossy(id).into_owned());
    let action = match (args.len(), &args[3]) {
        (5, a) if parse::eq(a, "importing") => pb::SetSlotAction::Importing,
        (5, a) if parse::eq(a, "migrating") => pb::SetSlotAction::Migrating,
        (5, a) if parse::eq(a, "node") => pb::SetSlotAction::Node,
        (4, a) if parse::eq(a, "stable") => pb::SetSlotAction::Stable,
        _ => {
            return err(
                "ERR Invalid CLUSTER SETSLOT action or number of arguments. Try CLUSTER HELP",
            )
        }
    };
    if action == pb::SetSlotAction::Node {
        if let Some(reply) = node_refusal(ctx, slot, other.as_deref().unwrap_or_default()) {
            return reply;
        }
    }
    let request = pb::SetSlotRequest {
        node_id: view.myself().to_string(),
        slot: u32::from(slot),
        action: action as i32,
        other_id: other.unwrap_or_default(),
    };
    defer(session, move |mut client| {
        Box::pin(async move {
            let reply = client.set_slot(request).await?.into_inner();
            Ok(reply.topology)
        })
    })
}

/// SETSLOT NODE's checks made with what only this node knows, in Redis's order: the node must
/// be a known master, and a slot this node owns may go elsewhere only once it holds no key of it.
fn node_refusal(ctx: &Ctx<'_>, slot: u16, id: &str) -> Option<Frame> {
    let topology = ctx.state.cluster.topology();
    let Some(node) = topology.nodes().iter().find(|n| n.id.as_str() == id) else {
        return Some(Frame::error(format!("ERR Unknown node {id}")));
    };
    if node.role != Role::Master {
        return Some(err("ERR Target node is not a master"));
    }
    let myself = ctx.state.cluster.myself();
    let mine = topology
        .owner(slot)
        .is_some_and(|owner| &owner.id == myself);
    if mine && &node.id != myself && ctx.state.keyspace.count_in_slot(slot) != 0 {
        return Some(Frame::error(format!(
            "ERR Can't assign hashslot {slot} to a different node while I still hold keys for \
             this hash slot."
        )));
    }
    None
}

/// CLUSTER ADDSLOTS / DELSLOTS <slot> ..., and ADDSLOTSRANGE / DELSLOTSRANGE <start> <end> ...:
/// every slot parsed here, then the control plane checks them against the cluster's owners.
pub fn assign(
    ctx: &Ctx<'_>,
    session: &mut ClientSession,
    args: &[Bytes],
    delete: bool,
    ranges: bool,
) -> Frame {
    let slots = match if ranges {
        range_slots(args)
    } else {
        args[2..]
            .iter()
            .map(|a| slot_arg(a).map(u32::from))
            .collect()
    } {
        Ok(slots) => slots,
        Err(reply) => return reply,
    };
    let request = pb::AssignSlotsRequest {
        node_id: ctx.state.cluster.myself().to_string(),
        slots,
        delete,
    };
    defer(session, move |mut client| {
        Box::pin(async move {
            let reply = client.assign_slots(request).await?.into_inner();
            Ok(reply.topology)
        })
    })
}

/// The slots of ADDSLOTSRANGE / DELSLOTSRANGE's pairs, checked as Redis checks them.
fn range_slots(args: &[Bytes]) -> Result<Vec<u32>, Frame> {
    if args.len() % 2 == 1 {
        return Err(subcommand_arity("cluster", &args[1]));
    }
    let mut slots = Vec::new();
    for pair in args[2..].chunks(2) {
        let (start, end) = (slot_arg(&pair[0])?, slot_arg(&pair[1])?);
        if start > end {
            return Err(Frame::error(format!(
                "ERR start slot number {start} is greater than end slot number {end}"
            )));
        }
        slots.extend(u32::from(start)..=u32::from(end));
    }
    Ok(slots)
}

/// Redis's getSlotOrReply.
fn slot_arg(text: &[u8]) -> Result<u16, Frame> {
    parse::parse_i64(text)
        .filter(|n| (0..i64::from(SLOT_COUNT)).contains(n))
        .map(|n| n as u16)
        .ok_or_else(|| err(ERR_SLOT))
}

/// What asking the control plane for one change yields: the published topology.
type Asked = BoxFuture<'static, Result<Option<pb::Topology>, tonic::Status>>;

/// Leaves the control plane's part of a command for the connection to await (`ask` makes the
/// call): +OK once the node holds the published topology, else the control plane's refusal.
fn defer(
    session: &mut ClientSession,
    ask: impl FnOnce(tessera_proto::control_plane::Client) -> Asked + Send + 'static,
) -> Frame {
    if session.deny_blocking {
        // Inside MULTI nothing may wait: Redis runs these at once, a node cannot.
        return err("ERR this CLUSTER subcommand cannot run inside a transaction");
    }
    session.deferred = Some(Box::new(move |state: &NodeState, _: &mut ClientSession| {
        let client = state.cluster.control_plane();
        Box::pin(async move {
            let Some(client) = client else {
                return err("ERR no control plane to ask for the change");
            };
            match tokio::time::timeout(CONTROL_PLANE_TIMEOUT, ask(client)).await {
                Err(_) => err("ERR the control plane did not answer in time; try again"),
                Ok(Err(status)) => refusal(&status),
                Ok(Ok(published)) => hold(state, published),
            }
        })
    }));
    // Not sent: the connection answers once the control plane has.
    Frame::Null
}

/// Offers the control plane's published topology to this node's view (a newer one may be held
/// already), so that +OK is sent only by a node that holds the change.
fn hold(state: &NodeState, published: Option<pb::Topology>) -> Frame {
    let Some(topology) = published.and_then(|wire| Topology::try_from(wire).ok()) else {
        return err("ERR the control plane answered without a topology");
    };
    let stamp = topology.stamp();
    state.cluster.offer_topology(topology);
    let held = state.cluster.stamp();
    if held == stamp || held.supersedes(&stamp) {
        Frame::ok()
    } else {
        err("ERR the change is not held by this node yet; try again")
    }
}

/// The control plane's refusal as a Redis error reply: its text when it is one already (Redis's
/// own words), else prefixed with ERR.
fn refusal(status: &tonic::Status) -> Frame {
    let message = status.message();
    if status.code() == tonic::Code::Unavailable {
        return Frame::error(format!("ERR the control plane is unreachable: {message}"));
    }
    let coded = message
        .split_once(' ')
        .is_some_and(|(code, _)| !code.is_empty() && code.bytes().all(|b| b.is_ascii_uppercase()));
    if coded {
        Frame::error(message.to_string())
    } else {
        Frame::error(format!("ERR {message}"))
    }
}
