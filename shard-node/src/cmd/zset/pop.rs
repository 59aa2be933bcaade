//! Removing and sampling: ZPOPMIN ZPOPMAX ZMPOP ZRANDMEMBER. Pops are logged as the ZREM of what
//! they removed, so replay does not depend on which end or how many.

use bytes::Bytes;
use rand::Rng;
use tessera_proto::resp::{Frame, Protocol};

use super::{drop_if_empty, members_reply, read_zset, score_frame, write_zset, zset_mut};
use crate::cmd::parse::{err, parse_i64, ERR_NOT_INTEGER, ERR_SYNTAX};
use crate::cmd::{Ctx, Session};

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
    for key in keys {
        if write_zset(&mut txn, key)?.is_none() {
            continue;
        }
        let mut popped = Vec::new();
        if let Some(zset) = zset_mut(&mut txn, key) {
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
        drop_if_empty(&mut txn, key);
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
pub fn zpop(ctx: &Ctx<'_>, session: &Session, args: &[Bytes], max: bool) -> Frame {
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
    if count == Some(0) {
        return Frame::Array(Vec::new());
    }
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

/// ZMPOP numkeys key... MIN|MAX [COUNT count].
pub fn zmpop(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let numkeys = match positive(&args[1], "ERR numkeys should be greater than 0") {
        Ok(n) => n as usize,
        Err(e) => return e,
    };
    let where_idx = match numkeys.checked_add(2) {
        Some(i) if i < args.len() => i,
        _ => return err(ERR_SYNTAX),
    };
    let max = match args[where_idx].to_ascii_lowercase().as_slice() {
        b"min" => false,
        b"max" => true,
        _ => return err(ERR_SYNTAX),
    };
    let mut count: Option<i64> = None;
    let mut j = where_idx + 1;
    while j < args.len() {
        let more = args.len() - 1 - j;
        if count.is_none() && args[j].eq_ignore_ascii_case(b"count") && more > 0 {
            j += 1;
            match positive(&args[j], "ERR count should be greater than 0") {
                Ok(n) => count = Some(n),
                Err(e) => return e,
            }
        } else {
            return err(ERR_SYNTAX);
        }
        j += 1;
    }
    let count = count.unwrap_or(1) as usize;
    match pop_from(ctx, &args[2..where_idx], max, count) {
        Ok(Some((key, popped))) => Frame::Array(vec![
            Frame::Bulk(key),
            Frame::Array(popped.into_iter().map(|(m, s)| pair(m, s)).collect()),
        ]),
        Ok(None) => Frame::NullArray,
        Err(e) => e,
    }
}

/// The most members a negative ZRANDMEMBER count may ask for.
const MAX_REPEATED: usize = 10_000_000;

/// ZRANDMEMBER key [count [WITHSCORES]].
pub fn zrandmember(ctx: &Ctx<'_>, session: &Session, args: &[Bytes]) -> Frame {
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
