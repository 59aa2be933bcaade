//! Hash commands: HSET HSETNX HGET HMGET HMSET HGETALL HDEL HEXISTS HLEN HKEYS HVALS HINCRBY
//! HINCRBYFLOAT HSTRLEN HRANDFIELD HSCAN, with Redis's errors, RESP3 shapes and propagation forms.
//!
//! Fields and values are stored as copies (`Bytes::copy_from_slice`), so a long-lived hash never
//! pins the connection buffer its arguments were read from. A hash left empty is deleted.

use bytes::Bytes;
use rand::seq::IndexedRandom;
use rand::Rng;
use tessera_proto::command::{parse_cursor, ScanOptions};
use tessera_proto::long_double;
use tessera_proto::resp::{Frame, Protocol};

use super::dispatch::DispatchEntry;
use super::parse::{self, err, ERR_NOT_FLOAT, ERR_NOT_INTEGER, ERR_SYNTAX, ERR_WRONGTYPE};
use super::{Ctx, Txn};
use crate::keyspace::{glob, Entry, EntryRef, HashValue, Value, ValueMut, ValueRef};

type Hash = HashValue;

fn b(text: &'static str) -> Bytes {
    Bytes::from_static(text.as_bytes())
}

fn copy(arg: &[u8]) -> Bytes {
    Bytes::copy_from_slice(arg)
}

/// The hash at `key` for a read (counts a hit or miss): `Ok(None)` when absent.
fn read_hash<'t>(txn: &'t mut Txn<'_>, key: &[u8]) -> Result<Option<&'t Hash>, Frame> {
    match txn.read(key) {
        None => Ok(None),
        Some(EntryRef {
            value: ValueRef::Hash(h),
            ..
        }) => Ok(Some(h)),
        Some(_) => Err(err(ERR_WRONGTYPE)),
    }
}

/// The hash at `key` for a write, created empty when absent (as hashTypeLookupWriteOrCreate).
/// The caller must delete it again if it stays empty.
fn write_hash<'t>(txn: &'t mut Txn<'_>, key: &Bytes) -> Result<&'t mut Hash, Frame> {
    match txn.live(key) {
        None => {
            txn.insert(copy(key), Entry::new(Value::Hash(Box::default()), None));
        }
        Some(EntryRef {
            value: ValueRef::Hash(_),
            ..
        }) => {}
        Some(_) => return Err(err(ERR_WRONGTYPE)),
    }
    match txn.value_mut(key) {
        Some(ValueMut::Hash(h)) => Ok(h),
        _ => Err(err(ERR_WRONGTYPE)),
    }
}

/// The existing hash at `key` for a write (no creation): `Ok(None)` when absent.
fn existing_hash_mut<'t>(txn: &'t mut Txn<'_>, key: &[u8]) -> Result<Option<&'t mut Hash>, Frame> {
    match txn.live(key) {
        None => return Ok(None),
        Some(EntryRef {
            value: ValueRef::Hash(_),
            ..
        }) => {}
        Some(_) => return Err(err(ERR_WRONGTYPE)),
    }
    match txn.value_mut(key) {
        Some(ValueMut::Hash(h)) => Ok(Some(h)),
        _ => Err(err(ERR_WRONGTYPE)),
    }
}

/// Deletes `key` when its hash is empty (Redis never keeps empty collections).
fn drop_if_empty(txn: &mut Txn<'_>, key: &[u8]) {
    if matches!(txn.get(key), Some(EntryRef { value: ValueRef::Hash(h), .. }) if h.is_empty()) {
        txn.remove(key);
    }
}

/// HSET and HMSET: the reply differs (count of new fields, or +OK).
pub fn hset(ctx: &Ctx<'_>, args: &[Bytes], hmset: bool) -> Frame {
    if args.len() % 2 == 1 {
        let name = if hmset { "hmset" } else { "hset" };
        return Frame::error(tessera_proto::command::arity_error(name));
    }
    let key = &args[1];
    let mut txn = ctx.lock(key);
    let hash = match write_hash(&mut txn, key) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let mut created = 0;
    for pair in args[2..].chunks_exact(2) {
        if hash.insert(&pair[0], &pair[1]) {
            created += 1;
        }
    }
    let mut logged = Vec::with_capacity(args.len());
    logged.push(b("HSET"));
    logged.extend(args[1..].iter().cloned());
    txn.log(&logged);
    if hmset {
        Frame::ok()
    } else {
        Frame::Integer(created)
    }
}

pub fn hsetnx(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let mut txn = ctx.lock(key);
    let hash = match write_hash(&mut txn, key) {
        Ok(h) => h,
        Err(e) => return e,
    };
    if hash.contains_key(&args[2]) {
        return Frame::Integer(0);
    }
    hash.insert(&args[2], &args[3]);
    txn.log(&[b("HSET"), key.clone(), args[2].clone(), args[3].clone()]);
    Frame::Integer(1)
}

pub fn hget(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    match read_hash(&mut txn, &args[1]) {
        Ok(h) => h
            .and_then(|h| h.get(&args[2]))
            .map_or(Frame::Null, |v| Frame::Bulk(copy(v))),
        Err(e) => e,
    }
}

pub fn hmget(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    match read_hash(&mut txn, &args[1]) {
        Ok(h) => Frame::Array(
            args[2..]
                .iter()
                .map(|f| {
                    h.and_then(|h| h.get(f))
                        .map_or(Frame::Null, |v| Frame::Bulk(copy(v)))
                })
                .collect(),
        ),
        Err(e) => e,
    }
}

/// Which parts of each pair HGETALL, HKEYS and HVALS return.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Parts {
    Both,
    Fields,
    Values,
}

pub fn hgetall(ctx: &Ctx<'_>, args: &[Bytes], parts: Parts) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    let hash = match read_hash(&mut txn, &args[1]) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let pairs = hash.into_iter().flat_map(|h| h.iter());
    match parts {
        Parts::Both => Frame::Map(
            pairs
                .map(|(f, v)| (Frame::Bulk(copy(f)), Frame::Bulk(copy(v))))
                .collect(),
        ),
        Parts::Fields => Frame::Array(pairs.map(|(f, _)| Frame::Bulk(copy(f))).collect()),
        Parts::Values => Frame::Array(pairs.map(|(_, v)| Frame::Bulk(copy(v))).collect()),
    }
}

pub fn hdel(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let mut txn = ctx.lock(key);
    let hash = match existing_hash_mut(&mut txn, key) {
        Ok(Some(h)) => h,
        Ok(None) => return Frame::Integer(0),
        Err(e) => return e,
    };
    let mut deleted = 0;
    for field in &args[2..] {
        if hash.remove(field) {
            deleted += 1;
        }
    }
    if deleted > 0 {
        drop_if_empty(&mut txn, key);
        txn.log(args);
    }
    Frame::Integer(deleted)
}

pub fn hexists(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    match read_hash(&mut txn, &args[1]) {
        Ok(h) => Frame::Integer(i64::from(h.is_some_and(|h| h.contains_key(&args[2])))),
        Err(e) => e,
    }
}

pub fn hlen(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    match read_hash(&mut txn, &args[1]) {
        Ok(h) => Frame::Integer(h.map_or(0, |h| h.len() as i64)),
        Err(e) => e,
    }
}

pub fn hstrlen(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    match read_hash(&mut txn, &args[1]) {
        Ok(h) => Frame::Integer(
            h.and_then(|h| h.get(&args[2]))
                .map_or(0, |v| v.len() as i64),
        ),
        Err(e) => e,
    }
}

pub fn hincrby(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let Some(increment) = parse::parse_i64(&args[3]) else {
        return err(ERR_NOT_INTEGER);
    };
    let key = &args[1];
    let mut txn = ctx.lock(key);
    let hash = match write_hash(&mut txn, key) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let current = match hash.get(&args[2]) {
        None => 0,
        Some(text) => match parse::parse_i64(text) {
            Some(n) => n,
            None => return err("ERR hash value is not an integer"),
        },
    };
    let Some(next) = current.checked_add(increment) else {
        drop_if_empty(&mut txn, key);
        return err("ERR increment or decrement would overflow");
    };
    hash.insert(&args[2], &parse::int_bytes(next));
    txn.log(args);
    Frame::Integer(next)
}

pub fn hincrbyfloat(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let Some(increment) = long_double::LongDouble::parse(&args[3]) else {
        return err(ERR_NOT_FLOAT);
    };
    // Parsing accepts "inf"; adding it to zero is how its infinity shows.
    if long_double::LongDouble::ZERO.add(&increment).is_none() {
        return err("ERR value is NaN or Infinity");
    }
    let key = &args[1];
    let mut txn = ctx.lock(key);
    let hash = match write_hash(&mut txn, key) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let current = match hash.get(&args[2]) {
        None => long_double::LongDouble::ZERO,
        Some(text) => match long_double::LongDouble::parse(text) {
            Some(v) => v,
            None => return err("ERR hash value is not a float"),
        },
    };
    let Some(sum) = current.add(&increment) else {
        drop_if_empty(&mut txn, key);
        return err("ERR increment would produce NaN or Infinity");
    };
    let text = Bytes::from(sum.to_human_string());
    hash.insert(&args[2], &text);
    // The result, not the increment, so replay cannot round differently.
    txn.log(&[b("HSET"), key.clone(), args[2].clone(), text.clone()]);
    Frame::Bulk(text)
}

/// HRANDFIELD key [count [WITHVALUES]]: without a count one field or null; a positive count gives
/// distinct fields (at most all of them), a negative one |count| fields that may repeat.
pub fn hrandfield(ctx: &Ctx<'_>, args: &[Bytes], protocol: Protocol) -> Frame {
    let count = match args.get(2) {
        None => None,
        Some(text) => match parse_random_count(text) {
            Ok(n) => Some(n),
            Err(e) => return e,
        },
    };
    let with_values = match args.len() {
        0..=3 => false,
        4 if parse::eq(&args[3], "withvalues") => true,
        _ => return err(ERR_SYNTAX),
    };
    if with_values && count.is_some_and(|n| n.unsigned_abs() > (i64::MAX / 2) as u64) {
        return err("ERR value is out of range");
    }
    let mut txn = ctx.lock(&args[1]);
    let hash = match read_hash(&mut txn, &args[1]) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let mut rng = rand::rng();
    let Some(count) = count else {
        return match hash {
            Some(h) if !h.is_empty() => {
                let n = rng.random_range(0..h.len());
                h.keys()
                    .nth(n)
                    .map_or(Frame::Null, |f| Frame::Bulk(copy(f)))
            }
            _ => Frame::Null,
        };
    };
    let Some(hash) = hash else {
        return Frame::Array(Vec::new());
    };
    let pairs: Vec<(&[u8], &[u8])> = hash.iter().collect();
    let picked: Vec<(&[u8], &[u8])> = pick_random(&pairs, count, &mut rng);
    if with_values {
        // Fields may repeat, so not a map: RESP3 nests each pair, RESP2 flattens them.
        let frames = picked
            .into_iter()
            .map(|(f, v)| (Frame::Bulk(copy(f)), Frame::Bulk(copy(v))));
        if protocol == Protocol::Resp2 {
            Frame::Array(frames.flat_map(|(f, v)| [f, v]).collect())
        } else {
            Frame::Array(frames.map(|(f, v)| Frame::Array(vec![f, v])).collect())
        }
    } else {
        Frame::Array(
            picked
                .into_iter()
                .map(|(f, _)| Frame::Bulk(copy(f)))
                .collect(),
        )
    }
}

/// The count of HRANDFIELD / SRANDMEMBER: an integer in -LONG_MAX..=LONG_MAX.
pub(super) fn parse_random_count(text: &[u8]) -> Result<i64, Frame> {
    match parse::parse_i64(text) {
        None => Err(err(ERR_NOT_INTEGER)),
        Some(i64::MIN) => Err(err(
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        )),
        // Redis streams a reply of any length; we build replies whole, so a count that would make
        // the node allocate without bound is refused instead.
        Some(n) if n.unsigned_abs() > MAX_RANDOM_REPEATS as u64 && n < 0 => {
            Err(err("ERR value is out of range"))
        }
        Some(n) => Ok(n),
    }
}

/// The most picks a negative count (picks with repetition) may ask of HRANDFIELD, SRANDMEMBER and
/// ZRANDMEMBER.
pub(crate) const MAX_RANDOM_REPEATS: usize = 10_000_000;

/// Random picks from `items`: `count >= 0` distinct ones (all when count >= len), `count < 0`
/// |count| picks with repetition.
pub(super) fn pick_random<T: Copy>(items: &[T], count: i64, rng: &mut impl Rng) -> Vec<T> {
    if items.is_empty() {
        return Vec::new();
    }
    if count < 0 {
        let n = count.unsigned_abs() as usize;
        return (0..n).filter_map(|_| items.choose(rng).copied()).collect();
    }
    let n = usize::try_from(count)
        .unwrap_or(usize::MAX)
        .min(items.len());
    if n == items.len() {
        return items.to_vec();
    }
    items.choose_multiple(rng, n).copied().collect()
}

/// HSCAN / SSCAN / ZSCAN's options after the key and cursor (read only once the key is found
/// to exist, as Redis does).
pub(super) fn parse_scan_options(args: &[Bytes]) -> Result<ScanOptions<'_>, Frame> {
    tessera_proto::command::parse_scan(args, 2, false)
        .map(|scan| scan.options)
        .map_err(|e| Frame::error(e.to_string()))
}

/// Redis's scan loop over a hash table: visits buckets from `cursor` until the scan ends, `count`
/// reply items were gathered (`per_element` items per element: 2 for pairs), or `count * 10`
/// buckets were visited. `step` visits one bucket, pushing its elements, and returns the next
/// cursor. Returns the cursor to hand back.
pub(super) fn scan_buckets<T>(
    mut cursor: u64,
    count: usize,
    per_element: usize,
    items: &mut Vec<T>,
    mut step: impl FnMut(u64, &mut Vec<T>) -> u64,
) -> u64 {
    let mut iterations_left = count.saturating_mul(10);
    loop {
        cursor = step(cursor, items);
        if cursor == 0 || iterations_left == 0 || items.len().saturating_mul(per_element) >= count {
            return cursor;
        }
        iterations_left -= 1;
    }
}

/// `[cursor, items]`, the reply shape of every SCAN family command.
pub(super) fn scan_reply(cursor: u64, items: Vec<Frame>) -> Frame {
    Frame::Array(vec![
        Frame::Bulk(Bytes::from(cursor.to_string())),
        Frame::Array(items),
    ])
}

/// HSCAN key cursor [MATCH pattern] [COUNT n], as Redis: a packed (listpack) hash is returned
/// whole with cursor 0; a table pages with Redis's reverse-binary cursor, so every field present
/// for the whole scan is returned at least once, whatever is added or removed between calls.
pub fn hscan(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let Some(cursor) = parse_cursor(&args[2]) else {
        return err("ERR invalid cursor");
    };
    let mut txn = ctx.lock(&args[1]);
    let hash = match read_hash(&mut txn, &args[1]) {
        Ok(Some(h)) => h,
        Ok(None) => return scan_reply(0, Vec::new()),
        Err(e) => return e,
    };
    let options = match parse_scan_options(args) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let mut pairs: Vec<(Bytes, Bytes)> = Vec::new();
    let cursor = if hash.is_packed() {
        hash.scan(0, |f, v| pairs.push((copy(f), copy(v))))
    } else {
        scan_buckets(cursor, options.count, 2, &mut pairs, |cursor, pairs| {
            hash.scan(cursor, |f, v| pairs.push((copy(f), copy(v))))
        })
    };
    let items = pairs
        .into_iter()
        .filter(|(f, _)| options.pattern.is_none_or(|p| glob::matches(p, f)))
        .flat_map(|(f, v)| [Frame::Bulk(f), Frame::Bulk(v)])
        .collect();
    scan_reply(cursor, items)
}

/// The commands of this family, for the node's dispatch table (`cmd::dispatch`).
pub(super) const COMMANDS: &[DispatchEntry] = &[
    ("hset", |ctx, _, args| hset(ctx, args, false)),
    ("hmset", |ctx, _, args| hset(ctx, args, true)),
    ("hsetnx", |ctx, _, args| hsetnx(ctx, args)),
    ("hget", |ctx, _, args| hget(ctx, args)),
    ("hmget", |ctx, _, args| hmget(ctx, args)),
    ("hgetall", |ctx, _, args| hgetall(ctx, args, Parts::Both)),
    ("hkeys", |ctx, _, args| hgetall(ctx, args, Parts::Fields)),
    ("hvals", |ctx, _, args| hgetall(ctx, args, Parts::Values)),
    ("hdel", |ctx, _, args| hdel(ctx, args)),
    ("hexists", |ctx, _, args| hexists(ctx, args)),
    ("hlen", |ctx, _, args| hlen(ctx, args)),
    ("hstrlen", |ctx, _, args| hstrlen(ctx, args)),
    ("hincrby", |ctx, _, args| hincrby(ctx, args)),
    ("hincrbyfloat", |ctx, _, args| hincrbyfloat(ctx, args)),
    ("hrandfield", |ctx, session, args| {
        hrandfield(ctx, args, session.protocol)
    }),
    ("hscan", |ctx, _, args| hscan(ctx, args)),
];

#[cfg(test)]
mod tests {
    use crate::cmd::testing::{run, state};

    #[test]
    fn random_picks_with_repetition_are_bounded() {
        let s = state();
        run(&s, "HSET h f v");
        run(&s, "SADD s m");
        for line in ["HRANDFIELD h -10000001", "SRANDMEMBER s -10000001"] {
            assert_eq!(run(&s, line), "-ERR value is out of range\r\n", "{line}");
        }
        assert_eq!(
            run(&s, "HRANDFIELD h -3"),
            "*3\r\n$1\r\nf\r\n$1\r\nf\r\n$1\r\nf\r\n"
        );
    }

    #[test]
    fn set_get_delete_and_empty_removal() {
        let s = state();
        assert_eq!(run(&s, "HSET h a 1 b 2"), ":2\r\n");
        assert_eq!(run(&s, "HSET h a 3 c 4"), ":1\r\n");
        assert_eq!(
            run(&s, "HSET h a"),
            "-ERR wrong number of arguments for 'hset' command\r\n"
        );
        assert_eq!(run(&s, "HGET h a"), "$1\r\n3\r\n");
        assert_eq!(run(&s, "HSETNX h a 9"), ":0\r\n");
        assert_eq!(run(&s, "HMGET h a zz"), "*2\r\n$1\r\n3\r\n$-1\r\n");
        assert_eq!(run(&s, "HDEL h a b c x"), ":3\r\n");
        assert_eq!(run(&s, "EXISTS h"), ":0\r\n");
        run(&s, "SET str v");
        assert!(run(&s, "HGET str a").starts_with("-WRONGTYPE"));
    }

    #[test]
    fn increments_and_errors() {
        let s = state();
        assert_eq!(run(&s, "HINCRBY h n 5"), ":5\r\n");
        assert_eq!(
            run(&s, "HINCRBY h n 9223372036854775807"),
            "-ERR increment or decrement would overflow\r\n"
        );
        assert_eq!(run(&s, "HINCRBYFLOAT h f 10.5"), "$4\r\n10.5\r\n");
        assert_eq!(run(&s, "HINCRBYFLOAT h f 0.1"), "$4\r\n10.6\r\n");
        assert_eq!(
            run(&s, "HINCRBY h f 1"),
            "-ERR hash value is not an integer\r\n"
        );
        assert_eq!(
            run(&s, "HINCRBYFLOAT h f inf"),
            "-ERR value is NaN or Infinity\r\n"
        );
        assert_eq!(
            run(&s, "HINCRBYFLOAT e f inf"),
            "-ERR value is NaN or Infinity\r\n"
        );
        assert_eq!(run(&s, "EXISTS e"), ":0\r\n");
    }

    #[test]
    fn random_fields() {
        let s = state();
        run(&s, "HSET h a 1 b 2 c 3");
        assert_eq!(run(&s, "HRANDFIELD h 0"), "*0\r\n");
        assert!(run(&s, "HRANDFIELD h 10").starts_with("*3\r\n"));
        assert!(run(&s, "HRANDFIELD h -10").starts_with("*10\r\n"));
        assert!(run(&s, "HRANDFIELD h 2 WITHVALUES").starts_with("*4\r\n"));
        assert_eq!(run(&s, "HRANDFIELD none"), "$-1\r\n");
        assert_eq!(
            run(&s, "HRANDFIELD h 4611686018427387904 WITHVALUES"),
            "-ERR value is out of range\r\n"
        );
    }
}
