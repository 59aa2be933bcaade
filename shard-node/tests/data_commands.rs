//! The data path over real sockets: pipelining, cluster redirections, connection lifecycle,
//! expiry, SCAN and the CLUSTER / INFO / HELLO replies that a plain Redis cannot be compared on.

mod data_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use data_support::{encode, split_topology, TestNode, MYSELF};
use tessera_proto::slot::key_hash_slot;

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut client = node.client().await?;
    let mut batch = Vec::new();
    for i in 0..500 {
        batch.extend(encode(&[
            b"SET",
            format!("key:{i}").as_bytes(),
            format!("v{i}").as_bytes(),
        ]));
        batch.extend(encode(&[b"GET", format!("key:{i}").as_bytes()]));
    }
    client.send_raw(&batch).await?;
    for i in 0..500 {
        assert_eq!(client.read_reply().await?.as_ref(), b"+OK\r\n");
        let want = format!("${}\r\nv{i}\r\n", format!("v{i}").len());
        assert_eq!(client.read_reply().await?.as_ref(), want.as_bytes());
    }
    assert_eq!(client.line("DBSIZE").await?, ":500\r\n");
    assert_eq!(node.state.keyspace.len(), 500);
    node.stop().await
}

#[tokio::test]
async fn keys_of_other_nodes_get_moved_and_multi_slot_gets_crossslot() -> anyhow::Result<()> {
    let node = TestNode::start_with(split_topology).await?;
    let mut client = node.client().await?;
    // "foo" hashes to 12182 (the other node), "a" to 15495, "b" to 3300 (ours).
    assert_eq!(key_hash_slot(b"foo"), 12182);
    assert_eq!(
        client.line("GET foo").await?,
        "-MOVED 12182 127.0.0.1:7999\r\n"
    );
    assert_eq!(
        client.line("SET foo 1").await?,
        "-MOVED 12182 127.0.0.1:7999\r\n"
    );
    assert_eq!(client.line("SET b 1").await?, "+OK\r\n");
    assert_eq!(
        client.line("MGET b foo").await?,
        "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    assert_eq!(client.line("MSET {b}x 1 {b}y 2").await?, "+OK\r\n");
    assert_eq!(
        client.line("MGET {b}x {b}y").await?,
        "*2\r\n$1\r\n1\r\n$1\r\n2\r\n"
    );
    // Keyless commands are answered whatever the slots.
    assert_eq!(client.line("PING").await?, "+PONG\r\n");
    assert_eq!(client.line("DBSIZE").await?, ":3\r\n");
    node.stop().await
}

#[tokio::test]
async fn quit_and_protocol_errors_close_only_that_connection() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut bystander = node.client().await?;
    assert_eq!(bystander.line("SET k v").await?, "+OK\r\n");

    let mut quitter = node.client().await?;
    assert_eq!(quitter.line("QUIT").await?, "+OK\r\n");
    assert!(quitter.closed().await?);

    let mut bad = node.client().await?;
    bad.send_raw(b"*1\r\n$-5\r\n").await?;
    assert_eq!(
        bad.read_reply().await?.as_ref(),
        b"-ERR Protocol error: invalid bulk length\r\n"
    );
    assert!(bad.closed().await?);

    let mut huge = node.client().await?;
    huge.send_raw(b"*1\r\n$536870913\r\n").await?;
    assert_eq!(
        huge.read_reply().await?.as_ref(),
        b"-ERR Protocol error: invalid bulk length\r\n"
    );
    assert!(huge.closed().await?);

    // A client that vanishes mid-pipeline, with half a command sent.
    let mut vanishing = node.client().await?;
    vanishing
        .send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$10\r\nabc")
        .await?;
    drop(vanishing);

    assert_eq!(bystander.line("GET k").await?, "$1\r\nv\r\n");
    assert_eq!(bystander.line("EXISTS x").await?, ":0\r\n");
    node.stop().await
}

#[tokio::test]
async fn inline_commands_are_accepted() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut client = node.client().await?;
    client
        .send_raw(b"SET inline value\r\nGET inline\r\n")
        .await?;
    assert_eq!(client.read_reply().await?.as_ref(), b"+OK\r\n");
    assert_eq!(client.read_reply().await?.as_ref(), b"$5\r\nvalue\r\n");
    node.stop().await
}

#[tokio::test]
async fn shutdown_waits_for_connections_and_answers_what_was_read() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut idle = node.client().await?;
    assert_eq!(idle.line("PING").await?, "+PONG\r\n");
    node.stop().await?;
    assert!(idle.closed().await?);
    Ok(())
}

#[tokio::test]
async fn expired_keys_are_reclaimed_without_being_read() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut client = node.client().await?;
    for i in 0..20 {
        assert_eq!(
            client.line(&format!("SET tmp:{i} v PX 30")).await?,
            "+OK\r\n"
        );
    }
    assert_eq!(client.line("SET keep v").await?, "+OK\r\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    while node.state.keyspace.len() > 1 {
        assert!(
            Instant::now() < deadline,
            "active expiry did not reclaim keys"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(client.line("DBSIZE").await?, ":1\r\n");
    assert!(client
        .line("INFO stats")
        .await?
        .contains("expired_keys:20\r\n"));
    // Lazy expiry on access.
    assert_eq!(client.line("SET soon v PX 1").await?, "+OK\r\n");
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(client.line("GET soon").await?, "$-1\r\n");
    node.stop().await
}

#[tokio::test]
async fn scan_walks_every_key_exactly_once() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut client = node.client().await?;
    let mut batch = Vec::new();
    for i in 0..300 {
        batch.extend(encode(&[b"SET", format!("s:{i}").as_bytes(), b"v"]));
    }
    client.send_raw(&batch).await?;
    for _ in 0..300 {
        client.read_reply().await?;
    }
    let mut seen = BTreeSet::new();
    let mut cursor = "0".to_string();
    for round in 0..20_000 {
        let reply = client
            .cmd(&[
                b"SCAN",
                cursor.as_bytes(),
                b"COUNT",
                b"25",
                b"MATCH",
                b"s:1*",
            ])
            .await?;
        let text = String::from_utf8_lossy(&reply).into_owned();
        let lines: Vec<&str> = text.split("\r\n").collect();
        cursor = lines[2].to_string();
        for key in lines.iter().skip(5).step_by(2) {
            if !key.is_empty() {
                assert!(seen.insert(key.to_string()), "{key} returned twice");
            }
        }
        if cursor == "0" {
            break;
        }
        assert!(round < 19_999, "scan never finished");
    }
    let want: BTreeSet<String> = (0..300)
        .map(|i| format!("s:{i}"))
        .filter(|k| k.starts_with("s:1"))
        .collect();
    assert_eq!(seen, want);
    let keys = client.line("KEYS s:2?").await?;
    assert!(keys.starts_with("*10\r\n"), "{keys}");
    let random = client.line("RANDOMKEY").await?;
    assert!(
        random.starts_with("$3\r\ns:")
            || random.starts_with("$4\r\ns:")
            || random.starts_with("$5\r\ns:")
    );
    node.stop().await
}

#[tokio::test]
async fn cluster_subcommands_use_the_topology() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut client = node.client().await?;
    assert_eq!(
        client.line("CLUSTER MYID").await?,
        format!("$40\r\n{MYSELF}\r\n")
    );
    assert_eq!(client.line("CLUSTER KEYSLOT somekey").await?, ":11058\r\n");
    assert_eq!(client.line("SET somekey 1").await?, "+OK\r\n");
    assert_eq!(
        client.line("CLUSTER COUNTKEYSINSLOT 11058").await?,
        ":1\r\n"
    );
    assert_eq!(
        client.line("CLUSTER GETKEYSINSLOT 11058 10").await?,
        "*1\r\n$7\r\nsomekey\r\n"
    );
    assert_eq!(
        client.line("CLUSTER COUNTKEYSINSLOT 16384").await?,
        "-ERR Invalid slot\r\n"
    );
    assert_eq!(
        client.line("CLUSTER COUNTKEYSINSLOT x").await?,
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(
        client.line("CLUSTER GETKEYSINSLOT 1 -1").await?,
        "-ERR Invalid slot or number of keys\r\n"
    );
    assert_eq!(
        client.line("CLUSTER KEYSLOT").await?,
        "-ERR wrong number of arguments for 'cluster|keyslot' command\r\n"
    );
    assert_eq!(
        client.line("CLUSTER FOO").await?,
        "-ERR unknown subcommand 'FOO'. Try CLUSTER HELP.\r\n"
    );
    let info = client.line("CLUSTER INFO").await?;
    assert!(info.contains("cluster_state:ok\r\n"), "{info}");
    let nodes = client.line("CLUSTER NODES").await?;
    assert!(nodes.contains("myself,master"), "{nodes}");
    let slots = client.line("CLUSTER SLOTS").await?;
    assert!(slots.starts_with("*1\r\n*3\r\n:0\r\n:16383\r\n"), "{slots}");
    assert_eq!(
        client.line("SELECT 1").await?,
        "-ERR SELECT is not allowed in cluster mode\r\n"
    );
    assert_eq!(client.line("SELECT 0").await?, "+OK\r\n");
    node.stop().await
}

#[tokio::test]
async fn hello_info_client_and_config() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut client = node.client().await?;
    let hello = client.line("HELLO 3 SETNAME app").await?;
    assert!(hello.starts_with("%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n"));
    assert!(hello.ends_with(
        "$4\r\nmode\r\n$7\r\ncluster\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
    ));
    // RESP3 null.
    assert_eq!(client.line("GET missing").await?, "_\r\n");
    assert_eq!(client.line("CLIENT GETNAME").await?, "$3\r\napp\r\n");
    assert_eq!(
        client.line("CLIENT SETINFO LIB-NAME redis-py").await?,
        "+OK\r\n"
    );
    let info = client.line("CLIENT INFO").await?;
    assert!(
        info.contains(" name=app ") && info.trim_end().ends_with(" resp=3"),
        "{info}"
    );
    assert_eq!(client.line("HELLO 2").await?.lines().next(), Some("*14"));
    assert_eq!(client.line("SET a 1").await?, "+OK\r\n");
    let info = client.line("INFO").await?;
    for needle in [
        "# Server\r\n",
        "redis_version:7.0.15\r\n",
        "# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n",
        "cluster_enabled:1\r\n",
        "# Stats\r\n",
    ] {
        assert!(info.contains(needle), "{needle} missing in {info}");
    }
    assert_eq!(
        client.line("CONFIG GET save").await?,
        "*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
    );
    assert_eq!(
        client.line("CONFIG GET appendonly").await?,
        "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n"
    );
    assert_eq!(
        client.line("CONFIG GET cluster-node-timeout").await?,
        "*2\r\n$20\r\ncluster-node-timeout\r\n$5\r\n15000\r\n"
    );
    let count = client.line("COMMAND COUNT").await?;
    assert!(count.starts_with(':'), "{count}");
    let docs = client.line("COMMAND DOCS get").await?;
    assert!(
        docs.contains("Get the value of a key") || docs.contains("summary"),
        "{docs}"
    );
    node.stop().await
}

#[tokio::test]
async fn a_failed_master_makes_the_cluster_down_by_the_shared_rule() -> anyhow::Result<()> {
    let failed = |port| {
        let mut topology = split_topology(port);
        topology.observed.nodes[1].pfail = true;
        topology.observed.nodes[1].fail = true;
        topology
    };
    let node = TestNode::start_with(failed).await?;
    let mut client = node.client().await?;
    // "b" (3300) is ours, "foo" (12182) the failed node's: with full coverage required, both down.
    assert_eq!(
        client.line("GET b").await?,
        "-CLUSTERDOWN The cluster is down\r\n"
    );
    assert_eq!(
        client.line("SET foo 1").await?,
        "-CLUSTERDOWN The cluster is down\r\n"
    );
    assert_eq!(client.line("PING").await?, "+PONG\r\n");
    node.stop().await?;

    let partial = |port| {
        let mut topology = failed(port);
        topology.intent.settings.require_full_coverage = false;
        topology
    };
    let node = TestNode::start_with(partial).await?;
    let mut client = node.client().await?;
    assert_eq!(client.line("SET b 1").await?, "+OK\r\n");
    assert_eq!(
        client.line("GET foo").await?,
        "-CLUSTERDOWN Hash slot not served\r\n"
    );
    node.stop().await
}

#[tokio::test]
async fn every_acknowledged_write_is_applied_when_shutdown_cuts_a_pipeline() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let state = node.state.clone();
    let mut client = node.client().await?;
    let mut batch = Vec::new();
    for i in 0..5000 {
        batch.extend(encode(&[b"SET", format!("p:{i}").as_bytes(), b"v"]));
    }
    client.send_raw(&batch).await?;
    assert_eq!(client.read_reply().await?.as_ref(), b"+OK\r\n");
    node.stop().await?;
    let mut acknowledged = 1;
    while let Ok(reply) = client.read_reply().await {
        assert_eq!(reply.as_ref(), b"+OK\r\n");
        acknowledged += 1;
        assert!(acknowledged <= 5000);
    }
    for i in 0..acknowledged {
        let key = format!("p:{i}");
        assert!(
            state
                .keyspace
                .lock_key(key.as_bytes())
                .get(key.as_bytes())
                .is_some(),
            "{key} acknowledged but missing"
        );
    }
    Ok(())
}
