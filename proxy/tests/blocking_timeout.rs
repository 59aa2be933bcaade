//! A blocking command's timeout is read by the proxy as the shard nodes read it (Redis's
//! long-double syntax, `command::parse_timeout`): a timeout written `0x1p0` or `1e0` is a second,
//! and the proxy waits for it past its backend timeout instead of giving up on the reply. XREAD /
//! XREADGROUP with BLOCK are blocking commands too: on a connection of their own, so the node's
//! other clients are not held behind them.

mod support;

use std::time::{Duration, Instant};

use anyhow::Result;
use support::{encode, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hexadecimal_and_exponent_timeouts_outlast_the_backend_timeout() -> Result<()> {
    let h = Harness::start_with_timeout(Duration::from_millis(300)).await?;
    let mut client = h.client().await?;
    for timeout in ["0x1p0", "1e0", "0X.Cp0"] {
        let start = Instant::now();
        client
            .send_raw(&encode(&["BLPOP", "{bar}empty", timeout]))
            .await?;
        assert_eq!(&client.read_raw().await?[..], b"*-1\r\n", "BLPOP {timeout}");
        assert!(
            start.elapsed() >= Duration::from_millis(700),
            "BLPOP {timeout} waited its own timeout"
        );
    }
    // A timeout the nodes refuse is refused with Redis's words, at once.
    for (timeout, error) in [
        ("-1", "ERR timeout is negative"),
        ("nan", "ERR timeout is not a float or out of range"),
    ] {
        assert_eq!(
            client.cmd(&["BLPOP", "{bar}empty", timeout]).await?,
            support::error(error),
            "BLPOP {timeout}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xread_block_waits_on_its_own_connection() -> Result<()> {
    let h = Harness::start_with_timeout(Duration::from_millis(300)).await?;
    let mut reader = h.client().await?;
    let mut other = h.client().await?;
    // Past the backend timeout, answered by its own: a null array.
    let start = Instant::now();
    reader
        .send_raw(&encode(&[
            "XREAD", "BLOCK", "600", "STREAMS", "{bar}s", "$",
        ]))
        .await?;
    assert_eq!(&reader.read_raw().await?[..], b"*-1\r\n");
    assert!(
        start.elapsed() >= Duration::from_millis(550),
        "XREAD waited its BLOCK"
    );
    // Blocked forever: the same node keeps serving others, and an XADD wakes it.
    reader
        .send_raw(&encode(&["XREAD", "BLOCK", "0", "STREAMS", "{bar}s", "$"]))
        .await?;
    for i in 0..20 {
        let key = format!("{{bar}}k{i}");
        assert_eq!(
            other.cmd(&["SET", &key, "v"]).await?,
            tessera_proto::resp::Frame::Simple(bytes::Bytes::from_static(b"OK"))
        );
    }
    assert_eq!(
        other.cmd(&["XADD", "{bar}s", "1-1", "f", "v"]).await?,
        support::bulk("1-1")
    );
    let entry = reader.read_raw().await?;
    assert!(
        entry.starts_with(b"*1\r\n*2\r\n$6\r\n{bar}s\r\n")
            && entry.ends_with(b"$1\r\nf\r\n$1\r\nv\r\n"),
        "{entry:?}"
    );
    Ok(())
}
