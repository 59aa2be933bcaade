//! CLUSTER INFO with the real cluster state; CLUSTER SLOTS / NODES / SHARDS / MYID / REPLICAS
//! presenting one virtual master per real master, each with its master's slots, and one virtual
//! replica per real replica of those, all at the proxy's announced address
//! (`Topology::as_proxy_view`), so cluster-aware clients keep talking to the proxy (which routes
//! every command to the masters) and tools that want several masters (`redis-benchmark
//! --cluster`, `redis-cli --cluster check`) see the cluster's real shape, replicas included;
//! CLUSTER KEYSLOT computed here. (COUNTKEYSINSLOT and GETKEYSINSLOT
//! are routed to the slot's owner by the router.)
//!
//! Which virtual master is `myself` differs per client connection (`MyselfPicker`):
//! `redis-cli --cluster check` opens one connection per node it was told about, all to the same
//! address, and reads each node's slots, role and master from the `myself` line that connection is
//! shown. Handing connections the virtual nodes in turn, and listing CLUSTER NODES from `myself`
//! on in that same turn order, gives its N connections the N nodes in the order it expects them:
//! the friend it connects to next is the node the next turn shows as `myself`. (Masters alone
//! would not need the order, being interchangeable; a replica's line must meet its own `myself`.)

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tessera_proto::resp::Frame;
use tessera_proto::slot::key_hash_slot;
use tessera_proto::topology::render::{self, MessageStats};
use tessera_proto::topology::Topology;

use super::{frame, verbatim};
use crate::session::{Reply, Session};
use crate::shared::Shared;
use crate::topology::Routes;

/// How many connections remember their turn; older ones get a new turn if they ask again.
const REMEMBERED_CONNECTIONS: usize = 256;

/// Hands each client connection that asks for `myself` (CLUSTER NODES / MYID) the next turn of a
/// per-proxy counter, and keeps it for that connection, so one connection always sees the same
/// `myself` and consecutive connections see the virtual masters in turn.
///
/// Bounded: only the last `REMEMBERED_CONNECTIONS` connections are remembered. Only these two
/// rarely used commands take the lock. Limit: another client's first CLUSTER NODES arriving in the
/// middle of a `redis-cli --cluster check` shifts the turns and can show that check one master
/// twice (it then reports missing slots; running it again passes).
#[derive(Debug, Default)]
pub struct MyselfPicker {
    turns: Mutex<(u64, VecDeque<(u64, u64)>)>,
}

impl MyselfPicker {
    /// The turn of client `client_id`: its own if it had one, else the next.
    fn turn(&self, client_id: u64) -> u64 {
        // A panic while holding this lock cannot leave the data half-changed: keep using it.
        let mut guard = self
            .turns
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (next, remembered) = &mut *guard;
        if let Some(&(_, turn)) = remembered.iter().find(|(id, _)| *id == client_id) {
            return turn;
        }
        let turn = *next;
        *next = next.wrapping_add(1);
        if remembered.len() >= REMEMBERED_CONNECTIONS {
            remembered.pop_front();
        }
        remembered.push_back((client_id, turn));
        turn
    }
}

pub fn handle(
    shared: &Arc<Shared>,
    session: &mut Session,
    snapshot: &Routes,
    args: &[Bytes],
) -> Option<Reply> {
    let view = || {
        snapshot.topology.as_proxy_view(
            shared.id.clone(),
            &shared.announce_host,
            shared.announce_port,
        )
    };
    // This connection's turn, as an index into the view's nodes.
    let my_index = |view: &Topology| {
        let turn = shared.myself.turn(session.id);
        // `as_proxy_view` always has at least one node.
        (turn % view.nodes().len().max(1) as u64) as usize
    };
    let myself = |view: &Topology| view.nodes().get(my_index(view)).map(|n| n.id.clone());
    Some(match args[1].to_ascii_lowercase().as_slice() {
        b"info" => {
            let text = render::cluster_info(&snapshot.topology, None, &MessageStats::default());
            verbatim(session, text)
        }
        b"myid" => {
            let id = myself(&view()).unwrap_or_else(|| shared.id.clone());
            frame(session, Frame::Bulk(Bytes::from(id.to_string())))
        }
        b"nodes" => {
            let view = view();
            let index = my_index(&view);
            let me = view.nodes().get(index).map(|n| n.id.clone());
            let text = render::cluster_nodes(&view, me.as_ref(), now_ms());
            verbatim(session, lines_from(&text, index))
        }
        b"replicas" | b"slaves" => {
            let view = view();
            let me = myself(&view);
            let id = String::from_utf8_lossy(&args[2]);
            match render::cluster_replicas(&view, me.as_ref(), &id, now_ms()) {
                Ok(reply) => frame(session, reply),
                Err(error) => Reply::error(&error.to_string()),
            }
        }
        b"slots" => frame(session, render::cluster_slots(&view())),
        b"shards" => frame(session, render::cluster_shards(&view())),
        b"keyslot" => frame(session, Frame::Integer(i64::from(key_hash_slot(&args[2])))),
        _ => return None,
    })
}

/// `text`'s lines rotated to start at line `first` (CLUSTER NODES renders one line per node, in
/// the view's order), so the nodes after `myself` come in the order of the next turns.
fn lines_from(text: &str, first: usize) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let first = first.min(lines.len());
    lines[first..]
        .iter()
        .chain(&lines[..first])
        .copied()
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_listed_from_myself_on() {
        assert_eq!(lines_from("a\nb\nc\n", 1), "b\nc\na\n");
        assert_eq!(lines_from("a\nb\nc\n", 0), "a\nb\nc\n");
        assert_eq!(lines_from("a\n", 5), "a\n");
    }

    #[test]
    fn turns_stick_per_connection_and_rotate_across_them() {
        let picker = MyselfPicker::default();
        assert_eq!(picker.turn(10), 0);
        assert_eq!(picker.turn(11), 1);
        assert_eq!(picker.turn(10), 0, "same connection, same turn");
        assert_eq!(picker.turn(12), 2);
        // Bounded: after many others, connection 10 is forgotten and gets a new turn.
        for id in 100..100 + REMEMBERED_CONNECTIONS as u64 {
            picker.turn(id);
        }
        assert_eq!(picker.turns.lock().unwrap().1.len(), REMEMBERED_CONNECTIONS);
        assert_eq!(picker.turn(10), 3 + REMEMBERED_CONNECTIONS as u64);
    }
}
