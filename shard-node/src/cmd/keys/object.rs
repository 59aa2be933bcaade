//! OBJECT ENCODING / FREQ / IDLETIME / REFCOUNT / HELP. The encoding reported is the one Redis 7.0
//! would use under its default thresholds: tools and tests that read it (`--bigkeys`, client
//! libraries' checks) see Redis's names. Hashes report their real form (packed `listpack` or
//! `hashtable`, converted at Redis's thresholds and never back, as Redis). The other types are
//! stored one way and report the encoding of their present contents; strings changed in place
//! (APPEND, SETRANGE, SETBIT), which are `raw` in Redis, and collections that shrank back below
//! the thresholds are history those cases do not follow.

use bytes::Bytes;
use tessera_proto::resp::Frame;

use crate::cmd::Ctx;
use crate::keyspace::{EntryRef, SetValue, SortedSet, StringEncoding, ValueRef};

/// Redis 7.0's defaults: set-max-intset-entries, zset-max-listpack-entries / -value (the hash
/// thresholds live with the hash's packed form, `keyspace::hash_value`); strings up to 44 bytes
/// are `embstr`.
pub const SET_MAX_INTSET_ENTRIES: usize = 512;
const ZSET_MAX_ENTRIES: usize = 128;
const ZSET_MAX_VALUE: usize = 64;
const EMBSTR_MAX: usize = 44;
/// Redis shares the integers 0..10000 between keys; their refcount reads as INT_MAX.
const SHARED_INTEGERS: i64 = 10_000;
const SHARED_REFCOUNT: i64 = i32::MAX as i64;

const HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

/// OBJECT subcommand [key]; the table has resolved the subcommand and checked its arity.
pub fn object(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let sub = args[1].to_ascii_lowercase();
    if sub == b"help" {
        return Frame::Array(
            HELP.iter()
                .map(|line| Frame::Simple(Bytes::from_static(line.as_bytes())))
                .collect(),
        );
    }
    let Some(key) = args.get(2) else {
        return crate::cmd::subcommand_arity("object", &args[1]);
    };
    // OBJECT does not touch the key (Redis's LOOKUP_NOTOUCH; see `cmd::touches_keys`).
    let mut txn = ctx.lock(key);
    let now = txn.now_ms();
    let Some(entry) = txn.read(key) else {
        return Frame::Null;
    };
    let policy = ctx.state.config.policy();
    match &sub[..] {
        b"encoding" => Frame::Bulk(Bytes::from_static(encoding(entry).as_bytes())),
        b"freq" if !policy.is_lfu() => Frame::error(
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please \
             note that when switching between policies at runtime LRU and LFU data will take some \
             time to adjust.",
        ),
        b"freq" => Frame::Integer(i64::from(
            entry
                .access
                .frequency(now, ctx.state.config.lfu_decay_time()),
        )),
        b"idletime" if policy.is_lfu() => Frame::error(
            "ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that \
             when switching between policies at runtime LRU and LFU data will take some time to \
             adjust.",
        ),
        b"idletime" => Frame::Integer((entry.access.idle_ms(now) / 1000) as i64),
        b"refcount" => Frame::Integer(match entry.value {
            ValueRef::String(s) if shared_integer(s) => SHARED_REFCOUNT,
            _ => 1,
        }),
        _ => crate::cmd::unknown_subcommand("object", &args[1]),
    }
}

/// The encoding Redis 7.0 reports for this entry: for a string, by the command that made it and
/// its contents; for a collection, by its contents and history.
pub fn encoding(entry: EntryRef<'_>) -> &'static str {
    let int_allowed = entry.string_encoding == StringEncoding::Auto;
    let raw = entry.string_encoding == StringEncoding::Raw;
    match entry.value {
        ValueRef::String(_) if raw => "raw",
        ValueRef::String(s) if int_allowed && string_to_i64(s).is_some() => "int",
        ValueRef::String(s) if s.len() <= EMBSTR_MAX => "embstr",
        ValueRef::String(_) => "raw",
        ValueRef::Hash(h) => h.encoding(),
        // Redis 7.0 stores every list as a quicklist (listpack lists came in 7.2).
        ValueRef::List(_) => "quicklist",
        ValueRef::Set(s) if is_intset(s) => "intset",
        ValueRef::Set(_) => "hashtable",
        ValueRef::ZSet(z) if is_small_zset(z) => "listpack",
        ValueRef::ZSet(_) => "skiplist",
        ValueRef::Stream(_) => "stream",
    }
}

/// Whether Redis 7.0 would hold this set as an intset: SSCAN then returns it whole.
pub fn is_intset(set: &SetValue) -> bool {
    !set.is_converted()
        && set.len() <= SET_MAX_INTSET_ENTRIES
        && set.iter().all(|m| string_to_i64(m).is_some())
}

/// Whether Redis 7.0 would hold this sorted set as a listpack: ZSCAN then returns it whole.
pub fn is_small_zset(zset: &SortedSet) -> bool {
    zset.len() <= ZSET_MAX_ENTRIES && zset.iter().all(|(m, _)| m.len() <= ZSET_MAX_VALUE)
}

/// Sorts intset members as Redis keeps them (ascending integers).
pub fn intset_order(members: &mut [Bytes]) {
    members.sort_by_key(|m| string_to_i64(m).unwrap_or(i64::MAX));
}

/// Whether Redis would store `s` as one of its shared integer objects.
fn shared_integer(s: &[u8]) -> bool {
    string_to_i64(s).is_some_and(|n| (0..SHARED_INTEGERS).contains(&n))
}

/// Redis's string2ll: an optional `-`, no `+`, no leading zeros or spaces, in i64's range, at most
/// 20 bytes (what tryObjectEncoding and intset accept as an integer).
pub(crate) fn string_to_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let digits = s.strip_prefix(b"-").unwrap_or(s);
    if digits.first().is_none_or(|d| !(b'1'..=b'9').contains(d))
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::string_to_i64;
    use crate::cmd::testing::{run, state};

    #[test]
    fn integers_as_string2ll() {
        assert_eq!(string_to_i64(b"0"), Some(0));
        assert_eq!(string_to_i64(b"-12"), Some(-12));
        assert_eq!(string_to_i64(b"-0"), None);
        assert_eq!(string_to_i64(b"01"), None);
        assert_eq!(string_to_i64(b"+1"), None);
        assert_eq!(string_to_i64(b" 1"), None);
        assert_eq!(string_to_i64(b"9223372036854775808"), None);
        assert_eq!(string_to_i64(b"-9223372036854775808"), Some(i64::MIN));
    }

    #[test]
    fn string_encodings_follow_the_command_that_made_them() {
        let s = state();
        run(&s, "SETRANGE {t}r 1 c");
        run(&s, "COPY {t}r {t}c");
        run(&s, "RENAME {t}r {t}n");
        for key in ["{t}c", "{t}n"] {
            assert_eq!(
                run(&s, &format!("OBJECT ENCODING {key}")),
                "$3\r\nraw\r\n",
                "{key}"
            );
        }
        run(&s, "EXPIREAT {t}c 4000000000");
        assert_eq!(run(&s, "OBJECT ENCODING {t}c"), "$3\r\nraw\r\n");
        run(&s, "INCRBYFLOAT f 3");
        assert_eq!(run(&s, "OBJECT ENCODING f"), "$6\r\nembstr\r\n");
        run(&s, "SET a 12");
        run(&s, "APPEND a 3");
        assert_eq!(run(&s, "OBJECT ENCODING a"), "$3\r\nraw\r\n");
        run(&s, "INCR a");
        assert_eq!(run(&s, "OBJECT ENCODING a"), "$3\r\nint\r\n");
    }

    #[test]
    fn encodings_follow_thresholds() {
        let s = state();
        run(&s, "SET i 12");
        assert_eq!(run(&s, "OBJECT ENCODING i"), "$3\r\nint\r\n");
        assert_eq!(run(&s, "OBJECT REFCOUNT i"), ":2147483647\r\n");
        run(&s, "SET e abc");
        assert_eq!(run(&s, "OBJECT ENCODING e"), "$6\r\nembstr\r\n");
        assert_eq!(run(&s, "OBJECT REFCOUNT e"), ":1\r\n");
        run(&s, "SADD s 1 2");
        assert_eq!(run(&s, "OBJECT ENCODING s"), "$6\r\nintset\r\n");
        run(&s, "SADD s x");
        assert_eq!(run(&s, "OBJECT ENCODING s"), "$9\r\nhashtable\r\n");
        assert_eq!(run(&s, "OBJECT ENCODING nope"), "$-1\r\n");
        assert!(run(&s, "OBJECT FREQ i").starts_with("-ERR An LFU"));
        assert_eq!(run(&s, "OBJECT IDLETIME i"), ":0\r\n");
    }

    #[test]
    fn freq_counts_lookups_under_an_lfu_policy_only() {
        let s = state();
        run(&s, "CONFIG SET maxmemory-policy allkeys-lfu");
        run(&s, "SET k v");
        assert_eq!(run(&s, "OBJECT FREQ k"), ":5\r\n");
        // The first hit above LFU_INIT_VAL always counts; TYPE, EXISTS and OBJECT do not touch.
        run(&s, "TYPE k");
        run(&s, "EXISTS k");
        assert_eq!(run(&s, "OBJECT FREQ k"), ":5\r\n");
        run(&s, "GET k");
        assert_eq!(run(&s, "OBJECT FREQ k"), ":6\r\n");
        // An overwrite keeps the counter, as Redis's dbOverwrite.
        run(&s, "SET k w");
        assert!(matches!(
            run(&s, "OBJECT FREQ k").as_str(),
            ":6\r\n" | ":7\r\n"
        ));
        assert!(
            run(&s, "OBJECT IDLETIME k").starts_with("-ERR An LFU maxmemory policy is selected")
        );
        assert_eq!(run(&s, "OBJECT FREQ nokey"), "$-1\r\n");
    }
}
