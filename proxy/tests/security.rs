//! The proxy's authentication, ACL users, client limits and CLIENT commands, checked byte for
//! byte against a real redis-server configured the same way (requirepass, ACL SETUSER, aclfile,
//! maxclients) where Redis's answer is deterministic.

mod support;

use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use support::{same, wait_for, Client, Harness};
use tessera_proto::resp::Frame;
use tessera_testkit::RedisServer;

/// Sends `args` on one connection and returns the raw reply.
async fn raw_reply(client: &mut Client, args: &[&str]) -> Result<Bytes> {
    client.send_raw(&support::encode(args)).await?;
    client.read_raw().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requirepass_and_auth_answer_as_redis() -> Result<()> {
    let h = Harness::start().await?;
    let port = h
        .extra_proxy_with(|c| c.requirepass = Some("pw".to_string()))
        .await?;
    let oracle = RedisServer::start_with(&["--requirepass", "pw"])?;
    let (mut p, mut o) = (
        Client::connect(port).await?,
        Client::connect(oracle.port).await?,
    );
    for args in [
        &["PING"][..],
        &["GET", "k"],
        &["SET", "k", "v"],
        &["MULTI"],
        &["NOSUCH", "x"],
        &["GET"],
        &["AUTH"],
        &["AUTH", "a", "b", "c"],
        &["HELLO", "3"],
        &["HELLO", "2", "AUTH", "default", "wrong"],
        &["HELLO", "2", "SETNAME", "a b", "AUTH", "default", "wrong"],
        &["HELLO", "4"],
        &["AUTH", "wrong"],
        &["AUTH", "default", "wrong"],
        &["AUTH", "nobody", "pw"],
        &["AUTH", "pw"],
        &["GET", "k"],
        &["ACL", "WHOAMI"],
        &["RESET"],
        &["GET", "k"],
        &["AUTH", "default", "pw"],
        &["PING"],
        &["ACL", "WHOAMI"],
    ] {
        same(&mut p, &mut o, args).await?;
    }
    // HELLO 3 AUTH: authenticated and RESP3 in one go (the map itself names the server mode,
    // which differs: check the prefix only).
    let mut p2 = Client::connect(port).await?;
    let reply = raw_reply(&mut p2, &["HELLO", "3", "AUTH", "default", "pw"]).await?;
    assert!(reply.starts_with(b"%7\r\n"), "{reply:?}");
    assert_eq!(
        raw_reply(&mut p2, &["PING"]).await?,
        Bytes::from_static(b"+PONG\r\n")
    );
    // QUIT works unauthenticated.
    let mut p3 = Client::connect(port).await?;
    assert_eq!(
        raw_reply(&mut p3, &["QUIT"]).await?,
        Bytes::from_static(b"+OK\r\n")
    );
    assert!(p3.closed().await);
    Ok(())
}

/// Until a client authenticates, a multibulk of more than 10 arguments or an argument over
/// 16384 bytes is a protocol error that closes it, as Redis 7.0's; afterwards both are fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_clients_may_send_small_commands_only() -> Result<()> {
    let h = Harness::start().await?;
    let port = h
        .extra_proxy_with(|c| c.requirepass = Some("pw".to_string()))
        .await?;
    let oracle = RedisServer::start_with(&["--requirepass", "pw"])?;
    for raw in [&b"*11\r\n"[..], b"*2\r\n$16385\r\n"] {
        let (mut p, mut o) = (
            Client::connect(port).await?,
            Client::connect(oracle.port).await?,
        );
        p.send_raw(raw).await?;
        o.send_raw(raw).await?;
        let (ours, theirs) = (p.read_raw().await?, o.read_raw().await?);
        assert_eq!(ours, theirs, "reply to {raw:?}");
        assert!(ours.starts_with(b"-ERR Protocol error: unauthenticated"));
        assert!(p.closed().await && o.closed().await, "{raw:?} closes");
    }
    // At the limits: an ordinary NOAUTH.
    let (mut p, mut o) = (
        Client::connect(port).await?,
        Client::connect(oracle.port).await?,
    );
    let big = "x".repeat(16384);
    same(&mut p, &mut o, &["SET", "k", &big]).await?;
    same(
        &mut p,
        &mut o,
        &["DEL", "k", "k", "k", "k", "k", "k", "k", "k", "k"],
    )
    .await?;
    // Authenticated: the usual limits.
    same(&mut p, &mut o, &["AUTH", "pw"]).await?;
    let bigger = "x".repeat(20000);
    same(&mut p, &mut o, &["SET", "k", &bigger]).await?;
    same(&mut p, &mut o, &["STRLEN", "k"]).await?;
    same(
        &mut p,
        &mut o,
        &["DEL", "k", "k", "k", "k", "k", "k", "k", "k", "k", "k", "k"],
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_without_a_password_answers_as_redis() -> Result<()> {
    let h = Harness::start().await?;
    let oracle = RedisServer::start_with(&[])?;
    let (mut p, mut o) = (h.client().await?, Client::connect(oracle.port).await?);
    for args in [
        &["AUTH", "x"][..],
        &["AUTH", "default", "anything"],
        &["AUTH", "bob", "x"],
        &["HELLO", "2", "AUTH", "bob", "x"],
        &["ACL", "WHOAMI"],
        &["ACL", "USERS"],
        &["ACL", "LIST"],
        &["ACL", "GETUSER", "default"],
        &["ACL", "GETUSER", "nobody"],
        &["ACL", "CAT"],
        &["ACL", "CAT", "nosuch"],
    ] {
        same(&mut p, &mut o, args).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_users_rules_and_errors_answer_as_redis() -> Result<()> {
    let h = Harness::start().await?;
    let oracle = RedisServer::start_with(&[])?;
    let (mut p, mut o) = (h.client().await?, Client::connect(oracle.port).await?);
    let setup: &[&[&str]] = &[
        &[
            "ACL", "SETUSER", "alice", "on", ">p1", "~k*", "+get", "+@string", "-set",
        ],
        &["ACL", "SETUSER", "bob"],
        &["ACL", "SETUSER", "c1", "+get", "+set", "+@string"],
        &["ACL", "SETUSER", "c3", "+@all", "-@string", "+get"],
        &["ACL", "SETUSER", "c5", "+client|id", "&news.*", "allkeys"],
        &[
            "ACL",
            "SETUSER",
            "c6",
            "allcommands",
            "-get",
            "nocommands",
            "+set",
        ],
        &["ACL", "SETUSER", "c7", ">a", ">b", "<a", "nopass"],
        &[
            "ACL", "SETUSER", "pub", "on", "nopass", "allkeys", "+@all", "&news.*",
        ],
        &[
            "ACL",
            "SETUSER",
            "ro",
            "on",
            ">x",
            "allkeys",
            "+@read",
            "+@connection",
        ],
        &["ACL", "SETUSER", "x", "+nosuch"],
        &["ACL", "SETUSER", "x", "+@nosuch"],
        &["ACL", "SETUSER", "x", "badrule"],
        &["ACL", "SETUSER", "x", "#abc"],
        &["ACL", "SETUSER", "x", "<nothere"],
        &["ACL", "SETUSER", "x", "allkeys", "~b"],
        &["ACL", "SETUSER", "x", "&*", "&b"],
        &["ACL", "SETUSER", "a b"],
        &["ACL", "GETUSER", "x"],
        &["ACL", "USERS"],
        &["ACL", "LIST"],
        &["ACL", "GETUSER", "alice"],
        &["ACL", "GETUSER", "c5"],
        &["ACL", "GETUSER", "c7"],
        &["ACL", "DELUSER", "default"],
        &["ACL", "DELUSER", "c1", "nobody"],
        &["ACL", "USERS"],
    ];
    for args in setup {
        same(&mut p, &mut o, args).await?;
    }
    // RESP3 GETUSER is a map.
    let (mut p3, mut o3) = (h.client().await?, Client::connect(oracle.port).await?);
    raw_reply(&mut p3, &["HELLO", "3"]).await?;
    raw_reply(&mut o3, &["HELLO", "3"]).await?;
    same(&mut p3, &mut o3, &["ACL", "GETUSER", "alice"]).await?;

    // Alice: string commands on k* keys only.
    let (mut pa, mut oa) = (h.client().await?, Client::connect(oracle.port).await?);
    for args in [
        &["AUTH", "alice", "wrong"][..],
        &["AUTH", "alice", "p1"],
        &["ACL", "WHOAMI"],
        &["GET", "k1"],
        &["GET", "other"],
        &["MGET", "k1", "other"],
        &["SET", "k1", "v"],
        &["LPUSH", "k1", "v"],
        &["CLIENT", "LIST"],
        &["NOSUCH"],
        &["GET"],
        &["MULTI"],
        &["APPEND", "k1", "x"],
        &["SET", "k1", "v"],
        &["EXEC"],
    ] {
        same(&mut pa, &mut oa, args).await?;
    }
    // A disabled user cannot log in; a user with +@read cannot write.
    let (mut pb, mut ob) = (h.client().await?, Client::connect(oracle.port).await?);
    for args in [
        &["AUTH", "bob", "x"][..],
        &["AUTH", "ro", "x"],
        &["GET", "anykey"],
        &["DEL", "anykey"],
        &["ACL", "WHOAMI"],
    ] {
        same(&mut pb, &mut ob, args).await?;
    }
    // Channels: PUBLISH / SUBSCRIBE only on news.*.
    let (mut pc, mut oc) = (h.client().await?, Client::connect(oracle.port).await?);
    for args in [
        &["AUTH", "pub", "x"][..],
        &["PUBLISH", "other", "m"],
        &["PUBLISH", "news.1", "m"],
        &["SUBSCRIBE", "other"],
        &["PSUBSCRIBE", "news.1*"],
    ] {
        same(&mut pc, &mut oc, args).await?;
    }
    // Rules changed while logged in apply at once; a deleted user's connections are closed.
    same(&mut p, &mut o, &["ACL", "SETUSER", "alice", "+set"]).await?;
    same(&mut pa, &mut oa, &["SET", "k1", "v"]).await?;
    same(&mut p, &mut o, &["ACL", "DELUSER", "alice"]).await?;
    assert!(pa.closed().await, "a deleted user's connection stays open");
    // The default user itself can be restricted, and then every connection sees it.
    same(&mut p, &mut o, &["ACL", "SETUSER", "default", "-flushall"]).await?;
    same(&mut p, &mut o, &["FLUSHALL"]).await?;
    same(&mut p, &mut o, &["ACL", "SETUSER", "default", "+flushall"]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aclfile_users_log_in() -> Result<()> {
    let h = Harness::start().await?;
    let dir = tessera_testkit::temp_dir("aclfile");
    let file = dir.path().join("users.acl");
    std::fs::write(
        &file,
        "user default on >topsecret ~* &* +@all\nuser app on >apppass ~app:* +@read +@write -flushall\n",
    )?;
    let path = file.clone();
    let port = h
        .extra_proxy_with(move |c| c.aclfile = Some(path))
        .await
        .context("proxy with an aclfile")?;
    let oracle = RedisServer::start_with(&["--aclfile", &file.display().to_string()])
        .context("redis-server with an aclfile")?;
    let (mut p, mut o) = (
        Client::connect(port).await?,
        Client::connect(oracle.port).await?,
    );
    for args in [
        &["GET", "app:1"][..],
        &["AUTH", "app", "apppass"],
        &["SET", "app:1", "v"],
        &["GET", "app:1"],
        &["GET", "other"],
        &["FLUSHALL"],
        &["ACL", "LIST"],
        &["AUTH", "topsecret"],
        &["ACL", "WHOAMI"],
    ] {
        same(&mut p, &mut o, args).await?;
    }
    Ok(())
}

/// The field names of a CLIENT LIST line, in order.
fn field_names(line: &str) -> Vec<String> {
    line.split_whitespace()
        .filter_map(|f| f.split_once('=').map(|(k, _)| k.to_string()))
        .collect()
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace()
        .filter_map(|f| f.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_list_info_and_kill() -> Result<()> {
    let h = Harness::start().await?;
    let oracle = RedisServer::start_with(&[])?;
    let (mut p, mut o) = (h.client().await?, Client::connect(oracle.port).await?);
    // The line has Redis's fields in Redis's order.
    let ours = p.text(&["CLIENT", "INFO"]).await?;
    let theirs = o.text(&["CLIENT", "INFO"]).await?;
    assert_eq!(field_names(&ours), field_names(&theirs), "{ours}\n{theirs}");
    assert_eq!(field(&ours, "cmd"), Some("client|info"));
    // Errors as Redis.
    for args in [
        &["CLIENT", "KILL", "1.2.3.4:5"][..],
        &["CLIENT", "KILL", "ID", "0"],
        &["CLIENT", "KILL", "ID", "abc"],
        &["CLIENT", "KILL", "TYPE", "foo"],
        &["CLIENT", "KILL", "USER", "nosuch"],
        &["CLIENT", "KILL", "SKIPME", "maybe"],
        &["CLIENT", "KILL", "ID", "1", "extra"],
        &["CLIENT", "KILL", "ID", "999999"],
        &["CLIENT", "LIST", "TYPE", "foo"],
        &["CLIENT", "LIST", "ID", "abc"],
        &["CLIENT", "LIST", "bad"],
        &["CLIENT", "LIST", "TYPE", "master"],
        &["CLIENT", "NO-EVICT", "maybe"],
        &["CLIENT", "NO-EVICT", "on"],
        &["CLIENT", "TRACKING", "off"],
    ] {
        same(&mut p, &mut o, args).await?;
    }
    assert!(matches!(
        p.cmd(&["CLIENT", "TRACKING", "on"]).await?,
        Frame::Error(e) if e.starts_with(b"ERR CLIENT TRACKING on is not supported")
    ));

    // Three clients: this one, a named one, a subscriber.
    let mut named = h.client().await?;
    named.cmd(&["CLIENT", "SETNAME", "worker"]).await?;
    named.cmd(&["GET", "k"]).await?;
    let Frame::Integer(named_id) = named.cmd(&["CLIENT", "ID"]).await? else {
        anyhow::bail!("CLIENT ID");
    };
    let mut subscriber = h.client().await?;
    subscriber.cmd(&["SUBSCRIBE", "ch"]).await?;
    let list = p.text(&["CLIENT", "LIST"]).await?;
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    let worker = lines
        .iter()
        .find(|l| field(l, "name") == Some("worker"))
        .context("the named client is listed")?;
    assert_eq!(field(worker, "id"), Some(named_id.to_string().as_str()));
    assert_eq!(field(worker, "cmd"), Some("client|id"));
    let pubsub = p.text(&["CLIENT", "LIST", "TYPE", "pubsub"]).await?;
    assert_eq!(pubsub.lines().count(), 1, "{pubsub}");
    assert_eq!(field(&pubsub, "sub"), Some("1"));
    assert_eq!(field(&pubsub, "flags"), Some("P"));
    let normal = p.text(&["CLIENT", "LIST", "TYPE", "normal"]).await?;
    assert_eq!(normal.lines().count(), 2, "{normal}");
    let by_id = p
        .text(&["CLIENT", "LIST", "ID", &named_id.to_string(), "999999"])
        .await?;
    assert_eq!(by_id.lines().count(), 1);

    // KILL by id closes the other connection; the old form by address too.
    assert_eq!(
        p.cmd(&["CLIENT", "KILL", "ID", &named_id.to_string()])
            .await?,
        Frame::Integer(1)
    );
    assert!(named.closed().await, "a killed client stays connected");
    let sub_addr = field(&pubsub, "addr").context("addr")?.to_string();
    assert_eq!(
        p.cmd(&["CLIENT", "KILL", &sub_addr]).await?,
        Frame::Simple(Bytes::from_static(b"OK"))
    );
    assert!(subscriber.closed().await);
    // SKIPME yes (the default) spares the caller; SKIPME no kills it after its reply.
    assert_eq!(
        p.cmd(&["CLIENT", "KILL", "USER", "default"]).await?,
        Frame::Integer(0)
    );
    assert_eq!(
        p.cmd(&["CLIENT", "KILL", "USER", "default", "SKIPME", "no"])
            .await?,
        Frame::Integer(1)
    );
    assert!(p.closed().await);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maxclients_refuses_one_more_as_redis() -> Result<()> {
    let h = Harness::start().await?;
    let port = h.extra_proxy_with(|c| c.maxclients = 2).await?;
    // Two clients fit (once the readiness probe's connection is unregistered: bounded retries).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let (_first, second) = loop {
        let mut first = Client::connect(port).await?;
        let mut second = Client::connect(port).await?;
        let ok = |f: &Frame| matches!(f, Frame::Simple(_));
        if ok(&first.cmd(&["PING"]).await?) && ok(&second.cmd(&["PING"]).await?) {
            break (first, second);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "two clients never fit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut third = Client::connect(port).await?;
    assert_eq!(
        third.read_raw().await?,
        Bytes::from_static(b"-ERR max number of clients reached\r\n")
    );
    assert!(third.closed().await);
    drop(second);
    wait_for(Duration::from_secs(5), || async move {
        let Ok(mut again) = Client::connect(port).await else {
            return false;
        };
        matches!(again.cmd(&["PING"]).await, Ok(Frame::Simple(_)))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_time_out_but_subscribers_and_blocked_clients_do_not() -> Result<()> {
    let h = Harness::start().await?;
    let port = h.extra_proxy_with(|c| c.timeout = 1).await?;
    let mut idle = Client::connect(port).await?;
    assert_eq!(
        idle.cmd(&["CONFIG", "GET", "timeout"]).await?,
        Frame::Array(vec![support::bulk("timeout"), support::bulk("1")])
    );
    let mut subscriber = Client::connect(port).await?;
    subscriber.cmd(&["SUBSCRIBE", "ch"]).await?;
    let mut blocked = Client::connect(port).await?;
    blocked
        .send_raw(&support::encode(&["BLPOP", "timeout-list", "0"]))
        .await?;
    // The idle one goes within a few seconds (each `closed` waits at most 2 s).
    let mut gone = false;
    for _ in 0..3 {
        if idle.closed().await {
            gone = true;
            break;
        }
    }
    assert!(gone, "an idle client outlived the timeout");
    // The others are still there after more than twice the timeout.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut pusher = Client::connect(port).await?;
    pusher.cmd(&["RPUSH", "timeout-list", "x"]).await?;
    assert_eq!(
        blocked.read().await?,
        Frame::Array(vec![support::bulk("timeout-list"), support::bulk("x")])
    );
    pusher.cmd(&["PUBLISH", "ch", "still-here"]).await?;
    let message = subscriber.read().await?;
    assert!(format!("{message:?}").contains("still-here"), "{message:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_buffer_limit_closes_the_client() -> Result<()> {
    let h = Harness::start().await?;
    let port = h
        .extra_proxy_with(|c| c.client_query_buffer_limit = 1024 * 1024)
        .await?;
    let mut c = Client::connect(port).await?;
    // A bulk of 4 MB announced and 2 MB sent: past the 1 MB limit, the client is closed
    // without a reply (Redis frees it).
    c.send_raw(b"*2\r\n$3\r\nGET\r\n$4194304\r\n").await?;
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..32 {
        if c.send_raw(&chunk).await.is_err() {
            break;
        }
    }
    assert!(
        c.closed().await,
        "the client survived the query buffer limit"
    );
    // Others are unaffected.
    let mut other = Client::connect(port).await?;
    assert!(matches!(other.cmd(&["PING"]).await?, Frame::Simple(_)));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_connections_authenticate_with_the_node_secret() -> Result<()> {
    use std::sync::Arc;
    use tessera_proto::resp::Protocol;
    use tessera_proxy::backend::{Backend, BackendLogin, BackendSettings};

    let oracle = RedisServer::start_with(&["--requirepass", "s3cret"])?;
    let addr = format!("127.0.0.1:{}", oracle.port);
    let settings = |secret: Option<&str>| BackendSettings {
        connections: 1,
        timeout: Duration::from_secs(2),
        login: BackendLogin {
            secret: secret.map(Arc::from),
            readonly: false,
        },
    };
    let ping = Bytes::from_static(b"*1\r\n$4\r\nPING\r\n");
    let with = Backend::new(&addr, settings(Some("s3cret")));
    // Dedicated connections (transactions, blocking commands), RESP2 and RESP3 (AUTH, then
    // HELLO 3). Pub/sub connections open with the same handshake.
    for protocol in [Protocol::Resp2, Protocol::Resp3] {
        let conn = with.dedicated(protocol);
        let reply = conn
            .call(ping.clone(), Some(Duration::from_secs(2)))
            .await?;
        assert_eq!(reply, Bytes::from_static(b"+PONG\r\n"), "{protocol:?}");
    }
    // Pooled (pipelined) connections.
    let pool = tessera_proxy::backend::pool::Pool::new(
        Arc::from(addr.as_str()),
        Protocol::Resp2,
        1,
        Duration::from_secs(2),
        BackendLogin {
            secret: Some(Arc::from("s3cret")),
            readonly: false,
        },
    );
    assert_eq!(
        pool.call(ping.clone(), false, 0).await?,
        Bytes::from_static(b"+PONG\r\n")
    );
    // A wrong secret fails the connection with the node's refusal, not a silent NOAUTH later.
    let wrong = Backend::new(&addr, settings(Some("nope")));
    let error = wrong
        .dedicated(Protocol::Resp2)
        .call(ping.clone(), Some(Duration::from_secs(2)))
        .await
        .expect_err("a wrong secret connects");
    assert!(error.to_string().contains("WRONGPASS"), "{error}");
    // Without one, the node answers NOAUTH.
    let without = Backend::new(&addr, settings(None));
    let reply = without
        .dedicated(Protocol::Resp2)
        .call(ping, Some(Duration::from_secs(2)))
        .await?;
    assert_eq!(
        reply,
        Bytes::from_static(b"-NOAUTH Authentication required.\r\n")
    );
    Ok(())
}
