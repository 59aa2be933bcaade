//! Whole-keyspace commands sent to every master that serves slots, replies combined: DBSIZE
//! (sum), FLUSHALL / FLUSHDB (OK when all OK), KEYS (concatenation), RANDOMKEY (one of the masters'
//! keys, at random), SCAN (one cursor walking the slots in order).
//!
//! SCAN cursor: the next slot to visit, the cursor a shard node's own SCAN hands out (a node
//! returns whole slots, in slot order). The proxy asks the owner of the cursor's slot, keeps the
//! keys of that owner's run of slots, and goes on from where the node stopped, or from the first
//! slot past the run. The cursor names a slot, not a node, so it stays valid when slots move
//! between nodes: a slot already visited is not visited again, and one not yet visited is asked
//! of whoever owns it when the walk gets there. (It relies on the nodes' slot cursors: a
//! redis-server's SCAN cursor is not a slot.)

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::future::join_all;
use rand::seq::IndexedRandom;
use tessera_proto::resp::frame::{self, FrameLimits};
use tessera_proto::resp::Frame;
use tessera_proto::slot::{key_hash_slot, SLOT_COUNT};
use tessera_proto::topology::ClusterDown;

use crate::forward::{self, BoxReply, Lane};
use crate::router::FanOut;
use crate::shared::Shared;
use crate::split::{array, sum_integers, unexpected};
use crate::topology::Routes;

/// Queues the command on every master now; the returned future combines the replies.
pub fn run(
    shared: &Arc<Shared>,
    snapshot: &Routes,
    kind: FanOut,
    args: &[Bytes],
    lane: Lane,
    scratch: &mut BytesMut,
) -> BoxReply {
    let masters = snapshot.masters();
    if masters.is_empty() {
        // No topology yet (or no slot assigned): nothing to ask, and "empty" would be a lie.
        return Box::pin(std::future::ready(forward::error_bytes(
            ClusterDown::Down.message(),
        )));
    }
    if kind == FanOut::Scan {
        return scan(shared, snapshot, args, lane, scratch);
    }
    tessera_proto::resp::encode::encode_command(args.len(), args.iter().map(|a| &a[..]), scratch);
    let request = scratch.split().freeze();
    let parts: Vec<_> = masters
        .iter()
        .map(|m| forward::send(shared, m.backend, lane, request.clone(), Some(m.slot)))
        .collect();
    let protocol = lane.protocol;
    // PUBSUB's subcommand, for combining its replies.
    let args_lower = match kind {
        FanOut::PubSub => args
            .get(1)
            .map(|a| a.to_ascii_lowercase())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    Box::pin(async move {
        let replies = join_all(parts).await;
        if let Some(error) = replies.iter().find(|r| r.first() == Some(&b'-')) {
            return error.clone();
        }
        match kind {
            FanOut::DbSize => match sum_integers(&replies) {
                Some(n) => Frame::Integer(n).to_bytes(protocol),
                None => unexpected(),
            },
            FanOut::Flush => Bytes::from_static(b"+OK\r\n"),
            FanOut::Keys => {
                let mut keys = Vec::new();
                for reply in &replies {
                    match array(reply) {
                        Some(items) => keys.extend(items),
                        None => return unexpected(),
                    }
                }
                Frame::Array(keys).to_bytes(protocol)
            }
            FanOut::RandomKey => {
                let found: Vec<&Bytes> = replies
                    .iter()
                    .filter(|r| r.first() == Some(&b'$') && !r.starts_with(b"$-1"))
                    .collect();
                match found.choose(&mut rand::rng()) {
                    Some(reply) => (*reply).clone(),
                    None => Frame::Null.to_bytes(protocol),
                }
            }
            FanOut::PubSub => pubsub(&args_lower, &replies, protocol),
            FanOut::Scan => unexpected(),
        }
    })
}

/// Combines the masters' PUBSUB replies: channel lists are merged without repeats (in order of
/// first appearance), NUMPAT summed, NUMSUB / SHARDNUMSUB summed per channel (in the order asked).
fn pubsub(sub: &[u8], replies: &[Bytes], protocol: tessera_proto::resp::Protocol) -> Bytes {
    match sub {
        b"numpat" => match sum_integers(replies) {
            Some(n) => Frame::Integer(n).to_bytes(protocol),
            None => unexpected(),
        },
        b"numsub" | b"shardnumsub" => {
            let mut counts: Vec<(Frame, i64)> = Vec::new();
            for reply in replies {
                let pairs = match frame::parse(reply, &FrameLimits::default()) {
                    Ok(Some((Frame::Map(pairs), _))) => pairs,
                    Ok(Some((Frame::Array(items), _))) if items.len() % 2 == 0 => {
                        let mut items = items.into_iter();
                        let mut pairs = Vec::new();
                        while let (Some(k), Some(v)) = (items.next(), items.next()) {
                            pairs.push((k, v));
                        }
                        pairs
                    }
                    _ => return unexpected(),
                };
                for (i, (channel, n)) in pairs.into_iter().enumerate() {
                    let Frame::Integer(n) = n else {
                        return unexpected();
                    };
                    match counts.get_mut(i) {
                        Some(entry) if entry.0 == channel => entry.1 += n,
                        Some(_) => return unexpected(),
                        None => counts.push((channel, n)),
                    }
                }
            }
            // An array in RESP3 too, as Redis 7.0 answers.
            Frame::Array(
                counts
                    .into_iter()
                    .flat_map(|(c, n)| [c, Frame::Integer(n)])
                    .collect(),
            )
            .to_bytes(protocol)
        }
        _ => {
            let mut channels: Vec<Frame> = Vec::new();
            for reply in replies {
                let Some(items) = array(reply) else {
                    return unexpected();
                };
                for item in items {
                    if !channels.contains(&item) {
                        channels.push(item);
                    }
                }
            }
            Frame::Array(channels).to_bytes(protocol)
        }
    }
}

fn scan(
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
    Box::pin(async move {
        let raw = part.await;
        if raw.first() == Some(&b'-') {
            return raw;
        }
        let Some(mut items) = array(&raw) else {
            return unexpected();
        };
        if items.len() != 2 {
            return unexpected();
        }
        let mut keys = match items.pop() {
            Some(Frame::Array(keys)) | Some(Frame::Set(keys)) => keys,
            _ => return unexpected(),
        };
        let next = match items.pop() {
            Some(Frame::Bulk(c)) => tessera_proto::command::parse_cursor(&c),
            _ => None,
        };
        let Some(next) = next else {
            return unexpected();
        };
        // The node walks on past its run; keys it holds further on are returned when the walk
        // gets to their slots (under their owner then).
        keys.retain(|key| match key {
            Frame::Bulk(key) => (first..=end).contains(&key_hash_slot(key)),
            _ => true,
        });
        reply(next_cursor(next, first, end), keys)
    })
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
    use super::next_cursor;

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
}
