//! Free TCP ports on 127.0.0.1 for servers a test starts as separate processes (redis-server,
//! local clusters), which cannot take a listener from the test.

use std::net::TcpListener;
use std::sync::Mutex;

/// Ports above this have no room for their bus port (+10000) below 65536.
const HIGHEST: u16 = 55_000;

/// A port on 127.0.0.1 that was free a moment ago, with its cluster bus port (+10000) free too,
/// and neither handed out before in this test process.
///
/// Why the bookkeeping: the kernel may give the same ephemeral port to two binds in a row once
/// the first listener is closed, and a cluster whose two nodes got one port (or one node's port
/// is another's bus port) fails to start.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    let taken = |given: &[u16], p: u16| given.iter().any(|&g| g == p || g + 10_000 == p);
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind an ephemeral port on 127.0.0.1");
        if port <= HIGHEST
            && !taken(&given, port)
            && !taken(&given, port + 10_000)
            && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
        {
            given.push(port);
            return port;
        }
    }
    panic!("no free port whose bus port is free too, after 1000 tries")
}
