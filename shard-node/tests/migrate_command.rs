//! MIGRATE, compared with Redis 7.0's: the same MIGRATE commands sent to a redis-server and to a
//! Tessera node, each moving keys to real redis-servers of its own, get the same replies (+NOKEY,
//! +OK, BUSYKEY from the target, REPLACE, COPY, KEYS, AUTH / AUTH2 errors, a closed port), and
//! leave the same keys on both sides. Also MIGRATE from one Tessera node to another.

mod data_support;

use data_support::{RawClient, TestNode};
use tessera_testkit::RedisServer;

/// Sends `args` as one command; the reply without its final CRLF.
async fn call(c: &mut RawClient, args: &[&str]) -> anyhow::Result<String> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    let reply = String::from_utf8_lossy(&c.cmd(&args).await?).into_owned();
    Ok(reply.strip_suffix("\r\n").unwrap_or(&reply).to_string())
}

/// Runs the MIGRATE story from the server at `source`, to fresh redis-servers (one plain, one
/// with a password): every command and its reply, and what both sides hold afterwards.
async fn story(source: &mut RawClient) -> anyhow::Result<Vec<String>> {
    let target = RedisServer::start()?;
    let locked = RedisServer::start_with(&["--requirepass", "pw"])?;
    let mut t = RawClient::connect_port(target.port).await?;
    let mut l = RawClient::connect_port(locked.port).await?;
    assert_eq!(call(&mut l, &["AUTH", "pw"]).await?, "+OK");
    let (port, locked_port) = (target.port.to_string(), locked.port.to_string());
    let closed_port = tessera_testkit::port::free_port().to_string();
    let migrate = |port: &str, rest: &[&str]| -> Vec<String> {
        ["MIGRATE", "127.0.0.1", port]
            .iter()
            .chain(rest)
            .map(|a| a.to_string())
            .collect()
    };
    for (k, v) in [("{k}a", "1"), ("{k}b", "2"), ("{k}c", "3"), ("{k}d", "4")] {
        call(source, &["SET", k, v]).await?;
    }
    call(source, &["SET", "{k}ttl", "5", "PX", "100000"]).await?;
    call(&mut t, &["SET", "{k}b", "old"]).await?;
    let steps = [
        migrate(&port, &["{k}none", "0", "1000"]),
        migrate(&port, &["{k}a", "0", "1000"]),
        migrate(&port, &["{k}b", "0", "1000"]),
        migrate(&port, &["{k}b", "0", "1000", "REPLACE"]),
        migrate(&port, &["{k}c", "0", "1000", "COPY"]),
        migrate(
            &port,
            &["", "0", "1000", "KEYS", "{k}ttl", "{k}none", "{k}d"],
        ),
        migrate(&port, &["{k}c", "0", "1000", "KEYS", "{k}c"]),
        migrate(&port, &["{k}c", "0", "1000", "BOGUS"]),
        migrate(&port, &["{k}c", "0", "1000", "AUTH"]),
        migrate(&port, &["{k}c", "x", "1000"]),
        migrate(&locked_port, &["{k}c", "0", "1000"]),
        migrate(&locked_port, &["{k}c", "0", "1000", "AUTH", "wrong"]),
        migrate(
            &locked_port,
            &["{k}c", "0", "1000", "AUTH2", "default", "wrong"],
        ),
        migrate(&locked_port, &["{k}c", "0", "1000", "COPY", "AUTH", "pw"]),
        migrate(
            &locked_port,
            &["{k}c", "0", "1000", "AUTH2", "default", "pw"],
        ),
        migrate(&closed_port, &["{k}c", "0", "1000"]),
    ];
    let mut out = Vec::new();
    for step in steps {
        let step: Vec<&str> = step.iter().map(String::as_str).collect();
        let reply = call(source, &step).await?;
        out.push(format!("{} -> {reply}", step[3..].join(" ")));
    }
    for (side, c) in [
        ("source", &mut *source),
        ("target", &mut t),
        ("locked", &mut l),
    ] {
        for key in ["{k}a", "{k}b", "{k}c", "{k}d", "{k}ttl"] {
            let value = call(c, &["GET", key]).await?;
            out.push(format!("{side} {key} = {value}"));
        }
    }
    let ttl: i64 = call(&mut t, &["PTTL", "{k}ttl"]).await?[1..].parse()?;
    out.push(format!("ttl kept: {}", (90_000..=100_000).contains(&ttl)));
    Ok(out)
}

#[tokio::test]
async fn migrate_replies_as_redis_to_a_redis_target() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let expected = story(&mut RawClient::connect_port(redis.port).await?).await?;
    let node = TestNode::start().await?;
    let got = story(&mut node.client().await?).await?;
    assert_eq!(got, expected);
    // What Redis answers, spelled out for the cases that matter most.
    for line in [
        "{k}none 0 1000 -> +NOKEY",
        "{k}b 0 1000 -> -ERR Target instance replied with error: BUSYKEY Target key name already exists.",
        "{k}c 0 1000 -> -ERR Target instance replied with error: NOAUTH Authentication required.",
        "ttl kept: true",
    ] {
        assert!(got.iter().any(|l| l.ends_with(line)), "{line} in {got:#?}");
    }
    assert!(
        got.iter()
            .any(|l| l.ends_with("-IOERR error or timeout writing to target instance")),
        "a refused connection, as Redis words it: {got:#?}"
    );
    node.stop().await
}

#[tokio::test]
async fn migrate_between_tessera_nodes_refuses_another_db() -> anyhow::Result<()> {
    let source = TestNode::start().await?;
    let target = TestNode::start().await?;
    let mut s = source.client().await?;
    let mut t = target.client().await?;
    let port = target.addr.port().to_string();
    call(&mut s, &["SET", "{k}a", "1"]).await?;
    call(&mut s, &["RPUSH", "{k}list", "x", "y"]).await?;
    assert_eq!(
        call(
            &mut s,
            &["MIGRATE", "127.0.0.1", &port, "{k}a", "1", "1000"]
        )
        .await?,
        "-ERR Target instance replied with error: ERR SELECT is not allowed in cluster mode"
    );
    // As with Redis, the target ran the RESTORE in the db it had (0): the key is there, and
    // the source kept its copy (not acknowledged).
    assert_eq!(call(&mut t, &["GET", "{k}a"]).await?, "$1\r\n1");
    let keys = [
        "MIGRATE",
        "127.0.0.1",
        &port,
        "",
        "0",
        "1000",
        "REPLACE",
        "KEYS",
        "{k}a",
        "{k}list",
    ];
    assert_eq!(call(&mut s, &keys).await?, "+OK");
    assert_eq!(call(&mut t, &["GET", "{k}a"]).await?, "$1\r\n1");
    assert_eq!(
        call(&mut t, &["LRANGE", "{k}list", "0", "-1"]).await?,
        "*2\r\n$1\r\nx\r\n$1\r\ny"
    );
    assert_eq!(call(&mut s, &["EXISTS", "{k}a", "{k}list"]).await?, ":0");
    source.stop().await?;
    target.stop().await
}
