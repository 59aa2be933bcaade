//! The node secret on a whole local cluster (deploy/local.sh, real processes): the shard nodes
//! refuse clients that have not sent `AUTH <secret>`, with Redis's texts; redis-cli and
//! redis-benchmark work with `-a`; the proxy authenticates every kind of backend connection it
//! opens (pooled, dedicated); the control plane
//! and clusterctl need no secret.

use std::time::Duration;

use tessera_e2e::cluster::LocalCluster;
use tessera_e2e::redis;
use tessera_e2e::resp::RespClient;

#[test]
fn the_node_secret_guards_the_nodes_and_the_proxy_carries_it() {
    let cluster = LocalCluster::up(Duration::from_secs(5));
    let node = cluster.node_ports[0];
    let proxy = cluster.proxy_port;

    // Without the secret: NOAUTH for everything but AUTH / HELLO / QUIT, as redis-server with
    // requirepass answers.
    let mut bare = RespClient::connect(node).expect("connect to a node");
    assert_eq!(
        bare.call_str(&["GET", "k"]),
        "-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(
        bare.call_str(&["CLUSTER", "INFO"]),
        "-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(
        bare.call_str(&["AUTH", "wrong"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert!(bare
        .call_str(&["HELLO", "3"])
        .starts_with("-NOAUTH HELLO must be called with the client already authenticated"));
    // Until then, small commands only, as Redis 7.0 with requirepass: the connection closes.
    for raw in [&b"*11\r\n"[..], b"*2\r\n$16385\r\n"] {
        let mut probe = RespClient::connect(node).expect("connect to a node");
        probe.send_raw(raw).expect("send");
        let reply = probe.read_reply().expect("read").unwrap_or_default();
        assert!(
            reply.starts_with(b"-ERR Protocol error: unauthenticated"),
            "{raw:?}: {}",
            String::from_utf8_lossy(&reply)
        );
        assert!(probe.is_closed(), "{raw:?} closes the connection");
    }
    assert_eq!(bare.call_str(&["AUTH", &cluster.node_secret]), "+OK\r\n");
    // Authenticated, the usual limits.
    let big = "x".repeat(20000);
    let many = bare.call_str(&["DEL", "k", "k", "k", "k", "k", "k", "k", "k", "k", "k", "k"]);
    assert!(many.starts_with("-MOVED 7629 "), "{many}");
    let echoed = bare.call_str(&["ECHO", &big]);
    assert!(
        echoed.starts_with("$20000\r\n"),
        "{}",
        echoed.chars().take(40).collect::<String>()
    );
    // Authenticated, the cluster rule applies ("k" is in slot 7629, node2's).
    let moved = bare.call_str(&["GET", "k"]);
    assert!(moved.starts_with("-MOVED 7629 "), "{moved}");
    let port = node.to_string();
    let refused = redis::cli(&["-p", &port, "cluster", "info"]);
    assert!(refused.contains("NOAUTH"), "{refused}");
    let wrong = redis::cli(&["-p", &port, "-a", "wrong", "--no-auth-warning", "ping"]);
    // redis-cli reports the failed AUTH on stderr and runs the command unauthenticated.
    assert!(wrong.contains("NOAUTH"), "{wrong}");

    // With it: redis-cli -c follows MOVED with the same password.
    assert_eq!(cluster.cli(node, &["ping"]).trim(), "PONG");
    assert_eq!(cluster.cli(node, &["-c", "set", "foo", "bar"]).trim(), "OK");
    assert_eq!(cluster.cli(node, &["-c", "get", "foo"]).trim(), "bar");

    // The proxy: pooled requests, a split and a blocking pop (a dedicated connection) reach
    // authenticated nodes. (Transactions and pub/sub use their own connections too, opened by
    // the same handshake, but the shard nodes do not serve MULTI or SUBSCRIBE yet.)
    let mut client = RespClient::connect(proxy).expect("connect to the proxy");
    assert_eq!(client.call_str(&["GET", "foo"]), "$3\r\nbar\r\n");
    assert_eq!(
        client.call_str(&["MSET", "a", "1", "b", "2", "c", "3"]),
        "+OK\r\n"
    );
    assert_eq!(client.call_str(&["RPUSH", "queue", "job"]), ":1\r\n");
    assert_eq!(
        client.call_str(&["BLPOP", "queue", "1"]),
        "*2\r\n$5\r\nqueue\r\n$3\r\njob\r\n"
    );
    // The control plane needs no secret.
    let info = cluster.clusterctl(&["info"]);
    assert!(info.status.success(), "{info:?}");
    assert!(String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok"));
}
