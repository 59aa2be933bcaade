//! A raw RESP client for tests: sends bytes, returns each reply as the exact bytes received, so
//! replies from Tessera and from redis-server can be compared byte for byte.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use tessera_proto::resp::frame::{self, FrameLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any single reply may take before a test fails instead of hanging.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A command as a RESP multibulk of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    tessera_proto::resp::encode::command_bytes(args).to_vec()
}

/// Splits a command line on spaces (for commands whose arguments hold no spaces; scripts with
/// `<sp>` and `<empty>` go through [`crate::diff::parse_line`]).
pub fn words(line: &str) -> Vec<&[u8]> {
    line.split(' ').map(str::as_bytes).collect()
}

/// A RESP connection that hands back raw reply bytes.
pub struct RawClient {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<RawClient> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            buffer: Vec::new(),
        })
    }

    /// `connect` to 127.0.0.1:`port`.
    pub async fn connect_port(port: u16) -> anyhow::Result<RawClient> {
        RawClient::connect(SocketAddr::from(([127, 0, 0, 1], port))).await
    }

    /// Sends bytes as they are (malformed input, inline commands, pipelines).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Reads one complete reply (within [`REPLY_TIMEOUT`]).
    pub async fn read_reply(&mut self) -> anyhow::Result<Bytes> {
        let limits = FrameLimits::default();
        loop {
            if let Some(len) = frame::check(&self.buffer, &limits)? {
                let reply: Vec<u8> = self.buffer.drain(..len).collect();
                return Ok(Bytes::from(reply));
            }
            self.buffer.reserve(64 * 1024);
            let n = tokio::time::timeout(REPLY_TIMEOUT, self.stream.read_buf(&mut self.buffer))
                .await
                .context("timed out waiting for a reply")??;
            if n == 0 {
                bail!(
                    "connection closed; partial reply {:?}",
                    String::from_utf8_lossy(&self.buffer)
                );
            }
        }
    }

    /// Sends one command and reads its reply.
    pub async fn cmd(&mut self, args: &[&[u8]]) -> anyhow::Result<Bytes> {
        self.send_raw(&encode(args)).await?;
        self.read_reply().await
    }

    /// `cmd` over a space-separated line, the reply as (lossy) text.
    pub async fn line(&mut self, line: &str) -> anyhow::Result<String> {
        let reply = self.cmd(&words(line)).await?;
        Ok(String::from_utf8_lossy(&reply).into_owned())
    }

    /// True once the peer has closed the connection (reads what is left first); false when it
    /// stays open for [`REPLY_TIMEOUT`].
    pub async fn closed(&mut self) -> anyhow::Result<bool> {
        loop {
            self.buffer.reserve(4096);
            match tokio::time::timeout(REPLY_TIMEOUT, self.stream.read_buf(&mut self.buffer)).await
            {
                Err(_) => return Ok(false),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(true),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Bytes received and not yet returned as a reply.
    pub fn pending(&self) -> &[u8] {
        &self.buffer
    }
}

/// Sends `bytes` on a fresh connection to `addr` and returns everything received until the
/// server closes it (or two seconds of silence): how malformed input is compared.
pub async fn exchange_raw(addr: SocketAddr, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(bytes).await?;
    let mut received = Vec::new();
    loop {
        received.reserve(4096);
        match tokio::time::timeout(Duration::from_secs(2), stream.read_buf(&mut received)).await {
            Err(_) | Ok(Ok(0)) | Ok(Err(_)) => return Ok(received),
            Ok(Ok(_)) => {}
        }
    }
}
