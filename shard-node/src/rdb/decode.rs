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
use crate::keyspace::{HashValue, SortedSet, Value};

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
        _ => Err(Bad("object type Tessera does not hold")),
    }
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
