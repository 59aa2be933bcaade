//! Redis's geohash arithmetic (geohash.c and geohash_helper.c of Redis 7.0), ported operation for
//! operation: a member's score is its 52-bit interleaved geohash, and a search scans the sorted
//! set's score ranges of the same nine cells Redis picks, then filters by the same distance
//! function, so results, distances and decoded coordinates come out with Redis's very bits.

/// Bits per coordinate of a stored hash (52-bit scores).
pub const STEP_MAX: u8 = 26;
pub const LAT_MIN: f64 = -85.05112878;
pub const LAT_MAX: f64 = 85.05112878;
pub const LONG_MIN: f64 = -180.0;
pub const LONG_MAX: f64 = 180.0;

const D_R: f64 = std::f64::consts::PI / 180.0;
/// Earth's quadratic mean radius for WGS-84, as Redis uses it.
pub const EARTH_RADIUS_IN_METERS: f64 = 6372797.560856;
const MERCATOR_MAX: f64 = 20037726.37;

/// A hash of `step` bits per coordinate; `bits == 0 && step == 0` is the "zero" (unused) cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HashBits {
    pub bits: u64,
    pub step: u8,
}

impl HashBits {
    fn is_zero(&self) -> bool {
        self.bits == 0 && self.step == 0
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Range {
    min: f64,
    max: f64,
}

/// A cell's extent.
#[derive(Debug, Clone, Copy, Default)]
struct Area {
    longitude: Range,
    latitude: Range,
}

const WGS84_LONG: Range = Range {
    min: LONG_MIN,
    max: LONG_MAX,
};
const WGS84_LAT: Range = Range {
    min: LAT_MIN,
    max: LAT_MAX,
};

fn deg_rad(ang: f64) -> f64 {
    ang * D_R
}

fn rad_deg(ang: f64) -> f64 {
    ang / D_R
}

/// Interleaves the low 32 bits of `x` (even positions) and `y` (odd positions).
fn interleave64(xlo: u32, ylo: u32) -> u64 {
    const B: [u64; 5] = [
        0x5555555555555555,
        0x3333333333333333,
        0x0F0F0F0F0F0F0F0F,
        0x00FF00FF00FF00FF,
        0x0000FFFF0000FFFF,
    ];
    const S: [u32; 5] = [1, 2, 4, 8, 16];
    let (mut x, mut y) = (u64::from(xlo), u64::from(ylo));
    for (shift, mask) in S.iter().zip(B).rev() {
        x = (x | (x << shift)) & mask;
        y = (y | (y << shift)) & mask;
    }
    x | (y << 1)
}

/// The inverse of `interleave64`: even bits in the low half, odd bits in the high half.
fn deinterleave64(interleaved: u64) -> u64 {
    const B: [u64; 6] = [
        0x5555555555555555,
        0x3333333333333333,
        0x0F0F0F0F0F0F0F0F,
        0x00FF00FF00FF00FF,
        0x0000FFFF0000FFFF,
        0x00000000FFFFFFFF,
    ];
    const S: [u32; 6] = [0, 1, 2, 4, 8, 16];
    let mut x = interleaved;
    let mut y = interleaved >> 1;
    for (shift, mask) in S.iter().zip(B) {
        x = (x | (x >> shift)) & mask;
        y = (y | (y >> shift)) & mask;
    }
    x | (y << 32)
}

/// geohashEncode: `None` outside the ranges (or for a step out of 1..=32).
fn encode(
    long_range: Range,
    lat_range: Range,
    longitude: f64,
    latitude: f64,
    step: u8,
) -> Option<HashBits> {
    if step > 32 || step == 0 {
        return None;
    }
    if !(LONG_MIN..=LONG_MAX).contains(&longitude) || !(LAT_MIN..=LAT_MAX).contains(&latitude) {
        return None;
    }
    if latitude < lat_range.min
        || latitude > lat_range.max
        || longitude < long_range.min
        || longitude > long_range.max
    {
        return None;
    }
    let scale = (1u64 << step) as f64;
    let lat_offset = (latitude - lat_range.min) / (lat_range.max - lat_range.min) * scale;
    let long_offset = (longitude - long_range.min) / (long_range.max - long_range.min) * scale;
    // C converts the doubles to uint32_t by truncation, as `as` does for values in range.
    Some(HashBits {
        bits: interleave64(lat_offset as u32, long_offset as u32),
        step,
    })
}

/// The WGS-84 hash of a point, at `step` bits per coordinate.
pub fn encode_wgs84(longitude: f64, latitude: f64, step: u8) -> Option<HashBits> {
    encode(WGS84_LONG, WGS84_LAT, longitude, latitude, step)
}

/// geohashEncode with the standard -90..90 latitude range (GEOHASH's strings).
pub fn encode_standard(longitude: f64, latitude: f64, step: u8) -> Option<HashBits> {
    let lat = Range {
        min: -90.0,
        max: 90.0,
    };
    encode(WGS84_LONG, lat, longitude, latitude, step)
}

/// geohashDecode over the WGS-84 ranges.
fn decode(hash: HashBits) -> Option<Area> {
    if hash.is_zero() {
        return None;
    }
    let step = hash.step;
    let hash_sep = deinterleave64(hash.bits);
    let lat_scale = WGS84_LAT.max - WGS84_LAT.min;
    let long_scale = WGS84_LONG.max - WGS84_LONG.min;
    let ilato = hash_sep as u32;
    let ilono = (hash_sep >> 32) as u32;
    let div = (1u64 << step) as f64;
    Some(Area {
        latitude: Range {
            min: WGS84_LAT.min + (f64::from(ilato) / div) * lat_scale,
            max: WGS84_LAT.min + ((f64::from(ilato) + 1.0) / div) * lat_scale,
        },
        longitude: Range {
            min: WGS84_LONG.min + (f64::from(ilono) / div) * long_scale,
            max: WGS84_LONG.min + ((f64::from(ilono) + 1.0) / div) * long_scale,
        },
    })
}

/// A stored score's point, `[longitude, latitude]`: the centre of its cell, clamped to the
/// valid ranges (Redis's decodeGeohash).
pub fn decode_score(score: f64) -> Option<[f64; 2]> {
    // C's `(uint64_t)score`: truncation; scores written by GEOADD are whole and in range.
    let hash = HashBits {
        bits: score as u64,
        step: STEP_MAX,
    };
    let area = decode(hash)?;
    let long = ((area.longitude.min + area.longitude.max) / 2.0).clamp(LONG_MIN, LONG_MAX);
    let lat = ((area.latitude.min + area.latitude.max) / 2.0).clamp(LAT_MIN, LAT_MAX);
    Some([long, lat])
}

/// The 52-bit score of a hash.
pub fn align52(hash: HashBits) -> u64 {
    hash.bits << (52 - u32::from(hash.step) * 2)
}

fn move_x(hash: &mut HashBits, d: i8) {
    if d == 0 {
        return;
    }
    let mut x = hash.bits & 0xaaaaaaaaaaaaaaaa;
    let y = hash.bits & 0x5555555555555555;
    let zz = 0x5555555555555555u64 >> (64 - u32::from(hash.step) * 2);
    if d > 0 {
        x = x.wrapping_add(zz + 1);
    } else {
        x |= zz;
        x = x.wrapping_sub(zz + 1);
    }
    x &= 0xaaaaaaaaaaaaaaaau64 >> (64 - u32::from(hash.step) * 2);
    hash.bits = x | y;
}

fn move_y(hash: &mut HashBits, d: i8) {
    if d == 0 {
        return;
    }
    let x = hash.bits & 0xaaaaaaaaaaaaaaaa;
    let mut y = hash.bits & 0x5555555555555555;
    let zz = 0xaaaaaaaaaaaaaaaau64 >> (64 - u32::from(hash.step) * 2);
    if d > 0 {
        y = y.wrapping_add(zz + 1);
    } else {
        y |= zz;
        y = y.wrapping_sub(zz + 1);
    }
    y &= 0x5555555555555555u64 >> (64 - u32::from(hash.step) * 2);
    hash.bits = x | y;
}

fn moved(hash: HashBits, dx: i8, dy: i8) -> HashBits {
    let mut h = hash;
    move_x(&mut h, dx);
    move_y(&mut h, dy);
    h
}

/// The search area's shape, sizes in the query's unit (`conversion` metres per unit).
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    Circle { radius: f64 },
    Box { width: f64, height: f64 },
}

/// A search: its centre `[longitude, latitude]`, its shape and its unit.
#[derive(Debug, Clone, Copy)]
pub struct Search {
    pub xy: [f64; 2],
    pub shape: Shape,
    pub conversion: f64,
}

/// geohashEstimateStepsByRadius.
fn estimate_steps_by_radius(range_meters: f64, lat: f64) -> u8 {
    if range_meters == 0.0 {
        return 26;
    }
    let mut range_meters = range_meters;
    let mut step: i32 = 1;
    while range_meters < MERCATOR_MAX {
        range_meters *= 2.0;
        step += 1;
    }
    step -= 2;
    if !(-66.0..=66.0).contains(&lat) {
        step -= 1;
        if !(-80.0..=80.0).contains(&lat) {
            step -= 1;
        }
    }
    step.clamp(1, 26) as u8
}

/// geohashBoundingBox: `[min_lon, min_lat, max_lon, max_lat]`.
fn bounding_box(search: &Search) -> [f64; 4] {
    let [longitude, latitude] = search.xy;
    let (height, width) = match search.shape {
        Shape::Circle { radius } => (radius, radius),
        Shape::Box { width, height } => (height / 2.0, width / 2.0),
    };
    let height = search.conversion * height;
    let width = search.conversion * width;
    let lat_delta = rad_deg(height / EARTH_RADIUS_IN_METERS);
    let long_delta_top =
        rad_deg(width / EARTH_RADIUS_IN_METERS / deg_rad(latitude + lat_delta).cos());
    let long_delta_bottom =
        rad_deg(width / EARTH_RADIUS_IN_METERS / deg_rad(latitude - lat_delta).cos());
    let southern = latitude < 0.0;
    let delta = if southern {
        long_delta_bottom
    } else {
        long_delta_top
    };
    [
        longitude - delta,
        latitude - lat_delta,
        longitude + delta,
        latitude + lat_delta,
    ]
}

/// The nine cells to scan, in Redis's order (centre, N, S, E, W, NE, NW, SE, SW); unused ones
/// are zero (geohashCalculateAreasByShapeWGS84).
pub fn areas(search: &Search) -> [HashBits; 9] {
    let [min_lon, min_lat, max_lon, max_lat] = bounding_box(search);
    let [longitude, latitude] = search.xy;
    let radius_meters = match search.shape {
        Shape::Circle { radius } => radius,
        Shape::Box { width, height } => {
            ((width / 2.0) * (width / 2.0) + (height / 2.0) * (height / 2.0)).sqrt()
        }
    } * search.conversion;
    let mut steps = estimate_steps_by_radius(radius_meters, latitude);
    let cells = |steps: u8| {
        let hash = encode_wgs84(longitude, latitude, steps).unwrap_or(HashBits {
            bits: 0,
            step: steps,
        });
        (hash, decode(hash).unwrap_or_default())
    };
    let (mut hash, mut area) = cells(steps);
    let decrease = {
        let north = decode(moved(hash, 0, 1)).unwrap_or_default();
        let south = decode(moved(hash, 0, -1)).unwrap_or_default();
        let east = decode(moved(hash, 1, 0)).unwrap_or_default();
        let west = decode(moved(hash, -1, 0)).unwrap_or_default();
        north.latitude.max < max_lat
            || south.latitude.min > min_lat
            || east.longitude.max < max_lon
            || west.longitude.min > min_lon
    };
    if steps > 1 && decrease {
        steps -= 1;
        (hash, area) = cells(steps);
    }
    let mut n = [
        hash,
        moved(hash, 0, 1),
        moved(hash, 0, -1),
        moved(hash, 1, 0),
        moved(hash, -1, 0),
        moved(hash, 1, 1),
        moved(hash, -1, 1),
        moved(hash, 1, -1),
        moved(hash, -1, -1),
    ];
    const ZERO: HashBits = HashBits { bits: 0, step: 0 };
    const NORTH: usize = 1;
    const SOUTH: usize = 2;
    const EAST: usize = 3;
    const WEST: usize = 4;
    const NE: usize = 5;
    const NW: usize = 6;
    const SE: usize = 7;
    const SW: usize = 8;
    if steps >= 2 {
        if area.latitude.min < min_lat {
            for i in [SOUTH, SW, SE] {
                n[i] = ZERO;
            }
        }
        if area.latitude.max > max_lat {
            for i in [NORTH, NE, NW] {
                n[i] = ZERO;
            }
        }
        if area.longitude.min < min_lon {
            for i in [WEST, SW, NW] {
                n[i] = ZERO;
            }
        }
        if area.longitude.max > max_lon {
            for i in [EAST, SE, NE] {
                n[i] = ZERO;
            }
        }
    }
    n
}

/// The score interval `[min, max)` of the members inside cell `hash`.
pub fn score_range(hash: HashBits) -> (u64, u64) {
    let min = align52(hash);
    let max = align52(HashBits {
        bits: hash.bits + 1,
        step: hash.step,
    });
    (min, max)
}

/// Haversine great-circle distance in metres, as Redis 7.0's geohashGetDistance.
pub fn distance(lon1d: f64, lat1d: f64, lon2d: f64, lat2d: f64) -> f64 {
    let lat1r = deg_rad(lat1d);
    let lon1r = deg_rad(lon1d);
    let lat2r = deg_rad(lat2d);
    let lon2r = deg_rad(lon2d);
    let u = ((lat2r - lat1r) / 2.0).sin();
    let v = ((lon2r - lon1r) / 2.0).sin();
    2.0 * EARTH_RADIUS_IN_METERS * (u * u + lat1r.cos() * lat2r.cos() * v * v).sqrt().asin()
}

/// geoWithinShape: the point of `score` and its distance from the centre (metres), when it is
/// inside the search area.
pub fn within(search: &Search, score: f64) -> Option<([f64; 2], f64)> {
    let xy = decode_score(score)?;
    let [x1, y1] = search.xy;
    let [x2, y2] = xy;
    match search.shape {
        Shape::Circle { radius } => {
            let d = distance(x1, y1, x2, y2);
            (d <= radius * search.conversion).then_some((xy, d))
        }
        Shape::Box { width, height } => {
            let (width_m, height_m) = (width * search.conversion, height * search.conversion);
            let lon_distance = distance(x2, y2, x1, y2);
            let lat_distance = distance(x2, y2, x2, y1);
            if lon_distance > width_m / 2.0 || lat_distance > height_m / 2.0 {
                return None;
            }
            Some((xy, distance(x1, y1, x2, y2)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scores and positions Redis 7.0 gives for the same GEOADD.
    #[test]
    fn encodes_and_decodes_as_redis() {
        let hash = encode_wgs84(13.361389, 38.115556, STEP_MAX).expect("in range");
        assert_eq!(align52(hash), 3479099956230698);
        let [x, y] = decode_score(3479099956230698.0).expect("decodes");
        assert_eq!(format!("{x:.17}"), "13.36138933897018433");
        assert_eq!(format!("{y:.17}"), "38.11555639549629859");
        let ne = encode_wgs84(180.0, LAT_MAX, STEP_MAX).expect("in range");
        assert_eq!(align52(ne), 13510798882111488);
        assert_eq!(
            decode_score(13510798882111488.0).expect("decodes")[0],
            180.0
        );
        assert!(encode_wgs84(180.1, 0.0, STEP_MAX).is_none());
    }

    #[test]
    fn interleave_round_trips() {
        for (x, y) in [
            (0u32, 0u32),
            (1, 2),
            (0xffff_ffff, 0x1234_5678),
            (67108864, 3),
        ] {
            let d = deinterleave64(interleave64(x, y));
            assert_eq!((d as u32, (d >> 32) as u32), (x, y));
        }
    }
}
