//! Removing and sampling: ZPOPMIN ZPOPMAX ZMPOP, their blocking forms BZPOPMIN BZPOPMAX BZMPOP,
//! ZRANDMEMBER. Pops are logged as the ZREM of what they removed, so replay does not depend on
//! which end or how many.

use bytes::Bytes;
use rand::Rng;
use tessera_proto::resp::{Frame, Protocol};

use super::{drop_if_empty, members_reply, read_zset, score_frame, write_zset, zset_mut};
use crate::cmd::hash::MAX_RANDOM_REPEATS as MAX_REPEATED;
use crate::cmd::list;
use crate::cmd::parse::{err, parse_i64, ERR_NOT_INTEGER, ERR_SYNTAX};
use crate::cmd::{ClientSession, Ctx, Txn};

/// The key popped from and its members with their scores, in pop order.
type Popped = (Bytes, Vec<(Bytes, f64)>);

/// Pops up to `count` members from the first non-empty sorted set among `keys`; `None` when all
/// are absent. WRONGTYPE on the first key of another type, as Redis checks in order.
fn pop_from(
    ctx: &Ctx<'_>,
    keys: &[Bytes],
    max: bool,
    count: usize,
) -> Result<Option<Popped>, Frame> {
    // All keys share a slot (cluster rule), so one lock covers them.
    let Some(first) = keys.first() else {
        return Ok(None);
    };
    let mut txn = ctx.lock(first);
    pop_locked(&mut txn, keys, max, count)
}

/// `pop_from` with the keys' slot already locked (a blocked client served by another's write).
fn pop_locked(
    txn: &mut Txn<'_>,
    keys: &[Bytes],
    max: bool,
    count: usize,
) -> Result<Option<Popped>, Frame> {
    for key in keys {
        if write_zset(txn, key)?.is_none() {
            continue;
        }
        let mut popped = Vec::new();
        if let Some(zset) = zset_mut(txn, key) {
            let n = count.min(zset.len());
            let chosen: Vec<(Bytes, f64)> = if max {
                zset.iter()
                    .rev()
                    .take(n)
                    .map(|(m, s)| (m.clone(), s))
                    .collect()
            } else {
                zset.iter().take(n).map(|(m, s)| (m.clone(), s)).collect()
            };
            for (m, s) in chosen {
                zset.remove(&m);
                popped.push((m, s));
            }
        }
        drop_if_empty(txn, key);
        if !popped.is_empty() {
            let mut entry = vec![Bytes::from_static(b"ZREM"), key.clone()];
            entry.extend(popped.iter().map(|(m, _)| m.clone()));
            txn.log(&entry);
        }
        return Ok(Some((key.clone(), popped)));
    }
    Ok(None)
}

fn pair(member: Bytes, score: f64) -> Frame {
    Frame::Array(vec![Frame::Bulk(member), score_frame(score)])
}

/// ZPOPMIN / ZPOPMAX key [count].
pub fn zpop(ctx: &Ctx<'_>, session: &ClientSession, args: &[Bytes], max: bool) -> Frame {
    if args.len() > 3 {
        return err(ERR_SYNTAX);
    }
    let count = match args.get(2) {
        None => None,
        // getPositiveLongFromObjectOrReply: one message for both failures.
        Some(arg) => match parse_i64(arg) {
            Some(n) if n >= 0 => Some(n as usize),
            _ => return err("ERR value is out of range, must be positive"),
        },
    };
    // A count of 0 still looks the key up first, so a key of another type answers WRONGTYPE.
    let popped = match pop_from(ctx, &args[1..2], max, count.unwrap_or(1)) {
        Ok(Some((_, popped))) => popped,
        Ok(None) => Vec::new(),
        Err(e) => return e,
    };
    // RESP3 nests pairs only when a count was given.
    if session.protocol == Protocol::Resp3 && count.is_some() {
        return Frame::Array(popped.into_iter().map(|(m, s)| pair(m, s)).collect());
    }
    let mut out = Vec::with_capacity(popped.len() * 2);
    for (m, s) in popped {
        out.push(Frame::Bulk(m));
        out.push(score_frame(s));
    }
    Frame::Array(out)
}

/// A count in 1..=i64::MAX, any failure answered with `msg` (getRangeLongFromObjectOrReply).
fn positive(arg: &[u8], msg: &'static str) -> Result<i64, Frame> {
    match parse_i64(arg) {
        Some(n) if n >= 1 => Ok(n),
        _ => Err(err(msg)),
    }
}

/// What ZMPOP / BZMPOP ask for: the keys (as a range of `args`), which end, how many.
struct MultiPop {
    keys: std::ops::Range<usize>,
    max: bool,
    count: usize,
}

/// Parses `numkeys key... MIN|MAX [COUNT count]` with numkeys at `args[numkeys_at]`.
fn parse_mpop(args: &[Bytes], numkeys_at: usize) -> Result<MultiPop, Frame> {
    let numkeys = positive(&args[numkeys_at], "ERR numkeys should be greater than 0")? as usize;
    let where_idx = match numkeys.checked_add(numkeys_at + 1) {
        Some(i) if i < args.len() => i,
        _ => return Err(err(ERR_SYNTAX)),
    };
    let max = match args[where_idx].to_ascii_lowercase().as_slice() {
        b"min" => false,
        b"max" => true,
        _ => return Err(err(ERR_SYNTAX)),
    };
    let mut count: Option<i64> = None;
    let mut j = where_idx + 1;
    while j < args.len() {
        let more = args.len() - 1 - j;
        if count.is_none() && args[j].eq_ignore_ascii_case(b"count") && more > 0 {
            j += 1;
            count = Some(positive(&args[j], "ERR count should be greater than 0")?);
        } else {
            return Err(err(ERR_SYNTAX));
        }
        j += 1;
    }
    Ok(MultiPop {
        keys: numkeys_at + 1..where_idx,
        max,
        count: count.unwrap_or(1) as usize,
    })
}

fn mpop_reply(key: Bytes, popped: Vec<(Bytes, f64)>) -> Frame {
    Frame::Array(vec![
        Frame::Bulk(key),
        Frame::Array(popped.into_iter().map(|(m, s)| pair(m, s)).collect()),
    ])
}

/// ZMPOP numkeys key... MIN|MAX [COUNT count].
pub fn zmpop(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let spec = match parse_mpop(args, 1) {
        Ok(spec) => spec,
        Err(e) => return e,
    };
    match pop_from(ctx, &args[spec.keys], spec.max, spec.count) {
        Ok(Some((key, popped))) => mpop_reply(key, popped),
        Ok(None) => Frame::NullArray,
        Err(e) => e,
    }
}

/// `[key, member, score]`, the reply of BZPOPMIN / BZPOPMAX.
fn bzpop_reply(key: Bytes, popped: Vec<(Bytes, f64)>) -> Frame {
    let mut out = vec![Frame::Bulk(key)];
    if let Some((m, s)) = popped.into_iter().next() {
        out.push(Frame::Bulk(m));
        out.push(score_frame(s));
    }
    Frame::Array(out)
}

/// Whether `keys` share one slot (replay skips the cluster rule; one lock must cover them).
fn same_slot(keys: &[Bytes]) -> bool {
    let mut slots = keys.iter().map(|k| tessera_proto::slot::key_hash_slot(k));
    let first = slots.next();
    slots.all(|s| Some(s) == first)
}

const ERR_CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

/// BZPOPMIN / BZPOPMAX key... timeout: pops one member of the first non-empty key, or blocks until
/// a write gives one of the keys data (served by `serve_blocked`) or the timeout passes.
pub fn bzpop(ctx: &Ctx<'_>, session: &mut ClientSession, args: &[Bytes], max: bool) -> Frame {
    let timeout = match list::parse_timeout(&args[args.len() - 1]) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let keys = &args[1..args.len() - 1];
    if !same_slot(keys) {
        return err(ERR_CROSSSLOT);
    }
    let mut txn = ctx.lock(&keys[0]);
    match pop_locked(&mut txn, keys, max, 1) {
        Ok(Some((key, popped))) => bzpop_reply(key, popped),
        Ok(None) => list::block(&txn, session, keys, args, timeout, Frame::NullArray),
        Err(e) => e,
    }
}

/// BZMPOP timeout numkeys key... MIN|MAX [COUNT count]; Redis parses the rest before the timeout.
pub fn bzmpop(ctx: &Ctx<'_>, session: &mut ClientSession, args: &[Bytes]) -> Frame {
    let spec = match parse_mpop(args, 2) {
        Ok(spec) => spec,
        Err(e) => return e,
    };
    let timeout = match list::parse_timeout(&args[1]) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let keys = &args[spec.keys];
    if !same_slot(keys) {
        return err(ERR_CROSSSLOT);
    }
    let mut txn = ctx.lock(&keys[0]);
    match pop_locked(&mut txn, keys, spec.max, spec.count) {
        Ok(Some((key, popped))) => mpop_reply(key, popped),
        Ok(None) => list::block(&txn, session, keys, args, timeout, Frame::NullArray),
        Err(e) => e,
    }
}

/// Offers `key`, which just got data, to a client blocked in BZPOPMIN / BZPOPMAX / BZMPOP `args`:
/// pops as the command would have (logged as the ZREM of what it took) and returns its reply;
/// `None` when `key` holds no sorted set now, so the client keeps waiting.
pub fn serve_blocked(txn: &mut Txn<'_>, key: &Bytes, args: &[Bytes]) -> Option<Frame> {
    let name = args.first()?.to_ascii_lowercase();
    let keys = std::slice::from_ref(key);
    match &name[..] {
        b"bzpopmin" | b"bzpopmax" => {
            let (key, popped) = pop_locked(txn, keys, &name[..] == b"bzpopmax", 1).ok()??;
            Some(bzpop_reply(key, popped))
        }
        b"bzmpop" => {
            let spec = parse_mpop(args, 2).ok()?;
            let (key, popped) = pop_locked(txn, keys, spec.max, spec.count).ok()??;
            Some(mpop_reply(key, popped))
        }
        _ => None,
    }
}

/// ZRANDMEMBER key [count [WITHSCORES]].
pub fn zrandmember(ctx: &Ctx<'_>, session: &ClientSession, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let Some(count_arg) = args.get(2) else {
        let mut txn = ctx.lock(key);
        return match read_zset(&mut txn, key) {
            Ok(Some(z)) => {
                let n = rand::rng().random_range(0..z.len());
                z.by_index(n..n + 1)
                    .next()
                    .map_or(Frame::Null, |(m, _)| Frame::Bulk(m.clone()))
            }
            Ok(None) => Frame::Null,
            Err(e) => e,
        };
    };
    let count = match parse_i64(count_arg) {
        None => return err(ERR_NOT_INTEGER),
        Some(i64::MIN) => {
            return err(
                "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
            )
        }
        Some(n) => n,
    };
    if args.len() > 4 || (args.len() == 4 && !args[3].eq_ignore_ascii_case(b"withscores")) {
        return err(ERR_SYNTAX);
    }
    let withscores = args.len() == 4;
    if withscores && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
        return err("ERR value is out of range");
    }
    let mut txn = ctx.lock(key);
    let zset = match read_zset(&mut txn, key) {
        Ok(Some(z)) => z,
        Ok(None) => return Frame::Array(Vec::new()),
        Err(e) => return e,
    };
    let mut rng = rand::rng();
    let all: Vec<(Bytes, f64)> = zset.iter().map(|(m, s)| (m.clone(), s)).collect();
    let items: Vec<(Bytes, f64)> = if count < 0 {
        let n = count.unsigned_abs() as usize;
        // Redis would stream any length; a reply this large is refused rather than allocated.
        if n > MAX_REPEATED {
            return err("ERR value is out of range");
        }
        (0..n)
            .map(|_| all[rng.random_range(0..all.len())].clone())
            .collect()
    } else if count as usize >= all.len() {
        all
    } else {
        // Distinct members: a partial Fisher-Yates shuffle.
        let mut all = all;
        let n = count as usize;
        for i in 0..n {
            let j = rng.random_range(i..all.len());
            all.swap(i, j);
        }
        all.truncate(n);
        all
    };
    members_reply(session.protocol, items, withscores)
}
