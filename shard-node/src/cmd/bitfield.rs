//! BITFIELD and BITFIELD_RO as Redis 7.0's bitfieldGeneric: every subcommand is parsed (and its
//! first bad argument answered) before the key is looked up; GET / SET / INCRBY on signed fields up
//! to i64 and unsigned up to u63, at plain or `#`-multiplied bit offsets, under the OVERFLOW mode in
//! force (WRAP, SAT, FAIL). A command with a SET or INCRBY grows the string (zero-padded, within
//! proto-max-bulk-len) to its furthest written bit even when every write fails, and is logged as
//! sent, as Redis propagates it; a GET-only BITFIELD is a read.

use bytes::Bytes;
use tessera_proto::resp::Frame;

use super::dispatch::DispatchEntry;
use super::parse::{self, err, ERR_NOT_INTEGER, ERR_SYNTAX, ERR_WRONGTYPE};
use super::string_range::{edit_string, write_len, MAX_STRING_LEN};
use super::Ctx;
use crate::keyspace::ValueRef;

const ERR_TYPE: &str =
    "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.";
const ERR_OFFSET: &str = "ERR bit offset is not an integer or out of range";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Get,
    Set,
    Incrby,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Overflow {
    Wrap,
    Sat,
    Fail,
}

/// One parsed subcommand.
#[derive(Clone, Copy)]
struct Op {
    kind: Kind,
    offset: u64,
    bits: u32,
    signed: bool,
    value: i64,
    overflow: Overflow,
}

/// Redis's getBitfieldTypeFromArgument: `i1`..`i64` or `u1`..`u63`, the letter lowercase. Redis
/// reads the width as a C string, so it ends at a NUL byte.
fn field_type(arg: &[u8]) -> Result<(bool, u32), Frame> {
    let signed = match arg.first() {
        Some(b'i') => true,
        Some(b'u') => false,
        _ => return Err(err(ERR_TYPE)),
    };
    let digits = &arg[1..];
    let digits = &digits[..digits.iter().position(|&b| b == 0).unwrap_or(digits.len())];
    match parse::parse_i64(digits) {
        Some(n) if n >= 1 && n <= if signed { 64 } else { 63 } => Ok((signed, n as u32)),
        _ => Err(err(ERR_TYPE)),
    }
}

/// Redis's getBitOffsetFromArgument with `#` allowed: `#N` is N fields of this width (multiplied
/// as Redis's C does, wrapping); the offset's byte must lie inside proto-max-bulk-len.
fn bit_offset(arg: &[u8], bits: u32) -> Result<u64, Frame> {
    let by_field = arg.first() == Some(&b'#');
    let digits = if by_field { &arg[1..] } else { arg };
    let mut offset = parse::parse_i64(digits).ok_or_else(|| err(ERR_OFFSET))?;
    if by_field {
        offset = offset.wrapping_mul(i64::from(bits));
    }
    if offset < 0 || (offset as u64 >> 3) >= MAX_STRING_LEN {
        return Err(err(ERR_OFFSET));
    }
    Ok(offset as u64)
}

/// Every subcommand, in order, or the first error.
fn parse_ops(args: &[Bytes]) -> Result<Vec<Op>, Frame> {
    let mut ops = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut j = 2;
    while j < args.len() {
        let remaining = args.len() - j - 1;
        let sub = &args[j];
        let kind = if parse::eq(sub, "get") && remaining >= 2 {
            Kind::Get
        } else if parse::eq(sub, "set") && remaining >= 3 {
            Kind::Set
        } else if parse::eq(sub, "incrby") && remaining >= 3 {
            Kind::Incrby
        } else if parse::eq(sub, "overflow") && remaining >= 1 {
            let mode = &args[j + 1];
            overflow = if parse::eq(mode, "wrap") {
                Overflow::Wrap
            } else if parse::eq(mode, "sat") {
                Overflow::Sat
            } else if parse::eq(mode, "fail") {
                Overflow::Fail
            } else {
                return Err(err("ERR Invalid OVERFLOW type specified"));
            };
            j += 2;
            continue;
        } else {
            return Err(err(ERR_SYNTAX));
        };
        let (signed, bits) = field_type(&args[j + 1])?;
        let offset = bit_offset(&args[j + 2], bits)?;
        let value = if kind == Kind::Get {
            0
        } else {
            parse::parse_i64(&args[j + 3]).ok_or_else(|| err(ERR_NOT_INTEGER))?
        };
        ops.push(Op {
            kind,
            offset,
            bits,
            signed,
            value,
            overflow,
        });
        j += if kind == Kind::Get { 3 } else { 4 };
    }
    Ok(ops)
}

/// BITFIELD key [GET type offset | SET type offset value | INCRBY type offset increment |
/// OVERFLOW WRAP|SAT|FAIL] ...
pub fn bitfield(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    run(ctx, args, false)
}

/// BITFIELD_RO key [GET type offset] ...
pub fn bitfield_ro(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    run(ctx, args, true)
}

fn run(ctx: &Ctx<'_>, args: &[Bytes], read_only: bool) -> Frame {
    let ops = match parse_ops(args) {
        Ok(ops) => ops,
        Err(e) => return e,
    };
    let key = &args[1];
    // The furthest bit any SET / INCRBY writes (offsets are below 2^32, so no overflow).
    let highest = ops
        .iter()
        .filter(|op| op.kind != Kind::Get)
        .map(|op| op.offset + u64::from(op.bits) - 1)
        .max();
    let Some(highest) = highest else {
        // Read under the lock, in place: a GET reads nine bytes at most, whatever the length.
        let mut txn = ctx.lock(key);
        return match txn.read(key).map(|e| e.value) {
            None => Frame::Array(ops.iter().map(|op| get(&[], op)).collect()),
            Some(ValueRef::String(value)) => {
                Frame::Array(ops.iter().map(|op| get(value, op)).collect())
            }
            Some(_) => err(ERR_WRONGTYPE),
        };
    };
    if read_only {
        return err("ERR BITFIELD_RO only supports the GET subcommand");
    }
    let mut txn = ctx.lock(key);
    if let Err(e) = write_len(&mut txn, key) {
        return e;
    }
    let len = (highest >> 3) as usize + 1;
    let replies = edit_string(&mut txn, key, len, |bytes| {
        ops.iter().map(|op| apply(bytes, op)).collect()
    });
    txn.log(args);
    Frame::Array(replies)
}

/// A GET: the field read from `bytes` as if zero-padded without end.
fn get(bytes: &[u8], op: &Op) -> Frame {
    let byte = (op.offset >> 3) as usize;
    let mut window = [0u8; 9];
    if let Some(from) = bytes.get(byte..) {
        let n = from.len().min(9);
        window[..n].copy_from_slice(&from[..n]);
    }
    let offset = op.offset & 7;
    if op.signed {
        Frame::Integer(get_signed(&window, offset, op.bits))
    } else {
        Frame::Integer(get_unsigned(&window, offset, op.bits) as i64)
    }
}

/// One operation on `bytes`, long enough for every write.
fn apply(bytes: &mut [u8], op: &Op) -> Frame {
    if op.kind == Kind::Get {
        return get(bytes, op);
    }
    let outcome = if op.signed {
        let old = get_signed(bytes, op.offset, op.bits);
        let (base, incr) = match op.kind {
            Kind::Incrby => (old, op.value),
            _ => (op.value, 0),
        };
        let (overflowed, limit) = signed_overflow(base, incr, op.bits, op.overflow);
        let new = if overflowed {
            limit
        } else {
            base.wrapping_add(incr)
        };
        let reply = if op.kind == Kind::Incrby { new } else { old };
        (overflowed, reply, new as u64)
    } else {
        let old = get_unsigned(bytes, op.offset, op.bits);
        let (base, incr) = match op.kind {
            Kind::Incrby => (old, op.value),
            _ => (op.value as u64, 0),
        };
        let (overflowed, limit) = unsigned_overflow(base, incr, op.bits, op.overflow);
        let new = if overflowed {
            limit
        } else {
            base.wrapping_add(incr as u64)
        };
        let reply = if op.kind == Kind::Incrby { new } else { old };
        (overflowed, reply as i64, new)
    };
    let (overflowed, reply, new) = outcome;
    if overflowed && op.overflow == Overflow::Fail {
        return Frame::Null;
    }
    set_unsigned(bytes, op.offset, op.bits, new);
    Frame::Integer(reply)
}

fn get_unsigned(bytes: &[u8], offset: u64, bits: u32) -> u64 {
    let mut value = 0u64;
    for i in 0..u64::from(bits) {
        let at = offset + i;
        let byte = bytes.get((at >> 3) as usize).copied().unwrap_or(0);
        let bit = (byte >> (7 - (at & 7))) & 1;
        value = (value << 1) | u64::from(bit);
    }
    value
}

fn get_signed(bytes: &[u8], offset: u64, bits: u32) -> i64 {
    let value = get_unsigned(bytes, offset, bits) as i64;
    if bits < 64 && value & (1i64 << (bits - 1)) != 0 {
        value | (-1i64 << bits)
    } else {
        value
    }
}

fn set_unsigned(bytes: &mut [u8], offset: u64, bits: u32, value: u64) {
    for i in 0..u64::from(bits) {
        let on = (value >> (u64::from(bits) - 1 - i)) & 1 == 1;
        let at = offset + i;
        if let Some(byte) = bytes.get_mut((at >> 3) as usize) {
            let mask = 0x80u8 >> (at & 7);
            if on {
                *byte |= mask;
            } else {
                *byte &= !mask;
            }
        }
    }
}

/// Redis's checkUnsignedBitfieldOverflow: whether `value + incr` leaves `bits`, and the value the
/// mode gives it then (WRAP: the low bits; SAT: the bound crossed; FAIL: unused).
fn unsigned_overflow(value: u64, incr: i64, bits: u32, mode: Overflow) -> (bool, u64) {
    let max = (1u64 << bits) - 1;
    let max_incr = max.wrapping_sub(value) as i64;
    let min_incr = (value as i64).wrapping_neg();
    let wrap = || value.wrapping_add(incr as u64) & max;
    if value > max || (incr > 0 && incr > max_incr) {
        (true, if mode == Overflow::Sat { max } else { wrap() })
    } else if incr < 0 && incr < min_incr {
        (true, if mode == Overflow::Sat { 0 } else { wrap() })
    } else {
        (false, 0)
    }
}

/// Redis's checkSignedBitfieldOverflow, likewise (WRAP sign-extends the low bits).
fn signed_overflow(value: i64, incr: i64, bits: u32, mode: Overflow) -> (bool, i64) {
    let max = if bits == 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    };
    let min = -max - 1;
    let max_incr = max.wrapping_sub(value);
    let min_incr = min.wrapping_sub(value);
    let wrap = || {
        let sum = (value as u64).wrapping_add(incr as u64);
        if bits == 64 {
            sum as i64
        } else if sum & (1u64 << (bits - 1)) != 0 {
            (sum | (u64::MAX << bits)) as i64
        } else {
            (sum & !(u64::MAX << bits)) as i64
        }
    };
    let wide = bits == 64;
    if value > max || (!wide && incr > max_incr) || (value >= 0 && incr > 0 && incr > max_incr) {
        (true, if mode == Overflow::Sat { max } else { wrap() })
    } else if value < min
        || (!wide && incr < min_incr)
        || (value < 0 && incr < 0 && incr < min_incr)
    {
        (true, if mode == Overflow::Sat { min } else { wrap() })
    } else {
        (false, 0)
    }
}

/// The commands of this family, for the node's dispatch table (`cmd::dispatch`).
pub(super) const COMMANDS: &[DispatchEntry] = &[
    ("bitfield", |ctx, _, args| bitfield(ctx, args)),
    ("bitfield_ro", |ctx, _, args| bitfield_ro(ctx, args)),
];

#[cfg(test)]
mod tests {
    use super::{signed_overflow, unsigned_overflow, Overflow};
    use crate::cmd::testing::{run, state};

    #[test]
    fn overflow_rules() {
        assert_eq!(unsigned_overflow(250, 10, 8, Overflow::Wrap), (true, 4));
        assert_eq!(unsigned_overflow(250, 10, 8, Overflow::Sat), (true, 255));
        assert_eq!(unsigned_overflow(5, -10, 8, Overflow::Sat), (true, 0));
        assert_eq!(
            unsigned_overflow(u64::MAX, 0, 8, Overflow::Sat),
            (true, 255)
        );
        assert_eq!(signed_overflow(127, 1, 8, Overflow::Wrap), (true, -128));
        assert_eq!(signed_overflow(-128, -1, 8, Overflow::Sat), (true, -128));
        assert_eq!(
            signed_overflow(i64::MAX, 1, 64, Overflow::Wrap),
            (true, i64::MIN)
        );
        assert_eq!(signed_overflow(5, 1, 64, Overflow::Wrap), (false, 0));
    }

    #[test]
    fn set_get_incr_and_errors() {
        let st = state();
        assert_eq!(
            run(&st, "BITFIELD k SET u8 0 255 GET u8 0"),
            "*2\r\n:0\r\n:255\r\n"
        );
        assert_eq!(
            run(&st, "BITFIELD k OVERFLOW FAIL INCRBY u8 0 1"),
            "*1\r\n$-1\r\n"
        );
        assert_eq!(run(&st, "BITFIELD_RO k GET i8 #0"), "*1\r\n:-1\r\n");
        assert_eq!(
            run(&st, "BITFIELD_RO k SET i8 0 1"),
            "-ERR BITFIELD_RO only supports the GET subcommand\r\n"
        );
        assert_eq!(
            run(&st, "BITFIELD k GET u64 0"),
            "-ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not \
             supported but i64 is.\r\n"
        );
    }
}
