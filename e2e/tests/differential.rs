//! Differential tests: the same commands go to a real redis-server and to Tessera, through the
//! proxy and directly to the shard node owning the key, and the replies must match byte for byte.

use tessera_e2e::cluster::LocalCluster;
use tessera_e2e::redis::RedisServer;
use tessera_e2e::resp::RespClient;
use tessera_proto::slot::key_hash_slot;

/// How two replies are compared.
#[derive(Clone, Copy, PartialEq)]
enum Compare {
    /// Byte for byte.
    Exact,
    /// As a set of lines: multi-element replies whose order Redis does not define (KEYS).
    Unordered,
}

/// Commands of the local-cluster issue, with edge and error cases. Keys sharing a `{tag}` stay in
/// one slot so the node path can run multi-key commands too.
fn cases() -> Vec<(Compare, Vec<&'static str>)> {
    use Compare::*;
    let c = |args: &[&'static str]| (Exact, args.to_vec());
    vec![
        c(&["PING"]),
        c(&["PING", "hello"]),
        c(&["PING", "a", "b"]),
        c(&["ECHO", "hi there"]),
        c(&["ECHO"]),
        c(&["GET", "{s}missing"]),
        c(&["SET", "{s}k", "v"]),
        c(&["GET", "{s}k"]),
        c(&["SET", "{s}k", "v2", "NX"]),
        c(&["SET", "{s}k", "v3", "XX", "GET"]),
        c(&["SET", "{s}new", "v", "XX"]),
        c(&["SET", "{s}k", "v", "NX", "XX"]),
        c(&["SET", "{s}k", "v", "EX", "10", "PX", "100"]),
        c(&["SET", "{s}k", "v", "EX", "0"]),
        c(&["SET", "{s}k", "v", "EX", "-5"]),
        c(&["SET", "{s}k", "v", "EX", "abc"]),
        c(&["SET", "{s}k", "v", "KEEPTTL", "EX", "5"]),
        c(&["SET", "{s}k", "v", "BOGUS"]),
        c(&["SET", "{s}ttl", "v", "EX", "100"]),
        c(&["TTL", "{s}ttl"]),
        c(&["SET", "{s}ttl", "v2", "KEEPTTL"]),
        c(&["TTL", "{s}ttl"]),
        c(&["SET", "{s}ttl", "v3"]),
        c(&["TTL", "{s}ttl"]),
        c(&["SET", "{s}past", "v", "PXAT", "1000"]),
        c(&["GET", "{s}past"]),
        c(&["SET", "{s}k"]),
        c(&["SETNX", "{s}k", "x"]),
        c(&["SETNX", "{s}nx", "x"]),
        c(&["SETEX", "{s}ex", "100", "v"]),
        c(&["SETEX", "{s}ex", "0", "v"]),
        c(&["SETEX", "{s}ex", "-1", "v"]),
        c(&["PSETEX", "{s}px", "100000", "v"]),
        c(&["PSETEX", "{s}px", "0", "v"]),
        c(&["GETSET", "{s}k", "gs"]),
        c(&["GETSET", "{s}gsnew", "gs"]),
        c(&["GETDEL", "{s}k"]),
        c(&["GETDEL", "{s}k"]),
        c(&["MSET", "{m}a", "1", "{m}b", "2", "{m}c", "3"]),
        c(&["MSET", "{m}a", "1", "{m}b"]),
        c(&["MGET", "{m}a", "{m}b", "{m}nope", "{m}c"]),
        c(&["EXISTS", "{m}a", "{m}b", "{m}nope", "{m}a"]),
        c(&["DEL", "{m}a", "{m}nope"]),
        c(&["UNLINK", "{m}b", "{m}c", "{m}c"]),
        c(&["SET", "{n}i", "10"]),
        c(&["INCR", "{n}i"]),
        c(&["DECR", "{n}i"]),
        c(&["INCRBY", "{n}i", "-20"]),
        c(&["DECRBY", "{n}i", "5"]),
        c(&["INCRBY", "{n}i", "abc"]),
        c(&["INCR", "{n}fresh"]),
        c(&["SET", "{n}max", "9223372036854775807"]),
        c(&["INCR", "{n}max"]),
        c(&["DECRBY", "{n}i", "-9223372036854775808"]),
        c(&["SET", "{n}s", "hello"]),
        c(&["INCR", "{n}s"]),
        c(&["SET", "{n}f", "10.50"]),
        c(&["INCRBYFLOAT", "{n}f", "0.1"]),
        c(&["INCRBYFLOAT", "{n}f", "-5"]),
        c(&["INCRBYFLOAT", "{n}f", "5.0e3"]),
        c(&["INCRBYFLOAT", "{n}f", "abc"]),
        c(&["INCRBYFLOAT", "{n}s", "1"]),
        c(&["INCRBYFLOAT", "{n}newf", "3"]),
        c(&["SET", "{n}sp", " 1"]),
        c(&["INCR", "{n}sp"]),
        c(&["APPEND", "{a}x", "hello"]),
        c(&["APPEND", "{a}x", " world"]),
        c(&["GET", "{a}x"]),
        c(&["STRLEN", "{a}x"]),
        c(&["STRLEN", "{a}none"]),
        c(&["SET", "{e}k", "v"]),
        c(&["EXPIRE", "{e}k", "100"]),
        c(&["TTL", "{e}k"]),
        c(&["PERSIST", "{e}k"]),
        c(&["PERSIST", "{e}k"]),
        c(&["TTL", "{e}k"]),
        c(&["TTL", "{e}none"]),
        c(&["PTTL", "{e}none"]),
        c(&["PTTL", "{e}k"]),
        c(&["EXPIRE", "{e}k", "abc"]),
        c(&["EXPIRE", "{e}none", "10"]),
        c(&["PEXPIRE", "{e}k", "100000"]),
        c(&["TTL", "{e}k"]),
        c(&["EXPIRE", "{e}k", "-1"]),
        c(&["GET", "{e}k"]),
        c(&["SET", "{t}k", "v"]),
        c(&["TYPE", "{t}k"]),
        c(&["TYPE", "{t}none"]),
        c(&["GET"]),
        c(&["SET", "onlykey"]),
        c(&["MGET"]),
        c(&["DEL"]),
        c(&["EXISTS"]),
        c(&["INCR"]),
        c(&["TTL"]),
        c(&["NOSUCHCOMMAND", "a", "b"]),
        c(&["nosuchcommand"]),
        c(&["SET", "{k}one", "1"]),
        c(&["SET", "{k}two", "2"]),
        (Unordered, vec!["KEYS", "{k}*"]),
        (Unordered, vec!["KEYS", "{k}t?o"]),
        c(&["SELECT", "0"]),
        c(&["CONFIG", "GET", "save"]),
        // The other data types, and WRONGTYPE across them.
        c(&["HSET", "{h}h", "f1", "v1", "f2", "v2"]),
        c(&["HGET", "{h}h", "f1"]),
        c(&["HMGET", "{h}h", "f2", "nope", "f1"]),
        c(&["HLEN", "{h}h"]),
        c(&["HINCRBY", "{h}h", "n", "5"]),
        c(&["HINCRBYFLOAT", "{h}h", "n", "0.25"]),
        c(&["GET", "{h}h"]),
        c(&["TYPE", "{h}h"]),
        c(&["RPUSH", "{l}l", "a", "b", "c", "d"]),
        c(&["LPUSH", "{l}l", "z"]),
        c(&["LRANGE", "{l}l", "0", "-1"]),
        c(&["LRANGE", "{l}l", "-2", "100"]),
        c(&["LINDEX", "{l}l", "-1"]),
        c(&["LPOP", "{l}l", "2"]),
        c(&["LLEN", "{l}l"]),
        c(&["HGET", "{l}l", "x"]),
        c(&["TYPE", "{l}l"]),
        c(&["SADD", "{t}s", "a", "b", "a"]),
        c(&["SCARD", "{t}s"]),
        c(&["SISMEMBER", "{t}s", "b"]),
        c(&["SMISMEMBER", "{t}s", "a", "x"]),
        c(&["SREM", "{t}s", "a", "x"]),
        c(&["TYPE", "{t}s"]),
        c(&["ZADD", "{z}z", "1", "one", "2.5", "two", "-3", "minus"]),
        c(&["ZADD", "{z}z", "XX", "GT", "CH", "5", "one"]),
        c(&["ZRANGE", "{z}z", "0", "-1", "WITHSCORES"]),
        c(&["ZRANGE", "{z}z", "(1", "+inf", "BYSCORE", "LIMIT", "0", "1"]),
        c(&["ZSCORE", "{z}z", "two"]),
        c(&["ZINCRBY", "{z}z", "0.1", "two"]),
        c(&["ZRANK", "{z}z", "one"]),
        c(&["ZADD", "{z}z", "nan", "x"]),
        c(&["LPUSH", "{z}z", "x"]),
        c(&["TYPE", "{z}z"]),
        // RESET, and blocking timeouts in Redis's long-double syntax, read alike by the proxy and
        // the nodes (the list holds data: a timeout that parses is answered at once).
        c(&["RESET"]),
        c(&["RESET", "x"]),
        c(&[
            "RPUSH", "{bl}l", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j",
        ]),
        c(&["BLPOP", "{bl}l", "0x1p3"]),
        c(&["BLPOP", "{bl}l", "1e1"]),
        c(&["BRPOP", "{bl}l", "1.5"]),
        c(&["BLPOP", "{bl}l", "-1"]),
        c(&["BLPOP", "{bl}l", "inf"]),
        c(&["BLPOP", "{bl}l", "nan"]),
        c(&["BLPOP", "{bl}l", " 1"]),
        c(&["BLPOP", "{bl}l", "99999999999999999999"]),
        c(&["BLPOP", "{bl}l", "1e400"]),
        c(&["BLMOVE", "{bl}l", "{bl}d", "LEFT", "RIGHT", "0x1p3"]),
        c(&["BLMOVE", "{bl}l", "{bl}d", "LEFT", "RIGHT", "abc"]),
        c(&["ZADD", "{bl}z", "1", "a", "2", "b", "3", "c"]),
        c(&["BZPOPMIN", "{bl}z", "0x1p3"]),
        c(&["BZPOPMAX", "{bl}z", "-1"]),
    ]
}

/// Cross-slot forms only the proxy can run (it splits and merges them).
fn proxy_cases() -> Vec<(Compare, Vec<&'static str>)> {
    let c = |args: &[&'static str]| (Compare::Exact, args.to_vec());
    vec![
        c(&["MSET", "a", "1", "b", "2", "c", "3", "d", "4"]),
        c(&["MGET", "a", "b", "nope", "c", "d", "a"]),
        c(&["EXISTS", "a", "b", "nope", "c", "a"]),
        c(&["TOUCH", "a", "b", "nope"]),
        c(&["DEL", "a", "b", "nope"]),
        c(&["UNLINK", "c", "d", "d"]),
        c(&["MGET", "a", "b", "c", "d"]),
        c(&["DBSIZE"]),
        // The timeout comes first here, so only the proxy (which finds the key) runs them.
        c(&["RPUSH", "{bm}l", "a", "b", "c"]),
        c(&["BLMPOP", "0x1p3", "1", "{bm}l", "LEFT"]),
        c(&["BLMPOP", "nan", "1", "{bm}l", "LEFT"]),
        c(&["BLMPOP", "-1", "1", "{bm}l", "LEFT"]),
        c(&["ZADD", "{bm}z", "1", "a", "2", "b"]),
        c(&["BZMPOP", "1e1", "1", "{bm}z", "MIN"]),
        c(&["BZMPOP", "nan", "1", "{bm}z", "BAD"]),
    ]
}

fn normalize(compare: Compare, reply: &[u8]) -> Vec<u8> {
    match compare {
        Compare::Exact => reply.to_vec(),
        Compare::Unordered => {
            let text = String::from_utf8_lossy(reply);
            let mut lines: Vec<&str> = text.split("\r\n").collect();
            lines.sort_unstable();
            lines.join("\r\n").into_bytes()
        }
    }
}

/// Runs `cases` against redis-server and against `port_for(first key)`, comparing every reply.
fn run(
    redis: &mut RespClient,
    cases: &[(Compare, Vec<&'static str>)],
    mut tessera_for: impl FnMut(&[&str]) -> u16,
    tessera: &mut dyn FnMut(u16) -> RespClient,
    label: &str,
) {
    let mut failures = Vec::new();
    for (compare, args) in cases {
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let expected = normalize(*compare, &redis.call(&bytes));
        let mut client = tessera(tessera_for(args));
        let actual = normalize(*compare, &client.call(&bytes));
        if expected != actual {
            failures.push(format!(
                "{args:?}\n   redis:   {:?}\n   tessera: {:?}",
                String::from_utf8_lossy(&expected),
                String::from_utf8_lossy(&actual)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{label}: {} replies differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn replies_match_redis_server_through_proxy_and_on_nodes() {
    let cluster = LocalCluster::up(std::time::Duration::from_secs(5));
    let oracle = RedisServer::start();
    let mut redis = RespClient::connect(oracle.port).expect("connect to redis-server");

    // Through the proxy: one connection for every case.
    let proxy = cluster.proxy_port;
    let mut proxy_client = RespClient::connect(proxy).expect("connect to the proxy");
    let mut cases_all = cases();
    cases_all.extend(proxy_cases());
    {
        let mut via_proxy = |_: u16| RespClient::connect(proxy).expect("connect to the proxy");
        run(&mut redis, &cases_all, |_| proxy, &mut via_proxy, "proxy");
    }
    assert_eq!(
        redis.call(&[b"FLUSHALL"]),
        proxy_client.call(&[b"FLUSHALL"])
    );
    assert_eq!(proxy_client.call(&[b"DBSIZE"]), b":0\r\n");

    // Directly on the node that owns each command's first key (the creation order fixes which).
    let ports = cluster.node_ports.clone();
    let owner = move |args: &[&str]| -> u16 {
        let Some(key) = args.get(1) else {
            return ports[0];
        };
        let known_keyless = [
            "PING",
            "ECHO",
            "SELECT",
            "CONFIG",
            "NOSUCHCOMMAND",
            "nosuchcommand",
            "KEYS",
        ];
        if known_keyless.contains(&args[0]) {
            return ports[0];
        }
        match key_hash_slot(key.as_bytes()) {
            0..=5460 => ports[0],
            5461..=10922 => ports[1],
            _ => ports[2],
        }
    };
    // KEYS on a node lists only that node's keys: send it where the `{k}` keys live.
    let k_port = owner(&["GET", "{k}"]);
    let mut direct = |port: u16| cluster.node_client(port);
    run(
        &mut redis,
        &cases(),
        |args| {
            if args[0] == "KEYS" {
                k_port
            } else {
                owner(args)
            }
        },
        &mut direct,
        "node",
    );
}
