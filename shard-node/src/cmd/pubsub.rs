//! SUBSCRIBE / UNSUBSCRIBE / PSUBSCRIBE / PUNSUBSCRIBE / SSUBSCRIBE / SUNSUBSCRIBE, PUBLISH /
//! SPUBLISH and PUBSUB, as a Redis 7.0 cluster node answers them. The shard commands' slot rule
//! (MOVED, CROSSSLOT) is the common cluster check: the command table gives their channels as keys.
//! A (un)subscribe confirms each channel with its own push; all but the last go out ahead of the
//! command's reply (`ClientSubscriptions::precede`).

use bytes::Bytes;
use tessera_proto::resp::Frame;

use super::dispatch::DispatchEntry;
use super::{ClientSession, Ctx};
use crate::pubsub::Kind;

/// The confirmation of one (un)subscription: `[kind, channel or null, count]`.
fn confirmation(name: &'static [u8], channel: Option<Bytes>, count: usize) -> Frame {
    Frame::Push(vec![
        Frame::Bulk(Bytes::from_static(name)),
        channel.map_or(Frame::Null, Frame::Bulk),
        Frame::Integer(count as i64),
    ])
}

/// Answers a list of confirmations: every one but the last precedes the reply.
fn answer(session: &mut ClientSession, mut confirmations: Vec<Frame>) -> Frame {
    let last = confirmations.pop().unwrap_or(Frame::NullArray);
    for frame in confirmations {
        session.pubsub.precede(frame);
    }
    last
}

/// SUBSCRIBE / PSUBSCRIBE / SSUBSCRIBE channel [channel ...].
pub fn subscribe(ctx: &Ctx<'_>, session: &mut ClientSession, args: &[Bytes], kind: Kind) -> Frame {
    let mut confirmations = Vec::with_capacity(args.len() - 1);
    for channel in &args[1..] {
        ctx.state
            .pubsub
            .subscribe(kind, channel, &mut session.pubsub);
        if kind == Kind::Shard {
            crate::pubsub::recheck_shard_channel(ctx.state, channel);
        }
        confirmations.push(confirmation(
            kind.subscribe_name(),
            Some(channel.clone()),
            session.pubsub.count_for(kind),
        ));
    }
    answer(session, confirmations)
}

/// UNSUBSCRIBE / PUNSUBSCRIBE / SUNSUBSCRIBE [channel ...]: none named means all of them; with
/// none held, one confirmation with a null channel.
pub fn unsubscribe(
    ctx: &Ctx<'_>,
    session: &mut ClientSession,
    args: &[Bytes],
    kind: Kind,
) -> Frame {
    let channels = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        session.pubsub.list(kind)
    };
    if channels.is_empty() {
        return confirmation(
            kind.unsubscribe_name(),
            None,
            session.pubsub.count_for(kind),
        );
    }
    let mut confirmations = Vec::with_capacity(channels.len());
    for channel in channels {
        ctx.state
            .pubsub
            .unsubscribe(kind, &channel, &mut session.pubsub);
        confirmations.push(confirmation(
            kind.unsubscribe_name(),
            Some(channel),
            session.pubsub.count_for(kind),
        ));
    }
    answer(session, confirmations)
}

/// PUBLISH channel message: delivered here and forwarded to every other node; the reply counts
/// this node's receivers, as in Redis Cluster.
pub fn publish(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let receivers = ctx.state.pubsub.publish(&args[1], &args[2]);
    ctx.state.pubsub.forward.broadcast(
        &ctx.state.cluster,
        ctx.state.stats.node_secret.as_ref(),
        &args[1],
        &args[2],
    );
    Frame::Integer(receivers)
}

/// SPUBLISH shardchannel message: the cluster check already sent it to the slot's owner.
pub fn spublish(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    Frame::Integer(ctx.state.pubsub.spublish(&args[1], &args[2]))
}

/// PING while subscribed in RESP2: `["pong", argument or ""]`.
pub fn subscribed_ping(args: &[Bytes]) -> Frame {
    if args.len() > 2 {
        return Frame::error(tessera_proto::command::arity_error("ping"));
    }
    Frame::Array(vec![
        Frame::Bulk(Bytes::from_static(b"pong")),
        Frame::Bulk(args.get(1).cloned().unwrap_or_default()),
    ])
}

/// PUBSUB CHANNELS / NUMSUB / NUMPAT / SHARDCHANNELS / SHARDNUMSUB, counting this node only.
pub fn pubsub(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let registry = &ctx.state.pubsub;
    let sub = args[1].to_ascii_lowercase();
    match (&sub[..], args.len()) {
        (b"channels", 2 | 3) => {
            channel_list(registry.active(Kind::Channel, args.get(2).map(|p| &p[..])))
        }
        (b"shardchannels", 2 | 3) => {
            channel_list(registry.active(Kind::Shard, args.get(2).map(|p| &p[..])))
        }
        (b"numsub", _) => numsub(registry, Kind::Channel, &args[2..]),
        (b"shardnumsub", _) => numsub(registry, Kind::Shard, &args[2..]),
        (b"numpat", 2) => Frame::Integer(registry.pattern_count() as i64),
        _ => Frame::error(format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try PUBSUB HELP.",
            String::from_utf8_lossy(&args[1])
        )),
    }
}

fn channel_list(channels: Vec<Bytes>) -> Frame {
    Frame::Array(channels.into_iter().map(Frame::Bulk).collect())
}

fn numsub(registry: &crate::pubsub::PubSub, kind: Kind, channels: &[Bytes]) -> Frame {
    let mut reply = Vec::with_capacity(channels.len() * 2);
    for channel in channels {
        reply.push(Frame::Bulk(channel.clone()));
        reply.push(Frame::Integer(registry.subscribers(kind, channel) as i64));
    }
    Frame::Array(reply)
}

/// The commands of this family, for the node's dispatch table (`cmd::dispatch`).
pub(super) const COMMANDS: &[DispatchEntry] = &[
    ("subscribe", |ctx, session, args| {
        subscribe(ctx, session, args, crate::pubsub::Kind::Channel)
    }),
    ("psubscribe", |ctx, session, args| {
        subscribe(ctx, session, args, crate::pubsub::Kind::Pattern)
    }),
    ("ssubscribe", |ctx, session, args| {
        subscribe(ctx, session, args, crate::pubsub::Kind::Shard)
    }),
    ("unsubscribe", |ctx, session, args| {
        unsubscribe(ctx, session, args, crate::pubsub::Kind::Channel)
    }),
    ("punsubscribe", |ctx, session, args| {
        unsubscribe(ctx, session, args, crate::pubsub::Kind::Pattern)
    }),
    ("sunsubscribe", |ctx, session, args| {
        unsubscribe(ctx, session, args, crate::pubsub::Kind::Shard)
    }),
    ("publish", |ctx, _, args| publish(ctx, args)),
    ("spublish", |ctx, _, args| spublish(ctx, args)),
    ("pubsub", |ctx, _, args| pubsub(ctx, args)),
];
