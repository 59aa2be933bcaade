//! String commands: GET SET SETNX SETEX PSETEX GETSET GETDEL MGET MSET INCR DECR INCRBY DECRBY
//! INCRBYFLOAT APPEND STRLEN, with Redis's option rules, errors and propagation forms.

use bytes::{Bytes, BytesMut};
use tessera_proto::long_double;
use tessera_proto::resp::Frame;
use tessera_proto::slot::key_hash_slot;

use super::dispatch::DispatchEntry;
use super::parse::{self, err, Args, ERR_NOT_INTEGER, ERR_SYNTAX, ERR_WRONGTYPE};
use super::{Ctx, Txn};
use crate::keyspace::{Entry, StringEncoding, Value, ValueRef};

/// Redis's proto-max-bulk-len: the longest string APPEND may build.
const MAX_STRING_LEN: usize = 512 * 1024 * 1024;

fn b(text: &'static str) -> Bytes {
    Bytes::from_static(text.as_bytes())
}

/// The string at `key` for a read: `Ok(None)` when absent, WRONGTYPE for other types.
fn read_string(txn: &mut Txn<'_>, key: &[u8]) -> Result<Option<Bytes>, Frame> {
    match txn.read(key) {
        None => Ok(None),
        Some(entry) => match entry.value {
            ValueRef::String(s) => Ok(Some(Bytes::copy_from_slice(s))),
            #[allow(unreachable_patterns)]
            _ => Err(err(ERR_WRONGTYPE)),
        },
    }
}

/// The string at `key` for a write (no hit/miss counting, as Redis's lookupKeyWrite).
fn write_lookup(txn: &mut Txn<'_>, key: &[u8]) -> Result<Option<(Bytes, Option<u64>)>, Frame> {
    match txn.live(key) {
        None => Ok(None),
        Some(entry) => match entry.value {
            ValueRef::String(s) => Ok(Some((Bytes::copy_from_slice(s), entry.expires_at_ms))),
            #[allow(unreachable_patterns)]
            _ => Err(err(ERR_WRONGTYPE)),
        },
    }
}

fn bulk_or_null(value: Option<Bytes>) -> Frame {
    value.map_or(Frame::Null, Frame::Bulk)
}

pub fn get(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    match read_string(&mut txn, &args[1]) {
        Ok(value) => bulk_or_null(value),
        Err(e) => e,
    }
}

/// How SET's expiry option was given.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ExpireOpt {
    Ex,
    Px,
    ExAt,
    PxAt,
}

struct SetOptions<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    expire: Option<(ExpireOpt, &'a Bytes)>,
}

/// SET's options exactly as Redis's parseExtendedStringArgumentsOrReply accepts them: a repeated
/// option is allowed, a conflicting one is `ERR syntax error`.
fn parse_set_options<'a>(args: &'a [Bytes]) -> Result<SetOptions<'a>, Frame> {
    let mut o = SetOptions {
        nx: false,
        xx: false,
        get: false,
        keepttl: false,
        expire: None,
    };
    let mut a = Args::new(args, 3);
    while let Some(opt) = a.next_arg() {
        let has_next = !a.is_done();
        let expire_kind = o.expire.map(|(k, _)| k);
        let other_expire = |k: ExpireOpt| expire_kind.is_some_and(|e| e != k);
        if parse::eq(opt, "nx") && !o.xx {
            o.nx = true;
        } else if parse::eq(opt, "xx") && !o.nx {
            o.xx = true;
        } else if parse::eq(opt, "get") {
            o.get = true;
        } else if parse::eq(opt, "keepttl") && expire_kind.is_none() {
            o.keepttl = true;
        } else if let Some(kind) = expire_word(opt) {
            if o.keepttl || other_expire(kind) || !has_next {
                return Err(err(ERR_SYNTAX));
            }
            o.expire = Some((kind, a.value()?));
        } else {
            return Err(err(ERR_SYNTAX));
        }
    }
    Ok(o)
}

fn expire_word(opt: &[u8]) -> Option<ExpireOpt> {
    if parse::eq(opt, "ex") {
        Some(ExpireOpt::Ex)
    } else if parse::eq(opt, "px") {
        Some(ExpireOpt::Px)
    } else if parse::eq(opt, "exat") {
        Some(ExpireOpt::ExAt)
    } else if parse::eq(opt, "pxat") {
        Some(ExpireOpt::PxAt)
    } else {
        None
    }
}

/// Redis's getExpireMillisecondsOrReply: the absolute expiry in Unix ms, or the error naming the
/// command (`ERR invalid expire time in 'set' command`).
fn absolute_expiry(
    ctx: &Ctx<'_>,
    kind: ExpireOpt,
    text: &[u8],
    command: &str,
) -> Result<u64, Frame> {
    let value = parse::parse_i64(text).ok_or_else(|| err(ERR_NOT_INTEGER))?;
    let invalid = || Frame::error(format!("ERR invalid expire time in '{command}' command"));
    let seconds = matches!(kind, ExpireOpt::Ex | ExpireOpt::ExAt);
    if value <= 0 || (seconds && value > i64::MAX / 1000) {
        return Err(invalid());
    }
    let mut ms = if seconds { value * 1000 } else { value };
    if matches!(kind, ExpireOpt::Ex | ExpireOpt::Px) {
        ms = ms.checked_add(ctx.now_ms as i64).ok_or_else(invalid)?;
    }
    if ms <= 0 {
        return Err(invalid());
    }
    Ok(ms as u64)
}

/// The write SET and its variants log: relative expiries made absolute, so replay is exact.
fn log_set(txn: &Txn<'_>, key: &Bytes, value: &Bytes, expires_at_ms: Option<u64>, keepttl: bool) {
    match (expires_at_ms, keepttl) {
        (Some(at), _) => txn.log(&[
            b("SET"),
            key.clone(),
            value.clone(),
            b("PXAT"),
            Bytes::from(at.to_string()),
        ]),
        (None, true) => txn.log(&[b("SET"), key.clone(), value.clone(), b("KEEPTTL")]),
        (None, false) => txn.log(&[b("SET"), key.clone(), value.clone()]),
    }
}

/// Stores `value` at `key`: a given expiry replaces the TTL, else KEEPTTL keeps it, else it goes.
fn store(txn: &mut Txn<'_>, key: &Bytes, value: Bytes, expires_at_ms: Option<u64>, keepttl: bool) {
    let expiry = match expires_at_ms {
        Some(at) => Some(at),
        None if keepttl => txn.get(key).and_then(|e| e.expires_at_ms),
        None => None,
    };
    txn.insert(
        key.clone(),
        Entry::new(Value::String(value.clone()), expiry),
    );
    log_set(txn, key, &value, expires_at_ms, keepttl);
}

pub fn set(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let options = match parse_set_options(args) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let expires_at_ms = match options.expire {
        Some((kind, text)) => match absolute_expiry(ctx, kind, text, "set") {
            Ok(at) => Some(at),
            Err(e) => return e,
        },
        None => None,
    };
    set_generic(
        ctx,
        &args[1],
        &args[2],
        expires_at_ms,
        &options,
        Frame::ok(),
        Frame::Null,
    )
}

/// Redis's setGenericCommand: GET's read, the NX/XX condition, the store and the log.
fn set_generic(
    ctx: &Ctx<'_>,
    key: &Bytes,
    value: &Bytes,
    expires_at_ms: Option<u64>,
    options: &SetOptions<'_>,
    ok_reply: Frame,
    abort_reply: Frame,
) -> Frame {
    let mut txn = ctx.lock(key);
    let old = if options.get {
        match read_string(&mut txn, key) {
            Ok(old) => Some(old),
            Err(e) => return e,
        }
    } else {
        None
    };
    let found = txn.exists(key);
    if (options.nx && found) || (options.xx && !found) {
        return match old {
            Some(old) => bulk_or_null(old),
            None => abort_reply,
        };
    }
    store(&mut txn, key, value.clone(), expires_at_ms, options.keepttl);
    match old {
        Some(old) => bulk_or_null(old),
        None => ok_reply,
    }
}

pub fn setnx(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let options = SetOptions {
        nx: true,
        xx: false,
        get: false,
        keepttl: false,
        expire: None,
    };
    set_generic(
        ctx,
        &args[1],
        &args[2],
        None,
        &options,
        Frame::Integer(1),
        Frame::Integer(0),
    )
}

/// SETEX (`unit_ms` 1000) and PSETEX (1).
pub fn setex(ctx: &Ctx<'_>, args: &[Bytes], unit_ms: i64) -> Frame {
    let (kind, name) = if unit_ms == 1000 {
        (ExpireOpt::Ex, "setex")
    } else {
        (ExpireOpt::Px, "psetex")
    };
    let expires_at_ms = match absolute_expiry(ctx, kind, &args[2], name) {
        Ok(at) => at,
        Err(e) => return e,
    };
    let options = SetOptions {
        nx: false,
        xx: false,
        get: false,
        keepttl: false,
        expire: None,
    };
    set_generic(
        ctx,
        &args[1],
        &args[3],
        Some(expires_at_ms),
        &options,
        Frame::ok(),
        Frame::Null,
    )
}

pub fn getset(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    let old = match read_string(&mut txn, &args[1]) {
        Ok(old) => old,
        Err(e) => return e,
    };
    store(&mut txn, &args[1], args[2].clone(), None, false);
    bulk_or_null(old)
}

pub fn getdel(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    match read_string(&mut txn, &args[1]) {
        Ok(Some(old)) => {
            txn.remove(&args[1]);
            txn.log(&[b("DEL"), args[1].clone()]);
            Frame::Bulk(old)
        }
        Ok(None) => Frame::Null,
        Err(e) => e,
    }
}

pub fn mget(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let keys = &args[1..];
    let mut txn = ctx.lock(&keys[0]);
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        if txn.slot() != key_hash_slot(key) {
            drop(txn);
            txn = ctx.lock(key);
        }
        // A value of another type reads as null, as Redis's MGET.
        out.push(
            read_string(&mut txn, key)
                .ok()
                .flatten()
                .map_or(Frame::Null, Frame::Bulk),
        );
    }
    Frame::Array(out)
}

pub fn mset(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    if args.len().is_multiple_of(2) {
        return Frame::error(tessera_proto::command::arity_error("mset"));
    }
    let mut txn = ctx.lock(&args[1]);
    for pair in args[1..].chunks_exact(2) {
        if txn.slot() != key_hash_slot(&pair[0]) {
            drop(txn);
            txn = ctx.lock(&pair[0]);
        }
        txn.insert(
            pair[0].clone(),
            Entry::new(Value::String(pair[1].clone()), None),
        );
    }
    txn.log(args);
    Frame::ok()
}

/// INCR / DECR (`fixed`) and INCRBY (increment from the arguments).
pub fn incr_by(ctx: &Ctx<'_>, args: &[Bytes], fixed: Option<i64>) -> Frame {
    let increment = match fixed {
        Some(n) => n,
        None => match parse::parse_i64(&args[2]) {
            Some(n) => n,
            None => return err(ERR_NOT_INTEGER),
        },
    };
    incr_generic(ctx, args, increment)
}

pub fn decr_by(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    match parse::parse_i64(&args[2]) {
        None => err(ERR_NOT_INTEGER),
        Some(i64::MIN) => err("ERR decrement would overflow"),
        Some(n) => incr_generic(ctx, args, -n),
    }
}

fn incr_generic(ctx: &Ctx<'_>, args: &[Bytes], increment: i64) -> Frame {
    let key = &args[1];
    let mut txn = ctx.lock(key);
    let current = match write_lookup(&mut txn, key) {
        Ok(None) => 0,
        Ok(Some((text, _))) => match parse::parse_i64(&text) {
            Some(n) => n,
            None => return err(ERR_NOT_INTEGER),
        },
        Err(e) => return e,
    };
    let Some(next) = current.checked_add(increment) else {
        return err("ERR increment or decrement would overflow");
    };
    let text = parse::int_bytes(next);
    set_keeping_ttl(&mut txn, key, text, StringEncoding::Auto);
    txn.log(args);
    Frame::Integer(next)
}

/// Replaces the value of `key`, keeping its TTL (as Redis's dbReplaceValue), as a string Redis
/// would encode as `encoding`.
fn set_keeping_ttl(txn: &mut Txn<'_>, key: &Bytes, value: Bytes, encoding: StringEncoding) {
    if !txn.set_value_encoded(key, Value::String(value.clone()), encoding) {
        let entry = Entry::new(Value::String(value), None).with_string_encoding(encoding);
        txn.insert(key.clone(), entry);
    }
}

pub fn incr_by_float(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let mut txn = ctx.lock(key);
    let current = match write_lookup(&mut txn, key) {
        Ok(None) => long_double::LongDouble::ZERO,
        Ok(Some((text, _))) => match long_double::LongDouble::parse(&text) {
            Some(v) => v,
            None => return err(parse::ERR_NOT_FLOAT),
        },
        Err(e) => return e,
    };
    let Some(increment) = long_double::LongDouble::parse(&args[2]) else {
        return err(parse::ERR_NOT_FLOAT);
    };
    let Some(sum) = current.add(&increment) else {
        return err("ERR increment would produce NaN or Infinity");
    };
    let text = Bytes::from(sum.to_human_string());
    set_keeping_ttl(&mut txn, key, text.clone(), StringEncoding::NotInt);
    txn.log(&[b("SET"), key.clone(), text.clone(), b("KEEPTTL")]);
    Frame::Bulk(text)
}

pub fn append(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let mut txn = ctx.lock(key);
    let total = match write_lookup(&mut txn, key) {
        Ok(None) => {
            txn.insert(
                key.clone(),
                Entry::new(Value::String(args[2].clone()), None),
            );
            args[2].len()
        }
        Ok(Some((old, _))) => {
            let total = old.len() + args[2].len();
            if total > MAX_STRING_LEN {
                return err("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
            }
            let mut joined = BytesMut::with_capacity(total);
            joined.extend_from_slice(&old);
            joined.extend_from_slice(&args[2]);
            set_keeping_ttl(&mut txn, key, joined.freeze(), StringEncoding::Raw);
            total
        }
        Err(e) => return e,
    };
    txn.log(args);
    Frame::Integer(total as i64)
}

pub fn strlen(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    match read_string(&mut txn, &args[1]) {
        Ok(value) => Frame::Integer(value.map_or(0, |v| v.len() as i64)),
        Err(e) => e,
    }
}

/// The commands of this family, for the node's dispatch table (`cmd::dispatch`).
pub(super) const COMMANDS: &[DispatchEntry] = &[
    ("get", |ctx, _, args| get(ctx, args)),
    ("set", |ctx, _, args| set(ctx, args)),
    ("setnx", |ctx, _, args| setnx(ctx, args)),
    ("setex", |ctx, _, args| setex(ctx, args, 1000)),
    ("psetex", |ctx, _, args| setex(ctx, args, 1)),
    ("getset", |ctx, _, args| getset(ctx, args)),
    ("getdel", |ctx, _, args| getdel(ctx, args)),
    ("mget", |ctx, _, args| mget(ctx, args)),
    ("mset", |ctx, _, args| mset(ctx, args)),
    ("incr", |ctx, _, args| incr_by(ctx, args, Some(1))),
    ("decr", |ctx, _, args| incr_by(ctx, args, Some(-1))),
    ("incrby", |ctx, _, args| incr_by(ctx, args, None)),
    ("decrby", |ctx, _, args| decr_by(ctx, args)),
    ("incrbyfloat", |ctx, _, args| incr_by_float(ctx, args)),
    ("append", |ctx, _, args| append(ctx, args)),
    ("strlen", |ctx, _, args| strlen(ctx, args)),
];

#[cfg(test)]
mod tests {
    use crate::cmd::testing::{run, state};

    #[test]
    fn set_options_and_conflicts() {
        let s = state();
        assert_eq!(run(&s, "SET k v"), "+OK\r\n");
        assert_eq!(run(&s, "SET k v NX"), "$-1\r\n");
        assert_eq!(run(&s, "SET k w XX GET"), "$1\r\nv\r\n");
        assert_eq!(run(&s, "SET k v NX XX"), "-ERR syntax error\r\n");
        assert_eq!(run(&s, "SET k v EX 1 PX 1"), "-ERR syntax error\r\n");
        assert_eq!(run(&s, "SET k v KEEPTTL PXAT 5"), "-ERR syntax error\r\n");
        assert_eq!(run(&s, "SET k v EX"), "-ERR syntax error\r\n");
        assert_eq!(
            run(&s, "SET k v EX 0"),
            "-ERR invalid expire time in 'set' command\r\n"
        );
        assert_eq!(
            run(&s, "SET k v EX x"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            run(&s, "SETEX k -1 v"),
            "-ERR invalid expire time in 'setex' command\r\n"
        );
        assert_eq!(run(&s, "SETNX k v"), ":0\r\n");
    }

    #[test]
    fn counters_and_overflow() {
        let s = state();
        assert_eq!(run(&s, "INCR n"), ":1\r\n");
        assert_eq!(
            run(&s, "INCRBY n 9223372036854775806"),
            ":9223372036854775807\r\n"
        );
        assert_eq!(
            run(&s, "INCR n"),
            "-ERR increment or decrement would overflow\r\n"
        );
        assert_eq!(
            run(&s, "DECRBY n -9223372036854775808"),
            "-ERR decrement would overflow\r\n"
        );
        assert_eq!(run(&s, "SET f 10.50"), "+OK\r\n");
        assert_eq!(run(&s, "INCRBYFLOAT f 0.1"), "$4\r\n10.6\r\n");
        assert_eq!(
            run(&s, "INCR f"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            run(&s, "INCRBYFLOAT f x"),
            "-ERR value is not a valid float\r\n"
        );
    }

    #[test]
    fn append_getdel_getset_mget() {
        let s = state();
        assert_eq!(run(&s, "APPEND a he"), ":2\r\n");
        assert_eq!(run(&s, "APPEND a llo"), ":5\r\n");
        assert_eq!(run(&s, "STRLEN a"), ":5\r\n");
        assert_eq!(run(&s, "GETSET a x"), "$5\r\nhello\r\n");
        assert_eq!(run(&s, "GETDEL a"), "$1\r\nx\r\n");
        assert_eq!(run(&s, "GETDEL a"), "$-1\r\n");
        assert_eq!(run(&s, "MSET {a}1 x {a}2 y"), "+OK\r\n");
        assert_eq!(
            run(&s, "MSET {a}1 x {a}2"),
            "-ERR wrong number of arguments for 'mset' command\r\n"
        );
        assert_eq!(
            run(&s, "MGET {a}1 {a}3 {a}2"),
            "*3\r\n$1\r\nx\r\n$-1\r\n$1\r\ny\r\n"
        );
    }
}
