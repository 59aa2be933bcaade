//! Pub/sub across a real local cluster: a subscriber on one proxy receives what is published
//! through a second proxy process and what is published straight on another shard node (the nodes
//! forward PUBLISH to each other, as Redis Cluster's bus does); SSUBSCRIBE / SPUBLISH through the
//! proxies reach the shard channel's owner; PUBSUB NUMSUB counts the subscriber.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tessera_e2e::cluster::LocalCluster;
use tessera_e2e::resp::RespClient;
use tessera_e2e::{bin_dir, free_port, wait};

const NODE_TIMEOUT: Duration = Duration::from_secs(5);
const READY_LIMIT: Duration = Duration::from_secs(20);

/// A second proxy process of the cluster, stopped by its own handle when dropped.
struct SecondProxy {
    child: Child,
    port: u16,
}

impl SecondProxy {
    /// Starts `proxy` against the cluster's control plane and waits until it serves a keyed read.
    fn start(cluster: &LocalCluster) -> SecondProxy {
        let port = free_port();
        let child = Command::new(bin_dir().join("proxy"))
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--control-plane",
                &format!("http://127.0.0.1:{}", cluster.cp_port),
            ])
            // The cluster's nodes refuse backend connections without their secret.
            .env("TESSERA_NODE_SECRET", &cluster.node_secret)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a second proxy");
        let proxy = SecondProxy { child, port };
        wait::until("the second proxy to serve reads", READY_LIMIT, || {
            let mut client = RespClient::connect(port).ok()?;
            (client.call_str(&["GET", "pubsub:ready"]) == "$-1\r\n").then_some(())
        });
        proxy
    }
}

impl Drop for SecondProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
    let cluster = LocalCluster::up(NODE_TIMEOUT);
    let second = SecondProxy::start(&cluster);

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
    let mut publisher = RespClient::connect(second.port).expect("connect to proxy 2");
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
    let mut shard_subscriber = RespClient::connect(second.port).expect("connect to proxy 2");
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
