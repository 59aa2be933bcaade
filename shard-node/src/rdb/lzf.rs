//! LZF, the format of RDB strings saved compressed (Redis compresses strings longer than 20 bytes
//! when rdbcompression is on, the default, and DUMP uses it too). Decompression as Redis's
//! src/lzf_d.c, on untrusted input: every read and every back reference is bounds-checked, and the
//! output never grows past the length the payload announced. Compression is a plain greedy LZF
//! encoder (a hash of the next three bytes finds the last place they occurred); its output is
//! valid LZF for any decoder, not byte-identical to lzf_c.c's.

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

/// Back references reach at most this far back (13 bits of distance).
const MAX_DISTANCE: usize = 1 << 13;
/// The longest back reference: 7 + 255 in the length fields, plus 2.
const MAX_MATCH: usize = 264;
/// The longest literal run one control byte announces.
const MAX_LITERAL: usize = 32;
const HASH_BITS: u32 = 14;

/// `input` compressed, or `None` when the result would not be shorter than `limit` bytes (Redis
/// keeps a string uncompressed unless it saves at least 4 bytes).
pub fn compress(input: &[u8], limit: usize) -> Option<Vec<u8>> {
    let n = input.len();
    let mut out = Vec::with_capacity(limit.min(n));
    let mut table = vec![usize::MAX; 1 << HASH_BITS];
    let mut literal_start = 0;
    let mut i = 0;
    while i + 2 < n {
        let key =
            u32::from(input[i]) << 16 | u32::from(input[i + 1]) << 8 | u32::from(input[i + 2]);
        let slot = (key.wrapping_mul(2_654_435_761) >> (32 - HASH_BITS)) as usize;
        let candidate = table[slot];
        table[slot] = i;
        let found = candidate != usize::MAX
            && i - candidate <= MAX_DISTANCE
            && input[candidate..candidate + 3] == input[i..i + 3];
        if !found {
            i += 1;
            continue;
        }
        let longest = MAX_MATCH.min(n - i);
        let mut len = 3;
        while len < longest && input[candidate + len] == input[i + len] {
            len += 1;
        }
        push_literals(&input[literal_start..i], &mut out);
        let distance = i - candidate - 1;
        let len_field = len - 2;
        if len_field < 7 {
            out.push((len_field << 5 | distance >> 8) as u8);
        } else {
            out.push((7 << 5 | distance >> 8) as u8);
            out.push((len_field - 7) as u8);
        }
        out.push(distance as u8);
        i += len;
        literal_start = i;
        if out.len() >= limit {
            return None;
        }
    }
    push_literals(&input[literal_start..], &mut out);
    (out.len() < limit).then_some(out)
}

/// Literal runs of at most 32 bytes, each after a control byte of its length minus one.
fn push_literals(literals: &[u8], out: &mut Vec<u8>) {
    for run in literals.chunks(MAX_LITERAL) {
        out.push((run.len() - 1) as u8);
        out.extend_from_slice(run);
    }
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

    #[test]
    fn compressed_output_expands_back() {
        let mut inputs: Vec<Vec<u8>> = vec![
            b"abcdefgh".repeat(500),
            vec![0u8; 100_000],
            (0..70_000u32).map(|i| (i % 251) as u8).collect(),
            b"compress me please 1 compress me please 2 compress me please 3".to_vec(),
        ];
        // Noise that does not compress, and noise with repeats in it.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut noise = Vec::new();
        for _ in 0..50_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            noise.push(state as u8);
        }
        inputs.push(noise.clone());
        inputs.push([&noise[..3000], &noise[..3000], &noise[1000..9000]].concat());
        for input in inputs {
            match compress(&input, input.len() - 4) {
                Some(packed) => {
                    assert!(packed.len() < input.len() - 4);
                    assert_eq!(decompress(&packed, input.len()).unwrap(), input);
                }
                None => assert_eq!(input.len(), 50_000, "only the noise may not compress"),
            }
        }
    }
}
