//! Bad input gets Redis's answer, and never a panic or trouble for other clients: the same bytes go
//! to a real redis-server, to a shard node and to the proxy, and the replies (and whether the
//! connection is then closed) must match.

use std::time::Duration;

use tessera_e2e::inprocess::InProcessCluster;
use tessera_e2e::resp::{encode_command, RespClient};
use tessera_testkit::RedisServer;

/// Raw inputs, each on a fresh connection.
fn inputs() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("multibulk length not a number", b"*abc\r\n".to_vec()),
        ("negative bulk length", b"*1\r\n$-3\r\n".to_vec()),
        ("bulk length over 512 MB", b"*1\r\n$600000000\r\n".to_vec()),
        ("bulk without $", b"*1\r\nfoo\r\n".to_vec()),
        ("multibulk count too long", b"*2147483648\r\n".to_vec()),
        ("inline ping", b"PING\r\n".to_vec()),
        ("inline with args", b"ECHO   \"hello world\"\r\n".to_vec()),
        ("inline unbalanced quotes", b"ECHO \"oops\r\n".to_vec()),
        (
            "empty inline lines are ignored",
            b"\r\n\r\nPING\r\n".to_vec(),
        ),
        ("unknown command", encode_command(&[b"FROB", b"x"])),
        ("wrong arity", encode_command(&[b"GET", b"a", b"b"])),
        (
            "wrong value type for INCR",
            [
                encode_command(&[b"SET", b"{b}s", b"abc"]),
                encode_command(&[b"INCR", b"{b}s"]),
            ]
            .concat(),
        ),
        (
            "empty multibulk is ignored",
            [b"*0\r\n".to_vec(), encode_command(&[b"PING"])].concat(),
        ),
    ]
}

/// Sends `input` on `client` (fresh, authenticated if need be), reads replies until the peer
/// goes quiet or closes: (replies, closed).
fn exchange(mut client: RespClient, input: &[u8]) -> (Vec<String>, bool) {
    client.send_raw(input).expect("send");
    client.set_read_timeout(Duration::from_millis(500));
    let mut replies = Vec::new();
    loop {
        match client.read_reply() {
            Ok(Some(reply)) => replies.push(String::from_utf8_lossy(&reply).into_owned()),
            Ok(None) => return (replies, true),
            Err(_) => return (replies, false),
        }
    }
}

#[test]
fn bad_input_gets_redis_answers_and_hurts_nobody() {
    let cluster = InProcessCluster::up(Duration::from_secs(5));
    let oracle = RedisServer::start().expect("start redis-server");
    let node = cluster.node_ports[0];
    let proxy = cluster.proxy_port;

    // A bystander on each, connected throughout.
    // Nodes want the cluster's secret first; the proxy and redis-server none.
    let connect = |port: u16| {
        if port == node {
            cluster.node_client(port)
        } else {
            RespClient::connect(port).expect("connect")
        }
    };
    let mut bystanders: Vec<RespClient> = [node, proxy].iter().map(|&p| connect(p)).collect();

    let mut failures = Vec::new();
    for (what, input) in inputs() {
        let expected = exchange(connect(oracle.port), &input);
        for (name, port) in [("node", node), ("proxy", proxy)] {
            let actual = exchange(connect(port), &input);
            if actual != expected {
                failures.push(format!(
                    "{what} on {name}:\n   redis:   {expected:?}\n   tessera: {actual:?}"
                ));
            }
        }
        for bystander in &mut bystanders {
            assert_eq!(
                bystander.call_str(&["PING"]),
                "+PONG\r\n",
                "bystander after {what}"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // A client that leaves in the middle of a pipeline (half a command on the wire).
    for port in [node, proxy] {
        let mut leaver = connect(port);
        let mut pipeline = Vec::new();
        for i in 0..1000 {
            pipeline.extend(encode_command(&[
                b"SET",
                format!("{{p}}{i}").as_bytes(),
                b"v",
            ]));
        }
        pipeline.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$2\r\nhal");
        leaver.send_raw(&pipeline).expect("send pipeline");
        drop(leaver);
        for bystander in &mut bystanders {
            assert_eq!(bystander.call_str(&["PING"]), "+PONG\r\n");
        }
        let mut fresh = connect(port);
        assert_eq!(fresh.call_str(&["ECHO", "alive"]), "$5\r\nalive\r\n");
    }
}
