//! Test support for every Tessera test crate, and nothing else (no service depends on it).
//!
//! Each concern exists here once, so tests agree on how they find ports, make folders, start the
//! oracle and compare replies:
//!
//! - [`free_port`]: a 127.0.0.1 port nobody listens on, never handed out twice in one test
//!   process, whose cluster bus port (+10000) is free too.
//! - [`temp_dir`]: a fresh folder under the system temp dir, removed when dropped.
//! - [`RedisServer`]: a real redis-server (the compatibility oracle) on a free port, started and
//!   waited for; killed, by its own handle, when dropped.
//! - [`EtcdCluster`]: a real three-member etcd on free ports (the control plane's HA store),
//!   started and waited for, with SIGKILL / SIGSTOP / restart of one member; killed when dropped.
//! - [`RawClient`]: an async RESP client that returns each reply's exact bytes.
//! - [`Differ`]: sends the same commands to redis-server and to a Tessera endpoint (node or
//!   proxy) and collects every reply that differs, RESP2 and RESP3; scripts of one command a
//!   line ([`diff::parse_line`] says the notation).
//! - [`wait`]: bounded polling in place of sleeps.
//! - [`fake_control_plane`]: a real tonic server whose topology and answers the test steers, for
//!   tests of one node or one proxy without a whole cluster.
//! - [`Rng`]: a small seeded generator, so a failing randomized run repeats exactly.
//!
//! A typical differential test:
//!
//! ```ignore
//! let redis = tessera_testkit::RedisServer::start()?;
//! let mut diff = Differ::connect(redis.addr(), node_addr).await?;
//! diff.scripts(SCRIPT, RESP3_SCRIPT).await?; // RESP2, then fresh connections after HELLO 3
//! diff.check(&[b"GET", b"k"], Order::Exact, "extra").await?;
//! diff.assert_none(); // fails listing every reply that differed
//! ```

pub mod client;
pub mod diff;
pub mod etcd;
pub mod fake_control_plane;
pub mod oracle;
pub mod port;
pub mod rng;
pub mod temp;
pub mod wait;

pub use client::{encode, words, RawClient};
pub use diff::{Differ, Order};
pub use etcd::EtcdCluster;
pub use oracle::RedisServer;
pub use port::free_port;
pub use rng::Rng;
pub use temp::temp_dir;
