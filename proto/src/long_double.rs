//! Redis's `long double` numbers, byte-exact (INCRBYFLOAT's arithmetic, blocking timeouts' syntax),
//! shared so the shard node and the proxy read them alike. Redis computes in C `long double` (x87
//! 80-bit: a 64-bit mantissa) and prints with `%.17Lf` then trims zeros, so `10.5 + 0.1` reads `10.6`
//! while `1000.1` reads `1000.09999999999999998`. Rust has no such type, so this is a small
//! software version of it: exact decimal -> binary rounding (as `strtold`), exact addition with
//! one rounding (round half to even), and exact binary -> decimal printing (as glibc's printf).

use std::cmp::Ordering;

/// Redis's MAX_LONG_DOUBLE_CHARS: longer inputs are refused.
const MAX_CHARS: usize = 5 * 1024;
/// Binary exponent bounds of an x87 long double (value = mantissa * 2^exp, mantissa < 2^64).
const MAX_EXP: i64 = 16384 - 64;
const MIN_EXP: i64 = -16445;

/// A finite long double: (-1)^neg * mant * 2^exp, `mant` with its top bit set (or zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongDouble {
    neg: bool,
    mant: u64,
    exp: i64,
    inf: bool,
}

impl LongDouble {
    pub const ZERO: LongDouble = LongDouble {
        neg: false,
        mant: 0,
        exp: 0,
        inf: false,
    };

    /// Parses as Redis's getLongDoubleFromObject: `strtold` syntax, no leading space, no trailing
    /// bytes, not NaN, no overflow. (Hexadecimal floats are not accepted here.)
    pub fn parse(text: &[u8]) -> Option<LongDouble> {
        if text.is_empty() || text.len() > MAX_CHARS {
            return None;
        }
        let (neg, body) = match text[0] {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
            return Some(LongDouble {
                neg,
                mant: 0,
                exp: 0,
                inf: true,
            });
        }
        let mut digits = Big::zero();
        let mut any_digit = false;
        let mut scale: i64 = 0;
        let mut i = 0;
        while i < body.len() && body[i].is_ascii_digit() {
            digits.mul_add_small(10, u32::from(body[i] - b'0'));
            any_digit = true;
            i += 1;
        }
        if i < body.len() && body[i] == b'.' {
            i += 1;
            while i < body.len() && body[i].is_ascii_digit() {
                digits.mul_add_small(10, u32::from(body[i] - b'0'));
                scale -= 1;
                any_digit = true;
                i += 1;
            }
        }
        if !any_digit {
            return None;
        }
        if i < body.len() && (body[i] == b'e' || body[i] == b'E') {
            let mut j = i + 1;
            let exp_neg = match body.get(j) {
                Some(b'-') => {
                    j += 1;
                    true
                }
                Some(b'+') => {
                    j += 1;
                    false
                }
                _ => false,
            };
            let start = j;
            let mut e: i64 = 0;
            while j < body.len() && body[j].is_ascii_digit() {
                e = (e * 10 + i64::from(body[j] - b'0')).min(1_000_000);
                j += 1;
            }
            if j == start {
                return None;
            }
            scale += if exp_neg { -e } else { e };
            i = j;
        }
        if i != body.len() {
            return None;
        }
        if digits.is_zero() {
            return Some(LongDouble {
                neg,
                ..LongDouble::ZERO
            });
        }
        let magnitude = digits.bit_len() as i64 + scale * 332 / 100;
        if magnitude > 16_500 {
            return None;
        }
        if magnitude < -16_600 {
            // Underflow to zero: strtold sets ERANGE and Redis refuses it.
            return None;
        }
        let (num, den) = if scale >= 0 {
            let mut n = digits;
            for _ in 0..scale {
                n.mul_add_small(10, 0);
            }
            (n, Big::from_u64(1))
        } else {
            let mut d = Big::from_u64(1);
            for _ in 0..-scale {
                d.mul_add_small(10, 0);
            }
            (digits, d)
        };
        let value = round_ratio(neg, &num, &den, 0)?;
        if value.mant == 0 {
            return None;
        }
        Some(value)
    }

    /// The sum, rounded once; `None` when it is infinite or NaN.
    pub fn add(&self, other: &LongDouble) -> Option<LongDouble> {
        if self.inf || other.inf {
            return None;
        }
        if self.mant == 0 {
            return Some(if other.mant == 0 {
                LongDouble {
                    neg: self.neg && other.neg,
                    ..*other
                }
            } else {
                *other
            });
        }
        if other.mant == 0 {
            return Some(*self);
        }
        // Far apart: the smaller cannot move the larger by half an ulp.
        let (big, small) = if self.exp >= other.exp {
            (self, other)
        } else {
            (other, self)
        };
        if big.exp - small.exp > 130 {
            return Some(*big);
        }
        let base = small.exp;
        let mut a = Big::from_u64(big.mant);
        a.shl(u32::try_from(big.exp - base).ok()?);
        let b = Big::from_u64(small.mant);
        let (neg, sum) = if big.neg == small.neg {
            (big.neg, a.add(&b))
        } else {
            match a.cmp(&b) {
                Ordering::Equal => return Some(LongDouble::ZERO),
                Ordering::Greater => (big.neg, a.sub(&b)),
                Ordering::Less => (small.neg, b.sub(&a)),
            }
        };
        round_ratio(neg, &sum, &Big::from_u64(1), base)
    }

    /// Redis's `ld2string(.., LD_STR_HUMAN)`: `%.17Lf`, trailing zeros and dot removed, `-0` as `0`.
    pub fn to_human_string(&self) -> String {
        if self.inf {
            return if self.neg {
                "-inf".into()
            } else {
                "inf".into()
            };
        }
        let mut n = Big::from_u64(self.mant);
        for _ in 0..17 {
            n.mul_add_small(10, 0);
        }
        let scaled = if self.exp >= 0 {
            n.shl(self.exp as u32);
            n
        } else {
            shift_right_round_even(&n, (-self.exp) as u32)
        };
        let mut digits = scaled.to_decimal();
        while digits.len() < 18 {
            digits.insert(0, '0');
        }
        let point = digits.len() - 17;
        let mut text = String::with_capacity(digits.len() + 2);
        if self.neg {
            text.push('-');
        }
        text.push_str(&digits[..point]);
        text.push('.');
        text.push_str(&digits[point..]);
        let trimmed = text.trim_end_matches('0').trim_end_matches('.');
        if trimmed == "-0" {
            "0".into()
        } else {
            trimmed.to_string()
        }
    }
}

/// `num / den * 2^exp2` rounded to a 64-bit mantissa, half to even; `None` on overflow.
fn round_ratio(neg: bool, num: &Big, den: &Big, exp2: i64) -> Option<LongDouble> {
    if num.is_zero() {
        return Some(LongDouble {
            neg,
            ..LongDouble::ZERO
        });
    }
    // Scale so the quotient has 66 or 67 bits: 64 kept, the rest for rounding.
    let shift = 66 - (num.bit_len() as i64 - den.bit_len() as i64);
    let (mut n, mut d) = (num.clone(), den.clone());
    if shift >= 0 {
        n.shl(shift as u32);
    } else {
        d.shl((-shift) as u32);
    }
    let (q, rem_zero) = n.div_small_quotient(&d);
    let mut exp = exp2 - shift;
    let extra = 128 - q.leading_zeros() as i64 - 64;
    let mut mant = (q >> extra) as u64;
    let low = q & ((1u128 << extra) - 1);
    let half = 1u128 << (extra - 1);
    exp += extra;
    // Values below the smallest normal lose precision: round to the coarser grid.
    let round_up = low > half || (low == half && (!rem_zero || mant & 1 == 1));
    if round_up {
        mant = mant.wrapping_add(1);
        if mant == 0 {
            mant = 1 << 63;
            exp += 1;
        }
    }
    if exp > MAX_EXP {
        return None;
    }
    if exp < MIN_EXP {
        return Some(LongDouble {
            neg,
            ..LongDouble::ZERO
        });
    }
    Some(LongDouble {
        neg,
        mant,
        exp,
        inf: false,
    })
}

/// `n / 2^k` rounded half to even.
fn shift_right_round_even(n: &Big, k: u32) -> Big {
    let mut q = n.clone();
    q.shr(k);
    let mut back = q.clone();
    back.shl(k);
    let rem = n.sub(&back);
    let mut half = Big::from_u64(1);
    half.shl(k - 1);
    match rem.cmp(&half) {
        Ordering::Greater => q.add(&Big::from_u64(1)),
        Ordering::Equal if q.is_odd() => q.add(&Big::from_u64(1)),
        _ => q,
    }
}

/// A minimal unsigned big integer, little-endian 32-bit limbs, no trailing zero limbs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Big(Vec<u32>);

impl Big {
    fn zero() -> Big {
        Big(Vec::new())
    }

    fn from_u64(v: u64) -> Big {
        let mut b = Big(vec![v as u32, (v >> 32) as u32]);
        b.trim();
        b
    }

    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }

    fn is_zero(&self) -> bool {
        self.0.is_empty()
    }

    fn is_odd(&self) -> bool {
        self.0.first().is_some_and(|l| l & 1 == 1)
    }

    fn bit_len(&self) -> u64 {
        match self.0.last() {
            None => 0,
            Some(top) => (self.0.len() as u64 - 1) * 32 + u64::from(32 - top.leading_zeros()),
        }
    }

    fn mul_add_small(&mut self, mul: u32, add: u32) {
        let mut carry = u64::from(add);
        for limb in self.0.iter_mut() {
            let v = u64::from(*limb) * u64::from(mul) + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
    }

    fn shl(&mut self, bits: u32) {
        if self.is_zero() {
            return;
        }
        let (limbs, rest) = ((bits / 32) as usize, bits % 32);
        if rest > 0 {
            let mut carry = 0u32;
            for limb in self.0.iter_mut() {
                let v = (*limb << rest) | carry;
                carry = *limb >> (32 - rest);
                *limb = v;
            }
            if carry > 0 {
                self.0.push(carry);
            }
        }
        if limbs > 0 {
            self.0.splice(0..0, std::iter::repeat_n(0, limbs));
        }
    }

    fn shr(&mut self, bits: u32) {
        let (limbs, rest) = ((bits / 32) as usize, bits % 32);
        if limbs >= self.0.len() {
            self.0.clear();
            return;
        }
        self.0.drain(..limbs);
        if rest > 0 {
            let len = self.0.len();
            for i in 0..len {
                let high = if i + 1 < len {
                    self.0[i + 1] << (32 - rest)
                } else {
                    0
                };
                self.0[i] = (self.0[i] >> rest) | high;
            }
        }
        self.trim();
    }

    fn add(&self, other: &Big) -> Big {
        let mut out = Vec::with_capacity(self.0.len().max(other.0.len()) + 1);
        let mut carry = 0u64;
        for i in 0..self.0.len().max(other.0.len()) {
            let v = u64::from(*self.0.get(i).unwrap_or(&0))
                + u64::from(*other.0.get(i).unwrap_or(&0))
                + carry;
            out.push(v as u32);
            carry = v >> 32;
        }
        if carry > 0 {
            out.push(carry as u32);
        }
        let mut b = Big(out);
        b.trim();
        b
    }

    /// `self - other`, with `self >= other`.
    fn sub(&self, other: &Big) -> Big {
        let mut out = Vec::with_capacity(self.0.len());
        let mut borrow = 0i64;
        for i in 0..self.0.len() {
            let mut v = i64::from(self.0[i]) - i64::from(*other.0.get(i).unwrap_or(&0)) - borrow;
            borrow = 0;
            if v < 0 {
                v += 1 << 32;
                borrow = 1;
            }
            out.push(v as u32);
        }
        let mut b = Big(out);
        b.trim();
        b
    }

    fn cmp(&self, other: &Big) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.iter().rev().cmp(other.0.iter().rev()))
    }

    /// `self / den` when the quotient fits 127 bits, and whether the remainder is zero.
    fn div_small_quotient(&self, den: &Big) -> (u128, bool) {
        let mut rem = self.clone();
        let mut q: u128 = 0;
        let top = (self.bit_len().saturating_sub(den.bit_len()) + 1).min(127) as u32;
        for bit in (0..top).rev() {
            let mut shifted = den.clone();
            shifted.shl(bit);
            if rem.cmp(&shifted) != Ordering::Less {
                rem = rem.sub(&shifted);
                q |= 1u128 << bit;
            }
        }
        (q, rem.is_zero())
    }

    fn to_decimal(&self) -> String {
        if self.is_zero() {
            return "0".into();
        }
        let mut chunks = Vec::new();
        let mut n = self.clone();
        while !n.is_zero() {
            let mut rem = 0u64;
            for limb in n.0.iter_mut().rev() {
                let v = (rem << 32) | u64::from(*limb);
                *limb = (v / 1_000_000_000) as u32;
                rem = v % 1_000_000_000;
            }
            n.trim();
            chunks.push(rem as u32);
        }
        let mut text = String::new();
        for (i, chunk) in chunks.iter().rev().enumerate() {
            if i == 0 {
                text.push_str(&chunk.to_string());
            } else {
                text.push_str(&format!("{chunk:09}"));
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::LongDouble;

    fn incr(start: &str, by: &str) -> Option<String> {
        let a = LongDouble::parse(start.as_bytes())?;
        let b = LongDouble::parse(by.as_bytes())?;
        Some(a.add(&b)?.to_human_string())
    }

    #[test]
    fn matches_redis_outputs() {
        // Replies of redis-server 7.0.15 to INCRBYFLOAT.
        assert_eq!(
            incr("0", "1000.1").as_deref(),
            Some("1000.09999999999999998")
        );
        assert_eq!(
            incr("0", "5000.1").as_deref(),
            Some("5000.10000000000000009")
        );
        assert_eq!(
            incr("0", "123456.789").as_deref(),
            Some("123456.78900000000000148")
        );
        assert_eq!(incr("0", "0.1").as_deref(), Some("0.1"));
        assert_eq!(incr("0", "3.3").as_deref(), Some("3.3"));
        assert_eq!(incr("0", "1e20").as_deref(), Some("100000000000000000000"));
        assert_eq!(incr("0", "-0.1").as_deref(), Some("-0.1"));
        assert_eq!(incr("10.5", "0.1").as_deref(), Some("10.6"));
        assert_eq!(incr("10.6", "1e-20").as_deref(), Some("10.6"));
        assert_eq!(incr("5.0e3", "2.0e2").as_deref(), Some("5200"));
        assert_eq!(incr("0", "-0.0000000000000000001").as_deref(), Some("0"));
        assert_eq!(incr("0", ".5").as_deref(), Some("0.5"));
        assert_eq!(incr("0", "5.").as_deref(), Some("5"));
        assert_eq!(incr("0", "1e+2").as_deref(), Some("100"));
    }

    #[test]
    fn rejects_what_redis_rejects() {
        for bad in [
            "", " 1", "1 ", "abc", "nan", "1e", "e5", ".", "-", "1e999999",
        ] {
            assert!(LongDouble::parse(bad.as_bytes()).is_none(), "{bad:?}");
        }
        assert!(incr("0", "inf").is_none());
        assert!(incr("1e4932", "1e4932").is_none());
    }
}
