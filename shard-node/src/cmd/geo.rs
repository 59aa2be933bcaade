//! Geo commands: geo sets are sorted sets whose scores are 52-bit interleaved geohashes
//! (`geo::geohash`, Redis's arithmetic ported as is). GEOADD is ZADD of the hashes (and is logged
//! as that ZADD); GEOPOS GEODIST GEOHASH decode scores; the searches (GEOSEARCH, GEORADIUS and
//! their variants) live in `geo::search`.

pub mod geohash;
pub mod search;

use bytes::Bytes;
use tessera_proto::resp::Frame;

use super::dispatch::DispatchEntry;
use super::parse::{err, ERR_NOT_FLOAT, ERR_SYNTAX};
use super::zset::{basic, parse_score, read_zset};
use super::Ctx;
use geohash::{LAT_MAX, LAT_MIN, LONG_MAX, LONG_MIN, STEP_MAX};

/// A coordinate pair from two arguments (extractLongLatOrReply): floats as Redis reads them, then
/// within the ranges a geohash can hold.
pub fn parse_lon_lat(lon: &[u8], lat: &[u8]) -> Result<[f64; 2], Frame> {
    let x = parse_score(lon).ok_or_else(|| err(ERR_NOT_FLOAT))?;
    let y = parse_score(lat).ok_or_else(|| err(ERR_NOT_FLOAT))?;
    if !(LONG_MIN..=LONG_MAX).contains(&x) || !(LAT_MIN..=LAT_MAX).contains(&y) {
        return Err(Frame::error(format!(
            "ERR invalid longitude,latitude pair {x:.6},{y:.6}"
        )));
    }
    Ok([x, y])
}

/// Metres per unit (extractUnitOrReply).
pub fn parse_unit(unit: &[u8]) -> Result<f64, Frame> {
    match unit.to_ascii_lowercase().as_slice() {
        b"m" => Ok(1.0),
        b"km" => Ok(1000.0),
        b"ft" => Ok(0.3048),
        b"mi" => Ok(1609.34),
        _ => Err(err(
            "ERR unsupported unit provided. please use M, KM, FT, MI",
        )),
    }
}

/// A distance as Redis replies it: `%.4f`.
pub fn distance_frame(d: f64) -> Frame {
    Frame::Bulk(Bytes::from(format!("{d:.4}")))
}

/// A coordinate as Redis's addReplyHumanLongDouble writes it: `%.17Lf` of the value without
/// trailing zeros (a double widened to long double is exact, so `{:.17}` of the double is the same
/// text), `-0` as `0`; a double in RESP3.
pub fn coord_frame(x: f64) -> Frame {
    let text = format!("{x:.17}");
    let mut text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    if text == "-0" {
        text = "0".into();
    }
    Frame::Double(Bytes::from(text))
}

/// `[longitude, latitude]` as a two-element reply.
pub fn position_frame(xy: [f64; 2]) -> Frame {
    Frame::Array(vec![coord_frame(xy[0]), coord_frame(xy[1])])
}

/// GEOADD key [NX|XX] [CH] lon lat member ...: the points become ZADD's scores, and ZADD does
/// the rest (and logs what it changed as a ZADD), as Redis's geoaddCommand.
pub fn geoadd(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let (mut nx, mut xx) = (false, false);
    let mut longidx = 2;
    while let Some(opt) = args.get(longidx) {
        match opt.to_ascii_lowercase().as_slice() {
            b"nx" => nx = true,
            b"xx" => xx = true,
            b"ch" => {}
            _ => break,
        }
        longidx += 1;
    }
    if !(args.len() - longidx).is_multiple_of(3) || (xx && nx) {
        return err(ERR_SYNTAX);
    }
    let mut zadd = Vec::with_capacity(longidx + (args.len() - longidx) / 3 * 2);
    zadd.push(Bytes::from_static(b"ZADD"));
    zadd.extend(args[1..longidx].iter().cloned());
    for point in args[longidx..].chunks(3) {
        let [lon, lat] = match parse_lon_lat(&point[0], &point[1]) {
            Ok(xy) => xy,
            Err(e) => return e,
        };
        let bits = geohash::encode_wgs84(lon, lat, STEP_MAX).map_or(0, geohash::align52);
        zadd.push(Bytes::from(bits.to_string()));
        zadd.push(point[2].clone());
    }
    basic::zadd(ctx, &zadd)
}

/// GEOPOS key member ...: each member's position, or a null array.
pub fn geopos(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut txn = ctx.lock(&args[1]);
    let zset = match read_zset(&mut txn, &args[1]) {
        Ok(z) => z,
        Err(e) => return e,
    };
    Frame::Array(
        args[2..]
            .iter()
            .map(|m| {
                zset.and_then(|z| z.score(m))
                    .and_then(geohash::decode_score)
                    .map_or(Frame::NullArray, position_frame)
            })
            .collect(),
    )
}

/// GEODIST key member1 member2 [unit].
pub fn geodist(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    let to_meter = match args.len() {
        5 => match parse_unit(&args[4]) {
            Ok(u) => u,
            Err(e) => return e,
        },
        n if n > 5 => return err(ERR_SYNTAX),
        _ => 1.0,
    };
    let mut txn = ctx.lock(&args[1]);
    let zset = match read_zset(&mut txn, &args[1]) {
        Ok(Some(z)) => z,
        Ok(None) => return Frame::Null,
        Err(e) => return e,
    };
    let (Some(s1), Some(s2)) = (zset.score(&args[2]), zset.score(&args[3])) else {
        return Frame::Null;
    };
    match (geohash::decode_score(s1), geohash::decode_score(s2)) {
        (Some([x1, y1]), Some([x2, y2])) => {
            distance_frame(geohash::distance(x1, y1, x2, y2) / to_meter)
        }
        _ => Frame::Null,
    }
}

/// GEOHASH key member ...: the standard 11-character geohash of each member (Redis re-encodes
/// with the standard -90..90 latitude range; the last character is always `0`).
pub fn geohash_command(ctx: &Ctx<'_>, args: &[Bytes]) -> Frame {
    const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let mut txn = ctx.lock(&args[1]);
    let zset = match read_zset(&mut txn, &args[1]) {
        Ok(z) => z,
        Err(e) => return e,
    };
    let one = |member: &Bytes| -> Option<Frame> {
        let [x, y] = geohash::decode_score(zset?.score(member)?)?;
        let bits = geohash::encode_standard(x, y, 26).map_or(0, |h| h.bits);
        let mut text = [b'0'; 11];
        for (i, c) in text.iter_mut().enumerate().take(10) {
            *c = ALPHABET[((bits >> (52 - (i + 1) * 5)) & 0x1f) as usize];
        }
        Some(Frame::Bulk(Bytes::copy_from_slice(&text)))
    };
    Frame::Array(
        args[2..]
            .iter()
            .map(|m| one(m).unwrap_or(Frame::Null))
            .collect(),
    )
}

/// The commands of this family, for the node's dispatch table (`cmd::dispatch`).
pub(super) const COMMANDS: &[DispatchEntry] = &[
    ("geoadd", |ctx, _, args| geoadd(ctx, args)),
    ("geopos", |ctx, _, args| geopos(ctx, args)),
    ("geodist", |ctx, _, args| geodist(ctx, args)),
    ("geohash", |ctx, _, args| geohash_command(ctx, args)),
    ("georadius", |ctx, _, args| {
        search::search(ctx, args, search::Kind::Radius { ro: false })
    }),
    ("georadius_ro", |ctx, _, args| {
        search::search(ctx, args, search::Kind::Radius { ro: true })
    }),
    ("georadiusbymember", |ctx, _, args| {
        search::search(ctx, args, search::Kind::RadiusByMember { ro: false })
    }),
    ("georadiusbymember_ro", |ctx, _, args| {
        search::search(ctx, args, search::Kind::RadiusByMember { ro: true })
    }),
    ("geosearch", |ctx, _, args| {
        search::search(ctx, args, search::Kind::Search)
    }),
    ("geosearchstore", |ctx, _, args| {
        search::search(ctx, args, search::Kind::SearchStore)
    }),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_print_as_redis() {
        let text = |x: f64| match coord_frame(x) {
            Frame::Double(b) => String::from_utf8_lossy(&b).into_owned(),
            _ => unreachable!(),
        };
        assert_eq!(text(180.0), "180");
        assert_eq!(text(85.05112878), "85.0511287799999991");
        assert_eq!(text(-1e-19), "0");
        assert_eq!(text(0.00000268220901489), "0.00000268220901489");
    }
}
