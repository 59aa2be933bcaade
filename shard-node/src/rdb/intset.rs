//! Intsets (Redis's src/intset.c): sets of integers, sorted, as RDB_TYPE_SET_INTSET blobs.
//! Layout: element width in bytes (u32 LE: 2, 4 or 8), element count (u32 LE), the elements
//! (little endian, ascending, no repeats).

use super::reader::int_text;
use super::Bad;

/// The members of the intset `blob`, as decimal text.
pub fn members(blob: &[u8]) -> Result<Vec<Vec<u8>>, Bad> {
    let header = blob.get(..8).ok_or(Bad("intset shorter than its header"))?;
    let width = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let count = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if !matches!(width, 2 | 4 | 8) {
        return Err(Bad("intset width"));
    }
    let body = &blob[8..];
    if count.checked_mul(width) != Some(body.len()) {
        return Err(Bad("intset size disagrees with its count"));
    }
    let mut out = Vec::with_capacity(count);
    let mut previous: Option<i64> = None;
    for chunk in body.chunks_exact(width) {
        let value = match width {
            2 => i64::from(i16::from_le_bytes([chunk[0], chunk[1]])),
            4 => i64::from(i32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]])),
            _ => i64::from_le_bytes([
                chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
            ]),
        };
        if previous.is_some_and(|p| p >= value) {
            return Err(Bad("intset not ascending"));
        }
        previous = Some(value);
        out.push(int_text(value));
    }
    Ok(out)
}
