//! The server side of RESP: reading clients' commands, in multibulk (`*2\r\n$3\r\nGET\r\n...`) or
//! inline (`GET foo\r\n`) form, with Redis's limits and Redis's error texts.

use bytes::{Bytes, BytesMut};

/// One client command: its arguments, name first, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub args: Vec<Bytes>,
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
}

/// Limits on what one client can make the server hold while reading a command.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Redis's proto-max-bulk-len (512 MB).
    pub max_bulk_len: usize,
    /// Most arguments in one multibulk (Redis: 1024 * 1024 * 1024 is refused... see `parse`).
    pub max_multibulk_len: usize,
    /// Longest inline command line (Redis: 64 KB).
    pub max_inline_len: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_bulk_len: 512 * 1024 * 1024,
            max_multibulk_len: 1024 * 1024 * 1024,
            max_inline_len: 64 * 1024,
        }
    }
}

/// Reads one command from the front of `buf`, removing its bytes. `Ok(None)`: more bytes needed
/// (nothing removed). An empty inline line and `*0`/`*-1` yield `Ok(None)` after consuming them,
/// as Redis ignores them. Never allocates more than the bytes already received plus a bounded
/// amount, whatever length a prefix announces.
pub fn parse(buf: &mut BytesMut, limits: &RequestLimits) -> Result<Option<Request>, RequestError> {
    let _ = (buf, limits);
    todo!("implemented in the proto work")
}
