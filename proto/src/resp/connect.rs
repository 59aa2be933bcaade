//! Opening a connection to a RESP server the way every Tessera service does (the proxy to its
//! backends, a node to its peers' cluster bus): connect, TCP_NODELAY, log in with the node secret
//! (`AUTH`), switch to RESP3 when asked, each reply checked, all within one bound.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::encode::command_bytes;
use super::frame::{self, FrameError, FrameLimits, Protocol};

/// What is said before the connection carries anything else.
#[derive(Debug, Clone, Copy, Default)]
pub struct Login<'a> {
    /// The node secret, sent as `AUTH <secret>`; a refusal fails the connection.
    pub secret: Option<&'a [u8]>,
    /// `Resp3` sends `HELLO 3`.
    pub protocol: Protocol,
    /// Sends `READONLY` (a cluster client reading from replicas).
    pub readonly: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    TimedOut,
    #[error("closed during the handshake")]
    Closed,
    #[error("{command} refused: {reply}")]
    Refused {
        command: &'static str,
        reply: String,
    },
    #[error("bad reply during the handshake: {0}")]
    Protocol(#[from] FrameError),
}

/// Connects to `addr` and logs in, all within `timeout`. Returns the stream and any bytes the
/// server sent past the handshake's replies (the caller's reader starts from them).
pub async fn connect(
    addr: &str,
    login: Login<'_>,
    timeout: Duration,
) -> Result<(TcpStream, BytesMut), ConnectError> {
    tokio::time::timeout(timeout, async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut buf = BytesMut::with_capacity(16 * 1024);
        if let Some(secret) = login.secret {
            exchange(&mut stream, &mut buf, "AUTH", &[b"AUTH", secret]).await?;
        }
        if login.protocol == Protocol::Resp3 {
            exchange(&mut stream, &mut buf, "HELLO 3", &[b"HELLO", b"3"]).await?;
        }
        if login.readonly {
            exchange(&mut stream, &mut buf, "READONLY", &[b"READONLY"]).await?;
        }
        Ok((stream, buf))
    })
    .await
    .map_err(|_| ConnectError::TimedOut)?
}

/// Sends one command and consumes its reply; an error reply fails with its text.
async fn exchange(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    command: &'static str,
    args: &[&[u8]],
) -> Result<(), ConnectError> {
    stream.write_all(&command_bytes(args)).await?;
    let reply = read_reply(stream, buf).await?;
    if reply.first() == Some(&b'-') {
        let reply = String::from_utf8_lossy(&reply[1..]).trim_end().to_string();
        return Err(ConnectError::Refused { command, reply });
    }
    Ok(())
}

/// Reads from `stream` into `buf` until it holds a complete reply, and splits that reply off
/// (bytes past it stay in `buf`).
pub async fn read_reply(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<BytesMut, ConnectError> {
    loop {
        if !buf.is_empty() {
            if let Some(len) = frame::check(buf, &FrameLimits::default())? {
                return Ok(buf.split_to(len));
            }
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(ConnectError::Closed);
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    /// A one-connection server that reads the handshake and answers `replies` in order, then
    /// `extra` bytes.
    async fn server(replies: &'static [&'static [u8]], extra: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            for reply in replies {
                let mut chunk = [0u8; 256];
                let n = socket.read(&mut chunk).await.unwrap();
                seen.extend_from_slice(&chunk[..n]);
                socket.write_all(reply).await.unwrap();
            }
            socket.write_all(extra).await.unwrap();
            std::future::pending::<()>().await;
        });
        addr
    }

    #[tokio::test]
    async fn logs_in_and_keeps_what_follows() {
        let addr = server(&[b"+OK\r\n", b"%1\r\n+proto\r\n:3\r\n"], b"+NEXT\r\n").await;
        let login = Login {
            secret: Some(b"s3cret"),
            protocol: Protocol::Resp3,
            readonly: false,
        };
        let (_stream, mut leftover) = connect(&addr, login, Duration::from_secs(5))
            .await
            .expect("handshake");
        // The extra bytes may or may not have arrived yet; what did is the caller's.
        assert!(b"+NEXT\r\n".starts_with(&leftover.split()[..]));
    }

    #[tokio::test]
    async fn a_refused_secret_fails_the_connection() {
        let addr = server(&[b"-WRONGPASS invalid password\r\n"], b"").await;
        let login = Login {
            secret: Some(b"bad"),
            ..Login::default()
        };
        let error = connect(&addr, login, Duration::from_secs(5))
            .await
            .expect_err("refused");
        assert_eq!(
            error.to_string(),
            "AUTH refused: WRONGPASS invalid password"
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let addr = server(&[b""], b"").await;
        let login = Login {
            secret: Some(b"s"),
            ..Login::default()
        };
        let error = connect(&addr, login, Duration::from_millis(200))
            .await
            .expect_err("no reply");
        assert!(matches!(error, ConnectError::TimedOut), "{error}");
    }
}
