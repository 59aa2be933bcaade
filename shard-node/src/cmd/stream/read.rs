//! XREAD and XREADGROUP, and their BLOCK forms through the node's blocking registry
//! (`keyspace::blocking`), as BLPOP blocks.
//!
//! A blocked XREAD waits for entries after the IDs it was given, with `$` resolved to each
//! stream's last ID when it blocked: the registered command is rewritten so, and a writer that
//! serves it (XADD, under the slot's lock) reads the IDs back from it. A blocked XREADGROUP waits
//! for entries past its group's last delivered ID, read when served; a group destroyed meanwhile
//! answers NOGROUP. Reading through a group is logged as Redis propagates it: an XCLAIM per
//! delivered entry and an XGROUP SETID for the group's new last ID (and XGROUP CREATECONSUMER for
//! a consumer the read created).

use std::time::Duration;

use bytes::Bytes;
use tessera_proto::resp::{Frame, Protocol};
use tessera_proto::slot::key_hash_slot;

use super::super::parse::{self, err, parse_i64, ERR_NOT_INTEGER, ERR_SYNTAX, ERR_WRONGTYPE};
use super::super::{ClientSession, Ctx, Txn};
use super::group::{claim_record, setid_record};
use super::id::strict_id;
use super::{b, entry_frame, lossy, nogroup, stream_mut};
use crate::keyspace::blocking;
use crate::keyspace::stream::{Pending, Stream, StreamId, ENTRIES_READ_UNKNOWN};
use crate::keyspace::ValueRef;

/// What a blocked read serves at most when it gave no COUNT (Redis's
/// XREAD_BLOCKED_DEFAULT_COUNT).
const BLOCKED_DEFAULT_COUNT: usize = 1000;

/// XREAD / XREADGROUP's arguments.
struct ReadArgs<'a> {
    group: Option<(&'a Bytes, &'a Bytes)>,
    /// Milliseconds; `None` without BLOCK, `Some(None)` for BLOCK 0.
    block: Option<Option<Duration>>,
    count: usize,
    noack: bool,
    keys: &'a [Bytes],
    ids: &'a [Bytes],
}

fn parse_read(args: &[Bytes]) -> Result<ReadArgs<'_>, Frame> {
    let xreadgroup = args[0].len() == 10;
    let mut out = ReadArgs {
        group: None,
        block: None,
        count: 0,
        noack: false,
        keys: &[],
        ids: &[],
    };
    let mut streams_at = 0;
    let mut i = 1;
    while i < args.len() {
        let more = args.len() - i - 1;
        let opt = &args[i];
        if parse::eq(opt, "block") && more > 0 {
            i += 1;
            let ms = parse_i64(&args[i])
                .ok_or_else(|| err("ERR timeout is not an integer or out of range"))?;
            if ms < 0 {
                return Err(err("ERR timeout is negative"));
            }
            out.block = Some((ms > 0).then(|| Duration::from_millis(ms as u64)));
        } else if parse::eq(opt, "count") && more > 0 {
            i += 1;
            let n = parse_i64(&args[i]).ok_or_else(|| err(ERR_NOT_INTEGER))?;
            out.count = n.max(0) as usize;
        } else if parse::eq(opt, "streams") && more > 0 {
            streams_at = i + 1;
            let n = args.len() - streams_at;
            if !n.is_multiple_of(2) {
                let (name, symbol) = if xreadgroup {
                    ("XREADGROUP", '>')
                } else {
                    ("XREAD", '$')
                };
                return Err(Frame::error(format!(
                    "ERR Unbalanced {name} list of streams: for each stream key an ID or '{symbol}' must be specified."
                )));
            }
            out.keys = &args[streams_at..streams_at + n / 2];
            out.ids = &args[streams_at + n / 2..];
            break;
        } else if parse::eq(opt, "group") && more >= 2 {
            if !xreadgroup {
                return Err(err(
                    "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            out.group = Some((&args[i + 1], &args[i + 2]));
            i += 2;
        } else if parse::eq(opt, "noack") {
            if !xreadgroup {
                return Err(err(
                    "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            out.noack = true;
        } else {
            return Err(err(ERR_SYNTAX));
        }
        i += 1;
    }
    if streams_at == 0 {
        return Err(err(ERR_SYNTAX));
    }
    if xreadgroup && out.group.is_none() {
        return Err(err("ERR Missing GROUP option for XREADGROUP"));
    }
    Ok(out)
}

/// A stream's read position: after `id`, or `>` (new entries of the group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum From {
    After(StreamId),
    New,
}

/// XREAD [COUNT n] [BLOCK ms] STREAMS key... id... and XREADGROUP GROUP g c [COUNT n]
/// [BLOCK ms] [NOACK] STREAMS key... id... .
pub fn xread(ctx: &Ctx<'_>, session: &mut ClientSession, args: &[Bytes]) -> Frame {
    let read = match parse_read(args) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let mut slots = read.keys.iter().map(|k| key_hash_slot(k));
    let first = slots.next();
    if slots.any(|s| Some(s) != first) {
        return err("CROSSSLOT Keys in request don't hash to the same slot");
    }
    let mut txn = ctx.lock(&read.keys[0]);
    // Resolve the IDs (and check types and groups) in order, as Redis does.
    let mut froms = Vec::with_capacity(read.keys.len());
    for (key, id_arg) in read.keys.iter().zip(read.ids) {
        let stream = match txn.read(key) {
            None => None,
            Some(entry) => match entry.value {
                ValueRef::Stream(s) => Some(s),
                _ => return err(ERR_WRONGTYPE),
            },
        };
        if let Some((group, _)) = read.group {
            if !stream.is_some_and(|s| s.groups.contains_key(&group[..])) {
                return nogroup(format!(
                    "No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
                    lossy(key),
                    lossy(group)
                ));
            }
        }
        let from = if &id_arg[..] == b"$" {
            if read.group.is_some() {
                return err("ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.");
            }
            From::After(stream.map_or(StreamId::MIN, |s| s.last_id))
        } else if &id_arg[..] == b">" {
            if read.group.is_none() {
                return err("ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.");
            }
            From::New
        } else {
            match strict_id(id_arg) {
                Ok(id) => From::After(id),
                Err(e) => return e,
            }
        };
        froms.push(from);
    }
    let mut served = Vec::new();
    for (key, from) in read.keys.iter().zip(&froms) {
        if let Some(entries) =
            serve_stream(&mut txn, key, *from, &read, read.count, ctx.now_ms, false)
        {
            served.push((key.clone(), entries));
        }
    }
    if !served.is_empty() {
        return reply(session.protocol == Protocol::Resp3, served);
    }
    let Some(timeout) = read.block else {
        return Frame::NullArray;
    };
    if session.deny_blocking {
        return Frame::NullArray;
    }
    // Register with `$` replaced by the IDs it stood for now, and the count a blocked read uses.
    let mut registered = Vec::with_capacity(args.len() + 1);
    registered.push(args[0].clone());
    registered.push(Bytes::from_static(if session.protocol == Protocol::Resp3 {
        RESP3_MARK
    } else {
        RESP2_MARK
    }));
    registered.extend_from_slice(&args[1..]);
    let ids_at = registered.len() - read.ids.len();
    for (i, from) in froms.iter().enumerate() {
        if let From::After(id) = from {
            registered[ids_at + i] = id.to_bytes();
        }
    }
    let deadline = timeout.and_then(|t| tokio::time::Instant::now().checked_add(t));
    session.blocked = Some(blocking::block(
        txn.blocking(),
        txn.slot(),
        read.keys,
        &registered,
        deadline,
        Frame::NullArray,
    ));
    Frame::NullArray
}

/// The top-level reply: `[[key, entries], ...]` in RESP2, a map in RESP3 (the connection's
/// protocol decides; `Frame::Map` is a flat array in RESP2, so pairs are built per protocol).
fn reply(resp3: bool, served: Vec<(Bytes, Frame)>) -> Frame {
    if resp3 {
        Frame::Map(
            served
                .into_iter()
                .map(|(k, v)| (Frame::Bulk(k), v))
                .collect(),
        )
    } else {
        Frame::Array(
            served
                .into_iter()
                .map(|(k, v)| Frame::Array(vec![Frame::Bulk(k), v]))
                .collect(),
        )
    }
}

/// XREADGROUP with an ID: the consumer's pending entries after `after`; a deleted entry shows as
/// `[id, nil]`. Each delivery counts (logged as the XCLAIM recording it).
#[allow(clippy::too_many_arguments)]
fn history(
    stream: &mut Stream,
    group_name: &Bytes,
    consumer_name: &Bytes,
    after: StreamId,
    count: usize,
    now: u64,
    key: &Bytes,
    logs: &mut Vec<Vec<Bytes>>,
) -> Frame {
    let Some(start) = after.incr() else {
        return Frame::Array(Vec::new());
    };
    let limit = if count == 0 { usize::MAX } else { count };
    let ids: Vec<StreamId> = stream.groups[&group_name[..]].consumers[&consumer_name[..]]
        .pel
        .range(start..)
        .take(limit)
        .copied()
        .collect();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        match stream.get(id) {
            None => out.push(Frame::Array(vec![
                Frame::Bulk(id.to_bytes()),
                Frame::NullArray,
            ])),
            Some(fields) => {
                out.push(entry_frame(id, fields));
                if let Some(group) = stream.groups.get_mut(&group_name[..]) {
                    if let Some(p) = group.pel.get_mut(&id) {
                        p.delivery_time = now;
                        p.delivery_count += 1;
                        let p = p.clone();
                        logs.push(claim_record(key, group_name, group, id, &p));
                    }
                }
            }
        }
    }
    Frame::Array(out)
}

/// XREADGROUP `>`: entries after the group's last ID, which moves on; each becomes pending for
/// the consumer unless NOACK.
#[allow(clippy::too_many_arguments)]
fn deliver_new(
    stream: &mut Stream,
    group_name: &Bytes,
    consumer_name: &Bytes,
    count: usize,
    noack: bool,
    now: u64,
    key: &Bytes,
    logs: &mut Vec<Vec<Bytes>>,
) -> Frame {
    let Some(start) = stream.groups[&group_name[..]].last_id.incr() else {
        return Frame::Array(Vec::new());
    };
    let limit = if count == 0 { usize::MAX } else { count };
    let ids: Vec<StreamId> = stream
        .range(start, StreamId::MAX)
        .take(limit)
        .map(|(id, _)| *id)
        .collect();
    let mut out = Vec::with_capacity(ids.len());
    let mut advanced = false;
    for id in ids {
        let read_counter = {
            let group = &stream.groups[&group_name[..]];
            if id > group.last_id {
                Some(
                    if group.entries_read != ENTRIES_READ_UNKNOWN
                        && !stream.range_has_tombstones(id)
                    {
                        group.entries_read + 1
                    } else if stream.entries_added != 0 {
                        stream.estimate_entries_read(id)
                    } else {
                        group.entries_read
                    },
                )
            } else {
                None
            }
        };
        if let Some(fields) = stream.get(id) {
            out.push(entry_frame(id, fields));
        }
        let Some(group) = stream.groups.get_mut(&group_name[..]) else {
            break;
        };
        if let Some(entries_read) = read_counter {
            group.entries_read = entries_read;
            group.last_id = id;
            advanced = true;
        }
        if !noack {
            let pending = Pending {
                consumer: consumer_name.clone(),
                delivery_time: now,
                delivery_count: 1,
            };
            group.assign(id, consumer_name, pending.clone());
            logs.push(claim_record(key, group_name, group, id, &pending));
        }
    }
    if advanced {
        if let Some(group) = stream.groups.get(&group_name[..]) {
            logs.push(setid_record(key, group_name, group));
        }
    }
    Frame::Array(out)
}

/// The word `xread` puts after the command name of a registered blocked read to remember the
/// client's protocol (the reply's shape differs: a map in RESP3). Not a valid option, so a
/// client cannot send it; it precedes STREAMS, so the keys are found as in the client's command.
const RESP3_MARK: &[u8] = b"\0resp3";
const RESP2_MARK: &[u8] = b"\0resp2";

/// Offers `key`, which got data, to the blocked XREAD / XREADGROUP `args` (as registered by
/// `xread`); `None` leaves it blocked.
pub fn serve_blocked(txn: &mut Txn<'_>, key: &Bytes, args: &[Bytes]) -> Option<Frame> {
    let mark = args.get(1)?;
    let resp3 = &mark[..] == RESP3_MARK;
    if !resp3 && &mark[..] != RESP2_MARK {
        return None;
    }
    let mut unmarked = Vec::with_capacity(args.len() - 1);
    unmarked.push(args[0].clone());
    unmarked.extend_from_slice(&args[2..]);
    let read = parse_read(&unmarked).ok()?;
    let index = read.keys.iter().position(|k| k == key)?;
    match stream_mut(txn, key) {
        Ok(Some(_)) => {}
        _ => return None,
    }
    if let Some((group, _)) = read.group {
        let exists =
            matches!(stream_mut(txn, key), Ok(Some(s)) if s.groups.contains_key(&group[..]));
        if !exists {
            return Some(nogroup(
                "the consumer group this client was blocked on no longer exists".to_string(),
            ));
        }
    }
    let from = match &read.ids[index][..] {
        b">" => From::New,
        id => From::After(strict_id(id).ok()?),
    };
    let count = if read.count == 0 {
        BLOCKED_DEFAULT_COUNT
    } else {
        read.count
    };
    let now = txn.now_ms();
    let entries = serve_stream(txn, key, from, &read, count, now, true)?;
    Some(reply(resp3, vec![(key.clone(), entries)]))
}

/// Serves one stream of a read if there is something to serve, returning its entries array.
/// A plain read serves when the stream has entries after its ID (the last entry for a client
/// reading now, the last generated ID for a blocked one, as Redis); a group read always serves
/// history, and `>` when the stream has entries past the group's last ID. The consumer is created
/// (and seen) whether or not anything is served.
fn serve_stream(
    txn: &mut Txn<'_>,
    key: &Bytes,
    from: From,
    read: &ReadArgs<'_>,
    count: usize,
    now: u64,
    blocked: bool,
) -> Option<Frame> {
    let stream = stream_mut(txn, key).ok()??;
    let top = if blocked {
        stream.last_id
    } else {
        stream.last_entry().map_or(StreamId::MIN, |(id, _)| *id)
    };
    let has_entries = blocked || !stream.is_empty();
    let Some((group_name, consumer_name)) = read.group else {
        let From::After(after) = from else {
            return None;
        };
        if !has_entries || top <= after {
            return None;
        }
        let start = after.incr()?;
        let limit = if count == 0 { usize::MAX } else { count };
        return Some(Frame::Array(
            stream
                .range(start, StreamId::MAX)
                .take(limit)
                .map(|(id, f)| entry_frame(*id, f))
                .collect(),
        ));
    };
    let mut logs = Vec::new();
    let group = stream.groups.get_mut(&group_name[..])?;
    let serve = match from {
        From::After(_) => true,
        From::New => has_entries && top > group.last_id,
    };
    let (consumer, created) = group.consumer_or_create(consumer_name, now);
    consumer.seen_time = now;
    if created {
        logs.push(vec![
            b("XGROUP"),
            b("CREATECONSUMER"),
            key.clone(),
            group_name.clone(),
            consumer_name.clone(),
        ]);
    }
    let frame = match (serve, from) {
        (false, _) => None,
        (true, From::After(after)) => Some(history(
            stream,
            group_name,
            consumer_name,
            after,
            count,
            now,
            key,
            &mut logs,
        )),
        (true, From::New) => Some(deliver_new(
            stream,
            group_name,
            consumer_name,
            count,
            read.noack,
            now,
            key,
            &mut logs,
        )),
    };
    for record in &logs {
        txn.log(record);
    }
    frame
}
