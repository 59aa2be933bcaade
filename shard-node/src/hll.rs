//! Redis's HyperLogLog, byte for byte: a HyperLogLog is a plain string whose bytes are exactly
//! those redis-server 7.0's hyperloglog.c writes, so GET, DUMP / RESTORE and the AOF carry it between
//! Redis and Tessera unchanged. This module is the algorithm alone (layout, hashing, register
//! updates, counting); `cmd::hyperloglog` holds the commands.
//!
//! Layout: a 16-byte header (`HYLL`, the encoding byte, three unused bytes, the cached cardinality
//! as a little-endian u64 whose top bit marks it stale), then the registers: 16384 6-bit registers
//! packed from each byte's least significant bit (dense, 12288 bytes), or a run-length form of
//! them (sparse: ZERO `00xxxxxx`, XZERO `01xxxxxx yyyyyyyy`, VAL `1vvvvvxx`). A new HyperLogLog
//! is sparse; it turns dense when a register needs a value above 32 or when the sparse form would
//! grow past hll-sparse-max-bytes.
//!
//! Corrupt input never panics: every read is bounds-checked, and where Redis would read the byte
//! just past the value (its sds terminator) this reads a zero.

/// The header's length.
pub const HEADER_LEN: usize = 16;
/// Registers of one HyperLogLog (2^14).
pub const REGISTERS: usize = 1 << P;
/// A dense HyperLogLog's exact length.
pub const DENSE_LEN: usize = HEADER_LEN + (REGISTERS * BITS).div_ceil(8);
/// Redis's default hll-sparse-max-bytes.
pub const DEFAULT_SPARSE_MAX_BYTES: u64 = 3000;

const P: usize = 14;
/// Hash bits left for the run of zeros after the register index.
const Q: usize = 64 - P;
const BITS: usize = 6;
const REGISTER_MAX: u8 = (1 << BITS) - 1;
const DENSE: u8 = 0;
const SPARSE: u8 = 1;
const MAX_ENCODING: u8 = SPARSE;
const SEED: u64 = 0xadc8_3b19;

const SPARSE_VAL_MAX_VALUE: u8 = 32;
const SPARSE_VAL_MAX_LEN: usize = 4;
const SPARSE_ZERO_MAX_LEN: usize = 64;
const SPARSE_XZERO_MAX_LEN: usize = 16384;
/// 0.5 / ln(2), the estimator's constant.
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;

/// The registers are not a valid HyperLogLog (Redis's INVALIDOBJ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt;

/// A new, empty HyperLogLog: sparse, one XZERO covering every register, cached cardinality 0.
pub fn new_sparse() -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 2);
    out.extend_from_slice(b"HYLL");
    out.push(SPARSE);
    out.resize(HEADER_LEN, 0);
    let mut left = REGISTERS;
    while left > 0 {
        let run = left.min(SPARSE_XZERO_MAX_LEN);
        out.extend_from_slice(&xzero(run));
        left -= run;
    }
    out
}

/// Redis's isHLLObjectOrReply for a string value: the magic, a known encoding, and a dense value's
/// exact length (a sparse value is only checked when read).
pub fn is_hll(value: &[u8]) -> bool {
    value.len() >= HEADER_LEN
        && value.starts_with(b"HYLL")
        && value[4] <= MAX_ENCODING
        && (value[4] != DENSE || value.len() == DENSE_LEN)
}

/// Whether a checked HyperLogLog is dense.
pub fn is_dense(value: &[u8]) -> bool {
    value[4] == DENSE
}

/// The cached cardinality, when it is still valid.
pub fn cached_count(value: &[u8]) -> Option<u64> {
    let card = u64::from_le_bytes(value[8..16].try_into().ok()?);
    (card >> 63 == 0).then_some(card)
}

/// Stores `card` as the cached cardinality (valid).
pub fn set_cached_count(value: &mut [u8], card: u64) {
    value[8..16].copy_from_slice(&card.to_le_bytes());
}

/// Marks the cached cardinality stale.
pub fn invalidate_cache(value: &mut [u8]) {
    value[15] |= 0x80;
}

/// MurmurHash64A as Redis's (little-endian reads, so the same on every architecture).
pub fn murmur64a(data: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (data.len() as u64).wrapping_mul(M);
    let mut chunks = data.chunks_exact(8);
    for chunk in chunks.by_ref() {
        let mut k = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= u64::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// Redis's hllPatLen: the register `element` hashes to, and the length of the `000..1` run after
/// the index bits (1 to Q + 1).
pub fn pattern(element: &[u8]) -> (usize, u8) {
    let hash = murmur64a(element, SEED);
    let index = (hash as usize) & (REGISTERS - 1);
    let rest = (hash >> P) | (1u64 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

/// Adds `element`; true when a register changed. May turn a sparse value dense.
pub fn add(value: &mut Vec<u8>, element: &[u8], sparse_max: u64) -> Result<bool, Corrupt> {
    let (index, count) = pattern(element);
    set_register(value, index, count, sparse_max)
}

/// Raises register `index` to `count` if it is lower; true when it changed.
pub fn set_register(
    value: &mut Vec<u8>,
    index: usize,
    count: u8,
    sparse_max: u64,
) -> Result<bool, Corrupt> {
    match value[4] {
        DENSE => Ok(dense_set(&mut value[HEADER_LEN..], index, count)),
        SPARSE => sparse_set(value, index, count, sparse_max),
        _ => Err(Corrupt),
    }
}

fn dense_get(registers: &[u8], index: usize) -> u8 {
    let byte = index * BITS / 8;
    let fb = (index * BITS) & 7;
    let b0 = u16::from(registers.get(byte).copied().unwrap_or(0));
    let b1 = u16::from(registers.get(byte + 1).copied().unwrap_or(0));
    (((b0 >> fb) | (b1 << (8 - fb))) & u16::from(REGISTER_MAX)) as u8
}

fn dense_put(registers: &mut [u8], index: usize, value: u8) {
    let byte = index * BITS / 8;
    let fb = (index * BITS) & 7;
    let v = u16::from(value);
    let max = u16::from(REGISTER_MAX);
    if let Some(b) = registers.get_mut(byte) {
        *b &= !((max << fb) as u8);
        *b |= (v << fb) as u8;
    }
    // The last register fits in its first byte: its second one is Redis's sds terminator, which
    // this leaves alone as Redis's masks do.
    if let Some(b) = registers.get_mut(byte + 1) {
        *b &= !((max >> (8 - fb)) as u8);
        *b |= (v >> (8 - fb)) as u8;
    }
}

fn dense_set(registers: &mut [u8], index: usize, count: u8) -> bool {
    if count > dense_get(registers, index) {
        dense_put(registers, index, count);
        true
    } else {
        false
    }
}

/// One sparse opcode.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    /// A run of zeros, in one byte (ZERO) or two (XZERO).
    Zero { len: usize, wide: bool },
    /// A run of `len` registers set to `value`.
    Val { value: u8, len: usize },
}

impl Op {
    /// The opcode at `bytes[at]` (a truncated XZERO reads a zero second byte, as Redis's
    /// terminator).
    fn at(bytes: &[u8], at: usize) -> Op {
        let b = bytes[at];
        if b & 0x80 != 0 {
            Op::Val {
                value: ((b >> 2) & 0x1f) + 1,
                len: usize::from(b & 0x3) + 1,
            }
        } else if b & 0x40 != 0 {
            let low = bytes.get(at + 1).copied().unwrap_or(0);
            Op::Zero {
                len: ((usize::from(b & 0x3f) << 8) | usize::from(low)) + 1,
                wide: true,
            }
        } else {
            Op::Zero {
                len: usize::from(b & 0x3f) + 1,
                wide: false,
            }
        }
    }

    fn bytes(self) -> usize {
        match self {
            Op::Zero { wide: true, .. } => 2,
            _ => 1,
        }
    }

    fn span(self) -> usize {
        match self {
            Op::Zero { len, .. } | Op::Val { len, .. } => len,
        }
    }
}

fn xzero(len: usize) -> [u8; 2] {
    let l = len - 1;
    [((l >> 8) as u8) | 0x40, (l & 0xff) as u8]
}

fn val(value: u8, len: usize) -> u8 {
    0x80 | ((value - 1) << 2) | ((len - 1) as u8)
}

/// A run of `len` zeros as the shortest opcode, appended to `seq`.
fn push_zeros(seq: &mut Vec<u8>, len: usize) {
    if len > SPARSE_ZERO_MAX_LEN {
        seq.extend_from_slice(&xzero(len));
    } else {
        seq.push((len - 1) as u8);
    }
}

/// Redis's hllSparseSet: edits the run-length form in place (splitting the opcode covering
/// `index`, then merging equal neighbouring VALs), or promotes to dense when `count` does not fit
/// a VAL or the value would outgrow `sparse_max`.
fn sparse_set(
    value: &mut Vec<u8>,
    index: usize,
    count: u8,
    sparse_max: u64,
) -> Result<bool, Corrupt> {
    if count > SPARSE_VAL_MAX_VALUE {
        return promote(value, index, count);
    }
    // Step 1: the opcode covering `index`, its first register and the opcode before it.
    let mut p = HEADER_LEN;
    let mut first = 0usize;
    let mut prev: Option<usize> = None;
    let mut found = None;
    while p < value.len() {
        let op = Op::at(value, p);
        if index < first + op.span() {
            found = Some(op);
            break;
        }
        prev = Some(p);
        p += op.bytes();
        first += op.span();
    }
    let Some(op) = found else {
        return Err(Corrupt);
    };
    // Step 2: the trivial in-place updates, else the split sequence.
    let mut updated_in_place = false;
    match op {
        Op::Val { value: old, len } => {
            if old >= count {
                return Ok(false);
            }
            if len == 1 {
                value[p] = val(count, 1);
                updated_in_place = true;
            }
        }
        Op::Zero { len: 1, .. } => {
            value[p] = val(count, 1);
            updated_in_place = true;
        }
        Op::Zero { .. } => {}
    }
    if !updated_in_place {
        let last = first + op.span() - 1;
        let mut seq = Vec::with_capacity(5);
        match op {
            Op::Zero { .. } => {
                if index != first {
                    push_zeros(&mut seq, index - first);
                }
                seq.push(val(count, 1));
                if index != last {
                    push_zeros(&mut seq, last - index);
                }
            }
            Op::Val { value: current, .. } => {
                if index != first {
                    seq.push(val(current, index - first));
                }
                seq.push(val(count, 1));
                if index != last {
                    seq.push(val(current, last - index));
                }
            }
        }
        // Step 3: put the sequence in place of the opcode, unless that outgrows the limit.
        let old_len = op.bytes();
        if seq.len() > old_len && (value.len() + seq.len() - old_len) as u64 > sparse_max {
            return promote(value, index, count);
        }
        let end = (p + old_len).min(value.len());
        value.splice(p..end, seq);
    }
    // Step 4: merge equal adjacent VALs, scanning up to five opcodes from the one before.
    let mut p = prev.unwrap_or(HEADER_LEN);
    let mut scan = 5;
    while p < value.len() && scan > 0 {
        scan -= 1;
        let op = Op::at(value, p);
        let Op::Val { value: v1, len: l1 } = op else {
            p += op.bytes();
            continue;
        };
        if p + 1 < value.len() {
            if let Op::Val { value: v2, len: l2 } = Op::at(value, p + 1) {
                if v1 == v2 && l1 + l2 <= SPARSE_VAL_MAX_LEN {
                    // Merged into the next byte; then try the merged run with the one after.
                    value[p + 1] = val(v1, l1 + l2);
                    value.remove(p);
                    continue;
                }
            }
        }
        p += 1;
    }
    invalidate_cache(value);
    Ok(true)
}

/// Turns the sparse value dense and sets the register there (always a change: the sparse form
/// could not hold the new value).
fn promote(value: &mut Vec<u8>, index: usize, count: u8) -> Result<bool, Corrupt> {
    to_dense(value)?;
    dense_set(&mut value[HEADER_LEN..], index, count);
    Ok(true)
}

/// Redis's hllSparseToDense: the same header (cached cardinality included) with the dense
/// encoding, and the registers spelled out; a dense value is left as it is.
pub fn to_dense(value: &mut Vec<u8>) -> Result<(), Corrupt> {
    if is_dense(value) {
        return Ok(());
    }
    let mut dense = vec![0u8; DENSE_LEN];
    dense[..HEADER_LEN].copy_from_slice(&value[..HEADER_LEN]);
    dense[4] = DENSE;
    let mut registers = [0u8; REGISTERS];
    merge_sparse(&mut registers, &value[HEADER_LEN..])?;
    for (index, &r) in registers.iter().enumerate() {
        if r != 0 {
            dense_put(&mut dense[HEADER_LEN..], index, r);
        }
    }
    *value = dense;
    Ok(())
}

/// Redis's hllMerge: raises each of `max` to the register of `value` (a checked HyperLogLog).
pub fn merge_into(max: &mut [u8; REGISTERS], value: &[u8]) -> Result<(), Corrupt> {
    if is_dense(value) {
        let registers = &value[HEADER_LEN..];
        for (index, m) in max.iter_mut().enumerate() {
            *m = (*m).max(dense_get(registers, index));
        }
        Ok(())
    } else {
        merge_sparse(max, &value[HEADER_LEN..])
    }
}

/// The sparse registers into `max`; a VAL that overflows the registers, or runs that do not cover
/// them exactly, are corrupt.
fn merge_sparse(max: &mut [u8; REGISTERS], sparse: &[u8]) -> Result<(), Corrupt> {
    let mut index = 0usize;
    let mut p = 0;
    while p < sparse.len() {
        let op = Op::at(sparse, p);
        match op {
            Op::Zero { len, .. } => index += len,
            Op::Val { value, len } => {
                if index + len > REGISTERS {
                    break;
                }
                for m in &mut max[index..index + len] {
                    *m = (*m).max(value);
                }
                index += len;
            }
        }
        p += op.bytes();
    }
    if index == REGISTERS {
        Ok(())
    } else {
        Err(Corrupt)
    }
}

/// The estimate of one HyperLogLog (dense or sparse) from its registers, ignoring the cache. A
/// sparse value whose runs do not cover the registers exactly is corrupt.
pub fn count(value: &[u8]) -> Result<u64, Corrupt> {
    let mut histogram = [0u64; 64];
    let registers = &value[HEADER_LEN..];
    if is_dense(value) {
        for index in 0..REGISTERS {
            histogram[usize::from(dense_get(registers, index))] += 1;
        }
    } else {
        let mut index = 0usize;
        let mut p = 0;
        while p < registers.len() {
            let op = Op::at(registers, p);
            match op {
                Op::Zero { len, .. } => histogram[0] += len as u64,
                Op::Val { value, len } => histogram[usize::from(value)] += len as u64,
            }
            index += op.span();
            p += op.bytes();
        }
        if index != REGISTERS {
            return Err(Corrupt);
        }
    }
    Ok(estimate(&histogram))
}

/// The estimate of the union kept in `max` (one register a byte): multi-key PFCOUNT.
pub fn count_registers(max: &[u8; REGISTERS]) -> u64 {
    let mut histogram = [0u64; 64];
    for &r in max {
        histogram[usize::from(r & 63)] += 1;
    }
    estimate(&histogram)
}

/// Otmar Ertl's estimator ("New cardinality estimation algorithms for HyperLogLog sketches"), as
/// Redis computes it, step for step, so the result is the same to the unit.
fn estimate(histogram: &[u64; 64]) -> u64 {
    let m = REGISTERS as f64;
    let mut z = m * tau((m - histogram[Q + 1] as f64) / m);
    for j in (1..=Q).rev() {
        z += histogram[j] as f64;
        z *= 0.5;
    }
    z += m * sigma(histogram[0] as f64 / m);
    llround(ALPHA_INF * m * m / z) as u64
}

/// C's llroundl on x86-64: half away from zero, and i64::MIN for what does not fit (reachable
/// only from corrupt registers, e.g. every register at 63, whose estimate is infinite).
fn llround(x: f64) -> i64 {
    let r = x.round();
    if r >= -(2f64.powi(63)) && r < 2f64.powi(63) {
        r as i64
    } else {
        i64::MIN
    }
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let previous = z;
        z += x * y;
        y += y;
        if previous == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let previous = z;
        y *= 0.5;
        z -= (1.0 - x) * (1.0 - x) * y;
        if previous == z {
            return z / 3.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_value_is_redis_empty_hll() {
        let v = new_sparse();
        assert_eq!(
            v,
            b"HYLL\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x7f\xff"
        );
        assert!(is_hll(&v));
        assert_eq!(count(&v), Ok(0));
        assert_eq!(cached_count(&v), Some(0));
    }

    /// `PFADD h a b c` on redis-server 7.0 leaves exactly these bytes.
    #[test]
    fn adds_write_redis_bytes() {
        let mut v = new_sparse();
        for e in [&b"a"[..], b"b", b"c"] {
            assert_eq!(add(&mut v, e, DEFAULT_SPARSE_MAX_BYTES), Ok(true));
        }
        invalidate_cache(&mut v);
        assert_eq!(
            v,
            b"HYLL\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\x60\xf3\x80\x50\xb1\x84\x4b\xfb\x80\x42\x5a"
        );
        assert_eq!(count(&v), Ok(3));
    }

    #[test]
    fn dense_registers_round_trip_without_touching_neighbours() {
        let mut registers = vec![0u8; DENSE_LEN - HEADER_LEN];
        for index in 0..REGISTERS {
            dense_put(&mut registers, index, (index % 64) as u8);
        }
        for index in 0..REGISTERS {
            assert_eq!(dense_get(&registers, index), (index % 64) as u8);
        }
    }

    #[test]
    fn promotion_keeps_the_registers() {
        let mut sparse = new_sparse();
        for i in 0..200u32 {
            add(&mut sparse, &i.to_le_bytes(), DEFAULT_SPARSE_MAX_BYTES).unwrap();
        }
        let mut dense = sparse.clone();
        to_dense(&mut dense).unwrap();
        assert_eq!(dense.len(), DENSE_LEN);
        assert_eq!(count(&sparse), count(&dense));
        let (mut a, mut b) = ([0u8; REGISTERS], [0u8; REGISTERS]);
        merge_into(&mut a, &sparse).unwrap();
        merge_into(&mut b, &dense).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn corrupt_sparse_values_are_errors_not_panics() {
        let mut v = new_sparse();
        v.truncate(HEADER_LEN + 1);
        assert_eq!(count(&v), Err(Corrupt));
        let mut max = [0u8; REGISTERS];
        assert_eq!(merge_into(&mut max, &v), Err(Corrupt));
        let mut short = new_sparse();
        short.truncate(HEADER_LEN);
        assert_eq!(add(&mut short, b"x", 3000), Err(Corrupt));
        let mut vals = new_sparse();
        vals.truncate(HEADER_LEN);
        vals.extend(std::iter::repeat_n(0xff, 100));
        assert_eq!(count(&vals), Err(Corrupt));
        assert_eq!(to_dense(&mut vals), Err(Corrupt));
    }
}
