//! Member-level sorted set commands: ZADD ZINCRBY ZREM ZSCORE ZMSCORE ZCARD ZCOUNT ZLEXCOUNT ZRANK
//! ZREVRANK ZSCAN, with Redis's option rules and error order.

use bytes::Bytes;
use tessera_proto::resp::Frame;

use super::{
    format_score, parse_lex_range, parse_score, parse_score_range, read_zset, score_frame,
    write_zset, zset_mut,
};
use crate::cmd::hash::{parse_scan_options, scan_buckets, scan_reply};
use crate::cmd::keys::object::is_small_zset;
use crate::cmd::parse::{err, ERR_NOT_FLOAT, ERR_SYNTAX};
use crate::cmd::Ctx;
use crate::keyspace::{glob, Entry, SortedSet, Value};
use tessera_proto::command::parse_cursor;

/// ZADD's flags as zaddGenericCommand reads them.
#[derive(Default)]
struct AddFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
}

pub fn zadd(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut flags = AddFlags::default();
    let mut idx = 2;
    while let Some(arg) = args.get(idx) {
        let f = match arg.to_ascii_lowercase().as_slice() {
            b"nx" => &mut flags.nx,
            b"xx" => &mut flags.xx,
            b"gt" => &mut flags.gt,
            b"lt" => &mut flags.lt,
            b"ch" => &mut flags.ch,
            b"incr" => &mut flags.incr,
            _ => break,
        };
        *f = true;
        idx += 1;
    }
    add_generic(ctx, args, idx, flags)
}

/// ZINCRBY is ZADD INCR with one pair.
pub fn zincrby(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    add_generic(
        ctx,
        args,
        2,
        AddFlags {
            incr: true,
            ..AddFlags::default()
        },
    )
}

fn add_generic(ctx: &Ctx<'_>, args: &[Bytes], score_idx: usize, f: AddFlags) -> Frame {
    let elements = args.len() - score_idx.min(args.len());
    if elements == 0 || !elements.is_multiple_of(2) {
        return err(ERR_SYNTAX);
    }
    if f.nx && f.xx {
        return err("ERR XX and NX options at the same time are not compatible");
    }
    if (f.nx && (f.gt || f.lt)) || (f.gt && f.lt) {
        return err("ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    if f.incr && elements > 2 {
        return err("ERR INCR option supports a single increment-element pair");
    }
    let mut pairs = Vec::with_capacity(elements / 2);
    for pair in args[score_idx..].chunks(2) {
        let Some(score) = parse_score(&pair[0]) else {
            return err(ERR_NOT_FLOAT);
        };
        pairs.push((score, &pair[1]));
    }
    let key = &args[1];
    let mut txn = ctx.lock(key);
    let exists = match write_zset(&mut txn, key) {
        Ok(found) => found.is_some(),
        Err(e) => return e,
    };
    let nothing = |incr: bool| if incr { Frame::Null } else { Frame::Integer(0) };
    if !exists {
        if f.xx {
            return nothing(f.incr);
        }
        txn.insert(
            Bytes::copy_from_slice(key),
            Entry::new(Value::ZSet(Box::default()), None),
        );
    }
    let Some(zset) = zset_mut(&mut txn, key) else {
        return nothing(f.incr);
    };
    let (mut added, mut updated, mut processed) = (0i64, 0i64, 0i64);
    let mut last_score = 0.0;
    let mut changed: Vec<Bytes> = Vec::new();
    let mut nan = false;
    for (score, member) in pairs {
        match zset.score(member) {
            Some(current) => {
                if f.nx {
                    continue;
                }
                let mut score = score;
                if f.incr {
                    score += current;
                    if score.is_nan() {
                        nan = true;
                        break;
                    }
                }
                if (f.lt && score >= current) || (f.gt && score <= current) {
                    continue;
                }
                processed += 1;
                last_score = score;
                if score != current {
                    zset.insert(Bytes::copy_from_slice(member), score);
                    updated += 1;
                    changed.push(format_score(score));
                    changed.push(Bytes::copy_from_slice(member));
                }
            }
            None => {
                if f.xx {
                    continue;
                }
                zset.insert(Bytes::copy_from_slice(member), score);
                processed += 1;
                added += 1;
                last_score = score;
                changed.push(format_score(score));
                changed.push(Bytes::copy_from_slice(member));
            }
        }
    }
    super::drop_if_empty(&mut txn, key);
    if !changed.is_empty() {
        // Absolute scores, so INCR, GT and LT replay to the same state.
        let mut entry = vec![Bytes::from_static(b"ZADD"), Bytes::copy_from_slice(key)];
        entry.extend(changed);
        txn.log(&entry);
    }
    if nan {
        return err("ERR resulting score is not a number (NaN)");
    }
    if f.incr {
        if processed > 0 {
            score_frame(last_score)
        } else {
            Frame::Null
        }
    } else if f.ch {
        Frame::Integer(added + updated)
    } else {
        Frame::Integer(added)
    }
}

pub fn zrem(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let mut txn = ctx.lock(key);
    match write_zset(&mut txn, key) {
        Ok(Some(_)) => {}
        Ok(None) => return Frame::Integer(0),
        Err(e) => return e,
    }
    let mut removed = vec![Bytes::from_static(b"ZREM"), Bytes::copy_from_slice(key)];
    if let Some(zset) = zset_mut(&mut txn, key) {
        for member in &args[2..] {
            if zset.remove(member).is_some() {
                removed.push(Bytes::copy_from_slice(member));
            }
        }
    }
    super::drop_if_empty(&mut txn, key);
    let count = removed.len() - 2;
    if count > 0 {
        txn.log(&removed);
    }
    Frame::Integer(count as i64)
}

pub fn zscore(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    match read_zset(&mut txn, &args[1]) {
        Ok(z) => z
            .and_then(|z| z.score(&args[2]))
            .map_or(Frame::Null, score_frame),
        Err(e) => e,
    }
}

pub fn zmscore(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    match read_zset(&mut txn, &args[1]) {
        Ok(z) => Frame::Array(
            args[2..]
                .iter()
                .map(|m| z.and_then(|z| z.score(m)).map_or(Frame::Null, score_frame))
                .collect(),
        ),
        Err(e) => e,
    }
}

pub fn zcard(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    match read_zset(&mut txn, &args[1]) {
        Ok(z) => Frame::Integer(z.map_or(0, |z| z.len() as i64)),
        Err(e) => e,
    }
}

pub fn zcount(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let range = match parse_score_range(&args[2], &args[3]) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let mut txn = ctx.lock(&args[1]);
    match read_zset(&mut txn, &args[1]) {
        Ok(z) => Frame::Integer(z.map_or(0, |z| z.score_range(range, false).count() as i64)),
        Err(e) => e,
    }
}

pub fn zlexcount(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let range = match parse_lex_range(&args[2], &args[3]) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let mut txn = ctx.lock(&args[1]);
    match read_zset(&mut txn, &args[1]) {
        Ok(z) => Frame::Integer(z.map_or(0, |z| z.lex_range(&range, false).count() as i64)),
        Err(e) => e,
    }
}

pub fn zrank(ctx: &Ctx<'_>, args: &[Bytes], rev: bool) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    match read_zset(&mut txn, &args[1]) {
        Ok(z) => match z.and_then(|z| Some((z.rank(&args[2])?, z.len()))) {
            Some((rank, len)) if rev => Frame::Integer((len - 1 - rank) as i64),
            Some((rank, _)) => Frame::Integer(rank as i64),
            None => Frame::Null,
        },
        Err(e) => e,
    }
}

/// ZSCAN key cursor [MATCH pattern] [COUNT n], as Redis: a sorted set Redis would hold as a
/// listpack is returned whole (in score order) with cursor 0; a larger one pages through its
/// member table with Redis's reverse-binary cursor, so every member present for the whole scan is
/// returned at least once.
pub fn zscan(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let Some(cursor) = parse_cursor(&args[2]) else {
        return err("ERR invalid cursor");
    };
    let mut txn = ctx.lock(&args[1]);
    let zset: &SortedSet = match read_zset(&mut txn, &args[1]) {
        Ok(Some(z)) => z,
        Ok(None) => return scan_reply(0, Vec::new()),
        Err(e) => return e,
    };
    let options = match parse_scan_options(args) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let mut members: Vec<(Bytes, f64)> = Vec::new();
    let cursor = if is_small_zset(zset) {
        members.extend(zset.iter().map(|(m, score)| (m.clone(), score)));
        0
    } else {
        scan_buckets(cursor, options.count, 2, &mut members, |cursor, members| {
            zset.scan(cursor, |m, score| members.push((m.clone(), score)))
        })
    };
    let items = members
        .into_iter()
        .filter(|(m, _)| options.pattern.is_none_or(|p| glob::matches(p, m)))
        .flat_map(|(m, score)| [Frame::Bulk(m), Frame::Bulk(format_score(score))])
        .collect();
    scan_reply(cursor, items)
}
