//! The liveness probe every Tessera server answers: `PING`, expecting `+PONG`. One implementation
//! for the `healthcheck` subcommands (the container images have no shell, so each binary checks
//! itself) and the shard nodes' peer probes over their kept connections.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
/// Longest reply line read: `+PONG\r\n` or a short error.
const MAX_REPLY: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    #[error("connection failed: {0}")]
    Io(#[source] std::io::Error),
    #[error("no reply in time")]
    Timeout,
    #[error("connection closed before a reply")]
    Closed,
    #[error("unexpected reply {0:?}")]
    UnexpectedReply(String),
}

/// Connects to `address` (`host:port`), sends `PING` and expects `+PONG`, all within `timeout`.
pub async fn ping(address: &str, timeout: Duration) -> Result<(), PingError> {
    tokio::time::timeout(timeout, async {
        let mut stream = TcpStream::connect(address)
            .await
            .map_err(PingError::Connect)?;
        ping_on(&mut stream).await
    })
    .await
    .map_err(|_| PingError::Timeout)?
}

/// One `PING` / `+PONG` exchange on an open connection. `-NOAUTH` counts as alive: a server that
/// wants a password (requirepass, the node secret) is up, which is all a probe asks.
pub async fn ping_on(stream: &mut TcpStream) -> Result<(), PingError> {
    stream.write_all(PING).await.map_err(PingError::Io)?;
    let mut reply = Vec::with_capacity(16);
    let mut chunk = [0u8; 64];
    while !reply.ends_with(b"\r\n") {
        if reply.len() >= MAX_REPLY {
            return Err(PingError::UnexpectedReply(
                String::from_utf8_lossy(&reply).into_owned(),
            ));
        }
        let n = stream.read(&mut chunk).await.map_err(PingError::Io)?;
        if n == 0 {
            return Err(PingError::Closed);
        }
        reply.extend_from_slice(&chunk[..n]);
    }
    if reply == b"+PONG\r\n" || reply.starts_with(b"-NOAUTH ") {
        Ok(())
    } else {
        Err(PingError::UnexpectedReply(
            String::from_utf8_lossy(&reply).trim_end().to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pong_noauth_or_an_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        let server = tokio::spawn(async move {
            for reply in [
                &b"+PONG\r\n"[..],
                b"-NOAUTH Authentication required.\r\n",
                b"-LOADING busy\r\n",
            ] {
                let (mut socket, _) = listener.accept().await.expect("accept");
                let mut buf = [0u8; 64];
                let n = socket.read(&mut buf).await.expect("read");
                assert_eq!(&buf[..n], PING);
                socket.write_all(reply).await.expect("write");
            }
        });
        let timeout = Duration::from_secs(5);
        ping(&address, timeout).await.expect("pong");
        ping(&address, timeout).await.expect("NOAUTH is alive");
        let err = ping(&address, timeout).await.expect_err("error reply");
        assert!(
            matches!(err, PingError::UnexpectedReply(ref r) if r == "-LOADING busy"),
            "{err}"
        );
        server.await.expect("server");
        assert!(matches!(
            ping(&address, timeout).await,
            Err(PingError::Connect(_))
        ));
    }
}
