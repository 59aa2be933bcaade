//! A blocking command's timeout is read by the proxy as the shard nodes read it (Redis's
//! long-double syntax, `command::parse_timeout`): a timeout written `0x1p0` or `1e0` is a second,
//! and the proxy waits for it past its backend timeout instead of giving up on the reply.

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
