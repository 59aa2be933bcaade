//! HSCAN, SSCAN and ZSCAN. Small collections (what Redis keeps as a listpack or an intset) are
//! answered whole with cursor 0, in Redis's order, so they are compared with a real redis-server
//! byte for byte, errors included. Large ones page with a cursor: a full scan must return every
//! element present for the whole scan at least once, also while elements are added and removed
//! between calls (the table growing and shrinking under the cursor), and end.

mod data_support;

use std::collections::{HashMap, HashSet};

use anyhow::{bail, Context};
use data_support::{RawClient, TestNode};
use tessera_testkit::{Differ, RedisServer};

/// Compared byte for byte with redis-server; `<empty>` is an empty argument.
const SMALL_SCRIPT: &str = "
FLUSHALL
SET str v
HSET h b 1 a 2 c 3
HSCAN h 0
HSCAN h 0 COUNT 1
HSCAN h 123
HSCAN h 0 MATCH a*
HSCAN h 0 MATCH nomatch COUNT 100
HSET h a 22
HDEL h b
HSET h d 4
HSCAN h 0
HSCAN h <empty>
HSCAN h -1
OBJECT ENCODING h
SADD ints 5 -3 100 0 42
SSCAN ints 0
SSCAN ints 0 COUNT 1
SSCAN ints 99 MATCH 1*
OBJECT ENCODING ints
ZADD z 3 c 1 a 2 b 2 aa
ZSCAN z 0
ZSCAN z 0 COUNT 1 MATCH a*
ZSCAN z 7
OBJECT ENCODING z
HSCAN h x
HSCAN h 1x
HSCAN h <sp>1
HSCAN h 18446744073709551616
HSCAN h 18446744073709551615
HSCAN h 0 COUNT 0
HSCAN h 0 COUNT -1
HSCAN h 0 COUNT x
HSCAN h 0 MATCH
HSCAN h 0 NOVALUES
HSCAN h 0 COUNT 1 MATCH
HSCAN nokey 0
HSCAN nokey 0 COUNT 0
HSCAN nokey x
HSCAN str 0
HSCAN str 0 COUNT 0
SSCAN ints x
SSCAN ints 0 COUNT 0
SSCAN ints 0 FOO bar
SSCAN nokey 0
SSCAN h 0
ZSCAN z x
ZSCAN z 0 COUNT 0
ZSCAN z 0 MATCH
ZSCAN nokey 0
ZSCAN str 0
HSET grows f 1
HSET grows long 01234567890123456789012345678901234567890123456789012345678901234
OBJECT ENCODING grows
HDEL grows long
OBJECT ENCODING grows
";

#[tokio::test]
async fn small_scans_and_errors_match_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let mut diff = Differ::connect(redis.addr(), node.addr).await?;
    diff.script(SMALL_SCRIPT, "").await?;
    diff.assert_none();
    node.stop().await
}

/// Reads one `\r\n`-terminated line of `reply` from `at`.
fn line_at<'a>(reply: &'a [u8], at: &mut usize) -> anyhow::Result<&'a [u8]> {
    let rest = &reply[*at..];
    let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
        bail!("truncated reply: {:?}", String::from_utf8_lossy(reply));
    };
    *at += end + 2;
    Ok(&rest[..end])
}

fn bulk_at(reply: &[u8], at: &mut usize) -> anyhow::Result<Vec<u8>> {
    let header = line_at(reply, at)?;
    let Some(len) = header.strip_prefix(b"$") else {
        bail!("not a bulk: {:?}", String::from_utf8_lossy(header));
    };
    let len: usize = std::str::from_utf8(len)?.parse()?;
    let body = reply
        .get(*at..*at + len)
        .context("bulk shorter than announced")?
        .to_vec();
    *at += len + 2;
    Ok(body)
}

/// A SCAN-family reply: the next cursor and the elements.
fn parse_scan(reply: &[u8]) -> anyhow::Result<(u64, Vec<Vec<u8>>)> {
    let mut at = 0;
    if line_at(reply, &mut at)? != b"*2" {
        bail!("not a scan reply: {:?}", String::from_utf8_lossy(reply));
    }
    let cursor = std::str::from_utf8(&bulk_at(reply, &mut at)?)?.parse()?;
    let header = line_at(reply, &mut at)?;
    let Some(count) = header.strip_prefix(b"*") else {
        bail!("no element array: {:?}", String::from_utf8_lossy(reply));
    };
    let count: usize = std::str::from_utf8(count)?.parse()?;
    let items = (0..count)
        .map(|_| bulk_at(reply, &mut at))
        .collect::<anyhow::Result<_>>()?;
    Ok((cursor, items))
}

fn parse_array(reply: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut at = 0;
    let header = line_at(reply, &mut at)?;
    let Some(count) = header.strip_prefix(b"*") else {
        bail!("not an array: {:?}", String::from_utf8_lossy(reply));
    };
    let count: usize = std::str::from_utf8(count)?.parse()?;
    (0..count).map(|_| bulk_at(reply, &mut at)).collect()
}

/// Every element a full scan of `key` returns (`cmd` is HSCAN, SSCAN or ZSCAN; `per` is 2 for
/// pairs, whose first half is kept), with how many calls it took. `between` runs after every call
/// that did not end the scan, with the call's index.
async fn full_scan(
    client: &mut RawClient,
    cmd: &str,
    key: &str,
    count: usize,
    per: usize,
    mut between: impl AsyncFnMut(&mut RawClient, usize) -> anyhow::Result<()>,
) -> anyhow::Result<(Vec<Vec<u8>>, usize)> {
    let mut cursor = 0u64;
    let mut seen = Vec::new();
    for call in 0..100_000 {
        let line = format!("{cmd} {key} {cursor} COUNT {count}");
        let reply = client.cmd(&data_support::words(&line)).await?;
        let (next, items) = parse_scan(&reply)?;
        if items.len() % per != 0 {
            bail!("odd element count from {line}");
        }
        seen.extend(items.into_iter().step_by(per));
        if next == 0 {
            return Ok((seen, call + 1));
        }
        cursor = next;
        between(client, call).await?;
    }
    bail!("{cmd} {key} did not end within 100000 calls")
}

fn as_set(items: &[Vec<u8>]) -> HashSet<Vec<u8>> {
    items.iter().cloned().collect()
}

/// Fills `key` with `n` elements named `{prefix}{i}` by `cmd` (HSET, SADD or ZADD), 100 at a time.
async fn fill(
    client: &mut RawClient,
    cmd: &str,
    key: &str,
    prefix: &str,
    range: std::ops::Range<usize>,
) -> anyhow::Result<()> {
    let ids: Vec<usize> = range.collect();
    for chunk in ids.chunks(100) {
        let mut line = format!("{cmd} {key}");
        for i in chunk {
            match cmd {
                "HSET" => line.push_str(&format!(" {prefix}{i} v{i}")),
                "SADD" => line.push_str(&format!(" {prefix}{i}")),
                _ => line.push_str(&format!(" {i} {prefix}{i}")),
            }
        }
        let reply = client.line(&line).await?;
        if !reply.starts_with(':') {
            bail!("{cmd}: {reply}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn large_collections_page_and_return_everything() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut client = node.client().await?;
    for (cmd, scan, key, per) in [
        ("HSET", "HSCAN", "bighash", 2),
        ("SADD", "SSCAN", "bigset", 1),
        ("ZADD", "ZSCAN", "bigzset", 2),
    ] {
        fill(&mut client, cmd, key, "m", 0..1000).await?;
        let (seen, calls) = full_scan(&mut client, scan, key, 10, per, async |_, _| Ok(())).await?;
        // A table pages: COUNT 10 over 1000 elements takes many calls.
        assert!(calls >= 20, "{scan} took {calls} calls");
        let all = match scan {
            "HSCAN" => {
                client
                    .cmd(&data_support::words(&format!("HKEYS {key}")))
                    .await?
            }
            "SSCAN" => {
                client
                    .cmd(&data_support::words(&format!("SMEMBERS {key}")))
                    .await?
            }
            _ => {
                client
                    .cmd(&data_support::words(&format!("ZRANGE {key} 0 -1")))
                    .await?
            }
        };
        let all = as_set(&parse_array(&all)?);
        assert_eq!(all.len(), 1000);
        assert_eq!(
            as_set(&seen),
            all,
            "{scan}: the union is the whole collection"
        );
        // On a table nothing changes under: each element exactly once.
        assert_eq!(
            seen.len(),
            1000,
            "{scan} returned duplicates on a stable table"
        );
        let encoding = client.line(&format!("OBJECT ENCODING {key}")).await?;
        let want = if scan == "ZSCAN" {
            "skiplist"
        } else {
            "hashtable"
        };
        assert_eq!(encoding, format!("${}\r\n{want}\r\n", want.len()));
    }
    // HSCAN pairs each field with its value.
    let mut cursor = 0u64;
    let mut pairs = HashMap::new();
    for _ in 0..10_000 {
        let reply = client
            .line(&format!("HSCAN bighash {cursor} COUNT 100"))
            .await?;
        let (next, items) = parse_scan(reply.as_bytes())?;
        pairs.extend(items.chunks(2).map(|p| (p[0].clone(), p[1].clone())));
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(pairs.len(), 1000);
    for (field, value) in &pairs {
        assert_eq!(
            value[1..],
            field[1..],
            "HSCAN paired {field:?} with {value:?}"
        );
    }
    // MATCH filters what a page gathered; a full matched scan finds exactly the matches.
    let mut cursor = 0u64;
    let mut matched = HashSet::new();
    for _ in 0..10_000 {
        let reply = client
            .line(&format!("SSCAN bigset {cursor} MATCH m99* COUNT 50"))
            .await?;
        let (next, items) = parse_scan(reply.as_bytes())?;
        matched.extend(items);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(cursor, 0, "the matched scan did not end");
    let want: HashSet<Vec<u8>> = [
        "m99", "m990", "m991", "m992", "m993", "m994", "m995", "m996", "m997", "m998", "m999",
    ]
    .iter()
    .map(|m| m.as_bytes().to_vec())
    .collect();
    assert_eq!(matched, want);
    node.stop().await
}

#[tokio::test]
async fn a_scan_returns_every_element_present_throughout_while_others_change() -> anyhow::Result<()>
{
    let node = TestNode::start().await?;
    let mut client = node.client().await?;
    for (cmd, scan, del, key, per) in [
        ("HSET", "HSCAN", "HDEL", "churnhash", 2),
        ("SADD", "SSCAN", "SREM", "churnset", 1),
        ("ZADD", "ZSCAN", "ZREM", "churnzset", 2),
    ] {
        // 200 elements stay for the whole scan ("keep"); others come in bursts large enough to
        // double the table several times (to 4096 buckets), then go again, shrinking it back
        // under the cursor.
        fill(&mut client, cmd, key, "keep", 0..200).await?;
        let (seen, _) = full_scan(&mut client, scan, key, 5, per, async |client, call| {
            if call % 20 < 10 {
                let start = 100_000 + call * 300;
                fill(client, cmd, key, "tmp", start..start + 300).await
            } else if call % 10 == 0 {
                let members = match scan {
                    "HSCAN" => client.line(&format!("HKEYS {key}")).await?,
                    "SSCAN" => client.line(&format!("SMEMBERS {key}")).await?,
                    _ => client.line(&format!("ZRANGE {key} 0 -1")).await?,
                };
                let doomed: Vec<Vec<u8>> = parse_array(members.as_bytes())?
                    .into_iter()
                    .filter(|m| m.starts_with(b"tmp"))
                    .collect();
                for chunk in doomed.chunks(200) {
                    let mut args: Vec<&[u8]> = vec![del.as_bytes(), key.as_bytes()];
                    args.extend(chunk.iter().map(Vec::as_slice));
                    client.cmd(&args).await?;
                }
                Ok(())
            } else {
                Ok(())
            }
        })
        .await?;
        let seen = as_set(&seen);
        for i in 0..200 {
            assert!(
                seen.contains(format!("keep{i}").as_bytes()),
                "{scan}: keep{i}, present throughout, was never returned"
            );
        }
        let deleted = client.line(&format!("DEL {key}")).await?;
        assert_eq!(deleted, ":1\r\n");
    }
    node.stop().await
}
