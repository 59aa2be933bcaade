//! RESP, the Redis wire protocol, in layers: `frame` (a RESP2/RESP3 value, its encoding, and a
//! check-then-parse reader for replies), `request` (the server side: clients' commands, multibulk
//! or inline, with Redis's limits and error texts), `encode` (a command as a client writes it),
//! `codec` (tokio-util codecs over both), `connect` (connect and log in) and `ping`, the liveness
//! probe of every server.

pub mod codec;
pub mod connect;
pub mod encode;
pub mod frame;
pub mod ping;
pub mod request;

pub use frame::{Frame, Protocol};
pub use request::{Request, RequestError};
