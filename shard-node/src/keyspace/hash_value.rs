//! A hash's fields and values in one of Redis 7.0's two encodings.
//!
//! - `listpack` while the hash has at most 512 fields and no field or value longer than 64 bytes
//!   (Redis's hash-max-listpack-entries / -value defaults): every pair packed into one exact-size
//!   allocation, `[len][field][len][value]...` with one length byte each, in insertion order (as
//!   Redis's listpack, so HGETALL of a small hash answers in Redis's order). Lookups are linear, as
//!   in Redis, which is cheap at this size; a hash of 10 small fields costs one ~200-byte block
//!   instead of a table and twenty separate allocations.
//! - `hashtable` beyond that: a `ScanTable` of boxed field/value pairs, which HSCAN pages through
//!   with a cursor. As Redis, a hash never converts back, so OBJECT ENCODING reports what Redis
//!   would after the same history.

use super::scan_table::ScanTable;

/// Redis 7.0's hash-max-listpack-entries (512; sorted sets pack up to 128).
pub const MAX_PACKED_ENTRIES: usize = 512;
/// Redis 7.0's hash-max-listpack-value (and the most a packed length byte needs to hold).
pub const MAX_PACKED_VALUE: usize = 64;

type Pair = (Box<[u8]>, Box<[u8]>);

#[derive(Debug, Clone)]
pub enum HashValue {
    Packed(Box<[u8]>),
    Table(ScanTable<Pair>),
}

impl Default for HashValue {
    fn default() -> Self {
        HashValue::Packed(Box::default())
    }
}

impl PartialEq for HashValue {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(f, v)| other.get(f) == Some(v))
    }
}

/// The pairs of a packed buffer, with the byte offset each pair starts at.
fn packed_pairs(buf: &[u8]) -> impl Iterator<Item = (usize, &[u8], &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let start = at;
        let field_len = usize::from(*buf.get(at)?);
        let field = buf.get(at + 1..at + 1 + field_len)?;
        at += 1 + field_len;
        let value_len = usize::from(*buf.get(at)?);
        let value = buf.get(at + 1..at + 1 + value_len)?;
        at += 1 + value_len;
        Some((start, field, value))
    })
}

/// Appends one pair to a packed buffer being built (both parts at most `MAX_PACKED_VALUE`).
fn push_pair(out: &mut Vec<u8>, field: &[u8], value: &[u8]) {
    for part in [field, value] {
        out.push(part.len() as u8);
        out.extend_from_slice(part);
    }
}

impl HashValue {
    pub fn len(&self) -> usize {
        match self {
            HashValue::Packed(buf) => packed_pairs(buf).count(),
            HashValue::Table(table) => table.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            HashValue::Packed(buf) => buf.is_empty(),
            HashValue::Table(table) => table.is_empty(),
        }
    }

    /// OBJECT ENCODING's name for the present form.
    pub fn encoding(&self) -> &'static str {
        match self {
            HashValue::Packed(_) => "listpack",
            HashValue::Table(_) => "hashtable",
        }
    }

    pub fn is_packed(&self) -> bool {
        matches!(self, HashValue::Packed(_))
    }

    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        match self {
            HashValue::Packed(buf) => {
                packed_pairs(buf).find_map(|(_, f, v)| (f == field).then_some(v))
            }
            HashValue::Table(table) => table.get(field).map(|(_, v)| &v[..]),
        }
    }

    pub fn contains_key(&self, field: &[u8]) -> bool {
        self.get(field).is_some()
    }

    /// Sets `field` to `value`; true when the field is new.
    pub fn insert(&mut self, field: &[u8], value: &[u8]) -> bool {
        if let HashValue::Packed(buf) = self {
            let fits = field.len() <= MAX_PACKED_VALUE && value.len() <= MAX_PACKED_VALUE;
            let existing = packed_pairs(buf).find(|(_, f, _)| *f == field);
            match existing {
                Some((start, _, old)) if fits => {
                    let value_at = start + 1 + field.len();
                    if old.len() == value.len() {
                        buf[value_at + 1..value_at + 1 + value.len()].copy_from_slice(value);
                    } else {
                        let mut out = Vec::with_capacity(buf.len() - old.len() + value.len());
                        out.extend_from_slice(&buf[..value_at]);
                        out.push(value.len() as u8);
                        out.extend_from_slice(value);
                        out.extend_from_slice(&buf[value_at + 1 + old.len()..]);
                        *buf = out.into_boxed_slice();
                    }
                    return false;
                }
                None if fits && packed_pairs(buf).count() < MAX_PACKED_ENTRIES => {
                    let mut out = Vec::with_capacity(buf.len() + 2 + field.len() + value.len());
                    out.extend_from_slice(buf);
                    push_pair(&mut out, field, value);
                    *buf = out.into_boxed_slice();
                    return true;
                }
                _ => self.convert_to_table(),
            }
        }
        match self {
            HashValue::Table(table) => table.insert((Box::from(field), Box::from(value))).is_none(),
            HashValue::Packed(_) => false,
        }
    }

    /// Removes `field`; true when it was there.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        match self {
            HashValue::Packed(buf) => {
                let Some((start, f, v)) = packed_pairs(buf).find(|(_, f, _)| *f == field) else {
                    return false;
                };
                let end = start + 2 + f.len() + v.len();
                let mut out = Vec::with_capacity(buf.len() - (end - start));
                out.extend_from_slice(&buf[..start]);
                out.extend_from_slice(&buf[end..]);
                *buf = out.into_boxed_slice();
                true
            }
            HashValue::Table(table) => table.remove(field).is_some(),
        }
    }

    /// Every pair: insertion order when packed, bucket order in a table.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&[u8], &[u8])> + '_> {
        match self {
            HashValue::Packed(buf) => Box::new(packed_pairs(buf).map(|(_, f, v)| (f, v))),
            HashValue::Table(table) => Box::new(table.iter().map(|(f, v)| (&f[..], &v[..]))),
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.iter().map(|(f, _)| f)
    }

    /// One HSCAN step over the table form: visits the bucket `cursor` names, returns the next.
    /// A packed hash is visited whole and ends the scan (cursor 0), as Redis does.
    pub fn scan(&self, cursor: u64, mut visit: impl FnMut(&[u8], &[u8])) -> u64 {
        match self {
            HashValue::Packed(buf) => {
                packed_pairs(buf).for_each(|(_, f, v)| visit(f, v));
                0
            }
            HashValue::Table(table) => table.scan(cursor, |(f, v)| visit(f, v)),
        }
    }

    /// The pairs held, as one contiguous packed buffer's size or the table's bucket count: what
    /// MEMORY USAGE needs to size the form.
    pub fn packed_bytes(&self) -> Option<usize> {
        match self {
            HashValue::Packed(buf) => Some(buf.len()),
            HashValue::Table(_) => None,
        }
    }

    /// The table form's bucket array length (0 when packed).
    pub fn table_buckets(&self) -> usize {
        match self {
            HashValue::Packed(_) => 0,
            HashValue::Table(table) => table.buckets(),
        }
    }

    fn convert_to_table(&mut self) {
        if let HashValue::Packed(buf) = self {
            let table = packed_pairs(buf)
                .map(|(_, f, v)| (Box::from(f), Box::from(v)))
                .collect();
            *self = HashValue::Table(table);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_keeps_insertion_order_and_updates_in_place() {
        let mut h = HashValue::default();
        assert!(h.insert(b"b", b"1"));
        assert!(h.insert(b"a", b"22"));
        assert!(h.insert(b"c", b"3"));
        assert!(!h.insert(b"a", b"4"));
        assert!(!h.insert(b"b", b"555"));
        let pairs: Vec<_> = h.iter().collect();
        assert_eq!(
            pairs,
            vec![(&b"b"[..], &b"555"[..]), (b"a", b"4"), (b"c", b"3")]
        );
        assert!(h.remove(b"a"));
        assert!(!h.remove(b"a"));
        assert_eq!(h.len(), 2);
        assert_eq!(h.get(b"c"), Some(&b"3"[..]));
        assert_eq!(h.encoding(), "listpack");
    }

    #[test]
    fn converts_past_the_thresholds_and_stays_converted() {
        let mut h = HashValue::default();
        for i in 0..MAX_PACKED_ENTRIES {
            h.insert(format!("f{i}").as_bytes(), b"v");
        }
        assert_eq!(h.encoding(), "listpack");
        h.insert(b"one-more", b"v");
        assert_eq!(h.encoding(), "hashtable");
        assert_eq!(h.len(), MAX_PACKED_ENTRIES + 1);
        h.remove(b"one-more");
        assert_eq!(h.encoding(), "hashtable");

        let mut long = HashValue::default();
        long.insert(b"f", b"short");
        long.insert(b"f", &[b'x'; MAX_PACKED_VALUE + 1]);
        assert_eq!(long.encoding(), "hashtable");
        assert_eq!(long.get(b"f").map(<[u8]>::len), Some(MAX_PACKED_VALUE + 1));
    }
}
