//! The server side of RESP: reading clients' commands, in multibulk (`*2\r\n$3\r\nGET\r\n...`) or
//! inline (`GET foo\r\n`) form, with Redis's limits and Redis's error texts.

mod split;

use bytes::{Bytes, BytesMut};

use split::split_args;

/// One client command: its arguments, name first, as sent.
///
/// Multibulk arguments are zero-copy slices of the connection's read buffer, so each one keeps
/// that buffer's whole allocation alive: copy (`Bytes::copy_from_slice`) what you store for long,
/// such as a value kept in the keyspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub args: Vec<Bytes>,
    /// The whole multibulk as it came (zero-copy, like `args`), so a proxy can forward it without
    /// encoding it again; `None` for an inline command, which is not RESP a server would take.
    pub raw: Option<Bytes>,
}

impl Request {
    /// The command name as sent (any case).
    pub fn name(&self) -> &[u8] {
        self.args.first().map(|a| a.as_ref()).unwrap_or_default()
    }
}

/// A protocol error in a client's input. Redis answers it with `-ERR Protocol error: ...` and
/// closes the connection; `Display` gives that text without the `ERR ` prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// `got` is the byte found where `$` was expected.
    #[error("Protocol error: expected '$', got '{}'", char::from(*got))]
    ExpectedDollar { got: u8 },
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
}

/// Limits on what one client can make the server hold while reading a command.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Redis's proto-max-bulk-len (512 MB).
    pub max_bulk_len: usize,
    /// Most arguments in one multibulk (Redis 7.0 refuses counts above `INT_MAX`).
    pub max_multibulk_len: usize,
    /// Longest inline command line (Redis: 64 KB).
    pub max_inline_len: usize,
    /// The client has yet to authenticate: as Redis 7.0, a multibulk of more than
    /// `UNAUTHENTICATED_MAX_ARGS` arguments or an argument longer than
    /// `UNAUTHENTICATED_MAX_BULK` bytes is a protocol error, so a client without the password
    /// cannot make the server buffer a large command.
    pub unauthenticated: bool,
}

/// Most arguments a client that has not authenticated may send in one multibulk (Redis: 10).
pub const UNAUTHENTICATED_MAX_ARGS: i64 = 10;
/// Longest argument a client that has not authenticated may send (Redis: 16384 bytes).
pub const UNAUTHENTICATED_MAX_BULK: i64 = 16384;

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_bulk_len: 512 * 1024 * 1024,
            max_multibulk_len: i32::MAX as usize,
            max_inline_len: 64 * 1024,
            unauthenticated: false,
        }
    }
}

impl RequestLimits {
    /// These limits for a client that has (`false`) or has not (`true`) yet authenticated.
    pub fn authenticating(self, unauthenticated: bool) -> Self {
        Self {
            unauthenticated,
            ..self
        }
    }
}

/// Most argument slots reserved up front, whatever count a multibulk header announces.
const MAX_PREALLOCATED_ARGS: usize = 1024;

/// Arguments whose positions are kept on the stack while a multibulk is checked (most commands
/// have fewer); only longer commands allocate for them.
const STACK_SPANS: usize = 8;

/// Reads one command from the front of `buf`, removing its bytes. `Ok(None)`: more bytes needed
/// (nothing removed). An empty inline line and `*0`/`*-1` yield `Ok(None)` after consuming them,
/// as Redis ignores them. Never allocates more than the bytes already received plus a bounded
/// amount, whatever length a prefix announces.
///
/// Mirrors `processMultibulkBuffer` / `processInlineBuffer` of Redis 7.0 (networking.c): the same
/// checks in the same order, so the same input gets the same error. Like Redis, the two bytes after
/// a bulk's data are skipped unchecked, and a NUL byte ends the search for a line end (Redis uses
/// `strchr`), so a header containing NUL waits for more input.
pub fn parse(buf: &mut BytesMut, limits: &RequestLimits) -> Result<Option<Request>, RequestError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf, limits),
        Some(_) => parse_inline(buf, limits),
    }
}

/// Position of the first `needle` in `buf[from..]`, as C's `strchr` finds it: a NUL byte ends the
/// search unsuccessfully.
fn find_line_end(buf: &[u8], from: usize, needle: u8) -> Option<usize> {
    let rest = buf.get(from..)?;
    let at = rest.iter().position(|&b| b == needle || b == 0)?;
    (rest[at] == needle).then_some(from + at)
}

/// Most digits `plain_header` reads: any 18-digit number fits an `i64`.
const PLAIN_HEADER_DIGITS: usize = 18;

/// The header line at `pos` in the form nearly every client sends, `<prefix><digits>\r` and one
/// more byte, read in one pass: its number and where its `\r` is. `None` for anything else (more
/// bytes needed, a sign, a leading zero, over 18 digits, any other byte), which the general path
/// (`find_line_end`, then `string_to_i64`) then judges as Redis does; on every line accepted here
/// the general path finds the same `\r` and the same number (see the test
/// `plain_headers_read_as_the_general_path_reads_them`).
#[inline]
fn plain_header(buf: &[u8], pos: usize, prefix: u8) -> Option<(i64, usize)> {
    let line = buf.get(pos..)?;
    if line.first() != Some(&prefix) {
        return None;
    }
    let mut value: i64 = 0;
    let mut end = 1;
    while let Some(&digit) = line.get(end) {
        if !digit.is_ascii_digit() || end > PLAIN_HEADER_DIGITS {
            break;
        }
        value = value * 10 + i64::from(digit - b'0');
        end += 1;
    }
    let digits = end - 1;
    let plain = digits > 0 && !(digits > 1 && line[1] == b'0');
    (plain && line.get(end) == Some(&b'\r') && line.len() >= end + 2).then_some((value, pos + end))
}

fn parse_multibulk(
    buf: &mut BytesMut,
    limits: &RequestLimits,
) -> Result<Option<Request>, RequestError> {
    let (count, cr) = match plain_header(buf, 0, b'*') {
        Some(header) => header,
        None => {
            let Some(cr) = find_line_end(buf, 0, b'\r') else {
                if buf.len() > limits.max_inline_len {
                    return Err(RequestError::TooBigMultibulkCount);
                }
                return Ok(None);
            };
            // The `\r` must be followed by one more byte (Redis does not check that it is `\n`).
            if cr + 2 > buf.len() {
                return Ok(None);
            }
            match string_to_i64(&buf[1..cr]) {
                Some(n) => (n, cr),
                None => return Err(RequestError::InvalidMultibulkLength),
            }
        }
    };
    if count > limits.max_multibulk_len as i64 {
        return Err(RequestError::InvalidMultibulkLength);
    }
    if limits.unauthenticated && count > UNAUTHENTICATED_MAX_ARGS {
        return Err(RequestError::UnauthenticatedMultibulkLength);
    }
    let mut pos = cr + 2;
    if count <= 0 {
        let _ = buf.split_to(pos);
        return Ok(None);
    }
    let count = count as usize;

    // (start, len) of each argument; turned into `Bytes` once the whole command is here. The
    // first `STACK_SPANS` stay on the stack, so a usual command allocates only its `args`.
    let mut first_spans = [(0usize, 0usize); STACK_SPANS];
    let mut more_spans: Vec<(usize, usize)> = Vec::new();
    let mut found = 0;
    while found < count {
        let (len, cr) = match plain_header(buf, pos, b'$') {
            Some(header) => header,
            None => {
                let Some(cr) = find_line_end(buf, pos, b'\r') else {
                    if buf.len() - pos > limits.max_inline_len {
                        return Err(RequestError::TooBigBulkCount);
                    }
                    return Ok(None);
                };
                if cr + 2 > buf.len() {
                    return Ok(None);
                }
                if buf[pos] != b'$' {
                    return Err(RequestError::ExpectedDollar { got: buf[pos] });
                }
                match string_to_i64(&buf[pos + 1..cr]) {
                    Some(n) if n >= 0 => (n, cr),
                    _ => return Err(RequestError::InvalidBulkLength),
                }
            }
        };
        if len as u64 > limits.max_bulk_len as u64 {
            return Err(RequestError::InvalidBulkLength);
        }
        if limits.unauthenticated && len > UNAUTHENTICATED_MAX_BULK {
            return Err(RequestError::UnauthenticatedBulkLength);
        }
        let len = len as usize;
        pos = cr + 2;
        // Data plus the two bytes that end it; skipped by length, never rescanned.
        if buf.len() - pos < len + 2 {
            return Ok(None);
        }
        if found < STACK_SPANS {
            first_spans[found] = (pos, len);
        } else {
            if more_spans.is_empty() {
                more_spans.reserve((count - STACK_SPANS).min(MAX_PREALLOCATED_ARGS));
            }
            more_spans.push((pos, len));
        }
        found += 1;
        pos += len + 2;
    }

    let bytes = buf.split_to(pos).freeze();
    let mut args = Vec::with_capacity(found);
    for &(start, len) in first_spans[..found.min(STACK_SPANS)]
        .iter()
        .chain(&more_spans)
    {
        args.push(bytes.slice(start..start + len));
    }
    Ok(Some(Request {
        args,
        raw: Some(bytes),
    }))
}

fn parse_inline(
    buf: &mut BytesMut,
    limits: &RequestLimits,
) -> Result<Option<Request>, RequestError> {
    let Some(newline) = find_line_end(buf, 0, b'\n') else {
        if buf.len() > limits.max_inline_len {
            return Err(RequestError::TooBigInline);
        }
        return Ok(None);
    };
    let end = if newline > 0 && buf[newline - 1] == b'\r' {
        newline - 1
    } else {
        newline
    };
    let args = split_args(&buf[..end]).ok_or(RequestError::UnbalancedQuotes)?;
    let _ = buf.split_to(newline + 1);
    if args.is_empty() {
        return Ok(None);
    }
    Ok(Some(Request { args, raw: None }))
}

/// Redis's `string2ll`: optional `-`, no `+`, no leading zeros (except `0` itself), no blanks, no
/// overflow. Lengths in RESP headers are read with it, so `*01` and `$ 3` are refused as Redis does.
pub fn string_to_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [] => return None,
        [b'0'] => return Some(0),
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut value: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        if value > i64::MAX as u64 + 1 {
            return None;
        }
        Some((value as i64).wrapping_neg())
    } else {
        i64::try_from(value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> (Result<Vec<Vec<Bytes>>, RequestError>, usize) {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        for _ in 0..1000 {
            let before = buf.len();
            match parse(&mut buf, &RequestLimits::default()) {
                Ok(Some(r)) => out.push(r.args),
                Ok(None) if buf.len() < before => continue,
                Ok(None) => return (Ok(out), buf.len()),
                Err(e) => return (Err(e), buf.len()),
            }
        }
        panic!("parse did not settle");
    }

    fn args(list: &[&str]) -> Vec<Bytes> {
        list.iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    /// Commands longer than the stack's span slots, and the raw frame kept for forwarding.
    #[test]
    fn long_commands_and_the_raw_frame() {
        let names: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
        let mut wire = format!("*{}\r\n", names.len() + 1).into_bytes();
        wire.extend_from_slice(b"$4\r\nMGET\r\n");
        for name in &names {
            wire.extend_from_slice(format!("${}\r\n{name}\r\n", name.len()).as_bytes());
        }
        let frame_len = wire.len();
        wire.extend_from_slice(b"PING\r\n");
        let mut buf = BytesMut::from(&wire[..]);
        let request = parse(&mut buf, &RequestLimits::default())
            .expect("valid")
            .expect("complete");
        let mut expected = vec!["MGET"];
        expected.extend(names.iter().map(|n| n.as_str()));
        assert_eq!(request.args, args(&expected));
        assert_eq!(request.raw.as_deref(), Some(&wire[..frame_len]));
        let inline = parse(&mut buf, &RequestLimits::default())
            .expect("valid")
            .expect("complete");
        assert_eq!(inline.args, args(&["PING"]));
        assert_eq!(inline.raw, None);
        // Cut anywhere before its end, the long command waits for more.
        for cut in 1..frame_len {
            let mut partial = BytesMut::from(&wire[..cut]);
            assert_eq!(parse(&mut partial, &RequestLimits::default()), Ok(None));
            assert_eq!(partial.len(), cut);
        }
    }

    fn error_of(input: &[u8]) -> RequestError {
        match parse_all(input).0 {
            Err(e) => e,
            Ok(v) => panic!("expected an error for {input:?}, got {v:?}"),
        }
    }

    #[test]
    fn multibulk() {
        let (r, left) = parse_all(b"*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n*1\r\n$4\r\nPING\r\n");
        assert_eq!(r.unwrap(), vec![args(&["GET", "foo"]), args(&["PING"])]);
        assert_eq!(left, 0);
    }

    #[test]
    fn binary_and_empty_arguments() {
        let (r, _) = parse_all(b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$3\r\na\0b\r\n");
        assert_eq!(
            r.unwrap(),
            vec![vec![
                Bytes::from_static(b"SET"),
                Bytes::new(),
                Bytes::from_static(b"a\0b")
            ]]
        );
    }

    #[test]
    fn bytes_after_bulk_data_are_skipped_unchecked() {
        // Redis answers PONG twice to this.
        let (r, _) = parse_all(b"*1\r\n$4\r\nPINGxxPING\r\n");
        assert_eq!(r.unwrap(), vec![args(&["PING"]), args(&["PING"])]);
    }

    #[test]
    fn empty_commands_are_consumed_and_ignored() {
        let (r, left) = parse_all(b"*0\r\n*-1\r\n\r\n\n   \r\n*-5\r\nPING\r\n");
        assert_eq!(r.unwrap(), vec![args(&["PING"])]);
        assert_eq!(left, 0);
        let mut buf = BytesMut::from(&b"*0\r\n"[..]);
        assert_eq!(parse(&mut buf, &RequestLimits::default()), Ok(None));
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_input_byte_by_byte() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\nECHO \"a b\"\r\n";
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in input.iter() {
            buf.extend_from_slice(&[b]);
            let before = buf.len();
            match parse(&mut buf, &RequestLimits::default()) {
                Ok(Some(r)) => got.push(r.args),
                Ok(None) => assert_eq!(buf.len(), before, "nothing consumed while incomplete"),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(
            got,
            vec![args(&["SET", "k", "hello"]), args(&["ECHO", "a b"])]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn multibulk_length_errors() {
        for input in [
            &b"*abc\r\n"[..],
            b"*01\r\n",
            b"*\r\n",
            b"*+1\r\n",
            b"*2147483648\r\n",
            b"*1 \r\n",
        ] {
            assert_eq!(
                error_of(input),
                RequestError::InvalidMultibulkLength,
                "{input:?}"
            );
        }
        // INT_MAX itself is accepted (Redis then waits for the arguments).
        assert_eq!(parse_all(b"*2147483647\r\n").0, Ok(vec![]));
    }

    #[test]
    fn bulk_length_errors() {
        for input in [
            &b"*1\r\n$536870913\r\n"[..],
            b"*1\r\n$-1\r\n",
            b"*1\r\n$\r\n",
            b"*1\r\n$03\r\n",
            b"*1\r\n$99999999999999999999\r\n",
        ] {
            assert_eq!(
                error_of(input),
                RequestError::InvalidBulkLength,
                "{input:?}"
            );
        }
        // 512 MB exactly is accepted, and nothing of that size is allocated while waiting.
        let mut buf = BytesMut::from(&b"*1\r\n$536870912\r\nabc"[..]);
        assert_eq!(parse(&mut buf, &RequestLimits::default()), Ok(None));
        assert!(buf.capacity() < 1024 * 1024);
    }

    #[test]
    fn unauthenticated_limits_as_redis() {
        // Checked against redis-server 7.0.15 with requirepass set.
        let strict = RequestLimits::default().authenticating(true);
        let parse_strict = |input: &[u8]| request_parse_with(input, &strict);
        assert!(matches!(
            parse_strict(b"*11\r\n"),
            Err(RequestError::UnauthenticatedMultibulkLength)
        ));
        assert!(matches!(
            parse_strict(b"*2\r\n$16385\r\n"),
            Err(RequestError::UnauthenticatedBulkLength)
        ));
        // At the limits, and an invalid length stays invalid first.
        assert!(matches!(parse_strict(b"*10\r\n$16384\r\n"), Ok(None)));
        assert!(matches!(
            parse_strict(b"*-x\r\n"),
            Err(RequestError::InvalidMultibulkLength)
        ));
        assert!(matches!(
            parse_strict(b"*1\r\n$-5\r\n"),
            Err(RequestError::InvalidBulkLength)
        ));
        assert_eq!(
            RequestError::UnauthenticatedBulkLength.to_string(),
            "Protocol error: unauthenticated bulk length"
        );
        // Authenticated: the usual limits.
        let relaxed = strict.authenticating(false);
        assert!(matches!(request_parse_with(b"*11\r\n", &relaxed), Ok(None)));
    }

    fn request_parse_with(
        input: &[u8],
        limits: &RequestLimits,
    ) -> Result<Option<Request>, RequestError> {
        parse(&mut BytesMut::from(input), limits)
    }

    #[test]
    fn expected_dollar() {
        let e = error_of(b"*1\r\nx3\r\n");
        assert_eq!(e, RequestError::ExpectedDollar { got: b'x' });
        assert_eq!(e.to_string(), "Protocol error: expected '$', got 'x'");
        assert_eq!(
            error_of(b"*2\r\n$1\r\na\r\n:1\r\n"),
            RequestError::ExpectedDollar { got: b':' }
        );
    }

    #[test]
    fn too_big_count_strings() {
        let mut input = b"*".to_vec();
        input.extend(std::iter::repeat_n(b'1', 64 * 1024 - 1));
        assert_eq!(parse_all(&input).0, Ok(vec![]), "exactly 64 KB still waits");
        input.push(b'1');
        assert_eq!(error_of(&input), RequestError::TooBigMultibulkCount);

        let mut input = b"*1\r\n$".to_vec();
        input.extend(std::iter::repeat_n(b'1', 64 * 1024));
        assert_eq!(error_of(&input), RequestError::TooBigBulkCount);

        let input = vec![b'a'; 64 * 1024 + 1];
        assert_eq!(error_of(&input), RequestError::TooBigInline);
        assert_eq!(parse_all(&input[1..]).0, Ok(vec![]));
    }

    #[test]
    fn nul_hides_the_line_end_as_in_redis() {
        assert_eq!(parse_all(b"PING\0\nPING\r\n"), (Ok(vec![]), 12));
        assert_eq!(parse_all(b"*1\0\r\n$4\r\nPING\r\n").0, Ok(vec![]));
    }

    #[test]
    fn inline_splitting() {
        let cases: &[(&[u8], &[&[u8]])] = &[
            (b"PING\r\n", &[b"PING"]),
            (b"PING\n", &[b"PING"]),
            (b"  set  a\tb  \r\n", &[b"set", b"a", b"b"]),
            (b"ECHO \"\\x41\\n\"\r\n", &[b"ECHO", b"A\n"]),
            (b"ECHO a\"b c\"\r\n", &[b"ECHO", b"ab c"]),
            (b"ECHO 'a\\'b'\r\n", &[b"ECHO", b"a'b"]),
            (b"ECHO \"a\\\\qb\"\r\n", &[b"ECHO", b"a\\qb"]),
            (
                b"ECHO \"\\q\\t\\r\\b\\a\"\r\n",
                &[b"ECHO", b"q\t\r\x08\x07"],
            ),
            (b"ECHO \"\\xZZ\"\r\n", &[b"ECHO", b"xZZ"]),
            (b"ECHO a\x0bb\r\n", &[b"ECHO", b"a\x0bb"]),
            (b"ECHO \"\"\r\n", &[b"ECHO", b""]),
            (b"$1\r\n", &[b"$1"]),
        ];
        for (input, want) in cases {
            let want: Vec<Bytes> = want.iter().map(|a| Bytes::copy_from_slice(a)).collect();
            assert_eq!(parse_all(input), (Ok(vec![want]), 0), "{input:?}");
        }
    }

    #[test]
    fn unbalanced_quotes() {
        for input in [
            &b"\"abc\r\n"[..],
            b"ECHO \"a\"b\r\n",
            b"ECHO 'a\\'\r\n",
            b"ECHO 'a'b\r\n",
            b"ECHO \"a\\\r\n",
        ] {
            assert_eq!(error_of(input), RequestError::UnbalancedQuotes, "{input:?}");
        }
    }

    /// Every header the fast path accepts reads as the general path reads it: the same `\r`
    /// and the same number. Checked over every line of up to 5 bytes from an alphabet of digits
    /// and the bytes that matter to the general path (sign, blank, CR, LF, NUL, another letter),
    /// and over 18- to 20-digit numbers.
    #[test]
    fn plain_headers_read_as_the_general_path_reads_them() {
        let alphabet = b"0123456789-+ \r\n\0x";
        let mut lines: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..5 {
            let longer: Vec<Vec<u8>> = lines
                .iter()
                .filter(|line| line.len() == lines.last().map_or(0, Vec::len))
                .flat_map(|line| {
                    alphabet.iter().map(move |&b| {
                        let mut next = line.clone();
                        next.push(b);
                        next
                    })
                })
                .collect();
            lines.extend(longer);
        }
        for digits in 17..=21 {
            for first in [b'1', b'9'] {
                let mut line = vec![first; 1];
                line.extend(std::iter::repeat_n(b'9', digits - 1));
                line.extend_from_slice(b"\r\n");
                lines.push(line);
            }
        }
        let mut accepted = 0;
        for line in &lines {
            for prefix in [b'*', b'$'] {
                let mut buf = b"ab".to_vec();
                buf.push(prefix);
                buf.extend_from_slice(line);
                let Some((value, cr)) = plain_header(&buf, 2, prefix) else {
                    continue;
                };
                accepted += 1;
                assert_eq!(find_line_end(&buf, 2, b'\r'), Some(cr), "{buf:?}");
                assert!(cr + 2 <= buf.len(), "{buf:?}");
                assert_eq!(string_to_i64(&buf[3..cr]), Some(value), "{buf:?}");
            }
        }
        assert!(accepted > 1000, "the fast path took {accepted} lines");
    }

    #[test]
    fn string_to_i64_matches_string2ll() {
        assert_eq!(string_to_i64(b"0"), Some(0));
        assert_eq!(string_to_i64(b"-1"), Some(-1));
        assert_eq!(string_to_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(string_to_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"00",
            b"+1",
            b" 1",
            b"1a",
            b"9223372036854775808",
        ] {
            assert_eq!(string_to_i64(bad), None, "{bad:?}");
        }
    }
}
