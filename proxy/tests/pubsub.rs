//! Pub/Sub through the proxy against a real three-master Redis Cluster: replies byte for byte as
//! a node's, messages published through another proxy instance or on any node, shard channels,
//! PUBSUB counts added up over the masters, RESP3 pushes, and a slow subscriber dropped at the
//! output buffer limit.

mod support;

use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use support::{bulk, encode, error, wait_for, Client, Harness};
use tessera_proto::resp::Frame;
use tessera_proto::topology::NodeId;

fn message(kind: &str, parts: &[&str]) -> Frame {
    let mut items = vec![bulk(kind)];
    items.extend(parts.iter().map(|p| bulk(p)));
    Frame::Array(items)
}

fn confirm(kind: &str, channel: &str, count: i64) -> Frame {
    Frame::Array(vec![bulk(kind), bulk(channel), Frame::Integer(count)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribed_mode_replies_as_a_node() -> Result<()> {
    let h = Harness::start().await?;
    let mut proxy = h.client().await?;
    let mut node = Client::connect(h.cluster.nodes[0].port).await?;
    let script: &[&[&str]] = &[
        &["UNSUBSCRIBE"],
        &["UNSUBSCRIBE", "a", "b"],
        &["PUNSUBSCRIBE"],
        &["SUBSCRIBE", "a", "b"],
        &["SUBSCRIBE", "a"],
        &["PSUBSCRIBE", "p*"],
        &["PING"],
        &["PING", "x"],
        &["GET", "{bar}a"],
        &["NOSUCH"],
        &["PUBSUB", "NUMPAT"],
        &["UNSUBSCRIBE", "a"],
        &["UNSUBSCRIBE"],
        &["PUNSUBSCRIBE"],
        &["PING"],
        &["GET", "{bar}a"],
        &["SUBSCRIBE", "c"],
        &["RESET"],
        &["PING"],
    ];
    for args in script {
        proxy.send_raw(&encode(args)).await?;
        node.send_raw(&encode(args)).await?;
        let (p, n) = (proxy.read_quiet().await?, node.read_quiet().await?);
        assert_eq!(
            String::from_utf8_lossy(&p),
            String::from_utf8_lossy(&n),
            "{args:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_subscribers_on_any_proxy() -> Result<()> {
    let h = Harness::start().await?;
    let second = h.extra_proxy().await?;
    let mut sub = h.client().await?;
    let mut publisher = Client::connect(second).await?;
    sub.send_raw(&encode(&["SUBSCRIBE", "news"])).await?;
    assert_eq!(sub.read().await?, confirm("subscribe", "news", 1));
    sub.send_raw(&encode(&["PSUBSCRIBE", "n*"])).await?;
    assert_eq!(sub.read().await?, confirm("psubscribe", "n*", 2));
    // Through the other proxy instance.
    assert!(matches!(
        publisher.cmd(&["PUBLISH", "news", "hello"]).await?,
        Frame::Integer(_)
    ));
    assert_eq!(sub.read().await?, message("message", &["news", "hello"]));
    assert_eq!(
        sub.read().await?,
        message("pmessage", &["n*", "news", "hello"])
    );
    // Published on another node directly: the cluster bus carries it.
    let mut far = Client::connect(h.cluster.nodes[2].port).await?;
    far.cmd(&["PUBLISH", "news", "far"]).await?;
    assert_eq!(sub.read().await?, message("message", &["news", "far"]));
    assert_eq!(
        sub.read().await?,
        message("pmessage", &["n*", "news", "far"])
    );
    // PUBSUB counts add up over every master (one subscriber here, one on a node directly).
    let mut direct = Client::connect(h.cluster.nodes[1].port).await?;
    direct.send_raw(&encode(&["SUBSCRIBE", "news"])).await?;
    direct.read().await?;
    direct.send_raw(&encode(&["PSUBSCRIBE", "x*"])).await?;
    direct.read().await?;
    assert_eq!(
        publisher.cmd(&["PUBSUB", "NUMSUB", "news", "none"]).await?,
        Frame::Array(vec![
            bulk("news"),
            Frame::Integer(2),
            bulk("none"),
            Frame::Integer(0)
        ])
    );
    assert_eq!(
        publisher.cmd(&["PUBSUB", "NUMPAT"]).await?,
        Frame::Integer(2)
    );
    assert_eq!(
        publisher.cmd(&["PUBSUB", "CHANNELS"]).await?,
        Frame::Array(vec![bulk("news")])
    );
    // Subscribed-mode restrictions as Redis (RESP2).
    assert_eq!(
        sub.cmd(&["GET", "k"]).await?,
        error("ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
    );
    // Leaving subscribed mode: normal commands route again (to any shard).
    sub.send_raw(&encode(&["UNSUBSCRIBE"])).await?;
    assert_eq!(sub.read().await?, confirm("unsubscribe", "news", 1));
    sub.send_raw(&encode(&["PUNSUBSCRIBE"])).await?;
    assert_eq!(sub.read().await?, confirm("punsubscribe", "n*", 0));
    for key in ["foo", "bar", "somekey"] {
        assert_eq!(
            sub.cmd(&["SET", key, "1"]).await?,
            Frame::Simple(Bytes::from_static(b"OK"))
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_channels_and_resp3_pushes() -> Result<()> {
    let h = Harness::start().await?;
    let second = h.extra_proxy().await?;
    let mut sub = h.client().await?;
    let mut publisher = Client::connect(second).await?;
    // `foo` hashes to 12182 (node 2), `bar` to 5061 (node 0): two shard connections.
    sub.send_raw(&encode(&["SSUBSCRIBE", "foo"])).await?;
    assert_eq!(sub.read().await?, confirm("ssubscribe", "foo", 1));
    sub.send_raw(&encode(&["SSUBSCRIBE", "bar"])).await?;
    assert_eq!(sub.read().await?, confirm("ssubscribe", "bar", 1));
    assert_eq!(
        sub.cmd(&["SSUBSCRIBE", "foo", "bar"]).await?,
        error("CROSSSLOT Keys in request don't hash to the same slot")
    );
    assert_eq!(
        publisher.cmd(&["SPUBLISH", "foo", "m1"]).await?,
        Frame::Integer(1)
    );
    assert_eq!(sub.read().await?, message("smessage", &["foo", "m1"]));
    assert_eq!(
        publisher.cmd(&["SPUBLISH", "bar", "m2"]).await?,
        Frame::Integer(1)
    );
    assert_eq!(sub.read().await?, message("smessage", &["bar", "m2"]));
    assert_eq!(
        publisher
            .cmd(&["PUBSUB", "SHARDNUMSUB", "foo", "bar"])
            .await?,
        Frame::Array(vec![
            bulk("foo"),
            Frame::Integer(1),
            bulk("bar"),
            Frame::Integer(1)
        ])
    );
    sub.send_raw(&encode(&["SUNSUBSCRIBE"])).await?;
    let mut gone = vec![sub.read().await?, sub.read().await?];
    gone.sort_by_key(|f| format!("{f:?}"));
    assert_eq!(
        gone,
        vec![
            confirm("sunsubscribe", "bar", 0),
            confirm("sunsubscribe", "foo", 0)
        ]
    );
    assert_eq!(sub.cmd(&["GET", "foo"]).await?, Frame::Null);

    // RESP3: confirmations and messages are pushes; other commands work while subscribed.
    let mut r3 = h.client().await?;
    r3.cmd(&["HELLO", "3"]).await?;
    r3.send_raw(&encode(&["SUBSCRIBE", "ch"])).await?;
    assert_eq!(
        &r3.read_raw().await?[..],
        b">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
    );
    r3.send_raw(&encode(&["GET", "foo"])).await?;
    assert_eq!(&r3.read_raw().await?[..], b"_\r\n");
    publisher.cmd(&["PUBLISH", "ch", "hi"]).await?;
    assert_eq!(
        &r3.read_raw().await?[..],
        b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"
    );
    r3.send_raw(&encode(&["PING"])).await?;
    assert_eq!(&r3.read_raw().await?[..], b"+PONG\r\n");
    Ok(())
}

/// The next frame that is not a `message` (of a plain channel).
async fn read_past_messages(client: &mut Client) -> Result<Frame> {
    loop {
        match client.read().await? {
            Frame::Array(items) if items.first() == Some(&bulk("message")) => continue,
            other => return Ok(other),
        }
    }
}

/// A shard subscription follows its slot: when the slot moves to another master, its old node
/// drops the channel (telling the proxy with a `sunsubscribe`), the proxy subscribes at the new
/// owner once the topology names it, and the client, told nothing, receives what is published
/// there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_subscription_follows_its_slot() -> Result<()> {
    let h = Harness::start().await?;
    let mut sub = h.client().await?;
    let mut publisher = h.client().await?;
    // `foo` hashes to 12182, node 2's; the slot moves to node 0.
    let (slot, source, target) = (12182u32, &h.cluster.nodes[2], &h.cluster.nodes[0]);
    sub.send_raw(&encode(&["SSUBSCRIBE", "foo"])).await?;
    assert_eq!(sub.read().await?, confirm("ssubscribe", "foo", 1));
    sub.send_raw(&encode(&["SUBSCRIBE", "news"])).await?;
    assert_eq!(sub.read().await?, confirm("subscribe", "news", 1));
    // A busy subscriber: messages on another channel every few milliseconds all along (the
    // wait for the new owner must not restart with each of them).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut news = h.client().await?;
    let chatter = tokio::spawn({
        let stop = stop.clone();
        async move {
            for i in 0..5000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                news.cmd(&["PUBLISH", "news", &i.to_string()]).await?;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            anyhow::Ok(())
        }
    });

    // Moved as `redis-cli --cluster reshard` moves an empty slot: the target takes it first,
    // then the source gives it up (and drops its shard channels).
    let ok = Frame::Simple(Bytes::from_static(b"OK"));
    let slot_arg = slot.to_string();
    for (node, args) in [
        (
            target,
            ["CLUSTER", "SETSLOT", &slot_arg, "IMPORTING", &source.id],
        ),
        (
            source,
            ["CLUSTER", "SETSLOT", &slot_arg, "MIGRATING", &target.id],
        ),
        (
            target,
            ["CLUSTER", "SETSLOT", &slot_arg, "NODE", &target.id],
        ),
        (
            source,
            ["CLUSTER", "SETSLOT", &slot_arg, "NODE", &target.id],
        ),
    ] {
        let mut c = Client::connect(node.port).await?;
        assert_eq!(c.cmd(&args).await?, ok, "{args:?}");
    }
    // The control plane learns of the move a little later.
    let mut topology = h.cluster.topology(2);
    let target_index = topology
        .index_of(&NodeId::parse(&target.id)?)
        .context("target in the topology")?;
    topology.intent.slots[slot as usize] = Some(target_index as u16);
    h.publish(topology);

    // Ready once the new owner holds the proxy's subscription.
    wait_for(Duration::from_secs(5), || {
        let port = target.port;
        async move {
            let Ok(mut c) = Client::connect(port).await else {
                return false;
            };
            c.cmd(&["PUBSUB", "SHARDNUMSUB", "foo"]).await.ok()
                == Some(Frame::Array(vec![bulk("foo"), Frame::Integer(1)]))
        }
    })
    .await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    chatter.await??;
    assert_eq!(
        publisher.cmd(&["SPUBLISH", "foo", "after"]).await?,
        Frame::Integer(1)
    );
    // All the client hears before it: the other channel's messages; no notice of the move, no
    // second confirmation.
    assert_eq!(
        read_past_messages(&mut sub).await?,
        message("smessage", &["foo", "after"])
    );
    let list = publisher.text(&["CLIENT", "LIST"]).await?;
    assert!(list.contains("ssub=1"), "{list}");
    sub.send_raw(&encode(&["SUNSUBSCRIBE", "foo"])).await?;
    assert_eq!(
        read_past_messages(&mut sub).await?,
        confirm("sunsubscribe", "foo", 0)
    );
    sub.send_raw(&encode(&["UNSUBSCRIBE"])).await?;
    assert_eq!(
        read_past_messages(&mut sub).await?,
        confirm("unsubscribe", "news", 0)
    );
    assert_eq!(sub.cmd(&["GET", "foo"]).await?, Frame::Null);
    Ok(())
}

/// When the topology never names a moved shard channel's new owner (within the backend
/// timeout), the client gets its old node's `sunsubscribe`, as a Redis Cluster client would, and
/// with nothing left subscribed is a normal client again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_subscription_dropped_with_no_new_owner_is_told() -> Result<()> {
    let h = Harness::start_with_timeout(Duration::from_secs(1)).await?;
    let mut sub = h.client().await?;
    let (slot, source, target) = ("12182", &h.cluster.nodes[2], &h.cluster.nodes[0]);
    sub.send_raw(&encode(&["SSUBSCRIBE", "foo"])).await?;
    assert_eq!(sub.read().await?, confirm("ssubscribe", "foo", 1));
    let ok = Frame::Simple(Bytes::from_static(b"OK"));
    for (node, args) in [
        (target, ["CLUSTER", "SETSLOT", slot, "NODE", &target.id]),
        (source, ["CLUSTER", "SETSLOT", slot, "NODE", &target.id]),
    ] {
        let mut c = Client::connect(node.port).await?;
        assert_eq!(c.cmd(&args).await?, ok, "{args:?}");
    }
    assert_eq!(sub.read().await?, confirm("sunsubscribe", "foo", 0));
    assert_eq!(sub.cmd(&["GET", "foo"]).await?, Frame::Null);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_subscriber_is_dropped_at_the_output_limit() -> Result<()> {
    let h = Harness::start().await?;
    let mut slow = h.client().await?;
    slow.send_raw(&encode(&["SUBSCRIBE", "flood"])).await?;
    assert_eq!(slow.read().await?, confirm("subscribe", "flood", 1));
    let mut publisher = h.client().await?;
    let payload = "x".repeat(1024 * 1024);
    // 48 MB for a client that reads nothing: past the 32 MB hard limit, whatever the socket
    // buffers hold.
    for _ in 0..48 {
        publisher.cmd(&["PUBLISH", "flood", &payload]).await?;
    }
    // The proxy dropped the subscriber and closed its subscription connection.
    wait_for(Duration::from_secs(10), || {
        let port = h.proxy_port;
        async move {
            let Ok(mut c) = Client::connect(port).await else {
                return false;
            };
            matches!(
                c.cmd(&["PUBSUB", "NUMSUB", "flood"]).await,
                Ok(Frame::Array(items)) if items.get(1) == Some(&Frame::Integer(0))
            )
        }
    })
    .await?;
    // What the socket still held ends with the close.
    let mut closed = false;
    for _ in 0..200 {
        match slow.read_raw().await {
            Ok(_) => continue,
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "the slow subscriber was not disconnected");
    // Others are fine.
    assert_eq!(
        publisher.cmd(&["PING"]).await?,
        Frame::Simple(Bytes::from_static(b"PONG"))
    );
    Ok(())
}
