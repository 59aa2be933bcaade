//! Set commands: SADD SREM SMEMBERS SISMEMBER SMISMEMBER SCARD SPOP SRANDMEMBER SMOVE SINTER
//! SINTERCARD SUNION SDIFF SINTERSTORE SUNIONSTORE SDIFFSTORE SSCAN, with Redis's errors, RESP3
//! shapes and propagation forms (random pops are logged as the SREM of what was popped).
//!
//! Members are stored as copies (`Bytes::copy_from_slice`), so a long-lived set never pins the
//! connection buffer its arguments were read from. A set left empty is deleted.

use std::collections::HashSet;

use bytes::Bytes;
use rand::Rng;
use tessera_proto::resp::Frame;
use tessera_proto::slot::key_hash_slot;

use super::dispatch::DispatchEntry;
use super::hash::{parse_random_count, parse_scan_options, pick_random, scan_buckets, scan_reply};
use super::keys::object::{intset_order, is_intset, string_to_i64, SET_MAX_INTSET_ENTRIES};
use super::parse::{self, err, ERR_SYNTAX, ERR_WRONGTYPE};
use super::{Ctx, Txn};
use crate::keyspace::{glob, Entry, EntryRef, SetValue, Value, ValueMut, ValueRef};
use tessera_proto::command::parse_cursor;

type Set = SetValue;

const ERR_CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

fn b(text: &'static str) -> Bytes {
    Bytes::from_static(text.as_bytes())
}

fn copy(arg: &[u8]) -> Bytes {
    Bytes::copy_from_slice(arg)
}

/// The set at `key` for a read (counts a hit or miss): `Ok(None)` when absent.
fn read_set<'t>(txn: &'t mut Txn<'_>, key: &[u8]) -> Result<Option<&'t Set>, Frame> {
    match txn.read(key) {
        None => Ok(None),
        Some(EntryRef {
            value: ValueRef::Set(s),
            ..
        }) => Ok(Some(s)),
        Some(_) => Err(err(ERR_WRONGTYPE)),
    }
}

/// The set at `key` for a write (no hit/miss counting): `Ok(None)` when absent.
fn lookup_write<'t>(txn: &'t mut Txn<'_>, key: &[u8]) -> Result<Option<&'t Set>, Frame> {
    match txn.live(key) {
        None => Ok(None),
        Some(EntryRef {
            value: ValueRef::Set(s),
            ..
        }) => Ok(Some(s)),
        Some(_) => Err(err(ERR_WRONGTYPE)),
    }
}

/// The existing set at `key`, to change in place: `Ok(None)` when absent.
fn existing_set_mut<'t>(txn: &'t mut Txn<'_>, key: &[u8]) -> Result<Option<&'t mut Set>, Frame> {
    if lookup_write(txn, key)?.is_none() {
        return Ok(None);
    }
    match txn.value_mut(key) {
        Some(ValueMut::Set(s)) => Ok(Some(s)),
        _ => Err(err(ERR_WRONGTYPE)),
    }
}

/// The set at `key` to add to, created empty when absent.
fn write_set<'t>(txn: &'t mut Txn<'_>, key: &[u8]) -> Result<&'t mut Set, Frame> {
    if lookup_write(txn, key)?.is_none() {
        txn.insert(copy(key), Entry::new(Value::Set(Box::default()), None));
    }
    match txn.value_mut(key) {
        Some(ValueMut::Set(s)) => Ok(s),
        _ => Err(err(ERR_WRONGTYPE)),
    }
}

/// Deletes `key` when its set is empty (Redis never keeps empty collections).
fn drop_if_empty(txn: &mut Txn<'_>, key: &[u8]) {
    if matches!(txn.get(key), Some(EntryRef { value: ValueRef::Set(s), .. }) if s.is_empty()) {
        txn.remove(key);
    }
}

fn bulks<'a>(members: impl Iterator<Item = &'a Bytes>) -> Vec<Frame> {
    members.map(|m| Frame::Bulk(m.clone())).collect()
}

pub fn sadd(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let mut txn = ctx.lock(key);
    let set = match write_set(&mut txn, key) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let mut added = 0;
    for member in &args[2..] {
        if !set.contains(member) {
            set.insert(copy(member));
            note_conversion(set, member);
            added += 1;
        }
    }
    if added > 0 {
        txn.log(args);
    }
    Frame::Integer(added)
}

pub fn srem(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let mut txn = ctx.lock(key);
    let set = match existing_set_mut(&mut txn, key) {
        Ok(Some(s)) => s,
        Ok(None) => return Frame::Integer(0),
        Err(e) => return e,
    };
    let removed = args[2..].iter().filter(|m| set.remove(m).is_some()).count() as i64;
    if removed > 0 {
        drop_if_empty(&mut txn, key);
        txn.log(args);
    }
    Frame::Integer(removed)
}

pub fn smembers(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    match read_set(&mut txn, &args[1]) {
        Ok(s) => Frame::Set(s.map_or_else(Vec::new, |s| bulks(s.iter()))),
        Err(e) => e,
    }
}

pub fn sismember(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    match read_set(&mut txn, &args[1]) {
        Ok(s) => Frame::Integer(i64::from(s.is_some_and(|s| s.contains(&args[2])))),
        Err(e) => e,
    }
}

pub fn smismember(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    match read_set(&mut txn, &args[1]) {
        Ok(s) => Frame::Array(
            args[2..]
                .iter()
                .map(|m| Frame::Integer(i64::from(s.is_some_and(|s| s.contains(m)))))
                .collect(),
        ),
        Err(e) => e,
    }
}

pub fn scard(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    match read_set(&mut txn, &args[1]) {
        Ok(s) => Frame::Integer(s.map_or(0, |s| s.len() as i64)),
        Err(e) => e,
    }
}

/// A uniformly chosen member of a non-empty set.
fn random_member(set: &Set, rng: &mut impl Rng) -> Option<Bytes> {
    if set.is_empty() {
        return None;
    }
    set.iter().nth(rng.random_range(0..set.len())).cloned()
}

/// How far into a set's iteration order SPOP looks for its picks. A hash table has no O(1)
/// random access, and a pop that walked the whole set would make draining it quadratic; the
/// iteration order is already a permutation keyed by the set's own random hasher seed, so a
/// random pick among its first members is unpredictable at a bounded cost (Redis's own random
/// pick is not exactly uniform either).
const POP_WINDOW: usize = 256;

/// `count` distinct members to pop (count < set size), at a cost of O(count + POP_WINDOW).
fn pop_picks(set: &Set, count: usize, rng: &mut impl Rng) -> Vec<Bytes> {
    let window: Vec<&Bytes> = set.iter().take(count.saturating_add(POP_WINDOW)).collect();
    pick_random(&window, count as i64, rng)
        .into_iter()
        .cloned()
        .collect()
}

/// SPOP key [count]. Logged as the SREM of the popped members (DEL when all went), so replay
/// removes exactly what was returned.
pub fn spop(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    match args.len() {
        2 => {}
        3 => return spop_count(ctx, args),
        _ => return err(ERR_SYNTAX),
    }
    let key = &args[1];
    let mut txn = ctx.lock(key);
    let set = match existing_set_mut(&mut txn, key) {
        Ok(Some(s)) => s,
        Ok(None) => return Frame::Null,
        Err(e) => return e,
    };
    let Some(member) = pop_picks(set, 1, &mut rand::rng()).pop() else {
        return Frame::Null;
    };
    set.remove(&member);
    drop_if_empty(&mut txn, key);
    txn.log(&[b("SREM"), key.clone(), member.clone()]);
    Frame::Bulk(member)
}

fn spop_count(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let count = match parse::parse_i64(&args[2]) {
        Some(n) if n >= 0 => n,
        _ => return err("ERR value is out of range, must be positive"),
    };
    let key = &args[1];
    let mut txn = ctx.lock(key);
    let set = match existing_set_mut(&mut txn, key) {
        Ok(Some(s)) => s,
        Ok(None) => return Frame::Set(Vec::new()),
        Err(e) => return e,
    };
    if count == 0 {
        return Frame::Set(Vec::new());
    }
    if count as u64 >= set.len() as u64 {
        let all: Vec<Bytes> = set.drain().collect();
        txn.remove(key);
        txn.log(&[b("DEL"), key.clone()]);
        return Frame::Set(all.into_iter().map(Frame::Bulk).collect());
    }
    let picked = pop_picks(set, count as usize, &mut rand::rng());
    for member in &picked {
        set.remove(member);
    }
    let mut logged = Vec::with_capacity(picked.len() + 2);
    logged.push(b("SREM"));
    logged.push(key.clone());
    logged.extend(picked.iter().cloned());
    txn.log(&logged);
    Frame::Set(picked.into_iter().map(Frame::Bulk).collect())
}

/// SRANDMEMBER key [count]: as HRANDFIELD, a negative count may repeat members.
pub fn srandmember(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let count = match args.len() {
        2 => None,
        3 => match parse_random_count(&args[2]) {
            Ok(n) => Some(n),
            Err(e) => return e,
        },
        _ => return err(ERR_SYNTAX),
    };
    let mut txn = ctx.lock(&args[1]);
    let set = match read_set(&mut txn, &args[1]) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let mut rng = rand::rng();
    let Some(count) = count else {
        return set
            .and_then(|s| random_member(s, &mut rng))
            .map_or(Frame::Null, Frame::Bulk);
    };
    let Some(set) = set else {
        return Frame::Array(Vec::new());
    };
    let members: Vec<&Bytes> = set.iter().collect();
    Frame::Array(bulks(pick_random(&members, count, &mut rng).into_iter()))
}

/// SMOVE source destination member.
pub fn smove(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let (src, dst, member) = (&args[1], &args[2], &args[3]);
    if key_hash_slot(src) != key_hash_slot(dst) {
        return err(ERR_CROSSSLOT);
    }
    let mut txn = ctx.lock(src);
    let src_has = match lookup_write(&mut txn, src) {
        Ok(Some(s)) => s.contains(member),
        Ok(None) => return Frame::Integer(0),
        Err(e) => return e,
    };
    if let Err(e) = lookup_write(&mut txn, dst) {
        return e;
    }
    if src == dst {
        return Frame::Integer(i64::from(src_has));
    }
    if !src_has {
        return Frame::Integer(0);
    }
    if let Ok(Some(set)) = existing_set_mut(&mut txn, src) {
        set.remove(member);
    }
    drop_if_empty(&mut txn, src);
    match write_set(&mut txn, dst) {
        Ok(set) => {
            set.insert(copy(member));
            note_conversion(set, member);
        }
        Err(e) => return e,
    }
    txn.log(args);
    Frame::Integer(1)
}

/// How several sets combine.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SetOp {
    Inter,
    Union,
    Diff,
}

/// The sets at `keys` (all in one slot, locked by `txn`), `None` for a missing key. Checks every
/// key's type first, as Redis does, so a WRONGTYPE anywhere wins over an empty result.
fn gather<'t>(txn: &'t mut Txn<'_>, keys: &[Bytes]) -> Result<Vec<Option<&'t Set>>, Frame> {
    let slot = txn.slot();
    for key in keys {
        if key_hash_slot(key) != slot {
            return Err(err(ERR_CROSSSLOT));
        }
        read_set(txn, key)?;
    }
    let txn: &'t Txn<'_> = txn;
    Ok(keys
        .iter()
        .map(|key| match txn.get(key) {
            Some(EntryRef {
                value: ValueRef::Set(s),
                ..
            }) => Some(s),
            _ => None,
        })
        .collect())
}

/// The result of `op` over `sets`, at most `limit` members for an intersection (0: no limit).
fn combine(sets: &[Option<&Set>], op: SetOp, limit: usize) -> Vec<Bytes> {
    match op {
        SetOp::Inter => {
            if sets.iter().any(Option::is_none) {
                return Vec::new();
            }
            let mut present: Vec<&Set> = sets.iter().flatten().copied().collect();
            present.sort_by_key(|s| s.len());
            let Some((smallest, rest)) = present.split_first() else {
                return Vec::new();
            };
            let mut out = Vec::new();
            for m in smallest.iter() {
                if rest.iter().all(|s| s.contains(m)) {
                    out.push(m.clone());
                    if limit > 0 && out.len() >= limit {
                        break;
                    }
                }
            }
            out
        }
        SetOp::Union => {
            let mut out: HashSet<&Bytes> = HashSet::new();
            for s in sets.iter().flatten() {
                out.extend(s.iter());
            }
            out.into_iter().cloned().collect()
        }
        SetOp::Diff => {
            let Some(Some(first)) = sets.first() else {
                return Vec::new();
            };
            first
                .iter()
                .filter(|m| !sets[1..].iter().flatten().any(|s| s.contains(m)))
                .cloned()
                .collect()
        }
    }
}

/// SINTER, SUNION and SDIFF.
pub fn combine_reply(ctx: &Ctx<'_>, args: &[Bytes], op: SetOp) -> Frame {
    let keys = &args[1..];
    let mut txn = ctx.lock(&keys[0]);
    let sets = match gather(&mut txn, keys) {
        Ok(s) => s,
        Err(e) => return e,
    };
    Frame::Set(combine(&sets, op, 0).into_iter().map(Frame::Bulk).collect())
}

/// SINTERSTORE, SUNIONSTORE and SDIFFSTORE: the destination is replaced (its TTL dropped), or
/// deleted when the result is empty.
pub fn combine_store(ctx: &Ctx<'_>, args: &[Bytes], op: SetOp) -> Frame {
    let dst = &args[1];
    let keys = &args[2..];
    let mut txn = ctx.lock(dst);
    let members = match gather(&mut txn, keys) {
        Ok(sets) => combine(&sets, op, 0),
        Err(e) => return e,
    };
    let count = members.len() as i64;
    if members.is_empty() {
        let _ = txn.live(dst);
        if txn.remove(dst).is_some() {
            txn.log(&[b("DEL"), dst.clone()]);
        }
        return Frame::Integer(0);
    }
    // Members are shared with the source sets, which hold copies already.
    let set: Set = members.into_iter().collect();
    txn.insert(copy(dst), Entry::new(Value::Set(Box::new(set)), None));
    txn.log(args);
    Frame::Integer(count)
}

/// SINTERCARD numkeys key [key ...] [LIMIT limit].
pub fn sintercard(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    const NUMKEYS: &str = "ERR numkeys should be greater than 0";
    let numkeys = match parse::parse_i64(&args[1]) {
        Some(n) if n >= 1 => n as u64,
        _ => return err(NUMKEYS),
    };
    if numkeys > (args.len() - 2) as u64 {
        return err("ERR Number of keys can't be greater than number of args");
    }
    let numkeys = numkeys as usize;
    let keys = &args[2..2 + numkeys];
    let mut limit = 0usize;
    let mut i = 2 + numkeys;
    while i < args.len() {
        if parse::eq(&args[i], "limit") && i + 1 < args.len() {
            match parse::parse_i64(&args[i + 1]) {
                Some(n) if n >= 0 => limit = usize::try_from(n).unwrap_or(usize::MAX),
                _ => return err("ERR LIMIT can't be negative"),
            }
            i += 2;
        } else {
            return err(ERR_SYNTAX);
        }
    }
    let mut txn = ctx.lock(&keys[0]);
    match gather(&mut txn, keys) {
        Ok(sets) => Frame::Integer(combine(&sets, SetOp::Inter, limit).len() as i64),
        Err(e) => e,
    }
}

/// SSCAN key cursor [MATCH pattern] [COUNT n], as Redis: a set Redis would hold as an intset is
/// returned whole (ascending, as an intset) with cursor 0; any other set pages through its table
/// with Redis's reverse-binary cursor, so every member present for the whole scan is returned at
/// least once, whatever is added or removed between calls.
pub fn sscan(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let Some(cursor) = parse_cursor(&args[2]) else {
        return err("ERR invalid cursor");
    };
    let mut txn = ctx.lock(&args[1]);
    let set = match read_set(&mut txn, &args[1]) {
        Ok(Some(s)) => s,
        Ok(None) => return scan_reply(0, Vec::new()),
        Err(e) => return e,
    };
    let options = match parse_scan_options(args) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let mut members: Vec<Bytes> = Vec::new();
    let cursor = if is_intset(set) {
        members.extend(set.iter().cloned());
        intset_order(&mut members);
        0
    } else {
        scan_buckets(cursor, options.count, 1, &mut members, |cursor, members| {
            set.scan(cursor, |m| members.push(m.clone()))
        })
    };
    let items = members
        .into_iter()
        .filter(|m| options.pattern.is_none_or(|p| glob::matches(p, m)))
        .map(Frame::Bulk)
        .collect();
    scan_reply(cursor, items)
}

/// Marks `set` converted when adding `member` would have turned Redis's intset into a hashtable.
fn note_conversion(set: &mut SetValue, member: &[u8]) {
    if set.len() > SET_MAX_INTSET_ENTRIES || string_to_i64(member).is_none() {
        set.mark_converted();
    }
}

/// The commands of this family, for the node's dispatch table (`cmd::dispatch`).
pub(super) const COMMANDS: &[DispatchEntry] = &[
    ("sadd", |ctx, _, args| sadd(ctx, args)),
    ("srem", |ctx, _, args| srem(ctx, args)),
    ("smembers", |ctx, _, args| smembers(ctx, args)),
    ("sismember", |ctx, _, args| sismember(ctx, args)),
    ("smismember", |ctx, _, args| smismember(ctx, args)),
    ("scard", |ctx, _, args| scard(ctx, args)),
    ("spop", |ctx, _, args| spop(ctx, args)),
    ("srandmember", |ctx, _, args| srandmember(ctx, args)),
    ("smove", |ctx, _, args| smove(ctx, args)),
    ("sinter", |ctx, _, args| {
        combine_reply(ctx, args, SetOp::Inter)
    }),
    ("sunion", |ctx, _, args| {
        combine_reply(ctx, args, SetOp::Union)
    }),
    ("sdiff", |ctx, _, args| {
        combine_reply(ctx, args, SetOp::Diff)
    }),
    ("sinterstore", |ctx, _, args| {
        combine_store(ctx, args, SetOp::Inter)
    }),
    ("sunionstore", |ctx, _, args| {
        combine_store(ctx, args, SetOp::Union)
    }),
    ("sdiffstore", |ctx, _, args| {
        combine_store(ctx, args, SetOp::Diff)
    }),
    ("sintercard", |ctx, _, args| sintercard(ctx, args)),
    ("sscan", |ctx, _, args| sscan(ctx, args)),
];

#[cfg(test)]
mod tests {
    use crate::cmd::testing::{run, state};

    #[test]
    fn add_remove_and_empty_removal() {
        let s = state();
        assert_eq!(run(&s, "SADD s a b a"), ":2\r\n");
        assert_eq!(run(&s, "SISMEMBER s a"), ":1\r\n");
        assert_eq!(run(&s, "SMISMEMBER s a x"), "*2\r\n:1\r\n:0\r\n");
        assert_eq!(run(&s, "SREM s a b c"), ":2\r\n");
        assert_eq!(run(&s, "EXISTS s"), ":0\r\n");
        run(&s, "SET str v");
        assert!(run(&s, "SADD str a").starts_with("-WRONGTYPE"));
    }

    #[test]
    fn algebra_and_store() {
        let s = state();
        run(&s, "SADD {k}a 1 2 3");
        run(&s, "SADD {k}b 2 3 4");
        assert_eq!(run(&s, "SINTERCARD 2 {k}a {k}b"), ":2\r\n");
        assert_eq!(run(&s, "SINTERCARD 2 {k}a {k}b LIMIT 1"), ":1\r\n");
        assert_eq!(run(&s, "SDIFFSTORE {k}d {k}a {k}b"), ":1\r\n");
        assert_eq!(run(&s, "SMEMBERS {k}d"), "*1\r\n$1\r\n1\r\n");
        assert_eq!(run(&s, "SUNIONSTORE {k}d {k}a {k}b"), ":4\r\n");
        assert_eq!(run(&s, "SINTERSTORE {k}d {k}a {k}none"), ":0\r\n");
        assert_eq!(run(&s, "EXISTS {k}d"), ":0\r\n");
        assert_eq!(run(&s, "SMOVE {k}a {k}c 1"), ":1\r\n");
        assert_eq!(run(&s, "SMOVE {k}a {k}c 1"), ":0\r\n");
    }

    #[test]
    fn pops_and_random_members() {
        let s = state();
        run(&s, "SADD s a b c");
        assert!(run(&s, "SRANDMEMBER s -5").starts_with("*5\r\n"));
        assert!(run(&s, "SRANDMEMBER s 5").starts_with("*3\r\n"));
        assert!(run(&s, "SPOP s 2").starts_with("*2\r\n"));
        assert_eq!(run(&s, "SCARD s"), ":1\r\n");
        assert!(run(&s, "SPOP s").starts_with("$1\r\n"));
        assert_eq!(run(&s, "EXISTS s"), ":0\r\n");
        assert_eq!(
            run(&s, "SPOP s -1"),
            "-ERR value is out of range, must be positive\r\n"
        );
    }
}
