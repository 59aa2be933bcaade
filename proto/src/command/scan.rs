//! The arguments of the SCAN family (SCAN, HSCAN, SSCAN, ZSCAN), read once here with Redis 7.0's
//! rules and error texts: the shard node walks its keyspace by them and the proxy checks them
//! before it splits a SCAN across the nodes, so the two cannot disagree on a cursor or an option.

use bytes::Bytes;

use crate::resp::request::string_to_i64;

/// Why SCAN arguments are refused, worded as Redis's `scanGenericCommand`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("ERR invalid cursor")]
    InvalidCursor,
    #[error("ERR value is not an integer or out of range")]
    NotAnInteger,
    #[error("ERR syntax error")]
    Syntax,
}

/// `[MATCH pattern] [COUNT n] [TYPE type]` after the cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanOptions<'a> {
    /// `None` for no MATCH, or `*` (which matches everything).
    pub pattern: Option<&'a Bytes>,
    /// How much work a call does before it returns (Redis: buckets; 10 by default).
    pub count: usize,
    /// TYPE, which only SCAN takes.
    pub type_name: Option<&'a Bytes>,
}

/// A SCAN-family call: the cursor and the options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanArgs<'a> {
    pub cursor: u64,
    pub options: ScanOptions<'a>,
}

/// Parses `args[cursor_at]` as the cursor and what follows as options, in Redis's order (the
/// cursor first). `with_type`: the command is SCAN, the only one that takes TYPE.
pub fn parse_scan(
    args: &[Bytes],
    cursor_at: usize,
    with_type: bool,
) -> Result<ScanArgs<'_>, ScanError> {
    let cursor = args
        .get(cursor_at)
        .and_then(|c| parse_cursor(c))
        .ok_or(ScanError::InvalidCursor)?;
    let mut options = ScanOptions {
        pattern: None,
        count: 10,
        type_name: None,
    };
    let mut i = cursor_at + 1;
    while i < args.len() {
        let Some(value) = args.get(i + 1) else {
            return Err(ScanError::Syntax);
        };
        let option = &args[i];
        if option.eq_ignore_ascii_case(b"count") {
            match string_to_i64(value) {
                Some(n) if n >= 1 => options.count = usize::try_from(n).unwrap_or(usize::MAX),
                Some(_) => return Err(ScanError::Syntax),
                None => return Err(ScanError::NotAnInteger),
            }
        } else if option.eq_ignore_ascii_case(b"match") {
            options.pattern = Some(value).filter(|p| p.as_ref() != b"*");
        } else if with_type && option.eq_ignore_ascii_case(b"type") {
            options.type_name = Some(value);
        } else {
            return Err(ScanError::Syntax);
        }
        i += 2;
    }
    Ok(ScanArgs { cursor, options })
}

/// Redis's `parseScanCursorOrReply`: `strtoul` rules (an optional sign, then digits; empty reads
/// as 0; a negative number wraps; no leading blank, nothing after the digits, no overflow).
pub fn parse_cursor(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return Some(0);
    }
    let (negative, digits) = match text[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut value: u64 = 0;
    for &d in digits {
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(if negative {
        value.wrapping_neg()
    } else {
        value
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(parts: &[&str]) -> Vec<Bytes> {
        parts
            .iter()
            .map(|p| Bytes::copy_from_slice(p.as_bytes()))
            .collect()
    }

    #[test]
    fn cursor_follows_strtoul() {
        assert_eq!(parse_cursor(b""), Some(0));
        assert_eq!(parse_cursor(b"+7"), Some(7));
        assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551615"), Some(u64::MAX));
        for bad in [&b"x"[..], b" 1", b"1 ", b"-", b"99999999999999999999999"] {
            assert_eq!(parse_cursor(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn options_as_redis_reads_them() {
        let scan = args(&["SCAN", "5", "match", "a*", "COUNT", "100", "type", "hash"]);
        let parsed = parse_scan(&scan, 1, true).expect("valid");
        assert_eq!(parsed.cursor, 5);
        assert_eq!(parsed.options.count, 100);
        assert_eq!(parsed.options.pattern.map(|p| &p[..]), Some(&b"a*"[..]));
        assert_eq!(parsed.options.type_name.map(|t| &t[..]), Some(&b"hash"[..]));
        let star = args(&["SCAN", "0", "MATCH", "*"]);
        assert_eq!(
            parse_scan(&star, 1, true).expect("valid").options.pattern,
            None
        );
        for (bad, error) in [
            (&["SCAN", "x"][..], ScanError::InvalidCursor),
            (&["SCAN", "x", "COUNT", "y"], ScanError::InvalidCursor),
            (&["SCAN", "0", "COUNT", "0"], ScanError::Syntax),
            (&["SCAN", "0", "COUNT", "y"], ScanError::NotAnInteger),
            (&["SCAN", "0", "MATCH"], ScanError::Syntax),
            (&["SCAN", "0", "BOGUS", "1"], ScanError::Syntax),
        ] {
            assert_eq!(parse_scan(&args(bad), 1, true), Err(error), "{bad:?}");
        }
        let hscan = args(&["HSCAN", "h", "0", "TYPE", "hash"]);
        assert_eq!(parse_scan(&hscan, 2, false), Err(ScanError::Syntax));
    }
}
