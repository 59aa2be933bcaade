//! An argument cursor over a command's arguments, and Redis's number parsing and error replies,
//! so every command reads its options the same way and fails with the same texts as Redis.

use bytes::Bytes;
use tessera_proto::resp::Frame;

pub const ERR_NOT_INTEGER: &str = "ERR value is not an integer or out of range";
pub const ERR_SYNTAX: &str = "ERR syntax error";
pub const ERR_WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
pub const ERR_NOT_FLOAT: &str = "ERR value is not a valid float";

/// A Redis error reply from static text.
pub fn err(text: &'static str) -> Frame {
    Frame::Error(Bytes::from_static(text.as_bytes()))
}

/// Walks a command's arguments after the name (or after a subcommand).
pub struct Args<'a> {
    args: &'a [Bytes],
    pos: usize,
}

impl<'a> Args<'a> {
    /// A cursor over `args` starting at index `start` (1 skips the command name).
    pub fn new(args: &'a [Bytes], start: usize) -> Args<'a> {
        Args {
            args,
            pos: start.min(args.len()),
        }
    }

    pub fn remaining(&self) -> usize {
        self.args.len() - self.pos
    }

    pub fn is_done(&self) -> bool {
        self.remaining() == 0
    }

    /// The next argument, if any.
    pub fn next_arg(&mut self) -> Option<&'a Bytes> {
        let arg = self.args.get(self.pos)?;
        self.pos += 1;
        Some(arg)
    }

    /// The next argument, or `ERR syntax error` when there is none (an option missing its value).
    pub fn value(&mut self) -> Result<&'a Bytes, Frame> {
        self.next_arg().ok_or_else(|| err(ERR_SYNTAX))
    }

    /// The next argument as an integer, with Redis's error when it is missing or not one.
    pub fn int(&mut self) -> Result<i64, Frame> {
        let arg = self.next_arg().ok_or_else(|| err(ERR_SYNTAX))?;
        parse_i64(arg).ok_or_else(|| err(ERR_NOT_INTEGER))
    }
}

/// Whether `arg` equals `word` ignoring ASCII case (option names).
pub fn eq(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// Redis's `string2ll`: an optional `-`, no `+`, no spaces, no leading zeros, within i64 (the same
/// rule RESP lengths are read with).
pub use tessera_proto::resp::request::string_to_i64 as parse_i64;

/// Text of an integer as a reply payload.
pub fn int_bytes(n: i64) -> Bytes {
    Bytes::from(n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string2ll_rules() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-0",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"9223372036854775808",
            b"1.0",
            b"-",
        ] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cursor_reads_options() {
        let args: Vec<Bytes> = ["set", "k", "v", "EX", "10", "PX"]
            .iter()
            .map(|s| Bytes::from(*s))
            .collect();
        let mut a = Args::new(&args, 3);
        assert!(eq(a.value().unwrap(), "ex"));
        assert_eq!(a.int().unwrap(), 10);
        assert!(a.next_arg().is_some());
        assert!(a.value().is_err());
        assert!(a.is_done());
    }
}
