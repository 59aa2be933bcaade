//! `proxy healthcheck`: connect, PING, expect PONG. The container images have no shell, so the
//! binary checks itself.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("could not reach {0}: {1}")]
    Io(String, std::io::Error),
    #[error("no reply within the timeout")]
    Timeout,
    #[error("unexpected reply {0:?}")]
    Reply(String),
}

pub async fn check(address: &str, timeout: Duration) -> Result<(), HealthError> {
    let io = |e| HealthError::Io(address.to_string(), e);
    let exchange = async {
        let mut socket = TcpStream::connect(address).await.map_err(io)?;
        socket
            .write_all(b"*1\r\n$4\r\nPING\r\n")
            .await
            .map_err(io)?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 64];
        while !reply.ends_with(b"\r\n") && reply.len() < 1024 {
            let n = socket.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
        }
        // A proxy with requirepass answers NOAUTH: it is up and serving.
        if reply == b"+PONG\r\n" || reply.starts_with(b"-NOAUTH ") {
            Ok(())
        } else {
            Err(HealthError::Reply(
                String::from_utf8_lossy(&reply).into_owned(),
            ))
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| HealthError::Timeout)?
}
