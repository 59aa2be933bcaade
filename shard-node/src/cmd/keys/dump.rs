//! DUMP and RESTORE, as Redis 7.0's dumpCommand / restoreCommand (src/cluster.c): a value moves
//! between Tessera and Redis (either way) as an RDB payload (`crate::rdb`).
//!
//! RESTORE checks in Redis's order, so the same bad command gets the same error: options, the
//! key (BUSYKEY), the TTL, the payload's footer, then its contents. It is logged as `RESTORE key
//! <ttl> payload REPLACE [ABSTTL]` with the TTL made absolute, which replays to the same key
//! whenever it is replayed; a restore whose absolute TTL has already passed creates nothing and
//! is logged as the DEL of the key it replaced, if any.

use bytes::Bytes;
use tessera_proto::resp::Frame;

use crate::cmd::parse::{self, err, ERR_NOT_INTEGER, ERR_SYNTAX};
use crate::cmd::Ctx;
use crate::keyspace::Entry;
use crate::rdb;

const ERR_BUSYKEY: &str = "BUSYKEY Target key name already exists.";
const ERR_TTL: &str = "ERR Invalid TTL value, must be >= 0";
const ERR_IDLETIME: &str = "ERR Invalid IDLETIME value, must be >= 0";
const ERR_FREQ: &str = "ERR Invalid FREQ value, must be >= 0 and <= 255";

/// DUMP key: the value's payload, nil for a missing key.
pub fn dump(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    match txn.read(&args[1]) {
        None => Frame::Null,
        Some(entry) => Frame::Bulk(Bytes::from(rdb::dump(entry.value))),
    }
}

/// RESTORE's options after the payload.
#[derive(Default)]
struct RestoreOptions {
    replace: bool,
    absttl: bool,
    /// IDLETIME seconds and FREQ frequency: validated as Redis does; one excludes the other.
    idle_seconds: Option<i64>,
    frequency: Option<i64>,
}

fn parse_options(args: &[Bytes]) -> Result<RestoreOptions, Frame> {
    let mut options = RestoreOptions::default();
    let mut i = 4;
    while i < args.len() {
        let more = args.len() - i - 1;
        let arg = &args[i];
        if parse::eq(arg, "replace") {
            options.replace = true;
        } else if parse::eq(arg, "absttl") {
            options.absttl = true;
        } else if parse::eq(arg, "idletime") && more >= 1 && options.frequency.is_none() {
            let idle = parse::parse_i64(&args[i + 1]).ok_or_else(|| err(ERR_NOT_INTEGER))?;
            if idle < 0 {
                return Err(err(ERR_IDLETIME));
            }
            options.idle_seconds = Some(idle);
            i += 1;
        } else if parse::eq(arg, "freq") && more >= 1 && options.idle_seconds.is_none() {
            let freq = parse::parse_i64(&args[i + 1]).ok_or_else(|| err(ERR_NOT_INTEGER))?;
            if !(0..=255).contains(&freq) {
                return Err(err(ERR_FREQ));
            }
            options.frequency = Some(freq);
            i += 1;
        } else {
            return Err(err(ERR_SYNTAX));
        }
        i += 1;
    }
    Ok(options)
}

/// RESTORE key ttl serialized-value [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ frequency] (and
/// RESTORE-ASKING, the same command for slot migration).
pub fn restore(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let options = match parse_options(args) {
        Ok(options) => options,
        Err(reply) => return reply,
    };
    let key = &args[1];
    let mut txn = ctx.lock(key);
    let existed = txn.live(key).is_some();
    if existed && !options.replace {
        return err(ERR_BUSYKEY);
    }
    let ttl = match parse::parse_i64(&args[2]) {
        None => return err(ERR_NOT_INTEGER),
        Some(ttl) if ttl < 0 => return err(ERR_TTL),
        Some(ttl) => ttl,
    };
    let value = match rdb::restore(&args[3]) {
        Ok(value) => value,
        Err(refused) => {
            if let rdb::RestoreError::BadFormat { reason } = refused {
                tracing::debug!(reason, "RESTORE refused a payload");
            }
            return Frame::error(refused.to_string());
        }
    };

    let deleted = options.replace && txn.remove(key).is_some();
    // Redis adds the relative TTL to now in a C long long: wrap as it does, so a TTL too large
    // to add lands in the past there and here alike.
    let expires_at = match ttl {
        0 => None,
        ttl if options.absttl => Some(ttl),
        ttl => Some(ttl.wrapping_add(ctx.now_ms as i64)),
    };
    // Already expired: nothing is created (Redis's checkAlreadyExpired; replay never expires by
    // its own clock, the log holds the DEL when the key went).
    if expires_at.is_some_and(|at| ctx.propagate && at <= ctx.now_ms as i64) {
        if deleted {
            txn.log(&[Bytes::from_static(b"DEL"), key.clone()]);
        }
        return Frame::ok();
    }
    let expires_at = expires_at.map(|at| at.max(0) as u64);
    // A copy, so the stored key does not pin the connection's read buffer.
    let entry = Entry::new(value, expires_at);
    // IDLETIME / FREQ set the new key's access metadata (validated to 0.. and 0..=255 above).
    entry.access.restore(
        ctx.state.config.policy().is_lfu(),
        options.frequency.map(|f| f.clamp(0, 255) as u8),
        options.idle_seconds.map(|i| i.max(0) as u64),
        ctx.now_ms,
    );
    txn.insert(Bytes::copy_from_slice(key), entry);
    let mut logged = vec![
        Bytes::from_static(b"RESTORE"),
        key.clone(),
        Bytes::from(expires_at.unwrap_or(0).to_string()),
        args[3].clone(),
        Bytes::from_static(b"REPLACE"),
    ];
    if expires_at.is_some() {
        logged.push(Bytes::from_static(b"ABSTTL"));
    }
    txn.log(&logged);
    Frame::ok()
}
