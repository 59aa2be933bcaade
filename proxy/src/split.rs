//! Multi-key commands whose keys span slots (MGET, MSET, DEL, UNLINK, EXISTS, TOUCH): one
//! sub-command per same-slot group, all queued at once, replies merged. Any part's error is the
//! reply (the first in key order).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::future::join_all;
use tessera_proto::resp::frame::{self, FrameLimits};
use tessera_proto::resp::{Frame, Protocol};

use crate::forward::{self, BoxReply, Lane};
use crate::router::{Merge, SplitPlan};
use crate::shared::Shared;
use crate::topology::Routes;

/// Queues every part of `plan` now; the returned future merges their replies.
pub fn run(
    shared: &Arc<Shared>,
    snapshot: &Routes,
    plan: &SplitPlan<'_>,
    args: &[Bytes],
    lane: Lane,
    scratch: &mut BytesMut,
) -> BoxReply {
    let mut parts = Vec::with_capacity(plan.parts.len());
    let mut positions = Vec::with_capacity(plan.parts.len());
    for part in &plan.parts {
        let Some(backend) = snapshot.backend_of(part.node) else {
            return ready(forward::error_bytes(
                "ERR no backend for a node of the topology",
            ));
        };
        let span = 1 + plan.values_per_key;
        let sub = std::iter::once(&args[0][..]).chain(
            part.keys
                .iter()
                .flat_map(|&k| args[k..(k + span).min(args.len())].iter().map(|a| &a[..])),
        );
        let count = 1 + part.keys.len() * span;
        tessera_proto::resp::encode::encode_command(count, sub, scratch);
        let request = scratch.split().freeze();
        parts.push(forward::send(
            shared,
            backend,
            lane,
            request,
            Some(part.slot),
        ));
        positions.push(part.keys.clone());
    }
    let merge = plan.merge;
    let total = args.len() - 1;
    let protocol = lane.protocol;
    Box::pin(async move {
        let replies = join_all(parts).await;
        merge_replies(merge, &replies, &positions, total, protocol)
    })
}

fn ready(reply: Bytes) -> BoxReply {
    Box::pin(std::future::ready(reply))
}

/// Combines the parts' raw replies.
pub fn merge_replies(
    merge: Merge,
    replies: &[Bytes],
    positions: &[Vec<usize>],
    total: usize,
    protocol: Protocol,
) -> Bytes {
    if let Some(error) = replies.iter().find(|r| r.first() == Some(&b'-')) {
        return error.clone();
    }
    match merge {
        Merge::AllOk => Bytes::from_static(b"+OK\r\n"),
        Merge::Sum => match sum_integers(replies) {
            Some(n) => Frame::Integer(n).to_bytes(protocol),
            None => unexpected(),
        },
        Merge::Values => {
            let mut values: Vec<Frame> = vec![Frame::Null; total];
            for (reply, keys) in replies.iter().zip(positions) {
                let Some(items) = array(reply) else {
                    return unexpected();
                };
                if items.len() != keys.len() {
                    return unexpected();
                }
                for (item, &k) in items.into_iter().zip(keys) {
                    if let Some(slot) = values.get_mut(k - 1) {
                        *slot = item;
                    }
                }
            }
            Frame::Array(values).to_bytes(protocol)
        }
    }
}

/// The elements of a raw array reply.
pub fn array(reply: &[u8]) -> Option<Vec<Frame>> {
    match frame::parse(reply, &FrameLimits::default()) {
        Ok(Some((Frame::Array(items), _))) | Ok(Some((Frame::Set(items), _))) => Some(items),
        _ => None,
    }
}

/// The value of a raw `:N` reply.
pub fn integer(reply: &[u8]) -> Option<i64> {
    let text = reply.strip_prefix(b":")?.strip_suffix(b"\r\n")?;
    std::str::from_utf8(text).ok()?.parse().ok()
}

pub fn sum_integers(replies: &[Bytes]) -> Option<i64> {
    replies
        .iter()
        .try_fold(0i64, |acc, r| Some(acc.saturating_add(integer(r)?)))
}

pub fn unexpected() -> Bytes {
    forward::error_bytes("ERR unexpected reply from a backend")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_errors() {
        let r = [Bytes::from_static(b":2\r\n"), Bytes::from_static(b":3\r\n")];
        assert_eq!(
            &merge_replies(Merge::Sum, &r, &[], 0, Protocol::Resp2)[..],
            b":5\r\n"
        );
        let r = [
            Bytes::from_static(b"+OK\r\n"),
            Bytes::from_static(b"-ERR x\r\n"),
        ];
        assert_eq!(
            &merge_replies(Merge::AllOk, &r, &[], 0, Protocol::Resp2)[..],
            b"-ERR x\r\n"
        );
        let r = [
            Bytes::from_static(b"+OK\r\n"),
            Bytes::from_static(b"+OK\r\n"),
        ];
        assert_eq!(
            &merge_replies(Merge::AllOk, &r, &[], 0, Protocol::Resp2)[..],
            b"+OK\r\n"
        );
    }
}
