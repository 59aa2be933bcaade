//! A whole node in-process (`node::run` on port 0) with a fake control plane: it registers, serves,
//! keeps its writes in the AOF through a clean stop, and comes back with the same id and data.

mod cluster_support;

use std::time::Duration;
use tessera_testkit::temp::temp_dir;

use bytes::{Bytes, BytesMut};
use tessera_proto::resp::frame::{self, Frame, FrameLimits};
use tessera_proto::slot::key_hash_slot;
use tessera_proto::topology::{Access, Topology};
use tessera_shard_node::config::Config;
use tessera_shard_node::{aof, node_id};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use cluster_support::eventually;

/// A running node and what stops it.
struct Running {
    port: u16,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), tessera_shard_node::error::NodeError>>,
}

async fn start(config: Config) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(tessera_shard_node::run(config, listener, shutdown.clone()));
    Running {
        port,
        shutdown,
        task,
    }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the node stops in time")
            .expect("the node task")
            .expect("a clean stop");
    }
}

/// Sends one command and reads one reply.
async fn command(stream: &mut TcpStream, args: &[&str]) -> Frame {
    let frame = Frame::Array(
        args.iter()
            .map(|a| Frame::Bulk(Bytes::from(a.to_string())))
            .collect(),
    );
    stream
        .write_all(&frame.to_bytes(Default::default()))
        .await
        .expect("send");
    let mut buf = BytesMut::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some((frame, _)) =
                frame::parse(&buf, &FrameLimits::default()).expect("reply parses")
            {
                return frame;
            }
            let n = stream.read_buf(&mut buf).await.expect("read");
            assert!(n > 0, "connection closed");
        }
    })
    .await
    .expect("a reply in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_its_id_and_its_writes_across_a_clean_restart() {
    let (fake, control_plane, stop_fake) = cluster_support::start_assigning().await;
    let dir = temp_dir("node-lifecycle");
    let mut config = Config::with_data_dir(dir.path());
    config.service.control_plane = format!("http://{control_plane}");

    let node = start(config.clone()).await;
    // Serving (PONG) with the slots assigned and the lease held: writes go through.
    eventually("registration", Duration::from_secs(10), || {
        !fake.registered.lock().is_empty()
    })
    .await;
    let id = node_id::load_or_create(dir.path()).expect("the node id exists");
    assert_eq!(fake.registered.lock()[0].node_id, id.to_string());
    assert_eq!(
        fake.registered.lock()[0].announce_port,
        u32::from(node.port)
    );
    let mut client = TcpStream::connect(("127.0.0.1", node.port))
        .await
        .expect("connect");
    let mut reply = Frame::Null;
    for _ in 0..500 {
        reply = command(&mut client, &["SET", "greeting", "hello"]).await;
        if reply == Frame::ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(reply, Frame::ok(), "SET never succeeded");
    assert_eq!(command(&mut client, &["SET", "n", "41"]).await, Frame::ok());
    assert_eq!(
        command(&mut client, &["INCR", "n"]).await,
        Frame::Integer(42)
    );
    drop(client);
    node.stop().await;

    // The AOF holds the writes after the clean stop.
    let mut records = Vec::new();
    aof::load(&dir.path().join(aof::FILE_NAME), |r| {
        records.push(r);
        Ok::<(), String>(())
    })
    .expect("load");
    assert!(records.len() >= 3, "{records:?}");

    // Restarted: same id, same data, before anything is written again.
    let node = start(config).await;
    eventually("re-registration", Duration::from_secs(10), || {
        fake.registered.lock().len() >= 2
    })
    .await;
    assert_eq!(fake.registered.lock()[1].node_id, id.to_string());
    let mut client = TcpStream::connect(("127.0.0.1", node.port))
        .await
        .expect("connect");
    let mut reply = Frame::Null;
    for _ in 0..500 {
        reply = command(&mut client, &["GET", "greeting"]).await;
        if reply == Frame::bulk("hello") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(reply, Frame::bulk("hello"));
    assert_eq!(command(&mut client, &["GET", "n"]).await, Frame::bulk("42"));
    drop(client);
    node.stop().await;
    stop_fake.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_without_a_control_plane_and_stops_cleanly() {
    let dir = temp_dir("node-no-control-plane");
    let mut config = Config::with_data_dir(dir.path());
    let dead = cluster_support::dead_port().await;
    config.service.control_plane = format!("http://127.0.0.1:{dead}");
    let node = start(config).await;
    let mut answered = false;
    for _ in 0..500 {
        if tessera_proto::resp::ping::ping(
            &format!("127.0.0.1:{}", node.port),
            Duration::from_secs(1),
        )
        .await
        .is_ok()
        {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        answered,
        "the node answers PING while it retries registration"
    );
    let mut client = TcpStream::connect(("127.0.0.1", node.port))
        .await
        .expect("connect");
    // No topology yet: the shared rule decides (Redis: an unassigned slot is "not served").
    let expected = Topology::default()
        .route(key_hash_slot(b"k"), Access::Read)
        .expect_err("the empty topology serves nothing")
        .message();
    assert_eq!(
        command(&mut client, &["GET", "k"]).await,
        Frame::error(expected)
    );
    drop(client);
    node.stop().await;
    assert!(dir.path().join(node_id::FILE_NAME).exists());
}

#[tokio::test]
async fn a_damaged_aof_stops_start_up() {
    let dir = temp_dir("node-damaged-aof");
    std::fs::create_dir_all(dir.path()).expect("mkdir");
    std::fs::write(
        dir.path().join(aof::FILE_NAME),
        b"not an aof\r\n*1\r\n$4\r\nPING\r\n",
    )
    .expect("write");
    let mut config = Config::with_data_dir(dir.path());
    config.service.control_plane = "http://127.0.0.1:1".to_string();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        tessera_shard_node::run(config, listener, CancellationToken::new()),
    )
    .await
    .expect("fails promptly");
    let error = result.expect_err("a damaged AOF is an error");
    assert!(error.to_string().contains("bad file format"), "{error}");
}

/// Node-internal commands are reachable only on the cluster bus, and there only with the node
/// secret: a client connection that sends the forwarded-PUBLISH command gets Redis's unknown
/// command error, while a peer on the bus that logged in delivers it to the node's subscribers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_commands_only_on_the_cluster_bus() {
    let (fake, control_plane, stop_fake) = cluster_support::start_assigning().await;
    let dir = temp_dir("node-bus");
    let mut config = Config::with_data_dir(dir.path());
    config.service.control_plane = format!("http://{control_plane}");
    config.service.node_secret = Some("s3cret".to_string());
    let node = start(config).await;
    eventually("registration", Duration::from_secs(10), || {
        !fake.registered.lock().is_empty()
    })
    .await;
    let bus_port = fake.registered.lock()[0].announce_bus_port as u16;
    assert_ne!(bus_port, node.port);

    let mut subscriber = TcpStream::connect(("127.0.0.1", node.port))
        .await
        .expect("connect");
    assert_eq!(
        command(&mut subscriber, &["AUTH", "s3cret"]).await,
        Frame::ok()
    );
    command(&mut subscriber, &["SUBSCRIBE", "news"]).await;

    let mut client = TcpStream::connect(("127.0.0.1", node.port))
        .await
        .expect("connect");
    assert_eq!(command(&mut client, &["AUTH", "s3cret"]).await, Frame::ok());
    assert_eq!(
        command(&mut client, &["TESSERA.PUBLISHLOCAL", "news", "forged"]).await,
        Frame::error(
            "ERR unknown command 'TESSERA.PUBLISHLOCAL', with args beginning with: 'news' 'forged' "
        )
    );

    let mut peer = TcpStream::connect(("127.0.0.1", bus_port))
        .await
        .expect("connect to the bus");
    assert_eq!(
        command(&mut peer, &["PING"]).await,
        Frame::error("NOAUTH Authentication required.")
    );
    assert_eq!(
        command(&mut peer, &["AUTH", "wrong"]).await,
        Frame::error("WRONGPASS invalid username-password pair or user is disabled.")
    );
    assert_eq!(
        command(&mut peer, &["TESSERA.PUBLISHLOCAL", "news", "forged"]).await,
        Frame::error("NOAUTH Authentication required.")
    );
    assert_eq!(command(&mut peer, &["AUTH", "s3cret"]).await, Frame::ok());
    assert_eq!(
        command(&mut peer, &["PING"]).await,
        Frame::Simple(Bytes::from_static(b"PONG"))
    );
    assert_eq!(
        command(&mut peer, &["GET", "k"]).await,
        Frame::error("ERR unknown command 'GET' on the cluster bus")
    );
    assert_eq!(
        command(&mut peer, &["TESSERA.PUBLISHLOCAL", "news", "hello"]).await,
        Frame::Integer(1)
    );
    // The subscriber got the bus's message, and never the client's forged one.
    let mut buf = BytesMut::new();
    let message = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some((frame, _)) =
                frame::parse(&buf, &FrameLimits::default()).expect("reply parses")
            {
                return frame;
            }
            let n = subscriber.read_buf(&mut buf).await.expect("read");
            assert!(n > 0, "connection closed");
        }
    })
    .await
    .expect("the message in time");
    assert_eq!(
        message,
        Frame::Array(vec![
            Frame::bulk("message"),
            Frame::bulk("news"),
            Frame::bulk("hello")
        ])
    );
    drop((subscriber, client, peer));
    node.stop().await;
    stop_fake.cancel();
}
