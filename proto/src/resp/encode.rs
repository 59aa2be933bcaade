//! Writing a command as a client does: a RESP multibulk of bulk strings. The one encoder for the
//! proxy's forwarded requests, the services' handshakes, `ClientCodec` and the tests.

use bytes::{BufMut, BytesMut};

use super::frame::integer;

/// Appends `args` (`count` of them: the multibulk header is written before the iterator is
/// consumed) as a RESP multibulk.
#[inline]
pub fn encode_command<'a>(count: usize, args: impl Iterator<Item = &'a [u8]>, out: &mut BytesMut) {
    integer(out, b'*', count as i64);
    for arg in args {
        integer(out, b'$', arg.len() as i64);
        out.put_slice(arg);
        out.put_slice(b"\r\n");
    }
}

/// A command as fresh bytes (for handshakes and tests, where a buffer of one's own is simpler).
pub fn command_bytes(args: &[&[u8]]) -> BytesMut {
    let mut out = BytesMut::with_capacity(args.iter().map(|a| a.len() + 16).sum::<usize>() + 16);
    encode_command(args.len(), args.iter().copied(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_multibulks_of_bulk_strings() {
        assert_eq!(
            &command_bytes(&[b"SET", b"k", b""])[..],
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
        );
        assert_eq!(&command_bytes(&[])[..], b"*0\r\n");
        let long = vec![b'x'; 1234];
        assert!(command_bytes(&[&long]).starts_with(b"*1\r\n$1234\r\nxxx"));
    }
}
