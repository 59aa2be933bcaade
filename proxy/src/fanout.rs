//! Whole-keyspace commands sent to every master that serves slots, replies combined: DBSIZE
//! (sum), FLUSHALL / FLUSHDB (OK when all OK), KEYS (concatenation), RANDOMKEY (one of the masters'
//! keys, at random), SCAN (one cursor walking the slots in order: `scan`).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::future::join_all;
use rand::seq::IndexedRandom;
use tessera_proto::resp::frame::{self, FrameLimits};
use tessera_proto::resp::Frame;
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
        return crate::scan::run(shared, snapshot, args, lane, scratch);
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
