//! `Value` → RDB object, in encodings every Redis from 7.0 on reads: RDB_TYPE_STRING (integers
//! that fit 32 bits integer-encoded, strings over 20 bytes LZF-compressed, as Redis does),
//! RDB_TYPE_LIST_QUICKLIST_2 with listpack nodes of about 8 KB (Redis 7.0's default
//! list-max-listpack-size -2), RDB_TYPE_SET, RDB_TYPE_HASH and RDB_TYPE_ZSET_2 (binary scores, so
//! they round-trip exactly). Redis converts the plain set,
//! hash and sorted set forms to its compact encodings itself when the contents are small.

use super::{listpack, lzf, types};
use crate::cmd::parse::parse_i64;
use crate::keyspace::ValueRef;

/// A quicklist node is closed before it would pass this many bytes (one larger item still gets a
/// node of its own), as Redis 7.0 sizes nodes by default.
const NODE_MAX_BYTES: usize = 8 * 1024;
/// The most an entry adds to a listpack besides its data: a 5-byte header and 5-byte back-length.
const ENTRY_OVERHEAD: usize = 10;
const CONTAINER_PACKED: u64 = 2;
/// rdbEncodeInteger's encodings (RDB_ENCVAL << 6 | RDB_ENC_INT*).
const ENC_INT8: u8 = 0xc0;
const ENC_INT16: u8 = 0xc1;
const ENC_INT32: u8 = 0xc2;
const ENC_LZF: u8 = 0xc3;
/// Strings up to this long are never compressed (Redis's rdbSaveRawString).
const COMPRESS_ABOVE: usize = 20;

/// Appends the RDB type byte and the serialized `value` to `out`.
pub fn object(value: ValueRef<'_>, out: &mut Vec<u8>) {
    match value {
        ValueRef::String(s) => {
            out.push(types::STRING);
            string(s, out);
        }
        ValueRef::List(list) => {
            out.push(types::LIST_QUICKLIST_2);
            let mut nodes: Vec<Vec<u8>> = Vec::new();
            let mut node = listpack::Writer::new();
            for item in list.iter() {
                if node.count() > 0 && node.size() + item.len() + ENTRY_OVERHEAD > NODE_MAX_BYTES {
                    nodes.push(std::mem::take(&mut node).finish());
                }
                node.push(item);
            }
            if node.count() > 0 {
                nodes.push(node.finish());
            }
            length(nodes.len() as u64, out);
            for blob in nodes {
                length(CONTAINER_PACKED, out);
                raw_string(&blob, out);
            }
        }
        ValueRef::Set(set) => {
            out.push(types::SET);
            length(set.len() as u64, out);
            for member in set.iter() {
                string(member, out);
            }
        }
        ValueRef::Hash(hash) => {
            out.push(types::HASH);
            length(hash.len() as u64, out);
            for (field, value) in hash.iter() {
                string(field, out);
                string(value, out);
            }
        }
        ValueRef::ZSet(zset) => {
            out.push(types::ZSET_2);
            length(zset.len() as u64, out);
            for (member, score) in zset.iter() {
                string(member, out);
                out.extend_from_slice(&score.to_le_bytes());
            }
        }
        ValueRef::Stream(s) => {
            out.push(types::STREAM_LISTPACKS_2);
            stream(s, out);
        }
    }
}

/// Entries per listpack node of a dumped stream (Redis's stream-node-max-entries).
const STREAM_NODE_ENTRIES: usize = 100;

/// A stream as RDB_TYPE_STREAM_LISTPACKS_2 (Redis 7.0's rdbSaveObject): listpack nodes keyed by
/// their master ID (big endian), each a master entry (count, deleted, the first entry's fields)
/// then its entries (flags, ID deltas, fields or only values when the fields are the master's,
/// and the back count); then the length, IDs and counters, and the groups with their PELs and
/// consumers.
fn stream(s: &crate::keyspace::Stream, out: &mut Vec<u8>) {
    let entries: Vec<_> = s.iter().collect();
    let nodes: Vec<_> = entries.chunks(STREAM_NODE_ENTRIES).collect();
    length(nodes.len() as u64, out);
    for node in &nodes {
        let (master, first) = node[0];
        let master_fields: Vec<&[u8]> = first.iter().step_by(2).collect();
        let mut key = Vec::with_capacity(16);
        key.extend_from_slice(&master.ms.to_be_bytes());
        key.extend_from_slice(&master.seq.to_be_bytes());
        raw_string(&key, out);
        let mut lp = listpack::Writer::new();
        let int = |lp: &mut listpack::Writer, n: i64| lp.push(n.to_string().as_bytes());
        int(&mut lp, node.len() as i64);
        int(&mut lp, 0);
        int(&mut lp, master_fields.len() as i64);
        for f in &master_fields {
            lp.push(f);
        }
        int(&mut lp, 0);
        for (id, fields) in node.iter() {
            let items: Vec<&[u8]> = fields.iter().collect();
            let numfields = items.len() / 2;
            let same = numfields == master_fields.len()
                && items
                    .iter()
                    .step_by(2)
                    .zip(&master_fields)
                    .all(|(a, b)| a == b);
            int(&mut lp, if same { 2 } else { 0 });
            int(&mut lp, id.ms.wrapping_sub(master.ms) as i64);
            int(&mut lp, id.seq.wrapping_sub(master.seq) as i64);
            if !same {
                int(&mut lp, numfields as i64);
            }
            for (i, item) in items.iter().enumerate() {
                if i % 2 == 1 || !same {
                    lp.push(item);
                }
            }
            let lp_count = numfields + 3 + if same { 0 } else { numfields + 1 };
            int(&mut lp, lp_count as i64);
        }
        raw_string(&lp.finish(), out);
    }
    length(s.len() as u64, out);
    for id in [s.last_id, s.first_id(), s.max_deleted_id] {
        length(id.ms, out);
        length(id.seq, out);
    }
    length(s.entries_added, out);
    length(s.groups.len() as u64, out);
    let raw_id = |id: &crate::keyspace::stream::StreamId, out: &mut Vec<u8>| {
        out.extend_from_slice(&id.ms.to_be_bytes());
        out.extend_from_slice(&id.seq.to_be_bytes());
    };
    for (name, group) in &s.groups {
        raw_string(name, out);
        length(group.last_id.ms, out);
        length(group.last_id.seq, out);
        length(group.entries_read as u64, out);
        length(group.pel.len() as u64, out);
        for (id, pending) in &group.pel {
            raw_id(id, out);
            out.extend_from_slice(&pending.delivery_time.to_le_bytes());
            length(pending.delivery_count, out);
        }
        length(group.consumers.len() as u64, out);
        for (cname, consumer) in &group.consumers {
            raw_string(cname, out);
            out.extend_from_slice(&consumer.seen_time.to_le_bytes());
            length(consumer.pel.len() as u64, out);
            for id in &consumer.pel {
                raw_id(id, out);
            }
        }
    }
}

/// rdbSaveLen: 6 bits, 14 bits, or a marker and 32 / 64 bits big endian.
fn length(n: u64, out: &mut Vec<u8>) {
    if n < 1 << 6 {
        out.push(n as u8);
    } else if n < 1 << 14 {
        out.push(0x40 | (n >> 8) as u8);
        out.push(n as u8);
    } else if let Ok(n32) = u32::try_from(n) {
        out.push(0x80);
        out.extend_from_slice(&n32.to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// rdbSaveRawString after rdbTryIntegerEncoding: a canonical integer of at
/// most 11 characters that fits 32 bits takes 2 to 5 bytes.
fn string(s: &[u8], out: &mut Vec<u8>) {
    if s.len() <= 11 {
        if let Some(n) = parse_i64(s) {
            if let Ok(n) = i8::try_from(n) {
                out.push(ENC_INT8);
                out.extend_from_slice(&n.to_le_bytes());
                return;
            }
            if let Ok(n) = i16::try_from(n) {
                out.push(ENC_INT16);
                out.extend_from_slice(&n.to_le_bytes());
                return;
            }
            if let Ok(n) = i32::try_from(n) {
                out.push(ENC_INT32);
                out.extend_from_slice(&n.to_le_bytes());
                return;
            }
        }
    }
    raw_string(s, out);
}

/// A string as bytes, LZF-compressed as Redis does when it is longer than 20 bytes and that saves
/// at least 4 of them (rdbSaveLzfStringObject).
fn raw_string(s: &[u8], out: &mut Vec<u8>) {
    if s.len() > COMPRESS_ABOVE {
        if let Some(packed) = lzf::compress(s, s.len() - 4) {
            out.push(ENC_LZF);
            length(packed.len() as u64, out);
            length(s.len() as u64, out);
            out.extend_from_slice(&packed);
            return;
        }
    }
    length(s.len() as u64, out);
    out.extend_from_slice(s);
}
