//! The timeout argument of the blocking commands (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP,
//! BZPOPMIN, BZPOPMAX, BZMPOP), read once here with Redis 7.0's rules and error texts: the shard
//! node blocks for it and the proxy extends its backend deadline by it, so the two cannot
//! disagree on what `0x1p3` or `1e1` means. XREAD and XREADGROUP block only with their BLOCK
//! option, in milliseconds (`stream_block`).

use std::time::Duration;

use bytes::Bytes;

use crate::long_double::LongDouble;

/// Why a timeout argument is refused, worded as Redis's getTimeoutFromObjectOrReply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimeoutError {
    #[error("ERR timeout is not a float or out of range")]
    NotAFloat,
    /// Also what Redis answers for a timeout too large for a C `long long` of milliseconds.
    #[error("ERR timeout is negative")]
    Negative,
}

/// The timeout argument of the blocking command `name` (a table name, lowercase), whose
/// arguments (name included) are `args`; `None` for a command that takes no such timeout.
/// Redis puts it last, except in BLMPOP and BZMPOP where it comes first.
pub fn timeout_argument<'a>(name: &str, args: &'a [Bytes]) -> Option<&'a Bytes> {
    match name {
        "blpop" | "brpop" | "brpoplpush" | "blmove" | "bzpopmin" | "bzpopmax" => args.last(),
        "blmpop" | "bzmpop" => args.get(1),
        _ => None,
    }
}

/// The milliseconds of the BLOCK option of XREAD / XREADGROUP (`args`: name included), as Redis
/// reads them (a 64-bit integer; 0 waits forever): `None` when the command has no BLOCK option
/// before STREAMS, or its value is one Redis refuses (the node then answers the error).
/// `Some(None)`: forever.
pub fn stream_block(args: &[Bytes]) -> Option<Option<Duration>> {
    let mut i = 1;
    while let Some(arg) = args.get(i) {
        if arg.eq_ignore_ascii_case(b"STREAMS") {
            return None;
        }
        if arg.eq_ignore_ascii_case(b"BLOCK") {
            let ms: i64 = std::str::from_utf8(args.get(i + 1)?).ok()?.parse().ok()?;
            return match u64::try_from(ms).ok()? {
                0 => Some(None),
                ms => Some(Some(Duration::from_millis(ms))),
            };
        }
        // GROUP takes two arguments, COUNT one; flags (NOACK) none.
        i += if arg.eq_ignore_ascii_case(b"GROUP") {
            3
        } else if arg.eq_ignore_ascii_case(b"COUNT") {
            2
        } else {
            1
        };
    }
    None
}

/// A blocking command's timeout in seconds as Redis 7.0 reads it: a long double (no leading
/// space, no trailing bytes, not NaN), times 1000, rounded up to whole milliseconds, where
/// anything a C `long long` cannot hold becomes LLONG_MIN (so `inf` is "negative"). `None`: wait
/// forever (0, or a fraction that rounds to 0 such as -0.0001).
pub fn parse_timeout(arg: &[u8]) -> Result<Option<Duration>, TimeoutError> {
    let (seconds, nonzero) = if let Some(hex) = parse_hex_float(arg) {
        if hex.0.is_nan() {
            return Err(TimeoutError::NotAFloat);
        }
        hex
    } else {
        if LongDouble::parse(arg).is_none() {
            return Err(TimeoutError::NotAFloat);
        }
        let seconds: f64 = std::str::from_utf8(arg)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(TimeoutError::NotAFloat)?;
        let mut mantissa = arg.iter().take_while(|c| !matches!(c, b'e' | b'E'));
        (seconds, mantissa.any(|c| (b'1'..=b'9').contains(c)))
    };
    let mut ms = (seconds * 1000.0).ceil();
    // Below f64's range but not long double's (1e-400): still a positive time, 1 ms in Redis.
    if ms == 0.0 && nonzero && !arg.starts_with(b"-") {
        ms = 1.0;
    }
    if ms.is_nan() || ms >= (1u64 << 63) as f64 || ms < 0.0 {
        return Err(TimeoutError::Negative);
    }
    if ms == 0.0 {
        return Ok(None);
    }
    Ok(Some(Duration::from_millis(ms as u64)))
}

/// `strtold`'s hexadecimal form (`0x1.8p3`, `-0X10`), which Redis accepts for timeouts: the value
/// and whether any mantissa digit is nonzero; `None` when `arg` is not one.
fn parse_hex_float(arg: &[u8]) -> Option<(f64, bool)> {
    let (negative, rest) = match arg.first()? {
        b'-' => (true, &arg[1..]),
        b'+' => (false, &arg[1..]),
        _ => (false, arg),
    };
    let rest = rest
        .strip_prefix(b"0x")
        .or_else(|| rest.strip_prefix(b"0X"))?;
    let mut value = 0f64;
    let mut scale = 0i64;
    let mut digits = 0usize;
    let mut nonzero = false;
    let mut seen_point = false;
    let mut i = 0;
    while i < rest.len() {
        let c = rest[i];
        if c == b'.' && !seen_point {
            seen_point = true;
        } else if let Some(d) = (c as char).to_digit(16) {
            value = value * 16.0 + f64::from(d);
            nonzero |= d != 0;
            digits += 1;
            if seen_point {
                scale -= 4;
            }
        } else {
            break;
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    if let Some(exp) = rest[i..]
        .strip_prefix(b"p")
        .or_else(|| rest[i..].strip_prefix(b"P"))
    {
        let text = std::str::from_utf8(exp).ok()?;
        let body = text.strip_prefix(['+', '-']).unwrap_or(text);
        if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        scale += text.parse::<i64>().unwrap_or(if text.starts_with('-') {
            i64::MIN / 2
        } else {
            i64::MAX / 2
        });
    } else if i != rest.len() {
        return None;
    }
    if nonzero {
        // Outside a long double's range, strtold fails with ERANGE and Redis refuses it.
        let exponent = value.log2().floor() as i64 + scale;
        if !(-16445..16384).contains(&exponent) {
            return Some((f64::NAN, true));
        }
    }
    let magnitude = value * 2f64.powi(scale.clamp(-100_000, 100_000) as i32);
    Some((if negative { -magnitude } else { magnitude }, nonzero))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_as_redis_7_0() {
        assert_eq!(parse_timeout(b"0"), Ok(None));
        assert_eq!(parse_timeout(b"-0.0001"), Ok(None));
        assert_eq!(parse_timeout(b"1e-400"), Ok(Some(Duration::from_millis(1))));
        assert_eq!(parse_timeout(b"0.5"), Ok(Some(Duration::from_millis(500))));
        assert_eq!(parse_timeout(b"0x10"), Ok(Some(Duration::from_secs(16))));
        assert_eq!(parse_timeout(b"0x.8"), Ok(Some(Duration::from_millis(500))));
        assert_eq!(
            parse_timeout(b"0x1p-1"),
            Ok(Some(Duration::from_millis(500)))
        );
        assert_eq!(parse_timeout(b"-0x1"), Err(TimeoutError::Negative));
        assert_eq!(parse_timeout(b"0x1p9999"), Err(TimeoutError::Negative));
        assert_eq!(parse_timeout(b"0x1p99999"), Err(TimeoutError::NotAFloat));
        assert_eq!(parse_timeout(b"-1"), Err(TimeoutError::Negative));
        assert_eq!(parse_timeout(b"inf"), Err(TimeoutError::Negative));
        assert_eq!(parse_timeout(b"1e400"), Err(TimeoutError::Negative));
        for bad in [
            &b"abc"[..],
            b"",
            b" 1",
            b"1 ",
            b"nan",
            b"1e3x",
            b"0x",
            b"0x1p",
            b"0x1g",
        ] {
            assert_eq!(parse_timeout(bad), Err(TimeoutError::NotAFloat), "{bad:?}");
        }
    }

    #[test]
    fn stream_block_is_read_before_streams_only() {
        let args = |line: &str| -> Vec<Bytes> {
            line.split(' ')
                .map(|a| Bytes::copy_from_slice(a.as_bytes()))
                .collect()
        };
        let ms = |n| Some(Some(Duration::from_millis(n)));
        assert_eq!(stream_block(&args("XREAD BLOCK 100 STREAMS s $")), ms(100));
        assert_eq!(
            stream_block(&args("XREAD count 5 block 0 STREAMS s $")),
            Some(None)
        );
        assert_eq!(stream_block(&args("XREAD STREAMS BLOCK 5 0 0")), None);
        assert_eq!(stream_block(&args("XREAD COUNT 1 STREAMS s 0")), None);
        assert_eq!(stream_block(&args("XREAD BLOCK -1 STREAMS s $")), None);
        assert_eq!(stream_block(&args("XREAD BLOCK x STREAMS s $")), None);
        // A group or consumer named BLOCK is not the option.
        assert_eq!(
            stream_block(&args("XREADGROUP GROUP BLOCK c NOACK STREAMS s >")),
            None
        );
        assert_eq!(
            stream_block(&args("XREADGROUP GROUP g BLOCK NOACK BLOCK 7 STREAMS s >")),
            ms(7)
        );
    }
}
