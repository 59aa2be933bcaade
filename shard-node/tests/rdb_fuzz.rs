//! RESTORE never trusts a payload: random and mutated payloads (bits flipped, bytes overwritten
//! with length markers, cut short, grown, spliced) with a correct CRC, so the decoder itself is
//! exercised, never panic and answer either a value or `Bad data format`; a value they do give
//! dumps and restores to itself. Payloads claiming huge lengths fail at once, without reserving
//! what they claim. Seeded, bounded in count and in time.

mod rdb_support;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdb_support::{legacy_payloads, payload, rdb_len};
use tessera_shard_node::keyspace::{HashValue, SetValue, SortedSet, Value};
use tessera_shard_node::rdb::{self, RestoreError};

const ITERATIONS: usize = 40_000;
const TIME_LIMIT: Duration = Duration::from_secs(60);
/// Bytes mutations like to write: length markers (32/64-bit, encoded, LZF), boundaries.
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x3f, 0x40, 0x7f, 0x80, 0x81, 0xc0, 0xc3, 0xfe, 0xff,
];

/// Valid payloads of every kind the decoder reads: Tessera's own DUMPs, payloads redis-server
/// 7.0 wrote, and the legacy encodings.
fn corpus() -> Vec<Vec<u8>> {
    let b = |s: &str| Bytes::from(s.to_string());
    let mut zset = SortedSet::default();
    for i in 0..40 {
        zset.insert(Bytes::from(format!("m{i}")), f64::from(i) * 1.25 - 9.0);
    }
    let values = [
        Value::String(b("hello")),
        Value::String(b("-123")),
        Value::String(Bytes::from(vec![b'q'; 300])),
        Value::List(Box::new(
            (0..60)
                .map(|i| Bytes::from(format!("{}", i * 997 - 20_000)))
                .chain([b("text"), Bytes::from(vec![b'x'; 70])])
                .collect::<VecDeque<_>>(),
        )),
        Value::Set(Box::new(
            (0..30)
                .map(|i| Bytes::from(i.to_string()))
                .collect::<SetValue>(),
        )),
        Value::Hash(Box::new({
            let mut hash = HashValue::default();
            for i in 0..20 {
                hash.insert(format!("f{i}").as_bytes(), format!("v{i}").as_bytes());
            }
            hash
        })),
        Value::ZSet(Box::new(zset)),
    ];
    let mut out: Vec<Vec<u8>> = values.iter().map(|v| rdb::dump(v.as_ref())).collect();
    let from_redis: [&[u8]; 4] = [
        b"\x00\xc0\x0c\n\x00<*\xf8Q\\\x04\xbc\xd5",
        b"\x12\x01\x02\x0f\x0f\x00\x00\x00\x03\x00\x81a\x02\x81b\x02\x01\x01\xff\n\x00\xe0\x1b\xabJG\xceY\"",
        b"\x0b\x0e\x02\x00\x00\x00\x03\x00\x00\x00\x01\x00\x02\x00\x03\x00\n\x00\xa5\x02\\\xe2mnM\x1b",
        b"\x11\x0f\x0f\x00\x00\x00\x02\x00\x81a\x02\x831.5\x04\xff\n\x00\x08\x0cn\x19\x80\x8e}\x98",
    ];
    out.extend(from_redis.iter().map(|p| p.to_vec()));
    out.extend(
        legacy_payloads()
            .into_iter()
            .map(|(_, body)| payload(&body)),
    );
    // An LZF-compressed string: "abc" then a back reference repeating it (RDB_ENC_LZF).
    out.push(payload(&[0, 0xc3, 6, 9, 2, b'a', b'b', b'c', 4 << 5, 2]));
    out
}

/// The body of a payload (without its version and CRC).
fn body(payload: &[u8]) -> &[u8] {
    &payload[..payload.len() - 10]
}

fn mutate(rng: &mut StdRng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut data = body(&corpus[rng.random_range(0..corpus.len())]).to_vec();
    let rounds = rng.random_range(1..=4);
    for _ in 0..rounds {
        let len = data.len();
        match rng.random_range(0..7) {
            0 if len > 0 => {
                let at = rng.random_range(0..len);
                data[at] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let at = rng.random_range(0..len);
                data[at] = INTERESTING[rng.random_range(0..INTERESTING.len())];
            }
            2 if len > 0 => data.truncate(rng.random_range(0..len)),
            3 => {
                let at = rng.random_range(0..=len);
                let extra: Vec<u8> = (0..rng.random_range(1..8)).map(|_| rng.random()).collect();
                data.splice(at..at, extra);
            }
            4 => {
                let other = body(&corpus[rng.random_range(0..corpus.len())]);
                if !other.is_empty() {
                    let from = rng.random_range(0..other.len());
                    let at = rng.random_range(0..=len);
                    data.truncate(at);
                    data.extend_from_slice(&other[from..]);
                }
            }
            5 => {
                let kind = [0u8, 1, 2, 3, 4, 5, 9, 10, 11, 12, 13, 14, 16, 17, 18];
                data = vec![kind[rng.random_range(0..kind.len())]];
                data.extend((0..rng.random_range(0..64)).map(|_| rng.random::<u8>()));
            }
            _ if len > 1 => {
                // A length field somewhere made huge.
                let at = rng.random_range(0..len - 1);
                data[at] = if rng.random() { 0x80 } else { 0x81 };
            }
            _ => {}
        }
    }
    payload(&data)
}

#[test]
fn mutated_payloads_never_panic() {
    let corpus = corpus();
    for valid in &corpus {
        assert!(
            rdb::restore(valid).is_ok(),
            "corpus entry refused: {valid:?}"
        );
    }
    let mut rng = StdRng::seed_from_u64(0x7e55_e7a0);
    let started = Instant::now();
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..ITERATIONS {
        if started.elapsed() > TIME_LIMIT {
            panic!("only {i} iterations in {TIME_LIMIT:?}");
        }
        let candidate = mutate(&mut rng, &corpus);
        match rdb::restore(&candidate) {
            Ok(value) => {
                accepted += 1;
                assert_eq!(
                    rdb::restore(&rdb::dump(value.as_ref())).as_ref(),
                    Ok(&value)
                );
            }
            Err(RestoreError::BadFormat { .. }) => refused += 1,
            Err(RestoreError::VersionOrChecksum) => {
                panic!("a correct footer was refused: {candidate:?}")
            }
        }
    }
    // Both outcomes happen, or the mutations are not reaching the decoder.
    assert!(accepted > 100 && refused > 100, "{accepted} / {refused}");
}

#[test]
fn flipped_footers_are_checksum_errors() {
    let mut rng = StdRng::seed_from_u64(42);
    for valid in corpus() {
        for _ in 0..50 {
            let mut bad = valid.clone();
            let at = rng.random_range(0..bad.len());
            bad[at] ^= 1 << rng.random_range(0..8);
            assert_eq!(rdb::restore(&bad), Err(RestoreError::VersionOrChecksum));
        }
        for cut in 0..valid.len() {
            assert!(rdb::restore(&valid[..cut]).is_err());
        }
    }
}

/// Lengths that claim gigabytes or more in a few bytes: refused at once, nothing reserved.
#[test]
fn huge_claims_fail_fast() {
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for kind in [1u8, 2, 3, 4, 5, 14, 18] {
        let mut body = vec![kind, 0x81];
        body.extend_from_slice(&u64::MAX.to_be_bytes());
        cases.push(body);
        let mut body = vec![kind];
        rdb_len(u32::MAX as usize, &mut body);
        cases.push(body);
    }
    // A string of 4 GB announced, 3 bytes given.
    cases.push(vec![0, 0x80, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    // LZF: 2 compressed bytes claiming 512 MB and 4 GB of output.
    cases.push(vec![0, 0xc3, 2, 0x80, 0x20, 0, 0, 0, 0, b'a']);
    cases.push(vec![0, 0xc3, 2, 0x80, 0xff, 0xff, 0xff, 0xff, 0, b'a']);
    // Listpack, ziplist and intset headers claiming more than they hold.
    cases.push(vec![16, 7, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff]);
    cases.push(vec![
        10, 11, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 0xff, 0xff, 0xff,
    ]);
    cases.push(vec![11, 8, 8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    for body in cases {
        let started = Instant::now();
        let result = rdb::restore(&payload(&body));
        assert!(
            matches!(result, Err(RestoreError::BadFormat { .. })),
            "{body:?}: {result:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "{body:?} was slow"
        );
    }
}
