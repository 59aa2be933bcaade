//! Pub/sub across a whole cluster (in-process): a subscriber on one proxy receives what is
//! published through a second proxy and what is published straight on another shard node (the nodes
//! forward PUBLISH to each other, as Redis Cluster's bus does); SSUBSCRIBE / SPUBLISH through the
//! proxies reach the shard channel's owner; PUBSUB NUMSUB counts the subscriber.

use std::time::Duration;

use tessera_e2e::inprocess::InProcessCluster;
use tessera_e2e::resp::RespClient;

const NODE_TIMEOUT: Duration = Duration::from_secs(5);

fn bulk(text: &str) -> String {
    format!("${}\r\n{text}\r\n", text.len())
}

fn message(channel: &str, body: &str) -> String {
    format!("*3\r\n$7\r\nmessage\r\n{}{}", bulk(channel), bulk(body))
}

fn next_text(client: &mut RespClient) -> String {
    let reply = client
        .read_reply()
        .expect("read a message")
        .expect("connection open");
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn pubsub_across_proxies_and_nodes() {
    let cluster = InProcessCluster::up(NODE_TIMEOUT);
    let second = cluster.extra_proxy().expect("start a second proxy");

    let mut subscriber = RespClient::connect(cluster.proxy_port).expect("connect to proxy 1");
    assert_eq!(
        subscriber.call_str(&["SUBSCRIBE", "news"]),
        format!("*3\r\n$9\r\nsubscribe\r\n{}:1\r\n", bulk("news"))
    );
    assert_eq!(
        subscriber.call_str(&["PSUBSCRIBE", "sport.*"]),
        format!("*3\r\n$10\r\npsubscribe\r\n{}:2\r\n", bulk("sport.*"))
    );
    // RESP2 subscribed mode, answered by the node behind the proxy.
    assert_eq!(
        subscriber.call_str(&["GET", "k"]),
        "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET \
         are allowed in this context\r\n"
    );
    assert_eq!(
        subscriber.call_str(&["PING"]),
        "*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    );

    // Published through the second proxy.
    let mut publisher = RespClient::connect(second).expect("connect to proxy 2");
    assert_eq!(
        publisher.call_str(&["PUBSUB", "NUMSUB", "news", "none"]),
        format!("*4\r\n{}:1\r\n{}:0\r\n", bulk("news"), bulk("none"))
    );
    assert_eq!(publisher.call_str(&["PUBSUB", "NUMPAT"]), ":1\r\n");
    publisher.call_str(&["PUBLISH", "news", "via-proxy-2"]);
    assert_eq!(next_text(&mut subscriber), message("news", "via-proxy-2"));

    // Published straight on each shard node: every node forwards to the others.
    for (i, &port) in cluster.node_ports.iter().enumerate() {
        let mut node = cluster.node_client(port);
        let body = format!("from-node-{i}");
        node.call_str(&["PUBLISH", "sport.tennis", &body]);
        assert_eq!(
            next_text(&mut subscriber),
            format!(
                "*4\r\n$8\r\npmessage\r\n{}{}{}",
                bulk("sport.*"),
                bulk("sport.tennis"),
                bulk(&body)
            )
        );
    }

    // Shard channels: subscribed through proxy 2 (on the channel's owner), published through
    // proxy 1 and straight on the owner; a non-owner answers MOVED.
    let mut shard_subscriber = RespClient::connect(second).expect("connect to proxy 2");
    assert_eq!(
        shard_subscriber.call_str(&["SSUBSCRIBE", "orders"]),
        format!("*3\r\n$10\r\nssubscribe\r\n{}:1\r\n", bulk("orders"))
    );
    let mut shard_publisher = RespClient::connect(cluster.proxy_port).expect("connect to proxy 1");
    assert_eq!(
        shard_publisher.call_str(&["PUBSUB", "SHARDNUMSUB", "orders"]),
        format!("*2\r\n{}:1\r\n", bulk("orders"))
    );
    assert_eq!(
        shard_publisher.call_str(&["SPUBLISH", "orders", "o1"]),
        ":1\r\n"
    );
    assert_eq!(
        next_text(&mut shard_subscriber),
        format!("*3\r\n$8\r\nsmessage\r\n{}{}", bulk("orders"), bulk("o1"))
    );
    let slot = tessera_proto::slot::key_hash_slot(b"orders");
    let mut moved = 0;
    for &port in &cluster.node_ports {
        let mut node = cluster.node_client(port);
        let reply = node.call_str(&["SPUBLISH", "orders", "direct"]);
        if reply.starts_with(&format!("-MOVED {slot} 127.0.0.1:")) {
            moved += 1;
        } else {
            assert_eq!(reply, ":1\r\n");
            assert_eq!(
                next_text(&mut shard_subscriber),
                format!(
                    "*3\r\n$8\r\nsmessage\r\n{}{}",
                    bulk("orders"),
                    bulk("direct")
                )
            );
        }
    }
    assert_eq!(moved, 2, "only the slot's owner takes SPUBLISH");

    // Unsubscribing everything leaves subscribed mode.
    subscriber.call_str(&["UNSUBSCRIBE", "news"]);
    assert_eq!(
        subscriber.call_str(&["PUNSUBSCRIBE", "sport.*"]),
        format!("*3\r\n$12\r\npunsubscribe\r\n{}:0\r\n", bulk("sport.*"))
    );
    assert_eq!(subscriber.call_str(&["PING"]), "+PONG\r\n");
    assert_eq!(
        publisher.call_str(&["PUBSUB", "NUMSUB", "news"]),
        format!("*2\r\n{}:0\r\n", bulk("news"))
    );
}
