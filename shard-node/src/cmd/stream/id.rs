//! Stream ID arguments as Redis 7.0 reads them (streamGenericParseIDOrReply): `ms-seq`, `ms`
//! (the sequence then defaults), `-` and `+`, `ms-*` where XADD allows it, `(` for an exclusive
//! range bound; the numbers as C's strtoull takes them once string2ll has refused them.

use tessera_proto::resp::Frame;

use super::super::parse::{err, parse_i64};
use crate::keyspace::stream::StreamId;

pub const ERR_INVALID_ID: &str = "ERR Invalid stream ID specified as stream command argument";

/// A parsed ID and whether its sequence was given (false for XADD's `ms-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedId {
    pub id: StreamId,
    pub seq_given: bool,
}

/// Redis's string2ull: string2ll when it succeeds (refusing negatives), else strtoull's rules
/// (leading spaces, a sign, leading zeros; a `-` negates modulo 2^64; out of range fails).
fn string_to_u64(s: &[u8]) -> Option<u64> {
    if let Some(n) = parse_i64(s) {
        return u64::try_from(n).ok();
    }
    let mut rest = s;
    while let Some((c, tail)) = rest.split_first() {
        if matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
            rest = tail;
        } else {
            break;
        }
    }
    let mut negative = false;
    if let Some((c, tail)) = rest.split_first() {
        if *c == b'+' || *c == b'-' {
            negative = *c == b'-';
            rest = tail;
        }
    }
    if rest.is_empty() || !rest.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for d in rest {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(if negative { n.wrapping_neg() } else { n })
}

/// Parses an ID. `strict` refuses `-` and `+`; `allow_auto_seq` accepts `ms-*` (XADD).
pub fn parse_id(
    arg: &[u8],
    missing_seq: u64,
    strict: bool,
    allow_auto_seq: bool,
) -> Result<ParsedId, Frame> {
    let invalid = || err(ERR_INVALID_ID);
    if arg.len() > 127 {
        return Err(invalid());
    }
    // Redis copies the argument into a C string: a NUL ends it.
    let arg = match arg.iter().position(|&c| c == 0) {
        Some(nul) => &arg[..nul],
        None => arg,
    };
    if arg == b"-" || arg == b"+" {
        if strict {
            return Err(invalid());
        }
        let id = if arg == b"-" {
            StreamId::MIN
        } else {
            StreamId::MAX
        };
        return Ok(ParsedId {
            id,
            seq_given: true,
        });
    }
    let (ms_part, seq_part) = match arg.iter().position(|&c| c == b'-') {
        Some(dash) => (&arg[..dash], Some(&arg[dash + 1..])),
        None => (arg, None),
    };
    let ms = string_to_u64(ms_part).ok_or_else(invalid)?;
    let (seq, seq_given) = match seq_part {
        Some(b"*") if allow_auto_seq => (0, false),
        Some(seq) => (string_to_u64(seq).ok_or_else(invalid)?, true),
        None => (missing_seq, true),
    };
    Ok(ParsedId {
        id: StreamId::new(ms, seq),
        seq_given,
    })
}

/// A strict ID (no `-` / `+`), the sequence defaulting to 0.
pub fn strict_id(arg: &[u8]) -> Result<StreamId, Frame> {
    parse_id(arg, 0, true, false).map(|p| p.id)
}

/// A range bound (XRANGE, XPENDING, XAUTOCLAIM): `(id` is exclusive, parsed strictly.
pub fn interval_id(arg: &[u8], missing_seq: u64) -> Result<(StreamId, bool), Frame> {
    if arg.len() > 1 && arg[0] == b'(' {
        Ok((parse_id(&arg[1..], missing_seq, true, false)?.id, true))
    } else {
        Ok((parse_id(arg, missing_seq, false, false)?.id, false))
    }
}

/// The inclusive start of a range from its argument.
pub fn range_start(arg: &[u8]) -> Result<StreamId, Frame> {
    let (id, exclusive) = interval_id(arg, 0)?;
    if exclusive {
        id.incr()
            .ok_or_else(|| err("ERR invalid start ID for the interval"))
    } else {
        Ok(id)
    }
}

/// The inclusive end of a range from its argument.
pub fn range_end(arg: &[u8]) -> Result<StreamId, Frame> {
    let (id, exclusive) = interval_id(arg, u64::MAX)?;
    if exclusive {
        id.decr()
            .ok_or_else(|| err("ERR invalid end ID for the interval"))
    } else {
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_as_redis_does() {
        let p = |s: &str| parse_id(s.as_bytes(), 7, false, true).ok().map(|p| p.id);
        assert_eq!(p("1-2"), Some(StreamId::new(1, 2)));
        assert_eq!(p("1"), Some(StreamId::new(1, 7)));
        assert_eq!(p("01-02"), Some(StreamId::new(1, 2)));
        assert_eq!(p(" 1-+2"), Some(StreamId::new(1, 2)));
        assert_eq!(p("-1"), None);
        // The first dash splits: an empty time part is refused, as by Redis.
        assert_eq!(p("-05"), None);
        assert_eq!(p("+5-1"), Some(StreamId::new(5, 1)));
        assert_eq!(p("1-"), None);
        assert_eq!(p("a"), None);
        assert_eq!(
            p("18446744073709551615-18446744073709551615"),
            Some(StreamId::MAX)
        );
        assert_eq!(p("18446744073709551616"), None);
        assert_eq!(p("-"), Some(StreamId::MIN));
        assert!(!parse_id(b"5-*", 0, true, true).unwrap().seq_given);
        assert!(parse_id(b"5-*", 0, true, false).is_err());
        assert!(parse_id(b"+", 0, true, false).is_err());
    }
}
