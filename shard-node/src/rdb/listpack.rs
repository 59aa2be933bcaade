//! Listpacks (Redis's src/listpack.c), the compact encoding Redis 7.0 dumps small hashes and
//! sorted sets in, and the nodes of its lists: read in full with every entry checked (encoding,
//! bounds, back-length, count, terminator), and written for the quicklist nodes of our DUMP.
//!
//! Layout: total bytes (u32 LE), entry count (u16 LE, 65535 = unknown), entries, 0xFF. An entry
//! is an encoding byte (small integers and short string lengths live in it), the data, and a
//! "back-length": the size of encoding + data, written so it can be read backwards.

use super::reader::int_text;
use super::Bad;
use crate::cmd::parse::parse_i64;

const HEADER: usize = 6;
const EOF: u8 = 0xff;
/// The count field's value when the count does not fit (then entries are counted by walking).
const COUNT_UNKNOWN: u16 = u16::MAX;

const STR32: u8 = 0xf0;
const INT16: u8 = 0xf1;
const INT24: u8 = 0xf2;
const INT32: u8 = 0xf3;
const INT64: u8 = 0xf4;

/// The entries of the listpack `blob`, integers as their decimal text.
pub fn entries(blob: &[u8]) -> Result<Vec<Vec<u8>>, Bad> {
    if blob.len() < HEADER + 1 {
        return Err(Bad("listpack shorter than its header"));
    }
    let total = u32::from_le_bytes([blob[0], blob[1], blob[2], blob[3]]) as usize;
    if total != blob.len() {
        return Err(Bad("listpack size field disagrees"));
    }
    let count = u16::from_le_bytes([blob[4], blob[5]]);
    let body = &blob[HEADER..];
    // Every entry takes at least two bytes, so the count is bounded by the blob.
    let mut out = Vec::with_capacity(usize::from(count).min(body.len() / 2));
    let mut pos = 0;
    loop {
        let Some(&first) = body.get(pos) else {
            return Err(Bad("listpack without terminator"));
        };
        if first == EOF {
            pos += 1;
            break;
        }
        let (value, entry_len) = entry(&body[pos..])?;
        pos += entry_len;
        let back = backlen_bytes(entry_len);
        if body.get(pos..pos + back.len()) != Some(&back[..]) {
            return Err(Bad("listpack back-length disagrees"));
        }
        pos += back.len();
        out.push(value);
    }
    if pos != body.len() {
        return Err(Bad("listpack bytes after the terminator"));
    }
    if count != COUNT_UNKNOWN && usize::from(count) != out.len() {
        return Err(Bad("listpack count disagrees"));
    }
    Ok(out)
}

/// One entry at the start of `at`: its value and the size of its encoding and data.
fn entry(at: &[u8]) -> Result<(Vec<u8>, usize), Bad> {
    let first = at[0];
    let data = |offset: usize, len: usize| -> Result<&[u8], Bad> {
        at.get(offset..offset + len)
            .ok_or(Bad("listpack entry runs past the end"))
    };
    let signed = |bytes: &[u8], bits: u32| -> i64 {
        let mut raw: u64 = 0;
        for (i, b) in bytes.iter().enumerate() {
            raw |= u64::from(*b) << (8 * i);
        }
        // Sign-extend from `bits`.
        let shift = 64 - bits;
        ((raw << shift) as i64) >> shift
    };
    Ok(if first & 0x80 == 0 {
        (int_text(i64::from(first & 0x7f)), 1)
    } else if first & 0xc0 == 0x80 {
        let len = usize::from(first & 0x3f);
        (data(1, len)?.to_vec(), 1 + len)
    } else if first & 0xe0 == 0xc0 {
        let low = data(1, 1)?[0];
        let raw = [low, first & 0x1f];
        (int_text(signed(&raw, 13)), 2)
    } else if first & 0xf0 == 0xe0 {
        let low = usize::from(data(1, 1)?[0]);
        let len = (usize::from(first & 0x0f) << 8) | low;
        (data(2, len)?.to_vec(), 2 + len)
    } else {
        match first {
            STR32 => {
                let raw = data(1, 4)?;
                let len = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
                (data(5, len)?.to_vec(), 5 + len)
            }
            INT16 => (int_text(signed(data(1, 2)?, 16)), 3),
            INT24 => (int_text(signed(data(1, 3)?, 24)), 4),
            INT32 => (int_text(signed(data(1, 4)?, 32)), 5),
            INT64 => (int_text(signed(data(1, 8)?, 64)), 9),
            _ => return Err(Bad("unknown listpack encoding")),
        }
    })
}

/// The back-length of an entry of `len` bytes, exactly as lpEncodeBacklen writes it (with its
/// thresholds, which are what Redis walks forward by): 7 bits a byte, the most significant group
/// first and unflagged, every later byte flagged with 0x80.
fn backlen_bytes(len: usize) -> Vec<u8> {
    let size = match len {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2_097_150 => 3,
        2_097_151..=268_435_454 => 4,
        _ => 5,
    };
    (0..size)
        .map(|i| {
            let group = ((len >> (7 * (size - 1 - i))) & 0x7f) as u8;
            if i == 0 {
                group
            } else {
                group | 0x80
            }
        })
        .collect()
}

/// Builds listpacks entry by entry, encoding integers compactly as Redis does.
pub struct Writer {
    buf: Vec<u8>,
    count: usize,
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

impl Writer {
    pub fn new() -> Writer {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&[0; HEADER]);
        Writer { buf, count: 0 }
    }

    /// Bytes the listpack would have with its terminator.
    pub fn size(&self) -> usize {
        self.buf.len() + 1
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// Appends `value`: an integer in Redis's canonical text (string2ll) takes an integer
    /// encoding, anything else a string one.
    pub fn push(&mut self, value: &[u8]) {
        let start = self.buf.len();
        match parse_i64(value) {
            Some(n) => self.push_int(n),
            None => self.push_str(value),
        }
        let len = self.buf.len() - start;
        self.buf.extend_from_slice(&backlen_bytes(len));
        self.count += 1;
    }

    fn push_int(&mut self, n: i64) {
        let bytes = n.to_le_bytes();
        if (0..=127).contains(&n) {
            self.buf.push(n as u8);
        } else if (-4096..=4095).contains(&n) {
            let raw = (n as u16) & 0x1fff;
            self.buf.push(0xc0 | (raw >> 8) as u8);
            self.buf.push(raw as u8);
        } else if i16::try_from(n).is_ok() {
            self.buf.push(INT16);
            self.buf.extend_from_slice(&bytes[..2]);
        } else if (-(1 << 23)..(1 << 23)).contains(&n) {
            self.buf.push(INT24);
            self.buf.extend_from_slice(&bytes[..3]);
        } else if i32::try_from(n).is_ok() {
            self.buf.push(INT32);
            self.buf.extend_from_slice(&bytes[..4]);
        } else {
            self.buf.push(INT64);
            self.buf.extend_from_slice(&bytes);
        }
    }

    fn push_str(&mut self, value: &[u8]) {
        let len = value.len();
        if len < 64 {
            self.buf.push(0x80 | len as u8);
        } else if len < 4096 {
            self.buf.push(0xe0 | (len >> 8) as u8);
            self.buf.push(len as u8);
        } else {
            self.buf.push(STR32);
            self.buf.extend_from_slice(&(len as u32).to_le_bytes());
        }
        self.buf.extend_from_slice(value);
    }

    /// The finished listpack.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(EOF);
        let total = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&total.to_le_bytes());
        let count = u16::try_from(self.count).unwrap_or(COUNT_UNKNOWN);
        self.buf[4..6].copy_from_slice(&count.to_le_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlen_as_redis_writes_it() {
        assert_eq!(backlen_bytes(5), [5]);
        assert_eq!(backlen_bytes(127), [127]);
        assert_eq!(backlen_bytes(128), [1, 0x80]);
        assert_eq!(backlen_bytes(16382), [127, 0xfe]);
        // Redis's threshold: 16383 already takes three bytes.
        assert_eq!(backlen_bytes(16383), [0, 0xff, 0xff]);
    }

    #[test]
    fn writes_what_it_reads_in_every_encoding() {
        let values: Vec<Vec<u8>> = [
            "0",
            "127",
            "128",
            "-1",
            "-4096",
            "4095",
            "4096",
            "-32768",
            "32767",
            "32768",
            "-8388608",
            "8388607",
            "8388608",
            "-2147483648",
            "2147483647",
            "2147483648",
            "-9223372036854775808",
            "9223372036854775807",
            "01",
            "-0",
            "",
            "abc",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .chain([
            vec![b'y'; 63],
            vec![b'y'; 64],
            vec![b'z'; 4095],
            vec![b'z'; 4096],
        ])
        .chain([vec![b'w'; 20_000]])
        .collect();
        let mut writer = Writer::new();
        for v in &values {
            writer.push(v);
        }
        let blob = writer.finish();
        assert_eq!(entries(&blob).unwrap(), values);
    }

    /// A listpack Redis 7.0 wrote for RPUSH l a b 1.
    #[test]
    fn matches_redis_bytes() {
        let mut writer = Writer::new();
        for v in ["a", "b", "1"] {
            writer.push(v.as_bytes());
        }
        assert_eq!(
            writer.finish(),
            b"\x0f\x00\x00\x00\x03\x00\x81a\x02\x81b\x02\x01\x01\xff"
        );
    }
}
