//! MEMORY: USAGE (our per-key estimate, see `keyspace::size`), STATS (a short form of Redis's),
//! HELP, DOCTOR, MALLOC-STATS and PURGE, with Redis's replies and error texts.

use bytes::Bytes;
use tessera_proto::resp::Frame;

use super::dispatch::DispatchEntry;
use super::parse::{self, err, ERR_NOT_INTEGER, ERR_SYNTAX};
use super::server::{memory_figures, MemoryFigures};
use super::{unknown_subcommand, Ctx};
use crate::keyspace::size::{entry_usage, DEFAULT_SAMPLES};

const HELP: &[&str] = &[
    "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return memory problems reports.",
    "MALLOC-STATS",
    "    Return internal statistics report from the memory allocator.",
    "PURGE",
    "    Attempt to purge dirty pages for reclamation by the allocator.",
    "STATS",
    "    Return information about the memory usage of the server.",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
    "HELP",
    "    Prints this help.",
];

/// The table has already checked each subcommand's arity (`memory|usage` -3, the others 2).
pub fn memory(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let sub = &args[1];
    let lower = sub.to_ascii_lowercase();
    match &lower[..] {
        b"usage" => usage(ctx, args),
        b"stats" => stats(ctx),
        b"help" => Frame::Array(
            HELP.iter()
                .map(|line| Frame::Simple(Bytes::from_static(line.as_bytes())))
                .collect(),
        ),
        b"doctor" => Frame::Verbatim(Bytes::from_static(
            b"Hi Sam, I can't find any memory issue in your instance. I can only account for what occurs on this base.",
        )),
        b"malloc-stats" => Frame::Verbatim(Bytes::from_static(
            b"Stats not supported for the current allocator",
        )),
        b"purge" => Frame::ok(),
        _ => unknown_subcommand("memory", sub),
    }
}

/// MEMORY USAGE key [SAMPLES count]: options are checked before the key is looked up, as Redis
/// does; a negative count is a syntax error and 0 means every element.
fn usage(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut samples = DEFAULT_SAMPLES;
    let mut rest = parse::Args::new(args, 3);
    while let Some(option) = rest.next_arg() {
        if !parse::eq(option, "samples") || rest.is_done() {
            return err(ERR_SYNTAX);
        }
        match rest.int() {
            Ok(n) if n < 0 => return err(ERR_SYNTAX),
            Ok(n) => samples = usize::try_from(n).unwrap_or(usize::MAX),
            Err(_) => return err(ERR_NOT_INTEGER),
        }
    }
    let key = &args[2];
    let mut txn = ctx.lock(key);
    match txn.live(key) {
        Some(entry) => Frame::Integer(entry_usage(key, entry, samples) as i64),
        None => Frame::Null,
    }
}

/// MEMORY STATS: the fields tools read, from the same figures INFO memory reports.
fn stats(ctx: &Ctx<'_>) -> Frame {
    let MemoryFigures { used, peak, .. } = memory_figures();
    let keys = ctx.state.keyspace.len() as u64;
    let int = |n: u64| Frame::Integer(i64::try_from(n).unwrap_or(i64::MAX));
    let fields: Vec<(&'static str, Frame)> = vec![
        ("peak.allocated", int(peak)),
        ("total.allocated", int(used)),
        ("startup.allocated", int(0)),
        ("replication.backlog", int(0)),
        ("clients.slaves", int(0)),
        ("clients.normal", int(0)),
        ("aof.buffer", int(0)),
        ("keys.count", int(keys)),
        (
            "keys.bytes-per-key",
            int(used.checked_div(keys).unwrap_or(0)),
        ),
        ("dataset.bytes", int(used)),
        ("fragmentation", Frame::Double(Bytes::from_static(b"1"))),
    ];
    Frame::Map(
        fields
            .into_iter()
            .map(|(name, value)| (Frame::Bulk(Bytes::from_static(name.as_bytes())), value))
            .collect(),
    )
}

/// The commands of this family, for the node's dispatch table (`cmd::dispatch`).
pub(super) const COMMANDS: &[DispatchEntry] = &[("memory", |ctx, _, args| memory(ctx, args))];

#[cfg(test)]
mod tests {
    use crate::cmd::testing::{run, state};

    fn int(reply: &str) -> i64 {
        reply
            .trim_start_matches(':')
            .trim_end()
            .parse()
            .unwrap_or_else(|_| panic!("not an integer: {reply}"))
    }

    #[test]
    fn usage_errors_and_absent_keys() {
        let s = state();
        run(&s, "SET s hello");
        assert_eq!(run(&s, "MEMORY USAGE nokey"), "$-1\r\n");
        assert_eq!(run(&s, "MEMORY USAGE s samples"), "-ERR syntax error\r\n");
        assert_eq!(
            run(&s, "MEMORY USAGE s samples x"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            run(&s, "MEMORY USAGE s samples -1"),
            "-ERR syntax error\r\n"
        );
        assert_eq!(run(&s, "MEMORY USAGE s foo"), "-ERR syntax error\r\n");
        assert_eq!(
            run(&s, "MEMORY USAGE s samples 5 extra"),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            run(&s, "MEMORY nope"),
            "-ERR unknown subcommand 'nope'. Try MEMORY HELP.\r\n"
        );
        assert_eq!(
            run(&s, "MEMORY USAGE"),
            "-ERR wrong number of arguments for 'memory|usage' command\r\n"
        );
        assert!(run(&s, "MEMORY HELP").starts_with("*14\r\n+MEMORY <subcommand>"));
        assert!(run(&s, "MEMORY STATS").contains("keys.count"));
    }

    #[test]
    fn usage_grows_with_values_of_every_type() {
        let s = state();
        run(&s, "SET s hello");
        run(&s, "RPUSH l a b c");
        run(&s, "HSET h f v");
        run(&s, "SADD t a");
        run(&s, "ZADD z 1 a");
        let small: Vec<i64> = ["s", "l", "h", "t", "z"]
            .iter()
            .map(|k| int(&run(&s, &format!("MEMORY USAGE {k}"))))
            .collect();
        assert!(small.iter().all(|n| *n > 40 && *n < 600), "{small:?}");
        let long = "x".repeat(5000);
        run(&s, &format!("SET s {long}"));
        run(&s, &format!("RPUSH l {long}"));
        run(&s, &format!("HSET h g {long}"));
        run(&s, &format!("SADD t {long}"));
        run(&s, &format!("ZADD z 2 {long}"));
        for (i, k) in ["s", "l", "h", "t", "z"].iter().enumerate() {
            let n = int(&run(&s, &format!("MEMORY USAGE {k} SAMPLES 0")));
            assert!(n > small[i] + 4900, "{k}: {n}");
        }
    }
}
