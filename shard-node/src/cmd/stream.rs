//! Stream commands: XADD XRANGE XREVRANGE XLEN XDEL XTRIM XSETID here; consumer groups (XGROUP,
//! XACK, XPENDING, XCLAIM, XAUTOCLAIM) in `group`, XREAD / XREADGROUP and their blocking forms in
//! `read`, XINFO in `info`; with Redis 7.0's argument rules, error texts and replies.
//!
//! A stream may exist empty (XTRIM, XDEL, XGROUP CREATE MKSTREAM leave one), as in Redis. Writes
//! are logged in a form that replays to the same state, as Redis propagates them: XADD with the ID
//! it generated and an approximate trim as the exact one it did, XREADGROUP and XAUTOCLAIM as the
//! XCLAIMs and XGROUP SETID that record what they delivered.

pub mod group;
pub mod id;
pub mod info;
pub mod read;

use bytes::Bytes;
use tessera_proto::resp::Frame;

use super::dispatch::DispatchEntry;
use super::parse::{self, err, parse_i64, ERR_NOT_INTEGER, ERR_SYNTAX, ERR_WRONGTYPE};
use super::{Ctx, Txn};
use crate::keyspace::stream::{Fields, Stream, StreamId, Trim};
use crate::keyspace::{Entry, Value, ValueMut, ValueRef};
use id::{parse_id, range_end, range_start, strict_id};

fn b(text: &'static str) -> Bytes {
    Bytes::from_static(text.as_bytes())
}

/// The stream at `key` for a read (counts a hit or miss): `Ok(None)` when absent.
pub(crate) fn read_stream<'t>(
    txn: &'t mut Txn<'_>,
    key: &[u8],
) -> Result<Option<&'t Stream>, Frame> {
    match txn.read(key) {
        None => Ok(None),
        Some(entry) => match entry.value {
            ValueRef::Stream(s) => Ok(Some(s)),
            _ => Err(err(ERR_WRONGTYPE)),
        },
    }
}

/// The stream at `key` to change (no hit/miss counting).
pub(crate) fn stream_mut<'t>(
    txn: &'t mut Txn<'_>,
    key: &[u8],
) -> Result<Option<&'t mut Stream>, Frame> {
    match txn.live(key) {
        None => return Ok(None),
        Some(entry) if !matches!(entry.value, ValueRef::Stream(_)) => {
            return Err(err(ERR_WRONGTYPE))
        }
        Some(_) => {}
    }
    match txn.value_mut(key) {
        Some(ValueMut::Stream(s)) => Ok(Some(s)),
        _ => Ok(None),
    }
}

/// The stream at `key`, created empty when absent.
pub(crate) fn stream_or_create<'t>(
    txn: &'t mut Txn<'_>,
    key: &[u8],
) -> Result<&'t mut Stream, Frame> {
    if stream_mut(txn, key)?.is_none() {
        txn.insert(
            Bytes::copy_from_slice(key),
            Entry::new(Value::Stream(Box::default()), None),
        );
    }
    stream_mut(txn, key)?.ok_or_else(|| err(ERR_WRONGTYPE))
}

/// One entry as Redis replies it: `[id, [field, value, ...]]`.
pub(crate) fn entry_frame(id: StreamId, fields: &Fields) -> Frame {
    Frame::Array(vec![
        Frame::Bulk(id.to_bytes()),
        Frame::Array(
            fields
                .iter()
                .map(|f| Frame::Bulk(Bytes::copy_from_slice(f)))
                .collect(),
        ),
    ])
}

pub(crate) fn id_frame(id: StreamId) -> Frame {
    Frame::Bulk(id.to_bytes())
}

/// `-NOGROUP No such key 'k' or consumer group 'g'` and its variants.
pub(crate) fn nogroup(text: String) -> Frame {
    Frame::error(format!("NOGROUP {text}"))
}

fn lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

// ---------------------------------------------------------------------------------------------
// XADD / XTRIM

/// The trimming and XADD options (Redis's streamAddTrimArgs).
#[derive(Debug, Default)]
struct AddTrimArgs {
    trim: Option<Trim>,
    approx: bool,
    limit: u64,
    /// Index of the MAXLEN / MINID value, and of its `~` / `=` when given.
    trim_arg: usize,
    approx_arg: Option<usize>,
    /// Index of the last LIMIT option given, dropped from the logged form.
    limit_arg: Option<usize>,
    id: Option<id::ParsedId>,
    no_mkstream: bool,
}

/// Parses XADD's (`xadd`) or XTRIM's options from `args[2]`; returns them and, for XADD, the
/// index of the ID argument. `obey` (replaying a log) drops LIMIT, as Redis does for its master
/// and its AOF.
fn parse_add_trim(args: &[Bytes], xadd: bool, obey: bool) -> Result<(AddTrimArgs, usize), Frame> {
    let mut out = AddTrimArgs::default();
    let mut limit: Option<i64> = None;
    let mut i = 2;
    while i < args.len() {
        let more = args.len() - 1 - i;
        let opt = &args[i];
        if xadd && &opt[..] == b"*" {
            break;
        } else if (parse::eq(opt, "maxlen") || parse::eq(opt, "minid")) && more > 0 {
            if out.trim.is_some() {
                return Err(err(
                    "ERR syntax error, MAXLEN and MINID options at the same time are not compatible",
                ));
            }
            out.approx = false;
            out.approx_arg = None;
            let next = &args[i + 1][..];
            if more >= 2 && (next == b"~" || next == b"=") {
                out.approx = next == b"~";
                out.approx_arg = Some(i + 1);
                i += 1;
            }
            let value = &args[i + 1];
            if parse::eq(opt, "maxlen") {
                let n = parse_i64(value).ok_or_else(|| err(ERR_NOT_INTEGER))?;
                if n < 0 {
                    return Err(err("ERR The MAXLEN argument must be >= 0."));
                }
                out.trim = Some(Trim::MaxLen(n as u64));
            } else {
                out.trim = Some(Trim::MinId(strict_id(value)?));
            }
            i += 1;
            out.trim_arg = i;
        } else if parse::eq(opt, "limit") && more > 0 {
            let n = parse_i64(&args[i + 1]).ok_or_else(|| err(ERR_NOT_INTEGER))?;
            if n < 0 {
                return Err(err("ERR The LIMIT argument must be >= 0."));
            }
            limit = Some(n);
            out.limit_arg = Some(i);
            i += 1;
        } else if xadd && parse::eq(opt, "nomkstream") {
            out.no_mkstream = true;
        } else if xadd {
            out.id = Some(parse_id(opt, 0, true, true)?);
            break;
        } else {
            return Err(err(ERR_SYNTAX));
        }
        i += 1;
    }
    if limit.is_some_and(|n| n != 0) && out.trim.is_none() {
        return Err(err(
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy",
        ));
    }
    if !xadd && out.trim.is_none() {
        return Err(err(
            "ERR syntax error, XTRIM must be called with a trimming strategy",
        ));
    }
    if obey {
        out.limit = 0;
    } else if let Some(n) = limit {
        if !out.approx {
            return Err(err(
                "ERR syntax error, LIMIT cannot be used without the special ~ option",
            ));
        }
        out.limit = n as u64;
    } else if out.approx {
        out.limit = 100 * u64::from(crate::keyspace::stream::NODE_MAX_ENTRIES);
    }
    Ok((out, i))
}

/// The logged form of a trimming command: an approximate trim becomes the exact one it did
/// (`=` and the length or first ID it left), without LIMIT, as Redis's
/// streamRewriteApproxSpecifier / streamRewriteTrimArgument.
fn exact_trim_args(args: &[Bytes], parsed: &AddTrimArgs, stream: &Stream) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(args.len());
    for (i, arg) in args.iter().enumerate() {
        if parsed.limit_arg.is_some_and(|at| i == at || i == at + 1) {
            continue;
        }
        if Some(i) == parsed.approx_arg {
            out.push(b("="));
        } else if i == parsed.trim_arg {
            out.push(match parsed.trim {
                Some(Trim::MaxLen(_)) => parse::int_bytes(stream.len() as i64),
                _ => stream.first_id().to_bytes(),
            });
        } else {
            out.push(arg.clone());
        }
    }
    out
}

/// XADD key [NOMKSTREAM] [MAXLEN|MINID [=|~] threshold [LIMIT count]] *|id field value ...
pub fn xadd(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let (parsed, id_pos) = match parse_add_trim(args, true, !ctx.propagate) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let field_pos = id_pos + 1;
    if args.len() < field_pos + 2 || (args.len() - field_pos) % 2 == 1 {
        return Frame::error(tessera_proto::command::arity_error("xadd"));
    }
    if let Some(p) = parsed.id {
        if p.seq_given && p.id.is_zero() {
            return err("ERR The ID specified in XADD must be greater than 0-0");
        }
    }
    let key = &args[1];
    let mut txn = ctx.lock(key);
    let existed = match stream_mut(&mut txn, key) {
        Ok(s) => s.is_some(),
        Err(e) => return e,
    };
    if !existed && parsed.no_mkstream {
        return Frame::Null;
    }
    let stream = match stream_or_create(&mut txn, key) {
        Ok(s) => s,
        Err(e) => return e,
    };
    if stream.last_id == StreamId::MAX {
        return err("ERR The stream has exhausted the last possible ID, unable to add more items");
    }
    let last = stream.last_id;
    let id = match parsed.id {
        None => {
            let now = ctx.now_ms;
            if now > last.ms {
                StreamId::new(now, 0)
            } else {
                // last is not MAX, so one of the parts can step.
                match last.incr() {
                    Some(id) => id,
                    None => return err("ERR The ID specified in XADD is equal or smaller than the target stream top item"),
                }
            }
        }
        Some(p) if !p.seq_given => {
            if p.id.ms == last.ms {
                if last.seq == u64::MAX {
                    // (Redis's streamAppendItem fails here without setting errno to EDOM.)
                    return err("ERR Elements are too large to be stored");
                }
                StreamId::new(last.ms, last.seq + 1)
            } else if p.id.ms > last.ms {
                StreamId::new(p.id.ms, 0)
            } else {
                return too_small(&mut txn, key, existed);
            }
        }
        Some(p) => {
            if p.id <= last {
                return too_small(&mut txn, key, existed);
            }
            p.id
        }
    };
    stream.append(id, &args[field_pos..]);
    if let Some(trim) = parsed.trim {
        stream.trim(trim, parsed.approx, parsed.limit);
    }
    let mut logged: Vec<Bytes> = if parsed.approx {
        exact_trim_args(args, &parsed, stream)
    } else {
        args.to_vec()
    };
    // The ID as generated (its index moves left by the LIMIT pair a rewrite dropped).
    let shift = args.len() - logged.len();
    logged[id_pos - shift] = id.to_bytes();
    if existed {
        txn.signal_ready(key);
    }
    txn.log(&logged);
    id_frame(id)
}

/// XADD's error for an ID not above the top one (a stream it created stays, as in Redis: only
/// 0-0 can fail on a new stream and that is refused before).
fn too_small(txn: &mut Txn<'_>, key: &[u8], existed: bool) -> Frame {
    if !existed {
        txn.remove(key);
    }
    err("ERR The ID specified in XADD is equal or smaller than the target stream top item")
}

/// XTRIM key MAXLEN|MINID [=|~] threshold [LIMIT count].
pub fn xtrim(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let (parsed, _) = match parse_add_trim(args, false, !ctx.propagate) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let key = &args[1];
    let mut txn = ctx.lock(key);
    let stream = match stream_mut(&mut txn, key) {
        Ok(Some(s)) => s,
        Ok(None) => return Frame::Integer(0),
        Err(e) => return e,
    };
    let Some(trim) = parsed.trim else {
        return Frame::Integer(0);
    };
    let removed = stream.trim(trim, parsed.approx, parsed.limit);
    if removed > 0 {
        let logged = if parsed.approx {
            exact_trim_args(args, &parsed, stream)
        } else {
            args.to_vec()
        };
        txn.log(&logged);
    }
    Frame::Integer(removed as i64)
}

// ---------------------------------------------------------------------------------------------
// Reads and deletes

/// XRANGE key start end [COUNT n] and XREVRANGE key end start [COUNT n].
pub fn xrange(ctx: &Ctx<'_>, args: &[Bytes], rev: bool) -> Frame {
    let (start_arg, end_arg) = if rev {
        (&args[3], &args[2])
    } else {
        (&args[2], &args[3])
    };
    let start = match range_start(start_arg) {
        Ok(id) => id,
        Err(e) => return e,
    };
    let end = match range_end(end_arg) {
        Ok(id) => id,
        Err(e) => return e,
    };
    let mut count: i64 = -1;
    let mut j = 4;
    while j < args.len() {
        if parse::eq(&args[j], "count") && j + 1 < args.len() {
            count = match parse_i64(&args[j + 1]) {
                Some(n) => n.max(0),
                None => return err(ERR_NOT_INTEGER),
            };
            j += 2;
        } else {
            return err(ERR_SYNTAX);
        }
    }
    let mut txn = ctx.lock(&args[1]);
    let stream = match read_stream(&mut txn, &args[1]) {
        Ok(Some(s)) => s,
        Ok(None) => return Frame::Array(Vec::new()),
        Err(e) => return e,
    };
    if count == 0 {
        return Frame::NullArray;
    }
    let limit = if count < 0 {
        usize::MAX
    } else {
        count as usize
    };
    let range = stream.range(start, end);
    let items: Vec<Frame> = if rev {
        range
            .rev()
            .take(limit)
            .map(|(id, f)| entry_frame(*id, f))
            .collect()
    } else {
        range
            .take(limit)
            .map(|(id, f)| entry_frame(*id, f))
            .collect()
    };
    Frame::Array(items)
}

pub fn xlen(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    match read_stream(&mut txn, &args[1]) {
        Ok(s) => Frame::Integer(s.map_or(0, |s| s.len() as i64)),
        Err(e) => e,
    }
}

/// XDEL key id...
pub fn xdel(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let mut txn = ctx.lock(key);
    match stream_mut(&mut txn, key) {
        Ok(Some(_)) => {}
        Ok(None) => return Frame::Integer(0),
        Err(e) => return e,
    }
    let mut ids = Vec::with_capacity(args.len() - 2);
    for arg in &args[2..] {
        match strict_id(arg) {
            Ok(id) => ids.push(id),
            Err(e) => return e,
        }
    }
    let Ok(Some(stream)) = stream_mut(&mut txn, key) else {
        return Frame::Integer(0);
    };
    let deleted = ids.into_iter().filter(|id| stream.delete(*id)).count();
    if deleted > 0 {
        txn.log(args);
    }
    Frame::Integer(deleted as i64)
}

/// XSETID key last-id [ENTRIESADDED n] [MAXDELETEDID id].
pub fn xsetid(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let id = match strict_id(&args[2]) {
        Ok(id) => id,
        Err(e) => return e,
    };
    let mut entries_added: i64 = -1;
    let mut max_deleted = StreamId::MIN;
    let mut i = 3;
    while i < args.len() {
        let more = i + 1 < args.len();
        if parse::eq(&args[i], "entriesadded") && more {
            entries_added = match parse_i64(&args[i + 1]) {
                Some(n) if n >= 0 => n,
                Some(_) => return err("ERR entries_added must be positive"),
                None => return err(ERR_NOT_INTEGER),
            };
        } else if parse::eq(&args[i], "maxdeletedid") && more {
            max_deleted = match strict_id(&args[i + 1]) {
                Ok(m) => m,
                Err(e) => return e,
            };
            if id < max_deleted {
                return err("ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id");
            }
        } else {
            return err(ERR_SYNTAX);
        }
        i += 2;
    }
    let key = &args[1];
    let mut txn = ctx.lock(key);
    let stream = match stream_mut(&mut txn, key) {
        Ok(Some(s)) => s,
        Ok(None) => return err("ERR no such key"),
        Err(e) => return e,
    };
    if id < stream.max_deleted_id {
        return err("ERR The ID specified in XSETID is smaller than current max_deleted_entry_id");
    }
    if let Some((&top, _)) = stream.last_entry() {
        if id < top {
            return err(
                "ERR The ID specified in XSETID is smaller than the target stream top item",
            );
        }
        if entries_added != -1 && stream.len() as i64 > entries_added {
            return err("ERR The entries_added specified in XSETID is smaller than the target stream length");
        }
    }
    stream.last_id = id;
    if entries_added != -1 {
        stream.entries_added = entries_added as u64;
    }
    if !max_deleted.is_zero() {
        stream.max_deleted_id = max_deleted;
    }
    txn.log(args);
    Frame::ok()
}

/// Offers `key`, which just got data, to a client blocked in XREAD / XREADGROUP (see `read`).
pub fn serve_blocked(txn: &mut Txn<'_>, key: &Bytes, args: &[Bytes]) -> Option<Frame> {
    read::serve_blocked(txn, key, args)
}

/// The commands of this family, for the node's dispatch table (`cmd::dispatch`).
pub(super) const COMMANDS: &[DispatchEntry] = &[
    ("xadd", |ctx, _, args| xadd(ctx, args)),
    ("xtrim", |ctx, _, args| xtrim(ctx, args)),
    ("xrange", |ctx, _, args| xrange(ctx, args, false)),
    ("xrevrange", |ctx, _, args| xrange(ctx, args, true)),
    ("xlen", |ctx, _, args| xlen(ctx, args)),
    ("xdel", |ctx, _, args| xdel(ctx, args)),
    ("xsetid", |ctx, _, args| xsetid(ctx, args)),
    ("xgroup", |ctx, _, args| group::xgroup(ctx, args)),
    ("xack", |ctx, _, args| group::xack(ctx, args)),
    ("xpending", |ctx, _, args| group::xpending(ctx, args)),
    ("xclaim", |ctx, _, args| group::xclaim(ctx, args)),
    ("xautoclaim", |ctx, _, args| group::xautoclaim(ctx, args)),
    ("xinfo", |ctx, _, args| info::xinfo(ctx, args)),
    ("xread", read::xread),
    ("xreadgroup", read::xread),
];
