//! Redirects through the proxy against a real three-master Redis Cluster whose slot is being
//! migrated (CLUSTER SETSLOT MIGRATING / IMPORTING, MIGRATE) while the proxy's topology still
//! names the source: ASK is followed on every path (plain, blocking, MULTI / EXEC, WATCH, a
//! split MGET), TRYAGAIN is retried until the migration ends or the bound, ASKING never
//! reaches another client's command on a shared backend connection, and a shard channel
//! subscribed at a stale owner follows its MOVED.

mod support;

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::Bytes;
use support::{bulk, encode, wait_for, Client, Harness, RedisNode, RANGES};
use tessera_proto::resp::Frame;
use tessera_proto::slot::key_hash_slot;

fn ok() -> Frame {
    Frame::Simple(Bytes::from_static(b"OK"))
}

/// A slot being moved from its owner to the next master, as `redis-cli --cluster reshard` does.
struct Migration<'h> {
    slot: String,
    source: &'h RedisNode,
    target: &'h RedisNode,
}

impl<'h> Migration<'h> {
    /// The move of `tag`'s slot from its owner to the next master.
    fn of(h: &'h Harness, tag: &str) -> Result<Migration<'h>> {
        let slot = u32::from(key_hash_slot(tag.as_bytes()));
        let Some(owner) = RANGES.iter().position(|&(s, e)| s <= slot && slot <= e) else {
            bail!("slot {slot} outside the ranges");
        };
        Ok(Migration {
            slot: slot.to_string(),
            source: &h.cluster.nodes[owner],
            target: &h.cluster.nodes[(owner + 1) % 3],
        })
    }

    /// The move of `tag`'s slot, started.
    async fn start_of(h: &'h Harness, tag: &str) -> Result<Migration<'h>> {
        let migration = Migration::of(h, tag)?;
        migration.start().await?;
        Ok(migration)
    }

    /// Marks the slot IMPORTING on the target and MIGRATING on the source.
    async fn start(&self) -> Result<()> {
        let (source, target, slot) = (self.source, self.target, &self.slot);
        let importing = ["CLUSTER", "SETSLOT", slot, "IMPORTING", &source.id];
        let migrating = ["CLUSTER", "SETSLOT", slot, "MIGRATING", &target.id];
        for (node, args) in [(target, importing), (source, migrating)] {
            assert_eq!(Client::connect(node.port).await?.cmd(&args).await?, ok());
        }
        Ok(())
    }

    /// Moves `keys` from the source to the target with MIGRATE.
    async fn migrate(&self, keys: &[&str]) -> Result<()> {
        let port = self.target.port.to_string();
        let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
        args.extend_from_slice(keys);
        let mut source = Client::connect(self.source.port).await?;
        assert_eq!(source.cmd(&args).await?, ok(), "{args:?}");
        Ok(())
    }

    /// Gives the slot to the target on both ends (the target first, as `redis-cli` does).
    async fn finish(&self) -> Result<()> {
        let args = ["CLUSTER", "SETSLOT", &self.slot, "NODE", &self.target.id];
        for node in [self.target, self.source] {
            assert_eq!(Client::connect(node.port).await?.cmd(&args).await?, ok());
        }
        Ok(())
    }
}

/// `args`' raw reply.
async fn raw(client: &mut Client, args: &[&str]) -> Result<Bytes> {
    client.send_raw(&encode(args)).await?;
    client.read_raw().await
}

/// One `name:value` field of a node's INFO `section` (0 when absent).
async fn info_count(node: &RedisNode, section: &str, name: &str, field: &str) -> Result<u64> {
    let info = Client::connect(node.port)
        .await?
        .text(&["INFO", section])
        .await?;
    let Some(line) = info.lines().find(|l| l.starts_with(&format!("{name}:"))) else {
        return Ok(0);
    };
    let value = line
        .split([':', ','])
        .find_map(|kv| kv.strip_prefix(&format!("{field}=")))
        .unwrap_or("0");
    Ok(value.parse()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_is_followed_on_every_path() -> Result<()> {
    let h = Harness::start().await?;
    let mut c = h.client().await?;
    for (key, value) in [
        ("{m}plain", "p"),
        ("{m}txn", "t"),
        ("{m}split", "s"),
        ("{m}split2", "s2"),
    ] {
        assert_eq!(c.cmd(&["SET", key, value]).await?, ok());
    }
    assert_eq!(c.cmd(&["RPUSH", "{m}list", "a"]).await?, Frame::Integer(1));
    assert_eq!(c.cmd(&["SET", "{m}watched", "w"]).await?, ok());
    assert_eq!(c.cmd(&["SET", "elsewhere", "e"]).await?, ok());
    let m = Migration::start_of(&h, "{m}").await?;
    m.migrate(&[
        "{m}plain",
        "{m}txn",
        "{m}split",
        "{m}split2",
        "{m}list",
        "{m}watched",
    ])
    .await?;
    // The source answers ASK for each of them now.
    let mut source = Client::connect(m.source.port).await?;
    let ask = format!("ASK {} 127.0.0.1:{}", m.slot, m.target.port);
    assert_eq!(
        source.cmd(&["GET", "{m}plain"]).await?,
        support::error(&ask)
    );

    // Plain.
    assert_eq!(c.cmd(&["GET", "{m}plain"]).await?, bulk("p"));
    // Blocking, on a dedicated connection.
    assert_eq!(
        c.cmd(&["BLPOP", "{m}list", "0"]).await?,
        Frame::Array(vec![bulk("{m}list"), bulk("a")])
    );
    // MULTI / EXEC: the whole transaction runs at the target.
    assert_eq!(c.cmd(&["MULTI"]).await?, ok());
    for args in [&["GET", "{m}txn"][..], &["SET", "{m}txn", "t2"]] {
        assert_eq!(
            c.cmd(args).await?,
            Frame::Simple(Bytes::from_static(b"QUEUED"))
        );
    }
    assert_eq!(c.cmd(&["EXEC"]).await?, Frame::Array(vec![bulk("t"), ok()]));
    // WATCH, then a transaction on the watched key.
    assert_eq!(c.cmd(&["WATCH", "{m}watched"]).await?, ok());
    assert_eq!(c.cmd(&["MULTI"]).await?, ok());
    c.cmd(&["GET", "{m}watched"]).await?;
    assert_eq!(c.cmd(&["EXEC"]).await?, Frame::Array(vec![bulk("w")]));
    // A split MGET, one of whose parts is asked elsewhere.
    assert_eq!(
        c.cmd(&["MGET", "{m}split", "elsewhere", "{m}split2"])
            .await?,
        Frame::Array(vec![bulk("s"), bulk("e"), bulk("s2")])
    );
    // The writes went to the target, where the keys are now.
    let mut target = Client::connect(m.target.port).await?;
    assert_eq!(target.cmd(&["ASKING"]).await?, ok());
    assert_eq!(target.cmd(&["GET", "{m}txn"]).await?, bulk("t2"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tryagain_is_retried_until_the_migration_ends() -> Result<()> {
    let h = Harness::start().await?;
    let mut c = h.client().await?;
    let mut other = h.client().await?;
    for (key, value) in [("{t}a", "1"), ("{t}b", "2")] {
        assert_eq!(c.cmd(&["SET", key, value]).await?, ok());
    }
    assert_eq!(
        other.cmd(&["RPUSH", "{t}list", "x"]).await?,
        Frame::Integer(1)
    );
    // The keys are split between the two ends: the source answers TRYAGAIN.
    let m = Migration::start_of(&h, "{t}").await?;
    m.migrate(&["{t}a", "{t}list"]).await?;
    let mut source = Client::connect(m.source.port).await?;
    let tryagain = raw(&mut source, &["MGET", "{t}a", "{t}b"]).await?;
    assert!(tryagain.starts_with(b"-TRYAGAIN "), "{tryagain:?}");

    // A pooled command and a blocking one, retried by the proxy meanwhile.
    let rejected = info_count(m.source, "commandstats", "cmdstat_mget", "rejected_calls").await?;
    c.send_raw(&encode(&["MGET", "{t}a", "{t}b"])).await?;
    other
        .send_raw(&encode(&[
            "BLMOVE", "{t}list", "{t}b2", "LEFT", "LEFT", "0",
        ]))
        .await?;
    wait_for(Duration::from_secs(2), || async {
        let now = info_count(m.source, "commandstats", "cmdstat_mget", "rejected_calls")
            .await
            .unwrap_or(0);
        now >= rejected + 2
    })
    .await?;
    m.migrate(&["{t}b"]).await?;
    m.finish().await?;
    assert_eq!(c.read().await?, Frame::Array(vec![bulk("1"), bulk("2")]));
    assert_eq!(other.read().await?, bulk("x"));

    // Past the bound the reply is the node's TRYAGAIN, byte for byte.
    for key in ["{u}a", "{u}b"] {
        assert_eq!(c.cmd(&["SET", key, "v"]).await?, ok());
    }
    let m = Migration::start_of(&h, "{u}").await?;
    m.migrate(&["{u}a"]).await?;
    let mut source = Client::connect(m.source.port).await?;
    let expected = raw(&mut source, &["MGET", "{u}a", "{u}b"]).await?;
    let started = Instant::now();
    c.send_raw(&encode(&["MGET", "{u}a", "{u}b"])).await?;
    assert_eq!(c.read_raw().await?, expected);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

/// Many clients share the proxy's one pipelined connection to each node (the tests' proxy has one
/// per backend) while half of them are asked to the target: each ASKING stays with its own
/// command, so nobody gets another's reply, no redirect reaches a client, and the target never
/// sees an unasked command for the importing slot (it would answer MOVED). More runtime threads
/// than cores, so that sends from many threads meet on the connection's queue (a thread
/// preempted between two sends lets the others in): without the fix this fails every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn asking_stays_with_its_command_on_a_shared_connection() -> Result<()> {
    let h = Harness::start().await?;
    let m = Migration::of(&h, "{k}")?;
    let target_index = h
        .cluster
        .nodes
        .iter()
        .position(|n| n.port == m.target.port)
        .unwrap_or(0);
    // A hash tag the target owns (not migrating): its clients share the target connection.
    let (start, end) = RANGES[target_index];
    let owned = |tag: &String| (start..=end).contains(&u32::from(key_hash_slot(tag.as_bytes())));
    let local = (0..)
        .map(|i| format!("local{i}"))
        .find(owned)
        .unwrap_or_default();
    const CLIENTS: usize = 64;
    const ROUNDS: usize = 50;
    const PIPELINE: usize = 20;
    let mut setup = h.client().await?;
    let mut moved = Vec::new();
    for i in 0..CLIENTS {
        let key = format!("{{k}}{i}");
        assert_eq!(setup.cmd(&["SET", &key, &format!("asked{i}")]).await?, ok());
        assert_eq!(
            setup
                .cmd(&["SET", &format!("{{{local}}}{i}"), &format!("local{i}")])
                .await?,
            ok()
        );
        moved.push(key);
    }
    let keys: Vec<&str> = moved.iter().map(String::as_str).collect();
    m.start().await?;
    m.migrate(&keys).await?;

    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let mut c = h.client().await?;
        let (key, value) = if i % 2 == 0 {
            (format!("{{k}}{i}"), format!("asked{i}"))
        } else {
            (format!("{{{local}}}{i}"), format!("local{i}"))
        };
        tasks.push(tokio::spawn(async move {
            let request = encode(&["GET", &key]).repeat(PIPELINE);
            for _ in 0..ROUNDS {
                c.send_raw(&request).await?;
                for _ in 0..PIPELINE {
                    let reply = c.read().await?;
                    if reply != bulk(&value) {
                        bail!("client {i} asked for {key} and got {reply:?}");
                    }
                }
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let moved_at_target = info_count(m.target, "errorstats", "errorstat_MOVED", "count").await?;
    assert_eq!(moved_at_target, 0, "an ASKING was taken by another command");
    Ok(())
}

/// A shard channel subscribed while the proxy's topology is behind (its slot moved without the
/// control plane knowing): the old owner answers MOVED, the proxy subscribes at the new owner,
/// and the client gets the confirmation, the messages published there, and its unsubscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_channels_follow_moved() -> Result<()> {
    let h = Harness::start().await?;
    let m = Migration::start_of(&h, "chan").await?;
    m.finish().await?;
    let mut source = Client::connect(m.source.port).await?;
    let moved = format!("MOVED {} 127.0.0.1:{}", m.slot, m.target.port);
    assert_eq!(
        source.cmd(&["SSUBSCRIBE", "chan"]).await?,
        support::error(&moved)
    );
    let notice = |kind: &str, count: i64| {
        Frame::Array(vec![bulk(kind), bulk("chan"), Frame::Integer(count)])
    };
    let mut sub = h.client().await?;
    assert_eq!(
        sub.cmd(&["SSUBSCRIBE", "chan"]).await?,
        notice("ssubscribe", 1)
    );
    let mut target = Client::connect(m.target.port).await?;
    assert_eq!(
        target.cmd(&["SPUBLISH", "chan", "hello"]).await?,
        Frame::Integer(1)
    );
    assert_eq!(
        sub.read().await?,
        Frame::Array(vec![bulk("smessage"), bulk("chan"), bulk("hello")])
    );
    assert_eq!(
        sub.cmd(&["SUNSUBSCRIBE", "chan"]).await?,
        notice("sunsubscribe", 0)
    );
    // A normal client again.
    assert_eq!(
        sub.cmd(&["PING"]).await?,
        Frame::Simple(Bytes::from_static(b"PONG"))
    );
    Ok(())
}

/// A second WATCH asked away from the connection that holds the first (its key migrated
/// meanwhile): the first watch cannot move with it, so EXEC answers as a failed watch, as the
/// source does for a watched key that MIGRATE took away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_asked_away_from_earlier_watches_fails_exec() -> Result<()> {
    let h = Harness::start().await?;
    let mut c = h.client().await?;
    // `{w}c` stays on the source.
    for key in ["{w}a", "{w}b", "{w}c"] {
        assert_eq!(c.cmd(&["SET", key, "v"]).await?, ok());
    }
    // The oracle: a client of the source watching a key that MIGRATE takes away.
    let mut oracle = Client::connect(Migration::of(&h, "{w}")?.source.port).await?;
    assert_eq!(oracle.cmd(&["WATCH", "{w}a"]).await?, ok());
    assert_eq!(c.cmd(&["WATCH", "{w}a"]).await?, ok());
    let m = Migration::start_of(&h, "{w}").await?;
    m.migrate(&["{w}a", "{w}b"]).await?;
    assert_eq!(c.cmd(&["WATCH", "{w}b"]).await?, ok());
    assert_eq!(oracle.cmd(&["MULTI"]).await?, ok());
    assert_eq!(c.cmd(&["MULTI"]).await?, ok());
    for client in [&mut oracle, &mut c] {
        client.send_raw(&encode(&["GET", "{w}c"])).await?;
        assert_eq!(
            client.read().await?,
            Frame::Simple(Bytes::from_static(b"QUEUED"))
        );
    }
    let expected = raw(&mut oracle, &["EXEC"]).await?;
    assert_eq!(&expected[..], b"*-1\r\n");
    assert_eq!(raw(&mut c, &["EXEC"]).await?, expected);
    Ok(())
}
