//! SCAN through the proxy: one cursor walking the slots in order, across slot moves too.
//!
//! Cursor: the next slot to visit, the cursor a shard node's own SCAN hands out (a node returns
//! whole slots, in slot order, and walks every slot it holds keys of, owned or not). The proxy
//! asks the owner of the cursor's slot, keeps the keys of that owner's run of slots, and goes on
//! from where the node stopped, or from the first slot past the run. The cursor names a slot,
//! not a node, so it stays valid when slots move between nodes: a slot already visited is not
//! visited again, and one not yet visited is asked of whoever owns it when the walk gets there.
//! (It relies on the nodes' slot cursors: a redis-server's SCAN cursor is not a slot.)
//!
//! A slot being moved has its keys partly on the source, partly on the target, and keys only move
//! forward: a batch lands on the target before the source deletes it, and a key of the slot that
//! is not on the source is the target's (`shard-node` `migrate`). So a key that exists throughout
//! a SCAN call and that the source did not return for a slot it scanned had left the source
//! before the source answered: it was on the target then, and is there still unless the slot
//! moved on again. Hence, after the source answered, the proxy asks the source's own view of
//! the slots it scanned (`CLUSTER NODES`: its `myself` line's `[slot->-target]`, and the other
//! masters' slots), which is taken later than the scan:
//! - a slot the source owns and does not migrate in that view has had no key leave it before
//!   the scan (a node migrates a slot before its first key leaves): nothing more to read;
//! - a slot it migrates, or has given away, is read on its target (or new owner) too, whose SCAN
//!   returns that slot's keys whether it imports or owns it (no ASKING needed: SCAN has no key),
//!   and that node's view is asked in turn, along further moves, at most `MAX_HOPS` of them.
//!
//! The proxy's own topology decides only where the walk starts, never whether a slot moved: it
//! may lag the nodes' (a source can move keys before the proxy hears of the move). A key read on
//! both ends (in flight) comes twice, which SCAN allows. The cost: one CLUSTER NODES per SCAN
//! call, and reads on targets only while slots move; SCAN is not on the GET/SET path.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tessera_proto::resp::encode::command_bytes;
use tessera_proto::resp::frame::{self, FrameLimits};
use tessera_proto::resp::Frame;
use tessera_proto::slot::{key_hash_slot, SLOT_COUNT};
use tessera_proto::topology::ClusterDown;

use crate::backend::Backend;
use crate::forward::{self, BoxReply, Lane};
use crate::shared::Shared;
use crate::split::{array, unexpected};
use crate::topology::Routes;

/// Most moves of one slot followed after a source answered (a slot moves again within one SCAN
/// call only if moves are chained back to back).
const MAX_HOPS: usize = 4;

const CLUSTER_NODES: &[u8] = b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nNODES\r\n";

/// SCAN `args` (the client's) through the cluster: queues the owner's part now.
pub fn run(
    shared: &Arc<Shared>,
    snapshot: &Routes,
    args: &[Bytes],
    lane: Lane,
    scratch: &mut BytesMut,
) -> BoxReply {
    let protocol = lane.protocol;
    let reply = move |cursor: u64, keys: Vec<Frame>| {
        Frame::Array(vec![
            Frame::Bulk(Bytes::from(cursor.to_string())),
            Frame::Array(keys),
        ])
        .to_bytes(protocol)
    };
    let ready = |bytes: Bytes| -> BoxReply { Box::pin(std::future::ready(bytes)) };
    // Checked here, by the nodes' own parser, so a bad option is refused before the walk and
    // the cursor reads as a node reads it.
    let cursor = match tessera_proto::command::parse_scan(args, 1, true) {
        Ok(scan) => scan.cursor,
        Err(error) => return ready(forward::error_bytes(&error.to_string())),
    };
    // The run of slots one node serves that holds the cursor's slot, or the next one (slots
    // nobody serves hold no keys). Past the last slot, or past the last run: done.
    let topology = &snapshot.topology;
    let run = topology
        .runs()
        .find(|&(_, end, owner)| u64::from(end) >= cursor && owner.is_some());
    let Some((start, end, _)) = run.filter(|_| cursor < u64::from(SLOT_COUNT)) else {
        return ready(reply(0, Vec::new()));
    };
    let first = start.max(cursor as u16);
    // A keyless command: as a Redis node answers SCAN while the cluster is down, the walk goes
    // on through the slots of live masters and stops only at a slot whose master is FAIL.
    let node = match topology.owner_index(first) {
        Some(index) if !topology.status_at(index).fail => &topology.nodes()[index],
        _ => return ready(forward::error_bytes(ClusterDown::Unbound.message())),
    };
    let Some(backend) = snapshot.backend_of(node) else {
        return ready(forward::error_bytes(
            "ERR no backend for a node of the topology",
        ));
    };
    let from = first.to_string();
    let sub = [&b"SCAN"[..], from.as_bytes()]
        .into_iter()
        .chain(args[2..].iter().map(|a| &a[..]));
    tessera_proto::resp::encode::encode_command(args.len(), sub, scratch);
    let request = scratch.split().freeze();
    let part = forward::send(shared, backend, lane, request, Some(first));
    let (shared, backend) = (shared.clone(), backend.clone());
    let options = args[2..].to_vec();
    Box::pin(async move {
        let (next, mut keys) = match scan_reply(&part.await) {
            Ok(answer) => answer,
            Err(error) => return error,
        };
        let next = next_cursor(next, first, end);
        // The node walks on past its run; keys it holds further on are returned when the walk
        // gets to their slots (under their owner then).
        let last = if next == 0 {
            SLOT_COUNT - 1
        } else {
            next as u16 - 1
        };
        keys.retain(|key| match key {
            Frame::Bulk(key) => (first..=last).contains(&key_hash_slot(key)),
            _ => true,
        });
        let walk = Walk {
            shared: &shared,
            lane,
            options: &options,
        };
        match walk.moved_keys(&backend, first..=last).await {
            Ok(moved) => keys.extend(moved),
            Err(error) => return error,
        }
        reply(next, keys)
    })
}

/// What reading moved slots on their new nodes needs.
struct Walk<'a> {
    shared: &'a Arc<Shared>,
    lane: Lane,
    /// The client's SCAN options (MATCH, COUNT, TYPE).
    options: &'a [Bytes],
}

impl Walk<'_> {
    /// The keys of `scanned` (slots `source` has just scanned) that left `source` before it
    /// answered: read where its view, and then each next node's, says the slots went.
    async fn moved_keys(
        &self,
        source: &Arc<Backend>,
        scanned: std::ops::RangeInclusive<u16>,
    ) -> Result<Vec<Frame>, Bytes> {
        let view = self.view_of(source).await?;
        let mut pending: Vec<(String, Vec<u16>, usize)> = view
            .departures(|slot| scanned.contains(&slot))
            .into_iter()
            .map(|(addr, slots)| (addr, slots, 1))
            .collect();
        let mut found = Vec::new();
        while let Some((addr, slots, hops)) = pending.pop() {
            let node = self.shared.view.registry().get(&addr);
            found.extend(self.read_slots(&node, &slots).await?);
            if hops == MAX_HOPS {
                tracing::warn!(%addr, "SCAN: slots moved too often to follow further");
                continue;
            }
            let view = self.view_of(&node).await?;
            pending.extend(
                view.departures(|slot| slots.binary_search(&slot).is_ok())
                    .into_iter()
                    .map(|(addr, slots)| (addr, slots, hops + 1)),
            );
        }
        Ok(found)
    }

    /// `node`'s own view of the cluster, now.
    async fn view_of(&self, node: &Arc<Backend>) -> Result<NodeView, Bytes> {
        let raw = forward::send(
            self.shared,
            node,
            self.lane,
            Bytes::from_static(CLUSTER_NODES),
            None,
        )
        .await;
        let text = match frame::parse(&raw, &FrameLimits::default()) {
            Ok(Some((Frame::Bulk(text) | Frame::Verbatim(text), _))) => text,
            _ if raw.first() == Some(&b'-') => return Err(raw),
            _ => return Err(unexpected()),
        };
        let text = text.strip_prefix(b"txt:").unwrap_or(&text);
        Ok(NodeView::parse(&String::from_utf8_lossy(text)))
    }

    /// The keys `node` holds of `slots` (sorted), with the client's MATCH and TYPE. A node's SCAN
    /// from a slot with COUNT 1 returns that slot and the empty ones after it, up to the next one
    /// with keys: one call per slot with keys at most.
    async fn read_slots(&self, node: &Arc<Backend>, slots: &[u16]) -> Result<Vec<Frame>, Bytes> {
        let mut found = Vec::new();
        let mut rest = slots;
        while let Some(&from) = rest.first() {
            let cursor = from.to_string();
            let args: Vec<&[u8]> = [&b"SCAN"[..], cursor.as_bytes()]
                .into_iter()
                .chain(self.options.iter().map(|a| &a[..]))
                .chain([&b"COUNT"[..], b"1"])
                .collect();
            let request = command_bytes(&args).freeze();
            let raw = forward::send(self.shared, node, self.lane, request, None).await;
            let (next, keys) = scan_reply(&raw)?;
            // Slots `from..until` were read (all of them when the node finished).
            let until = match u16::try_from(next) {
                Ok(next) if next > from && next < SLOT_COUNT => next,
                _ => SLOT_COUNT,
            };
            rest = &rest[rest.partition_point(|&s| s < until)..];
            found.extend(keys.into_iter().filter(|key| match key {
                Frame::Bulk(key) => {
                    let slot = key_hash_slot(key);
                    (from..until).contains(&slot) && slots.binary_search(&slot).is_ok()
                }
                _ => false,
            }));
        }
        Ok(found)
    }
}

/// A node's SCAN reply: its next cursor and its keys; an error reply (or nonsense: the generic
/// error) is `Err`, the client's reply.
fn scan_reply(raw: &Bytes) -> Result<(u64, Vec<Frame>), Bytes> {
    if raw.first() == Some(&b'-') {
        return Err(raw.clone());
    }
    let Some([cursor, keys]) = array(raw).and_then(|items| <[Frame; 2]>::try_from(items).ok())
    else {
        return Err(unexpected());
    };
    let keys = match keys {
        Frame::Array(keys) | Frame::Set(keys) => keys,
        _ => return Err(unexpected()),
    };
    match cursor {
        Frame::Bulk(c) => tessera_proto::command::parse_cursor(&c)
            .map(|next| (next, keys))
            .ok_or_else(unexpected),
        _ => Err(unexpected()),
    }
}

/// What a node's CLUSTER NODES says of where slots are, as far as leaving it goes: the slots it
/// migrates (`[slot->-id]` on its `myself` line) and the slots of the other masters.
#[derive(Debug, Default, PartialEq)]
struct NodeView {
    /// Slot, and the address of its target.
    migrating: Vec<(u16, String)>,
    /// Slot ranges other masters own, with their addresses.
    others: Vec<(u16, u16, String)>,
}

impl NodeView {
    fn parse(text: &str) -> NodeView {
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|line| line.split(' ').collect())
            .filter(|fields: &Vec<&str>| fields.len() >= 8)
            .collect();
        // `host:port@cport[,hostname]`: the client address is before the `@`.
        let addr_of = |fields: &[&str]| fields[1].split('@').next().unwrap_or("").to_string();
        let by_id = |id: &str| {
            lines
                .iter()
                .find(|fields| fields[0] == id)
                .map(|fields| addr_of(fields))
        };
        let mut view = NodeView::default();
        for fields in &lines {
            let flags: Vec<&str> = fields[2].split(',').collect();
            let myself = flags.contains(&"myself");
            for slot in &fields[8..] {
                if let Some(moving) = slot.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                    let target = moving.split_once("->-").filter(|_| myself);
                    if let Some((slot, addr)) =
                        target.and_then(|(slot, id)| Some((slot.parse().ok()?, by_id(id)?)))
                    {
                        view.migrating.push((slot, addr));
                    }
                } else if !myself && flags.contains(&"master") {
                    let (start, end) = slot.split_once('-').unwrap_or((slot, slot));
                    if let (Ok(start), Ok(end)) = (start.parse(), end.parse()) {
                        view.others.push((start, end, addr_of(fields)));
                    }
                }
            }
        }
        view
    }

    /// The slots for which `wanted` holds that left (or are leaving) this node, by the address
    /// of the node they went to, each list sorted.
    fn departures(&self, wanted: impl Fn(u16) -> bool) -> BTreeMap<String, Vec<u16>> {
        let mut out: BTreeMap<String, Vec<u16>> = BTreeMap::new();
        let moving = self
            .migrating
            .iter()
            .map(|(slot, addr)| (*slot, *slot, addr));
        let owned = self
            .others
            .iter()
            .map(|(start, end, addr)| (*start, *end, addr));
        for (start, end, addr) in moving.chain(owned) {
            for slot in (start..=end).filter(|&s| wanted(s)) {
                out.entry(addr.clone()).or_default().push(slot);
            }
        }
        for slots in out.values_mut() {
            slots.sort_unstable();
            slots.dedup();
        }
        out
    }
}

/// The proxy's next cursor after a node, asked from slot `first` of its run `..=end`, answered
/// with its own next cursor `next`: where the node stopped while still inside the run, else the
/// first slot past the run (0 past the last slot). A node's cursor only grows until it returns 0;
/// anything else moves past the run too, so the walk always advances.
fn next_cursor(next: u64, first: u16, end: u16) -> u64 {
    if next > u64::from(first) && next <= u64::from(end) {
        next
    } else if end + 1 < SLOT_COUNT {
        u64::from(end) + 1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_cursor_always_advances_through_the_runs() {
        // Inside the run: where the node stopped.
        assert_eq!(next_cursor(100, 0, 5460), 100);
        assert_eq!(next_cursor(5460, 0, 5460), 5460);
        // The node walked past the run, finished, or answered nonsense: the next run.
        assert_eq!(next_cursor(5461, 0, 5460), 5461);
        assert_eq!(next_cursor(9000, 0, 5460), 5461);
        assert_eq!(next_cursor(0, 0, 5460), 5461);
        assert_eq!(next_cursor(7, 7, 5460), 5461);
        assert_eq!(next_cursor(3, 7, 5460), 5461);
        // Past the last slot: done.
        assert_eq!(next_cursor(0, 10923, 16383), 0);
        assert_eq!(next_cursor(16383, 16000, 16383), 16383);
    }

    const NODES: &str = "\
aaa 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 5-5460 [3->-bbb] [7->-ccc] [12000-<-ccc]
bbb 127.0.0.1:7002@17002,host-b master - 0 1 2 connected 0-4 5461-10922
ccc 127.0.0.1:7003@17003 master - 0 1 3 connected 10923-16383
ddd 127.0.0.1:7004@17004 slave aaa 0 1 1 connected
";

    #[test]
    fn a_node_view_says_where_its_slots_went() {
        let view = NodeView::parse(NODES);
        assert_eq!(
            view.migrating,
            vec![(3, "127.0.0.1:7002".into()), (7, "127.0.0.1:7003".into())]
        );
        let departures = view.departures(|slot| slot < 10);
        assert_eq!(
            departures.into_iter().collect::<Vec<_>>(),
            vec![
                ("127.0.0.1:7002".to_string(), vec![0, 1, 2, 3, 4]),
                ("127.0.0.1:7003".to_string(), vec![7]),
            ]
        );
        // Slots it owns and does not migrate: nothing left.
        assert!(view
            .departures(|slot| (8..=5460).contains(&slot))
            .is_empty());
        // Importing is not leaving; the importing node's owner is read as an owner.
        assert_eq!(
            view.departures(|slot| slot == 12000)
                .into_keys()
                .collect::<Vec<_>>(),
            vec!["127.0.0.1:7003".to_string()]
        );
    }
}
