//! Moving and copying keys within one slot: RENAME, RENAMENX, COPY. Both keys share a slot (the
//! cluster rule answers CROSSSLOT otherwise), so one lock makes each atomic. The destination gets
//! its value through `insert`, which wakes clients blocked on it, as any write does. Logged as sent:
//! replaying the same command on the same state gives the same result.

use bytes::Bytes;
use tessera_proto::resp::Frame;
use tessera_proto::slot::key_hash_slot;

use crate::cmd::parse::{self, err, ERR_NOT_INTEGER, ERR_SYNTAX};
use crate::cmd::Ctx;

const ERR_CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";
/// Redis's databases (`databases 16`): COPY ... DB n is range-checked against this first.
const DATABASES: i64 = 16;

/// RENAME src dst (`nx` false) and RENAMENX src dst (`nx` true), as Redis's renameGenericCommand:
/// the TTL moves with the value; renaming a key onto itself succeeds without change.
pub fn rename(ctx: &Ctx<'_>, args: &[Bytes], nx: bool) -> Frame {
    let (src, dst) = (&args[1], &args[2]);
    // Replay skips the cluster rule; never move a key into a slot this lock does not cover.
    if key_hash_slot(src) != key_hash_slot(dst) {
        return err(ERR_CROSSSLOT);
    }
    let mut txn = ctx.lock(src);
    if txn.live(src).is_none() {
        return err("ERR no such key");
    }
    if src == dst {
        return if nx { Frame::Integer(0) } else { Frame::ok() };
    }
    if nx && txn.live(dst).is_some() {
        return Frame::Integer(0);
    }
    let Some(entry) = txn.remove(src) else {
        return err("ERR no such key");
    };
    txn.remove(dst);
    txn.insert(dst.clone(), entry);
    txn.log(args);
    if nx {
        Frame::Integer(1)
    } else {
        Frame::ok()
    }
}

/// COPY src dst [DB n] [REPLACE], as Redis's copyCommand in cluster mode: only database 0 exists;
/// the copy keeps the source's TTL.
pub fn copy(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut replace = false;
    let mut db: i64 = 0;
    let mut i = 3;
    while i < args.len() {
        if parse::eq(&args[i], "replace") {
            replace = true;
        } else if parse::eq(&args[i], "db") && i + 1 < args.len() {
            // getIntFromObjectOrReply: a C int, one message for both failures.
            db = match parse::parse_i64(&args[i + 1]) {
                Some(n) if i32::try_from(n).is_ok() => n,
                _ => return err(ERR_NOT_INTEGER),
            };
            if !(0..DATABASES).contains(&db) {
                return err("ERR DB index is out of range");
            }
            i += 1;
        } else {
            return err(ERR_SYNTAX);
        }
        i += 1;
    }
    if db != 0 {
        return err("ERR Copying to another database is not allowed in cluster mode");
    }
    let (src, dst) = (&args[1], &args[2]);
    if src == dst {
        return err("ERR source and destination objects are the same");
    }
    if key_hash_slot(src) != key_hash_slot(dst) {
        return err(ERR_CROSSSLOT);
    }
    let mut txn = ctx.lock(src);
    let Some(entry) = txn.live(src).map(|e| e.to_owned()) else {
        return Frame::Integer(0);
    };
    if txn.live(dst).is_some() {
        if !replace {
            return Frame::Integer(0);
        }
        txn.remove(dst);
    }
    // A fresh key (new access metadata) holding a copy that keeps the value's encoding.
    txn.insert(dst.clone(), entry);
    txn.log(args);
    Frame::Integer(1)
}

#[cfg(test)]
mod tests {
    use crate::cmd::testing::{run, state};

    #[test]
    fn rename_moves_value_and_ttl() {
        let s = state();
        assert_eq!(run(&s, "RENAME {a}x {a}y"), "-ERR no such key\r\n");
        run(&s, "SET {a}x 1");
        run(&s, "EXPIRE {a}x 100");
        assert_eq!(run(&s, "RENAME {a}x {a}x"), "+OK\r\n");
        assert_eq!(run(&s, "RENAMENX {a}x {a}x"), ":0\r\n");
        assert_eq!(run(&s, "RENAME {a}x {a}y"), "+OK\r\n");
        assert_eq!(run(&s, "TTL {a}y"), ":100\r\n");
        assert_eq!(run(&s, "EXISTS {a}x"), ":0\r\n");
        run(&s, "SET {a}z 2");
        assert_eq!(run(&s, "RENAMENX {a}y {a}z"), ":0\r\n");
        assert_eq!(run(&s, "RENAMENX {a}y {a}w"), ":1\r\n");
        assert_eq!(
            run(&s, "RENAME a b"),
            "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
        );
    }

    /// The logged forms (the commands as sent) replay to the same state.
    #[test]
    fn replayed_as_sent() {
        let s = state();
        let line = |l: &str| {
            l.split(' ')
                .map(|w| bytes::Bytes::from(w.to_string()))
                .collect()
        };
        for l in [
            "SET {a}x 1",
            "PEXPIREAT {a}x 4102444800000",
            "RENAME {a}x {a}y",
            "COPY {a}y {a}z",
            "SET {a}w 2",
            "RENAMENX {a}w {a}v",
            "COPY {a}v {a}z REPLACE",
        ] {
            crate::cmd::replay(&s, line(l)).expect("replays");
        }
        assert_eq!(run(&s, "EXISTS {a}x {a}w"), ":0\r\n");
        assert_eq!(run(&s, "PEXPIRETIME {a}y"), ":4102444800000\r\n");
        assert_eq!(run(&s, "GET {a}z"), "$1\r\n2\r\n");
        assert_eq!(run(&s, "GET {a}v"), "$1\r\n2\r\n");
    }

    #[test]
    fn copy_options() {
        let s = state();
        run(&s, "SET {a}x 1");
        assert_eq!(
            run(&s, "COPY {a}x {a}x"),
            "-ERR source and destination objects are the same\r\n"
        );
        assert_eq!(run(&s, "COPY {a}x {a}y"), ":1\r\n");
        assert_eq!(run(&s, "COPY {a}x {a}y"), ":0\r\n");
        assert_eq!(run(&s, "COPY {a}x {a}y REPLACE DB 0"), ":1\r\n");
        assert_eq!(
            run(&s, "COPY {a}x {a}y DB 1"),
            "-ERR Copying to another database is not allowed in cluster mode\r\n"
        );
        assert_eq!(
            run(&s, "COPY {a}x {a}y DB 16"),
            "-ERR DB index is out of range\r\n"
        );
        assert_eq!(run(&s, "COPY {a}x {a}y FOO"), "-ERR syntax error\r\n");
        assert_eq!(run(&s, "COPY {a}q {a}y"), ":0\r\n");
    }
}
