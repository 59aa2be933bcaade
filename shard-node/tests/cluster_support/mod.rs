//! Test support shared by the cluster and node tests: `tessera_testkit`'s fake control plane,
//! started so that it hands every slot to the first node, and peers that answer PING (or not).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[allow(unused_imports)] // each test binary uses some of them
pub use tessera_testkit::fake_control_plane::{master, serve, topology, Fake, NODE_TIMEOUT_MS};
#[allow(unused_imports)]
pub use tessera_testkit::wait::eventually;

/// A peer that answers every PING on a connection with +PONG.
pub async fn pong_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind peer");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1024];
                let mut seen = Vec::new();
                loop {
                    let n = match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(at) = seen.windows(6).position(|w| w == b"PING\r\n") {
                        seen.drain(..at + 6);
                        if socket.write_all(b"+PONG\r\n").await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}

/// A port nothing listens on.
pub async fn dead_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A fake with an empty topology (version 0) that hands every slot to the first node that
/// registers, served on port 0.
pub async fn start_assigning() -> (Arc<Fake>, SocketAddr, CancellationToken) {
    let fake = Arc::new(Fake::new(topology(0, Vec::new())));
    fake.assign_all_on_register.store(true, Ordering::SeqCst);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind control plane");
    let address = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    serve(Arc::clone(&fake), listener, stop.clone());
    (fake, address, stop)
}
