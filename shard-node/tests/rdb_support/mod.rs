//! Hand-made RDB payloads for the DUMP / RESTORE tests: footers with a real CRC-64, RDB lengths
//! and strings, and the encodings of older Redis versions (ziplists, zipmaps, quicklist 1, linked
//! lists, text scores, 32-bit intsets) that Redis 7.0 still reads but no longer writes.

#![allow(dead_code)]

use tessera_shard_node::rdb::crc64::crc64;

/// `body` with a version-10 footer and its CRC-64, as a hand-made payload.
pub fn payload(body: &[u8]) -> Vec<u8> {
    payload_with_version(body, 10)
}

pub fn payload_with_version(body: &[u8], version: u16) -> Vec<u8> {
    let mut out = body.to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    let crc = crc64(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// An RDB length (rdbSaveLen).
pub fn rdb_len(n: usize, out: &mut Vec<u8>) {
    if n < 64 {
        out.push(n as u8);
    } else if n < 16384 {
        out.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]);
    } else {
        out.push(0x80);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

pub fn rdb_string(s: &[u8], out: &mut Vec<u8>) {
    rdb_len(s.len(), out);
    out.extend_from_slice(s);
}

/// A ziplist (Redis up to 6.2) of `items`, each written in the encoding Redis would pick:
/// immediates, 8/16/24/32/64-bit integers, 6/14/32-bit-length strings.
pub fn ziplist(items: &[&[u8]]) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut prev_len = 0usize;
    for item in items {
        let mut entry = Vec::new();
        if prev_len < 254 {
            entry.push(prev_len as u8);
        } else {
            entry.push(0xfe);
            entry.extend_from_slice(&(prev_len as u32).to_le_bytes());
        }
        let int = std::str::from_utf8(item)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|n| n.to_string().as_bytes() == *item);
        match int {
            Some(n @ 0..=12) => entry.push(0xf1 + n as u8),
            Some(n) if i8::try_from(n).is_ok() => entry.extend_from_slice(&[0xfe, n as u8]),
            Some(n) if i16::try_from(n).is_ok() => {
                entry.push(0xc0);
                entry.extend_from_slice(&(n as i16).to_le_bytes());
            }
            Some(n) if (-(1 << 23)..(1 << 23)).contains(&n) => {
                entry.push(0xf0);
                entry.extend_from_slice(&(n as i32).to_le_bytes()[..3]);
            }
            Some(n) if i32::try_from(n).is_ok() => {
                entry.push(0xd0);
                entry.extend_from_slice(&(n as i32).to_le_bytes());
            }
            Some(n) => {
                entry.push(0xe0);
                entry.extend_from_slice(&n.to_le_bytes());
            }
            None if item.len() < 64 => {
                entry.push(item.len() as u8);
                entry.extend_from_slice(item);
            }
            None if item.len() < 16384 => {
                entry.extend_from_slice(&[0x40 | (item.len() >> 8) as u8, item.len() as u8]);
                entry.extend_from_slice(item);
            }
            None => {
                entry.push(0x80);
                entry.extend_from_slice(&(item.len() as u32).to_be_bytes());
                entry.extend_from_slice(item);
            }
        }
        prev_len = entry.len();
        entries.push(entry);
    }
    let body: Vec<u8> = entries.concat();
    let total = 10 + body.len() + 1;
    let tail = 10 + body.len() - prev_len;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out.extend_from_slice(&(tail as u32).to_le_bytes());
    out.extend_from_slice(&(items.len() as u16).to_le_bytes());
    out.extend_from_slice(&body);
    out.push(0xff);
    out
}

/// A zipmap (Redis before 2.6) of `pairs`, with `free` spare bytes after each value.
pub fn zipmap(pairs: &[(&[u8], &[u8])], free: u8) -> Vec<u8> {
    let mut out = vec![pairs.len() as u8];
    let len = |n: usize, out: &mut Vec<u8>| {
        if n < 254 {
            out.push(n as u8);
        } else {
            out.push(254);
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
    };
    for (field, value) in pairs {
        len(field.len(), &mut out);
        out.extend_from_slice(field);
        len(value.len(), &mut out);
        out.push(free);
        out.extend_from_slice(value);
        out.extend(std::iter::repeat_n(0u8, usize::from(free)));
    }
    out.push(0xff);
    out
}

/// Payloads in the encodings of older Redis versions (still read by 7.0) and forms 7.0 reads but
/// does not write by default: both servers restore them to the same contents.
pub fn legacy_payloads() -> Vec<(&'static str, Vec<u8>)> {
    let mut cases = Vec::new();
    let long = "L".repeat(300);
    let huge = "H".repeat(20_000);
    let items: Vec<&[u8]> = vec![
        b"a",
        b"0",
        b"12",
        b"13",
        b"-1",
        b"-128",
        b"127",
        b"300",
        b"-32768",
        b"40000",
        b"-8388608",
        b"8388607",
        b"9000000",
        b"2147483647",
        b"-2147483648",
        b"2147483648",
        b"9223372036854775807",
        b"-9223372036854775808",
        b"007",
        b"",
        long.as_bytes(),
        huge.as_bytes(),
    ];

    let mut body = vec![10u8]; // RDB_TYPE_LIST_ZIPLIST
    rdb_string(&ziplist(&items), &mut body);
    cases.push(("legacy:list-ziplist", body));

    let mut body = vec![14u8]; // RDB_TYPE_LIST_QUICKLIST (ziplist nodes)
    rdb_len(3, &mut body);
    rdb_string(&ziplist(&items[..5]), &mut body);
    rdb_string(&ziplist(&[]), &mut body);
    rdb_string(&ziplist(&items[5..]), &mut body);
    cases.push(("legacy:list-quicklist", body));

    let mut body = vec![1u8]; // RDB_TYPE_LIST
    rdb_len(items.len(), &mut body);
    for item in &items {
        rdb_string(item, &mut body);
    }
    cases.push(("legacy:list-linked", body));

    let mut body = vec![13u8]; // RDB_TYPE_HASH_ZIPLIST
    rdb_string(
        &ziplist(&[b"f1", b"v1", b"f2", b"22", b"n", b"-7000000"]),
        &mut body,
    );
    cases.push(("legacy:hash-ziplist", body));

    let mut body = vec![9u8]; // RDB_TYPE_HASH_ZIPMAP
    let pairs: Vec<(&[u8], &[u8])> = vec![(b"a", b"1"), (b"bb", long.as_bytes()), (b"c", b"1e3")];
    rdb_string(&zipmap(&pairs, 2), &mut body);
    cases.push(("legacy:hash-zipmap", body));

    let mut body = vec![12u8]; // RDB_TYPE_ZSET_ZIPLIST
    rdb_string(
        // Sorted by score, as Redis writes (and trusts) it.
        &ziplist(&[
            b"c",
            b"-inf",
            b"a",
            b"1",
            b"b",
            b"2.5",
            b"d",
            b"123456789012",
        ]),
        &mut body,
    );
    cases.push(("legacy:zset-ziplist", body));

    let mut body = vec![3u8]; // RDB_TYPE_ZSET (scores as text)
    rdb_len(4, &mut body);
    for (member, score) in [(&b"a"[..], &b"1.5"[..]), (b"b", b"-3"), (b"c", b"1e3")] {
        rdb_string(member, &mut body);
        body.push(score.len() as u8);
        body.extend_from_slice(score);
    }
    rdb_string(b"d", &mut body);
    body.push(254); // +inf
    cases.push(("legacy:zset-text", body));

    let mut body = vec![11u8]; // RDB_TYPE_SET_INTSET, 32-bit elements
    let mut intset = Vec::new();
    intset.extend_from_slice(&4u32.to_le_bytes());
    intset.extend_from_slice(&3u32.to_le_bytes());
    for n in [-70000i32, 5, 1 << 30] {
        intset.extend_from_slice(&n.to_le_bytes());
    }
    rdb_string(&intset, &mut body);
    cases.push(("legacy:set-intset32", body));

    cases
}
