//! MULTI / EXEC / WATCH through the proxy to real shard nodes (an in-process cluster): the
//! proxy forwards a transaction to the node owning its slot, which runs it atomically and aborts
//! it when a watched key changed; redis-cli's interactive mode drives one connection too.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use tessera_e2e::inprocess::InProcessCluster;
use tessera_e2e::resp::RespClient;

const NODE_TIMEOUT: Duration = Duration::from_secs(5);

fn connect(port: u16) -> RespClient {
    let mut client = RespClient::connect(port).expect("connect to the proxy");
    client.set_read_timeout(Duration::from_secs(10));
    client
}

#[test]
fn multi_exec_and_watch_through_the_proxy() {
    let cluster = InProcessCluster::up(NODE_TIMEOUT);
    let port = cluster.proxy_port;
    let mut a = connect(port);
    let mut b = connect(port);

    assert_eq!(a.call_str(&["MULTI"]), "+OK\r\n");
    assert_eq!(a.call_str(&["SET", "{tx}a", "1"]), "+QUEUED\r\n");
    assert_eq!(a.call_str(&["INCR", "{tx}a"]), "+QUEUED\r\n");
    assert_eq!(a.call_str(&["LPUSH", "{tx}a", "x"]), "+QUEUED\r\n");
    assert_eq!(a.call_str(&["GET", "{tx}a"]), "+QUEUED\r\n");
    assert_eq!(
        a.call_str(&["EXEC"]),
        "*4\r\n+OK\r\n:2\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n$1\r\n2\r\n",
        "{}",
        cluster.logs()
    );

    // A watched key another client changes aborts the transaction.
    assert_eq!(a.call_str(&["WATCH", "{tx}w"]), "+OK\r\n");
    assert_eq!(b.call_str(&["SET", "{tx}w", "theirs"]), "+OK\r\n");
    assert_eq!(a.call_str(&["MULTI"]), "+OK\r\n");
    assert_eq!(a.call_str(&["SET", "{tx}w", "mine"]), "+QUEUED\r\n");
    assert_eq!(a.call_str(&["EXEC"]), "*-1\r\n");
    assert_eq!(b.call_str(&["GET", "{tx}w"]), "$6\r\ntheirs\r\n");

    // Unchanged since WATCH: it runs.
    assert_eq!(a.call_str(&["WATCH", "{tx}w"]), "+OK\r\n");
    assert_eq!(b.call_str(&["GET", "{tx}w"]), "$6\r\ntheirs\r\n");
    assert_eq!(a.call_str(&["MULTI"]), "+OK\r\n");
    assert_eq!(a.call_str(&["SET", "{tx}w", "mine"]), "+QUEUED\r\n");
    assert_eq!(a.call_str(&["EXEC"]), "*1\r\n+OK\r\n");
    assert_eq!(b.call_str(&["GET", "{tx}w"]), "$4\r\nmine\r\n");

    // A queueing error discards the transaction.
    assert_eq!(a.call_str(&["MULTI"]), "+OK\r\n");
    assert_eq!(a.call_str(&["SET", "{tx}z", "1"]), "+QUEUED\r\n");
    assert!(a
        .call_str(&["NOSUCHCOMMAND"])
        .starts_with("-ERR unknown command"));
    assert_eq!(
        a.call_str(&["EXEC"]),
        "-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    assert_eq!(b.call_str(&["EXISTS", "{tx}z"]), ":0\r\n");

    // redis-cli, reading commands from stdin, sends them on one connection.
    let mut cli = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run redis-cli");
    cli.stdin
        .take()
        .expect("stdin")
        .write_all(b"MULTI\nSET {tx}cli 5\nINCRBY {tx}cli 10\nEXEC\nGET {tx}cli\n")
        .expect("write to redis-cli");
    let output = cli.wait_with_output().expect("redis-cli output");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert_eq!(
        text,
        "OK\nQUEUED\nQUEUED\nOK\n15\n15\n",
        "{}",
        cluster.logs()
    );
}
