//! DUMP and RESTORE through the proxy of a whole cluster (in-process): each command routes by its key's
//! slot, so a value dumped on one shard restores on another, and payloads cross between the
//! cluster and a real redis-server 7.0 both ways with the same contents read back.

use std::collections::BTreeSet;
use std::time::Duration;

use tessera_e2e::inprocess::InProcessCluster;
use tessera_e2e::resp::RespClient;
use tessera_proto::resp::frame::{self, FrameLimits};
use tessera_proto::resp::{Frame, Protocol};
use tessera_proto::slot::key_hash_slot;
use tessera_testkit::RedisServer;

const NODE_TIMEOUT: Duration = Duration::from_millis(2000);

fn parse(reply: &[u8]) -> Frame {
    match frame::parse(reply, &FrameLimits::default()) {
        Ok(Some((frame, _))) => frame,
        other => panic!(
            "not one reply: {other:?} from {:?}",
            String::from_utf8_lossy(reply)
        ),
    }
}

fn payload_of(client: &mut RespClient, key: &str) -> Vec<u8> {
    match parse(&client.call(&[b"DUMP", key.as_bytes()])) {
        Frame::Bulk(payload) => payload.to_vec(),
        other => panic!("DUMP {key}: {other:?}"),
    }
}

/// The key's type and contents, unordered types sorted, as reply bytes.
fn read_back(client: &mut RespClient, key: &str) -> Vec<Vec<u8>> {
    let key = key.as_bytes();
    let kind = client.call(&[b"TYPE", key]);
    let command: &[&[u8]] = match &kind[..] {
        b"+string\r\n" => &[b"GET"],
        b"+hash\r\n" => &[b"HGETALL"],
        b"+list\r\n" => &[b"LRANGE"],
        b"+set\r\n" => &[b"SMEMBERS"],
        b"+zset\r\n" => &[b"ZRANGE"],
        _ => return vec![kind],
    };
    let mut args: Vec<&[u8]> = vec![command[0], key];
    if matches!(&kind[..], b"+list\r\n" | b"+zset\r\n") {
        args.extend([&b"0"[..], b"-1"]);
    }
    if kind == b"+zset\r\n" {
        args.push(b"WITHSCORES");
    }
    let reply = parse(&client.call(&args));
    let mut items: Vec<Vec<u8>> = match reply {
        Frame::Array(items) => items
            .iter()
            .map(|f| f.to_bytes(Protocol::Resp2).to_vec())
            .collect(),
        other => vec![other.to_bytes(Protocol::Resp2).to_vec()],
    };
    if kind == b"+hash\r\n" {
        items = items.chunks(2).map(|c| c.concat()).collect();
        items.sort();
    } else if kind == b"+set\r\n" {
        items.sort();
    }
    let mut out = vec![kind];
    out.extend(items);
    out
}

fn ok(client: &mut RespClient, args: &[&[u8]]) {
    let reply = client.call(args);
    assert!(
        reply.starts_with(b"+OK") || reply.starts_with(b":"),
        "{:?}: {}",
        String::from_utf8_lossy(args[0]),
        String::from_utf8_lossy(&reply)
    );
}

/// Fills `key` with a value of `kind` (large enough for Redis's non-compact encodings).
fn create(client: &mut RespClient, kind: &str, key: &str) {
    let k = key.as_bytes();
    let numbered = |prefix: &str, n: usize| -> Vec<Vec<u8>> {
        (0..n)
            .flat_map(|i| {
                [
                    format!("{prefix}{i}").into_bytes(),
                    i.to_string().into_bytes(),
                ]
            })
            .collect()
    };
    let items: Vec<Vec<u8>> = match kind {
        "string" => vec!["x".repeat(1000).into_bytes()],
        "list" => numbered("item", 300),
        "hash" => numbered("field", 600),
        "set" => (0..700)
            .map(|i| format!("{}", i * 3).into_bytes())
            .collect(),
        "zset" => numbered("", 200)
            .chunks(2)
            .flat_map(|c| [c[1].clone(), c[0].clone()])
            .collect(),
        _ => unreachable!("no such kind {kind}"),
    };
    let command: &[u8] = match kind {
        "string" => b"SET",
        "list" => b"RPUSH",
        "hash" => b"HSET",
        "set" => b"SADD",
        _ => b"ZADD",
    };
    let mut args: Vec<&[u8]> = vec![command, k];
    args.extend(items.iter().map(Vec::as_slice));
    ok(client, &args);
}

#[test]
fn dump_and_restore_through_the_proxy() {
    let cluster = InProcessCluster::up(NODE_TIMEOUT);
    let mut proxy = RespClient::connect(cluster.proxy_port).expect("connect to the proxy");
    let oracle = RedisServer::start().expect("start redis-server");
    let mut redis = RespClient::connect(oracle.port).expect("connect to redis-server");

    let kinds = ["string", "list", "hash", "set", "zset"];
    let mut shards_crossed = BTreeSet::new();
    for kind in kinds {
        let src = format!("src:{kind}");
        let dst = format!("moved:{kind}");
        create(&mut proxy, kind, &src);
        let want = read_back(&mut proxy, &src);

        // Shard to shard, through the proxy.
        let payload = payload_of(&mut proxy, &src);
        shards_crossed.insert((
            key_hash_slot(src.as_bytes()) / 5461,
            key_hash_slot(dst.as_bytes()) / 5461,
        ));
        ok(&mut proxy, &[b"RESTORE", dst.as_bytes(), b"0", &payload]);
        assert_eq!(read_back(&mut proxy, &dst), want, "{kind}: shard to shard");
        assert_eq!(
            proxy.call(&[b"RESTORE", dst.as_bytes(), b"0", &payload]),
            b"-BUSYKEY Target key name already exists.\r\n"
        );

        // Cluster to redis-server, and back under a third name with a TTL.
        ok(&mut redis, &[b"RESTORE", src.as_bytes(), b"0", &payload]);
        assert_eq!(
            read_back(&mut redis, &src),
            want,
            "{kind}: Tessera to Redis"
        );
        let theirs = payload_of(&mut redis, &src);
        let back = format!("back:{kind}");
        ok(
            &mut proxy,
            &[b"RESTORE", back.as_bytes(), b"60000", &theirs],
        );
        assert_eq!(
            read_back(&mut proxy, &back),
            want,
            "{kind}: Redis to Tessera"
        );
        match parse(&proxy.call(&[b"PTTL", back.as_bytes()])) {
            Frame::Integer(ms) => assert!((50_000..=60_000).contains(&ms), "PTTL {ms}"),
            other => panic!("PTTL: {other:?}"),
        }
    }
    assert!(
        shards_crossed.iter().any(|(a, b)| a != b),
        "no value moved between shards: {shards_crossed:?}"
    );
    assert_eq!(proxy.call(&[b"DUMP", b"no-such-key"]), b"$-1\r\n");
    assert_eq!(
        proxy.call(&[b"RESTORE", b"k", b"0", b"not a payload"]),
        b"-ERR DUMP payload version or checksum are wrong\r\n"
    );
}
