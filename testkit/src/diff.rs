//! Differential checking: the same commands go to a real redis-server (the specification) and to
//! a Tessera endpoint (a shard node or the proxy), and the replies are compared byte for byte, or,
//! for replies whose order Redis itself does not fix, as sorted multisets of their elements'
//! bytes. Every mismatch is collected so one run shows them all.
//!
//! Scripts hold one command a line, arguments split on single spaces; `<sp>` stands for a space
//! inside an argument and `<empty>` for an empty argument. A line may start with a mode word:
//! `sorted` (the elements of an array or set in any order: KEYS, SMEMBERS), `pairs` (field-value
//! pairs in any order: HGETALL, CONFIG GET), `scan` / `scanpairs` (a SCAN-like `[cursor, items]`
//! reply whose items are compared as `sorted` / `pairs`), or `ignore` (sent to both, not
//! compared: a step whose reply legitimately differs, such as a timestamp).

use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use tessera_proto::resp::frame::{self, FrameLimits};

use crate::client::{exchange_raw, RawClient};

/// How two replies must agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Byte for byte.
    Exact,
    /// The same elements of an aggregate in any order (SMEMBERS, KEYS, SUNION, ...).
    Unordered,
    /// The same field-value pairs of an aggregate in any order (HGETALL, CONFIG GET).
    Pairs,
    /// `[cursor, elements]`: the cursor exactly, the elements in any order (SCAN, SSCAN).
    Scan,
    /// `[cursor, pairs]`: the cursor exactly, the pairs in any order (HSCAN, ZSCAN).
    ScanPairs,
    /// Not compared at all.
    Ignore,
}

/// One script line: its mode and its arguments.
pub fn parse_line(line: &str) -> (Order, Vec<Vec<u8>>) {
    let (order, rest) = match line.split_once(' ') {
        Some(("sorted", rest)) => (Order::Unordered, rest),
        Some(("pairs", rest)) => (Order::Pairs, rest),
        Some(("scan", rest)) => (Order::Scan, rest),
        Some(("scanpairs", rest)) => (Order::ScanPairs, rest),
        Some(("ignore", rest)) => (Order::Ignore, rest),
        _ => (Order::Exact, line),
    };
    let args = rest
        .split(' ')
        .map(|word| match word {
            "<empty>" => Vec::new(),
            _ => word.replace("<sp>", " ").into_bytes(),
        })
        .collect();
    (order, args)
}

/// Both connections, their addresses (to reconnect), and the mismatches found so far.
pub struct Differ {
    /// The redis-server connection.
    pub theirs: RawClient,
    /// The Tessera connection.
    pub ours: RawClient,
    theirs_addr: SocketAddr,
    ours_addr: SocketAddr,
    pub mismatches: Vec<String>,
}

impl Differ {
    /// Connects to redis-server at `theirs` and to Tessera at `ours`.
    pub async fn connect(theirs: SocketAddr, ours: SocketAddr) -> anyhow::Result<Differ> {
        Ok(Differ {
            theirs: RawClient::connect(theirs).await?,
            ours: RawClient::connect(ours).await?,
            theirs_addr: theirs,
            ours_addr: ours,
            mismatches: Vec::new(),
        })
    }

    /// Fresh connections to both (RESP2, no name, no subscriptions); the mismatches are kept.
    pub async fn reconnect(&mut self) -> anyhow::Result<()> {
        self.theirs = RawClient::connect(self.theirs_addr).await?;
        self.ours = RawClient::connect(self.ours_addr).await?;
        Ok(())
    }

    /// Sends one script line to both without comparing the replies (`HELLO 3`, whose server
    /// fields differ, or a FLUSHALL between scripts).
    pub async fn both(&mut self, line: &str) -> anyhow::Result<()> {
        let (_, args) = parse_line(line);
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        self.theirs.cmd(&args).await.context("redis-server")?;
        self.ours.cmd(&args).await.context("tessera")?;
        Ok(())
    }

    /// Switches both connections to RESP3 (`HELLO 3`).
    pub async fn resp3(&mut self) -> anyhow::Result<()> {
        self.both("HELLO 3").await
    }

    /// Sends `args` to both and records a mismatch under `label`.
    pub async fn check(&mut self, args: &[&[u8]], order: Order, label: &str) -> anyhow::Result<()> {
        let shown = show(args);
        let want = self
            .theirs
            .cmd(args)
            .await
            .with_context(|| format!("redis-server: {shown}"))?;
        let got = self
            .ours
            .cmd(args)
            .await
            .with_context(|| format!("tessera: {shown}"))?;
        self.record(&shown, &want, &got, order, label);
        Ok(())
    }

    /// Runs every line of `script` (see the module notes), recording mismatches under `label`.
    pub async fn script(&mut self, script: &str, label: &str) -> anyhow::Result<()> {
        for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (order, args) = parse_line(line);
            let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            self.check(&args, order, label).await?;
        }
        Ok(())
    }

    /// Sends `args` to both, panics at once if the replies differ by a byte, and returns the
    /// reply: for tests that go on to use it.
    pub async fn same(&mut self, args: &[&[u8]]) -> anyhow::Result<Bytes> {
        same_reply(&mut self.theirs, &mut self.ours, args).await
    }

    /// The usual pair: `resp2` on fresh RESP2 connections, then `resp3` on fresh connections
    /// switched with `HELLO 3` (keys written by the first script are still there; start the
    /// second with `FLUSHALL` for a clean slate). Mismatches are labelled RESP2 / RESP3.
    pub async fn scripts(&mut self, resp2: &str, resp3: &str) -> anyhow::Result<()> {
        self.script(resp2, "RESP2").await?;
        self.reconnect().await?;
        self.resp3().await?;
        self.script(resp3, "RESP3").await
    }

    /// Sends raw `bytes` (malformed input, inline commands) on a fresh connection to each and
    /// compares everything received until the server closes it.
    pub async fn exchange(&mut self, bytes: &[u8], label: &str) -> anyhow::Result<()> {
        let want = exchange_raw(self.theirs_addr, bytes).await?;
        let got = exchange_raw(self.ours_addr, bytes).await?;
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(60)]);
        self.record(&format!("{shown:?}"), &want, &got, Order::Exact, label);
        Ok(())
    }

    /// Fails the test listing every mismatch.
    pub fn assert_none(&self) {
        assert!(
            self.mismatches.is_empty(),
            "{} replies differ:\n{}",
            self.mismatches.len(),
            self.mismatches.join("\n")
        );
    }

    fn record(&mut self, shown: &str, want: &[u8], got: &[u8], order: Order, label: &str) {
        if order == Order::Ignore || normalize(want, order) == normalize(got, order) {
            return;
        }
        let label = if label.is_empty() {
            String::new()
        } else {
            format!("({label}) ")
        };
        self.mismatches.push(format!(
            "{label}{shown}\n    redis: {:?}\n  tessera: {:?}",
            String::from_utf8_lossy(want),
            String::from_utf8_lossy(got)
        ));
    }
}

/// Sends `args` on both connections (redis-server's first), panics at once if the replies differ
/// by a byte, and returns Tessera's: the one-step comparison for tests that drive their own
/// connections (a proxy client next to a Redis node's) rather than a [`Differ`].
pub async fn same_reply(
    theirs: &mut RawClient,
    ours: &mut RawClient,
    args: &[&[u8]],
) -> anyhow::Result<Bytes> {
    let want = theirs.cmd(args).await.context("redis-server")?;
    let got = ours.cmd(args).await.context("tessera")?;
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want),
        "reply to {} (left: tessera, right: redis)",
        show(args)
    );
    Ok(got)
}

fn show(args: &[&[u8]]) -> String {
    args.iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// An aggregate reply split into its header line and its elements' raw encodings; `None` for a
/// reply that is not an array, set or map.
pub fn split_aggregate(reply: &[u8]) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    let header_end = reply.windows(2).position(|w| w == b"\r\n")? + 2;
    let header = reply[..header_end].to_vec();
    if !matches!(header.first(), Some(b'*' | b'~' | b'%')) {
        return None;
    }
    let limits = FrameLimits::default();
    let mut rest = &reply[header_end..];
    let mut elements = Vec::new();
    while !rest.is_empty() {
        let len = frame::check(rest, &limits).ok()??;
        elements.push(rest[..len].to_vec());
        rest = &rest[len..];
    }
    Some((header, elements))
}

/// The reply in a form where the order Redis leaves open no longer matters: the header kept, the
/// elements (or pairs) sorted.
fn normalize(reply: &[u8], order: Order) -> Vec<Vec<u8>> {
    let sorted = |elements: Vec<Vec<u8>>, pairs: bool| -> Vec<Vec<u8>> {
        let mut units: Vec<Vec<u8>> = if pairs {
            elements.chunks(2).map(|c| c.concat()).collect()
        } else {
            elements
        };
        units.sort();
        units
    };
    let whole = || vec![reply.to_vec()];
    let Some((header, elements)) = split_aggregate(reply) else {
        return whole();
    };
    let mut out = vec![header];
    match order {
        Order::Unordered | Order::Pairs => out.extend(sorted(elements, order == Order::Pairs)),
        Order::Scan | Order::ScanPairs if elements.len() == 2 => {
            out.push(elements[0].clone());
            match split_aggregate(&elements[1]) {
                Some((inner_header, inner)) => {
                    out.push(inner_header);
                    out.extend(sorted(inner, order == Order::ScanPairs));
                }
                None => out.push(elements[1].clone()),
            }
        }
        _ => return whole(),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_lines_parse_modes_spaces_and_empty_arguments() {
        assert_eq!(
            parse_line("SET k a<sp>b"),
            (
                Order::Exact,
                vec![b"SET".to_vec(), b"k".to_vec(), b"a b".to_vec()]
            )
        );
        assert_eq!(
            parse_line("sorted ECHO <empty>"),
            (Order::Unordered, vec![b"ECHO".to_vec(), Vec::new()])
        );
        assert_eq!(parse_line("scanpairs HSCAN h 0").0, Order::ScanPairs);
        assert_eq!(parse_line("ignore TIME").0, Order::Ignore);
    }

    #[test]
    fn orders_compare_what_redis_fixes_and_nothing_else() {
        let ab = b"*2\r\n$1\r\na\r\n$1\r\nb\r\n";
        let ba = b"*2\r\n$1\r\nb\r\n$1\r\na\r\n";
        assert_ne!(normalize(ab, Order::Exact), normalize(ba, Order::Exact));
        assert_eq!(
            normalize(ab, Order::Unordered),
            normalize(ba, Order::Unordered)
        );
        // A set is not an array, even with the same elements.
        let set = b"~2\r\n$1\r\na\r\n$1\r\nb\r\n";
        assert_ne!(
            normalize(ab, Order::Unordered),
            normalize(set, Order::Unordered)
        );
        let pairs = b"*4\r\n$1\r\nf\r\n$1\r\n1\r\n$1\r\ng\r\n$1\r\n2\r\n";
        let swapped = b"*4\r\n$1\r\ng\r\n$1\r\n2\r\n$1\r\nf\r\n$1\r\n1\r\n";
        let mixed = b"*4\r\n$1\r\nf\r\n$1\r\n2\r\n$1\r\ng\r\n$1\r\n1\r\n";
        assert_eq!(
            normalize(pairs, Order::Pairs),
            normalize(swapped, Order::Pairs)
        );
        assert_ne!(
            normalize(pairs, Order::Pairs),
            normalize(mixed, Order::Pairs)
        );
        let scan = b"*2\r\n$1\r\n0\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n";
        let scan_ba = b"*2\r\n$1\r\n0\r\n*2\r\n$1\r\nb\r\n$1\r\na\r\n";
        let other_cursor = b"*2\r\n$1\r\n5\r\n*2\r\n$1\r\nb\r\n$1\r\na\r\n";
        assert_eq!(
            normalize(scan, Order::Scan),
            normalize(scan_ba, Order::Scan)
        );
        assert_ne!(
            normalize(scan, Order::Scan),
            normalize(other_cursor, Order::Scan)
        );
    }
}
