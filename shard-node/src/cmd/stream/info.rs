//! XINFO STREAM [FULL [COUNT n]], XINFO GROUPS, XINFO CONSUMERS and XINFO HELP, in Redis 7.0's
//! shapes (maps in RESP3, flat arrays in RESP2). `radix-tree-nodes` is an estimate: Redis's radix
//! tree shape is not modelled, only its keys (the listpack nodes, see `keyspace::stream`).

use bytes::Bytes;
use tessera_proto::resp::Frame;

use super::super::parse::{self, err, parse_i64, ERR_NOT_INTEGER, ERR_WRONGTYPE};
use super::super::Ctx;
use super::group::help;
use super::{entry_frame, id_frame, lossy, nogroup};
use crate::keyspace::stream::{Group, Stream, ENTRIES_READ_UNKNOWN};
use crate::keyspace::ValueRef;

const XINFO_HELP: &[&str] = &[
    "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CONSUMERS <key> <groupname>",
    "    Show consumers of <groupname>.",
    "GROUPS <key>",
    "    Show the stream consumer groups.",
    "STREAM <key> [FULL [COUNT <count>]",
    "    Show information about the stream.",
    "HELP",
    "    Prints this help.",
];

/// FULL's default number of entries (and of PEL entries per group and consumer).
const FULL_DEFAULT_COUNT: usize = 10;

fn field(name: &'static str) -> Frame {
    Frame::Bulk(Bytes::from_static(name.as_bytes()))
}

fn syntax(sub: &[u8]) -> Frame {
    Frame::error(format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try XINFO HELP.",
        lossy(sub)
    ))
}

pub fn xinfo(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let sub = &args[1];
    if parse::eq(sub, "help") {
        return help(XINFO_HELP);
    }
    if args.len() < 3 {
        return syntax(sub);
    }
    let key = &args[2];
    let mut txn = ctx.lock(key);
    let stream = match txn.read(key) {
        None => return err("ERR no such key"),
        Some(entry) => match entry.value {
            ValueRef::Stream(s) => s,
            _ => return err(ERR_WRONGTYPE),
        },
    };
    let is = |name: &str| parse::eq(sub, name);
    let mut full = None;
    if is("stream") && args.len() > 3 {
        if !parse::eq(&args[3], "full") || (args.len() != 4 && args.len() != 6) {
            return syntax(sub);
        }
        let mut count = FULL_DEFAULT_COUNT;
        if args.len() == 6 {
            if !parse::eq(&args[4], "count") {
                return syntax(sub);
            }
            count = match parse_i64(&args[5]) {
                Some(n) if n <= 0 => 0,
                Some(n) => n as usize,
                None => return err(ERR_NOT_INTEGER),
            };
        }
        full = Some(count);
    }
    let now = ctx.now_ms as i64;
    if is("consumers") && args.len() == 4 {
        let Some(group) = stream.groups.get(&args[3][..]) else {
            return nogroup(format!(
                "No such consumer group '{}' for key name '{}'",
                lossy(&args[3]),
                lossy(key)
            ));
        };
        Frame::Array(
            group
                .consumers
                .iter()
                .map(|(name, c)| {
                    Frame::Map(vec![
                        (field("name"), Frame::Bulk(name.clone())),
                        (field("pending"), Frame::Integer(c.pel.len() as i64)),
                        (
                            field("idle"),
                            Frame::Integer((now - c.seen_time as i64).max(0)),
                        ),
                    ])
                })
                .collect(),
        )
    } else if is("groups") && args.len() == 3 {
        Frame::Array(
            stream
                .groups
                .iter()
                .map(|(name, g)| {
                    Frame::Map(vec![
                        (field("name"), Frame::Bulk(name.clone())),
                        (field("consumers"), Frame::Integer(g.consumers.len() as i64)),
                        (field("pending"), Frame::Integer(g.pel.len() as i64)),
                        (field("last-delivered-id"), id_frame(g.last_id)),
                        (field("entries-read"), entries_read(g)),
                        (field("lag"), lag(stream, g)),
                    ])
                })
                .collect(),
        )
    } else if is("stream") {
        stream_info(stream, full)
    } else {
        syntax(sub)
    }
}

fn entries_read(group: &Group) -> Frame {
    if group.entries_read == ENTRIES_READ_UNKNOWN {
        Frame::Null
    } else {
        Frame::Integer(group.entries_read)
    }
}

fn lag(stream: &Stream, group: &Group) -> Frame {
    stream.group_lag(group).map_or(Frame::Null, Frame::Integer)
}

fn take(count: usize) -> usize {
    if count == 0 {
        usize::MAX
    } else {
        count
    }
}

fn stream_info(stream: &Stream, full: Option<usize>) -> Frame {
    let keys = stream.node_count();
    let mut fields = vec![
        (field("length"), Frame::Integer(stream.len() as i64)),
        (field("radix-tree-keys"), Frame::Integer(keys as i64)),
        (
            field("radix-tree-nodes"),
            Frame::Integer(if keys == 0 { 1 } else { keys as i64 + 1 }),
        ),
        (field("last-generated-id"), id_frame(stream.last_id)),
        (
            field("max-deleted-entry-id"),
            id_frame(stream.max_deleted_id),
        ),
        (
            field("entries-added"),
            Frame::Integer(stream.entries_added as i64),
        ),
        (
            field("recorded-first-entry-id"),
            id_frame(stream.first_id()),
        ),
    ];
    let Some(count) = full else {
        fields.push((field("groups"), Frame::Integer(stream.groups.len() as i64)));
        let edge = |e: Option<(&crate::keyspace::stream::StreamId, _)>| {
            e.map_or(Frame::Null, |(id, f)| entry_frame(*id, f))
        };
        fields.push((field("first-entry"), edge(stream.first_entry())));
        fields.push((field("last-entry"), edge(stream.last_entry())));
        return Frame::Map(fields);
    };
    fields.push((
        field("entries"),
        Frame::Array(
            stream
                .iter()
                .take(take(count))
                .map(|(id, f)| entry_frame(*id, f))
                .collect(),
        ),
    ));
    let groups = stream
        .groups
        .iter()
        .map(|(name, g)| {
            let pending = g
                .pel
                .iter()
                .take(take(count))
                .map(|(id, p)| {
                    Frame::Array(vec![
                        id_frame(*id),
                        Frame::Bulk(p.consumer.clone()),
                        Frame::Integer(p.delivery_time as i64),
                        Frame::Integer(p.delivery_count as i64),
                    ])
                })
                .collect();
            let consumers = g
                .consumers
                .iter()
                .map(|(cname, c)| {
                    let pel = c
                        .pel
                        .iter()
                        .take(take(count))
                        .filter_map(|id| {
                            let p = g.pel.get(id)?;
                            Some(Frame::Array(vec![
                                id_frame(*id),
                                Frame::Integer(p.delivery_time as i64),
                                Frame::Integer(p.delivery_count as i64),
                            ]))
                        })
                        .collect();
                    Frame::Map(vec![
                        (field("name"), Frame::Bulk(cname.clone())),
                        (field("seen-time"), Frame::Integer(c.seen_time as i64)),
                        (field("pel-count"), Frame::Integer(c.pel.len() as i64)),
                        (field("pending"), Frame::Array(pel)),
                    ])
                })
                .collect();
            Frame::Map(vec![
                (field("name"), Frame::Bulk(name.clone())),
                (field("last-delivered-id"), id_frame(g.last_id)),
                (field("entries-read"), entries_read(g)),
                (field("lag"), lag(stream, g)),
                (field("pel-count"), Frame::Integer(g.pel.len() as i64)),
                (field("pending"), Frame::Array(pending)),
                (field("consumers"), Frame::Array(consumers)),
            ])
        })
        .collect();
    fields.push((field("groups"), Frame::Array(groups)));
    Frame::Map(fields)
}
