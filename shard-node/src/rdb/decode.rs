//! RDB object → `Value`, as Redis 7.0's rdbLoadObject, for every type and encoding it reads that
//! Tessera has a type for. Collections are built only through their public constructors
//! (`collect`, `SortedSet::insert`) so the in-memory representation can change underneath.
//!
//! What Redis refuses, this refuses too: empty collections, repeated members or fields, NaN
//! scores. What Redis would only catch with deep sanitization (sanitize-dump-payload yes), this
//! always checks, because it parses every compact blob in full.

use bytes::Bytes;

use super::reader::Reader;
use super::{intset, listpack, types, ziplist, Bad, Pair};
use crate::keyspace::stream::{Consumer, Group, Pending, StreamId};
use crate::keyspace::{HashValue, SortedSet, Stream, Value};

/// Quicklist 2 node containers (QUICKLIST_NODE_CONTAINER_*).
const CONTAINER_PLAIN: usize = 1;
const CONTAINER_PACKED: usize = 2;
/// The smallest encoded string: one length byte. Counts are checked against it.
const MIN_STRING: usize = 1;

/// Reads the object of RDB type `kind` from `r`.
pub fn object(kind: u8, r: &mut Reader<'_>) -> Result<Value, Bad> {
    match kind {
        types::STRING => Ok(Value::String(Bytes::from(r.string()?))),
        types::LIST => {
            let n = r.count(MIN_STRING)?;
            list((0..n).map(|_| r.string()).collect::<Result<_, _>>()?)
        }
        types::SET => {
            let n = r.count(MIN_STRING)?;
            set((0..n).map(|_| r.string()).collect::<Result<_, _>>()?)
        }
        types::ZSET | types::ZSET_2 => {
            // A member and a score: at least two bytes (text) or nine (binary).
            let n = r.count(if kind == types::ZSET { 2 } else { 9 })?;
            let mut pairs = Vec::with_capacity(n);
            for _ in 0..n {
                let member = r.string()?;
                let score = if kind == types::ZSET {
                    r.text_double()?
                } else {
                    r.binary_double()?
                };
                pairs.push((member, score));
            }
            zset(pairs)
        }
        types::HASH => {
            let n = r.count(2 * MIN_STRING)?;
            let mut pairs = Vec::with_capacity(n);
            for _ in 0..n {
                pairs.push((r.string()?, r.string()?));
            }
            hash(pairs)
        }
        types::HASH_ZIPMAP => hash(ziplist::zipmap_pairs(&r.string()?)?),
        types::LIST_ZIPLIST => list(ziplist::entries(&r.string()?)?),
        types::SET_INTSET => set(intset::members(&r.string()?)?),
        types::ZSET_ZIPLIST => zset(scored(ziplist::entries(&r.string()?)?)?),
        types::HASH_ZIPLIST => hash(paired(ziplist::entries(&r.string()?)?)?),
        types::ZSET_LISTPACK => zset(scored(listpack::entries(&r.string()?)?)?),
        types::HASH_LISTPACK => hash(paired(listpack::entries(&r.string()?)?)?),
        types::LIST_QUICKLIST => {
            let nodes = r.count(MIN_STRING)?;
            let mut items = Vec::new();
            for _ in 0..nodes {
                items.extend(ziplist::entries(&r.string()?)?);
            }
            list(items)
        }
        types::LIST_QUICKLIST_2 => {
            // A container length and a blob per node.
            let nodes = r.count(2)?;
            let mut items = Vec::new();
            for _ in 0..nodes {
                match r.len()? {
                    CONTAINER_PLAIN => items.push(r.string()?),
                    CONTAINER_PACKED => items.extend(listpack::entries(&r.string()?)?),
                    _ => return Err(Bad("unknown quicklist container")),
                }
            }
            list(items)
        }
        types::STREAM_LISTPACKS | types::STREAM_LISTPACKS_2 => {
            stream(r, kind == types::STREAM_LISTPACKS_2)
        }
        _ => Err(Bad("object type Tessera does not hold")),
    }
}

fn int_of(item: Option<&Vec<u8>>) -> Result<i64, Bad> {
    item.and_then(|t| crate::cmd::parse::parse_i64(t))
        .ok_or(Bad("stream listpack item is not an integer"))
}

fn u64_len(r: &mut Reader<'_>) -> Result<u64, Bad> {
    Ok(r.len()? as u64)
}

fn raw_id(r: &mut Reader<'_>) -> Result<StreamId, Bad> {
    let raw = r.take(16)?;
    let mut ms = [0u8; 8];
    let mut seq = [0u8; 8];
    ms.copy_from_slice(&raw[..8]);
    seq.copy_from_slice(&raw[8..]);
    Ok(StreamId::new(
        u64::from_be_bytes(ms),
        u64::from_be_bytes(seq),
    ))
}

fn millis(r: &mut Reader<'_>) -> Result<u64, Bad> {
    let raw = r.take(8)?;
    let mut b = [0u8; 8];
    b.copy_from_slice(raw);
    Ok(u64::from_le_bytes(b))
}

/// RDB_TYPE_STREAM_LISTPACKS(_2), as Redis 7.0 writes it (see `encode::stream`): every node's
/// listpack is walked in full, deleted entries skipped, IDs checked to ascend.
fn stream(r: &mut Reader<'_>, v2: bool) -> Result<Value, Bad> {
    let bad = |why| Bad(why);
    let mut s = Stream::default();
    let nodes = r.count(2)?;
    for _ in 0..nodes {
        let key = r.string()?;
        if key.len() != 16 {
            return Err(bad("stream node key is not an ID"));
        }
        let master = raw_id(&mut Reader::new(&key))?;
        let items = listpack::entries(&r.string()?)?;
        if items.is_empty() {
            return Err(bad("empty stream listpack"));
        }
        let mut it = items.iter();
        let _count = int_of(it.next())?;
        let _deleted = int_of(it.next())?;
        let master_n = int_of(it.next())?;
        if master_n < 0 || master_n as usize > items.len() {
            return Err(bad("stream master entry out of range"));
        }
        let master_fields: Vec<&Vec<u8>> = it.by_ref().take(master_n as usize).collect();
        if master_fields.len() != master_n as usize || int_of(it.next())? != 0 {
            return Err(bad("stream master entry malformed"));
        }
        while let Some(flags) = it.next() {
            let flags = int_of(Some(flags))?;
            let ms = master.ms.wrapping_add(int_of(it.next())? as u64);
            let seq = master.seq.wrapping_add(int_of(it.next())? as u64);
            let id = StreamId::new(ms, seq);
            let mut fields: Vec<&[u8]> = Vec::new();
            if flags & 2 != 0 {
                for f in &master_fields {
                    fields.push(f);
                    fields.push(it.next().ok_or(bad("stream entry truncated"))?);
                }
            } else {
                let n = int_of(it.next())?;
                if n < 0 || n as usize > items.len() {
                    return Err(bad("stream entry field count out of range"));
                }
                for _ in 0..2 * n {
                    fields.push(it.next().ok_or(bad("stream entry truncated"))?);
                }
            }
            let _lp_count = int_of(it.next())?;
            if flags & 1 != 0 {
                continue;
            }
            if fields.is_empty() {
                return Err(bad("stream entry without fields"));
            }
            if !s.is_empty() && id <= s.last_id {
                return Err(bad("stream IDs out of order"));
            }
            s.append(id, &fields);
        }
    }
    let length = u64_len(r)?;
    if length != s.len() as u64 {
        return Err(bad("stream length disagrees"));
    }
    let last = StreamId::new(u64_len(r)?, u64_len(r)?);
    if s.last_entry().is_some_and(|(id, _)| *id > last) {
        return Err(bad("stream last ID below an entry"));
    }
    s.last_id = last;
    if v2 {
        let _first = StreamId::new(u64_len(r)?, u64_len(r)?);
        s.max_deleted_id = StreamId::new(u64_len(r)?, u64_len(r)?);
        s.entries_added = u64_len(r)?;
    } else {
        s.entries_added = length;
    }
    let groups = r.count(3)?;
    for _ in 0..groups {
        let name = Bytes::from(r.string()?);
        let last_id = StreamId::new(u64_len(r)?, u64_len(r)?);
        let entries_read = if v2 {
            u64_len(r)? as i64
        } else {
            s.estimate_entries_read(last_id)
        };
        let mut group = Group::new(last_id, entries_read);
        let pel = r.count(16 + 8 + 1)?;
        for _ in 0..pel {
            let id = raw_id(r)?;
            let delivery_time = millis(r)?;
            let delivery_count = u64_len(r)?;
            group.pel.insert(
                id,
                Pending {
                    consumer: Bytes::new(),
                    delivery_time,
                    delivery_count,
                },
            );
        }
        let consumers = r.count(1 + 8 + 1)?;
        for _ in 0..consumers {
            let cname = Bytes::from(r.string()?);
            let seen_time = millis(r)?;
            let mut consumer = Consumer {
                seen_time,
                ..Consumer::default()
            };
            let n = r.count(16)?;
            for _ in 0..n {
                let id = raw_id(r)?;
                let pending = group
                    .pel
                    .get_mut(&id)
                    .ok_or(bad("consumer PEL entry missing from the group's"))?;
                if !pending.consumer.is_empty() {
                    return Err(bad("PEL entry owned twice"));
                }
                pending.consumer = cname.clone();
                consumer.pel.insert(id);
            }
            if group.consumers.insert(cname, consumer).is_some() {
                return Err(bad("duplicate consumer"));
            }
        }
        if group.pel.values().any(|p| p.consumer.is_empty()) {
            return Err(bad("PEL entry without a consumer"));
        }
        if s.groups.insert(name, group).is_some() {
            return Err(bad("duplicate consumer group"));
        }
    }
    Ok(Value::Stream(Box::new(s)))
}

fn list(items: Vec<Vec<u8>>) -> Result<Value, Bad> {
    if items.is_empty() {
        return Err(Bad("empty list"));
    }
    Ok(Value::List(Box::new(
        items.into_iter().map(Bytes::from).collect(),
    )))
}

fn set(members: Vec<Vec<u8>>) -> Result<Value, Bad> {
    let n = members.len();
    distinct(
        Value::Set(Box::new(members.into_iter().map(Bytes::from).collect())),
        n,
    )
}

fn hash(pairs: Vec<Pair>) -> Result<Value, Bad> {
    let n = pairs.len();
    let mut hash = HashValue::default();
    for (field, value) in pairs {
        hash.insert(&field, &value);
    }
    distinct(Value::Hash(Box::new(hash)), n)
}

fn zset(pairs: Vec<(Vec<u8>, f64)>) -> Result<Value, Bad> {
    let n = pairs.len();
    let mut zset = SortedSet::default();
    for (member, score) in pairs {
        zset.insert(Bytes::from(member), score);
    }
    distinct(Value::ZSet(Box::new(zset)), n)
}

/// `value`, built from `n` items, unless it is empty or holds fewer than `n` (a repeat).
fn distinct(value: Value, n: usize) -> Result<Value, Bad> {
    let len = match &value {
        Value::String(_) => 1,
        Value::List(l) => l.len(),
        Value::Set(s) => s.len(),
        Value::Hash(h) => h.len(),
        Value::ZSet(z) => z.len(),
        Value::Stream(_) => n,
    };
    if len == 0 {
        return Err(Bad("empty collection"));
    }
    if len != n {
        return Err(Bad("repeated member or field"));
    }
    Ok(value)
}

/// Alternating entries as (field, value) pairs.
fn paired(entries: Vec<Vec<u8>>) -> Result<Vec<Pair>, Bad> {
    if !entries.len().is_multiple_of(2) {
        return Err(Bad("odd number of entries in a pair encoding"));
    }
    let mut out = Vec::with_capacity(entries.len() / 2);
    let mut it = entries.into_iter();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        out.push((a, b));
    }
    Ok(out)
}

/// Alternating member / score-text entries as (member, score) pairs.
fn scored(entries: Vec<Vec<u8>>) -> Result<Vec<(Vec<u8>, f64)>, Bad> {
    paired(entries)?
        .into_iter()
        .map(|(member, score)| {
            let score = super::reader::parse_double(&score).ok_or(Bad("score is not a number"))?;
            Ok((member, score))
        })
        .collect()
}
