//! Property tests of the RESP readers: arbitrary input never panics and never claims more bytes
//! than it was given; every frame survives an encode/parse round trip; `check` agrees with `parse`.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use tessera_proto::resp::frame::{self, FrameLimits};
use tessera_proto::resp::request::{self, RequestLimits};
use tessera_proto::resp::{Frame, Protocol};

/// Bytes that look like RESP often enough to reach deep into the parsers.
fn resp_like() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"*".to_vec()),
        Just(b"$".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"%".to_vec()),
        Just(b"=".to_vec()),
        Just(b"|".to_vec()),
        Just(b"-1".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"'".to_vec()),
        Just(b"\\x4".to_vec()),
        (0u32..20).prop_map(|n| n.to_string().into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(token, 0..40).prop_map(|parts| parts.concat())
}

fn text() -> impl Strategy<Value = Bytes> {
    "[a-zA-Z0-9 :._-]{0,12}".prop_map(Bytes::from)
}

fn frame() -> impl Strategy<Value = Frame> {
    let leaf = prop_oneof![
        text().prop_map(Frame::Simple),
        text().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(|b| Frame::Bulk(b.into())),
        Just(Frame::Null),
        "-?[0-9]{1,5}(\\.[0-9]{1,3})?|inf|-inf|nan".prop_map(|s| Frame::Double(s.into())),
        any::<bool>().prop_map(Frame::Boolean),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(|b| Frame::Verbatim(b.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Frame::Array),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Frame::Set),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Frame::Push),
            proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Frame::Map),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn request_parse_never_panics_nor_overreads(input in prop_oneof![resp_like(), proptest::collection::vec(any::<u8>(), 0..64)]) {
        let limits = RequestLimits { max_inline_len: 32, ..RequestLimits::default() };
        let mut buf = BytesMut::from(&input[..]);
        for _ in 0..input.len() + 1 {
            let before = buf.len();
            match request::parse(&mut buf, &limits) {
                Ok(Some(req)) => {
                    prop_assert!(buf.len() < before);
                    prop_assert!(!req.args.is_empty());
                }
                Ok(None) if buf.len() < before => {}
                Ok(None) | Err(_) => break,
            }
            prop_assert!(buf.len() <= before);
        }
    }

    #[test]
    fn frame_readers_never_panic_and_agree(input in prop_oneof![resp_like(), proptest::collection::vec(any::<u8>(), 0..64)]) {
        let limits = FrameLimits { max_bulk_len: 64, max_elements: 16, max_depth: 4 };
        let checked = frame::check(&input, &limits);
        let parsed = frame::parse(&input, &limits);
        match (&checked, &parsed) {
            (Ok(Some(n)), Ok(Some((_, m)))) => {
                prop_assert_eq!(n, m);
                prop_assert!(*n <= input.len());
            }
            (Ok(None), Ok(None)) => {}
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            _ => prop_assert!(false, "check {:?} vs parse {:?}", checked, parsed),
        }
    }

    #[test]
    fn resumed_checker_agrees_with_check(input in resp_like(), cut in any::<prop::sample::Index>()) {
        let limits = FrameLimits { max_bulk_len: 64, max_elements: 16, max_depth: 4 };
        let cut = cut.index(input.len() + 1);
        let mut checker = frame::Checker::new();
        match checker.advance(&input[..cut], &limits) {
            Ok(None) => prop_assert_eq!(checker.advance(&input, &limits), frame::check(&input, &limits)),
            early => prop_assert_eq!(early, frame::check(&input[..cut], &limits)),
        }
    }

    #[test]
    fn frames_round_trip_in_resp3(f in frame()) {
        let bytes = f.to_bytes(Protocol::Resp3);
        let limits = FrameLimits::default();
        prop_assert_eq!(frame::check(&bytes, &limits), Ok(Some(bytes.len())));
        prop_assert_eq!(frame::parse(&bytes, &limits), Ok(Some((f, bytes.len()))));
        // Every strict prefix is incomplete, never an error.
        for cut in [0, bytes.len() / 2, bytes.len() - 1] {
            prop_assert_eq!(frame::check(&bytes[..cut], &limits), Ok(None));
        }
    }

    #[test]
    fn commands_survive_any_split(
        args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..6),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..5),
    ) {
        let args: Vec<Bytes> = args.into_iter().map(Bytes::from).collect();
        let wire = Frame::Array(args.iter().cloned().map(Frame::Bulk).collect()).to_bytes(Protocol::Resp2);
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(wire.len())).collect();
        cuts.push(wire.len());
        cuts.sort_unstable();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut from = 0;
        for cut in cuts {
            buf.extend_from_slice(&wire[from..cut]);
            from = cut;
            if let Some(req) = request::parse(&mut buf, &RequestLimits::default()).map_err(|e| TestCaseError::fail(e.to_string()))? {
                got.push(req.args);
            }
        }
        prop_assert_eq!(got, vec![args]);
        prop_assert!(buf.is_empty());
    }
}
