//! Bitmap commands over string values: SETBIT GETBIT BITCOUNT BITPOS BITOP, with Redis 7.0's
//! argument order (a missing key answers before the range is parsed), BYTE and BIT ranges, and
//! its error texts. Bit 0 is the most significant bit of the first byte, as in Redis.

use bytes::Bytes;
use tessera_proto::resp::Frame;
use tessera_proto::slot::key_hash_slot;

use super::dispatch::DispatchEntry;
use super::parse::{self, err, ERR_NOT_INTEGER, ERR_SYNTAX};
use super::string_range::{clamp_range, edit_string, read_string, write_len, MAX_STRING_LEN};
use super::{Ctx, Txn};
use crate::keyspace::{Entry, StringEncoding, Value, ValueRef};

const ERR_BIT_OFFSET: &str = "ERR bit offset is not an integer or out of range";
const ERR_BIT_VALUE: &str = "ERR bit is not an integer or out of range";

/// Redis's getBitOffsetFromArgument: a bit offset whose byte lies inside proto-max-bulk-len, so a
/// SETBIT can never grow a value past 512 MB (checked before anything is allocated).
fn bit_offset(arg: &[u8]) -> Result<u64, Frame> {
    match parse::parse_i64(arg) {
        Some(n) if n >= 0 && ((n as u64) >> 3) < MAX_STRING_LEN => Ok(n as u64),
        _ => Err(err(ERR_BIT_OFFSET)),
    }
}

/// The mask of bit `offset` inside its byte (bit 0 is the byte's most significant).
fn bit_mask(offset: u64) -> u8 {
    0x80 >> (offset & 7)
}

pub fn getbit(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let offset = match bit_offset(&args[2]) {
        Ok(offset) => offset,
        Err(e) => return e,
    };
    let mut txn = ctx.lock(&args[1]);
    match read_string(&mut txn, &args[1]) {
        Ok(value) => {
            let byte = value
                .as_deref()
                .and_then(|v| v.get((offset >> 3) as usize))
                .copied()
                .unwrap_or(0);
            Frame::Integer(i64::from(byte & bit_mask(offset) != 0))
        }
        Err(e) => e,
    }
}

/// SETBIT: replies the bit's old value; logged as sent when it created, grew or changed the value.
pub fn setbit(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let offset = match bit_offset(&args[2]) {
        Ok(offset) => offset,
        Err(e) => return e,
    };
    let on = match parse::parse_i64(&args[3]) {
        Some(v @ (0 | 1)) => v == 1,
        _ => return err(ERR_BIT_VALUE),
    };
    let mut txn = ctx.lock(key);
    let old_len = match write_len(&mut txn, key) {
        Ok(len) => len,
        Err(e) => return e,
    };
    let byte = (offset >> 3) as usize;
    let mask = bit_mask(offset);
    let grows = old_len.is_none_or(|len| len <= byte);
    if !grows {
        // Setting a bit to the value it has changes nothing: no copy, no log.
        let current = match txn.get(key).map(|e| e.value) {
            Some(ValueRef::String(s)) => s.get(byte).is_some_and(|b| b & mask != 0),
            _ => false,
        };
        if current == on {
            return Frame::Integer(i64::from(current));
        }
    }
    let was_on = edit_string(&mut txn, key, byte + 1, |bytes| {
        let was_on = bytes[byte] & mask != 0;
        if on {
            bytes[byte] |= mask;
        } else {
            bytes[byte] &= !mask;
        }
        was_on
    });
    if grows || was_on != on {
        txn.log(args);
    }
    Frame::Integer(i64::from(was_on))
}

/// Whether a range is counted in bytes or in bits (BITCOUNT / BITPOS's last argument).
fn range_unit(arg: &[u8]) -> Result<bool, Frame> {
    if parse::eq(arg, "bit") {
        Ok(true)
    } else if parse::eq(arg, "byte") {
        Ok(false)
    } else {
        Err(err(ERR_SYNTAX))
    }
}

fn int_arg(arg: &[u8]) -> Result<i64, Frame> {
    parse::parse_i64(arg).ok_or_else(|| err(ERR_NOT_INTEGER))
}

/// The string at `key` read under its slot's lock, which is released before the caller scans it.
fn snapshot(ctx: &Ctx<'_>, key: &[u8]) -> Result<Option<Bytes>, Frame> {
    let mut txn = ctx.lock(key);
    read_string(&mut txn, key)
}

/// BITCOUNT key [start end [BYTE|BIT]].
pub fn bitcount(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    match bitcount_inner(ctx, args) {
        Ok(n) => Frame::Integer(n as i64),
        Err(e) => e,
    }
}

fn bitcount_inner(ctx: &Ctx<'_>, args: &[Bytes]) -> Result<u64, Frame> {
    let Some(value) = snapshot(ctx, &args[1])? else {
        return Ok(0);
    };
    let bits = (value.len() as i64) * 8;
    let (first, last) = match args.len() {
        2 => match value.len() {
            0 => return Ok(0),
            _ => (0, bits as usize - 1),
        },
        4 | 5 => {
            let start = int_arg(&args[2])?;
            let end = int_arg(&args[3])?;
            if start < 0 && end < 0 && start > end {
                return Ok(0);
            }
            let in_bits = args.len() == 5 && range_unit(&args[4])?;
            match range_in_bits(start, end, value.len() as i64, in_bits) {
                Some(range) => range,
                None => return Ok(0),
            }
        }
        _ => return Err(err(ERR_SYNTAX)),
    };
    Ok(count_ones(&value, first, last))
}

/// A user's range, in bytes or in bits, as the inclusive range of bits it covers in a value of
/// `len` bytes; `None` when empty.
fn range_in_bits(start: i64, end: i64, len: i64, in_bits: bool) -> Option<(usize, usize)> {
    if in_bits {
        clamp_range(start, end, len * 8)
    } else {
        clamp_range(start, end, len).map(|(s, e)| (s * 8, e * 8 + 7))
    }
}

/// Set bits of `data` from bit `first` to bit `last`, both included and inside `data`.
fn count_ones(data: &[u8], first: usize, last: usize) -> u64 {
    let (first_byte, last_byte) = (first / 8, last / 8);
    let span = &data[first_byte..=last_byte];
    let mut chunks = span.chunks_exact(8);
    let mut total: u64 = chunks
        .by_ref()
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8])).count_ones() as u64)
        .sum();
    total += chunks
        .remainder()
        .iter()
        .map(|b| b.count_ones() as u64)
        .sum::<u64>();
    // Take back the bits of the edge bytes that lie outside the range.
    let before = !(0xffu8 >> (first % 8));
    let after = (0xffu16 >> (last % 8 + 1)) as u8;
    total -= (data[first_byte] & before).count_ones() as u64;
    total -= (data[last_byte] & after).count_ones() as u64;
    total
}

/// BITPOS key bit [start [end [BYTE|BIT]]].
pub fn bitpos(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    match bitpos_inner(ctx, args) {
        Ok(n) => Frame::Integer(n),
        Err(e) => e,
    }
}

fn bitpos_inner(ctx: &Ctx<'_>, args: &[Bytes]) -> Result<i64, Frame> {
    let want_one = match int_arg(&args[2])? {
        0 => false,
        1 => true,
        _ => return Err(err("ERR The bit argument must be 1 or 0.")),
    };
    // A missing key is an endless run of zeros.
    let Some(value) = snapshot(ctx, &args[1])? else {
        return Ok(if want_one { -1 } else { 0 });
    };
    let len = value.len() as i64;
    let (range, end_given) = match args.len() {
        3 => (
            clamp_range(0, len - 1, len).map(|(s, e)| (s * 8, e * 8 + 7)),
            false,
        ),
        4..=6 => {
            let start = int_arg(&args[3])?;
            let in_bits = args.len() == 6 && range_unit(&args[5])?;
            let end = match args.get(4) {
                Some(arg) => int_arg(arg)?,
                None => len - 1,
            };
            (range_in_bits(start, end, len, in_bits), args.len() >= 5)
        }
        _ => return Err(err(ERR_SYNTAX)),
    };
    let Some((first, last)) = range else {
        return Ok(-1);
    };
    Ok(match find_bit(&value, first, last, want_one) {
        Some(pos) => pos as i64,
        // Without an explicit end the value counts as padded with zeros on the right.
        None if !want_one && !end_given => last as i64 + 1,
        None => -1,
    })
}

/// The first bit equal to `one` from bit `first` to bit `last` (included, inside `data`).
fn find_bit(data: &[u8], first: usize, last: usize, one: bool) -> Option<usize> {
    let skip = if one { 0x00 } else { 0xff };
    let (first_byte, last_byte) = (first / 8, last / 8);
    for (i, &raw) in data[first_byte..=last_byte].iter().enumerate() {
        let index = first_byte + i;
        if raw == skip && index != first_byte && index != last_byte {
            continue;
        }
        let from = if index == first_byte { first % 8 } else { 0 };
        let to = if index == last_byte { last % 8 } else { 7 };
        for bit in from..=to {
            if (raw & (0x80 >> bit) != 0) == one {
                return Some(index * 8 + bit);
            }
        }
    }
    None
}

/// BITOP's operations.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BitOp {
    And,
    Or,
    Xor,
    Not,
}

/// BITOP op dest key...: missing sources count as empty strings padded with zeros; an empty
/// result deletes `dest`. Logged as sent, since its sources share the slot and replay to the same
/// values.
pub fn bitop(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let op = if parse::eq(&args[1], "and") {
        BitOp::And
    } else if parse::eq(&args[1], "or") {
        BitOp::Or
    } else if parse::eq(&args[1], "xor") {
        BitOp::Xor
    } else if parse::eq(&args[1], "not") {
        BitOp::Not
    } else {
        return err(ERR_SYNTAX);
    };
    if op == BitOp::Not && args.len() != 4 {
        return err("ERR BITOP NOT must be called with a single source key.");
    }
    let dest = &args[2];
    let slot = key_hash_slot(dest);
    // The cluster rule already refused keys of several slots; this lock covers them all.
    if args[3..].iter().any(|k| key_hash_slot(k) != slot) {
        return err("CROSSSLOT Keys in request don't hash to the same slot");
    }
    let mut txn = ctx.lock_slot(slot);
    let mut sources = Vec::with_capacity(args.len() - 3);
    for key in &args[3..] {
        match read_string(&mut txn, key) {
            Ok(value) => sources.push(value.unwrap_or_default()),
            Err(e) => return e,
        }
    }
    let result = combine(op, &sources);
    store_result(&mut txn, dest, result, args)
}

/// The bytes of `op` over `sources`, as long as the longest of them.
fn combine(op: BitOp, sources: &[Bytes]) -> Vec<u8> {
    let max_len = sources.iter().map(Bytes::len).max().unwrap_or(0);
    let Some((head, rest)) = sources.split_first() else {
        return Vec::new();
    };
    let mut out = vec![0u8; max_len];
    out[..head.len()].copy_from_slice(head);
    match op {
        BitOp::Not => out.iter_mut().for_each(|b| *b = !*b),
        BitOp::And => {
            for source in rest {
                for (o, s) in out.iter_mut().zip(source.iter()) {
                    *o &= s;
                }
                // A shorter source is padded with zeros, which clear the rest.
                out[source.len()..].fill(0);
            }
        }
        BitOp::Or | BitOp::Xor => {
            for source in rest {
                for (o, s) in out.iter_mut().zip(source.iter()) {
                    if op == BitOp::Or {
                        *o |= s;
                    } else {
                        *o ^= s;
                    }
                }
            }
        }
    }
    out
}

/// Stores BITOP's result at `dest` without a TTL (as Redis's setKey), or deletes `dest` when the
/// result is empty; replies the result's length.
fn store_result(txn: &mut Txn<'_>, dest: &Bytes, result: Vec<u8>, args: &[Bytes]) -> Frame {
    let len = result.len();
    if len > 0 {
        txn.insert(
            dest.clone(),
            Entry::new(Value::String(Bytes::from(result)), None)
                .with_string_encoding(StringEncoding::Raw),
        );
        txn.log(args);
    } else if txn.exists(dest) {
        txn.remove(dest);
        txn.log(args);
    }
    Frame::Integer(len as i64)
}

/// The commands of this family, for the node's dispatch table (`cmd::dispatch`).
pub(super) const COMMANDS: &[DispatchEntry] = &[
    ("setbit", |ctx, _, args| setbit(ctx, args)),
    ("getbit", |ctx, _, args| getbit(ctx, args)),
    ("bitcount", |ctx, _, args| bitcount(ctx, args)),
    ("bitpos", |ctx, _, args| bitpos(ctx, args)),
    ("bitop", |ctx, _, args| bitop(ctx, args)),
];

#[cfg(test)]
mod tests {
    use super::{combine, count_ones, find_bit, BitOp};
    use crate::cmd::testing::{run, state};
    use bytes::Bytes;

    #[test]
    fn counting_and_finding_bits_in_ranges() {
        let data = [0b1010_0000u8, 0xff, 0x0f];
        assert_eq!(count_ones(&data, 0, 23), 14);
        assert_eq!(count_ones(&data, 1, 7), 1);
        assert_eq!(count_ones(&data, 2, 19), 9);
        assert_eq!(find_bit(&data, 1, 23, true), Some(2));
        assert_eq!(find_bit(&data, 8, 15, false), None);
        assert_eq!(find_bit(&data, 8, 23, false), Some(16));
        assert_eq!(find_bit(&data, 20, 23, false), None);
    }

    #[test]
    fn bit_operations_pad_with_zeros() {
        let s = |v: &'static [u8]| Bytes::from_static(v);
        assert_eq!(
            combine(BitOp::And, &[s(b"\xff\xff"), s(b"\x0f")]),
            b"\x0f\x00"
        );
        assert_eq!(
            combine(BitOp::Or, &[s(b"\x01"), s(b"\x10\x02")]),
            b"\x11\x02"
        );
        assert_eq!(
            combine(BitOp::Xor, &[s(b"\x03"), s(b"\x01\x01")]),
            b"\x02\x01"
        );
        assert_eq!(combine(BitOp::Not, &[s(b"\x0f")]), b"\xf0");
        assert!(combine(BitOp::Or, &[s(b""), s(b"")]).is_empty());
    }

    #[test]
    fn setbit_getbit_and_limits() {
        let st = state();
        assert_eq!(run(&st, "SETBIT k 7 1"), ":0\r\n");
        assert_eq!(run(&st, "SETBIT k 7 1"), ":1\r\n");
        assert_eq!(run(&st, "GET k"), "$1\r\n\x01\r\n");
        assert_eq!(run(&st, "GETBIT k 7"), ":1\r\n");
        assert_eq!(run(&st, "GETBIT k 100"), ":0\r\n");
        assert_eq!(
            run(&st, "SETBIT k 4294967296 1"),
            "-ERR bit offset is not an integer or out of range\r\n"
        );
        assert_eq!(
            run(&st, "SETBIT k 0 2"),
            "-ERR bit is not an integer or out of range\r\n"
        );
        assert_eq!(run(&st, "BITCOUNT k"), ":1\r\n");
        assert_eq!(run(&st, "BITPOS k 1"), ":7\r\n");
        assert_eq!(run(&st, "BITPOS k 0 0 0 BIT"), ":0\r\n");
    }
}
