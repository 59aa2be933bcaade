//! Range commands: ZRANGE (BYSCORE BYLEX REV LIMIT WITHSCORES) and its older spellings
//! ZRANGEBYSCORE ZREVRANGEBYSCORE ZRANGEBYLEX ZREVRANGEBYLEX ZREVRANGE, ZRANGESTORE, and
//! ZREMRANGEBYRANK ZREMRANGEBYSCORE ZREMRANGEBYLEX. One parser, as Redis's zrangeGenericCommand.

use bytes::Bytes;
use tessera_proto::resp::Frame;

use super::{
    drop_if_empty, members_reply, parse_lex_range, parse_score_range, read_zset, store, write_zset,
    zset_mut,
};
use crate::cmd::parse::{err, parse_i64, ERR_NOT_INTEGER, ERR_SYNTAX};
use crate::cmd::{ClientSession, Ctx};
use crate::keyspace::SortedSet;

/// How a range is given; `Auto` until an option or the command name fixes it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RangeKind {
    Auto,
    Rank,
    Score,
    Lex,
}

/// Which ZRANGE spelling is running: its fixed kind and direction (`None`: options decide).
#[derive(Clone, Copy)]
pub struct Spelling {
    pub kind: RangeKind,
    pub rev: Option<bool>,
    pub store: bool,
}

/// The parsed range itself.
enum Range {
    Rank(i64, i64),
    Score(crate::keyspace::zset::ScoreRange),
    Lex(crate::keyspace::zset::LexRange),
}

fn int_arg(arg: &[u8]) -> Result<i64, Frame> {
    parse_i64(arg).ok_or_else(|| err(ERR_NOT_INTEGER))
}

/// Rank bounds clipped as Redis does; `None` when the range is empty.
fn clip_ranks(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
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

/// Members of `zset` in `range`, after skipping `offset` and taking at most `limit` (negative:
/// all), as genericZrangebyscoreCommand walks (a negative offset walks off the end).
fn collect(
    zset: &SortedSet,
    range: &Range,
    rev: bool,
    offset: i64,
    limit: i64,
) -> Vec<(Bytes, f64)> {
    let take = |it: Box<dyn Iterator<Item = (&Bytes, f64)> + '_>| -> Vec<(Bytes, f64)> {
        if offset < 0 || (offset > 0 && offset as usize >= zset.len()) {
            return Vec::new();
        }
        let it = it.skip(offset as usize).map(|(m, s)| (m.clone(), s));
        if limit < 0 {
            it.collect()
        } else {
            it.take(limit as usize).collect()
        }
    };
    match range {
        Range::Rank(start, end) => match clip_ranks(*start, *end, zset.len()) {
            None => Vec::new(),
            Some((s, e)) => {
                let len = zset.len();
                let indexes = if rev { len - 1 - e..len - s } else { s..e + 1 };
                let items = zset.by_index(indexes).map(|(m, sc)| (m.clone(), sc));
                if rev {
                    items.rev().collect()
                } else {
                    items.collect()
                }
            }
        },
        Range::Score(r) => take(zset.score_range(*r, rev)),
        Range::Lex(r) => take(zset.lex_range(r, rev)),
    }
}

/// ZRANGE and every spelling of it; `args` start at the command name.
pub fn zrange(ctx: &Ctx<'_>, session: &ClientSession, args: &[Bytes], spelling: Spelling) -> Frame {
    // Arguments: [dst] src min max options...
    let first = if spelling.store { 2 } else { 1 };
    let (src, mut min_idx, mut max_idx) = (&args[first], first + 1, first + 2);
    let mut kind = spelling.kind;
    let mut rev = spelling.rev;
    let mut withscores = false;
    let (mut offset, mut limit) = (0i64, -1i64);
    let mut j = first + 3;
    while j < args.len() {
        let opt = args[j].to_ascii_lowercase();
        let left = args.len() - j - 1;
        if !spelling.store && opt == b"withscores" {
            withscores = true;
        } else if opt == b"limit" && left >= 2 {
            offset = match int_arg(&args[j + 1]) {
                Ok(v) => v,
                Err(e) => return e,
            };
            limit = match int_arg(&args[j + 2]) {
                Ok(v) => v,
                Err(e) => return e,
            };
            j += 2;
        } else if rev.is_none() && opt == b"rev" {
            rev = Some(true);
        } else if kind == RangeKind::Auto && opt == b"bylex" {
            kind = RangeKind::Lex;
        } else if kind == RangeKind::Auto && opt == b"byscore" {
            kind = RangeKind::Score;
        } else {
            return err(ERR_SYNTAX);
        }
        j += 1;
    }
    let rev = rev.unwrap_or(false);
    if kind == RangeKind::Auto {
        kind = RangeKind::Rank;
    }
    if limit != -1 && kind == RangeKind::Rank {
        return err(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        );
    }
    if withscores && kind == RangeKind::Lex {
        return err("ERR syntax error, WITHSCORES not supported in combination with BYLEX");
    }
    if rev && kind != RangeKind::Rank {
        std::mem::swap(&mut min_idx, &mut max_idx);
    }
    let range = match kind {
        RangeKind::Score => match parse_score_range(&args[min_idx], &args[max_idx]) {
            Ok(r) => Range::Score(r),
            Err(e) => return e,
        },
        RangeKind::Lex => match parse_lex_range(&args[min_idx], &args[max_idx]) {
            Ok(r) => Range::Lex(r),
            Err(e) => return e,
        },
        _ => match (int_arg(&args[min_idx]), int_arg(&args[max_idx])) {
            (Ok(s), Ok(e)) => Range::Rank(s, e),
            (Err(e), _) | (_, Err(e)) => return e,
        },
    };
    let mut txn = ctx.lock(src);
    let items = match read_zset(&mut txn, src) {
        Ok(Some(z)) => collect(z, &range, rev, offset, limit),
        Ok(None) => Vec::new(),
        Err(e) => return e,
    };
    if !spelling.store {
        return members_reply(session.protocol, items, withscores);
    }
    let dst = &args[1];
    let mut result = SortedSet::default();
    for (m, s) in items {
        result.insert(m, s);
    }
    let n = store(&mut txn, dst, result);
    // Deterministic given the source, so the command itself replays to the same state.
    txn.log(args);
    Frame::Integer(n as i64)
}

/// ZREMRANGEBYRANK / BYSCORE / BYLEX: range checked before the key, as Redis.
pub fn zremrange(ctx: &Ctx<'_>, args: &[Bytes], kind: RangeKind) -> Frame {
    let range = match kind {
        RangeKind::Score => match parse_score_range(&args[2], &args[3]) {
            Ok(r) => Range::Score(r),
            Err(e) => return e,
        },
        RangeKind::Lex => match parse_lex_range(&args[2], &args[3]) {
            Ok(r) => Range::Lex(r),
            Err(e) => return e,
        },
        _ => match (int_arg(&args[2]), int_arg(&args[3])) {
            (Ok(s), Ok(e)) => Range::Rank(s, e),
            (Err(e), _) | (_, Err(e)) => return e,
        },
    };
    let key = &args[1];
    let mut txn = ctx.lock(key);
    let doomed = match write_zset(&mut txn, key) {
        Ok(Some(z)) => collect(z, &range, false, 0, -1),
        Ok(None) => return Frame::Integer(0),
        Err(e) => return e,
    };
    if let Some(zset) = zset_mut(&mut txn, key) {
        for (m, _) in &doomed {
            zset.remove(m);
        }
    }
    drop_if_empty(&mut txn, key);
    if !doomed.is_empty() {
        let mut entry = vec![Bytes::from_static(b"ZREM"), Bytes::copy_from_slice(key)];
        entry.extend(doomed.iter().map(|(m, _)| m.clone()));
        txn.log(&entry);
    }
    Frame::Integer(doomed.len() as i64)
}

/// ZRANGE under any of its spellings, `name` being the lowercase command name.
pub fn zrange_named(ctx: &Ctx<'_>, session: &ClientSession, args: &[Bytes], name: &str) -> Frame {
    zrange(ctx, session, args, spelling(name))
}

/// The fixed kind and direction of each ZRANGE spelling, by command name.
pub fn spelling(name: &str) -> Spelling {
    let (kind, rev, store) = match name {
        "zrangestore" => (RangeKind::Auto, None, true),
        "zrangebyscore" => (RangeKind::Score, Some(false), false),
        "zrevrangebyscore" => (RangeKind::Score, Some(true), false),
        "zrangebylex" => (RangeKind::Lex, Some(false), false),
        "zrevrangebylex" => (RangeKind::Lex, Some(true), false),
        "zrevrange" => (RangeKind::Rank, Some(true), false),
        _ => (RangeKind::Auto, None, false),
    };
    Spelling { kind, rev, store }
}
