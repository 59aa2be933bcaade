//! String commands over parts of a value or several keys: GETRANGE SUBSTR SETRANGE GETEX MSETNX LCS,
//! with Redis 7.0's argument order, error texts and propagation forms. Also the helpers the bit
//! commands share: the string lookups and the in-place edit that pads a value with zero bytes.

use bytes::Bytes;
use tessera_proto::resp::Frame;
use tessera_proto::slot::key_hash_slot;

use super::dispatch::DispatchEntry;
use super::parse::{self, err, Args, ERR_NOT_INTEGER, ERR_SYNTAX, ERR_WRONGTYPE};
use super::{Ctx, Txn};
use crate::keyspace::{Entry, EntryRef, Value, ValueRef};

/// Redis's proto-max-bulk-len: no command may build a string longer than this (checkStringLength).
pub(super) const MAX_STRING_LEN: u64 = 512 * 1024 * 1024;

pub(super) const ERR_STRING_TOO_LONG: &str =
    "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

const ERR_CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

fn b(text: &'static str) -> Bytes {
    Bytes::from_static(text.as_bytes())
}

/// The string at `key` for a read (counts a hit or a miss): `Ok(None)` when absent, WRONGTYPE for
/// other types.
pub(super) fn read_string(txn: &mut Txn<'_>, key: &[u8]) -> Result<Option<Bytes>, Frame> {
    match txn.read(key) {
        None => Ok(None),
        Some(EntryRef {
            value: ValueRef::String(s),
            ..
        }) => Ok(Some(Bytes::copy_from_slice(s))),
        Some(_) => Err(err(ERR_WRONGTYPE)),
    }
}

/// The length of the string at `key` for a write (Redis's lookupKeyWrite: no hit/miss counting):
/// `Ok(None)` when absent, WRONGTYPE for other types.
pub(super) fn write_len(txn: &mut Txn<'_>, key: &[u8]) -> Result<Option<usize>, Frame> {
    match txn.live(key) {
        None => Ok(None),
        Some(EntryRef {
            value: ValueRef::String(s),
            ..
        }) => Ok(Some(s.len())),
        Some(_) => Err(err(ERR_WRONGTYPE)),
    }
}

/// Lets `edit` change the string at `key` (absent: a new one) after zero-padding it to at least
/// `min_len` bytes, keeping its TTL, as Redis's sdsgrowzero on an unshared value. The caller has
/// checked that `key` holds a string or nothing, and that `min_len` is within the limit. The bytes
/// are edited in place (the keyspace keeps an edited string in a buffer of its own), so flipping
/// one bit of a large bitmap does not copy it.
pub(super) fn edit_string<R>(
    txn: &mut Txn<'_>,
    key: &Bytes,
    min_len: usize,
    edit: impl FnOnce(&mut [u8]) -> R,
) -> R {
    if txn.get(key).is_none() {
        txn.insert(key.clone(), Entry::new(Value::String(Bytes::new()), None));
    }
    let pad_and_edit = move |buf: &mut Vec<u8>| {
        if buf.len() < min_len {
            buf.resize(min_len, 0);
        }
        edit(buf)
    };
    match txn.edit_string(key, pad_and_edit) {
        Ok(result) => result,
        // Not a string after all (the caller checked): edit a scratch buffer, store nothing.
        Err(pad_and_edit) => pad_and_edit(&mut Vec::new()),
    }
}

/// Redis's range rule for GETRANGE and BITCOUNT / BITPOS: negative indexes count from the end,
/// both ends are clamped into the value, and an empty range is `None`. A start past an end left
/// of zero still yields the first element, as in Redis 7.0 (`GETRANGE k 0 -100` is "h").
pub(super) fn clamp_range(start: i64, end: i64, total: i64) -> Option<(usize, usize)> {
    let start = if start < 0 { total + start } else { start }.max(0);
    let end = if end < 0 { total + end } else { end }.max(0);
    let end = end.min(total - 1);
    if start > end {
        None
    } else {
        Some((start as usize, end as usize))
    }
}

/// GETRANGE and its old name SUBSTR.
pub fn getrange(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let (Some(start), Some(end)) = (parse::parse_i64(&args[2]), parse::parse_i64(&args[3])) else {
        return err(ERR_NOT_INTEGER);
    };
    let value = {
        let mut txn = ctx.lock(&args[1]);
        match read_string(&mut txn, &args[1]) {
            Ok(Some(value)) => value,
            Ok(None) => return Frame::Bulk(Bytes::new()),
            Err(e) => return e,
        }
    };
    if start < 0 && end < 0 && start > end {
        return Frame::Bulk(Bytes::new());
    }
    match clamp_range(start, end, value.len() as i64) {
        Some((from, to)) => Frame::Bulk(value.slice(from..=to)),
        None => Frame::Bulk(Bytes::new()),
    }
}

pub fn setrange(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let value = &args[3];
    let Some(offset) = parse::parse_i64(&args[2]) else {
        return err(ERR_NOT_INTEGER);
    };
    if offset < 0 {
        return err("ERR offset is out of range");
    }
    let mut txn = ctx.lock(key);
    let current = match write_len(&mut txn, key) {
        Ok(len) => len,
        Err(e) => return e,
    };
    if value.is_empty() {
        // Setting nothing creates nothing and changes nothing.
        return Frame::Integer(current.unwrap_or(0) as i64);
    }
    // Checked before anything is allocated: an offset near i64::MAX must not wrap around.
    let needed = match (offset as u64).checked_add(value.len() as u64) {
        Some(n) if n <= MAX_STRING_LEN => n as usize,
        _ => return err(ERR_STRING_TOO_LONG),
    };
    let offset = offset as usize;
    let total = edit_string(&mut txn, key, needed, |bytes| {
        bytes[offset..needed].copy_from_slice(value);
        bytes.len()
    });
    txn.log(args);
    Frame::Integer(total as i64)
}

/// How GETEX was told to change the TTL.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ExpireKind {
    Ex,
    Px,
    ExAt,
    PxAt,
}

enum TtlChange<'a> {
    Keep,
    Persist,
    Expire(ExpireKind, &'a Bytes),
}

/// GETEX's options as Redis's parseExtendedStringArgumentsOrReply reads them for COMMAND_GET: one
/// expiry kind (repeating the same one is allowed, the last value wins) or PERSIST, never both.
fn parse_getex_options(args: &[Bytes]) -> Result<TtlChange<'_>, Frame> {
    let mut change = TtlChange::Keep;
    let mut a = Args::new(args, 2);
    while let Some(opt) = a.next_arg() {
        let has_next = !a.is_done();
        let kind = if parse::eq(opt, "ex") {
            Some(ExpireKind::Ex)
        } else if parse::eq(opt, "px") {
            Some(ExpireKind::Px)
        } else if parse::eq(opt, "exat") {
            Some(ExpireKind::ExAt)
        } else if parse::eq(opt, "pxat") {
            Some(ExpireKind::PxAt)
        } else {
            None
        };
        change = match (kind, &change) {
            (None, TtlChange::Keep | TtlChange::Persist) if parse::eq(opt, "persist") => {
                TtlChange::Persist
            }
            (Some(kind), TtlChange::Keep) if has_next => TtlChange::Expire(kind, a.value()?),
            (Some(kind), TtlChange::Expire(given, _)) if has_next && *given == kind => {
                TtlChange::Expire(kind, a.value()?)
            }
            _ => return Err(err(ERR_SYNTAX)),
        };
    }
    Ok(change)
}

/// Redis's getExpireMillisecondsOrReply: the absolute expiry in Unix ms, or
/// `ERR invalid expire time in 'getex' command`.
fn absolute_expiry(now_ms: u64, kind: ExpireKind, text: &[u8]) -> Result<u64, Frame> {
    let value = parse::parse_i64(text).ok_or_else(|| err(ERR_NOT_INTEGER))?;
    let invalid = || err("ERR invalid expire time in 'getex' command");
    let seconds = matches!(kind, ExpireKind::Ex | ExpireKind::ExAt);
    if value <= 0 || (seconds && value > i64::MAX / 1000) {
        return Err(invalid());
    }
    let mut ms = if seconds { value * 1000 } else { value };
    if matches!(kind, ExpireKind::Ex | ExpireKind::Px) {
        ms = ms.checked_add(now_ms as i64).ok_or_else(invalid)?;
    }
    Ok(ms as u64)
}

/// GETEX: GET that also sets or clears the TTL. Never logged as sent: a new TTL is logged as
/// PEXPIREAT with the absolute time, a time already past as DEL, a removed TTL as PERSIST.
pub fn getex(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let change = match parse_getex_options(args) {
        Ok(change) => change,
        Err(e) => return e,
    };
    let key = &args[1];
    let mut txn = ctx.lock(key);
    let value = match read_string(&mut txn, key) {
        Ok(Some(value)) => value,
        Ok(None) => return Frame::Null,
        Err(e) => return e,
    };
    match change {
        TtlChange::Keep => {}
        TtlChange::Expire(kind, text) => {
            let at = match absolute_expiry(txn.now_ms(), kind, text) {
                Ok(at) => at,
                Err(e) => return e,
            };
            let absolute = matches!(kind, ExpireKind::ExAt | ExpireKind::PxAt);
            if absolute && at <= txn.now_ms() {
                // Redis's checkAlreadyExpired: a time already past deletes the key at once.
                txn.remove(key);
                txn.log(&[b("DEL"), key.clone()]);
            } else {
                txn.set_expiry(key, Some(at));
                txn.log(&[b("PEXPIREAT"), key.clone(), Bytes::from(at.to_string())]);
            }
        }
        TtlChange::Persist => {
            if txn.get(key).is_some_and(|e| e.expires_at_ms.is_some()) {
                txn.set_expiry(key, None);
                txn.log(&[b("PERSIST"), key.clone()]);
            }
        }
    }
    Frame::Bulk(value)
}

/// MSETNX: sets every pair, or nothing when any key exists. Logged as the MSET it amounts to, so
/// replay does not depend on the keys being absent again.
pub fn msetnx(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    if args.len().is_multiple_of(2) {
        return Frame::error(tessera_proto::command::arity_error("msetnx"));
    }
    let slot = key_hash_slot(&args[1]);
    // The cluster rule already refused keys of several slots; one lock keeps the check and the
    // writes atomic, so a second slot can only come from a damaged log.
    if args[1..]
        .chunks_exact(2)
        .any(|p| key_hash_slot(&p[0]) != slot)
    {
        return err(ERR_CROSSSLOT);
    }
    let mut txn = ctx.lock_slot(slot);
    for pair in args[1..].chunks_exact(2) {
        if txn.exists(&pair[0]) {
            return Frame::Integer(0);
        }
    }
    for pair in args[1..].chunks_exact(2) {
        txn.insert(
            pair[0].clone(),
            Entry::new(Value::String(pair[1].clone()), None),
        );
    }
    let mut logged = Vec::with_capacity(args.len());
    logged.push(b("MSET"));
    logged.extend(args[1..].iter().cloned());
    txn.log(&logged);
    Frame::Integer(1)
}

/// What LCS was asked to reply.
struct LcsOptions {
    idx: bool,
    len: bool,
    with_match_len: bool,
    min_match_len: u64,
}

fn parse_lcs_options(args: &[Bytes]) -> Result<LcsOptions, Frame> {
    let mut o = LcsOptions {
        idx: false,
        len: false,
        with_match_len: false,
        min_match_len: 0,
    };
    let mut a = Args::new(args, 3);
    while let Some(opt) = a.next_arg() {
        if parse::eq(opt, "idx") {
            o.idx = true;
        } else if parse::eq(opt, "len") {
            o.len = true;
        } else if parse::eq(opt, "withmatchlen") {
            o.with_match_len = true;
        } else if parse::eq(opt, "minmatchlen") && !a.is_done() {
            o.min_match_len = a.int()?.max(0) as u64;
        } else {
            return Err(err(ERR_SYNTAX));
        }
    }
    if o.idx && o.len {
        return Err(err(
            "ERR If you want both the length and indexes, please just use IDX.",
        ));
    }
    Ok(o)
}

/// LCS: the longest common subsequence of two strings, by Redis's dynamic programming table
/// (which bounds it: the table may not exceed proto-max-bulk-len), with its match ranges walked
/// back from the end exactly as Redis emits them.
pub fn lcs(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    if key_hash_slot(&args[1]) != key_hash_slot(&args[2]) {
        return err(ERR_CROSSSLOT);
    }
    let (a, b_) = {
        let mut txn = ctx.lock(&args[1]);
        let a = read_string(&mut txn, &args[1]);
        let b_ = read_string(&mut txn, &args[2]);
        match (a, b_) {
            (Ok(a), Ok(b_)) => (a.unwrap_or_default(), b_.unwrap_or_default()),
            _ => return err("ERR The specified keys must contain string values"),
        }
    };
    let options = match parse_lcs_options(args) {
        Ok(o) => o,
        Err(e) => return e,
    };
    if a.len() as u64 >= u32::MAX as u64 - 1 || b_.len() as u64 >= u32::MAX as u64 - 1 {
        return err("ERR String too long for LCS");
    }
    let cells = (a.len() as u64 + 1) * (b_.len() as u64 + 1);
    if cells * 4 > MAX_STRING_LEN {
        return err("ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len");
    }
    let table = LcsTable::build(&a, &b_);
    let total = table.at(a.len(), b_.len());
    if options.len {
        return Frame::Integer(total as i64);
    }
    let (common, ranges) = table.walk_back(&a, &b_, &options);
    if options.idx {
        Frame::Map(vec![
            (Frame::Bulk(b("matches")), Frame::Array(ranges)),
            (Frame::Bulk(b("len")), Frame::Integer(total as i64)),
        ])
    } else {
        Frame::Bulk(Bytes::from(common))
    }
}

/// LCS lengths of every pair of prefixes: `at(i, j)` is the LCS of `a[..i]` and `b[..j]`.
struct LcsTable {
    cells: Vec<u32>,
    width: usize,
}

impl LcsTable {
    fn build(a: &[u8], b_: &[u8]) -> LcsTable {
        let width = b_.len() + 1;
        let mut cells = vec![0u32; (a.len() + 1) * width];
        for i in 1..=a.len() {
            for j in 1..=b_.len() {
                cells[i * width + j] = if a[i - 1] == b_[j - 1] {
                    cells[(i - 1) * width + j - 1] + 1
                } else {
                    cells[(i - 1) * width + j].max(cells[i * width + j - 1])
                };
            }
        }
        LcsTable { cells, width }
    }

    fn at(&self, i: usize, j: usize) -> u32 {
        self.cells[i * self.width + j]
    }

    /// The common subsequence and the IDX ranges (last match first), as Redis's lcsCommand walks
    /// the table from the bottom-right corner.
    fn walk_back(&self, a: &[u8], b_: &[u8], o: &LcsOptions) -> (Vec<u8>, Vec<Frame>) {
        let mut idx = self.at(a.len(), b_.len()) as usize;
        let mut common = vec![0u8; idx];
        let mut ranges = Vec::new();
        // `None`: no range open; else (a_start, a_end, b_start, b_end).
        let mut open: Option<(usize, usize, usize, usize)> = None;
        let (mut i, mut j) = (a.len(), b_.len());
        while i > 0 && j > 0 {
            let mut emit = false;
            if a[i - 1] == b_[j - 1] {
                common[idx - 1] = a[i - 1];
                match &mut open {
                    None => open = Some((i - 1, i - 1, j - 1, j - 1)),
                    Some((a_start, _, b_start, _)) if *a_start == i && *b_start == j => {
                        *a_start -= 1;
                        *b_start -= 1;
                    }
                    Some(_) => emit = true,
                }
                if open.is_some_and(|(a_start, _, b_start, _)| a_start == 0 || b_start == 0) {
                    emit = true;
                }
                idx -= 1;
                i -= 1;
                j -= 1;
            } else {
                if self.at(i - 1, j) > self.at(i, j - 1) {
                    i -= 1;
                } else {
                    j -= 1;
                }
                if open.is_some() {
                    emit = true;
                }
            }
            if emit {
                if let (true, Some((a_start, a_end, b_start, b_end))) = (o.idx, open) {
                    let match_len = (a_end - a_start + 1) as u64;
                    if o.min_match_len == 0 || match_len >= o.min_match_len {
                        let pair = |s: usize, e: usize| Frame::Array(vec![int(s), int(e)]);
                        let mut range = vec![pair(a_start, a_end), pair(b_start, b_end)];
                        if o.with_match_len {
                            range.push(Frame::Integer(match_len as i64));
                        }
                        ranges.push(Frame::Array(range));
                    }
                }
                open = None;
            }
        }
        (common, ranges)
    }
}

fn int(n: usize) -> Frame {
    Frame::Integer(n as i64)
}

/// The commands of this family, for the node's dispatch table (`cmd::dispatch`).
pub(super) const COMMANDS: &[DispatchEntry] = &[
    ("getrange", |ctx, _, args| getrange(ctx, args)),
    ("substr", |ctx, _, args| getrange(ctx, args)),
    ("setrange", |ctx, _, args| setrange(ctx, args)),
    ("getex", |ctx, _, args| getex(ctx, args)),
    ("msetnx", |ctx, _, args| msetnx(ctx, args)),
    ("lcs", |ctx, _, args| lcs(ctx, args)),
];

#[cfg(test)]
mod tests {
    use super::clamp_range;
    use crate::cmd::testing::{run, state};

    #[test]
    fn ranges_follow_redis() {
        assert_eq!(clamp_range(0, -1, 5), Some((0, 4)));
        assert_eq!(clamp_range(0, -100, 5), Some((0, 0)));
        assert_eq!(clamp_range(3, 1, 5), None);
        assert_eq!(clamp_range(0, -1, 0), None);
        assert_eq!(clamp_range(i64::MIN, i64::MAX, 5), Some((0, 4)));
    }

    #[test]
    fn getrange_and_setrange() {
        let s = state();
        assert_eq!(run(&s, "SET k Hello"), "+OK\r\n");
        assert_eq!(run(&s, "GETRANGE k 1 -2"), "$3\r\nell\r\n");
        assert_eq!(run(&s, "SUBSTR k -3 -1"), "$3\r\nllo\r\n");
        assert_eq!(run(&s, "GETRANGE k -1 -3"), "$0\r\n\r\n");
        assert_eq!(run(&s, "SETRANGE k 7 xy"), ":9\r\n");
        assert_eq!(run(&s, "GET k"), "$9\r\nHello\0\0xy\r\n");
        assert_eq!(
            run(&s, "SETRANGE k 536870911 ab"),
            "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n"
        );
        assert_eq!(
            run(&s, "SETRANGE k -1 a"),
            "-ERR offset is out of range\r\n"
        );
    }

    #[test]
    fn getex_options() {
        let s = state();
        run(&s, "SET k v");
        assert_eq!(run(&s, "GETEX k EX 100"), "$1\r\nv\r\n");
        assert_eq!(run(&s, "TTL k"), ":100\r\n");
        assert_eq!(run(&s, "GETEX k PERSIST"), "$1\r\nv\r\n");
        assert_eq!(run(&s, "TTL k"), ":-1\r\n");
        assert_eq!(run(&s, "GETEX k EX 1 PX 1"), "-ERR syntax error\r\n");
        assert_eq!(run(&s, "GETEX k PERSIST EX 1"), "-ERR syntax error\r\n");
        assert_eq!(
            run(&s, "GETEX k PX 0"),
            "-ERR invalid expire time in 'getex' command\r\n"
        );
        assert_eq!(run(&s, "GETEX k PXAT 1"), "$1\r\nv\r\n");
        assert_eq!(run(&s, "EXISTS k"), ":0\r\n");
    }

    #[test]
    fn msetnx_and_lcs() {
        let s = state();
        assert_eq!(run(&s, "MSETNX {a}1 x {a}2 y"), ":1\r\n");
        assert_eq!(run(&s, "MSETNX {a}3 x {a}2 y"), ":0\r\n");
        assert_eq!(run(&s, "EXISTS {a}3"), ":0\r\n");
        run(&s, "MSET {k}a ohmytext {k}b mynewtext");
        assert_eq!(run(&s, "LCS {k}a {k}b"), "$6\r\nmytext\r\n");
        assert_eq!(run(&s, "LCS {k}a {k}b LEN"), ":6\r\n");
        assert_eq!(
            run(&s, "LCS {k}a {k}b IDX MINMATCHLEN 4 WITHMATCHLEN"),
            "*4\r\n$7\r\nmatches\r\n*1\r\n*3\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n:4\r\n\
             $3\r\nlen\r\n:6\r\n"
        );
    }
}
