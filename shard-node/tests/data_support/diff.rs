//! Differential checking: the same command to redis-server and to a shard node, replies compared
//! byte for byte (or, for replies whose order Redis itself does not fix, as sorted multisets), with
//! every mismatch collected so one run shows them all.

use anyhow::Context;
use tessera_proto::resp::frame::{self, Frame, FrameLimits, Protocol};

use super::RawClient;

/// A small seeded generator (xorshift64*), so a failing run can be repeated exactly.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced, xorshift never leaves it).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// How two replies must agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Byte for byte.
    Exact,
    /// The same elements of a flat array in any order (SMEMBERS, HKEYS, SUNION, ...).
    Unordered,
    /// The same field-value pairs of a flat array in any order (HGETALL).
    Pairs,
}

/// Both connections and the mismatches found so far.
pub struct Differ<'a> {
    pub theirs: &'a mut RawClient,
    pub ours: &'a mut RawClient,
    pub mismatches: Vec<String>,
}

impl<'a> Differ<'a> {
    pub fn new(theirs: &'a mut RawClient, ours: &'a mut RawClient) -> Differ<'a> {
        Differ {
            theirs,
            ours,
            mismatches: Vec::new(),
        }
    }

    /// Sends `args` to both and records a mismatch under `label`.
    pub async fn check(&mut self, args: &[&[u8]], order: Order, label: &str) -> anyhow::Result<()> {
        let shown = || {
            args.iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let want = self
            .theirs
            .cmd(args)
            .await
            .with_context(|| format!("redis: {}", shown()))?;
        let got = self
            .ours
            .cmd(args)
            .await
            .with_context(|| format!("node: {}", shown()))?;
        if normalize(&want, order) != normalize(&got, order) {
            self.mismatches.push(format!(
                "({label}) {}\n   redis: {:?}\n    node: {:?}",
                shown(),
                String::from_utf8_lossy(&want),
                String::from_utf8_lossy(&got)
            ));
        }
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
}

/// The reply as compared: itself, or its array elements (or pairs) sorted.
fn normalize(reply: &[u8], order: Order) -> Vec<Vec<u8>> {
    let whole = || vec![reply.to_vec()];
    if order == Order::Exact {
        return whole();
    }
    let items = match frame::parse(reply, &FrameLimits::default()) {
        Ok(Some((Frame::Array(items), _))) | Ok(Some((Frame::Set(items), _))) => items,
        _ => return whole(),
    };
    let encoded: Vec<Vec<u8>> = items
        .iter()
        .map(|f| f.to_bytes(Protocol::Resp3).to_vec())
        .collect();
    let mut units: Vec<Vec<u8>> = match order {
        Order::Pairs => encoded.chunks(2).map(|pair| pair.concat()).collect(),
        _ => encoded,
    };
    units.sort();
    units
}
