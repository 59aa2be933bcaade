//! LZF decompression as Redis's src/lzf_d.c: the format of RDB strings saved compressed (Redis
//! compresses strings longer than 20 bytes when rdbcompression is on, the default, and DUMP uses
//! it too). The input is untrusted, so every read and every back reference is bounds-checked, and
//! the output never grows past the length the payload announced.

/// Why a compressed block could not be expanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LzfError {
    /// The block ends inside an instruction.
    #[error("LZF input ends inside an instruction")]
    Truncated,
    /// The block expands to more than the announced length.
    #[error("LZF output longer than announced")]
    TooLong,
    /// The block expands to fewer bytes than announced.
    #[error("LZF output shorter than announced")]
    TooShort,
    /// A back reference points before the start of the output.
    #[error("LZF back reference before the start of the output")]
    BadReference,
}

/// The most output one input byte can give: a 3-byte back reference copies up to 264 bytes.
const MAX_EXPANSION: usize = 88;

/// Expands `input` into exactly `expected_len` bytes, or fails. Memory is reserved for no more
/// than what `input` could possibly expand to, whatever `expected_len` claims.
pub fn decompress(input: &[u8], expected_len: usize) -> Result<Vec<u8>, LzfError> {
    let bound = input.len().saturating_mul(MAX_EXPANSION);
    let mut out: Vec<u8> = Vec::with_capacity(expected_len.min(bound));
    let mut ip = 0;
    while ip < input.len() {
        let ctrl = usize::from(input[ip]);
        ip += 1;
        if ctrl < 32 {
            // A literal run of ctrl + 1 bytes.
            let run = ctrl + 1;
            let literal = input.get(ip..ip + run).ok_or(LzfError::Truncated)?;
            if out.len() + run > expected_len {
                return Err(LzfError::TooLong);
            }
            out.extend_from_slice(literal);
            ip += run;
        } else {
            // A back reference: length in the top 3 bits (7 = extended by the next byte),
            // distance in the low 5 bits and the byte after the length.
            let mut len = ctrl >> 5;
            if len == 7 {
                len += usize::from(*input.get(ip).ok_or(LzfError::Truncated)?);
                ip += 1;
            }
            let low = usize::from(*input.get(ip).ok_or(LzfError::Truncated)?);
            ip += 1;
            let distance = ((ctrl & 0x1f) << 8) + low + 1;
            let copy = len + 2;
            if out.len() + copy > expected_len {
                return Err(LzfError::TooLong);
            }
            let start = out
                .len()
                .checked_sub(distance)
                .ok_or(LzfError::BadReference)?;
            // The source may overlap what this copy writes (a run): copy byte by byte.
            for i in 0..copy {
                let byte = out[start + i];
                out.push(byte);
            }
        }
    }
    if out.len() != expected_len {
        return Err(LzfError::TooShort);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_overlapping_references() {
        // "abc" literal, then a back reference of distance 3, length 6: "abcabcabc".
        let input = [2, b'a', b'b', b'c', (4 << 5), 2];
        assert_eq!(decompress(&input, 9).unwrap(), b"abcabcabc");
    }

    #[test]
    fn refuses_damage() {
        assert_eq!(decompress(&[5, b'a'], 6), Err(LzfError::Truncated));
        assert_eq!(decompress(&[0, b'a'], 0), Err(LzfError::TooLong));
        assert_eq!(
            decompress(&[0, b'a', (1 << 5), 5], 10),
            Err(LzfError::BadReference)
        );
        assert_eq!(decompress(&[0, b'a', 0xe0], 100), Err(LzfError::Truncated));
    }

    #[test]
    fn does_not_trust_the_announced_length() {
        assert_eq!(decompress(&[0, b'a'], usize::MAX), Err(LzfError::TooShort));
        // A maximal run: 3 input bytes may give 264 output bytes, no more reserved up front.
        let run = [0, b'a', 0xe0, 255, 0];
        assert_eq!(decompress(&run, 265).unwrap(), vec![b'a'; 265]);
    }
}
