//! A RESP value and its encoding; also, in `read`, the reply reader a client of RESP servers needs
//! (the proxy, tests): `check` finds where a complete frame ends without building it, `parse`
//! builds it.

mod read;

pub use read::{check, parse, Checker};

use bytes::{BufMut, Bytes, BytesMut};

/// Which RESP version a connection speaks; set by `HELLO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

/// One RESP value. RESP3-only types are rendered in their RESP2 form when the connection speaks
/// RESP2 (a map as a flat array, a double as a bulk string, a boolean as an integer, null as `$-1`).
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `+OK`
    Simple(Bytes),
    /// `-ERR ...`; holds the whole text after `-`, prefix included.
    Error(Bytes),
    /// `:1`
    Integer(i64),
    /// `$3\r\nfoo`
    Bulk(Bytes),
    /// The null reply: `$-1` in RESP2, `_` in RESP3.
    Null,
    /// The null array: `*-1` in RESP2, `_` in RESP3.
    NullArray,
    /// `*N`
    Array(Vec<Frame>),
    /// RESP3 `%N`; a flat array of 2N in RESP2.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 `~N`; an array in RESP2.
    Set(Vec<Frame>),
    /// RESP3 `>N`; an array in RESP2.
    Push(Vec<Frame>),
    /// RESP3 `,1.5`; a bulk string in RESP2. Holds Redis's textual form of the number.
    Double(Bytes),
    /// RESP3 `#t`; `:1` / `:0` in RESP2.
    Boolean(bool),
    /// RESP3 `=N\r\ntxt:...`; a bulk string of the text alone in RESP2.
    Verbatim(Bytes),
}

/// Why a reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("frame exceeds the configured limit")]
    TooLarge,
}

/// Limits that bound what a peer can make us allocate while reading a frame.
#[derive(Debug, Clone, Copy)]
pub struct FrameLimits {
    /// Longest bulk string accepted (Redis's proto-max-bulk-len, 512 MB).
    pub max_bulk_len: usize,
    /// Most elements in one aggregate.
    pub max_elements: usize,
    /// Deepest nesting of aggregates.
    pub max_depth: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        Self {
            max_bulk_len: 512 * 1024 * 1024,
            max_elements: i32::MAX as usize,
            max_depth: 64,
        }
    }
}

impl Frame {
    pub fn ok() -> Frame {
        Frame::Simple(Bytes::from_static(b"OK"))
    }

    /// An error reply; `text` holds the whole message, prefix included (`ERR ...`, `WRONGTYPE ...`).
    pub fn error(text: impl Into<Bytes>) -> Frame {
        Frame::Error(text.into())
    }

    pub fn bulk(data: impl Into<Bytes>) -> Frame {
        Frame::Bulk(data.into())
    }

    /// Appends the encoding of `self` for a connection speaking `protocol`.
    pub fn encode(&self, protocol: Protocol, out: &mut BytesMut) {
        match self {
            Frame::Simple(s) => line(out, b'+', s),
            Frame::Error(s) => line(out, b'-', s),
            Frame::Integer(n) => integer(out, b':', *n),
            Frame::Bulk(b) => bulk(out, b'$', b),
            Frame::Null | Frame::NullArray if protocol == Protocol::Resp3 => {
                out.put_slice(b"_\r\n")
            }
            Frame::Null => out.put_slice(b"$-1\r\n"),
            Frame::NullArray => out.put_slice(b"*-1\r\n"),
            Frame::Array(items) => aggregate(out, b'*', items, protocol),
            Frame::Map(pairs) => {
                if protocol == Protocol::Resp3 {
                    integer(out, b'%', pairs.len() as i64);
                } else {
                    integer(out, b'*', 2 * pairs.len() as i64);
                }
                for (k, v) in pairs {
                    k.encode(protocol, out);
                    v.encode(protocol, out);
                }
            }
            Frame::Set(items) => {
                let tag = if protocol == Protocol::Resp3 {
                    b'~'
                } else {
                    b'*'
                };
                aggregate(out, tag, items, protocol)
            }
            Frame::Push(items) => {
                let tag = if protocol == Protocol::Resp3 {
                    b'>'
                } else {
                    b'*'
                };
                aggregate(out, tag, items, protocol)
            }
            Frame::Double(text) => match protocol {
                Protocol::Resp3 => line(out, b',', text),
                Protocol::Resp2 => bulk(out, b'$', text),
            },
            Frame::Boolean(b) => match protocol {
                Protocol::Resp3 => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
                Protocol::Resp2 => integer(out, b':', i64::from(*b)),
            },
            Frame::Verbatim(text) => match protocol {
                Protocol::Resp3 => {
                    integer(out, b'=', text.len() as i64 + 4);
                    out.put_slice(b"txt:");
                    out.put_slice(text);
                    out.put_slice(b"\r\n");
                }
                Protocol::Resp2 => bulk(out, b'$', text),
            },
        }
    }

    /// The encoding of `self` as a fresh buffer.
    pub fn to_bytes(&self, protocol: Protocol) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(protocol, &mut out);
        out.freeze()
    }
}

fn line(out: &mut BytesMut, tag: u8, text: &[u8]) {
    out.put_u8(tag);
    out.put_slice(text);
    out.put_slice(b"\r\n");
}

/// `tag`, `n` in decimal, CRLF: every RESP header (lengths, integers), without allocating.
#[inline]
pub(crate) fn integer(out: &mut BytesMut, tag: u8, n: i64) {
    out.put_u8(tag);
    let buf = itoa_buf(n);
    out.put_slice(buf.as_bytes());
    out.put_slice(b"\r\n");
}

fn bulk(out: &mut BytesMut, tag: u8, data: &[u8]) {
    integer(out, tag, data.len() as i64);
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

fn aggregate(out: &mut BytesMut, tag: u8, items: &[Frame], protocol: Protocol) {
    integer(out, tag, items.len() as i64);
    for item in items {
        item.encode(protocol, out);
    }
}

/// Decimal text of an integer without allocating.
struct ItoaBuf {
    buf: [u8; 20],
    start: usize,
}

impl ItoaBuf {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa_buf(n: i64) -> ItoaBuf {
    let mut buf = [0u8; 20];
    let mut pos = buf.len();
    let negative = n < 0;
    let mut value = n.unsigned_abs();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    if negative {
        pos -= 1;
        buf[pos] = b'-';
    }
    ItoaBuf { buf, start: pos }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Frame {
        Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn encodes_resp2_forms() {
        let f = Frame::Map(vec![
            (b("a"), Frame::Double("1.5".into())),
            (b("b"), Frame::Boolean(true)),
        ]);
        assert_eq!(
            &f.to_bytes(Protocol::Resp2)[..],
            b"*4\r\n$1\r\na\r\n$3\r\n1.5\r\n$1\r\nb\r\n:1\r\n"
        );
        assert_eq!(
            &f.to_bytes(Protocol::Resp3)[..],
            b"%2\r\n$1\r\na\r\n,1.5\r\n$1\r\nb\r\n#t\r\n"
        );
        assert_eq!(&Frame::NullArray.to_bytes(Protocol::Resp2)[..], b"*-1\r\n");
        assert_eq!(&Frame::Null.to_bytes(Protocol::Resp3)[..], b"_\r\n");
    }
}
