//! Key-space commands: DEL UNLINK EXISTS TOUCH EXPIRE PEXPIRE EXPIREAT PEXPIREAT TTL PTTL PERSIST
//! EXPIRETIME PEXPIRETIME TYPE KEYS SCAN RANDOMKEY; RENAME / COPY, OBJECT and DUMP / RESTORE in
//! their own files.

pub mod dump;
pub mod migrate;
pub mod object;
pub mod rename;

use bytes::Bytes;
use rand::Rng;
use tessera_proto::command::{parse_scan, ScanArgs};
use tessera_proto::resp::Frame;
use tessera_proto::slot::{key_hash_slot, SLOT_COUNT};

use super::dispatch::DispatchEntry;
use super::parse::{self, err, ERR_NOT_INTEGER};
use super::Ctx;
use crate::keyspace::glob;

/// Runs `f` for each key with its slot locked, relocking only when the slot changes (in cluster
/// mode all keys share one slot, so the command holds one lock throughout and is atomic).
fn per_key<'a>(
    ctx: &Ctx<'a>,
    keys: &[Bytes],
    mut f: impl FnMut(&mut super::Txn<'a>, &Bytes),
) -> super::Txn<'a> {
    let mut txn = ctx.lock(&keys[0]);
    for key in keys {
        if txn.slot() != key_hash_slot(key) {
            drop(txn);
            txn = ctx.lock(key);
        }
        f(&mut txn, key);
    }
    txn
}

/// DEL and UNLINK (both free memory at once here).
pub fn del(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut deleted = 0;
    let txn = per_key(ctx, &args[1..], |txn, key| {
        if txn.live(key).is_some() && txn.remove(key).is_some() {
            deleted += 1;
        }
    });
    if deleted > 0 {
        txn.log(args);
    }
    Frame::Integer(deleted)
}

pub fn exists(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut found = 0;
    per_key(ctx, &args[1..], |txn, key| {
        if txn.read(key).is_some() {
            found += 1;
        }
    });
    Frame::Integer(found)
}

pub fn touch(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    exists(ctx, args)
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ExpireUnit {
    Seconds,
    Millis,
}

#[derive(Default)]
struct ExpireFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

fn parse_expire_flags(args: &[Bytes]) -> Result<ExpireFlags, Frame> {
    let mut f = ExpireFlags::default();
    for opt in &args[3..] {
        if parse::eq(opt, "nx") {
            f.nx = true;
        } else if parse::eq(opt, "xx") {
            f.xx = true;
        } else if parse::eq(opt, "gt") {
            f.gt = true;
        } else if parse::eq(opt, "lt") {
            f.lt = true;
        } else {
            return Err(Frame::error(format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(opt)
            )));
        }
    }
    if f.nx && (f.xx || f.gt || f.lt) {
        return Err(err(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if f.gt && f.lt {
        return Err(err(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    Ok(f)
}

/// EXPIRE / PEXPIRE (relative) and EXPIREAT / PEXPIREAT (absolute), as Redis's
/// expireGenericCommand; logged as PEXPIREAT with the absolute time, or DEL when the time has
/// already passed.
pub fn expire(ctx: &Ctx<'_>, args: &[Bytes], unit: ExpireUnit, absolute: bool) -> Frame {
    let flags = match parse_expire_flags(args) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let Some(mut when) = parse::parse_i64(&args[2]) else {
        return err(ERR_NOT_INTEGER);
    };
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let invalid = || Frame::error(format!("ERR invalid expire time in '{name}' command"));
    if unit == ExpireUnit::Seconds {
        if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&when) {
            return invalid();
        }
        when *= 1000;
    }
    let base = if absolute { 0 } else { ctx.now_ms as i64 };
    if when > i64::MAX - base {
        return invalid();
    }
    when += base;

    let key = &args[1];
    let mut txn = ctx.lock(key);
    let Some(entry) = txn.live(key) else {
        return Frame::Integer(0);
    };
    let current = entry.expires_at_ms.map(|at| at as i64);
    let refused = (flags.nx && current.is_some())
        || (flags.xx && current.is_none())
        || (flags.gt && current.is_none_or(|c| when <= c))
        || (flags.lt && current.is_some_and(|c| when >= c));
    if refused {
        return Frame::Integer(0);
    }
    if ctx.propagate && when <= ctx.now_ms as i64 {
        txn.remove(key);
        txn.log(&[Bytes::from_static(b"DEL"), key.clone()]);
    } else {
        // A time before the epoch is already past: keep it at 0 (expired on next access).
        txn.set_expiry(key, Some(when.max(0) as u64));
        txn.log(&[
            Bytes::from_static(b"PEXPIREAT"),
            key.clone(),
            Bytes::from(when.to_string()),
        ]);
    }
    Frame::Integer(1)
}

pub fn ttl(ctx: &Ctx<'_>, args: &[Bytes], unit: ExpireUnit) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    let now = txn.now_ms();
    let Some(entry) = txn.read(&args[1]) else {
        return Frame::Integer(-2);
    };
    let Some(at) = entry.expires_at_ms else {
        return Frame::Integer(-1);
    };
    let left = at.saturating_sub(now) as i64;
    Frame::Integer(match unit {
        ExpireUnit::Millis => left,
        ExpireUnit::Seconds => (left + 500) / 1000,
    })
}

/// EXPIRETIME / PEXPIRETIME: the absolute expiry as Unix time (seconds rounded as Redis's
/// `(ms + 500) / 1000`), -1 without a TTL, -2 without the key.
pub fn expiretime(ctx: &Ctx<'_>, args: &[Bytes], unit: ExpireUnit) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    let Some(entry) = txn.read(&args[1]) else {
        return Frame::Integer(-2);
    };
    let Some(at) = entry.expires_at_ms else {
        return Frame::Integer(-1);
    };
    let at = at.min(i64::MAX as u64) as i64;
    Frame::Integer(match unit {
        ExpireUnit::Millis => at,
        ExpireUnit::Seconds => at.saturating_add(500) / 1000,
    })
}

pub fn persist(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    let had_ttl = txn
        .live(&args[1])
        .is_some_and(|e| e.expires_at_ms.is_some());
    if !had_ttl {
        return Frame::Integer(0);
    }
    txn.set_expiry(&args[1], None);
    txn.log(args);
    Frame::Integer(1)
}

pub fn type_of(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    let name = txn.read(&args[1]).map_or("none", |e| e.value.type_name());
    Frame::Simple(Bytes::from_static(name.as_bytes()))
}

pub fn keys(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let pattern = &args[1];
    let all = pattern.as_ref() == b"*";
    let mut out = Vec::new();
    for slot in 0..SLOT_COUNT {
        let guard = ctx.state.keyspace.lock(slot);
        for (key, entry) in guard.iter() {
            if !entry.is_expired(ctx.now_ms) && (all || glob::matches(pattern, key)) {
                out.push(Frame::Bulk(Bytes::copy_from_slice(key)));
            }
        }
    }
    Frame::Array(out)
}

/// SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]. The cursor is the next slot to visit: a slot
/// is returned whole, so every key present for the whole scan is returned, as SCAN promises, even
/// while other keys come and go.
pub fn scan(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let ScanArgs { cursor, options } = match parse_scan(args, 1, true) {
        Ok(scan) => scan,
        Err(e) => return Frame::error(e.to_string()),
    };
    let (pattern, type_name) = (options.pattern, options.type_name);
    let count = options.count;
    let mut slot = (cursor % u64::from(SLOT_COUNT)) as u16;
    if cursor >= u64::from(SLOT_COUNT) {
        // Not a cursor we handed out: nothing more to return.
        return scan_reply(0, Vec::new());
    }
    let mut examined: usize = 0;
    let mut found = Vec::new();
    loop {
        let guard = ctx.state.keyspace.lock(slot);
        for (key, entry) in guard.iter() {
            examined += 1;
            if entry.is_expired(ctx.now_ms) {
                continue;
            }
            if pattern.is_some_and(|p| !glob::matches(p, key)) {
                continue;
            }
            if type_name.is_some_and(|t| !parse::eq(t, entry.value.type_name())) {
                continue;
            }
            found.push(Frame::Bulk(Bytes::copy_from_slice(key)));
        }
        drop(guard);
        slot += 1;
        if slot == SLOT_COUNT {
            return scan_reply(0, found);
        }
        if examined >= count {
            return scan_reply(u64::from(slot), found);
        }
    }
}

fn scan_reply(cursor: u64, keys: Vec<Frame>) -> Frame {
    Frame::Array(vec![
        Frame::Bulk(Bytes::from(cursor.to_string())),
        Frame::Array(keys),
    ])
}

pub fn randomkey(ctx: &Ctx<'_>) -> Frame {
    let keyspace = &ctx.state.keyspace;
    let mut rng = rand::rng();
    // Random slots first (cheap when keys are spread), then a walk from a random start.
    for _ in 0..64 {
        if keyspace.is_empty() {
            return Frame::Null;
        }
        let slot = rng.random_range(0..SLOT_COUNT);
        if let Some(key) = random_live_key(ctx, slot, &mut rng) {
            return Frame::Bulk(key);
        }
    }
    let start = rng.random_range(0..SLOT_COUNT);
    for step in 0..SLOT_COUNT {
        let slot = (start + step) % SLOT_COUNT;
        if let Some(key) = random_live_key(ctx, slot, &mut rng) {
            return Frame::Bulk(key);
        }
    }
    Frame::Null
}

/// Keys RANDOMKEY draws its pick among (Redis's GETFAIR_NUM_ENTRIES): one of a run from a random
/// place, so a key after a gap in the table is not favoured much over the others.
const FAIR_RUN: usize = 15;

/// A random unexpired key of `slot`; expired picks are reclaimed (and logged) on the way.
fn random_live_key(ctx: &Ctx<'_>, slot: u16, rng: &mut impl Rng) -> Option<Bytes> {
    let mut txn = ctx.lock_slot(slot);
    for _ in 0..8 {
        if txn.is_empty() {
            return None;
        }
        let run: Vec<&[u8]> = txn
            .run_from(rng.random())
            .take(FAIR_RUN)
            .map(|(key, _)| key)
            .collect();
        let key = Bytes::copy_from_slice(run.get(rng.random_range(0..run.len().max(1)))?);
        if txn.live(&key).is_some() {
            return Some(key);
        }
    }
    None
}

/// The commands of this family, for the node's dispatch table (`cmd::dispatch`).
pub(super) const COMMANDS: &[DispatchEntry] = &[
    ("del", |ctx, _, args| del(ctx, args)),
    ("unlink", |ctx, _, args| del(ctx, args)),
    ("exists", |ctx, _, args| exists(ctx, args)),
    ("touch", |ctx, _, args| touch(ctx, args)),
    ("expire", |ctx, _, args| {
        expire(ctx, args, ExpireUnit::Seconds, false)
    }),
    ("pexpire", |ctx, _, args| {
        expire(ctx, args, ExpireUnit::Millis, false)
    }),
    ("expireat", |ctx, _, args| {
        expire(ctx, args, ExpireUnit::Seconds, true)
    }),
    ("pexpireat", |ctx, _, args| {
        expire(ctx, args, ExpireUnit::Millis, true)
    }),
    ("ttl", |ctx, _, args| ttl(ctx, args, ExpireUnit::Seconds)),
    ("pttl", |ctx, _, args| ttl(ctx, args, ExpireUnit::Millis)),
    ("persist", |ctx, _, args| persist(ctx, args)),
    ("type", |ctx, _, args| type_of(ctx, args)),
    ("keys", |ctx, _, args| keys(ctx, args)),
    ("scan", |ctx, _, args| scan(ctx, args)),
    ("randomkey", |ctx, _, _| randomkey(ctx)),
    ("rename", |ctx, _, args| rename::rename(ctx, args, false)),
    ("renamenx", |ctx, _, args| rename::rename(ctx, args, true)),
    ("copy", |ctx, _, args| rename::copy(ctx, args)),
    ("expiretime", |ctx, _, args| {
        expiretime(ctx, args, ExpireUnit::Seconds)
    }),
    ("pexpiretime", |ctx, _, args| {
        expiretime(ctx, args, ExpireUnit::Millis)
    }),
    ("object", |ctx, _, args| object::object(ctx, args)),
    ("dump", |ctx, _, args| dump::dump(ctx, args)),
    ("restore", |ctx, _, args| dump::restore(ctx, args)),
    ("restore-asking", |ctx, _, args| dump::restore(ctx, args)),
    ("migrate", migrate::migrate),
];

#[cfg(test)]
mod command_tests {
    use crate::cmd::testing::{run, state};

    #[test]
    fn expire_options_and_ttls() {
        let s = state();
        run(&s, "SET k v");
        assert_eq!(run(&s, "TTL k"), ":-1\r\n");
        assert_eq!(run(&s, "EXPIRE k 100 XX"), ":0\r\n");
        assert_eq!(run(&s, "EXPIRE k 100 NX"), ":1\r\n");
        assert_eq!(run(&s, "TTL k"), ":100\r\n");
        assert_eq!(run(&s, "EXPIRE k 50 GT"), ":0\r\n");
        assert_eq!(run(&s, "EXPIRE k 50 LT"), ":1\r\n");
        assert_eq!(
            run(&s, "EXPIRE k 1 NX GT"),
            "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n"
        );
        assert_eq!(run(&s, "EXPIRE k 1 BAD"), "-ERR Unsupported option BAD\r\n");
        assert_eq!(run(&s, "PERSIST k"), ":1\r\n");
        assert_eq!(run(&s, "EXPIRE k 0"), ":1\r\n");
        assert_eq!(run(&s, "EXISTS k"), ":0\r\n");
        assert_eq!(run(&s, "TTL k"), ":-2\r\n");
        assert_eq!(run(&s, "TYPE k"), "+none\r\n");
    }

    #[test]
    fn del_exists_and_crossslot() {
        let s = state();
        run(&s, "MSET {t}a 1 {t}b 2");
        assert_eq!(run(&s, "EXISTS {t}a {t}a {t}c"), ":2\r\n");
        assert_eq!(run(&s, "DEL {t}a {t}b {t}c"), ":2\r\n");
        assert_eq!(
            run(&s, "DEL a b"),
            "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
        );
        assert_eq!(run(&s, "RANDOMKEY"), "$-1\r\n");
        assert_eq!(run(&s, "SCAN 0"), "*2\r\n$1\r\n0\r\n*0\r\n");
    }
}
