//! Consumer groups: XGROUP (CREATE, SETID, DESTROY, CREATECONSUMER, DELCONSUMER, HELP), XACK,
//! XPENDING, XCLAIM and XAUTOCLAIM, as Redis 7.0. Claims are logged as Redis propagates them: one
//! `XCLAIM key group consumer 0 id TIME t RETRYCOUNT n FORCE JUSTID LASTID last` per entry, which
//! replays to the same PEL whatever the replaying clock says.

use bytes::Bytes;
use tessera_proto::resp::Frame;

use super::super::parse::{self, err, parse_i64, ERR_NOT_INTEGER, ERR_SYNTAX, ERR_WRONGTYPE};
use super::super::{Ctx, Txn};
use super::id::{interval_id, parse_id, range_end, range_start, strict_id};
use super::{b, entry_frame, id_frame, lossy, nogroup, stream_mut, stream_or_create};
use crate::keyspace::stream::{Group, Pending, Stream, StreamId, ENTRIES_READ_UNKNOWN};
use crate::keyspace::ValueRef;

/// The XCLAIM that records `id`'s pending state in `group` (Redis's streamPropagateXCLAIM).
pub(crate) fn claim_record(
    key: &Bytes,
    group_name: &Bytes,
    group: &Group,
    id: StreamId,
    pending: &Pending,
) -> Vec<Bytes> {
    vec![
        b("XCLAIM"),
        key.clone(),
        group_name.clone(),
        pending.consumer.clone(),
        b("0"),
        id.to_bytes(),
        b("TIME"),
        parse::int_bytes(pending.delivery_time as i64),
        b("RETRYCOUNT"),
        parse::int_bytes(pending.delivery_count as i64),
        b("FORCE"),
        b("JUSTID"),
        b("LASTID"),
        group.last_id.to_bytes(),
    ]
}

/// The XGROUP SETID that records a group's last ID and read counter.
pub(crate) fn setid_record(key: &Bytes, group_name: &Bytes, group: &Group) -> Vec<Bytes> {
    vec![
        b("XGROUP"),
        b("SETID"),
        key.clone(),
        group_name.clone(),
        group.last_id.to_bytes(),
        b("ENTRIESREAD"),
        parse::int_bytes(group.entries_read),
    ]
}

const XGROUP_HELP: &[&str] = &[
    "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CREATE <key> <groupname> <id|$> [option]",
    "    Create a new consumer group. Options are:",
    "    * MKSTREAM",
    "      Create the empty stream if it does not exist.",
    "    * ENTRIESREAD entries_read",
    "      Set the group's entries_read counter (internal use).",
    "CREATECONSUMER <key> <groupname> <consumer>",
    "    Create a new consumer in the specified group.",
    "DELCONSUMER <key> <groupname> <consumer>",
    "    Remove the specified consumer.",
    "DESTROY <key> <groupname>",
    "    Remove the specified group.",
    "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    "    Set the current group ID and entries_read counter.",
    "HELP",
    "    Prints this help.",
];

pub(crate) fn help(lines: &[&'static str]) -> Frame {
    Frame::Array(
        lines
            .iter()
            .map(|l| Frame::Simple(Bytes::from_static(l.as_bytes())))
            .collect(),
    )
}

fn subcommand_syntax(name: &str, sub: &[u8]) -> Frame {
    Frame::error(format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try {} HELP.",
        lossy(sub),
        name
    ))
}

/// XGROUP's subcommands.
pub fn xgroup(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let sub = &args[1];
    let is = |name: &str| parse::eq(sub, name);
    let mut mkstream = false;
    let mut entries_read = ENTRIES_READ_UNKNOWN;
    if args.len() == 2 && is("help") {
        return help(XGROUP_HELP);
    }
    if args.len() < 4 {
        return subcommand_syntax("XGROUP", sub);
    }
    if is("create") || is("setid") {
        let mut i = 5;
        while i < args.len() {
            if is("create") && parse::eq(&args[i], "mkstream") {
                mkstream = true;
            } else if parse::eq(&args[i], "entriesread") && i + 1 < args.len() {
                entries_read = match parse_i64(&args[i + 1]) {
                    Some(n) if n >= 0 || n == ENTRIES_READ_UNKNOWN => n,
                    Some(_) => return err("ERR value for ENTRIESREAD must be positive or -1"),
                    None => return err(ERR_NOT_INTEGER),
                };
                i += 1;
            } else {
                return subcommand_syntax("XGROUP", sub);
            }
            i += 1;
        }
    }
    let key = &args[2];
    let group_name = &args[3];
    let mut txn = ctx.lock(key);
    let exists = match stream_mut(&mut txn, key) {
        Ok(s) => s.is_some(),
        Err(e) => return e,
    };
    if !exists && !mkstream {
        return err("ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.");
    }
    let has_group = exists
        && matches!(stream_mut(&mut txn, key), Ok(Some(s)) if s.groups.contains_key(&group_name[..]));
    if !has_group && (is("setid") || is("createconsumer") || is("delconsumer")) {
        return nogroup(format!(
            "No such consumer group '{}' for key name '{}'",
            lossy(group_name),
            lossy(key)
        ));
    }
    if is("create") && (5..=8).contains(&args.len()) {
        let last = match stream_mut(&mut txn, key) {
            Ok(Some(s)) => s.last_id,
            _ => StreamId::MIN,
        };
        let id = if &args[4][..] == b"$" {
            last
        } else {
            match strict_id(&args[4]) {
                Ok(id) => id,
                Err(e) => return e,
            }
        };
        let stream = match stream_or_create(&mut txn, key) {
            Ok(s) => s,
            Err(e) => return e,
        };
        if stream.groups.contains_key(&group_name[..]) {
            return err("BUSYGROUP Consumer Group name already exists");
        }
        stream
            .groups
            .insert(group_name.clone(), Group::new(id, entries_read));
        let mut logged = vec![b("XGROUP"), b("CREATE"), key.clone(), group_name.clone()];
        logged.push(id.to_bytes());
        logged.extend([b("ENTRIESREAD"), parse::int_bytes(entries_read)]);
        if !exists {
            logged.push(b("MKSTREAM"));
        }
        txn.log(&logged);
        Frame::ok()
    } else if is("setid") && (args.len() == 5 || args.len() == 7) {
        let Ok(Some(stream)) = stream_mut(&mut txn, key) else {
            return Frame::Null;
        };
        let id = if &args[4][..] == b"$" {
            stream.last_id
        } else {
            match parse_id(&args[4], 0, false, false) {
                Ok(p) => p.id,
                Err(e) => return e,
            }
        };
        let Some(group) = stream.groups.get_mut(&group_name[..]) else {
            return Frame::Null;
        };
        group.last_id = id;
        group.entries_read = entries_read;
        let logged = setid_record(key, group_name, group);
        txn.log(&logged);
        Frame::ok()
    } else if is("destroy") && args.len() == 4 {
        let Ok(Some(stream)) = stream_mut(&mut txn, key) else {
            return Frame::Integer(0);
        };
        if stream.groups.remove(&group_name[..]).is_none() {
            return Frame::Integer(0);
        }
        // Clients blocked in XREADGROUP on this group are answered NOGROUP (see `read`).
        txn.signal_ready(key);
        txn.log(args);
        Frame::Integer(1)
    } else if is("createconsumer") && args.len() == 5 {
        let now = ctx.now_ms;
        let Ok(Some(stream)) = stream_mut(&mut txn, key) else {
            return Frame::Integer(0);
        };
        let Some(group) = stream.groups.get_mut(&group_name[..]) else {
            return Frame::Integer(0);
        };
        let (_, created) = group.consumer_or_create(&args[4], now);
        if created {
            txn.log(args);
        }
        Frame::Integer(created as i64)
    } else if is("delconsumer") && args.len() == 5 {
        let Ok(Some(stream)) = stream_mut(&mut txn, key) else {
            return Frame::Integer(0);
        };
        let Some(group) = stream.groups.get_mut(&group_name[..]) else {
            return Frame::Integer(0);
        };
        let pending = match group.consumers.remove(&args[4][..]) {
            Some(consumer) => {
                for id in &consumer.pel {
                    group.pel.remove(id);
                }
                consumer.pel.len() as i64
            }
            None => 0,
        };
        txn.log(args);
        Frame::Integer(pending)
    } else {
        subcommand_syntax("XGROUP", sub)
    }
}

/// The stream at `key` and its group `name` for a command that needs both; `Ok(None)` when either
/// is missing.
fn stream_and_group<'t>(
    txn: &'t mut Txn<'_>,
    key: &[u8],
    name: &[u8],
) -> Result<Option<&'t mut Stream>, Frame> {
    match txn.read(key) {
        None => return Ok(None),
        Some(entry) if !matches!(entry.value, ValueRef::Stream(_)) => {
            return Err(err(ERR_WRONGTYPE))
        }
        Some(_) => {}
    }
    match stream_mut(txn, key)? {
        Some(s) if s.groups.contains_key(name) => Ok(Some(s)),
        _ => Ok(None),
    }
}

/// NOGROUP for a key that is no stream with `group`, as XPENDING, XCLAIM and XAUTOCLAIM word it.
fn no_such_group(key: &[u8], group: &[u8]) -> Frame {
    nogroup(format!(
        "No such key '{}' or consumer group '{}'",
        lossy(key),
        lossy(group)
    ))
}

/// The stream at `key` has `group`: else WRONGTYPE, or NOGROUP (`no_such_group`).
fn require_group(txn: &mut Txn<'_>, key: &[u8], group: &[u8]) -> Result<(), Frame> {
    match stream_and_group(txn, key, group)? {
        Some(_) => Ok(()),
        None => Err(no_such_group(key, group)),
    }
}

/// XACK key group id...
pub fn xack(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let mut txn = ctx.lock(key);
    match stream_and_group(&mut txn, key, &args[2]) {
        Ok(Some(_)) => {}
        Ok(None) => return Frame::Integer(0),
        Err(e) => return e,
    }
    let mut ids = Vec::with_capacity(args.len() - 3);
    for arg in &args[3..] {
        match strict_id(arg) {
            Ok(id) => ids.push(id),
            Err(e) => return e,
        }
    }
    let Ok(Some(stream)) = stream_mut(&mut txn, key) else {
        return Frame::Integer(0);
    };
    let Some(group) = stream.groups.get_mut(&args[2][..]) else {
        return Frame::Integer(0);
    };
    let acked = ids.into_iter().filter(|id| group.ack(*id)).count();
    if acked > 0 {
        txn.log(args);
    }
    Frame::Integer(acked as i64)
}

/// XPENDING key group [[IDLE min-idle] start end count [consumer]].
pub fn xpending(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let summary = args.len() == 3;
    if !summary && !(6..=9).contains(&args.len()) {
        return err(ERR_SYNTAX);
    }
    let mut range = None;
    let mut min_idle: i64 = 0;
    let mut consumer_name: Option<&Bytes> = None;
    if !summary {
        let mut at = 3;
        if parse::eq(&args[3], "idle") {
            min_idle = match parse_i64(&args[4]) {
                Some(n) => n,
                None => return err(ERR_NOT_INTEGER),
            };
            if args.len() < 8 {
                return err(ERR_SYNTAX);
            }
            at += 2;
        }
        let count = match parse_i64(&args[at + 2]) {
            Some(n) => n.max(0),
            None => return err(ERR_NOT_INTEGER),
        };
        let start = match range_start(&args[at]) {
            Ok(id) => id,
            Err(e) => return e,
        };
        let end = match range_end(&args[at + 1]) {
            Ok(id) => id,
            Err(e) => return e,
        };
        consumer_name = args.get(at + 3);
        range = Some((start, end, count));
    }
    let key = &args[1];
    let mut txn = ctx.lock(key);
    let stream = match txn.read(key) {
        None => None,
        Some(entry) => match entry.value {
            ValueRef::Stream(s) => Some(s),
            _ => return err(ERR_WRONGTYPE),
        },
    };
    let Some(group) = stream.and_then(|s| s.groups.get(&args[2][..])) else {
        return no_such_group(key, &args[2]);
    };
    let Some((start, end, count)) = range else {
        let total = Frame::Integer(group.pel.len() as i64);
        let (Some(first), Some(last)) = (group.pel.keys().next(), group.pel.keys().next_back())
        else {
            return Frame::Array(vec![total, Frame::Null, Frame::Null, Frame::NullArray]);
        };
        let consumers = group
            .consumers
            .iter()
            .filter(|(_, c)| !c.pel.is_empty())
            .map(|(name, c)| {
                Frame::Array(vec![
                    Frame::Bulk(name.clone()),
                    Frame::Bulk(parse::int_bytes(c.pel.len() as i64)),
                ])
            })
            .collect();
        return Frame::Array(vec![
            total,
            id_frame(*first),
            id_frame(*last),
            Frame::Array(consumers),
        ]);
    };
    let now = ctx.now_ms as i64;
    let consumer = match consumer_name {
        Some(name) => match group.consumers.get(&name[..]) {
            Some(c) => Some(c),
            None => return Frame::Array(Vec::new()),
        },
        None => None,
    };
    let ids: Box<dyn Iterator<Item = &StreamId>> = match (consumer, start <= end) {
        (_, false) => Box::new(std::iter::empty()),
        (Some(c), true) => Box::new(c.pel.range(start..=end)),
        (None, true) => Box::new(group.pel.range(start..=end).map(|(id, _)| id)),
    };
    let mut out = Vec::new();
    let mut left = count;
    for id in ids {
        if left == 0 {
            break;
        }
        let Some(pending) = group.pel.get(id) else {
            continue;
        };
        let idle = now - pending.delivery_time as i64;
        if min_idle != 0 && idle < min_idle {
            continue;
        }
        left -= 1;
        out.push(Frame::Array(vec![
            id_frame(*id),
            Frame::Bulk(pending.consumer.clone()),
            Frame::Integer(idle.max(0)),
            Frame::Integer(pending.delivery_count as i64),
        ]));
    }
    Frame::Array(out)
}

/// XCLAIM key group consumer min-idle-time id... [IDLE ms] [TIME ms] [RETRYCOUNT n] [FORCE]
/// [JUSTID] [LASTID id].
pub fn xclaim(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let (key, group_name, consumer_name) = (&args[1], &args[2], &args[3]);
    let mut txn = ctx.lock(key);
    if let Err(refusal) = require_group(&mut txn, key, group_name) {
        return refusal;
    }
    let min_idle = match parse_i64(&args[4]) {
        Some(n) => n.max(0),
        None => return err("ERR Invalid min-idle-time argument for XCLAIM"),
    };
    let mut j = 5;
    let mut ids = Vec::new();
    while j < args.len() {
        match strict_id(&args[j]) {
            Ok(id) => ids.push(id),
            Err(_) => break,
        }
        j += 1;
    }
    let now = ctx.now_ms as i64;
    let (mut force, mut justid) = (false, false);
    let mut retrycount: i64 = -1;
    let mut delivery: i64 = -1;
    let mut last_id = StreamId::MIN;
    while j < args.len() {
        let more = j + 1 < args.len();
        let opt = &args[j];
        let number = |arg: &[u8], what: &'static str| parse_i64(arg).ok_or_else(|| err(what));
        if parse::eq(opt, "force") {
            force = true;
        } else if parse::eq(opt, "justid") {
            justid = true;
        } else if parse::eq(opt, "idle") && more {
            j += 1;
            match number(&args[j], "ERR Invalid IDLE option argument for XCLAIM") {
                Ok(n) => delivery = now.wrapping_sub(n),
                Err(e) => return e,
            }
        } else if parse::eq(opt, "time") && more {
            j += 1;
            match number(&args[j], "ERR Invalid TIME option argument for XCLAIM") {
                Ok(n) => delivery = n,
                Err(e) => return e,
            }
        } else if parse::eq(opt, "retrycount") && more {
            j += 1;
            match number(
                &args[j],
                "ERR Invalid RETRYCOUNT option argument for XCLAIM",
            ) {
                Ok(n) => retrycount = n,
                Err(e) => return e,
            }
        } else if parse::eq(opt, "lastid") && more {
            j += 1;
            match strict_id(&args[j]) {
                Ok(id) => last_id = id,
                Err(e) => return e,
            }
        } else {
            return Frame::error(format!("ERR Unrecognized XCLAIM option '{}'", lossy(opt)));
        }
        j += 1;
    }
    if delivery < 0 || delivery > now {
        delivery = now;
    }
    let Ok(Some(stream)) = stream_mut(&mut txn, key) else {
        return Frame::Array(Vec::new());
    };
    let mut logs: Vec<Vec<Bytes>> = Vec::new();
    let mut replies = Vec::new();
    let mut propagate_last_id = false;
    {
        let group = stream
            .groups
            .get_mut(&group_name[..])
            .expect("checked above");
        if last_id > group.last_id {
            group.last_id = last_id;
            propagate_last_id = true;
        }
    }
    for id in ids {
        let exists = stream.get(id).is_some();
        let group = stream
            .groups
            .get_mut(&group_name[..])
            .expect("checked above");
        if !exists {
            if let Some(pending) = group.pel.get(&id).cloned() {
                logs.push(claim_record(key, group_name, group, id, &pending));
                propagate_last_id = false;
                group.ack(id);
            }
            continue;
        }
        let fresh = !group.pel.contains_key(&id);
        if fresh && !force {
            continue;
        }
        if !fresh && min_idle != 0 {
            let pending = &group.pel[&id];
            if now - (pending.delivery_time as i64) < min_idle {
                continue;
            }
        }
        group
            .consumer_or_create(consumer_name, ctx.now_ms)
            .0
            .seen_time = ctx.now_ms;
        let old = group.pel.get(&id).cloned();
        let count = if retrycount >= 0 {
            retrycount as u64
        } else {
            let base = old.as_ref().map_or(1, |p| p.delivery_count);
            if justid {
                base
            } else {
                base + 1
            }
        };
        let pending = Pending {
            consumer: consumer_name.clone(),
            delivery_time: delivery as u64,
            delivery_count: count,
        };
        group.assign(id, consumer_name, pending.clone());
        logs.push(claim_record(key, group_name, group, id, &pending));
        propagate_last_id = false;
        replies.push(id);
    }
    let group = &stream.groups[&group_name[..]];
    if propagate_last_id {
        logs.push(setid_record(key, group_name, group));
    }
    let reply = if justid {
        replies.into_iter().map(id_frame).collect()
    } else {
        replies
            .into_iter()
            .filter_map(|id| stream.get(id).map(|f| entry_frame(id, f)))
            .collect()
    };
    for record in &logs {
        txn.log(record);
    }
    Frame::Array(reply)
}

/// XAUTOCLAIM key group consumer min-idle-time start [COUNT count] [JUSTID].
pub fn xautoclaim(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let (key, group_name, consumer_name) = (&args[1], &args[2], &args[3]);
    let min_idle = match parse_i64(&args[4]) {
        Some(n) => n.max(0),
        None => return err("ERR Invalid min-idle-time argument for XAUTOCLAIM"),
    };
    let start = match interval_id(&args[5], 0) {
        Ok((id, false)) => id,
        Ok((id, true)) => match id.incr() {
            Some(id) => id,
            None => return err("ERR invalid start ID for the interval"),
        },
        Err(e) => return e,
    };
    let mut count: i64 = 100;
    let mut justid = false;
    let mut j = 6;
    while j < args.len() {
        let more = j + 1 < args.len();
        if parse::eq(&args[j], "count") && more {
            let max = i64::MAX / 16;
            count = match parse_i64(&args[j + 1]) {
                Some(n) if (1..=max).contains(&n) => n,
                Some(_) => return err("ERR COUNT must be > 0"),
                None => return err("ERR COUNT must be > 0"),
            };
            j += 1;
        } else if parse::eq(&args[j], "justid") {
            justid = true;
        } else {
            return err(ERR_SYNTAX);
        }
        j += 1;
    }
    let mut txn = ctx.lock(key);
    if let Err(refusal) = require_group(&mut txn, key, group_name) {
        return refusal;
    }
    let Ok(Some(stream)) = stream_mut(&mut txn, key) else {
        return Frame::Null;
    };
    let now = ctx.now_ms;
    let mut attempts = count.saturating_mul(10);
    let mut claimed = Vec::new();
    let mut deleted = Vec::new();
    let mut logs = Vec::new();
    let mut cursor = start;
    let next;
    loop {
        let group = stream
            .groups
            .get_mut(&group_name[..])
            .expect("checked above");
        let Some((&id, _)) = group.pel.range(cursor..).next() else {
            next = StreamId::MIN;
            break;
        };
        if attempts == 0 || count == 0 {
            next = id;
            break;
        }
        attempts -= 1;
        cursor = match id.incr() {
            Some(c) => c,
            None => StreamId::MAX,
        };
        let last_possible = id == StreamId::MAX;
        let exists = stream.get(id).is_some();
        let group = stream
            .groups
            .get_mut(&group_name[..])
            .expect("checked above");
        if !exists {
            let pending = group.pel[&id].clone();
            logs.push(claim_record(key, group_name, group, id, &pending));
            group.ack(id);
            deleted.push(id);
            count -= 1;
        } else {
            let pending = group.pel[&id].clone();
            if min_idle == 0 || (now as i64 - pending.delivery_time as i64) >= min_idle {
                group.consumer_or_create(consumer_name, now).0.seen_time = now;
                let delivery_count = if justid {
                    pending.delivery_count
                } else {
                    pending.delivery_count + 1
                };
                let pending = Pending {
                    consumer: consumer_name.clone(),
                    delivery_time: now,
                    delivery_count,
                };
                group.assign(id, consumer_name, pending.clone());
                logs.push(claim_record(key, group_name, group, id, &pending));
                claimed.push(id);
                count -= 1;
            }
        }
        if last_possible {
            next = StreamId::MIN;
            break;
        }
    }
    let entries: Vec<Frame> = if justid {
        claimed.into_iter().map(id_frame).collect()
    } else {
        claimed
            .into_iter()
            .filter_map(|id| stream.get(id).map(|f| entry_frame(id, f)))
            .collect()
    };
    for record in &logs {
        txn.log(record);
    }
    Frame::Array(vec![
        id_frame(next),
        Frame::Array(entries),
        Frame::Array(deleted.into_iter().map(id_frame).collect()),
    ])
}
