//! Set algebra over sorted sets (and plain sets, scored 1): ZUNION ZINTER ZDIFF ZINTERCARD and
//! ZUNIONSTORE ZINTERSTORE ZDIFFSTORE, with WEIGHTS and AGGREGATE as zunionInterDiffGenericCommand.

use std::collections::HashMap;

use bytes::Bytes;
use tessera_proto::resp::Frame;

use super::{members_reply, parse_score, store};
use crate::cmd::parse::{err, parse_i64, ERR_NOT_INTEGER, ERR_SYNTAX, ERR_WRONGTYPE};
use crate::cmd::{ClientSession, Ctx};
use crate::keyspace::{SortedSet, ValueRef};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

fn aggregate(target: &mut f64, value: f64, how: Aggregate) {
    match how {
        Aggregate::Sum => {
            *target += value;
            // +inf plus -inf is taken as 0, as Redis does.
            if target.is_nan() {
                *target = 0.0;
            }
        }
        Aggregate::Min => {
            if value < *target {
                *target = value;
            }
        }
        Aggregate::Max => {
            if value > *target {
                *target = value;
            }
        }
    }
}

/// `weight * score`, with 0 for the NaN of `0 * inf`.
fn weighted(score: f64, weight: f64) -> f64 {
    let v = score * weight;
    if v.is_nan() {
        0.0
    } else {
        v
    }
}

pub fn zunion(ctx: &Ctx<'_>, session: &ClientSession, args: &[Bytes]) -> Frame {
    combine(ctx, session, args, Op::Union, false, false)
}

pub fn zinter(ctx: &Ctx<'_>, session: &ClientSession, args: &[Bytes]) -> Frame {
    combine(ctx, session, args, Op::Inter, false, false)
}

pub fn zdiff(ctx: &Ctx<'_>, session: &ClientSession, args: &[Bytes]) -> Frame {
    combine(ctx, session, args, Op::Diff, false, false)
}

pub fn zintercard(ctx: &Ctx<'_>, session: &ClientSession, args: &[Bytes]) -> Frame {
    combine(ctx, session, args, Op::Inter, false, true)
}

pub fn zunionstore(ctx: &Ctx<'_>, session: &ClientSession, args: &[Bytes]) -> Frame {
    combine(ctx, session, args, Op::Union, true, false)
}

pub fn zinterstore(ctx: &Ctx<'_>, session: &ClientSession, args: &[Bytes]) -> Frame {
    combine(ctx, session, args, Op::Inter, true, false)
}

pub fn zdiffstore(ctx: &Ctx<'_>, session: &ClientSession, args: &[Bytes]) -> Frame {
    combine(ctx, session, args, Op::Diff, true, false)
}

/// One input: its members and scores, and its weight.
struct Source {
    members: Vec<(Bytes, f64)>,
    weight: f64,
}

/// ZUNION/ZINTER/ZDIFF (`dst` false), their STORE forms (`dst` true) and ZINTERCARD (`card`).
pub fn combine(
    ctx: &Ctx<'_>,
    session: &ClientSession,
    args: &[Bytes],
    op: Op,
    dst: bool,
    card: bool,
) -> Frame {
    let numkeys_idx = if dst { 2 } else { 1 };
    let setnum = match parse_i64(&args[numkeys_idx]) {
        Some(n) => n,
        None => return err(ERR_NOT_INTEGER),
    };
    if setnum < 1 {
        return Frame::error(format!(
            "ERR at least 1 input key is needed for '{}' command",
            String::from_utf8_lossy(&args[0]).to_ascii_lowercase()
        ));
    }
    if setnum as u64 > (args.len() - numkeys_idx - 1) as u64 {
        return err(ERR_SYNTAX);
    }
    let setnum = setnum as usize;
    let keys = &args[numkeys_idx + 1..numkeys_idx + 1 + setnum];
    let mut txn = ctx.lock(&keys[0]);
    let mut sources = Vec::with_capacity(setnum);
    for key in keys {
        let found = if dst { txn.live(key) } else { txn.read(key) };
        let members = match found.map(|e| e.value) {
            None => Vec::new(),
            Some(ValueRef::ZSet(z)) => z.iter().map(|(m, s)| (m.clone(), s)).collect(),
            Some(ValueRef::Set(s)) => s.iter().map(|m| (m.clone(), 1.0)).collect(),
            Some(_) => return err(ERR_WRONGTYPE),
        };
        sources.push(Source {
            members,
            weight: 1.0,
        });
    }
    let mut how = Aggregate::Sum;
    let mut withscores = false;
    let mut limit = 0i64;
    let mut j = numkeys_idx + 1 + setnum;
    while j < args.len() {
        let remaining = args.len() - j;
        let opt = args[j].to_ascii_lowercase();
        if op != Op::Diff && !card && remaining > setnum && opt == b"weights" {
            j += 1;
            for source in sources.iter_mut() {
                match parse_score(&args[j]) {
                    Some(w) => source.weight = w,
                    None => return err("ERR weight value is not a float"),
                }
                j += 1;
            }
        } else if op != Op::Diff && !card && remaining >= 2 && opt == b"aggregate" {
            how = match args[j + 1].to_ascii_lowercase().as_slice() {
                b"sum" => Aggregate::Sum,
                b"min" => Aggregate::Min,
                b"max" => Aggregate::Max,
                _ => return err(ERR_SYNTAX),
            };
            j += 2;
        } else if !dst && !card && opt == b"withscores" {
            withscores = true;
            j += 1;
        } else if card && remaining >= 2 && opt == b"limit" {
            limit = match parse_i64(&args[j + 1]) {
                Some(n) if n >= 0 => n,
                _ => return err("ERR LIMIT can't be negative"),
            };
            j += 2;
        } else {
            return err(ERR_SYNTAX);
        }
    }
    let result = compute(sources, op, how, card.then_some(limit));
    if card {
        return Frame::Integer(result.len() as i64);
    }
    if dst {
        let n = store(&mut txn, &args[1], result);
        // Deterministic given the inputs, so the command itself replays to the same state.
        txn.log(args);
        return Frame::Integer(n as i64);
    }
    let items = result.iter().map(|(m, s)| (m.clone(), s)).collect();
    members_reply(session.protocol, items, withscores)
}

/// The combined set; `card_limit` (ZINTERCARD, 0 = none) stops an intersection early.
fn compute(mut sources: Vec<Source>, op: Op, how: Aggregate, card_limit: Option<i64>) -> SortedSet {
    let mut out = SortedSet::default();
    match op {
        Op::Diff => {
            let first = sources.remove(0);
            let others: Vec<HashMap<Bytes, f64>> = sources
                .into_iter()
                .map(|s| s.members.into_iter().collect())
                .collect();
            for (m, s) in first.members {
                if others.iter().all(|o| !o.contains_key(&m)) {
                    out.insert(m, s);
                }
            }
        }
        Op::Inter => {
            // Smallest first, as Redis, which also fixes the order scores are summed in.
            sources.sort_by_key(|s| s.members.len());
            let first = sources.remove(0);
            let others: Vec<(HashMap<Bytes, f64>, f64)> = sources
                .into_iter()
                .map(|s| (s.members.into_iter().collect(), s.weight))
                .collect();
            'members: for (m, s) in first.members {
                let mut score = weighted(s, first.weight);
                for (other, weight) in &others {
                    match other.get(&m) {
                        // Unlike the first set's, this product keeps a NaN, as Redis.
                        Some(v) => aggregate(&mut score, *v * *weight, how),
                        None => continue 'members,
                    }
                }
                out.insert(m, score);
                if let Some(limit) = card_limit {
                    if limit > 0 && out.len() as i64 >= limit {
                        break;
                    }
                }
            }
        }
        Op::Union => {
            sources.sort_by_key(|s| s.members.len());
            let mut acc: HashMap<Bytes, f64> = HashMap::new();
            for source in sources {
                for (m, s) in source.members {
                    let v = weighted(s, source.weight);
                    acc.entry(m)
                        .and_modify(|t| aggregate(t, v, how))
                        .or_insert(v);
                }
            }
            for (m, s) in acc {
                out.insert(m, s);
            }
        }
    }
    out
}
