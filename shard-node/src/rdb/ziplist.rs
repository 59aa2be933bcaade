//! The encodings Redis used before listpacks, still read by Redis 7.0 from old RDB files and DUMP
//! payloads: ziplists (src/ziplist.c: lists, hashes and sorted sets up to 6.2, and quicklist 1
//! nodes) and zipmaps (src/zipmap.c: hashes before 2.6). Read only, every entry checked.

use super::reader::int_text;
use super::{Bad, Pair};

const ZIPLIST_HEADER: usize = 10;
const END: u8 = 0xff;
/// A previous-entry length of 254 or more takes this marker and 4 bytes.
const BIG_PREVLEN: u8 = 0xfe;
/// The entry count field's value when the count does not fit.
const COUNT_UNKNOWN: u16 = u16::MAX;

/// The entries of the ziplist `blob`, integers as their decimal text.
pub fn entries(blob: &[u8]) -> Result<Vec<Vec<u8>>, Bad> {
    if blob.len() < ZIPLIST_HEADER + 1 {
        return Err(Bad("ziplist shorter than its header"));
    }
    let total = u32::from_le_bytes([blob[0], blob[1], blob[2], blob[3]]) as usize;
    if total != blob.len() {
        return Err(Bad("ziplist size field disagrees"));
    }
    let count = u16::from_le_bytes([blob[8], blob[9]]);
    let mut out = Vec::with_capacity(usize::from(count).min(blob.len() / 2));
    let mut pos = ZIPLIST_HEADER;
    let mut prev_len = 0usize;
    loop {
        let Some(&first) = blob.get(pos) else {
            return Err(Bad("ziplist without terminator"));
        };
        if first == END {
            pos += 1;
            break;
        }
        let start = pos;
        // The previous entry's length: checked, as zipEntrySafe does.
        let stored_prev = if first == BIG_PREVLEN {
            let raw = blob
                .get(pos + 1..pos + 5)
                .ok_or(Bad("ziplist entry runs past the end"))?;
            pos += 5;
            u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize
        } else {
            pos += 1;
            usize::from(first)
        };
        if stored_prev != prev_len {
            return Err(Bad("ziplist previous length disagrees"));
        }
        let (value, used) = entry(&blob[pos..])?;
        pos += used;
        prev_len = pos - start;
        out.push(value);
    }
    if pos != blob.len() {
        return Err(Bad("ziplist bytes after the terminator"));
    }
    if count != COUNT_UNKNOWN && usize::from(count) != out.len() {
        return Err(Bad("ziplist count disagrees"));
    }
    Ok(out)
}

/// One entry's encoding and data at the start of `at`: its value and the bytes they take.
fn entry(at: &[u8]) -> Result<(Vec<u8>, usize), Bad> {
    let data = |offset: usize, len: usize| -> Result<&[u8], Bad> {
        at.get(offset..offset + len)
            .ok_or(Bad("ziplist entry runs past the end"))
    };
    let first = data(0, 1)?[0];
    let le = |bytes: &[u8]| -> u64 {
        bytes
            .iter()
            .enumerate()
            .fold(0u64, |acc, (i, b)| acc | (u64::from(*b) << (8 * i)))
    };
    let sign_extend = |raw: u64, bits: u32| -> i64 { ((raw << (64 - bits)) as i64) >> (64 - bits) };
    Ok(match first >> 6 {
        0 => {
            let len = usize::from(first & 0x3f);
            (data(1, len)?.to_vec(), 1 + len)
        }
        1 => {
            let len = (usize::from(first & 0x3f) << 8) | usize::from(data(1, 1)?[0]);
            (data(2, len)?.to_vec(), 2 + len)
        }
        2 => {
            if first != 0x80 {
                return Err(Bad("unknown ziplist encoding"));
            }
            let raw = data(1, 4)?;
            let len = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
            (data(5, len)?.to_vec(), 5 + len)
        }
        _ => match first {
            0xc0 => (int_text(sign_extend(le(data(1, 2)?), 16)), 3),
            0xd0 => (int_text(sign_extend(le(data(1, 4)?), 32)), 5),
            0xe0 => (int_text(sign_extend(le(data(1, 8)?), 64)), 9),
            0xf0 => (int_text(sign_extend(le(data(1, 3)?), 24)), 4),
            0xfe => (int_text(sign_extend(le(data(1, 1)?), 8)), 2),
            0xf1..=0xfd => (int_text(i64::from(first & 0x0f) - 1), 1),
            _ => return Err(Bad("unknown ziplist encoding")),
        },
    })
}

/// The field/value pairs of the zipmap `blob` (RDB_TYPE_HASH_ZIPMAP).
pub fn zipmap_pairs(blob: &[u8]) -> Result<Vec<Pair>, Bad> {
    let mut pos = 1; // the count byte is a hint only (254 and more: unknown)
    if blob.is_empty() {
        return Err(Bad("empty zipmap"));
    }
    let mut out = Vec::new();
    let truncated = Bad("zipmap entry runs past the end");
    let read_len = |pos: &mut usize| -> Result<Option<usize>, Bad> {
        let first = *blob.get(*pos).ok_or(truncated)?;
        *pos += 1;
        match first {
            END => Ok(None),
            254 => {
                let raw = blob.get(*pos..*pos + 4).ok_or(truncated)?;
                *pos += 4;
                Ok(Some(
                    u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize
                ))
            }
            len => Ok(Some(usize::from(len))),
        }
    };
    while let Some(key_len) = read_len(&mut pos)? {
        let key = blob.get(pos..pos + key_len).ok_or(truncated)?.to_vec();
        pos += key_len;
        let value_len = read_len(&mut pos)?.ok_or(Bad("zipmap field without a value"))?;
        let free = usize::from(*blob.get(pos).ok_or(truncated)?);
        pos += 1;
        let value = blob.get(pos..pos + value_len).ok_or(truncated)?.to_vec();
        pos += value_len + free;
        out.push((key, value));
    }
    if pos != blob.len() {
        return Err(Bad("zipmap bytes after the terminator"));
    }
    Ok(out)
}
