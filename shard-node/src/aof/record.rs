//! One AOF record: a command as a RESP multibulk of bulk strings, exactly what Redis writes to its
//! append-only file, so Redis's AOF tools read ours.

use bytes::BytesMut;
use tessera_proto::resp::encode::encode_command;

/// Appends `*<argc>\r\n` then `$<len>\r\n<arg>\r\n` per argument, reserving room first (a
/// record is written whole).
pub fn encode<A: AsRef<[u8]>>(args: &[A], out: &mut BytesMut) {
    let size: usize = args.iter().map(|a| a.as_ref().len() + 16).sum::<usize>() + 16;
    out.reserve(size);
    encode_command(args.len(), args.iter().map(AsRef::as_ref), out);
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
