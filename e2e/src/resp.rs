//! A raw RESP client for tests: sends bytes, returns each reply's exact bytes, so replies from
//! Tessera and from redis-server can be compared byte for byte.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tessera_proto::resp::frame::{self, FrameLimits};

pub struct RespClient {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl RespClient {
    pub fn connect(port: u16) -> std::io::Result<RespClient> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.set_nodelay(true)?;
        Ok(RespClient {
            stream,
            buffer: Vec::new(),
        })
    }

    /// Sends raw bytes as they are (malformed input, inline commands, pipelines).
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends one command as a multibulk of bulk strings.
    pub fn send(&mut self, args: &[&[u8]]) -> std::io::Result<()> {
        self.send_raw(&encode_command(args))
    }

    /// Reads the next complete reply and returns its bytes; `Ok(None)` when the server closed the
    /// connection before a whole reply arrived.
    pub fn read_reply(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            match frame::check(&self.buffer, &FrameLimits::default()) {
                Ok(Some(len)) => return Ok(Some(self.buffer.drain(..len).collect())),
                Ok(None) => {}
                Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(None);
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a command and returns its reply's bytes.
    pub fn call(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send(args).expect("send command");
        self.read_reply()
            .expect("read reply")
            .expect("server closed the connection")
    }

    /// `call` with string arguments, the reply as text.
    pub fn call_str(&mut self, args: &[&str]) -> String {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        String::from_utf8_lossy(&self.call(&args)).into_owned()
    }

    /// How long a read waits before failing with `WouldBlock`/`TimedOut` (default 20 s).
    pub fn set_read_timeout(&mut self, limit: Duration) {
        let _ = self.stream.set_read_timeout(Some(limit));
    }

    /// True when the server has closed the connection (reads end of stream).
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte), Ok(0))
    }
}

pub use tessera_testkit::encode as encode_command;
