//! Reading replies: `check` finds where a complete frame ends without building it (the proxy
//! forwards replies as raw bytes), `Checker` does the same resumably for replies that arrive in
//! many reads, and `parse` builds the `Frame`. Limits are checked before anything is allocated.

use bytes::Bytes;

use super::{Frame, FrameError, FrameLimits};

/// The length of the complete frame at the start of `buf`, or `None` when more bytes are needed.
/// Allocates nothing: the proxy uses it to forward replies as raw bytes.
pub fn check(buf: &[u8], limits: &FrameLimits) -> Result<Option<usize>, FrameError> {
    scan(buf, 0, limits, 0)
}

/// Parses the complete frame at the start of `buf`, returning it and the bytes it used, or `None`
/// when more bytes are needed. Accepts RESP2 and RESP3.
///
/// RESP3 types without a `Frame` of their own take their RESP2 form: a big number (`(`) becomes a
/// bulk string, a blob error (`!`) an error; attributes (`|`) are skipped and the frame they
/// annotate is returned. A verbatim string loses its 3-letter format (`txt:`, `mkd:`).
pub fn parse(buf: &[u8], limits: &FrameLimits) -> Result<Option<(Frame, usize)>, FrameError> {
    parse_at(buf, 0, limits, 0)
}

/// A frame's type byte, the rest of its first line, and the position after that line.
type Header<'a> = (u8, &'a [u8], usize);

/// Where a bulk's data lies: start, length, and the position after its trailing `\r\n`.
type BulkSpan = (usize, usize, usize);

/// The `\r\n`-terminated line after the type byte at `pos`.
fn header<'a>(
    buf: &'a [u8],
    pos: usize,
    limits: &FrameLimits,
) -> Result<Option<Header<'a>>, FrameError> {
    let Some(&tag) = buf.get(pos) else {
        return Ok(None);
    };
    let rest = &buf[pos + 1..];
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(end) => Ok(Some((tag, &rest[..end], pos + 1 + end + 2))),
        None if rest.len() > limits.max_bulk_len.saturating_add(2) => Err(FrameError::TooLarge),
        None => Ok(None),
    }
}

fn length(line: &[u8]) -> Result<i64, FrameError> {
    crate::resp::request::string_to_i64(line).ok_or(FrameError::Protocol("invalid length"))
}

/// A bulk-like body (`$`, `=`, `!`) announced by `line`, starting at `next`: `Some(None)` for the
/// null bulk `-1`, `Some(Some((start, len, end)))` when all of it is here.
fn bulk_body(
    buf: &[u8],
    line: &[u8],
    next: usize,
    limits: &FrameLimits,
) -> Result<Option<Option<BulkSpan>>, FrameError> {
    let len = length(line)?;
    if len == -1 {
        return Ok(Some(None));
    }
    if len < 0 {
        return Err(FrameError::Protocol("invalid bulk length"));
    }
    if len as u64 > limits.max_bulk_len as u64 {
        return Err(FrameError::TooLarge);
    }
    let len = len as usize;
    let end = next + len + 2;
    if buf.len() < end {
        return Ok(None);
    }
    if &buf[next + len..end] != b"\r\n" {
        return Err(FrameError::Protocol("expected CRLF after bulk data"));
    }
    Ok(Some(Some((next, len, end))))
}

/// The element count of an aggregate (`*`, `%`, `~`, `>`, `|`), already doubled for maps and
/// attributes; `None` for the null array `*-1`.
fn aggregate_len(
    tag: u8,
    line: &[u8],
    limits: &FrameLimits,
    depth: usize,
) -> Result<Option<usize>, FrameError> {
    let n = length(line)?;
    if n == -1 && tag == b'*' {
        return Ok(None);
    }
    if n < 0 {
        return Err(FrameError::Protocol("invalid aggregate length"));
    }
    let n = if matches!(tag, b'%' | b'|') {
        (n as u64).saturating_mul(2)
    } else {
        n as u64
    };
    if n > limits.max_elements as u64 || depth >= limits.max_depth {
        return Err(FrameError::TooLarge);
    }
    Ok(Some(n as usize))
}

fn check_simple_line(tag: u8, line: &[u8]) -> Result<(), FrameError> {
    match tag {
        b':' => length(line)
            .map(|_| ())
            .map_err(|_| FrameError::Protocol("invalid integer")),
        b'_' if !line.is_empty() => Err(FrameError::Protocol("invalid null")),
        b'#' if line != b"t" && line != b"f" => Err(FrameError::Protocol("invalid boolean")),
        _ => Ok(()),
    }
}

fn scan(
    buf: &[u8],
    pos: usize,
    limits: &FrameLimits,
    depth: usize,
) -> Result<Option<usize>, FrameError> {
    let Some((tag, line, next)) = header(buf, pos, limits)? else {
        return Ok(None);
    };
    match tag {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {
            check_simple_line(tag, line)?;
            Ok(Some(next))
        }
        b'$' | b'!' | b'=' => match bulk_body(buf, line, next, limits)? {
            None => Ok(None),
            Some(None) if tag == b'$' => Ok(Some(next)),
            Some(None) => Err(FrameError::Protocol("invalid bulk length")),
            Some(Some((_, len, _))) if tag == b'=' && len < 4 => {
                Err(FrameError::Protocol("verbatim string without format"))
            }
            Some(Some((_, _, end))) => Ok(Some(end)),
        },
        b'*' | b'%' | b'~' | b'>' | b'|' => {
            let Some(count) = aggregate_len(tag, line, limits, depth)? else {
                return Ok(Some(next));
            };
            let mut at = next;
            for _ in 0..count {
                match scan(buf, at, limits, depth + 1)? {
                    Some(end) => at = end,
                    None => return Ok(None),
                }
            }
            if tag == b'|' {
                // An attribute annotates the frame that follows it.
                return scan(buf, at, limits, depth);
            }
            Ok(Some(at))
        }
        _ => Err(FrameError::Protocol("unknown frame type")),
    }
}

/// A resumable `check`: it remembers how far a reply has been verified, so a large reply that
/// arrives in many reads is scanned once in total instead of once per read (`check` starts over
/// every time). Feed it the same buffer, grown, until it answers; then `reset` (or drop) it before
/// the next reply. Its only allocation is a stack of open aggregates, at most `max_depth` deep.
#[derive(Debug, Clone, Default)]
pub struct Checker {
    /// Bytes of the current reply verified so far.
    pos: usize,
    /// Elements still expected by each open aggregate, outermost first; empty before the reply's
    /// first byte has been read.
    open: Vec<u64>,
    started: bool,
}

impl Checker {
    pub fn new() -> Checker {
        Checker::default()
    }

    /// Forgets progress, for the next reply.
    pub fn reset(&mut self) {
        self.pos = 0;
        self.open.clear();
        self.started = false;
    }

    /// The length of the complete frame at the start of `buf` (as `check` would say), or `None`
    /// when more bytes are needed. `buf` must start with the same bytes as on earlier calls.
    pub fn advance(
        &mut self,
        buf: &[u8],
        limits: &FrameLimits,
    ) -> Result<Option<usize>, FrameError> {
        if !self.started {
            self.open.push(1);
            self.started = true;
        }
        loop {
            while self.open.last() == Some(&0) {
                self.open.pop();
            }
            if self.open.is_empty() {
                return Ok(Some(self.pos));
            }
            let Some((tag, line, next)) = header(buf, self.pos, limits)? else {
                return Ok(None);
            };
            let depth = self.open.len() - 1;
            let end = match tag {
                b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {
                    check_simple_line(tag, line)?;
                    next
                }
                b'$' | b'!' | b'=' => match bulk_body(buf, line, next, limits)? {
                    None => return Ok(None),
                    Some(None) if tag == b'$' => next,
                    Some(None) => return Err(FrameError::Protocol("invalid bulk length")),
                    Some(Some((_, len, _))) if tag == b'=' && len < 4 => {
                        return Err(FrameError::Protocol("verbatim string without format"))
                    }
                    Some(Some((_, _, end))) => end,
                },
                b'*' | b'%' | b'~' | b'>' | b'|' => {
                    let count = aggregate_len(tag, line, limits, depth)?;
                    self.pos = next;
                    if tag != b'|' {
                        // An attribute is not an element: the frame it annotates is.
                        if let Some(top) = self.open.last_mut() {
                            *top -= 1;
                        }
                    }
                    if let Some(count) = count.filter(|&n| n > 0) {
                        self.open.push(count as u64);
                    }
                    continue;
                }
                _ => return Err(FrameError::Protocol("unknown frame type")),
            };
            self.pos = end;
            if let Some(top) = self.open.last_mut() {
                *top -= 1;
            }
        }
    }
}

/// Most elements reserved up front, whatever count an aggregate header announces.
const MAX_PREALLOCATED: usize = 1024;

fn parse_at(
    buf: &[u8],
    pos: usize,
    limits: &FrameLimits,
    depth: usize,
) -> Result<Option<(Frame, usize)>, FrameError> {
    let Some((tag, line, next)) = header(buf, pos, limits)? else {
        return Ok(None);
    };
    let copy = Bytes::copy_from_slice;
    let frame = match tag {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {
            check_simple_line(tag, line)?;
            match tag {
                b'+' => Frame::Simple(copy(line)),
                b'-' => Frame::Error(copy(line)),
                b':' => Frame::Integer(length(line)?),
                b'_' => Frame::Null,
                b',' => Frame::Double(copy(line)),
                b'#' => Frame::Boolean(line == b"t"),
                _ => Frame::Bulk(copy(line)),
            }
        }
        b'$' | b'!' | b'=' => {
            let (start, len, end) = match bulk_body(buf, line, next, limits)? {
                None => return Ok(None),
                Some(None) if tag == b'$' => return Ok(Some((Frame::Null, next))),
                Some(None) => return Err(FrameError::Protocol("invalid bulk length")),
                Some(Some(span)) => span,
            };
            let data = &buf[start..start + len];
            let frame = match tag {
                b'$' => Frame::Bulk(copy(data)),
                b'!' => Frame::Error(copy(data)),
                _ if len < 4 => return Err(FrameError::Protocol("verbatim string without format")),
                _ => Frame::Verbatim(copy(&data[4..])),
            };
            return Ok(Some((frame, end)));
        }
        b'*' | b'%' | b'~' | b'>' | b'|' => {
            let Some(count) = aggregate_len(tag, line, limits, depth)? else {
                return Ok(Some((Frame::NullArray, next)));
            };
            let mut items = Vec::with_capacity(count.min(MAX_PREALLOCATED));
            let mut at = next;
            for _ in 0..count {
                match parse_at(buf, at, limits, depth + 1)? {
                    Some((item, end)) => {
                        items.push(item);
                        at = end;
                    }
                    None => return Ok(None),
                }
            }
            let frame = match tag {
                b'*' => Frame::Array(items),
                b'~' => Frame::Set(items),
                b'>' => Frame::Push(items),
                b'%' => Frame::Map(pairs(items)),
                _ => return parse_at(buf, at, limits, depth),
            };
            return Ok(Some((frame, at)));
        }
        _ => return Err(FrameError::Protocol("unknown frame type")),
    };
    Ok(Some((frame, next)))
}

fn pairs(items: Vec<Frame>) -> Vec<(Frame, Frame)> {
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut iter = items.into_iter();
    while let (Some(k), Some(v)) = (iter.next(), iter.next()) {
        out.push((k, v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Frame {
        Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn both(input: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
        let limits = FrameLimits::default();
        let parsed = parse(input, &limits);
        let checked = check(input, &limits);
        match &parsed {
            Ok(Some((_, used))) => assert_eq!(checked, Ok(Some(*used)), "{input:?}"),
            Ok(None) => assert_eq!(checked, Ok(None), "{input:?}"),
            Err(e) => assert_eq!(checked, Err(e.clone()), "{input:?}"),
        }
        parsed
    }

    fn one(input: &[u8]) -> Frame {
        match both(input) {
            Ok(Some((frame, used))) => {
                assert_eq!(used, input.len(), "{input:?}");
                frame
            }
            other => panic!("{input:?}: {other:?}"),
        }
    }

    #[test]
    fn resp2_values() {
        assert_eq!(one(b"+OK\r\n"), Frame::ok());
        assert_eq!(one(b"-ERR bad\r\n"), Frame::error("ERR bad"));
        assert_eq!(one(b":-42\r\n"), Frame::Integer(-42));
        assert_eq!(one(b"$3\r\nfoo\r\n"), b("foo"));
        assert_eq!(one(b"$0\r\n\r\n"), b(""));
        assert_eq!(one(b"$-1\r\n"), Frame::Null);
        assert_eq!(one(b"*-1\r\n"), Frame::NullArray);
        assert_eq!(one(b"*0\r\n"), Frame::Array(vec![]));
        assert_eq!(
            one(b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n"),
            Frame::Array(vec![b("a"), Frame::Array(vec![Frame::Integer(1)])])
        );
    }

    #[test]
    fn resp3_values() {
        assert_eq!(one(b"_\r\n"), Frame::Null);
        assert_eq!(one(b"#t\r\n"), Frame::Boolean(true));
        assert_eq!(one(b"#f\r\n"), Frame::Boolean(false));
        assert_eq!(one(b",1.5\r\n"), Frame::Double(Bytes::from_static(b"1.5")));
        assert_eq!(one(b"(12345678901234567890\r\n"), b("12345678901234567890"));
        assert_eq!(
            one(b"=7\r\ntxt:abc\r\n"),
            Frame::Verbatim(Bytes::from_static(b"abc"))
        );
        assert_eq!(one(b"!3\r\nERR\r\n"), Frame::error("ERR"));
        assert_eq!(
            one(b"%1\r\n+a\r\n:1\r\n"),
            Frame::Map(vec![(Frame::Simple("a".into()), Frame::Integer(1))])
        );
        assert_eq!(one(b"~1\r\n:1\r\n"), Frame::Set(vec![Frame::Integer(1)]));
        assert_eq!(
            one(b">2\r\n+message\r\n:1\r\n"),
            Frame::Push(vec![Frame::Simple("message".into()), Frame::Integer(1)])
        );
        assert_eq!(one(b"|1\r\n+ttl\r\n:3\r\n$1\r\nx\r\n"), b("x"));
    }

    #[test]
    fn incomplete_at_every_cut() {
        let input = b"*3\r\n$3\r\nfoo\r\n%1\r\n+k\r\n=8\r\ntxt:abcd\r\n#t\r\n";
        for cut in 0..input.len() {
            assert_eq!(both(&input[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(both(input).unwrap().unwrap().1, input.len());
        // Trailing bytes belong to the next frame.
        assert_eq!(both(b"+OK\r\n+OK\r\n").unwrap().unwrap().1, 5);
    }

    #[test]
    fn errors() {
        let proto = |input: &[u8]| match both(input) {
            Err(FrameError::Protocol(_)) => {}
            other => panic!("{input:?}: {other:?}"),
        };
        proto(b"?\r\n");
        proto(b":abc\r\n");
        proto(b"$-2\r\n");
        proto(b"$3\r\nfooXY");
        proto(b"*x\r\n");
        proto(b"%-1\r\n");
        proto(b"#x\r\n");
        proto(b"_x\r\n");
        proto(b"=2\r\nab\r\n");
    }

    #[test]
    fn limits_are_checked_before_allocating() {
        let limits = FrameLimits {
            max_bulk_len: 10,
            max_elements: 3,
            max_depth: 2,
        };
        assert_eq!(check(b"$11\r\n", &limits), Err(FrameError::TooLarge));
        assert_eq!(parse(b"$11\r\n", &limits), Err(FrameError::TooLarge));
        assert_eq!(parse(b"*4\r\n", &limits), Err(FrameError::TooLarge));
        assert_eq!(parse(b"%2\r\n", &limits), Err(FrameError::TooLarge));
        assert_eq!(
            parse(b"*1\r\n*1\r\n*1\r\n", &limits),
            Err(FrameError::TooLarge)
        );
        assert_eq!(
            parse(b"*1\r\n*1\r\n:1\r\n", &limits).unwrap().unwrap().1,
            12
        );
        assert_eq!(
            parse(b"+aaaaaaaaaaaaaaaaaaaaaaaaaaa", &limits),
            Err(FrameError::TooLarge)
        );
        // A huge announced count allocates nothing until elements arrive.
        assert_eq!(
            parse(b"*2000000000\r\n:1\r\n", &FrameLimits::default()),
            Ok(None)
        );
    }

    #[test]
    fn checker_resumes_and_agrees_with_check() {
        let input: &[u8] =
            b"*3\r\n$3\r\nfoo\r\n%1\r\n+k\r\n=8\r\ntxt:abcd\r\n|1\r\n+a\r\n+b\r\n#t\r\n+next\r\n";
        let whole = input.len() - 7;
        let mut checker = Checker::new();
        for cut in 0..whole {
            assert_eq!(
                checker.advance(&input[..cut], &FrameLimits::default()),
                Ok(None),
                "cut {cut}"
            );
        }
        assert_eq!(
            checker.advance(input, &FrameLimits::default()),
            Ok(Some(whole))
        );
        assert_eq!(check(input, &FrameLimits::default()), Ok(Some(whole)));
        checker.reset();
        assert_eq!(
            checker.advance(&input[whole..], &FrameLimits::default()),
            Ok(Some(7))
        );
        let limits = FrameLimits {
            max_bulk_len: 10,
            max_elements: 3,
            max_depth: 2,
        };
        for bad in [&b"*1\r\n*1\r\n*1\r\n"[..], b"*4\r\n", b"$11\r\n", b"?\r\n"] {
            assert_eq!(
                Checker::new().advance(bad, &limits),
                check(bad, &limits).map(|_| None),
                "{bad:?}"
            );
        }
    }
}
