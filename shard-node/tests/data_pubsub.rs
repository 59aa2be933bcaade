//! Pub/sub on a shard node: a scripted conversation of several clients (a RESP2 subscriber, a
//! publisher, a RESP3 subscriber) compared byte for byte with a real redis-server; the pubsub
//! output limit (a subscriber that never reads is disconnected); and, on three in-process nodes,
//! PUBLISH reaching subscribers of every node, SSUBSCRIBE / SPUBLISH routed by slot (MOVED,
//! CROSSSLOT), and a dead peer not stalling PUBLISH.

mod data_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use bytes::Bytes;
use data_support::{words, RawClient, TestNode};
use tessera_proto::slot::key_hash_slot;
use tessera_testkit::RedisServer;

/// `(client, replies to read, command line)`: an empty line only reads (a message pushed to the
/// client). Client 0 is a RESP2 subscriber, 1 a publisher, 2 switches to RESP3 (its HELLO reply
/// is not compared: the server's id and version differ). Every command here behaves the same on a
/// cluster node owning every slot and on a standalone redis-server; orders Redis leaves to its
/// hash tables (UNSUBSCRIBE of several channels without arguments, PUBSUB CHANNELS of several)
/// are avoided.
const SCRIPT: &[(usize, usize, &str)] = &[
    (0, 1, "SUBSCRIBE"),
    (0, 2, "SUBSCRIBE a b"),
    (0, 1, "SUBSCRIBE a"),
    (0, 1, "GET k"),
    (0, 1, "SET k v"),
    (0, 1, "CLIENT LIST"),
    (0, 1, "PUBSUB NUMPAT"),
    (0, 1, "PING"),
    (0, 1, "PING hi"),
    (0, 1, "PING a b"),
    (0, 1, "PSUBSCRIBE n*"),
    (0, 1, "PSUBSCRIBE m[ae]ws"),
    (1, 1, "PUBLISH a hello"),
    (0, 1, ""),
    // One pattern each. (Several patterns matching one channel come in hash-table order, on
    // Redis as here.)
    (1, 1, "PUBLISH news x"),
    (0, 1, ""),
    (1, 1, "PUBLISH maws y"),
    (0, 1, ""),
    (1, 1, "PUBLISH nobody x"),
    (1, 1, "PUBLISH a"),
    (1, 1, "PUBSUB NUMSUB a b c"),
    (1, 1, "PUBSUB NUMSUB"),
    (1, 1, "PUBSUB NUMPAT"),
    (1, 1, "PUBSUB CHANNELS a"),
    (1, 1, "PUBSUB CHANNELS z*"),
    (1, 1, "PUBSUB CHANNELS [a]"),
    (1, 1, "PUBSUB CHANNELS a b"),
    (1, 1, "PUBSUB NUMPAT x"),
    (1, 1, "PUBSUB FOO"),
    (1, 1, "PUBSUB"),
    (0, 1, "UNSUBSCRIBE a"),
    (0, 1, "UNSUBSCRIBE nothere"),
    (0, 1, "PUNSUBSCRIBE n*"),
    (0, 1, "PUNSUBSCRIBE m[ae]ws"),
    (0, 1, "PUNSUBSCRIBE"),
    (0, 1, "UNSUBSCRIBE"),
    (0, 1, "UNSUBSCRIBE"),
    (0, 1, "PUNSUBSCRIBE"),
    (0, 1, "SUNSUBSCRIBE"),
    (0, 1, "GET k"),
    (0, 1, "PING"),
    (0, 1, "SSUBSCRIBE s1"),
    (0, 1, "GET k"),
    (0, 1, "PING"),
    (0, 2, "SSUBSCRIBE {s1}x s1"),
    (1, 1, "SPUBLISH s1 m"),
    (0, 1, ""),
    (1, 1, "SPUBLISH s1"),
    (1, 1, "SPUBLISH nobody m"),
    (1, 1, "PUBLISH s1 m"),
    (1, 1, "PUBSUB SHARDCHANNELS s*"),
    (1, 1, "PUBSUB SHARDCHANNELS q*"),
    (1, 1, "PUBSUB SHARDNUMSUB s1 {s1}x nobody"),
    (1, 1, "PUBSUB CHANNELS"),
    (0, 1, "SUNSUBSCRIBE s1"),
    (0, 1, "UNSUBSCRIBE"),
    (0, 1, "SUNSUBSCRIBE"),
    (0, 1, "SUNSUBSCRIBE"),
    (0, 1, "ECHO normal"),
    // RESP3: pushes, and normal commands stay allowed while subscribed.
    (2, 1, "HELLO 3"),
    (2, 2, "SUBSCRIBE c d"),
    (2, 1, "GET k"),
    (2, 1, "PING"),
    (2, 1, "PSUBSCRIBE *"),
    (1, 1, "PUBLISH c one"),
    (2, 2, ""),
    (2, 3, "PUBLISH d self"),
    (2, 1, "UNSUBSCRIBE c"),
    (2, 1, "PUNSUBSCRIBE"),
    (2, 1, "UNSUBSCRIBE"),
    (2, 1, "UNSUBSCRIBE"),
    (2, 1, "SSUBSCRIBE s2"),
    (1, 1, "SPUBLISH s2 m"),
    (2, 1, ""),
    (2, 1, "SUNSUBSCRIBE"),
    (0, 1, "SUBSCRIBE q"),
    // QUIT's unsubscribing races the next command of another client, on Redis as here.
    (0, 1, "QUIT"),
];

/// Runs `SCRIPT` against `addr`, returning every reply with the step it answered.
async fn run_script(addr: SocketAddr) -> anyhow::Result<Vec<(String, Bytes)>> {
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(RawClient::connect(addr).await?);
    }
    let mut replies = Vec::new();
    for (step, &(client, count, line)) in SCRIPT.iter().enumerate() {
        let conn = &mut clients[client];
        if !line.is_empty() {
            conn.send_raw(&data_support::encode(&words(line))).await?;
        }
        for n in 0..count {
            let reply = conn
                .read_reply()
                .await
                .with_context(|| format!("step {step} `{line}` reply {n}"))?;
            if line == "HELLO 3" {
                continue;
            }
            replies.push((
                format!("step {step} client {client} `{line}` reply {n}"),
                reply,
            ));
        }
    }
    // QUIT closed client 0 after its reply, as Redis does; unsubscribing it went with it.
    ensure!(
        clients[0].closed().await?,
        "QUIT did not close the subscriber"
    );
    Ok(replies)
}

#[tokio::test]
async fn pubsub_matches_redis_byte_for_byte() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let want = run_script(redis.addr()).await?;
    let got = run_script(node.addr).await?;
    assert_eq!(want.len(), got.len());
    for ((step, want), (_, got)) in want.iter().zip(&got) {
        assert_eq!(
            String::from_utf8_lossy(want),
            String::from_utf8_lossy(got),
            "{step}"
        );
    }
    node.stop().await
}

/// Every message of a long run arrives, in order, to a subscriber that reads.
#[tokio::test]
async fn many_messages_arrive_in_order() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut subscriber = node.client().await?;
    let mut publisher = node.client().await?;
    subscriber.line("SUBSCRIBE feed").await?;
    const COUNT: usize = 2000;
    let mut pipeline = Vec::new();
    for i in 0..COUNT {
        pipeline.extend(data_support::encode(&[
            b"PUBLISH",
            b"feed",
            format!("m{i}").as_bytes(),
        ]));
    }
    publisher.send_raw(&pipeline).await?;
    for i in 0..COUNT {
        assert_eq!(publisher.read_reply().await?.as_ref(), b":1\r\n");
        let body = format!("m{i}");
        let want = format!(
            "*3\r\n$7\r\nmessage\r\n$4\r\nfeed\r\n${}\r\n{body}\r\n",
            body.len()
        );
        assert_eq!(
            String::from_utf8_lossy(&subscriber.read_reply().await?),
            want
        );
    }
    node.stop().await
}

/// A subscriber that never reads is disconnected once its queued output passes the hard limit
/// (32 MB), and the publisher goes on unharmed.
#[tokio::test]
async fn slow_subscriber_is_disconnected_at_the_output_limit() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut subscriber = node.client().await?;
    let mut publisher = node.client().await?;
    assert_eq!(
        subscriber.line("SUBSCRIBE big").await?,
        "*3\r\n$9\r\nsubscribe\r\n$3\r\nbig\r\n:1\r\n"
    );
    let payload = vec![b'x'; 512 * 1024];
    // 96 x 512 KB = 48 MB, well past the limit even after what the socket buffers take.
    for _ in 0..96 {
        let reply = publisher.cmd(&[b"PUBLISH", b"big", &payload]).await?;
        assert!(reply.as_ref() == b":1\r\n" || reply.as_ref() == b":0\r\n");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if publisher.line("PUBSUB NUMSUB big").await? == "*2\r\n$3\r\nbig\r\n:0\r\n" {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the slow subscriber was not dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        subscriber.closed().await?,
        "the subscriber's connection stayed open"
    );
    assert_eq!(publisher.line("PUBLISH big x").await?, ":0\r\n");
    node.stop().await
}

/// A channel name whose slot is served by node `owner` of `start_cluster` (0-5460, 5461-10922,
/// 10923-16383).
fn channel_of(owner: usize) -> String {
    (0..)
        .map(|i| format!("ch{i}"))
        .find(|ch| {
            let slot = key_hash_slot(ch.as_bytes());
            let by = if slot <= 5460 {
                0
            } else if slot <= 10922 {
                1
            } else {
                2
            };
            by == owner
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn publish_reaches_every_node_and_shard_channels_route_by_slot() -> anyhow::Result<()> {
    let mut nodes = TestNode::start_cluster().await?;
    let mut sub0 = nodes[0].client().await?;
    let mut sub1 = nodes[1].client().await?;
    sub0.line("SUBSCRIBE news").await?;
    sub0.line("PSUBSCRIBE n*").await?;
    sub1.line("SUBSCRIBE news").await?;

    // Published on node 2, which has no subscriber: it counts its own receivers only.
    let mut pub2 = nodes[2].client().await?;
    assert_eq!(pub2.line("PUBLISH news hi").await?, ":0\r\n");
    assert_eq!(
        String::from_utf8_lossy(&sub0.read_reply().await?),
        "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&sub0.read_reply().await?),
        "*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&sub1.read_reply().await?),
        "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
    );
    // Published on node 0: two local receivers; node 1's subscriber hears it too.
    let mut pub0 = nodes[0].client().await?;
    assert_eq!(pub0.line("PUBLISH news again").await?, ":2\r\n");
    assert!(sub1.read_reply().await?.ends_with(b"$5\r\nagain\r\n"));
    assert_eq!(sub0.read_reply().await?.first(), Some(&b'*'));
    assert_eq!(sub0.read_reply().await?.first(), Some(&b'*'));
    assert_eq!(
        pub0.line("PUBSUB NUMSUB news").await?,
        "*2\r\n$4\r\nnews\r\n:1\r\n"
    );

    // Shard channels: only the slot's owner takes them.
    let on1 = channel_of(1);
    let slot = key_hash_slot(on1.as_bytes());
    let moved = format!("-MOVED {slot} {}\r\n", nodes[1].addr);
    let mut client0 = nodes[0].client().await?;
    assert_eq!(client0.line(&format!("SSUBSCRIBE {on1}")).await?, moved);
    assert_eq!(client0.line(&format!("SPUBLISH {on1} m")).await?, moved);
    let crossslot = "-CROSSSLOT Keys in request don't hash to the same slot\r\n";
    assert_eq!(
        client0
            .line(&format!("SSUBSCRIBE {} {on1}", channel_of(0)))
            .await?,
        crossslot
    );
    // Nothing was subscribed by the refused commands: client 0 is not in subscribed mode.
    assert_eq!(client0.line("PING").await?, "+PONG\r\n");
    let mut ssub = nodes[1].client().await?;
    assert_eq!(
        ssub.line(&format!("SSUBSCRIBE {on1}")).await?,
        format!(
            "*3\r\n$10\r\nssubscribe\r\n${}\r\n{on1}\r\n:1\r\n",
            on1.len()
        )
    );
    let mut pub1 = nodes[1].client().await?;
    assert_eq!(pub1.line(&format!("SPUBLISH {on1} sm")).await?, ":1\r\n");
    assert_eq!(
        String::from_utf8_lossy(&ssub.read_reply().await?),
        format!(
            "*3\r\n$8\r\nsmessage\r\n${}\r\n{on1}\r\n$2\r\nsm\r\n",
            on1.len()
        )
    );
    // SPUBLISH stays on the owner: a PUBLISH subscriber of the same name elsewhere hears nothing.
    sub0.line(&format!("SUBSCRIBE {on1}")).await?;
    assert_eq!(pub1.line(&format!("SPUBLISH {on1} only")).await?, ":1\r\n");
    assert!(ssub.read_reply().await?.ends_with(b"$4\r\nonly\r\n"));
    assert_eq!(pub2.line(&format!("PUBLISH {on1} plain")).await?, ":0\r\n");
    let next = sub0.read_reply().await?;
    assert!(
        next.ends_with(b"$5\r\nplain\r\n") && next.starts_with(b"*3\r\n$7\r\nmessage"),
        "the SPUBLISH leaked to a PUBLISH subscriber: {next:?}"
    );

    // A dead peer does not stall PUBLISH for the others.
    let dead = nodes.pop().context("three nodes")?;
    dead.stop().await?;
    let started = Instant::now();
    for i in 0..200 {
        assert_eq!(pub0.line(&format!("PUBLISH news d{i}")).await?, ":2\r\n");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "PUBLISH stalled behind a dead peer: {:?}",
        started.elapsed()
    );
    for i in 0..200 {
        let message = sub1.read_reply().await?;
        let body = format!("d{i}");
        assert!(message.ends_with(format!("${}\r\n{body}\r\n", body.len()).as_bytes()));
    }
    for node in nodes {
        node.stop().await?;
    }
    Ok(())
}
