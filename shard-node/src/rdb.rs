//! Values in Redis's RDB serialization, as DUMP writes and RESTORE reads them (Redis 7.0's
//! src/cluster.c createDumpPayload / verifyDumpPayload, src/rdb.c): the RDB type byte, the object,
//! the RDB version (2 bytes, little endian) and a CRC-64 of all that (8 bytes, little endian).
//!
//! Payloads come from clients, so nothing in them is trusted: every length is checked against the
//! bytes left before it is read or reserved, every compact blob (listpack, ziplist, intset,
//! zipmap) is walked in full, and any inconsistency is an error, never a panic.
//!
//! Files: `reader` (lengths, strings, doubles), `decode` (objects → `Value`), `encode` (`Value` →
//! objects), `listpack`, `ziplist` (and zipmap), `intset`, `lzf`, `crc64`.

pub mod crc64;
mod decode;
mod encode;
mod intset;
mod listpack;
pub mod lzf;
mod reader;
mod ziplist;

use crate::keyspace::{Value, ValueRef};

/// The RDB version DUMP writes, and the newest RESTORE accepts: Redis 7.0's RDB_VERSION.
pub const RDB_VERSION: u16 = 10;
/// The footer after the object: version (2 bytes) and CRC-64 (8 bytes).
const FOOTER: usize = 10;

/// RDB object types (rdb.h, Redis 7.0). 6 and 7 are modules, 15 and 19 streams: Tessera holds
/// neither, so RESTORE refuses them as data it cannot read.
pub mod types {
    pub const STRING: u8 = 0;
    pub const LIST: u8 = 1;
    pub const SET: u8 = 2;
    pub const ZSET: u8 = 3;
    pub const HASH: u8 = 4;
    pub const ZSET_2: u8 = 5;
    pub const HASH_ZIPMAP: u8 = 9;
    pub const LIST_ZIPLIST: u8 = 10;
    pub const SET_INTSET: u8 = 11;
    pub const ZSET_ZIPLIST: u8 = 12;
    pub const HASH_ZIPLIST: u8 = 13;
    pub const LIST_QUICKLIST: u8 = 14;
    pub const HASH_LISTPACK: u8 = 16;
    pub const ZSET_LISTPACK: u8 = 17;
    pub const LIST_QUICKLIST_2: u8 = 18;
    pub const STREAM_LISTPACKS: u8 = 15;
    pub const STREAM_LISTPACKS_2: u8 = 19;
}

/// Why a payload was refused; the texts are Redis's RESTORE replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// Too short for a footer, a version newer than ours, or a CRC that does not match.
    #[error("ERR DUMP payload version or checksum are wrong")]
    VersionOrChecksum,
    /// The checksum matched but the object cannot be read; `reason` is for logs and tests.
    #[error("ERR Bad data format")]
    BadFormat { reason: &'static str },
}

/// Something wrong inside the object, named for the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bad(pub &'static str);

impl From<Bad> for RestoreError {
    fn from(bad: Bad) -> RestoreError {
        RestoreError::BadFormat { reason: bad.0 }
    }
}

/// A hash field and its value, as read from a payload.
type Pair = (Vec<u8>, Vec<u8>);

/// DUMP's payload for `value`.
pub fn dump(value: ValueRef<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode::object(value, &mut out);
    out.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64::crc64(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The value in a DUMP payload, checked as Redis's RESTORE checks it: footer first (version, then
/// CRC), then the object. Bytes after the object are ignored, as Redis ignores them.
pub fn restore(payload: &[u8]) -> Result<Value, RestoreError> {
    verify(payload)?;
    let body = &payload[..payload.len() - FOOTER];
    let mut r = reader::Reader::new(body);
    let kind = r.u8()?;
    Ok(decode::object(kind, &mut r)?)
}

/// verifyDumpPayload: a footer is present, its version is not newer than ours, its CRC matches.
fn verify(payload: &[u8]) -> Result<(), RestoreError> {
    if payload.len() < FOOTER {
        return Err(RestoreError::VersionOrChecksum);
    }
    let (body_and_version, crc) = payload.split_at(payload.len() - 8);
    let version_at = payload.len() - FOOTER;
    let version = u16::from_le_bytes([payload[version_at], payload[version_at + 1]]);
    if version > RDB_VERSION {
        return Err(RestoreError::VersionOrChecksum);
    }
    let mut expected = [0u8; 8];
    expected.copy_from_slice(crc);
    if crc64::crc64(0, body_and_version) != u64::from_le_bytes(expected) {
        return Err(RestoreError::VersionOrChecksum);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use bytes::Bytes;

    use super::*;
    use crate::keyspace::{HashValue, SetValue, SortedSet};

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    /// Payloads redis-server 7.0.15 returned for DUMP, byte for byte.
    #[test]
    fn reads_what_redis_7_dumps() {
        let string = b"\x00\x05hello\n\x00cr\xdfve4 \n";
        assert_eq!(restore(string), Ok(Value::String(b("hello"))));
        let int = b"\x00\xc0\x0c\n\x00<*\xf8Q\\\x04\xbc\xd5";
        assert_eq!(restore(int), Ok(Value::String(b("12"))));
        let list = b"\x12\x01\x02\x0f\x0f\x00\x00\x00\x03\x00\x81a\x02\x81b\x02\x01\x01\xff\n\x00\xe0\x1b\xabJG\xceY\"";
        let expected: VecDeque<Bytes> = ["a", "b", "1"].into_iter().map(b).collect();
        assert_eq!(restore(list), Ok(Value::List(Box::new(expected))));
        let intset = b"\x0b\x0e\x02\x00\x00\x00\x03\x00\x00\x00\x01\x00\x02\x00\x03\x00\n\x00\xa5\x02\\\xe2mnM\x1b";
        let expected: SetValue = ["1", "2", "3"].into_iter().map(b).collect();
        assert_eq!(restore(intset), Ok(Value::Set(Box::new(expected))));
        let hash = b"\x10\x0c\x0c\x00\x00\x00\x02\x00\x81a\x02\x01\x01\xff\n\x00\x84\xa6\x93\xe8\xaa\x17\xe4\xdb";
        let mut expected = HashValue::default();
        expected.insert(b"a", b"1");
        assert_eq!(restore(hash), Ok(Value::Hash(Box::new(expected))));
        let zset = b"\x11\x0f\x0f\x00\x00\x00\x02\x00\x81a\x02\x831.5\x04\xff\n\x00\x08\x0cn\x19\x80\x8e}\x98";
        let mut expected = SortedSet::default();
        expected.insert(b("a"), 1.5);
        assert_eq!(restore(zset), Ok(Value::ZSet(Box::new(expected))));
    }

    #[test]
    fn writes_strings_as_redis_7_does() {
        assert_eq!(
            dump(Value::String(b("hello")).as_ref()),
            b"\x00\x05hello\n\x00cr\xdfve4 \n"
        );
        assert_eq!(
            dump(Value::String(b("12")).as_ref()),
            b"\x00\xc0\x0c\n\x00<*\xf8Q\\\x04\xbc\xd5"
        );
    }

    #[test]
    fn round_trips_every_type() {
        let mut zset = SortedSet::default();
        for i in 0..300 {
            zset.insert(Bytes::from(format!("m{i}")), f64::from(i) / 3.0 - 7.0);
        }
        zset.insert(b("inf"), f64::INFINITY);
        zset.insert(b("-inf"), f64::NEG_INFINITY);
        let values = [
            Value::String(Bytes::new()),
            Value::String(b("-2147483648")),
            Value::String(b("2147483648")),
            Value::String(b("007")),
            Value::String(Bytes::from(vec![0xffu8; 70_000])),
            Value::List(Box::new(
                (0..5000i64)
                    .map(|i| match i % 4 {
                        0 => Bytes::from((i * 7919 - 100_000).to_string()),
                        1 => Bytes::from(vec![b'x'; (i as usize) % 300]),
                        2 => Bytes::from((i64::MIN + i).to_string()),
                        _ => Bytes::from(format!("{i}")),
                    })
                    .collect(),
            )),
            Value::List(Box::new([Bytes::from(vec![7u8; 20_000])].into())),
            Value::Set(Box::new(
                (0..1000).map(|i| Bytes::from(i.to_string())).collect(),
            )),
            Value::Hash(Box::new({
                let mut hash = HashValue::default();
                for i in 0..200 {
                    hash.insert(format!("f{i}").as_bytes(), i.to_string().as_bytes());
                }
                hash
            })),
            Value::ZSet(Box::new(zset)),
        ];
        for value in values {
            assert_eq!(restore(&dump(value.as_ref())), Ok(value));
        }
    }

    #[test]
    fn refuses_bad_footers_and_bodies() {
        let good = dump(Value::String(b("hello")).as_ref());
        assert_eq!(restore(&good[..9]), Err(RestoreError::VersionOrChecksum));
        let mut flipped = good.clone();
        flipped[3] ^= 1;
        assert_eq!(restore(&flipped), Err(RestoreError::VersionOrChecksum));
        let mut newer = good[..good.len() - 10].to_vec();
        newer.extend_from_slice(&11u16.to_le_bytes());
        let crc = crc64::crc64(0, &newer);
        newer.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(restore(&newer), Err(RestoreError::VersionOrChecksum));
        // A body cut short, with a correct footer: bad data, not a panic.
        let mut cut = good[..4].to_vec();
        cut.extend_from_slice(&RDB_VERSION.to_le_bytes());
        let crc = crc64::crc64(0, &cut);
        cut.extend_from_slice(&crc.to_le_bytes());
        assert!(matches!(restore(&cut), Err(RestoreError::BadFormat { .. })));
    }
}
