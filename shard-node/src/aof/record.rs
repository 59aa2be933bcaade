//! One AOF record: a command as a RESP multibulk of bulk strings, exactly what Redis writes to its
//! append-only file, so Redis's AOF tools read ours.

use bytes::{BufMut, BytesMut};

/// Appends `*<argc>\r\n` then `$<len>\r\n<arg>\r\n` per argument.
pub fn encode<A: AsRef<[u8]>>(args: &[A], out: &mut BytesMut) {
    let size: usize = args.iter().map(|a| a.as_ref().len() + 16).sum::<usize>() + 16;
    out.reserve(size);
    header(out, b'*', args.len());
    for arg in args {
        let arg = arg.as_ref();
        header(out, b'$', arg.len());
        out.put_slice(arg);
        out.put_slice(b"\r\n");
    }
}

fn header(out: &mut BytesMut, tag: u8, n: usize) {
    let mut digits = [0u8; 20];
    let mut pos = digits.len();
    let mut value = n;
    loop {
        pos -= 1;
        digits[pos] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.put_u8(tag);
    out.put_slice(&digits[pos..]);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_redis_writes_its_aof() {
        let mut out = BytesMut::new();
        encode(&[&b"SET"[..], b"key", b""], &mut out);
        assert_eq!(&out[..], b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$0\r\n\r\n");
        let long = vec![b'x'; 1234];
        let mut out = BytesMut::new();
        encode(&[long.as_slice()], &mut out);
        assert!(out.starts_with(b"*1\r\n$1234\r\nxxx"));
        assert_eq!(out.len(), 4 + 7 + 1234 + 2);
    }
}
