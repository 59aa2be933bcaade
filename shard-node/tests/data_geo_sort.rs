//! GEO commands and SORT, differential: the same commands go to a real redis-server and to a shard
//! node, and the reply bytes must match, in RESP2 and RESP3. Keys share a hash tag (`{g}`, `{s}`)
//! so multi-key forms stay in one slot, and SORT's BY and GET patterns carry the sorted key's tag,
//! the patterns a cluster node allows; the cluster-mode denial of the others is checked on the
//! node alone. Then a seeded random part (random points and searches), and the AOF replay of the
//! stored results.

mod data_support;

use data_support::{dump_keyspace as dump, node_state as state};
use data_support::{LoggedNode, RawClient, TestNode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tessera_testkit::{Differ, RedisServer};

const GEO_SCRIPT: &str = "
FLUSHALL
GEOADD {g}s 13.361389 38.115556 Palermo 15.087269 37.502669 Catania
GEOADD {g}s 13.361389 38.115556 Palermo
GEOADD {g}s CH 13.361390 38.115556 Palermo 12.758489 38.788135 edge1 17.241510 38.788135 edge2
GEOADD {g}s NX 1 1 Palermo 2 2 nxnew
GEOADD {g}s XX 1 1 nxnew 3 3 xxmissing
GEOADD {g}s XX CH 1.5 1.5 nxnew
GEOADD {g}s NX XX 1 1 a
GEOADD {g}s GT 1 1 a
GEOADD {g}s LT CH 1 1 a
GEOADD {g}s 1 1
GEOADD {g}s 1 1 a 2
GEOADD {g}s 181 0 a
GEOADD {g}s -180.1 0 a
GEOADD {g}s 0 85.06 a
GEOADD {g}s 0 -85.06 a
GEOADD {g}s abc 0 a
GEOADD {g}s 0 abc a
GEOADD {g}s nan 0 a
GEOADD {g}s <empty> 0 a
GEOADD {g}s 1 1 ok 181 0 bad
EXISTS {g}s
ZRANGE {g}s 0 -1 WITHSCORES
GEOADD {g}poles 0 85.05112878 np 180 85.05112878 npe -180 -85.05112878 sp 179.9999 0 am1 -179.9999 0 am2 180 0 am3 -180 0 am4 0 0 origin
GEOADD {g}poles 45 84.9 p1 -135 84.99 p2 90 -84.9 p3 -90 -85 p4 179.5 60 am5 -179.5 60 am6 179.99 -45 am7 -179.99 -45 am8
ZRANGE {g}poles 0 -1 WITHSCORES
GEOPOS {g}poles np npe sp am1 am2 am3 am4 origin p1 p2 p3 p4 am5 am6 am7 am8 nosuch
GEOPOS {g}s Palermo Catania nosuch
GEOPOS {g}nokey a b
GEOPOS {g}s
GEOHASH {g}s Palermo Catania edge1 nosuch
GEOHASH {g}poles np npe sp am1 am2 am3 am4 origin p1 p2 p3 p4
GEOHASH {g}nokey a
GEODIST {g}s Palermo Catania
GEODIST {g}s Palermo Catania m
GEODIST {g}s Palermo Catania KM
GEODIST {g}s Palermo Catania mi
GEODIST {g}s Palermo Catania ft
GEODIST {g}s Palermo Catania parsec
GEODIST {g}s Palermo Catania km extra
GEODIST {g}s Palermo nosuch
GEODIST {g}nokey a b
GEODIST {g}nokey a b parsec
GEODIST {g}s Palermo Palermo
GEODIST {g}poles am1 am2
GEODIST {g}poles am3 am4 km
GEODIST {g}poles np sp km
GEODIST {g}poles np npe
GEODIST {g}poles am5 am6
GEODIST {g}poles am7 am8 ft
SET {g}str v
GEOADD {g}str 1 1 a
GEOPOS {g}str a
GEOHASH {g}str a
GEODIST {g}str a b
GEODIST {g}str a b parsec
GEOSEARCH {g}str FROMLONLAT 0 0 BYRADIUS 1 km
GEOSEARCH {g}str garbage
GEORADIUS {g}str 0 0 1 km
GEOSEARCHSTORE {g}dst {g}str FROMLONLAT 0 0 BYRADIUS 1 km
GEORADIUS {g}s 15 37 200 km
GEORADIUS {g}s 15 37 200 km ASC
GEORADIUS {g}s 15 37 200 km DESC
GEORADIUS {g}s 15 37 200 km WITHDIST
GEORADIUS {g}s 15 37 200 km WITHCOORD
GEORADIUS {g}s 15 37 200 km WITHHASH
GEORADIUS {g}s 15 37 200 km WITHDIST WITHCOORD WITHHASH ASC
GEORADIUS {g}s 15 37 200 km withhash withcoord withdist desc count 2
GEORADIUS {g}s 15 37 200 km COUNT 1
GEORADIUS {g}s 15 37 200 km COUNT 1 ANY
GEORADIUS {g}s 15 37 200 km COUNT 5 ANY DESC
GEORADIUS {g}s 15 37 200 km ANY
GEORADIUS {g}s 15 37 200 km COUNT 0
GEORADIUS {g}s 15 37 200 km COUNT -1
GEORADIUS {g}s 15 37 200 km COUNT x
GEORADIUS {g}s 15 37 200 km COUNT
GEORADIUS {g}s 15 37 200 km FOO
GEORADIUS {g}s 15 37 200 km FROMLONLAT 1 1
GEORADIUS {g}s 15 37 -1 km
GEORADIUS {g}s 15 37 x km
GEORADIUS {g}s 15 37 1 parsec
GEORADIUS {g}s 200 37 1 km
GEORADIUS {g}s x 37 1 km
GEORADIUS {g}s 15 37 0 km
GEORADIUS {g}s 15 37 2000 mi
GEORADIUS {g}s 15 37 200000 ft WITHDIST
GEORADIUS {g}nokey 15 37 200 km
GEORADIUS {g}nokey 15 37 200 km STORE {g}dst
GEORADIUS {g}s 15 37 200 km STORE {g}dst
ZRANGE {g}dst 0 -1 WITHSCORES
GEORADIUS {g}s 15 37 200 km STOREDIST {g}dst2
ZRANGE {g}dst2 0 -1 WITHSCORES
GEORADIUS {g}s 15 37 200 km STORE {g}dst WITHDIST
GEORADIUS {g}s 15 37 200 km STORE {g}dst WITHCOORD
GEORADIUS {g}s 15 37 200 km STORE
GEORADIUS {g}s 15 37 200 km COUNT 1 STORE {g}dst3
ZRANGE {g}dst3 0 -1 WITHSCORES
GEORADIUS {g}s 15 37 1 m STORE {g}dst3
EXISTS {g}dst3
GEORADIUS {g}nokey 15 37 200 km STORE {g}dst2
EXISTS {g}dst2
GEORADIUS_RO {g}s 15 37 200 km WITHDIST ASC
GEORADIUS_RO {g}s 15 37 200 km STORE {g}dst
GEORADIUS_RO {g}s 15 37 200 km STOREDIST {g}dst
GEORADIUSBYMEMBER {g}s Palermo 200 km
GEORADIUSBYMEMBER {g}s Palermo 200 km WITHDIST WITHCOORD ASC
GEORADIUSBYMEMBER {g}s Palermo 200 km DESC COUNT 2 WITHHASH
GEORADIUSBYMEMBER {g}s nosuch 200 km
GEORADIUSBYMEMBER {g}s Palermo x km
GEORADIUSBYMEMBER {g}s Palermo 1 parsec
GEORADIUSBYMEMBER {g}nokey Palermo x parsec
GEORADIUSBYMEMBER {g}nokey Palermo 1 km COUNT 0
GEORADIUSBYMEMBER {g}nokey Palermo 1 km STORE {g}dst
GEORADIUSBYMEMBER {g}s Palermo 500 km STOREDIST {g}dst4
ZRANGE {g}dst4 0 -1 WITHSCORES
GEORADIUSBYMEMBER_RO {g}s Palermo 200 km WITHDIST
GEORADIUSBYMEMBER_RO {g}s Palermo 200 km STORE {g}dst
GEOSEARCH {g}s FROMLONLAT 15 37 BYRADIUS 200 km ASC
GEOSEARCH {g}s FROMLONLAT 15 37 BYBOX 400 400 km ASC WITHCOORD WITHDIST WITHHASH
GEOSEARCH {g}s FROMMEMBER Palermo BYBOX 400 400 km DESC WITHDIST
GEOSEARCH {g}s FROMMEMBER Palermo BYRADIUS 100 mi WITHDIST
GEOSEARCH {g}s FROMMEMBER Palermo FROMMEMBER Catania BYRADIUS 100 mi WITHDIST
GEOSEARCH {g}s FROMMEMBER Palermo FROMLONLAT 1 1 BYRADIUS 100 mi
GEOSEARCH {g}s FROMLONLAT 1 1 FROMMEMBER Palermo BYRADIUS 100 mi
GEOSEARCH {g}s FROMLONLAT 15 37 BYRADIUS 100 mi BYBOX 1 1 km
GEOSEARCH {g}s FROMLONLAT 15 37 BYBOX 1 1 km BYRADIUS 100 mi
GEOSEARCH {g}s FROMLONLAT 15 37 BYBOX 1 1
GEOSEARCH {g}s FROMLONLAT 15 37 BYBOX -1 1 km
GEOSEARCH {g}s FROMLONLAT 15 37 BYBOX x 1 km
GEOSEARCH {g}s FROMLONLAT 15 37 BYBOX 1 x km
GEOSEARCH {g}s FROMLONLAT 15 37 BYBOX 1 1 parsec
GEOSEARCH {g}s FROMLONLAT 15 37 BYRADIUS 1
GEOSEARCH {g}s FROMLONLAT 15 BYRADIUS 1 km
GEOSEARCH {g}s FROMLONLAT 15 37
GEOSEARCH {g}s BYRADIUS 1 km ASC
GeoSearch {g}s BYRADIUS 1 km ASC
geosearch {g}s FROMLONLAT 15 37 ASC DESC
GEOSEARCH {g}s FROMMEMBER nosuch BYRADIUS 1 km
GEOSEARCH {g}s FROMLONLAT 15 37 BYRADIUS 200 km STORE {g}x
GEOSEARCH {g}s FROMLONLAT 15 37 BYRADIUS 200 km STOREDIST
GEOSEARCH {g}s FROMLONLAT 15 37 BYRADIUS 200 km COUNT 1 ANY WITHDIST
GEOSEARCH {g}s FROMLONLAT 15 37 BYRADIUS 200 km ANY
GEOSEARCH {g}nokey FROMMEMBER a BYRADIUS 1 km
GEOSEARCH {g}nokey FROMMEMBER a BYRADIUS x km
GEOSEARCH {g}nokey FROMMEMBER a
GEOSEARCHSTORE {g}dst5 {g}s FROMLONLAT 15 37 BYBOX 400 400 km ASC COUNT 3
ZRANGE {g}dst5 0 -1 WITHSCORES
GEOSEARCHSTORE {g}dst6 {g}s FROMLONLAT 15 37 BYBOX 400 400 km ASC COUNT 3 STOREDIST
ZRANGE {g}dst6 0 -1 WITHSCORES
GEOSEARCHSTORE {g}dst6 {g}s FROMLONLAT 15 37 BYBOX 400 400 km WITHDIST
GEOSEARCHSTORE {g}dst6 {g}s FROMLONLAT 15 37 BYBOX 400 400 km STORE {g}x
GEOSEARCHSTORE {g}dst6 {g}s FROMLONLAT 0 0 BYBOX 1 1 m
EXISTS {g}dst6
GEOSEARCHSTORE {g}dst5 {g}nokey FROMLONLAT 0 0 BYBOX 1 1 m
EXISTS {g}dst5
GEOSEARCHSTORE {g}dst5 {g}nokey FROMLONLAT 0 0
GEOSEARCH {g}poles FROMLONLAT 180 0 BYRADIUS 100 km WITHDIST WITHCOORD ASC
GEOSEARCH {g}poles FROMLONLAT -180 0 BYBOX 50 50 km WITHDIST ASC
GEOSEARCH {g}poles FROMLONLAT 179.99 -45 BYRADIUS 10 km WITHDIST ASC
GEOSEARCH {g}poles FROMLONLAT 180 60 BYRADIUS 100 km WITHDIST WITHHASH
GEOSEARCH {g}poles FROMLONLAT 0 85 BYRADIUS 1000 km WITHDIST ASC
GEOSEARCH {g}poles FROMLONLAT 0 85 BYBOX 5000 1000 km WITHDIST ASC
GEOSEARCH {g}poles FROMLONLAT 0 -85 BYRADIUS 2000 km WITHDIST ASC
GEOSEARCH {g}poles FROMLONLAT 0 0 BYRADIUS 20000 km WITHDIST ASC
GEOSEARCH {g}poles FROMLONLAT 0 0 BYRADIUS 20000 km
GEOSEARCH {g}poles FROMLONLAT 0 0 BYBOX 40000 40000 km DESC
GEOSEARCH {g}poles FROMLONLAT 0 0 BYRADIUS 0 m WITHDIST
GEOSEARCH {g}poles FROMMEMBER np BYRADIUS 500 km WITHDIST ASC
GEOSEARCH {g}poles FROMMEMBER am4 BYRADIUS 500 km WITHDIST ASC
GEORADIUSBYMEMBER {g}poles sp 800 km WITHDIST WITHCOORD ASC
";

/// The same GEO commands in RESP3: doubles for coordinates, null arrays as `_`.
const GEO_RESP3: &str = "
GEOPOS {g}s Palermo Catania nosuch
GEOPOS {g}poles np npe sp am1 am2 am3 am4 origin
GEODIST {g}s Palermo Catania km
GEODIST {g}s Palermo nosuch
GEOHASH {g}s Palermo nosuch
GEORADIUS {g}s 15 37 200 km WITHDIST WITHCOORD WITHHASH ASC
GEORADIUSBYMEMBER {g}s Palermo 200 km WITHCOORD
GEOSEARCH {g}s FROMLONLAT 15 37 BYBOX 400 400 km ASC WITHCOORD WITHDIST WITHHASH
GEOSEARCH {g}poles FROMLONLAT 0 0 BYRADIUS 20000 km WITHCOORD
GEOSEARCH {g}nokey FROMMEMBER a BYRADIUS 1 km
GEOSEARCHSTORE {g}dst7 {g}s FROMLONLAT 15 37 BYBOX 400 400 km STOREDIST
ZRANGE {g}dst7 0 -1 WITHSCORES
";

/// Points on a grid, along a meridian at fixed spacing (so radii fall on and next to them) and
/// around the antimeridian and the poles, then searches over them.
fn geo_grid_script() -> String {
    let mut lines = vec!["DEL {g}grid".to_string()];
    let mut add = String::from("GEOADD {g}grid");
    for i in -8..=8 {
        for j in -4..=4 {
            let (lon, lat) = (f64::from(i) * 22.5, f64::from(j) * 21.0);
            add.push_str(&format!(" {lon} {lat} p{i}_{j}"));
        }
    }
    for k in 0..40 {
        // 0.01 degrees apart along one meridian: about 1111.95 m between neighbours.
        add.push_str(&format!(" 10 {} m{k}", 45.0 + f64::from(k) * 0.01));
        add.push_str(&format!(" {} 0.5 e{k}", 179.5 + f64::from(k) * 0.0125));
        add.push_str(&format!(" {} -0.5 w{k}", -179.5 - f64::from(k) * 0.0125));
        add.push_str(&format!(
            " {} {} n{k}",
            f64::from(k) * 9.0 - 180.0,
            84.0 + f64::from(k % 10) * 0.105
        ));
        add.push_str(&format!(
            " {} {} s{k}",
            180.0 - f64::from(k) * 9.0 - 0.25,
            -84.0 - f64::from(k % 10) * 0.105
        ));
    }
    lines.push(add);
    lines.push("ZRANGE {g}grid 0 -1 WITHSCORES".into());
    // Stored distances print with 17 digits: the distance function's very bits.
    for centre in ["0 -85.05112878", "90 84.5", "180 0", "10 45.1"] {
        lines.push(format!(
            "GEOSEARCHSTORE {{g}}dd {{g}}grid FROMLONLAT {centre} BYBOX 9000 3000 km STOREDIST"
        ));
        lines.push("ZRANGE {g}dd 0 -1 WITHSCORES".into());
    }
    for radius in [
        "1111", "1111.95", "1112", "2223.9", "5559.7", "5560", "44478",
    ] {
        lines.push(format!(
            "GEOSEARCH {{g}}grid FROMMEMBER m10 BYRADIUS {radius} m WITHDIST ASC"
        ));
        lines.push(format!(
            "GEOSEARCH {{g}}grid FROMMEMBER m10 BYBOX 10 {radius} m WITHDIST"
        ));
        lines.push(format!(
            "GEOSEARCH {{g}}grid FROMMEMBER m10 BYBOX {radius} {radius} m WITHDIST DESC"
        ));
    }
    for (lon, lat) in [
        ("180", "0"),
        ("-180", "0"),
        ("179.99", "0.4"),
        ("0", "85.05112878"),
        ("0", "-85.05112878"),
        ("90", "84.5"),
        ("-90", "-84.5"),
        ("0", "0"),
        ("22.5", "21"),
    ] {
        for shape in [
            "BYRADIUS 50 km",
            "BYRADIUS 500 km",
            "BYRADIUS 3000 km",
            "BYRADIUS 10000 km",
            "BYBOX 100 100 km",
            "BYBOX 2000 500 km",
            "BYBOX 9000 3000 km",
            "BYBOX 1 1 mi",
        ] {
            lines.push(format!(
                "GEOSEARCH {{g}}grid FROMLONLAT {lon} {lat} {shape} WITHDIST WITHCOORD"
            ));
            lines.push(format!(
                "GEOSEARCH {{g}}grid FROMLONLAT {lon} {lat} {shape} ASC COUNT 7 WITHHASH"
            ));
            lines.push(format!(
                "GEOSEARCH {{g}}grid FROMLONLAT {lon} {lat} {shape} COUNT 3 ANY"
            ));
        }
    }
    lines.join("\n")
}

#[tokio::test]
async fn geo_replies_match_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let mut diff = Differ::connect(redis.addr(), node.addr).await?;
    let resp2 = format!("{GEO_SCRIPT}\n{}", geo_grid_script());
    diff.scripts(&resp2, GEO_RESP3).await?;
    diff.assert_none();
    node.stop().await
}

/// A number with up to 6 decimals in `[lo, hi]`.
fn coord(rng: &mut StdRng, lo: f64, hi: f64) -> String {
    let x = rng.random_range(lo..=hi);
    format!("{x:.6}")
}

/// Random points (clustered in places, so searches find several) and random searches of every
/// form, every reply compared with Redis's; a fixed seed, a bounded number of steps.
#[tokio::test]
async fn random_geo_searches_match_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let mut diff = Differ::connect(redis.addr(), node.addr).await?;
    let mut rng = StdRng::seed_from_u64(0x6e0_5eed);
    let centres: [(f64, f64); 6] = [
        (0.0, 0.0),
        (179.5, 10.0),
        (-179.5, -10.0),
        (12.0, 84.5),
        (-40.0, -84.8),
        (2.35, 48.85),
    ];
    let mut lines = vec!["FLUSHALL".to_string()];
    for batch in 0..10 {
        let mut add = String::from("GEOADD {g}r");
        for k in 0..40 {
            let (cx, cy) = centres[rng.random_range(0..centres.len())];
            let (lon, lat) = if rng.random_bool(0.3) {
                (
                    coord(&mut rng, -180.0, 180.0),
                    coord(&mut rng, -85.05, 85.05),
                )
            } else {
                let spread: f64 = [0.01, 0.5, 5.0][rng.random_range(0..3)];
                (
                    format!(
                        "{:.6}",
                        (cx + rng.random_range(-spread..=spread)).clamp(-180.0, 180.0)
                    ),
                    format!(
                        "{:.6}",
                        (cy + rng.random_range(-spread..=spread)).clamp(-85.05, 85.05)
                    ),
                )
            };
            add.push_str(&format!(" {lon} {lat} r{batch}_{k}"));
        }
        lines.push(add);
    }
    let units = ["m", "km", "mi", "ft"];
    for q in 0..400 {
        let (cx, cy) = centres[rng.random_range(0..centres.len())];
        let from = if rng.random_bool(0.3) {
            format!(
                "FROMMEMBER r{}_{}",
                rng.random_range(0..10),
                rng.random_range(0..40)
            )
        } else {
            format!(
                "FROMLONLAT {:.4} {:.4}",
                (cx + rng.random_range(-1.0..=1.0)).clamp(-180.0, 180.0),
                (cy + rng.random_range(-1.0..=1.0)).clamp(-85.05, 85.05)
            )
        };
        let unit = units[rng.random_range(0..units.len())];
        let size = |rng: &mut StdRng| {
            let metres: f64 = [50.0, 2_000.0, 60_000.0, 700_000.0, 5_000_000.0]
                [rng.random_range(0..5)]
                * rng.random_range(0.5..1.5);
            let per_unit = match unit {
                "km" => 1000.0,
                "mi" => 1609.34,
                "ft" => 0.3048,
                _ => 1.0,
            };
            format!("{:.3}", metres / per_unit)
        };
        let shape = if rng.random_bool(0.5) {
            format!("BYRADIUS {} {unit}", size(&mut rng))
        } else {
            format!("BYBOX {} {} {unit}", size(&mut rng), size(&mut rng))
        };
        let mut opts = String::new();
        for (word, p) in [("WITHDIST", 0.5), ("WITHCOORD", 0.3), ("WITHHASH", 0.2)] {
            if rng.random_bool(p) {
                opts.push(' ');
                opts.push_str(word);
            }
        }
        match rng.random_range(0..4) {
            0 => opts.push_str(" ASC"),
            1 => opts.push_str(" DESC"),
            _ => {}
        }
        if rng.random_bool(0.3) {
            opts.push_str(&format!(" COUNT {}", rng.random_range(1..30)));
            if rng.random_bool(0.3) {
                opts.push_str(" ANY");
            }
        }
        let line = match rng.random_range(0..6) {
            0 => {
                let store = if rng.random_bool(0.5) {
                    " STOREDIST"
                } else {
                    ""
                };
                let plain: String = opts
                    .split(' ')
                    .filter(|w| !w.starts_with("WITH"))
                    .collect::<Vec<_>>()
                    .join(" ");
                lines.push(format!(
                    "GEOSEARCHSTORE {{g}}st{} {{g}}r {from} {shape}{plain}{store}",
                    q % 3
                ));
                format!("ZRANGE {{g}}st{} 0 -1 WITHSCORES", q % 3)
            }
            1 => {
                let (x, y) = (
                    coord(&mut rng, cx - 1.0, cx + 1.0),
                    coord(&mut rng, cy - 1.0, cy + 1.0),
                );
                let x = x.parse::<f64>().unwrap_or(0.0).clamp(-180.0, 180.0);
                let y = y.parse::<f64>().unwrap_or(0.0).clamp(-85.05, 85.05);
                format!("GEORADIUS {{g}}r {x} {y} {} {unit}{opts}", size(&mut rng))
            }
            2 => format!(
                "GEORADIUSBYMEMBER_RO {{g}}r r{}_{} {} {unit}{opts}",
                rng.random_range(0..10),
                rng.random_range(0..40),
                size(&mut rng)
            ),
            _ => format!("GEOSEARCH {{g}}r {from} {shape}{opts}"),
        };
        lines.push(line);
    }
    lines.push("GEOPOS {g}r r0_0 r1_1 r2_2 r3_3 r4_4 r5_5 r6_6 r7_7 r8_8 r9_9".into());
    lines.push("GEOHASH {g}r r0_0 r1_1 r2_2 r3_3 r4_4 r5_5 r6_6 r7_7 r8_8 r9_9".into());
    for _ in 0..100 {
        lines.push(format!(
            "GEODIST {{g}}r r{}_{} r{}_{} {}",
            rng.random_range(0..10),
            rng.random_range(0..40),
            rng.random_range(0..10),
            rng.random_range(0..40),
            units[rng.random_range(0..units.len())]
        ));
    }
    lines.push("ZRANGE {g}r 0 -1 WITHSCORES".into());
    diff.script(&lines.join("\n"), "random").await?;
    diff.assert_none();
    node.stop().await
}

const SORT_SCRIPT: &str = "
FLUSHALL
RPUSH {s}l 3 1 2 10 -5 2.5 1e2 0
SORT {s}l
SORT {s}l DESC
SORT {s}l ASC
SORT {s}l LIMIT 1 3
SORT {s}l LIMIT 0 0
SORT {s}l LIMIT -1 2
SORT {s}l LIMIT 2 -1
SORT {s}l LIMIT 7 5
SORT {s}l LIMIT 8 5
SORT {s}l LIMIT 100 5
SORT {s}l LIMIT 1 9223372036854775807
SORT {s}l LIMIT 9223372036854775807 1
SORT {s}l LIMIT -9223372036854775808 -9223372036854775808
SORT {s}l LIMIT x 1
SORT {s}l LIMIT 1 x
SORT {s}l LIMIT 1
SORT {s}l LIMIT
SORT {s}l ALPHA
SORT {s}l ALPHA DESC LIMIT 2 3
SORT {s}l BY nosort
SORT {s}l BY nosort DESC
SORT {s}l BY nosort LIMIT 2 3
SORT {s}l BY nosort DESC LIMIT 2 3
SORT {s}l BY nosort LIMIT 10 3
SORT {s}l BY nosort LIMIT -3 2
SORT {s}l BY
SORT {s}l GET
SORT {s}l STORE
SORT {s}l FOO
SORT {s}l ASC FOO
RPUSH {s}words banana apple Cherry apple <empty> 10 9 b<sp>a zeta
SORT {s}words
SORT {s}words DESC
SORT {s}words ALPHA
SORT {s}words ALPHA DESC
SORT {s}words ALPHA LIMIT 1 4
SORT {s}words ALPHA STORE {s}out
LRANGE {s}out 0 -1
SORT {s}words ALPHA DESC STORE {s}out
LRANGE {s}out 0 -1
RPUSH {s}nums 1 <sp>2 3<sp> inf -inf
SORT {s}nums
RPUSH {s}nums2 1 <sp>2 inf -inf +5 .5 5. -0 1e-3
SORT {s}nums2
SORT {s}nums2 DESC
RPUSH {s}nan nan 1
SORT {s}nan
RPUSH {s}empty <empty> 1 -1
SORT {s}empty
SORT {s}nokey
SORT {s}nokey ALPHA DESC LIMIT 0 5
SORT {s}nokey STORE {s}out
EXISTS {s}out
SORT {s}nokey BY nosort
SET {s}str v
SORT {s}str
SORT {s}str BY nosort
SORT {s}str LIMIT x 1
SORT_RO {s}str
HSET {s}hash a b
SORT {s}hash
SORT_RO {s}l
SORT_RO {s}l DESC LIMIT 1 2
SORT_RO {s}l STORE {s}out
SORT_RO {s}l ALPHA BY nosort
SADD {s}set 5 3 9 1 7
SORT {s}set
SORT {s}set DESC LIMIT 1 2
SORT {s}set ALPHA
sorted SORT {s}set BY nosort
SORT {s}set BY nosort STORE {s}out
LRANGE {s}out 0 -1
SADD {s}aset pear apple fig
SORT {s}aset
SORT {s}aset ALPHA
SORT {s}aset BY nosort STORE {s}out
LRANGE {s}out 0 -1
ZADD {s}z 3 c 1 a 2 b 5 e 4 d
SORT {s}z ALPHA
SORT {s}z ALPHA DESC
SORT {s}z
SORT {s}z BY nosort
SORT {s}z BY nosort DESC
SORT {s}z BY nosort LIMIT 1 2
SORT {s}z BY nosort DESC LIMIT 1 2
SORT {s}z BY nosort DESC LIMIT 4 9
SORT {s}z BY nosort LIMIT 5 1
SORT {s}z BY nosort STORE {s}out
LRANGE {s}out 0 -1
MSET {s}w_3 30 {s}w_1 10 {s}w_2 20 {s}w_10 -1 {s}w_-5 5 {s}w_2.5 abc {s}w_0 7
SORT {s}l BY {s}w_*
SORT {s}l BY {s}w_* ALPHA
SORT {s}l BY {s}w_* DESC
SORT {s}l BY {s}w_*->f
SORT {s}l BY {s}nope_* GET #
SORT {s}l BY {s}nope_* LIMIT 2 3
SORT {s}l BY {s}nope_* ALPHA DESC
SORT {s}l BY {s}w_* GET # GET {s}w_* GET {s}nope_* GET #
SORT {s}l BY {s}w_* GET # GET {s}w_* STORE {s}out
LRANGE {s}out 0 -1
SORT {s}l BY {s}w_* GET {s}w_* GET {s}nope STORE {s}out
LRANGE {s}out 0 -1
SORT {s}l GET {s}w_*
SORT {s}l GET {s}nope
SORT {s}l GET {s}w_*-> GET {s}w_*->
HSET {s}h_a f 3 g x1
HSET {s}h_b f 1 g x2
HSET {s}h_c f 2 g x3
HSET {s}h_d f z
SET {s}h_e 5
SORT {s}z BY {s}h_*->f GET # GET {s}h_*->g
SORT {s}z BY {s}h_*->f ALPHA GET # GET {s}h_*->f
SORT {s}z BY {s}h_*->g GET {s}h_*->nosuch
SORT {s}z BY {s}h_*->nosuch GET # LIMIT 1 2
SORT {s}z BY {s}h_*->f DESC LIMIT 0 2 GET {s}h_*->g STORE {s}out
LRANGE {s}out 0 -1
SORT {s}z BY {s}h_*->f STORE {s}out
SORT {s}z BY {s}h_*-> GET #
SORT {s}l BY {s}w_* STORE {s}nokey2 LIMIT 0 0
EXISTS {s}nokey2
SORT {s}l LIMIT 0 0 STORE {s}out
EXISTS {s}out
SET {s}out x
SORT {s}l STORE {s}out
TYPE {s}out
LRANGE {s}out 0 -1
SORT {s}l STORE {s}out STORE {s}out2
EXISTS {s}out2
";

const SORT_RESP3: &str = "
SORT {s}l
SORT {s}l BY {s}w_* GET # GET {s}w_* GET {s}nope_*
SORT {s}z BY {s}h_*->f GET # GET {s}h_*->g
SORT_RO {s}l DESC LIMIT 1 2
SORT {s}l STORE {s}out
SORT {s}str
RPUSH {s}huge 1 1e400
SORT {s}huge
";

/// Every combination of SORT's options over a list, a set and a sorted set holding the same
/// elements, with distinct weights behind the patterns (so the order Redis fixes is total, and
/// the one a set's iteration would decide never shows).
fn sort_combinations() -> String {
    let elements = ["7", "3", "11", "-2", "5", "0", "42", "8"];
    let mut lines = vec![
        format!("RPUSH {{s}}cl {}", elements.join(" ")),
        format!("SADD {{s}}cs {}", elements.join(" ")),
        format!(
            "ZADD {{s}}cz {}",
            elements
                .iter()
                .enumerate()
                .map(|(i, e)| format!("{} {e}", (i * 7) % 5))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    ];
    for (i, e) in elements.iter().enumerate() {
        lines.push(format!("SET {{s}}cw_{e} {}", (i * 5) % 8));
        lines.push(format!("HSET {{s}}ch_{e} f k{} g g{e}", (i * 3) % 8));
        lines.push(format!("SET {{s}}co_{e} out{e}"));
    }
    let bys = [
        "",
        " BY nosort",
        " BY {s}cw_*",
        " BY {s}ch_*->f",
        " BY {s}missing_*",
    ];
    let limits = [
        "",
        " LIMIT 0 3",
        " LIMIT 2 -1",
        " LIMIT -1 2",
        " LIMIT 5 0",
        " LIMIT 6 10",
        " LIMIT 100 2",
    ];
    let gets = ["", " GET #", " GET {s}co_*", " GET # GET {s}ch_*->g"];
    for key in ["{s}cl", "{s}cs", "{s}cz"] {
        for by in bys {
            for limit in limits {
                for order in ["", " DESC"] {
                    for alpha in ["", " ALPHA"] {
                        for get in gets {
                            let unordered = key == "{s}cs" && by == " BY nosort";
                            let ties =
                                key != "{s}cl" && by == " BY {s}missing_*" && !alpha.is_empty();
                            if (unordered || ties) && !limit.is_empty() {
                                continue;
                            }
                            let mode = if unordered || ties { "sorted " } else { "" };
                            lines.push(format!("{mode}SORT {key}{by}{limit}{order}{alpha}{get}"));
                        }
                    }
                }
            }
        }
    }
    lines.join("\n")
}

#[tokio::test]
async fn sort_replies_match_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start().await?;
    let mut diff = Differ::connect(redis.addr(), node.addr).await?;
    let resp2 = format!("{SORT_SCRIPT}\n{}", sort_combinations());
    diff.scripts(&resp2, SORT_RESP3).await?;
    diff.assert_none();
    node.stop().await
}

/// In cluster mode a BY or GET pattern whose keys may be outside the sorted key's slot is denied,
/// as newer Redis does (Redis 7.0 denies them all); a pattern with the key's hash tag, GET `#` and
/// a constant BY work.
#[tokio::test]
async fn sort_patterns_outside_the_slot_are_denied() -> anyhow::Result<()> {
    let node = TestNode::start().await?;
    let mut c = node.client().await?;
    c.line("RPUSH {s}l 2 1 3").await?;
    c.line("MSET {s}w_1 3 {s}w_2 2 {s}w_3 1").await?;
    let by = "-ERR BY option of SORT denied in Cluster mode when keys formed by the pattern may be in different slots.\r\n";
    let get = "-ERR GET option of SORT denied in Cluster mode when keys formed by the pattern may be in different slots.\r\n";
    for line in [
        "SORT {s}l BY w_*",
        "SORT {s}l BY {t}w_*",
        "SORT {s}l BY w_*{s}",
        "SORT {s}l BY {}w_*",
        "SORT_RO {s}l BY *",
        "SORT {s}l BY {s}w_* BY w_*",
        "SORT {s}l BY w_* GET o_*",
    ] {
        assert_eq!(c.line(line).await?, by, "{line}");
    }
    for line in [
        "SORT {s}l GET w_*",
        "SORT {s}l GET # GET {t}*",
        "SORT_RO {s}l GET x",
        "SORT {s}l GET {s}w_* GET w_*->f",
    ] {
        assert_eq!(c.line(line).await?, get, "{line}");
    }
    assert_eq!(
        c.line("SORT {s}l BY {s}w_* GET # GET {s}w_*").await?,
        "*6\r\n$1\r\n3\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n2\r\n$1\r\n1\r\n$1\r\n3\r\n"
    );
    assert_eq!(
        c.line("SORT {s}l BY nosort GET #").await?,
        "*3\r\n$1\r\n2\r\n$1\r\n1\r\n$1\r\n3\r\n"
    );
    // The denial comes before the key is looked at, as Redis parses options first.
    assert_eq!(c.line("SORT {s}nokey BY w_*").await?, by);
    node.stop().await
}

/// GEOADD (logged as ZADD), the geo STORE forms and SORT ... STORE, served live with an AOF,
/// replay to the same keyspace, so their results survive a restart.
#[tokio::test]
async fn geo_and_sort_stores_replay_from_the_aof() -> anyhow::Result<()> {
    use tessera_shard_node::aof::{self, FsyncPolicy};
    use tessera_shard_node::cmd;

    let mut node = LoggedNode::start(FsyncPolicy::Always).await?;
    let (path, log, live, addr) = node.parts();
    let mut client = RawClient::connect(addr).await?;
    let script = [
        "GEOADD {g}s 13.361389 38.115556 Palermo 15.087269 37.502669 Catania 0 0 origin",
        "GEOADD {g}s CH 13.361390 38.115556 Palermo 180 85.05112878 corner",
        "GEOADD {g}s XX 1 1 origin 2 2 nosuch",
        "GEORADIUS {g}s 15 37 200 km STORE {g}r1",
        "GEORADIUSBYMEMBER {g}s Palermo 300 km STOREDIST {g}r2",
        "GEOSEARCHSTORE {g}r3 {g}s FROMLONLAT 15 37 BYBOX 400 400 km ASC COUNT 1 STOREDIST",
        "GEOSEARCHSTORE {g}r4 {g}s FROMLONLAT 0 0 BYRADIUS 20000 km",
        "SET {g}gone x",
        "GEOSEARCHSTORE {g}gone {g}s FROMLONLAT 0 0 BYRADIUS 1 m",
        "SET {g}gone2 x",
        "GEORADIUS {g}nokey 0 0 1 m STORE {g}gone2",
        "RPUSH {s}l 3 1 2",
        "SADD {s}set c a b",
        "MSET {s}w_1 3 {s}w_2 2 {s}w_3 1",
        "SORT {s}l STORE {s}o1",
        "SORT {s}l BY {s}w_* GET # GET {s}w_* GET {s}none_* STORE {s}o2",
        "SORT {s}set BY nosort STORE {s}o3",
        "SORT {s}set ALPHA DESC LIMIT 0 2 STORE {s}o4",
        "SET {s}o5 x",
        "SORT {s}l LIMIT 0 0 STORE {s}o5",
        "SET {s}o6 x",
        "SORT {s}l STORE {s}o6",
    ];
    for line in script {
        let reply = client.line(line).await?;
        assert!(!reply.starts_with('-'), "{line}: {reply}");
    }
    node.stop().await?;
    log.flush_and_sync().await?;

    let replayed = state(None, addr.port())?;
    let summary = aof::load(&path, |args| cmd::replay(&replayed, args))?;
    assert!(summary.records > 15, "{summary:?}");
    let want = dump(&live.keyspace);
    for key in [
        "{g}r1", "{g}r2", "{g}r3", "{g}r4", "{s}o1", "{s}o2", "{s}o3", "{s}o4", "{s}o6",
    ] {
        assert!(want.contains_key(key.as_bytes()), "{key} missing");
    }
    for key in ["{g}gone", "{g}gone2", "{s}o5"] {
        assert!(!want.contains_key(key.as_bytes()), "{key} still there");
    }
    assert_eq!(dump(&replayed.keyspace), want);
    Ok(())
}
