//! Reading RDB's primitives from an untrusted buffer: lengths, strings (plain, integer-encoded,
//! LZF-compressed) and doubles, as Redis's rdbLoadLen, rdbGenericLoadStringObject,
//! rdbLoadDoubleValue and rdbLoadBinaryDoubleValue. Every length is checked against the bytes
//! left before anything is read or reserved.

use super::{lzf, Bad};

/// rdbLoadLen's first two bits: 6-bit, 14-bit, 32/64-bit lengths, or a special encoding.
const LEN_6BIT: u8 = 0;
const LEN_14BIT: u8 = 1;
const LEN_32BIT: u8 = 0x80;
const LEN_64BIT: u8 = 0x81;
const LEN_ENCVAL: u8 = 3;
/// The special string encodings (RDB_ENC_*).
const ENC_INT8: u8 = 0;
const ENC_INT16: u8 = 1;
const ENC_INT32: u8 = 2;
const ENC_LZF: u8 = 3;

/// The longest string accepted (Redis's proto-max-bulk-len default): bounds what one announced
/// length can make the reader produce, on top of the bytes-left checks.
pub const MAX_STRING: usize = 512 * 1024 * 1024;

/// A length field: a count, or the marker of a specially encoded string.
enum Length {
    Plain(u64),
    Encoded(u8),
}

/// A cursor over a payload.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn u8(&mut self) -> Result<u8, Bad> {
        Ok(self.take(1)?[0])
    }

    /// The next `n` bytes, if there are that many.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Bad> {
        if n > self.remaining() {
            return Err(Bad("truncated"));
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Bad> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn length(&mut self) -> Result<Length, Bad> {
        let first = self.u8()?;
        Ok(match first >> 6 {
            LEN_6BIT => Length::Plain(u64::from(first & 0x3f)),
            LEN_14BIT => Length::Plain((u64::from(first & 0x3f) << 8) | u64::from(self.u8()?)),
            LEN_ENCVAL => Length::Encoded(first & 0x3f),
            _ => match first {
                LEN_32BIT => Length::Plain(u64::from(u32::from_be_bytes(self.array()?))),
                LEN_64BIT => Length::Plain(u64::from_be_bytes(self.array()?)),
                _ => return Err(Bad("unknown length encoding")),
            },
        })
    }

    /// A plain length (a count or a size), as usize.
    pub fn len(&mut self) -> Result<usize, Bad> {
        match self.length()? {
            Length::Plain(n) => usize::try_from(n).map_err(|_| Bad("length out of range")),
            Length::Encoded(_) => Err(Bad("encoded value where a length belongs")),
        }
    }

    /// A count of items that each take at least `min_bytes` of what is left: a larger count
    /// cannot be honest, and refusing it here keeps every reservation bounded by the payload.
    pub fn count(&mut self, min_bytes: usize) -> Result<usize, Bad> {
        let n = self.len()?;
        if n.saturating_mul(min_bytes) > self.remaining() {
            return Err(Bad("count larger than the payload"));
        }
        Ok(n)
    }

    /// A string in any of RDB's encodings.
    pub fn string(&mut self) -> Result<Vec<u8>, Bad> {
        match self.length()? {
            Length::Plain(n) => {
                let n = usize::try_from(n).map_err(|_| Bad("string length out of range"))?;
                Ok(self.take(n)?.to_vec())
            }
            Length::Encoded(ENC_INT8) => Ok(int_text(i64::from(self.u8()? as i8))),
            Length::Encoded(ENC_INT16) => {
                Ok(int_text(i64::from(i16::from_le_bytes(self.array()?))))
            }
            Length::Encoded(ENC_INT32) => {
                Ok(int_text(i64::from(i32::from_le_bytes(self.array()?))))
            }
            Length::Encoded(ENC_LZF) => {
                let compressed_len = self.len()?;
                let len = self.len()?;
                if len == 0 || len > MAX_STRING {
                    return Err(Bad("LZF string length out of range"));
                }
                let compressed = self.take(compressed_len)?;
                lzf::decompress(compressed, len).map_err(|_| Bad("invalid LZF string"))
            }
            Length::Encoded(_) => Err(Bad("unknown string encoding")),
        }
    }

    /// RDB_TYPE_ZSET's score: a length byte (253 NaN, 254 +inf, 255 -inf) and that much text.
    pub fn text_double(&mut self) -> Result<f64, Bad> {
        match self.u8()? {
            253 => Err(Bad("NaN score")),
            254 => Ok(f64::INFINITY),
            255 => Ok(f64::NEG_INFINITY),
            len => {
                let text = self.take(usize::from(len))?;
                parse_double(text).ok_or(Bad("score is not a number"))
            }
        }
    }

    /// RDB_TYPE_ZSET_2's score: an IEEE 754 double, little endian.
    pub fn binary_double(&mut self) -> Result<f64, Bad> {
        let value = f64::from_le_bytes(self.array()?);
        if value.is_nan() {
            return Err(Bad("NaN score"));
        }
        Ok(value)
    }
}

/// The decimal text of an integer, as Redis turns an integer-encoded string back into one.
pub fn int_text(n: i64) -> Vec<u8> {
    n.to_string().into_bytes()
}

/// A score stored as text (RDB_TYPE_ZSET, ziplist and listpack zsets): a float, never NaN.
pub fn parse_double(text: &[u8]) -> Option<f64> {
    crate::cmd::zset::parse_score(text).filter(|v| !v.is_nan())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_in_every_width() {
        let mut r = Reader::new(&[
            0x05, 0x41, 0x02, 0x80, 0, 1, 0, 0, 0x81, 0, 0, 0, 0, 0, 0, 0, 9,
        ]);
        assert_eq!(r.len().unwrap(), 5);
        assert_eq!(r.len().unwrap(), 0x102);
        assert_eq!(r.len().unwrap(), 0x10000);
        assert_eq!(r.len().unwrap(), 9);
        assert!(r.len().is_err());
    }

    #[test]
    fn integer_encoded_strings() {
        let mut r = Reader::new(&[0xc0, 0xf6, 0xc1, 0x39, 0x30, 0xc2, 0, 0, 0, 0x80]);
        assert_eq!(r.string().unwrap(), b"-10");
        assert_eq!(r.string().unwrap(), b"12345");
        assert_eq!(r.string().unwrap(), b"-2147483648");
    }

    #[test]
    fn counts_are_checked_against_what_is_left() {
        let mut r = Reader::new(&[0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(r.count(1).is_err());
        let mut r = Reader::new(&[0x80, 0x7f, 0xff, 0xff, 0xff, 1, 2]);
        assert!(r.string().is_err());
    }
}
