//! Sorted set commands. This file holds what the families share: score parsing and printing as
//! Redis does them, range syntax (`(`/`[`, `-`/`+`), typed lookups and reply shapes; the commands
//! live in `zset/*.rs` by concern.

pub mod algebra;
pub mod basic;
pub mod pop;
pub mod range;

use bytes::Bytes;
use tessera_proto::resp::{Frame, Protocol};

use super::dispatch::DispatchEntry;
use super::parse::{err, ERR_WRONGTYPE};
use super::Txn;
use crate::keyspace::zset::{LexBound, LexRange, ScoreRange};
use crate::keyspace::{Entry, EntryRef, SortedSet, Value, ValueMut, ValueRef};

pub const ERR_MINMAX_FLOAT: &str = "ERR min or max is not a float";
pub const ERR_MINMAX_LEX: &str = "ERR min or max not valid string range item";

/// A score as Redis 7.0 prints it in replies: C's `%.17g`, with `inf`/`-inf`.
pub fn format_score(score: f64) -> Bytes {
    Bytes::from(format_g17(score))
}

fn format_g17(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // 17 significant digits, correctly rounded, then %g's choice of notation.
    let sci = format!("{:.16e}", x);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..17).contains(&exp) {
        let m = trim_fraction(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (16 - exp).max(0) as usize;
        trim_fraction(&format!("{:.*}", decimals, x)).to_string()
    }
}

/// Drops trailing zeros of a fraction, and the point if nothing is left after it.
fn trim_fraction(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

/// A score reply: a double in RESP3, its `%.17g` text in RESP2.
pub fn score_frame(score: f64) -> Frame {
    Frame::Double(format_score(score))
}

/// C's `strtod` on the whole of `text` (as Rust parses it), refusing NaN; overflow gives ±inf.
fn strtod_full(text: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(text).ok()?;
    let lower = s.to_ascii_lowercase();
    let body = lower.trim_start_matches(['+', '-']);
    if body.starts_with("nan") || body.starts_with('_') {
        return None;
    }
    s.parse::<f64>().ok()
}

/// Redis's getDoubleFromObject: the whole text a float, no leading space, not NaN, and no
/// overflow or underflow to zero (`1e400`, `1e-400` are refused as strtod's ERANGE).
pub fn parse_score(text: &[u8]) -> Option<f64> {
    if text.is_empty() || text[0].is_ascii_whitespace() || text[0] == 0x0b {
        return None;
    }
    let value = strtod_full(text)?;
    let lower = text.to_ascii_lowercase();
    if value.is_infinite() && !lower.windows(3).any(|w| w == b"inf") {
        return None;
    }
    if value == 0.0 {
        let mantissa = lower.split(|&c| c == b'e').next().unwrap_or(&[]);
        if mantissa.iter().any(|c| (b'1'..=b'9').contains(c)) {
            return None;
        }
    }
    Some(value)
}

/// One end of a score range (zslParseRange): `(` for exclusive, then strtod's number, where
/// leading spaces and an empty text (0) pass.
fn parse_score_bound(text: &[u8]) -> Option<(f64, bool)> {
    let (exclusive, rest) = match text.first() {
        Some(b'(') => (true, &text[1..]),
        _ => (false, text),
    };
    let start = rest
        .iter()
        .position(|c| !(c.is_ascii_whitespace() || *c == 0x0b))
        .unwrap_or(rest.len());
    let rest = &rest[start..];
    if rest.is_empty() {
        return Some((0.0, exclusive));
    }
    Some((strtod_full(rest)?, exclusive))
}

pub fn parse_score_range(min: &[u8], max: &[u8]) -> Result<ScoreRange, Frame> {
    let parsed = parse_score_bound(min).zip(parse_score_bound(max));
    let ((min, min_exclusive), (max, max_exclusive)) =
        parsed.ok_or_else(|| err(ERR_MINMAX_FLOAT))?;
    Ok(ScoreRange {
        min,
        min_exclusive,
        max,
        max_exclusive,
    })
}

fn parse_lex_bound(text: &[u8]) -> Option<LexBound> {
    match text {
        b"+" => Some(LexBound::PosInf),
        b"-" => Some(LexBound::NegInf),
        [b'(', rest @ ..] => Some(LexBound::Exclusive(Bytes::copy_from_slice(rest))),
        [b'[', rest @ ..] => Some(LexBound::Inclusive(Bytes::copy_from_slice(rest))),
        _ => None,
    }
}

pub fn parse_lex_range(min: &[u8], max: &[u8]) -> Result<LexRange, Frame> {
    match (parse_lex_bound(min), parse_lex_bound(max)) {
        (Some(min), Some(max)) => Ok(LexRange { min, max }),
        _ => Err(err(ERR_MINMAX_LEX)),
    }
}

/// The sorted set at `key` for a read (hits and misses counted); WRONGTYPE for other types.
pub fn read_zset<'t>(txn: &'t mut Txn<'_>, key: &[u8]) -> Result<Option<&'t SortedSet>, Frame> {
    match txn.read(key) {
        None => Ok(None),
        Some(entry) => match entry.value {
            ValueRef::ZSet(z) => Ok(Some(z)),
            _ => Err(err(ERR_WRONGTYPE)),
        },
    }
}

/// Like `read_zset` without counting hits (Redis's lookupKeyWrite).
pub fn write_zset<'t>(txn: &'t mut Txn<'_>, key: &[u8]) -> Result<Option<&'t SortedSet>, Frame> {
    match txn.live(key) {
        None => Ok(None),
        Some(entry) => match entry.value {
            ValueRef::ZSet(z) => Ok(Some(z)),
            _ => Err(err(ERR_WRONGTYPE)),
        },
    }
}

/// The sorted set at `key` to change in place (the caller checked its type).
pub fn zset_mut<'t>(txn: &'t mut Txn<'_>, key: &[u8]) -> Option<&'t mut SortedSet> {
    match txn.value_mut(key) {
        Some(ValueMut::ZSet(z)) => Some(z),
        _ => None,
    }
}

/// Deletes `key` if its sorted set became empty, as Redis never keeps an empty collection.
pub fn drop_if_empty(txn: &mut Txn<'_>, key: &[u8]) {
    if matches!(txn.get(key), Some(EntryRef { value: ValueRef::ZSet(z), .. }) if z.is_empty()) {
        txn.remove(key);
    }
}

/// Replaces `dst` with `result` (deleting it when empty); returns the result's size.
pub fn store(txn: &mut Txn<'_>, dst: &[u8], result: SortedSet) -> usize {
    let len = result.len();
    txn.remove(dst);
    if len > 0 {
        txn.insert(
            Bytes::copy_from_slice(dst),
            Entry::new(Value::ZSet(Box::new(result)), None),
        );
    }
    len
}

/// Members with optional scores as ZRANGE replies: flat in RESP2, `[member, score]` pairs in
/// RESP3.
pub fn members_reply(protocol: Protocol, items: Vec<(Bytes, f64)>, withscores: bool) -> Frame {
    if !withscores {
        return Frame::Array(items.into_iter().map(|(m, _)| Frame::Bulk(m)).collect());
    }
    if protocol == Protocol::Resp3 {
        return Frame::Array(
            items
                .into_iter()
                .map(|(m, s)| Frame::Array(vec![Frame::Bulk(m), score_frame(s)]))
                .collect(),
        );
    }
    let mut out = Vec::with_capacity(items.len() * 2);
    for (m, s) in items {
        out.push(Frame::Bulk(m));
        out.push(score_frame(s));
    }
    Frame::Array(out)
}

/// The commands of this family, for the node's dispatch table (`cmd::dispatch`).
pub(super) const COMMANDS: &[DispatchEntry] = &[
    ("zadd", |ctx, _, args| basic::zadd(ctx, args)),
    ("zincrby", |ctx, _, args| basic::zincrby(ctx, args)),
    ("zrem", |ctx, _, args| basic::zrem(ctx, args)),
    ("zscore", |ctx, _, args| basic::zscore(ctx, args)),
    ("zmscore", |ctx, _, args| basic::zmscore(ctx, args)),
    ("zcard", |ctx, _, args| basic::zcard(ctx, args)),
    ("zcount", |ctx, _, args| basic::zcount(ctx, args)),
    ("zlexcount", |ctx, _, args| basic::zlexcount(ctx, args)),
    ("zrank", |ctx, _, args| basic::zrank(ctx, args, false)),
    ("zrevrank", |ctx, _, args| basic::zrank(ctx, args, true)),
    ("zscan", |ctx, _, args| basic::zscan(ctx, args)),
    ("zrange", |ctx, session, args| {
        range::zrange_named(ctx, session, args, "zrange")
    }),
    ("zrangestore", |ctx, session, args| {
        range::zrange_named(ctx, session, args, "zrangestore")
    }),
    ("zrangebyscore", |ctx, session, args| {
        range::zrange_named(ctx, session, args, "zrangebyscore")
    }),
    ("zrevrangebyscore", |ctx, session, args| {
        range::zrange_named(ctx, session, args, "zrevrangebyscore")
    }),
    ("zrangebylex", |ctx, session, args| {
        range::zrange_named(ctx, session, args, "zrangebylex")
    }),
    ("zrevrangebylex", |ctx, session, args| {
        range::zrange_named(ctx, session, args, "zrevrangebylex")
    }),
    ("zrevrange", |ctx, session, args| {
        range::zrange_named(ctx, session, args, "zrevrange")
    }),
    ("zremrangebyrank", |ctx, _, args| {
        range::zremrange(ctx, args, range::RangeKind::Rank)
    }),
    ("zremrangebyscore", |ctx, _, args| {
        range::zremrange(ctx, args, range::RangeKind::Score)
    }),
    ("zremrangebylex", |ctx, _, args| {
        range::zremrange(ctx, args, range::RangeKind::Lex)
    }),
    ("zpopmin", |ctx, session, args| {
        pop::zpop(ctx, session, args, false)
    }),
    ("zpopmax", |ctx, session, args| {
        pop::zpop(ctx, session, args, true)
    }),
    ("zmpop", |ctx, _, args| pop::zmpop(ctx, args)),
    ("bzpopmin", |ctx, session, args| {
        pop::bzpop(ctx, session, args, false)
    }),
    ("bzpopmax", |ctx, session, args| {
        pop::bzpop(ctx, session, args, true)
    }),
    ("bzmpop", pop::bzmpop),
    ("zrandmember", |ctx, session, args| {
        pop::zrandmember(ctx, session, args)
    }),
    ("zunion", |ctx, session, args| {
        algebra::zunion(ctx, session, args)
    }),
    ("zinter", |ctx, session, args| {
        algebra::zinter(ctx, session, args)
    }),
    ("zdiff", |ctx, session, args| {
        algebra::zdiff(ctx, session, args)
    }),
    ("zintercard", |ctx, session, args| {
        algebra::zintercard(ctx, session, args)
    }),
    ("zunionstore", |ctx, session, args| {
        algebra::zunionstore(ctx, session, args)
    }),
    ("zinterstore", |ctx, session, args| {
        algebra::zinterstore(ctx, session, args)
    }),
    ("zdiffstore", |ctx, session, args| {
        algebra::zdiffstore(ctx, session, args)
    }),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_print_as_g17() {
        for (x, want) in [
            (0.1, "0.10000000000000001"),
            (5.0, "5"),
            (1e20, "1e+20"),
            (1e16, "10000000000000000"),
            (1e17, "1e+17"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (-2.5, "-2.5"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (123456789.123, "123456789.123"),
        ] {
            assert_eq!(format_g17(x), want, "{x}");
        }
    }

    #[test]
    fn scores_parse_as_redis() {
        assert_eq!(parse_score(b"1.5"), Some(1.5));
        assert_eq!(parse_score(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_score(b"+inf"), Some(f64::INFINITY));
        for bad in [&b""[..], b" 1", b"1 ", b"nan", b"abc", b"1e400", b"1e-400"] {
            assert_eq!(parse_score(bad), None, "{bad:?}");
        }
        assert_eq!(parse_score_bound(b"("), Some((0.0, true)));
        assert_eq!(parse_score_bound(b"( 5"), Some((5.0, true)));
        assert_eq!(parse_score_bound(b"5x"), None);
    }
}
