//! List commands: LPUSH RPUSH LPUSHX RPUSHX LPOP RPOP LLEN LRANGE LINDEX LSET LINSERT LREM LTRIM
//! LPOS LMOVE RPOPLPUSH LMPOP, and the blocking BLPOP BRPOP BLMOVE BRPOPLPUSH BLMPOP, with Redis
//! 7.0's argument rules, error texts and RESP2/RESP3 nulls.
//!
//! A list that becomes empty is deleted (Redis never keeps an empty list), which is what lets the
//! blocking registry treat "a key was inserted" as "a key got data". Writes are logged as commands
//! that replay to the same state: a pop as the LPOP / RPOP / LMOVE it did, never the blocking form.
//! A blocking command that finds no data leaves a `Blocked` in the session for the connection to
//! await; a writer that later gives one of its keys data serves it through `serve_blocked`, under
//! the slot's lock, in the order clients blocked.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use tessera_proto::command;
use tessera_proto::resp::Frame;
use tessera_proto::slot::key_hash_slot;

use super::dispatch::DispatchEntry;
use super::parse::{self, err, parse_i64, ERR_NOT_INTEGER, ERR_SYNTAX, ERR_WRONGTYPE};
use super::{ClientSession, Ctx, Txn};
use crate::keyspace::{blocking, Entry, EntryRef, Value, ValueMut, ValueRef};

const ERR_POSITIVE: &str = "ERR value is out of range, must be positive";
const ERR_CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

fn b(text: &'static str) -> Bytes {
    Bytes::from_static(text.as_bytes())
}

/// Which end of a list: LEFT is the head (index 0), RIGHT the tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Left,
    Right,
}

impl End {
    fn word(self) -> Bytes {
        match self {
            End::Left => b("LEFT"),
            End::Right => b("RIGHT"),
        }
    }

    fn pop_command(self) -> Bytes {
        match self {
            End::Left => b("LPOP"),
            End::Right => b("RPOP"),
        }
    }
}

/// RPOPLPUSH's ends: from the tail to the head.
pub const RPOPLPUSH: Option<(End, End)> = Some((End::Right, End::Left));

/// LEFT / RIGHT in any case, else `ERR syntax error` (Redis's getListPositionFromObjectOrReply).
fn parse_end(arg: &[u8]) -> Result<End, Frame> {
    if parse::eq(arg, "left") {
        Ok(End::Left)
    } else if parse::eq(arg, "right") {
        Ok(End::Right)
    } else {
        Err(err(ERR_SYNTAX))
    }
}

/// The list at `key` for a read (counts a hit or miss): `Ok(None)` when absent.
fn read_list<'t>(txn: &'t mut Txn<'_>, key: &[u8]) -> Result<Option<&'t VecDeque<Bytes>>, Frame> {
    match txn.read(key) {
        None => Ok(None),
        Some(entry) => match entry.value {
            ValueRef::List(list) => Ok(Some(list)),
            _ => Err(err(ERR_WRONGTYPE)),
        },
    }
}

/// The list at `key` to change (Redis's lookupKeyWrite: no hit/miss counting).
fn list_mut<'t>(
    txn: &'t mut Txn<'_>,
    key: &[u8],
) -> Result<Option<&'t mut VecDeque<Bytes>>, Frame> {
    match txn.live(key) {
        None => return Ok(None),
        Some(entry) if !matches!(entry.value, ValueRef::List(_)) => return Err(err(ERR_WRONGTYPE)),
        Some(_) => {}
    }
    match txn.value_mut(key) {
        Some(ValueMut::List(list)) => Ok(Some(list)),
        _ => Ok(None),
    }
}

/// Deletes `key` if its list became empty.
fn drop_if_empty(txn: &mut Txn<'_>, key: &[u8]) {
    if matches!(txn.get(key), Some(EntryRef { value: ValueRef::List(list), .. }) if list.is_empty())
    {
        txn.remove(key);
    }
}

/// The list at `key`, created empty when absent (the caller fills it before the lock is released).
fn list_or_create<'t>(txn: &'t mut Txn<'_>, key: &[u8]) -> Result<&'t mut VecDeque<Bytes>, Frame> {
    if list_mut(txn, key)?.is_none() {
        txn.insert(
            Bytes::copy_from_slice(key),
            Entry::new(Value::List(Box::default()), None),
        );
    }
    list_mut(txn, key)?.ok_or_else(|| err(ERR_WRONGTYPE))
}

fn pop_end(list: &mut VecDeque<Bytes>, end: End) -> Option<Bytes> {
    match end {
        End::Left => list.pop_front(),
        End::Right => list.pop_back(),
    }
}

fn push_end(list: &mut VecDeque<Bytes>, end: End, value: Bytes) {
    match end {
        End::Left => list.push_front(value),
        End::Right => list.push_back(value),
    }
}

/// Pops up to `count` elements from `end` of the list at `key` (which must exist), deleting it
/// when emptied; in pop order.
fn pop_many(txn: &mut Txn<'_>, key: &[u8], end: End, count: usize) -> Vec<Bytes> {
    let mut popped = Vec::new();
    if let Ok(Some(list)) = list_mut(txn, key) {
        let n = count.min(list.len());
        popped.reserve(n);
        for _ in 0..n {
            if let Some(value) = pop_end(list, end) {
                popped.push(value);
            }
        }
    }
    drop_if_empty(txn, key);
    popped
}

/// Every key of a multi-key list command must share one slot: one lock covers them. The cluster
/// check already guarantees it for clients; this keeps a stray call from reading the wrong table.
fn same_slot(keys: &[Bytes]) -> Result<(), Frame> {
    let mut slots = keys.iter().map(|k| key_hash_slot(k));
    let first = slots.next();
    if slots.any(|s| Some(s) != first) {
        return Err(err(ERR_CROSSSLOT));
    }
    Ok(())
}

/// Normalizes a possibly negative index against `len`; `None` when outside the list.
fn index_in(index: i64, len: usize) -> Option<usize> {
    let len = len as i64;
    let i = if index < 0 { len + index } else { index };
    (0..len).contains(&i).then_some(i as usize)
}

/// Redis's range rule for LRANGE / LTRIM: `Some((start, end))` inclusive, `None` when empty.
fn range_in(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut start = if start < 0 { len + start } else { start };
    let mut end = if end < 0 { len + end } else { end };
    if start < 0 {
        start = 0;
    }
    if start > end || start >= len {
        return None;
    }
    if end >= len {
        end = len - 1;
    }
    Some((start as usize, end as usize))
}

fn int_arg(arg: &[u8]) -> Result<i64, Frame> {
    parse_i64(arg).ok_or_else(|| err(ERR_NOT_INTEGER))
}

fn bulks(values: impl IntoIterator<Item = Bytes>) -> Frame {
    Frame::Array(values.into_iter().map(Frame::Bulk).collect())
}

// ---------------------------------------------------------------------------------------------
// Pushes and pops

/// LPUSH / RPUSH (`only_existing` false) and LPUSHX / RPUSHX (true).
pub fn push(ctx: &Ctx<'_>, args: &[Bytes], end: End, only_existing: bool) -> Frame {
    let key = &args[1];
    let mut txn = ctx.lock(key);
    let exists = match list_mut(&mut txn, key) {
        Ok(list) => list.is_some(),
        Err(e) => return e,
    };
    if !exists && only_existing {
        return Frame::Integer(0);
    }
    let list = match list_or_create(&mut txn, key) {
        Ok(list) => list,
        Err(e) => return e,
    };
    for value in &args[2..] {
        push_end(list, end, Bytes::copy_from_slice(value));
    }
    let len = list.len() as i64;
    txn.log(args);
    Frame::Integer(len)
}

/// LPOP / RPOP key [count].
pub fn pop(ctx: &Ctx<'_>, args: &[Bytes], end: End) -> Frame {
    if args.len() > 3 {
        let name = if end == End::Left { "lpop" } else { "rpop" };
        return Frame::error(command::arity_error(name));
    }
    let count = match args.get(2) {
        None => None,
        Some(arg) => match parse_i64(arg) {
            Some(n) if n >= 0 => Some(n as usize),
            _ => return err(ERR_POSITIVE),
        },
    };
    let key = &args[1];
    let mut txn = ctx.lock(key);
    match list_mut(&mut txn, key) {
        Err(e) => return e,
        Ok(None) if count.is_some() => return Frame::NullArray,
        Ok(None) => return Frame::Null,
        Ok(Some(_)) => {}
    }
    match count {
        Some(0) => Frame::Array(Vec::new()),
        None => {
            let popped = pop_many(&mut txn, key, end, 1);
            txn.log(args);
            popped.into_iter().next().map_or(Frame::Null, Frame::Bulk)
        }
        Some(n) => {
            let popped = pop_many(&mut txn, key, end, n);
            txn.log(args);
            bulks(popped)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reads

pub fn llen(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    match read_list(&mut txn, &args[1]) {
        Ok(list) => Frame::Integer(list.map_or(0, |l| l.len() as i64)),
        Err(e) => e,
    }
}

/// LINDEX key index: the key is looked up before the index is parsed, as Redis does.
pub fn lindex(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    let list = match read_list(&mut txn, &args[1]) {
        Ok(Some(list)) => list,
        Ok(None) => return Frame::Null,
        Err(e) => return e,
    };
    let index = match int_arg(&args[2]) {
        Ok(i) => i,
        Err(e) => return e,
    };
    index_in(index, list.len())
        .and_then(|i| list.get(i))
        .map_or(Frame::Null, |v| Frame::Bulk(v.clone()))
}

/// LRANGE key start stop: indexes are parsed before the key is looked up.
pub fn lrange(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let (start, stop) = match (int_arg(&args[2]), int_arg(&args[3])) {
        (Ok(start), Ok(stop)) => (start, stop),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let mut txn = ctx.lock(&args[1]);
    let list = match read_list(&mut txn, &args[1]) {
        Ok(Some(list)) => list,
        Ok(None) => return Frame::Array(Vec::new()),
        Err(e) => return e,
    };
    match range_in(start, stop, list.len()) {
        None => Frame::Array(Vec::new()),
        Some((from, to)) => bulks(list.range(from..=to).cloned()),
    }
}

/// LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len].
pub fn lpos(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut rank: i64 = 1;
    let mut count: Option<usize> = None;
    let mut maxlen: usize = 0;
    let mut i = 3;
    while i < args.len() {
        let opt = &args[i];
        let more = i + 1 < args.len();
        if parse::eq(opt, "rank") && more {
            i += 1;
            rank = match parse_i64(&args[i]) {
                Some(r) => r,
                None => return err(ERR_NOT_INTEGER),
            };
            if rank == 0 {
                return err(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the \
                     second ... or use negative to start from the end of the list",
                );
            }
        } else if parse::eq(opt, "count") && more {
            i += 1;
            count = match parse_i64(&args[i]) {
                Some(n) if n >= 0 => Some(n as usize),
                _ => return err("ERR COUNT can't be negative"),
            };
        } else if parse::eq(opt, "maxlen") && more {
            i += 1;
            maxlen = match parse_i64(&args[i]) {
                Some(n) if n >= 0 => n as usize,
                _ => return err("ERR MAXLEN can't be negative"),
            };
        } else {
            return err(ERR_SYNTAX);
        }
        i += 1;
    }
    let from_tail = rank < 0;
    // Redis negates a negative rank in a C long: LONG_MIN stays negative, so every match counts
    // and the COUNT limit (computed from it) never triggers.
    let wrapped = rank == i64::MIN;
    let rank = if wrapped {
        0
    } else {
        rank.unsigned_abs() as usize
    };
    let mut txn = ctx.lock(&args[1]);
    let list = match read_list(&mut txn, &args[1]) {
        Ok(Some(list)) => list,
        Ok(None) if count.is_some() => return Frame::Array(Vec::new()),
        Ok(None) => return Frame::Null,
        Err(e) => return e,
    };
    let element = &args[2][..];
    let len = list.len();
    let limit = if maxlen == 0 { len } else { maxlen.min(len) };
    let mut matches = 0usize;
    let mut found = Vec::new();
    for step in 0..limit {
        let index = if from_tail { len - 1 - step } else { step };
        if list[index] != element {
            continue;
        }
        matches += 1;
        if matches < rank {
            continue;
        }
        found.push(Frame::Integer(index as i64));
        match count {
            None => break,
            Some(n) if n != 0 && !wrapped && found.len() >= n => break,
            Some(_) => {}
        }
    }
    match count {
        Some(_) => Frame::Array(found),
        None => found.into_iter().next().unwrap_or(Frame::Null),
    }
}

// ---------------------------------------------------------------------------------------------
// In-place changes

/// LSET key index element.
pub fn lset(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let mut txn = ctx.lock(key);
    let list = match list_mut(&mut txn, key) {
        Ok(Some(list)) => list,
        Ok(None) => return err("ERR no such key"),
        Err(e) => return e,
    };
    let index = match int_arg(&args[2]) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let Some(slot) = index_in(index, list.len()).and_then(|i| list.get_mut(i)) else {
        return err("ERR index out of range");
    };
    *slot = Bytes::copy_from_slice(&args[3]);
    txn.log(args);
    Frame::ok()
}

/// LINSERT key BEFORE|AFTER pivot element.
pub fn linsert(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let after = if parse::eq(&args[2], "after") {
        true
    } else if parse::eq(&args[2], "before") {
        false
    } else {
        return err(ERR_SYNTAX);
    };
    let key = &args[1];
    let mut txn = ctx.lock(key);
    let list = match list_mut(&mut txn, key) {
        Ok(Some(list)) => list,
        Ok(None) => return Frame::Integer(0),
        Err(e) => return e,
    };
    let Some(pivot) = list.iter().position(|v| v[..] == args[3][..]) else {
        return Frame::Integer(-1);
    };
    let at = if after { pivot + 1 } else { pivot };
    list.insert(at, Bytes::copy_from_slice(&args[4]));
    let len = list.len() as i64;
    txn.log(args);
    Frame::Integer(len)
}

/// LREM key count element: count > 0 from the head, < 0 from the tail, 0 all.
pub fn lrem(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let count = match int_arg(&args[2]) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let key = &args[1];
    let mut txn = ctx.lock(key);
    let list = match list_mut(&mut txn, key) {
        Ok(Some(list)) => list,
        Ok(None) => return Frame::Integer(0),
        Err(e) => return e,
    };
    let element = &args[3][..];
    // Redis negates a negative count in a C long: LONG_MIN stays negative and never matches the
    // number removed, so it removes every match.
    let limit = match count {
        0 | i64::MIN => usize::MAX,
        n => n.unsigned_abs() as usize,
    };
    let mut removed = 0usize;
    if count < 0 {
        let mut i = list.len();
        while i > 0 && removed < limit {
            i -= 1;
            if list[i] == element {
                list.remove(i);
                removed += 1;
            }
        }
    } else {
        let mut i = 0;
        while i < list.len() && removed < limit {
            if list[i] == element {
                list.remove(i);
                removed += 1;
            } else {
                i += 1;
            }
        }
    }
    if removed > 0 {
        drop_if_empty(&mut txn, key);
        txn.log(args);
    }
    Frame::Integer(removed as i64)
}

/// LTRIM key start stop.
pub fn ltrim(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let (start, stop) = match (int_arg(&args[2]), int_arg(&args[3])) {
        (Ok(start), Ok(stop)) => (start, stop),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let key = &args[1];
    let mut txn = ctx.lock(key);
    let list = match list_mut(&mut txn, key) {
        Ok(Some(list)) => list,
        Ok(None) => return Frame::ok(),
        Err(e) => return e,
    };
    let len = list.len();
    let removed = match range_in(start, stop, len) {
        None => {
            list.clear();
            len
        }
        Some((from, to)) => {
            list.truncate(to + 1);
            list.drain(..from);
            len - list.len()
        }
    };
    if removed > 0 {
        drop_if_empty(&mut txn, key);
        txn.log(args);
    }
    Frame::ok()
}

// ---------------------------------------------------------------------------------------------
// Moves

/// Pops from `src`'s `from` end and pushes onto `dst`'s `to` end: `Ok(None)` when `src` is
/// absent; WRONGTYPE when either is not a list (nothing moved). Not logged here.
fn move_one(
    txn: &mut Txn<'_>,
    src: &[u8],
    dst: &[u8],
    from: End,
    to: End,
) -> Result<Option<Bytes>, Frame> {
    if list_mut(txn, src)?.is_none() {
        return Ok(None);
    }
    list_mut(txn, dst)?;
    let Some(value) = list_mut(txn, src)?.and_then(|list| pop_end(list, from)) else {
        return Ok(None);
    };
    // Push before deleting an emptied source, so LMOVE k k on one element keeps it.
    push_end(list_or_create(txn, dst)?, to, value.clone());
    drop_if_empty(txn, src);
    Ok(Some(value))
}

/// What a move logs: LMOVE src dst FROM TO, or RPOPLPUSH src dst for the RPOPLPUSH family.
fn log_move(txn: &Txn<'_>, src: &Bytes, dst: &Bytes, from: End, to: End, rpoplpush: bool) {
    if rpoplpush {
        txn.log(&[b("RPOPLPUSH"), src.clone(), dst.clone()]);
    } else {
        txn.log(&[b("LMOVE"), src.clone(), dst.clone(), from.word(), to.word()]);
    }
}

/// LMOVE src dst LEFT|RIGHT LEFT|RIGHT, and RPOPLPUSH src dst (`ends` given).
pub fn lmove(ctx: &Ctx<'_>, args: &[Bytes], ends: Option<(End, End)>) -> Frame {
    let (from, to) = match ends {
        Some(ends) => ends,
        None => match (parse_end(&args[3]), parse_end(&args[4])) {
            (Ok(from), Ok(to)) => (from, to),
            (Err(e), _) | (_, Err(e)) => return e,
        },
    };
    let (src, dst) = (&args[1], &args[2]);
    if let Err(e) = same_slot(&args[1..3]) {
        return e;
    }
    let mut txn = ctx.lock(src);
    match move_one(&mut txn, src, dst, from, to) {
        Ok(Some(value)) => {
            log_move(&txn, src, dst, from, to, ends.is_some());
            Frame::Bulk(value)
        }
        Ok(None) => Frame::Null,
        Err(e) => e,
    }
}

/// LMPOP / BLMPOP's arguments after the command name (and BLMPOP's timeout).
struct MultiPop {
    /// Index of the first key in `args`, and how many keys.
    first_key: usize,
    numkeys: usize,
    end: End,
    count: usize,
}

/// Parses `numkeys key... LEFT|RIGHT [COUNT n]` starting at `args[numkeys_at]`, with Redis's
/// errors in its order.
fn parse_multi_pop(args: &[Bytes], numkeys_at: usize) -> Result<MultiPop, Frame> {
    let numkeys = match parse_i64(&args[numkeys_at]) {
        Some(n) if n >= 1 => n as u64,
        _ => return Err(err("ERR numkeys should be greater than 0")),
    };
    let where_at = (numkeys_at as u64)
        .saturating_add(numkeys)
        .saturating_add(1);
    if where_at >= args.len() as u64 {
        return Err(err(ERR_SYNTAX));
    }
    let where_at = where_at as usize;
    let end = parse_end(&args[where_at])?;
    let mut count = None;
    let mut j = where_at + 1;
    while j < args.len() {
        let more = j + 1 < args.len();
        if count.is_none() && parse::eq(&args[j], "count") && more {
            j += 1;
            count = match parse_i64(&args[j]) {
                Some(n) if n >= 1 => Some(n as usize),
                _ => return Err(err("ERR count should be greater than 0")),
            };
        } else {
            return Err(err(ERR_SYNTAX));
        }
        j += 1;
    }
    Ok(MultiPop {
        first_key: numkeys_at + 1,
        numkeys: numkeys as usize,
        end,
        count: count.unwrap_or(1),
    })
}

/// Pops from the first non-empty list among `keys`, logging `LPOP key n`; `Ok(None)` when all are
/// absent; WRONGTYPE at the first key of another type, as Redis checks them in order.
fn multi_pop(
    txn: &mut Txn<'_>,
    keys: &[Bytes],
    end: End,
    count: usize,
) -> Result<Option<Frame>, Frame> {
    for key in keys {
        if list_mut(txn, key)?.is_none() {
            continue;
        }
        let popped = pop_many(txn, key, end, count);
        txn.log(&[
            end.pop_command(),
            key.clone(),
            parse::int_bytes(popped.len() as i64),
        ]);
        return Ok(Some(Frame::Array(vec![
            Frame::Bulk(key.clone()),
            bulks(popped),
        ])));
    }
    Ok(None)
}

/// LMPOP numkeys key... LEFT|RIGHT [COUNT count].
pub fn lmpop(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let spec = match parse_multi_pop(args, 1) {
        Ok(spec) => spec,
        Err(e) => return e,
    };
    let keys = &args[spec.first_key..spec.first_key + spec.numkeys];
    if let Err(e) = same_slot(keys) {
        return e;
    }
    let mut txn = ctx.lock(&keys[0]);
    match multi_pop(&mut txn, keys, spec.end, spec.count) {
        Ok(Some(reply)) => reply,
        Ok(None) => Frame::NullArray,
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------------
// Blocking forms

/// A blocking command's timeout (`None`: wait forever), read by the shared rule
/// (`command::parse_timeout`) the proxy applies too.
pub fn parse_timeout(arg: &[u8]) -> Result<Option<Duration>, Frame> {
    command::parse_timeout(arg).map_err(|refused| Frame::error(refused.to_string()))
}

/// Blocks the client on `keys` (their slot's lock held by `txn`, every key found without data)
/// and returns what a timeout answers, which the connection sends if nobody serves it. When the
/// client may not block (AOF replay, a detached session), answers `deny` at once, as Redis does
/// for a client with CLIENT_DENY_BLOCKING. Not list-specific: the sorted-set blocking commands
/// (BZPOPMIN, ...) block through it too, and add their serving to `cmd::serve_blocked`.
pub fn block(
    txn: &Txn<'_>,
    session: &mut ClientSession,
    keys: &[Bytes],
    args: &[Bytes],
    timeout: Option<Duration>,
    deny: Frame,
) -> Frame {
    if session.deny_blocking {
        return deny;
    }
    let deadline = timeout.and_then(|t| tokio::time::Instant::now().checked_add(t));
    session.blocked = Some(blocking::block(
        txn.blocking(),
        txn.slot(),
        keys,
        args,
        deadline,
        Frame::NullArray,
    ));
    Frame::NullArray
}

/// BLPOP / BRPOP key... timeout.
pub fn blpop(ctx: &Ctx<'_>, session: &mut ClientSession, args: &[Bytes], end: End) -> Frame {
    let timeout = match parse_timeout(&args[args.len() - 1]) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let keys = &args[1..args.len() - 1];
    if let Err(e) = same_slot(keys) {
        return e;
    }
    let mut txn = ctx.lock(&keys[0]);
    for key in keys {
        match list_mut(&mut txn, key) {
            Err(e) => return e,
            Ok(None) => continue,
            Ok(Some(_)) => {}
        }
        let popped = pop_many(&mut txn, key, end, 1);
        txn.log(&[end.pop_command(), key.clone()]);
        let value = popped.into_iter().next().unwrap_or_default();
        return bulks([key.clone(), value]);
    }
    block(&txn, session, keys, args, timeout, Frame::NullArray)
}

/// BLMPOP timeout numkeys key... LEFT|RIGHT [COUNT count].
pub fn blmpop(ctx: &Ctx<'_>, session: &mut ClientSession, args: &[Bytes]) -> Frame {
    let spec = match parse_multi_pop(args, 2) {
        Ok(spec) => spec,
        Err(e) => return e,
    };
    let timeout = match parse_timeout(&args[1]) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let keys = &args[spec.first_key..spec.first_key + spec.numkeys];
    if let Err(e) = same_slot(keys) {
        return e;
    }
    let mut txn = ctx.lock(&keys[0]);
    match multi_pop(&mut txn, keys, spec.end, spec.count) {
        Ok(Some(reply)) => reply,
        Ok(None) => block(&txn, session, keys, args, timeout, Frame::NullArray),
        Err(e) => e,
    }
}

/// BLMOVE src dst LEFT|RIGHT LEFT|RIGHT timeout, and BRPOPLPUSH src dst timeout (`ends` given).
pub fn blmove(
    ctx: &Ctx<'_>,
    session: &mut ClientSession,
    args: &[Bytes],
    ends: Option<(End, End)>,
) -> Frame {
    let (from, to, timeout_arg) = match ends {
        Some((from, to)) => (from, to, &args[3]),
        None => match (parse_end(&args[3]), parse_end(&args[4])) {
            (Ok(from), Ok(to)) => (from, to, &args[5]),
            (Err(e), _) | (_, Err(e)) => return e,
        },
    };
    let timeout = match parse_timeout(timeout_arg) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let (src, dst) = (&args[1], &args[2]);
    if let Err(e) = same_slot(&args[1..3]) {
        return e;
    }
    let mut txn = ctx.lock(src);
    match list_mut(&mut txn, src) {
        Err(e) => return e,
        Ok(None) => return block(&txn, session, &args[1..2], args, timeout, Frame::Null),
        Ok(Some(_)) => {}
    }
    match move_one(&mut txn, src, dst, from, to) {
        Ok(Some(value)) => {
            log_move(&txn, src, dst, from, to, ends.is_some());
            Frame::Bulk(value)
        }
        Ok(None) => Frame::Null,
        Err(e) => e,
    }
}

/// Offers `key`, which just got data, to the blocked list command `args` (see
/// `keyspace::blocking`): pops as the command would have, logs the pop, and returns its reply;
/// `None` when `key` is not a list now (the client keeps waiting, as in Redis 7.0) or `args` is
/// not a blocking list command. A BLMOVE whose destination is of another type is answered
/// WRONGTYPE and nothing moves.
pub fn serve_blocked(txn: &mut Txn<'_>, key: &Bytes, args: &[Bytes]) -> Option<Frame> {
    let name = args.first()?;
    if !matches!(list_mut(txn, key), Ok(Some(_))) {
        return None;
    }
    if parse::eq(name, "blpop") || parse::eq(name, "brpop") {
        let end = if parse::eq(name, "blpop") {
            End::Left
        } else {
            End::Right
        };
        let popped = pop_many(txn, key, end, 1);
        txn.log(&[end.pop_command(), key.clone()]);
        let value = popped.into_iter().next().unwrap_or_default();
        Some(bulks([key.clone(), value]))
    } else if parse::eq(name, "blmpop") {
        let spec = parse_multi_pop(args, 2).ok()?;
        multi_pop(txn, std::slice::from_ref(key), spec.end, spec.count)
            .ok()
            .flatten()
    } else if parse::eq(name, "blmove") || parse::eq(name, "brpoplpush") {
        let rpoplpush = parse::eq(name, "brpoplpush");
        let (from, to) = if rpoplpush {
            (End::Right, End::Left)
        } else {
            (parse_end(args.get(3)?).ok()?, parse_end(args.get(4)?).ok()?)
        };
        let dst = args.get(2)?;
        match move_one(txn, key, dst, from, to) {
            Ok(Some(value)) => {
                log_move(txn, key, dst, from, to, rpoplpush);
                Some(Frame::Bulk(value))
            }
            Ok(None) => None,
            Err(e) => Some(e),
        }
    } else {
        None
    }
}

/// The commands of this family, for the node's dispatch table (`cmd::dispatch`).
pub(super) const COMMANDS: &[DispatchEntry] = &[
    ("lpush", |ctx, _, args| push(ctx, args, End::Left, false)),
    ("rpush", |ctx, _, args| push(ctx, args, End::Right, false)),
    ("lpushx", |ctx, _, args| push(ctx, args, End::Left, true)),
    ("rpushx", |ctx, _, args| push(ctx, args, End::Right, true)),
    ("lpop", |ctx, _, args| pop(ctx, args, End::Left)),
    ("rpop", |ctx, _, args| pop(ctx, args, End::Right)),
    ("llen", |ctx, _, args| llen(ctx, args)),
    ("lindex", |ctx, _, args| lindex(ctx, args)),
    ("lrange", |ctx, _, args| lrange(ctx, args)),
    ("lpos", |ctx, _, args| lpos(ctx, args)),
    ("lset", |ctx, _, args| lset(ctx, args)),
    ("linsert", |ctx, _, args| linsert(ctx, args)),
    ("lrem", |ctx, _, args| lrem(ctx, args)),
    ("ltrim", |ctx, _, args| ltrim(ctx, args)),
    ("lmove", |ctx, _, args| lmove(ctx, args, None)),
    ("rpoplpush", |ctx, _, args| lmove(ctx, args, RPOPLPUSH)),
    ("lmpop", |ctx, _, args| lmpop(ctx, args)),
    ("blpop", |ctx, session, args| {
        blpop(ctx, session, args, End::Left)
    }),
    ("brpop", |ctx, session, args| {
        blpop(ctx, session, args, End::Right)
    }),
    ("blmpop", blmpop),
    ("blmove", |ctx, session, args| {
        blmove(ctx, session, args, None)
    }),
    ("brpoplpush", |ctx, session, args| {
        blmove(ctx, session, args, RPOPLPUSH)
    }),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::testing::{run, state};

    #[test]
    fn ranges_follow_redis() {
        assert_eq!(range_in(0, -1, 3), Some((0, 2)));
        assert_eq!(range_in(-100, 100, 3), Some((0, 2)));
        assert_eq!(range_in(2, 1, 3), None);
        assert_eq!(range_in(3, 5, 3), None);
        assert_eq!(range_in(i64::MIN, i64::MAX, 3), Some((0, 2)));
        assert_eq!(index_in(-1, 3), Some(2));
        assert_eq!(index_in(-4, 3), None);
        assert_eq!(index_in(3, 3), None);
    }

    #[test]
    fn empty_lists_are_deleted_and_pops_are_logged_forms() {
        let s = state();
        assert_eq!(run(&s, "RPUSH k a b c"), ":3\r\n");
        assert_eq!(run(&s, "LMOVE k k LEFT RIGHT"), "$1\r\na\r\n");
        assert_eq!(
            run(&s, "LRANGE k 0 -1"),
            "*3\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\na\r\n"
        );
        assert_eq!(run(&s, "LTRIM k 5 10"), "+OK\r\n");
        assert_eq!(run(&s, "EXISTS k"), ":0\r\n");
        // A detached session may not block: it answers as a timeout at once.
        assert_eq!(run(&s, "BLPOP k 0"), "*-1\r\n");
        assert_eq!(run(&s, "BLMOVE k {k}d LEFT LEFT 0"), "$-1\r\n");
        assert_eq!(s.keyspace.blocking().blocked_clients(), 0);
    }
}
