//! tokio-util codecs: `ServerCodec` reads clients' requests and writes replies; `ClientCodec`
//! writes requests and reads replies (the proxy's backend side, tests).

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use super::frame::{self, Frame, FrameError, FrameLimits, Protocol};
use super::request::{self, Request, RequestError, RequestLimits};

/// Server side of a client connection.
#[derive(Debug, Default)]
pub struct ServerCodec {
    pub limits: RequestLimits,
    /// The protocol replies are encoded in; the connection switches it on `HELLO`.
    pub protocol: Protocol,
}

/// An I/O failure or a client's protocol error.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl Decoder for ServerCodec {
    type Item = Request;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Request>, CodecError> {
        loop {
            let before = src.len();
            match request::parse(src, &self.limits)? {
                Some(request) => return Ok(Some(request)),
                // An ignored empty command was consumed: look for the next one.
                None if src.len() < before && !src.is_empty() => continue,
                None => return Ok(None),
            }
        }
    }
}

impl Encoder<&Frame> for ServerCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        frame.encode(self.protocol, dst);
        Ok(())
    }
}

/// Client side of a connection to a RESP server.
#[derive(Debug, Default)]
pub struct ClientCodec {
    pub limits: FrameLimits,
}

impl Decoder for ClientCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        match frame::parse(src, &self.limits)? {
            Some((frame, used)) => {
                let _ = src.split_to(used);
                Ok(Some(frame))
            }
            None => Ok(None),
        }
    }
}

impl Encoder<&[bytes::Bytes]> for ClientCodec {
    type Error = CodecError;

    /// Writes a command as a multibulk of bulk strings.
    fn encode(&mut self, args: &[bytes::Bytes], dst: &mut BytesMut) -> Result<(), CodecError> {
        super::encode::encode_command(args.len(), args.iter().map(|a| &a[..]), dst);
        Ok(())
    }
}
