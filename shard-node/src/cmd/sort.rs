//! SORT and SORT_RO, as Redis's sortCommandGeneric: BY (a weight pattern, or a constant for no
//! sorting), LIMIT, GET (`#`, key patterns and `->` hash fields), ASC/DESC, ALPHA and STORE, over
//! lists, sets and sorted sets, with Redis's errors in Redis's order.
//!
//! Cluster mode: this node is a Redis Cluster node. Redis 7.0 refuses every BY pattern with a `*`
//! and every GET there ("BY option of SORT denied in Cluster mode."); newer Redis allows a pattern
//! whose keys all hash to the sorted key's slot (its `{hash tag}` comes before any wildcard, as
//! Redis's patternHashSlot decides), and GET `#`. This node follows the newer rule, with the newer
//! rule's error texts: a pattern whose keys are in the sorted key's slot works as on a standalone
//! Redis; any other answers "BY|GET option of SORT denied in Cluster mode when keys formed by the
//! pattern may be in different slots.". Since the allowed patterns' keys are in the locked slot,
//! their lookups need no other lock.
//!
//! Sorting is stable, as glibc's qsort (a merge sort), which Redis calls, except with BY and a
//! LIMIT, where Redis sorts the range with its partial quicksort (`pqsort`, ported), so elements
//! whose weights compare equal come out in Redis's order. Known differences: a set's or sorted
//! set's own iteration order (BY nosort, and ties among its elements) is this node's; numbers are
//! read as Rust reads floats, so C's hexadecimal floats (`0x10`) are refused; and Redis never
//! clears `errno` before its strtod, so after one weight overflowed (`1e400`) it refuses every
//! numeric sort for a while, which this node does not copy.
//!
//! SORT ... STORE is logged as the DEL and RPUSH of what it stored, which replays to the same list
//! whatever order ties took.

use std::cmp::Ordering;

use bytes::Bytes;
use tessera_proto::resp::Frame;
use tessera_proto::slot::key_hash_slot;

use super::dispatch::DispatchEntry;
use super::parse::{err, parse_i64, ERR_NOT_INTEGER, ERR_SYNTAX, ERR_WRONGTYPE};
use super::pqsort::pqsort;
use super::zset::parse_score;
use super::{Ctx, Txn};
use crate::keyspace::{Entry, Value, ValueRef};

/// Redis's patternHashSlot: the one slot every key matching `pattern` hashes to, or `None` when
/// they may be in several (a wildcard or escape before a complete non-empty `{tag}`, or `{}`).
fn pattern_hash_slot(pattern: &[u8]) -> Option<u16> {
    let mut open: Option<usize> = None;
    for (i, &c) in pattern.iter().enumerate() {
        match c {
            b'*' | b'?' | b'[' | b'\\' => return None,
            b'{' if open.is_none() => open = Some(i),
            b'}' => match open {
                Some(s) if i == s + 1 => return None,
                Some(s) => {
                    // The tag holds no `}`, so as a `{tag}` key it hashes to crc16(tag).
                    let mut tagged = Vec::with_capacity(i - s + 1);
                    tagged.extend_from_slice(&pattern[s..=i]);
                    return Some(key_hash_slot(&tagged));
                }
                None => {}
            },
            _ => {}
        }
    }
    // No complete tag: the whole pattern is the key (it has no `{...}` that `key_hash_slot` would
    // take as a tag either).
    Some(key_hash_slot(pattern))
}

/// C's `strchr(s, c)` on the bytes up to the first NUL, as Redis reads a pattern.
fn c_str(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

/// The value `pattern` names for `element` (lookupKeyByPattern): `#` is the element itself; the
/// first `*` is replaced by the element; a `->field` after it reads that hash field. A key of
/// another type than expected, or a pattern without `*`, gives nothing.
fn lookup_by_pattern(txn: &mut Txn<'_>, pattern: &[u8], element: &Bytes) -> Option<Bytes> {
    let spat = c_str(pattern);
    if spat == b"#" {
        return Some(element.clone());
    }
    let star = spat.iter().position(|&b| b == b'*')?;
    // `strstr(p+1, "->")` with something after the arrow.
    let arrow = spat[star + 1..]
        .windows(2)
        .position(|w| w == b"->")
        .map(|i| star + 1 + i)
        .filter(|&f| f + 2 < spat.len());
    // The field runs to the pattern's real end (Redis takes its length from the sds).
    let (key_pattern_end, field) = match arrow {
        Some(f) => (f, Some(&pattern[f + 2..])),
        None => (pattern.len(), None),
    };
    let mut key = Vec::with_capacity(key_pattern_end + element.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(element);
    key.extend_from_slice(&pattern[star + 1..key_pattern_end]);
    let entry = txn.read(&key)?;
    match (entry.value, field) {
        (ValueRef::Hash(h), Some(field)) => h.get(field).map(Bytes::copy_from_slice),
        (ValueRef::String(s), None) => Some(Bytes::copy_from_slice(s)),
        _ => None,
    }
}

/// A weight as SORT reads it with C's strtod: leading spaces pass, the empty text is 0, and
/// trailing bytes, NaN, overflow and underflow are errors (`None`).
fn parse_weight(text: &[u8]) -> Option<f64> {
    let text = c_str(text);
    if text.is_empty() {
        return Some(0.0);
    }
    let start = text
        .iter()
        .position(|c| !(c.is_ascii_whitespace() || *c == 0x0b))?;
    parse_score(&text[start..])
}

/// C's `strcoll` in the C locale: `strcmp`, bytes up to the first NUL.
fn strcmp(a: &[u8], b: &[u8]) -> Ordering {
    c_str(a).cmp(c_str(b))
}

/// One element to sort, with its weight (a number, or with ALPHA and BY the pattern's value).
struct Item {
    element: Bytes,
    score: f64,
    cmp: Option<Bytes>,
}

/// The parsed command.
struct Options<'a> {
    desc: bool,
    alpha: bool,
    limit: (i64, i64),
    store: Option<&'a Bytes>,
    by: Option<&'a Bytes>,
    dontsort: bool,
    gets: Vec<&'a Bytes>,
}

fn parse_options<'a>(args: &'a [Bytes], readonly: bool) -> Result<Options<'a>, Frame> {
    let mut o = Options {
        desc: false,
        alpha: false,
        limit: (0, -1),
        store: None,
        by: None,
        dontsort: false,
        gets: Vec::new(),
    };
    let key_slot = key_hash_slot(&args[1]);
    let mut j = 2;
    while j < args.len() {
        let leftargs = args.len() - j - 1;
        let arg = args[j].to_ascii_lowercase();
        match arg.as_slice() {
            b"asc" => o.desc = false,
            b"desc" => o.desc = true,
            b"alpha" => o.alpha = true,
            b"limit" if leftargs >= 2 => {
                let start = parse_i64(&args[j + 1]).ok_or_else(|| err(ERR_NOT_INTEGER))?;
                let count = parse_i64(&args[j + 2]).ok_or_else(|| err(ERR_NOT_INTEGER))?;
                o.limit = (start, count);
                j += 2;
            }
            b"store" if !readonly && leftargs >= 1 => {
                o.store = Some(&args[j + 1]);
                j += 1;
            }
            b"by" if leftargs >= 1 => {
                let pattern = &args[j + 1];
                o.by = Some(pattern);
                if !c_str(pattern).contains(&b'*') {
                    o.dontsort = true;
                } else if pattern_hash_slot(pattern) != Some(key_slot) {
                    return Err(err(
                        "ERR BY option of SORT denied in Cluster mode when keys formed by the \
                         pattern may be in different slots.",
                    ));
                }
                j += 1;
            }
            b"get" if leftargs >= 1 => {
                let pattern = &args[j + 1];
                if pattern.as_ref() != b"#" && pattern_hash_slot(pattern) != Some(key_slot) {
                    return Err(err(
                        "ERR GET option of SORT denied in Cluster mode when keys formed by the \
                         pattern may be in different slots.",
                    ));
                }
                o.gets.push(pattern);
                j += 1;
            }
            _ => return Err(err(ERR_SYNTAX)),
        }
        j += 1;
    }
    Ok(o)
}

pub fn sort(ctx: &Ctx<'_>, args: &[Bytes], readonly: bool) -> Frame {
    let mut o = match parse_options(args, readonly) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let mut txn = ctx.lock(&args[1]);
    // The elements, as Redis loads its vector; `loaded` is where LIMIT's range starts in it.
    #[derive(PartialEq)]
    enum Kind {
        List,
        Set,
        ZSet,
    }
    let (kind, len) = match txn.read(&args[1]).map(|e| e.value) {
        None => (Kind::List, 0usize),
        Some(ValueRef::List(l)) => (Kind::List, l.len()),
        Some(ValueRef::Set(s)) => (Kind::Set, s.len()),
        Some(ValueRef::ZSet(z)) => (Kind::ZSet, z.len()),
        Some(_) => return err(ERR_WRONGTYPE),
    };
    if o.dontsort && kind == Kind::Set && o.store.is_some() {
        // A set has no order of its own: what is stored must not depend on it.
        o.dontsort = false;
        o.alpha = true;
        o.by = None;
    }
    let vectorlen = len as i64;
    let mut start = o.limit.0.max(0).min(vectorlen);
    let count = o.limit.1.max(-1).min(vectorlen);
    let mut end = if count < 0 {
        vectorlen - 1
    } else {
        start + count - 1
    };
    if start >= vectorlen {
        start = vectorlen - 1;
        end = vectorlen - 2;
    }
    if end >= vectorlen {
        end = vectorlen - 1;
    }
    let ranged = o.dontsort && kind != Kind::Set;
    let elements: Vec<Bytes> = match txn.live(&args[1]).map(|e| e.value) {
        Some(ValueRef::List(l)) if ranged => {
            if end >= start {
                let (s, n) = (start as usize, (end - start + 1) as usize);
                let out = if o.desc {
                    l.iter().rev().skip(s).take(n).cloned().collect()
                } else {
                    l.iter().skip(s).take(n).cloned().collect()
                };
                end -= start;
                start = 0;
                out
            } else {
                Vec::new()
            }
        }
        Some(ValueRef::ZSet(z)) if ranged => {
            let n = (end - start + 1).max(0) as usize;
            let s = start.max(0) as usize;
            let out = if o.desc {
                let top = len - s;
                z.by_index(top - n..top)
                    .rev()
                    .map(|(m, _)| m.clone())
                    .collect()
            } else {
                z.by_index(s..s + n).map(|(m, _)| m.clone()).collect()
            };
            end -= start;
            start = 0;
            out
        }
        Some(ValueRef::List(l)) => l.iter().cloned().collect(),
        Some(ValueRef::Set(s)) => s.iter().cloned().collect(),
        Some(ValueRef::ZSet(z)) => z.iter().map(|(m, _)| m.clone()).collect(),
        _ => Vec::new(),
    };
    let mut items: Vec<Item> = elements
        .into_iter()
        .map(|element| Item {
            element,
            score: 0.0,
            cmp: None,
        })
        .collect();
    let mut conversion_error = false;
    if !o.dontsort {
        for item in items.iter_mut() {
            let weight = match o.by {
                Some(pattern) => match lookup_by_pattern(&mut txn, pattern, &item.element) {
                    Some(v) => v,
                    None => continue,
                },
                None => item.element.clone(),
            };
            if o.alpha {
                if o.by.is_some() {
                    item.cmp = Some(weight);
                }
            } else {
                match parse_weight(&weight) {
                    Some(score) => item.score = score,
                    None => conversion_error = true,
                }
            }
        }
        let (alpha, by, store, desc) = (o.alpha, o.by.is_some(), o.store.is_some(), o.desc);
        let compare = |a: &Item, b: &Item| -> Ordering {
            let cmp = if !alpha {
                a.score
                    .partial_cmp(&b.score)
                    .unwrap_or(Ordering::Equal)
                    .then_with(|| a.element.cmp(&b.element))
            } else if by {
                match (&a.cmp, &b.cmp) {
                    (None, None) => Ordering::Equal,
                    (None, Some(_)) => Ordering::Less,
                    (Some(_), None) => Ordering::Greater,
                    (Some(x), Some(y)) if store => x.cmp(y),
                    (Some(x), Some(y)) => strcmp(x, y),
                }
            } else if store {
                a.element.cmp(&b.element)
            } else {
                strcmp(&a.element, &b.element)
            };
            if desc {
                cmp.reverse()
            } else {
                cmp
            }
        };
        if o.by.is_some() && (start != 0 || end != items.len() as i64 - 1) {
            // Redis's partial sort of the LIMIT range (`end < start` when it is empty).
            if end >= start {
                pqsort(&mut items, &mut { compare }, start as usize, end as usize);
            }
        } else {
            items.sort_by(compare);
        }
    }
    if conversion_error {
        return err("ERR One or more scores can't be converted into double");
    }
    let range = if end >= start {
        &items[start as usize..=end as usize]
    } else {
        &[][..]
    };
    let mut out: Vec<Option<Bytes>> = Vec::new();
    for item in range {
        if o.gets.is_empty() {
            out.push(Some(item.element.clone()));
        }
        for pattern in &o.gets {
            out.push(lookup_by_pattern(&mut txn, pattern, &item.element));
        }
    }
    let Some(dst) = o.store else {
        return Frame::Array(
            out.into_iter()
                .map(|v| v.map_or(Frame::Null, Frame::Bulk))
                .collect(),
        );
    };
    let n = out.len();
    let existed = txn.remove(dst).is_some();
    if existed {
        txn.log(&[Bytes::from_static(b"DEL"), dst.clone()]);
    }
    if n > 0 {
        let list: std::collections::VecDeque<Bytes> =
            out.into_iter().map(Option::unwrap_or_default).collect();
        let mut entry = Vec::with_capacity(n + 2);
        entry.push(Bytes::from_static(b"RPUSH"));
        entry.push(dst.clone());
        entry.extend(list.iter().cloned());
        txn.insert(dst.clone(), Entry::new(Value::List(Box::new(list)), None));
        txn.log(&entry);
    }
    Frame::Integer(n as i64)
}

/// The commands of this family, for the node's dispatch table (`cmd::dispatch`).
pub(super) const COMMANDS: &[DispatchEntry] = &[
    ("sort", |ctx, _, args| sort(ctx, args, false)),
    ("sort_ro", |ctx, _, args| sort(ctx, args, true)),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_slots_as_redis() {
        assert_eq!(pattern_hash_slot(b"{t}w_*"), Some(key_hash_slot(b"t")));
        assert_eq!(pattern_hash_slot(b"x{t}*->f"), Some(key_hash_slot(b"t")));
        assert_eq!(pattern_hash_slot(b"w_*"), None);
        assert_eq!(pattern_hash_slot(b"w_*{t}"), None);
        assert_eq!(pattern_hash_slot(b"{}*"), None);
        assert_eq!(pattern_hash_slot(b"plain"), Some(key_hash_slot(b"plain")));
        assert_eq!(pattern_hash_slot(b"a{b"), Some(key_hash_slot(b"a{b")));
    }

    #[test]
    fn weights_parse_as_strtod() {
        assert_eq!(parse_weight(b""), Some(0.0));
        assert_eq!(parse_weight(b"  2.5"), Some(2.5));
        assert_eq!(parse_weight(b"   "), None);
        assert_eq!(parse_weight(b"1 "), None);
        assert_eq!(parse_weight(b"nan"), None);
        assert_eq!(parse_weight(b"1e400"), None);
        assert_eq!(parse_weight(b"-inf"), Some(f64::NEG_INFINITY));
    }
}
