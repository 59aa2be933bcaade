//! PFADD PFCOUNT PFMERGE as Redis 7.0's: a HyperLogLog is a string holding Redis's exact bytes
//! (`crate::hll`), edited in place, with Redis's lookups (a read for PFCOUNT's and PFMERGE's
//! sources, a write for PFADD's key and PFMERGE's destination) and its errors.
//!
//! Logging: PFADD when it changed a register or created the key, PFMERGE always (Redis propagates
//! both as sent; their sources share the slot, so a replay finds the same registers). A single-key
//! PFCOUNT that refreshes the cached cardinality changes the value too: Redis propagates that
//! PFCOUNT, which is not a write here, so it is logged as the SETRANGE of the eight cache bytes,
//! which replays to the same bytes.

use bytes::Bytes;
use tessera_proto::resp::Frame;
use tessera_proto::slot::key_hash_slot;

use super::dispatch::DispatchEntry;
use super::parse::{err, ERR_WRONGTYPE};
use super::{Ctx, Txn};
use crate::hll::{self, Corrupt, REGISTERS};
use crate::keyspace::{Entry, EntryRef, StringEncoding, Value, ValueRef};

const ERR_NOT_HLL: &str = "WRONGTYPE Key is not a valid HyperLogLog string value.";
const ERR_CORRUPT: &str = "INVALIDOBJ Corrupted HLL object detected";
const ERR_CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

/// What a lookup found at a key, checked as Redis's isHLLObjectOrReply.
enum Found {
    Missing,
    Hll,
}

/// Checks the value `entry` holds: a HyperLogLog, or the error Redis answers.
fn check(entry: Option<EntryRef<'_>>) -> Result<Found, Frame> {
    match entry.map(|e| e.value) {
        None => Ok(Found::Missing),
        Some(ValueRef::String(s)) if hll::is_hll(s) => Ok(Found::Hll),
        Some(ValueRef::String(_)) => Err(err(ERR_NOT_HLL)),
        Some(_) => Err(err(ERR_WRONGTYPE)),
    }
}

fn sparse_max(ctx: &Ctx<'_>) -> u64 {
    ctx.state.config.hll_sparse_max_bytes()
}

/// A new, empty HyperLogLog at `key` (a raw string, as Redis's createHLLObject).
fn create(txn: &mut Txn<'_>, key: &Bytes) {
    txn.insert(
        key.clone(),
        Entry::new(Value::String(Bytes::from(hll::new_sparse())), None)
            .with_string_encoding(StringEncoding::Raw),
    );
}

/// Lets `f` change the HyperLogLog at `key` in place (growing it, or swapping in its dense form),
/// keeping its TTL; the value becomes raw, as Redis's dbUnshareStringValue makes it. The caller
/// checked that `key` holds a string.
fn edit<R>(
    txn: &mut Txn<'_>,
    key: &[u8],
    f: impl FnOnce(&mut Vec<u8>) -> Result<R, Corrupt>,
) -> Result<R, Corrupt> {
    txn.edit_string(key, f).unwrap_or(Err(Corrupt))
}

/// PFADD key [element ...]: 1 when the key was created or a register changed.
pub fn pfadd(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let max = sparse_max(ctx);
    let mut txn = ctx.lock(key);
    let created = match check(txn.live(key)) {
        Ok(Found::Missing) => {
            create(&mut txn, key);
            true
        }
        Ok(Found::Hll) => false,
        Err(e) => return e,
    };
    // A corrupt value fails at the element that finds it; what the elements before changed
    // stays, unlogged, as in Redis.
    let outcome = edit(&mut txn, key, |value| {
        let mut updated = created;
        for element in &args[2..] {
            updated |= hll::add(value, element, max)?;
        }
        if updated {
            hll::invalidate_cache(value);
        }
        Ok::<bool, Corrupt>(updated)
    });
    match outcome {
        Ok(updated) => {
            if updated {
                txn.log(args);
            }
            Frame::Integer(i64::from(updated))
        }
        Err(Corrupt) => err(ERR_CORRUPT),
    }
}

/// PFCOUNT key [key ...]: one key answers (and refreshes) its cached cardinality; several answer
/// the cardinality of their union without caching anything.
pub fn pfcount(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    if args.len() > 2 {
        return count_union(ctx, &args[1..]);
    }
    let key = &args[1];
    let mut txn = ctx.lock(key);
    match check(txn.read(key)) {
        Ok(Found::Missing) => return Frame::Integer(0),
        Ok(Found::Hll) => {}
        Err(e) => return e,
    }
    // Redis unshares (makes raw) the value before it reads the cache, whether or not it writes.
    let outcome = edit(&mut txn, key, |value| {
        if let Some(card) = hll::cached_count(value) {
            return Ok((card, false));
        }
        let card = hll::count(value)?;
        hll::set_cached_count(value, card);
        Ok::<(u64, bool), Corrupt>((card, true))
    });
    match outcome {
        Ok((card, refreshed)) => {
            if refreshed {
                txn.log(&[
                    Bytes::from_static(b"SETRANGE"),
                    key.clone(),
                    Bytes::from_static(b"8"),
                    Bytes::copy_from_slice(&card.to_le_bytes()),
                ]);
            }
            Frame::Integer(card as i64)
        }
        Err(Corrupt) => err(ERR_CORRUPT),
    }
}

/// Every key of a multi-key command in one slot (the cluster rule already refused others), locked.
fn lock_all<'a>(ctx: &Ctx<'a>, keys: &[Bytes]) -> Result<Txn<'a>, Frame> {
    let slot = key_hash_slot(&keys[0]);
    if keys.iter().any(|k| key_hash_slot(k) != slot) {
        return Err(err(ERR_CROSSSLOT));
    }
    Ok(ctx.lock_slot(slot))
}

/// Raises `max` to the registers of every HyperLogLog among `keys` (missing keys are empty),
/// looking each up as a read. Returns whether any of them is dense.
fn merge_sources(
    txn: &mut Txn<'_>,
    keys: &[Bytes],
    max: &mut [u8; REGISTERS],
) -> Result<bool, Frame> {
    let mut any_dense = false;
    for key in keys {
        let entry = txn.read(key);
        let value = match entry.map(|e| e.value) {
            None => continue,
            Some(ValueRef::String(s)) if hll::is_hll(s) => s,
            Some(ValueRef::String(_)) => return Err(err(ERR_NOT_HLL)),
            Some(_) => return Err(err(ERR_WRONGTYPE)),
        };
        any_dense |= hll::is_dense(value);
        hll::merge_into(max, value).map_err(|Corrupt| err(ERR_CORRUPT))?;
    }
    Ok(any_dense)
}

fn count_union(ctx: &Ctx<'_>, keys: &[Bytes]) -> Frame {
    let mut txn = match lock_all(ctx, keys) {
        Ok(txn) => txn,
        Err(e) => return e,
    };
    let mut max = Box::new([0u8; REGISTERS]);
    match merge_sources(&mut txn, keys, &mut max) {
        Ok(_) => Frame::Integer(hll::count_registers(&max) as i64),
        Err(e) => e,
    }
}

/// PFMERGE dest [source ...]: the destination (itself one of the sources) gets the maximum of
/// every register; dense when any input was dense.
pub fn pfmerge(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let dest = &args[1];
    let max_bytes = sparse_max(ctx);
    let mut txn = match lock_all(ctx, &args[1..]) {
        Ok(txn) => txn,
        Err(e) => return e,
    };
    let mut max = Box::new([0u8; REGISTERS]);
    let dense = match merge_sources(&mut txn, &args[1..], &mut max) {
        Ok(dense) => dense,
        Err(e) => return e,
    };
    if txn.live(dest).is_none() {
        create(&mut txn, dest);
    }
    let outcome = edit(&mut txn, dest, |value| {
        if dense {
            hll::to_dense(value)?;
        }
        for (index, &count) in max.iter().enumerate() {
            if count != 0 {
                // The destination was checked as a source: only a bug could make this fail,
                // and Redis ignores it here too.
                let _ = hll::set_register(value, index, count, max_bytes);
            }
        }
        hll::invalidate_cache(value);
        Ok::<(), Corrupt>(())
    });
    match outcome {
        Ok(()) => {
            txn.log(args);
            Frame::ok()
        }
        Err(Corrupt) => err(ERR_CORRUPT),
    }
}

/// The commands of this family, for the node's dispatch table (`cmd::dispatch`).
pub(super) const COMMANDS: &[DispatchEntry] = &[
    ("pfadd", |ctx, _, args| pfadd(ctx, args)),
    ("pfcount", |ctx, _, args| pfcount(ctx, args)),
    ("pfmerge", |ctx, _, args| pfmerge(ctx, args)),
];

#[cfg(test)]
mod tests {
    use crate::cmd::testing::{run, state};

    #[test]
    fn add_count_merge_and_errors() {
        let st = state();
        assert_eq!(run(&st, "PFADD h a b c"), ":1\r\n");
        assert_eq!(run(&st, "PFADD h a"), ":0\r\n");
        assert_eq!(run(&st, "PFCOUNT h"), ":3\r\n");
        assert_eq!(run(&st, "PFADD {h}2 c d"), ":1\r\n");
        assert_eq!(run(&st, "PFMERGE h {h}2"), "+OK\r\n");
        assert_eq!(run(&st, "PFCOUNT h"), ":4\r\n");
        assert_eq!(run(&st, "SET s notanhll"), "+OK\r\n");
        assert_eq!(
            run(&st, "PFADD s x"),
            "-WRONGTYPE Key is not a valid HyperLogLog string value.\r\n"
        );
        assert_eq!(run(&st, "LPUSH l x"), ":1\r\n");
        assert_eq!(
            run(&st, "PFCOUNT l"),
            "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
        );
    }
}
