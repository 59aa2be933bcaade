//! One key as the shortest commands that recreate it, for the rewritten log: SET (with PXAT when
//! it has a TTL) for strings; HSET, RPUSH, SADD, ZADD for collections, in commands of at most
//! `ITEMS_PER_COMMAND` elements (Redis's AOF_REWRITE_ITEMS_PER_CMD), then PEXPIREAT for a TTL.

use bytes::{Bytes, BytesMut};

use super::record;
use crate::cmd::zset::format_score;
use crate::keyspace::{EntryRef, Keyspace, ValueRef};

/// Elements per rewritten command, as Redis: bounds one record's size (and so replay's memory
/// per command) for huge collections.
pub const ITEMS_PER_COMMAND: usize = 64;

/// Appends the records that recreate `key` holding `entry` to `out`.
/// Writes every slot's keys to `out` as the commands that recreate them, slot by slot, for the AOF
/// rewrite and a replica's snapshot alike. Under each slot's gate (a running transaction is in
/// wholly or not at all) and lock, `mark(slot)` first returns the writes logged before the slot
/// was taken, which go to `out` ahead of the slot's commands.
pub fn write_slots<B: AsRef<[u8]>, E>(
    keyspace: &Keyspace,
    out: &mut impl std::io::Write,
    mut mark: impl FnMut(u16) -> Result<B, E>,
    write_error: impl Fn(std::io::Error) -> E,
) -> Result<(), E> {
    let mut snap = BytesMut::with_capacity(64 * 1024);
    for slot in 0..tessera_proto::slot::SLOT_COUNT {
        let before = {
            let _gate = keyspace.gates().enter(slot);
            let guard = keyspace.lock(slot);
            let before = mark(slot)?;
            for (key, entry) in guard.iter() {
                encode_entry(key, entry, &mut snap);
            }
            before
        };
        out.write_all(before.as_ref()).map_err(&write_error)?;
        out.write_all(&snap).map_err(&write_error)?;
        snap.clear();
        if snap.capacity() > 8 * 1024 * 1024 {
            snap = BytesMut::with_capacity(64 * 1024);
        }
    }
    Ok(())
}

pub fn encode_entry(key: &[u8], entry: EntryRef<'_>, out: &mut BytesMut) {
    let mut args: Vec<Bytes> = Vec::with_capacity(2 + 2 * ITEMS_PER_COMMAND);
    let key = &Bytes::copy_from_slice(key);
    let copy = Bytes::copy_from_slice;
    match entry.value {
        ValueRef::String(value) => {
            args.extend([Bytes::from_static(b"SET"), key.clone(), copy(value)]);
            // PXAT must be positive; an expiry at 0 (set from a time before the epoch) takes the
            // PEXPIREAT below instead.
            if let Some(at) = entry.expires_at_ms.filter(|at| *at > 0) {
                args.extend([Bytes::from_static(b"PXAT"), Bytes::from(at.to_string())]);
                record::encode(&args, out);
                return;
            }
            record::encode(&args, out);
        }
        ValueRef::Hash(hash) => chunked(
            b"HSET",
            key,
            hash.iter().map(|(f, v)| [copy(f), copy(v)]),
            out,
            &mut args,
        ),
        ValueRef::List(list) => chunked(
            b"RPUSH",
            key,
            list.iter().map(|v| [v.clone()]),
            out,
            &mut args,
        ),
        ValueRef::Set(set) => chunked(
            b"SADD",
            key,
            set.iter().map(|m| [m.clone()]),
            out,
            &mut args,
        ),
        ValueRef::ZSet(zset) => chunked(
            b"ZADD",
            key,
            zset.iter()
                .map(|(m, score)| [format_score(score), m.clone()]),
            out,
            &mut args,
        ),
        ValueRef::Stream(stream) => stream_records(key, stream, out),
    }
    if let Some(at) = entry.expires_at_ms {
        record::encode(
            &[
                Bytes::from_static(b"PEXPIREAT"),
                key.clone(),
                Bytes::from(at.to_string()),
            ],
            out,
        );
    }
}

/// A stream as Redis's rewriteStreamObject writes it: an XADD per entry (an empty stream made by
/// `XADD key MAXLEN 0 0-1 x y`), XSETID for the last ID and counters, then per group XGROUP CREATE,
/// an `XCLAIM ... FORCE JUSTID` per pending entry (which creates its consumer) and XGROUP
/// CREATECONSUMER for consumers with nothing pending.
fn stream_records(key: &Bytes, stream: &crate::keyspace::Stream, out: &mut BytesMut) {
    let word = |w: &'static str| Bytes::from_static(w.as_bytes());
    let mut args: Vec<Bytes> = Vec::new();
    if stream.is_empty() {
        record::encode(
            &[
                word("XADD"),
                key.clone(),
                word("MAXLEN"),
                word("0"),
                word("0-1"),
                word("x"),
                word("y"),
            ],
            out,
        );
    }
    for (id, fields) in stream.iter() {
        args.clear();
        args.extend([word("XADD"), key.clone(), id.to_bytes()]);
        args.extend(fields.iter().map(Bytes::copy_from_slice));
        record::encode(&args, out);
    }
    record::encode(
        &[
            word("XSETID"),
            key.clone(),
            stream.last_id.to_bytes(),
            word("ENTRIESADDED"),
            Bytes::from(stream.entries_added.to_string()),
            word("MAXDELETEDID"),
            stream.max_deleted_id.to_bytes(),
        ],
        out,
    );
    for (name, group) in &stream.groups {
        record::encode(
            &[
                word("XGROUP"),
                word("CREATE"),
                key.clone(),
                name.clone(),
                group.last_id.to_bytes(),
                word("ENTRIESREAD"),
                Bytes::from(group.entries_read.to_string()),
            ],
            out,
        );
        for (id, pending) in &group.pel {
            record::encode(
                &[
                    word("XCLAIM"),
                    key.clone(),
                    name.clone(),
                    pending.consumer.clone(),
                    word("0"),
                    id.to_bytes(),
                    word("TIME"),
                    Bytes::from(pending.delivery_time.to_string()),
                    word("RETRYCOUNT"),
                    Bytes::from(pending.delivery_count.to_string()),
                    word("JUSTID"),
                    word("FORCE"),
                ],
                out,
            );
        }
        for (consumer_name, consumer) in &group.consumers {
            if consumer.pel.is_empty() {
                record::encode(
                    &[
                        word("XGROUP"),
                        word("CREATECONSUMER"),
                        key.clone(),
                        name.clone(),
                        consumer_name.clone(),
                    ],
                    out,
                );
            }
        }
    }
}

/// Writes `command key item...` records of at most `ITEMS_PER_COMMAND` items each.
fn chunked<const N: usize>(
    command: &'static [u8],
    key: &Bytes,
    items: impl Iterator<Item = [Bytes; N]>,
    out: &mut BytesMut,
    args: &mut Vec<Bytes>,
) {
    let mut count = 0;
    for item in items {
        if count == 0 {
            args.clear();
            args.extend([Bytes::from_static(command), key.clone()]);
        }
        args.extend(item);
        count += 1;
        if count == ITEMS_PER_COMMAND {
            record::encode(args, out);
            count = 0;
        }
    }
    if count > 0 {
        record::encode(args, out);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::keyspace::{Entry, HashValue, SetValue, SortedSet, Value};

    fn records(key: &str, entry: &Entry) -> Vec<Vec<Bytes>> {
        let mut out = BytesMut::new();
        encode_entry(key.as_bytes(), entry.as_ref(), &mut out);
        let dir = std::env::temp_dir().join(format!(
            "tessera-snapshot-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("a.aof");
        std::fs::write(&path, &out).expect("write");
        let mut all = Vec::new();
        super::super::load(&path, |r| {
            all.push(r);
            Ok::<(), String>(())
        })
        .expect("load");
        let _ = std::fs::remove_dir_all(&dir);
        all
    }

    fn text(record: &[Bytes]) -> String {
        record
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn strings_are_one_set_with_pxat() {
        let entry = Entry::new(
            Value::String(Bytes::from_static(b"v")),
            Some(1_900_000_000_000),
        );
        let r = records("k", &entry);
        assert_eq!(r.len(), 1);
        assert_eq!(text(&r[0]), "SET k v PXAT 1900000000000");
        let r = records("k", &Entry::new(Value::String(Bytes::new()), None));
        assert_eq!(text(&r[0]), "SET k ");
        let r = records("k", &Entry::new(Value::String(Bytes::new()), Some(0)));
        assert_eq!(r.len(), 2);
        assert_eq!(text(&r[1]), "PEXPIREAT k 0");
    }

    #[test]
    fn collections_are_chunked_by_64_then_expired() {
        let list: VecDeque<Bytes> = (0..130).map(|i| Bytes::from(i.to_string())).collect();
        let entry = Entry::new(Value::List(Box::new(list)), Some(42));
        let r = records("l", &entry);
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].len(), 2 + 64);
        assert_eq!(r[1].len(), 2 + 64);
        assert_eq!(text(&r[2]), "RPUSH l 128 129");
        assert_eq!(text(&r[3]), "PEXPIREAT l 42");
        assert_eq!(text(&r[0][..4]), "RPUSH l 0 1");

        let mut hash = HashValue::default();
        for i in 0..65 {
            hash.insert(format!("f{i}").as_bytes(), format!("v{i}").as_bytes());
        }
        let r = records("h", &Entry::new(Value::Hash(Box::new(hash)), None));
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].len(), 2 + 128);
        assert_eq!(r[1].len(), 4);

        let set: SetValue = [Bytes::from_static(b"m")].into_iter().collect();
        let r = records("s", &Entry::new(Value::Set(Box::new(set)), None));
        assert_eq!(text(&r[0]), "SADD s m");

        let mut zset = SortedSet::default();
        zset.insert(Bytes::from_static(b"a"), 1.5);
        zset.insert(Bytes::from_static(b"b"), f64::NEG_INFINITY);
        zset.insert(Bytes::from_static(b"c"), 0.1);
        let r = records("z", &Entry::new(Value::ZSet(Box::new(zset)), None));
        assert_eq!(text(&r[0]), "ZADD z -inf b 0.10000000000000001 c 1.5 a");
    }

    /// A stream rewrites to commands that rebuild it whole: entries, last ID and counters,
    /// groups with their PEL (owners, times, counts) and idle consumers; an empty stream too.
    #[test]
    fn streams_rewrite_to_the_same_stream_groups_and_pel() {
        use crate::cmd::testing::{run, state};
        let live = state();
        for line in [
            "XADD s 1-1 a 1",
            "XADD s 1-2 b 2",
            "XADD s 1-3 c 3",
            "XDEL s 1-2",
            "XGROUP CREATE s g 0",
            "XREADGROUP GROUP g alice COUNT 1 STREAMS s >",
            "XCLAIM s g bob 0 1-1 RETRYCOUNT 4 JUSTID",
            "XGROUP CREATECONSUMER s g carol",
            "XGROUP CREATE s h $ ENTRIESREAD 3",
            "XADD e MAXLEN 0 5-5 f v",
            "XSETID e 7-7 ENTRIESADDED 9 MAXDELETEDID 6-0",
            "XGROUP CREATE e g 0",
        ] {
            let reply = run(&live, line);
            assert!(!reply.starts_with('-'), "{line}: {reply}");
        }
        let replayed = state();
        for key in ["s", "e"] {
            let entry = live
                .keyspace
                .lock_key(key.as_bytes())
                .get(key.as_bytes())
                .map(|e| e.to_owned())
                .expect("the key exists");
            for record in records(key, &entry) {
                crate::cmd::replay(&replayed, record).expect("the record replays");
            }
            let got = replayed
                .keyspace
                .lock_key(key.as_bytes())
                .get(key.as_bytes())
                .map(|e| e.to_owned());
            assert_eq!(got, Some(entry), "{key}");
        }
    }
}
