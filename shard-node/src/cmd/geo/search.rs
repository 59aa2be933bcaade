//! The geo searches, as Redis's georadiusGeneric: GEOSEARCH, GEOSEARCHSTORE, GEORADIUS,
//! GEORADIUSBYMEMBER and their `_RO` forms, with the same argument order, error order and
//! result order. Points are gathered from the nine geohash cells Redis scans, in its order, then
//! sorted by distance: stably when all are returned (glibc's qsort, which Redis calls, is a stable
//! merge sort), else with Redis's own partial quicksort (`pqsort`), so points at the same distance
//! come out in Redis's order too.
//!
//! Known difference: with COUNT, more than 40 matches and points at exactly the same distance at
//! the top, Redis 7.0.15 was seen to order the tied points as a stable sort would, where the
//! ported pqsort (which agrees with Redis on smaller inputs) does not; not understood yet.

use std::cmp::Ordering;

use bytes::Bytes;
use tessera_proto::resp::Frame;

use super::geohash::{self, Search, Shape};
use super::{distance_frame, parse_lon_lat, parse_unit, position_frame};
use crate::cmd::parse::{err, parse_i64, ERR_NOT_INTEGER, ERR_SYNTAX, ERR_WRONGTYPE};
use crate::cmd::pqsort::pqsort;
use crate::cmd::zset::{parse_score, store};
use crate::cmd::Ctx;
use crate::keyspace::zset::ScoreRange;
use crate::keyspace::{SortedSet, ValueRef};

/// Which command runs the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// GEORADIUS (`ro`: GEORADIUS_RO, without STORE).
    Radius {
        ro: bool,
    },
    /// GEORADIUSBYMEMBER (`ro`: its `_RO` form).
    RadiusByMember {
        ro: bool,
    },
    Search,
    SearchStore,
}

impl Kind {
    fn is_search(self) -> bool {
        matches!(self, Kind::Search | Kind::SearchStore)
    }

    fn no_store(self) -> bool {
        matches!(
            self,
            Kind::Radius { ro: true } | Kind::RadiusByMember { ro: true }
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sort {
    None,
    Asc,
    Desc,
}

/// One match: its point, its distance from the centre (metres, then the query's unit), and its
/// score (the geohash).
struct Point {
    member: Bytes,
    xy: [f64; 2],
    dist: f64,
    score: f64,
}

/// A radius with its unit (extractDistanceOrReply): `(radius, metres per unit)`.
fn parse_distance(radius: &[u8], unit: &[u8]) -> Result<(f64, f64), Frame> {
    let r = parse_score(radius).ok_or_else(|| err("ERR need numeric radius"))?;
    if r < 0.0 {
        return Err(err("ERR radius cannot be negative"));
    }
    Ok((r, parse_unit(unit)?))
}

/// A box with its unit (extractBoxOrReply): `(width, height, metres per unit)`.
fn parse_box(width: &[u8], height: &[u8], unit: &[u8]) -> Result<(f64, f64, f64), Frame> {
    let w = parse_score(width).ok_or_else(|| err("ERR need numeric width"))?;
    let h = parse_score(height).ok_or_else(|| err("ERR need numeric height"))?;
    if h < 0.0 || w < 0.0 {
        return Err(err("ERR height or width cannot be negative"));
    }
    Ok((w, h, parse_unit(unit)?))
}

/// A member's position (longLatFromMember).
fn member_position(zset: &SortedSet, member: &[u8]) -> Result<[f64; 2], Frame> {
    zset.score(member)
        .and_then(geohash::decode_score)
        .ok_or_else(|| err("ERR could not decode requested zset member"))
}

pub fn search(ctx: &Ctx<'_>, args: &[Bytes], kind: Kind) -> Frame {
    let src_index = if kind == Kind::SearchStore { 2 } else { 1 };
    let src = &args[src_index];
    let mut txn = ctx.lock(src);
    let gathered = match txn.read(src).map(|e| e.value) {
        None => gather(args, kind, None),
        Some(ValueRef::ZSet(z)) => gather(args, kind, Some(z)),
        Some(_) => return err(ERR_WRONGTYPE),
    };
    let result = match gathered {
        Ok(r) => r,
        Err(e) => return e,
    };
    let Gathered {
        points,
        store_key,
        store_dist,
        with,
        conversion,
        count,
    } = result;
    let Some(mut points) = points else {
        // No source key: an empty reply, or the destination deleted.
        return match store_key {
            Some(dst) => {
                if txn.remove(&dst).is_some() {
                    txn.log(&[Bytes::from_static(b"DEL"), dst]);
                }
                Frame::Integer(0)
            }
            None => Frame::Array(Vec::new()),
        };
    };
    let returned = if count == 0 {
        points.len()
    } else {
        points.len().min(count)
    };
    points.truncate(returned);
    for p in points.iter_mut() {
        p.dist /= conversion;
    }
    match store_key {
        None => Frame::Array(
            points
                .into_iter()
                .map(|p| {
                    if !(with.dist || with.hash || with.coord) {
                        return Frame::Bulk(p.member);
                    }
                    let mut item = vec![Frame::Bulk(p.member)];
                    if with.dist {
                        item.push(distance_frame(p.dist));
                    }
                    if with.hash {
                        item.push(Frame::Integer(p.score as i64));
                    }
                    if with.coord {
                        item.push(position_frame(p.xy));
                    }
                    Frame::Array(item)
                })
                .collect(),
        ),
        Some(dst) => {
            let mut result = SortedSet::default();
            for p in points {
                let score = if store_dist { p.dist } else { p.score };
                result.insert(p.member, score);
            }
            let existed = txn.live(&dst).is_some();
            let n = store(&mut txn, &dst, result);
            if n > 0 || existed {
                // The same data gives the same result, so the command replays as it ran (as
                // Redis propagates it).
                txn.log(args);
            }
            Frame::Integer(n as i64)
        }
    }
}

#[derive(Default, Clone, Copy)]
struct With {
    dist: bool,
    hash: bool,
    coord: bool,
}

/// What a search found, and how to answer it; `points` is `None` when the source key is missing.
struct Gathered {
    points: Option<Vec<Point>>,
    store_key: Option<Bytes>,
    store_dist: bool,
    with: With,
    conversion: f64,
    count: usize,
}

/// Parses the arguments as georadiusGeneric does (errors in its order), then gathers and sorts
/// the matching points.
fn gather(args: &[Bytes], kind: Kind, zset: Option<&SortedSet>) -> Result<Gathered, Frame> {
    let mut center = [0.0f64; 2];
    let mut shape = Shape::Circle { radius: 0.0 };
    let mut conversion = 1.0;
    let mut store_key: Option<Bytes> = None;
    let base_args = match kind {
        Kind::Radius { .. } => {
            center = parse_lon_lat(&args[2], &args[3])?;
            let (r, c) = parse_distance(&args[4], &args[5])?;
            (shape, conversion) = (Shape::Circle { radius: r }, c);
            6
        }
        Kind::RadiusByMember { .. } => {
            if let Some(z) = zset {
                center = member_position(z, &args[2])?;
                let (r, c) = parse_distance(&args[3], &args[4])?;
                (shape, conversion) = (Shape::Circle { radius: r }, c);
            }
            5
        }
        Kind::Search => 2,
        Kind::SearchStore => {
            store_key = Some(args[1].clone());
            3
        }
    };
    let search = kind.is_search();
    let mut with = With::default();
    let (mut frommember, mut fromloc, mut byradius, mut bybox) = (false, false, false, false);
    let mut sort = Sort::None;
    let mut any = false;
    let mut count: i64 = 0;
    let mut store_dist = false;
    let opts = &args[base_args.min(args.len())..];
    let remaining = opts.len();
    let mut i = 0;
    while i < remaining {
        let arg = opts[i].to_ascii_lowercase();
        match arg.as_slice() {
            b"withdist" => with.dist = true,
            b"withhash" => with.hash = true,
            b"withcoord" => with.coord = true,
            b"any" => any = true,
            b"asc" => sort = Sort::Asc,
            b"desc" => sort = Sort::Desc,
            b"count" if i + 1 < remaining => {
                count = parse_i64(&opts[i + 1]).ok_or_else(|| err(ERR_NOT_INTEGER))?;
                if count <= 0 {
                    return Err(err("ERR COUNT must be > 0"));
                }
                i += 1;
            }
            b"store" | b"storedist" if i + 1 < remaining && !kind.no_store() && !search => {
                store_key = Some(opts[i + 1].clone());
                store_dist = arg == b"storedist";
                i += 1;
            }
            b"storedist" if kind == Kind::SearchStore => store_dist = true,
            b"frommember" if i + 1 < remaining && search && !fromloc => {
                if let Some(z) = zset {
                    center = member_position(z, &opts[i + 1])?;
                }
                frommember = true;
                i += 1;
            }
            b"fromlonlat" if i + 2 < remaining && search && !frommember => {
                center = parse_lon_lat(&opts[i + 1], &opts[i + 2])?;
                fromloc = true;
                i += 2;
            }
            b"byradius" if i + 2 < remaining && search && !bybox => {
                let (r, c) = parse_distance(&opts[i + 1], &opts[i + 2])?;
                (shape, conversion) = (Shape::Circle { radius: r }, c);
                byradius = true;
                i += 2;
            }
            b"bybox" if i + 3 < remaining && search && !byradius => {
                let (w, h, c) = parse_box(&opts[i + 1], &opts[i + 2], &opts[i + 3])?;
                (shape, conversion) = (
                    Shape::Box {
                        width: w,
                        height: h,
                    },
                    c,
                );
                bybox = true;
                i += 3;
            }
            _ => return Err(err(ERR_SYNTAX)),
        }
        i += 1;
    }
    if store_key.is_some() && (with.dist || with.hash || with.coord) {
        return Err(Frame::error(format!(
            "ERR {} is not compatible with WITHDIST, WITHHASH and WITHCOORD options",
            if kind == Kind::SearchStore {
                "GEOSEARCHSTORE"
            } else {
                "STORE option in GEORADIUS"
            }
        )));
    }
    let name = || String::from_utf8_lossy(&args[0]).into_owned();
    if search && !(frommember || fromloc) {
        return Err(Frame::error(format!(
            "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {}",
            name()
        )));
    }
    if search && !(byradius || bybox) {
        return Err(Frame::error(format!(
            "ERR exactly one of BYRADIUS and BYBOX can be specified for {}",
            name()
        )));
    }
    if any && count == 0 {
        return Err(err("ERR the ANY argument requires COUNT argument"));
    }
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    let mut gathered = Gathered {
        points: None,
        store_key,
        store_dist,
        with,
        conversion,
        count,
    };
    let Some(zset) = zset else {
        return Ok(gathered);
    };
    if count != 0 && sort == Sort::None && !any {
        sort = Sort::Asc;
    }
    let query = Search {
        xy: center,
        shape,
        conversion,
    };
    let mut points = members_of_all_neighbors(zset, &query, if any { count } else { 0 });
    if sort != Sort::None {
        let desc = sort == Sort::Desc;
        let mut by_dist = |a: &Point, b: &Point| {
            let o = a.dist.partial_cmp(&b.dist).unwrap_or(Ordering::Equal);
            if desc {
                o.reverse()
            } else {
                o
            }
        };
        let returned = if count == 0 {
            points.len()
        } else {
            points.len().min(count)
        };
        if returned == points.len() {
            points.sort_by(by_dist);
        } else if returned > 0 {
            pqsort(&mut points, &mut by_dist, 0, returned - 1);
        }
    }
    gathered.points = Some(points);
    Ok(gathered)
}

/// membersOfAllNeighbors: the matches in the nine cells, in Redis's order, skipping a cell equal
/// to the last one scanned (Redis's check, which never compares with the centre cell), and
/// stopping at `limit` matches (ANY; 0 for none).
fn members_of_all_neighbors(zset: &SortedSet, query: &Search, limit: usize) -> Vec<Point> {
    let cells = geohash::areas(query);
    let mut points = Vec::new();
    let mut last_processed = 0usize;
    for (i, cell) in cells.iter().enumerate() {
        if cell.bits == 0 && cell.step == 0 {
            continue;
        }
        if last_processed != 0 && *cell == cells[last_processed] {
            continue;
        }
        if !points.is_empty() && limit != 0 && points.len() >= limit {
            break;
        }
        let (min, max) = geohash::score_range(*cell);
        let range = ScoreRange {
            min: min as f64,
            min_exclusive: false,
            max: max as f64,
            max_exclusive: true,
        };
        for (member, score) in zset.score_range(range, false) {
            if let Some((xy, dist)) = geohash::within(query, score) {
                points.push(Point {
                    member: member.clone(),
                    xy,
                    dist,
                    score,
                });
            }
            if !points.is_empty() && limit != 0 && points.len() >= limit {
                break;
            }
        }
        last_processed = i;
    }
    points
}
