//! DUMP and RESTORE against a real redis-server 7.0, both ways: every type and encoding Redis
//! dumps is restored in Tessera and read back identically; every value Tessera dumps is restored
//! by Redis (with sanitize-dump-payload yes, so Redis checks our listpacks in depth) and read back
//! identically; and the errors, TTLs and options answer byte for byte as Redis answers them.

mod data_support;

use data_support::LoggedNode;
mod rdb_support;

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure};
use bytes::Bytes;
use data_support::{RawClient, TestNode};
use rdb_support::{legacy_payloads, payload, payload_with_version, rdb_string};
use tessera_proto::resp::frame::{self, FrameLimits};
use tessera_proto::resp::Frame;
use tessera_testkit::RedisServer;

/// A redis-server of this test's own, with DEBUG enabled (for QUICKLIST-PACKED-THRESHOLD, which
/// makes Redis write plain quicklist nodes) and deep payload sanitization on. Killed on drop.
fn start_redis() -> anyhow::Result<RedisServer> {
    RedisServer::start_with(&[
        "--enable-debug-command",
        "yes",
        "--sanitize-dump-payload",
        "yes",
    ])
}

/// The reply as a frame.
fn parse(reply: &[u8]) -> anyhow::Result<Frame> {
    match frame::parse(reply, &FrameLimits::default())? {
        Some((frame, _)) => Ok(frame),
        None => bail!("incomplete reply {:?}", String::from_utf8_lossy(reply)),
    }
}

fn bulk(reply: &[u8]) -> anyhow::Result<Bytes> {
    match parse(reply)? {
        Frame::Bulk(b) => Ok(b),
        other => bail!("expected a bulk reply, got {other:?}"),
    }
}

fn elements(reply: &[u8]) -> anyhow::Result<Vec<Frame>> {
    match parse(reply)? {
        Frame::Array(items) => Ok(items),
        other => bail!("expected an array reply, got {other:?}"),
    }
}

/// Everything a client can read of `key`, in a form where unordered types are sorted: its type,
/// then GET / HGETALL (pairs sorted) / LRANGE / SMEMBERS (sorted) / ZRANGE WITHSCORES.
async fn read_back(client: &mut RawClient, key: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    let kind = client.cmd(&[b"TYPE", key]).await?;
    let mut out = vec![kind.to_vec()];
    let items = |reply: &[u8]| -> anyhow::Result<Vec<Vec<u8>>> {
        Ok(elements(reply)?
            .into_iter()
            .map(|f| f.to_bytes(tessera_proto::resp::Protocol::Resp2).to_vec())
            .collect())
    };
    match &kind[..] {
        b"+string\r\n" => out.push(client.cmd(&[b"GET", key]).await?.to_vec()),
        b"+hash\r\n" => {
            let flat = items(&client.cmd(&[b"HGETALL", key]).await?)?;
            let mut pairs: Vec<Vec<u8>> = flat.chunks(2).map(|c| c.concat()).collect();
            pairs.sort();
            out.extend(pairs);
        }
        b"+list\r\n" => out.extend(items(&client.cmd(&[b"LRANGE", key, b"0", b"-1"]).await?)?),
        b"+set\r\n" => {
            let mut members = items(&client.cmd(&[b"SMEMBERS", key]).await?)?;
            members.sort();
            out.extend(members);
        }
        b"+zset\r\n" => out.extend(items(
            &client
                .cmd(&[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"])
                .await?,
        )?),
        _ => {}
    }
    Ok(out)
}

/// Runs `args` and fails unless the reply is `+OK` or an integer.
async fn must(client: &mut RawClient, args: &[&[u8]]) -> anyhow::Result<()> {
    let reply = client.cmd(args).await?;
    ensure!(
        reply.starts_with(b"+OK") || reply.starts_with(b":"),
        "{:?} -> {:?}",
        args.iter()
            .map(|a| String::from_utf8_lossy(a))
            .collect::<Vec<_>>(),
        String::from_utf8_lossy(&reply)
    );
    Ok(())
}

/// A command with a key and many generated arguments.
async fn fill(
    client: &mut RawClient,
    command: &str,
    key: &str,
    items: impl IntoIterator<Item = Vec<u8>>,
) -> anyhow::Result<()> {
    let items: Vec<Vec<u8>> = items.into_iter().collect();
    let mut args: Vec<&[u8]> = vec![command.as_bytes(), key.as_bytes()];
    args.extend(items.iter().map(Vec::as_slice));
    must(client, &args).await
}

fn texts(items: impl IntoIterator<Item = String>) -> Vec<Vec<u8>> {
    items.into_iter().map(String::into_bytes).collect()
}

/// One key per encoding Redis 7.0 dumps, with the encoding OBJECT ENCODING reports and the RDB
/// type byte (and for strings the encoding byte after it) its DUMP starts with.
struct Case {
    key: &'static str,
    encoding: &'static str,
    prefix: &'static [u8],
}

const CASES: &[Case] = &[
    Case {
        key: "str:short",
        encoding: "embstr",
        prefix: &[0, 5],
    },
    Case {
        key: "str:empty",
        encoding: "embstr",
        prefix: &[0, 0],
    },
    Case {
        key: "str:int8",
        encoding: "int",
        prefix: &[0, 0xc0],
    },
    Case {
        key: "str:int16",
        encoding: "int",
        prefix: &[0, 0xc1],
    },
    Case {
        key: "str:int32",
        encoding: "int",
        prefix: &[0, 0xc2],
    },
    Case {
        key: "str:int64",
        encoding: "int",
        prefix: &[0, 12],
    },
    Case {
        key: "str:lzf",
        encoding: "raw",
        prefix: &[0, 0xc3],
    },
    Case {
        key: "str:binary",
        encoding: "raw",
        prefix: &[0, 0x41],
    },
    Case {
        key: "hash:listpack",
        encoding: "listpack",
        prefix: &[16],
    },
    Case {
        key: "hash:big",
        encoding: "hashtable",
        prefix: &[4],
    },
    Case {
        key: "hash:longvalue",
        encoding: "hashtable",
        prefix: &[4],
    },
    Case {
        key: "list:small",
        encoding: "quicklist",
        prefix: &[18],
    },
    Case {
        key: "list:big",
        encoding: "quicklist",
        prefix: &[18],
    },
    Case {
        key: "list:compressed",
        encoding: "quicklist",
        prefix: &[18],
    },
    Case {
        key: "list:hugeitem",
        encoding: "quicklist",
        prefix: &[18],
    },
    Case {
        key: "list:plain",
        encoding: "quicklist",
        prefix: &[18],
    },
    Case {
        key: "set:intset",
        encoding: "intset",
        prefix: &[11],
    },
    Case {
        key: "set:intset64",
        encoding: "intset",
        prefix: &[11],
    },
    Case {
        key: "set:strings",
        encoding: "hashtable",
        prefix: &[2],
    },
    Case {
        key: "set:bigints",
        encoding: "hashtable",
        prefix: &[2],
    },
    Case {
        key: "zset:listpack",
        encoding: "listpack",
        prefix: &[17],
    },
    Case {
        key: "zset:big",
        encoding: "skiplist",
        prefix: &[5],
    },
    Case {
        key: "zset:longmember",
        encoding: "skiplist",
        prefix: &[5],
    },
];

/// Creates every key of `CASES` in `redis`.
async fn populate(redis: &mut RawClient) -> anyhow::Result<()> {
    must(redis, &[b"SET", b"str:short", b"hello"]).await?;
    must(redis, &[b"SET", b"str:empty", b""]).await?;
    must(redis, &[b"SET", b"str:int8", b"-100"]).await?;
    must(redis, &[b"SET", b"str:int16", b"12345"]).await?;
    must(redis, &[b"SET", b"str:int32", b"-2000000000"]).await?;
    must(redis, &[b"SET", b"str:int64", b"123456789012"]).await?;
    let compressible = "abcdefgh".repeat(500);
    must(redis, &[b"SET", b"str:lzf", compressible.as_bytes()]).await?;
    let binary: Vec<u8> = (0..=255u8).collect();
    must(redis, &[b"SET", b"str:binary", &binary]).await?;

    fill(
        redis,
        "HSET",
        "hash:listpack",
        texts((0..20).flat_map(|i| [format!("field{i}"), format!("{}", i * 1000 - 7)])),
    )
    .await?;
    fill(
        redis,
        "HSET",
        "hash:big",
        texts((0..600).flat_map(|i| [format!("f{i}"), format!("value-{i}")])),
    )
    .await?;
    fill(
        redis,
        "HSET",
        "hash:longvalue",
        texts(["a".into(), "x".repeat(100), "b".into(), "2".into()]),
    )
    .await?;

    fill(
        redis,
        "RPUSH",
        "list:small",
        texts(["a", "b", "1", "-5", ""].map(String::from)),
    )
    .await?;
    fill(
        redis,
        "RPUSH",
        "list:big",
        texts((0..5000i64).map(|i| match i % 3 {
            0 => (i * 7919 - 1_000_000_000_000).to_string(),
            1 => format!("element-{i}"),
            _ => "z".repeat((i % 200) as usize),
        })),
    )
    .await?;
    must(redis, &[b"CONFIG", b"SET", b"list-compress-depth", b"1"]).await?;
    fill(
        redis,
        "RPUSH",
        "list:compressed",
        texts((0..3000).map(|i| format!("compress me please {i}"))),
    )
    .await?;
    must(redis, &[b"CONFIG", b"SET", b"list-compress-depth", b"0"]).await?;
    fill(
        redis,
        "RPUSH",
        "list:hugeitem",
        texts(["a".into(), "h".repeat(70_000), "b".into()]),
    )
    .await?;
    must(redis, &[b"DEBUG", b"QUICKLIST-PACKED-THRESHOLD", b"100"]).await?;
    fill(
        redis,
        "RPUSH",
        "list:plain",
        texts([
            "small".into(),
            "p".repeat(500),
            "tiny".into(),
            "q".repeat(300),
        ]),
    )
    .await?;

    fill(
        redis,
        "SADD",
        "set:intset",
        texts((-50..50).map(|i| i.to_string())),
    )
    .await?;
    fill(
        redis,
        "SADD",
        "set:intset64",
        texts(["1".into(), i64::MAX.to_string(), i64::MIN.to_string()]),
    )
    .await?;
    fill(
        redis,
        "SADD",
        "set:strings",
        texts((0..100).map(|i| format!("m{i}"))),
    )
    .await?;
    fill(
        redis,
        "SADD",
        "set:bigints",
        texts((0..1000).map(|i| i.to_string())),
    )
    .await?;

    fill(
        redis,
        "ZADD",
        "zset:listpack",
        texts(
            [
                ("1.5", "a"),
                ("-2", "b"),
                ("inf", "c"),
                ("-inf", "d"),
                ("3", "e"),
                ("0.1", "f"),
                ("1e200", "g"),
                ("12345678901", "h"),
            ]
            .into_iter()
            .flat_map(|(s, m)| [s.to_string(), m.to_string()]),
        ),
    )
    .await?;
    fill(
        redis,
        "ZADD",
        "zset:big",
        texts((0..300).flat_map(|i| [format!("{}", f64::from(i) / 7.0 - 3.0), format!("m{i}")])),
    )
    .await?;
    fill(
        redis,
        "ZADD",
        "zset:longmember",
        texts(["1".into(), "m".repeat(100), "2".into(), "short".into()]),
    )
    .await?;
    Ok(())
}

/// The nodes of a quicklist-2 payload: (container, LZF-compressed) for each, so the test knows
/// Redis really wrote plain and compressed nodes.
fn quicklist_nodes(payload: &[u8]) -> Vec<(u8, bool)> {
    fn len(p: &[u8], at: &mut usize) -> usize {
        let first = p[*at];
        *at += 1;
        match first >> 6 {
            0 => usize::from(first & 0x3f),
            1 => {
                *at += 1;
                (usize::from(first & 0x3f) << 8) | usize::from(p[*at - 1])
            }
            _ => {
                assert_eq!(first, 0x80, "length wider than this test reads");
                *at += 4;
                u32::from_be_bytes([p[*at - 4], p[*at - 3], p[*at - 2], p[*at - 1]]) as usize
            }
        }
    }
    let mut at = 1;
    let count = len(payload, &mut at);
    let mut nodes = Vec::new();
    for _ in 0..count {
        let container = len(payload, &mut at) as u8;
        let compressed = payload[at] == 0xc3;
        if compressed {
            at += 1;
            let compressed_len = len(payload, &mut at);
            let _plain_len = len(payload, &mut at);
            at += compressed_len;
        } else {
            let n = len(payload, &mut at);
            at += n;
        }
        nodes.push((container, compressed));
    }
    nodes
}

/// Redis's DUMP of every encoding restores in Tessera to the same contents, and Tessera's DUMP
/// of those contents restores in Redis (deep-sanitized) to the same contents again.
#[tokio::test]
async fn payloads_cross_both_ways() -> anyhow::Result<()> {
    let server = start_redis()?;
    let mut redis = RawClient::connect(server.addr()).await?;
    let node = TestNode::start().await?;
    let mut ours = node.client().await?;
    populate(&mut redis).await?;

    for case in CASES {
        let key = case.key.as_bytes();
        let encoding = redis.cmd(&[b"OBJECT", b"ENCODING", key]).await?;
        assert_eq!(
            bulk(&encoding)?,
            case.encoding,
            "{}: not the encoding this case covers",
            case.key
        );
        let payload = bulk(&redis.cmd(&[b"DUMP", key]).await?)?;
        assert!(
            payload.starts_with(case.prefix),
            "{}: payload starts {:?}",
            case.key,
            &payload[..payload.len().min(4)]
        );
        if case.key == "list:plain" {
            let nodes = quicklist_nodes(&payload);
            assert!(nodes.iter().any(|n| n.0 == 1), "no plain node: {nodes:?}");
        }
        if case.key == "list:compressed" {
            assert!(
                quicklist_nodes(&payload).contains(&(2, true)),
                "no compressed node"
            );
        }
        let reply = ours.cmd(&[b"RESTORE", key, b"0", &payload]).await?;
        assert_eq!(&reply[..], b"+OK\r\n", "{}", case.key);
        let want = read_back(&mut redis, key).await?;
        assert_eq!(
            read_back(&mut ours, key).await?,
            want,
            "{} Redis -> Tessera",
            case.key
        );

        let back = bulk(&ours.cmd(&[b"DUMP", key]).await?)?;
        if case.key == "str:lzf" {
            assert!(
                back.starts_with(&[0, 0xc3]) && back.len() < 400,
                "Tessera did not compress a 4000-byte repetitive string: {} bytes",
                back.len()
            );
        }
        let copy = format!("{}:back", case.key);
        let reply = redis
            .cmd(&[b"RESTORE", copy.as_bytes(), b"0", &back])
            .await?;
        assert_eq!(
            &reply[..],
            b"+OK\r\n",
            "{}: Redis refused Tessera's payload",
            case.key
        );
        let mut again = read_back(&mut redis, copy.as_bytes()).await?;
        again[0] = want[0].clone();
        assert_eq!(again, want, "{} Tessera -> Redis", case.key);
    }
    node.stop().await?;
    Ok(())
}

#[tokio::test]
async fn older_encodings_restore_as_in_redis() -> anyhow::Result<()> {
    let server = start_redis()?;
    let mut redis = RawClient::connect(server.addr()).await?;
    let node = TestNode::start().await?;
    let mut ours = node.client().await?;
    for (key, body) in legacy_payloads() {
        let payload = payload(&body);
        let want = redis
            .cmd(&[b"RESTORE", key.as_bytes(), b"0", &payload])
            .await?;
        assert_eq!(
            &want[..],
            b"+OK\r\n",
            "{key}: Redis refused the hand-made payload"
        );
        let got = ours
            .cmd(&[b"RESTORE", key.as_bytes(), b"0", &payload])
            .await?;
        assert_eq!(got, want, "{key}");
        assert_eq!(
            read_back(&mut ours, key.as_bytes()).await?,
            read_back(&mut redis, key.as_bytes()).await?,
            "{key}"
        );
    }
    node.stop().await?;
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The same RESTORE commands, including every error, answer the same bytes; TTLs agree.
#[tokio::test]
async fn replies_and_ttls_match_redis() -> anyhow::Result<()> {
    let server = start_redis()?;
    let mut redis = RawClient::connect(server.addr()).await?;
    let node = TestNode::start().await?;
    let mut ours = node.client().await?;

    must(&mut redis, &[b"SET", b"src", b"hello world"]).await?;
    let p = bulk(&redis.cmd(&[b"DUMP", b"src"]).await?)?.to_vec();
    let mut bad_crc = p.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0x40;
    let mut bad_body = p.clone();
    bad_body[3] ^= 0x01;
    let v11 = payload_with_version(&p[..p.len() - 10], 11);
    let v9 = payload_with_version(&p[..p.len() - 10], 9);
    let trailing = payload(&[&p[..p.len() - 10], b"junk"].concat());
    let empty_set = payload(&[2, 0]);
    let empty_hash_listpack = payload(&[16, 7, 7, 0, 0, 0, 0, 0, 0xff]);
    let unknown_type = payload(&[200, 1, b'a']);
    let stream = payload(&[15, 0]);
    let mut dup_set = vec![2u8, 2];
    rdb_string(b"x", &mut dup_set);
    rdb_string(b"x", &mut dup_set);
    let dup_set = payload(&dup_set);
    let mut dup_hash = vec![4u8, 2];
    for s in [b"f", b"1", b"f", b"2"] {
        rdb_string(s, &mut dup_hash);
    }
    let dup_hash = payload(&dup_hash);
    let mut nan_zset = vec![5u8, 1];
    rdb_string(b"m", &mut nan_zset);
    nan_zset.extend_from_slice(&f64::NAN.to_le_bytes());
    let nan_zset = payload(&nan_zset);
    let future = (now_ms() + 100_000_000).to_string();

    let p = &p[..];
    let script: Vec<Vec<&[u8]>> = vec![
        vec![b"DUMP", b"nokey"],
        vec![b"DUMP"],
        vec![b"RESTORE", b"t", b"0"],
        vec![b"RESTORE", b"t", b"0", p],
        vec![b"RESTORE", b"t", b"0", p],
        vec![b"RESTORE", b"t", b"-1", p],
        vec![b"RESTORE", b"t", b"0", p, b"REPLACE"],
        vec![b"GET", b"t"],
        vec![b"RESTORE", b"u", b"-1", p],
        vec![b"RESTORE", b"u", b"abc", p],
        vec![b"RESTORE", b"u", b"1.5", p],
        vec![b"RESTORE", b"u", b"0", &bad_crc],
        vec![b"RESTORE", b"u", b"0", &bad_body],
        vec![b"RESTORE", b"u", b"0", &v11],
        vec![b"RESTORE", b"u", b"0", &p[..9]],
        vec![b"RESTORE", b"u", b"0", b""],
        vec![b"RESTORE", b"u", b"0", &p[..p.len() - 1]],
        vec![b"RESTORE", b"u", b"0", &p[1..]],
        vec![b"RESTORE", b"u", b"0", &v9],
        vec![b"GET", b"u"],
        vec![b"RESTORE", b"u2", b"0", &trailing],
        vec![b"GET", b"u2"],
        vec![b"RESTORE", b"e", b"0", &empty_set],
        vec![b"RESTORE", b"e", b"0", &empty_hash_listpack],
        vec![b"RESTORE", b"e", b"0", &unknown_type],
        vec![b"RESTORE", b"e", b"0", &stream],
        vec![b"RESTORE", b"e", b"0", &dup_set],
        vec![b"RESTORE", b"e", b"0", &dup_hash],
        vec![b"RESTORE", b"e", b"0", &nan_zset],
        vec![b"EXISTS", b"e"],
        vec![b"RESTORE", b"o", b"0", p, b"IDLETIME", b"-1"],
        vec![b"RESTORE", b"o", b"0", p, b"IDLETIME", b"x"],
        vec![b"RESTORE", b"o", b"0", p, b"FREQ", b"256"],
        vec![b"RESTORE", b"o", b"0", p, b"FREQ", b"-1"],
        vec![b"RESTORE", b"o", b"0", p, b"IDLETIME", b"10", b"FREQ", b"1"],
        vec![b"RESTORE", b"o", b"0", p, b"FREQ", b"1", b"IDLETIME", b"10"],
        vec![b"RESTORE", b"o", b"0", p, b"IDLETIME"],
        vec![b"RESTORE", b"o", b"0", p, b"FOO"],
        vec![
            b"RESTORE",
            b"o",
            b"0",
            p,
            b"replace",
            b"absttl",
            b"idletime",
            b"5",
        ],
        vec![b"RESTORE", b"o", b"0", p, b"REPLACE", b"FREQ", b"100"],
        vec![b"RESTORE", b"t", b"-1", &bad_crc],
        vec![b"RESTORE", b"t", b"abc", p, b"FOO"],
        vec![b"RESTORE", b"x", future.as_bytes(), p, b"ABSTTL"],
        vec![b"PEXPIRETIME", b"x"],
        vec![b"RESTORE", b"x", b"1", p, b"REPLACE", b"ABSTTL"],
        vec![b"EXISTS", b"x"],
        vec![b"RESTORE", b"y", b"1", p, b"ABSTTL"],
        vec![b"EXISTS", b"y"],
        vec![b"RESTORE", b"y", b"0", p, b"ABSTTL"],
        vec![b"PTTL", b"y"],
        vec![b"RESTORE", b"y", b"9223372036854775807", p, b"REPLACE"],
        vec![b"EXISTS", b"y"],
        vec![b"RESTORE", b"y", b"9223372036854775807", p, b"ABSTTL"],
        vec![b"PEXPIRETIME", b"y"],
        vec![b"SET", b"w", b"v"],
        vec![b"RESTORE", b"w", b"0", &empty_set, b"REPLACE"],
        vec![b"GET", b"w"],
    ];
    let mut mismatches = Vec::new();
    for args in &script {
        let want = redis.cmd(args).await?;
        let got = ours.cmd(args).await?;
        if want != got {
            mismatches.push(format!(
                "{:?}\n   redis: {:?}\n    node: {:?}",
                args.iter()
                    .map(|a| String::from_utf8_lossy(&a[..a.len().min(24)]).into_owned())
                    .collect::<Vec<_>>(),
                String::from_utf8_lossy(&want),
                String::from_utf8_lossy(&got)
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    // IDLETIME sets the LRU stamp (no LFU policy): both read it back within the second the two
    // round trips may cross.
    for client in [&mut redis, &mut ours] {
        let restore: [&[u8]; 6] = [b"RESTORE", b"idle", b"0", p, b"IDLETIME", b"1000"];
        assert_eq!(&client.cmd(&restore).await?[..], b"+OK\r\n");
        let idle = parse(&client.cmd(&[b"OBJECT", b"IDLETIME", b"idle"]).await?)?;
        let Frame::Integer(idle) = idle else {
            bail!("OBJECT IDLETIME is an integer");
        };
        assert!((1000..=1001).contains(&idle), "OBJECT IDLETIME {idle}");
    }

    // A relative TTL: both near 5000 ms, within what the two round trips took.
    for client in [&mut redis, &mut ours] {
        assert_eq!(
            &client.cmd(&[b"RESTORE", b"r", b"5000", p]).await?[..],
            b"+OK\r\n"
        );
    }
    let theirs = parse(&redis.cmd(&[b"PTTL", b"r"]).await?)?;
    let mine = parse(&ours.cmd(&[b"PTTL", b"r"]).await?)?;
    let (Frame::Integer(theirs), Frame::Integer(mine)) = (theirs, mine) else {
        bail!("PTTL is an integer");
    };
    assert!((4000..=5000).contains(&theirs), "redis PTTL {theirs}");
    assert!(
        (theirs - mine).abs() < 1000,
        "PTTL redis {theirs} node {mine}"
    );
    node.stop().await?;
    Ok(())
}

/// RESTORE is logged so that replaying the append-only file rebuilds the same keys with the same
/// absolute expiries: a restart keeps what was restored, and what a past ABSTTL deleted.
#[tokio::test]
async fn restored_keys_survive_a_restart() -> anyhow::Result<()> {
    use tessera_shard_node::aof::{self, FsyncPolicy};
    use tessera_shard_node::cmd;

    let mut node = LoggedNode::start(FsyncPolicy::Always).await?;
    let (path, log, live, addr) = node.parts();
    let mut client = RawClient::connect(addr).await?;

    must(&mut client, &[b"RPUSH", b"src:list", b"a", b"1", b"b"]).await?;
    must(
        &mut client,
        &[b"ZADD", b"src:zset", b"1.5", b"m", b"-2", b"n"],
    )
    .await?;
    must(&mut client, &[b"SET", b"src:str", b"text"]).await?;
    let list = bulk(&client.cmd(&[b"DUMP", b"src:list"]).await?)?;
    let zset = bulk(&client.cmd(&[b"DUMP", b"src:zset"]).await?)?;
    let string = bulk(&client.cmd(&[b"DUMP", b"src:str"]).await?)?;
    let at = (now_ms() + 3_600_000).to_string();
    for args in [
        vec![&b"RESTORE"[..], b"plain", b"0", &list],
        vec![b"RESTORE", b"relative", b"100000", &zset],
        vec![b"RESTORE", b"absolute", at.as_bytes(), &string, b"ABSTTL"],
        vec![b"RESTORE", b"gone", b"0", &string],
        vec![b"RESTORE", b"gone", b"1", &list, b"REPLACE", b"ABSTTL"],
        vec![
            b"RESTORE",
            b"plain",
            b"0",
            &zset,
            b"REPLACE",
            b"IDLETIME",
            b"5",
        ],
        vec![b"RESTORE", b"never", b"1", &list, b"ABSTTL"],
    ] {
        must(&mut client, &args).await?;
    }
    assert_eq!(client.line("EXISTS gone").await?, ":0\r\n");
    node.stop().await?;
    log.flush_and_sync().await?;

    let replayed = data_support::node_state(None, addr.port())?;
    aof::load(&path, |args| cmd::replay(&replayed, args))?;
    let want = data_support::dump_keyspace(&live.keyspace);
    assert_eq!(data_support::dump_keyspace(&replayed.keyspace), want);
    for key in ["plain", "relative", "absolute"] {
        assert!(want.contains_key(key.as_bytes()), "{key} restored");
    }
    assert!(!want.contains_key(b"gone".as_slice()) && !want.contains_key(b"never".as_slice()));
    assert!(want[b"relative".as_slice()].expires_at_ms.is_some());
    assert_eq!(
        want[b"absolute".as_slice()].expires_at_ms,
        Some(at.parse::<u64>()?)
    );

    // Replay never expires by its own clock: an absolute time long past still creates the key
    // (the log holds the DEL when it went).
    let args = |parts: &[&[u8]]| parts.iter().map(|p| Bytes::copy_from_slice(p)).collect();
    cmd::replay(
        &replayed,
        args(&[b"RESTORE", b"old", b"1000", &string, b"REPLACE", b"ABSTTL"]),
    )
    .map_err(anyhow::Error::msg)?;
    assert_eq!(
        replayed
            .keyspace
            .lock_key(b"old")
            .get(b"old")
            .map(|e| e.expires_at_ms),
        Some(Some(1000))
    );
    Ok(())
}
