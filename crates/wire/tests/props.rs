//! Property tests: frames round-trip however the bytes arrive, builders and
//! inspectors agree, and no decoder panics on arbitrary input.

use bytes::{BufMut, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use wire::build::{self, Severity};
use wire::inspect::{self, AuthRequest, Target, TxStatus};
use wire::startup::{StartupError, MAX_STARTUP_PACKET};
use wire::{
    complete_frame, decode_frame, decode_startup, Frame, FrameError, SqlState, StartupPacket,
};

const MAX: usize = 1 << 20;

fn typed(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(body.len() + 5);
    b.push(tag);
    b.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    b.extend_from_slice(body);
    b
}

/// Strings the protocol can carry as cstrings: anything but NUL.
fn cstring() -> impl Strategy<Value = String> {
    "[^\\x00]{0,40}"
}

fn nonempty_cstring() -> impl Strategy<Value = String> {
    "[^\\x00]{1,40}"
}

fn cbytes() -> impl Strategy<Value = Vec<u8>> {
    vec(1u8..=255, 0..64)
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..4096)
}

fn sqlstate() -> impl Strategy<Value = SqlState> {
    prop::sample::select(vec![
        SqlState::CONNECTION_UNABLE,
        SqlState::CONNECTION_FAILURE,
        SqlState::PROTOCOL_VIOLATION,
        SqlState::FEATURE_NOT_SUPPORTED,
        SqlState::INVALID_AUTHORIZATION,
        SqlState::INVALID_PASSWORD,
        SqlState::INVALID_CATALOG_NAME,
        SqlState::TOO_MANY_CONNECTIONS,
        SqlState::ADMIN_SHUTDOWN,
        SqlState::QUERY_CANCELED,
        SqlState::PROGRAM_LIMIT_EXCEEDED,
        SqlState::INTERNAL_ERROR,
    ])
}

fn tx_status() -> impl Strategy<Value = TxStatus> {
    prop_oneof![
        Just(TxStatus::Idle),
        Just(TxStatus::InBlock),
        Just(TxStatus::Failed)
    ]
}

/// Runs every inspector over `body`; none may panic, whatever it returns.
fn inspect_all(body: &[u8]) {
    let _ = inspect::parse(body);
    let _ = inspect::bind(body);
    let _ = inspect::target(body);
    let _ = inspect::parameter_status(body);
    let _ = inspect::backend_key_data(body);
    let _ = inspect::ready_for_query(body);
    let _ = inspect::auth_request(body);
    let _ = inspect::sasl_initial_response(body);
    let _ = inspect::password(body);
    let _ = inspect::error_fields(body);
    let mut r = wire::reader::Reader::new(body);
    while r.u8().is_some() {
        let _ = (
            r.clone().i16(),
            r.clone().i32(),
            r.clone().cstr(),
            r.clone().str(),
        );
    }
}

fn assert_same(f: &Frame, tag: u8, body: &[u8]) {
    assert_eq!(f.tag(), tag);
    assert_eq!(f.body(), body);
    assert_eq!(&f.body_bytes()[..], body);
    assert_eq!(f.len(), body.len() + 5);
    assert_eq!(&f.raw()[..], &typed(tag, body)[..]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    // ------------------------------------------------------------ framing

    #[test]
    fn frame_round_trips_in_one_buffer(tag in any::<u8>(), body in body()) {
        let mut buf = BytesMut::from(&typed(tag, &body)[..]);
        let f = decode_frame(&mut buf, MAX).unwrap().expect("complete frame");
        assert_same(&f, tag, &body);
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decode_frame(&mut buf, MAX), Ok(None));
    }

    #[test]
    fn frame_round_trips_split_in_two(
        tag in any::<u8>(),
        body in body(),
        split in any::<prop::sample::Index>(),
    ) {
        let wire = typed(tag, &body);
        let at = split.index(wire.len()); // 0..len: the first part is incomplete
        let mut buf = BytesMut::from(&wire[..at]);
        prop_assert_eq!(decode_frame(&mut buf, MAX), Ok(None));
        prop_assert_eq!(&buf[..], &wire[..at], "an incomplete frame is not consumed");
        buf.extend_from_slice(&wire[at..]);
        let f = decode_frame(&mut buf, MAX).unwrap().expect("complete frame");
        assert_same(&f, tag, &body);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn complete_frame_sees_what_decode_frame_takes(
        bytes in vec(any::<u8>(), 0..64),
        tag in any::<u8>(),
        body in body(),
        split in any::<prop::sample::Index>(),
    ) {
        // Arbitrary bytes and any prefix of a real frame: complete_frame
        // reports a frame exactly when decode_frame would split one off,
        // with its tag and size, and errs exactly when it errs.
        let wire = typed(tag, &body);
        for input in [bytes.clone(), wire[..split.index(wire.len() + 1)].to_vec()] {
            let peeked = complete_frame(&input, MAX);
            let mut buf = BytesMut::from(&input[..]);
            match (peeked, decode_frame(&mut buf, MAX)) {
                (Ok(Some((t, total))), Ok(Some(f))) => {
                    prop_assert_eq!(t, f.tag());
                    prop_assert_eq!(total, f.raw().len());
                }
                (Ok(None), Ok(None)) => {}
                (Err(a), Err(b)) => prop_assert_eq!(a, b),
                (a, b) => prop_assert!(false, "complete_frame {:?}, decode_frame {:?}", a, b),
            }
        }
    }

    #[test]
    fn frames_back_to_back_decode_in_order(
        frames in vec((any::<u8>(), vec(any::<u8>(), 0..512)), 0..16),
        chunk in 1usize..700,
    ) {
        let mut wire = Vec::new();
        for (tag, body) in &frames {
            wire.extend_from_slice(&typed(*tag, body));
        }
        // All at once.
        let mut buf = BytesMut::from(&wire[..]);
        for (tag, body) in &frames {
            let f = decode_frame(&mut buf, MAX).unwrap().expect("frame");
            assert_same(&f, *tag, body);
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decode_frame(&mut buf, MAX), Ok(None));

        // In chunks of arbitrary size, decoding greedily after each append.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in wire.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(f) = decode_frame(&mut buf, MAX).unwrap() {
                got.push(f);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got.len(), frames.len());
        for (f, (tag, body)) in got.iter().zip(&frames) {
            assert_same(f, *tag, body);
        }
    }

    #[test]
    fn decode_frame_never_panics_and_respects_max(
        bytes in vec(any::<u8>(), 0..2048),
        max in 0usize..4096,
    ) {
        let mut buf = BytesMut::from(&bytes[..]);
        loop {
            let before = buf.len();
            match decode_frame(&mut buf, max) {
                Ok(Some(f)) => {
                    prop_assert!(f.len() <= max, "frame of {} bytes over max {}", f.len(), max);
                    prop_assert!(f.len() >= 5);
                    prop_assert_eq!(buf.len(), before - f.len());
                    inspect_all(f.body());
                }
                Ok(None) => {
                    prop_assert_eq!(buf.len(), before);
                    break;
                }
                Err(_) => break,
            }
        }
    }

    #[test]
    fn oversized_length_is_refused_from_the_header_alone(
        tag in any::<u8>(),
        max in 5usize..(1 << 20),
        excess in 1u64..(1 << 31),
    ) {
        // A length word whose frame (length + tag byte) would exceed max.
        let length = (max as u64 + excess).min(i32::MAX as u64);
        prop_assume!(length + 1 > max as u64);
        let mut buf = BytesMut::with_capacity(5);
        buf.put_u8(tag);
        buf.put_i32(length as i32);
        let cap = buf.capacity();
        prop_assert_eq!(
            decode_frame(&mut buf, max),
            Err(FrameError::TooLarge { tag: tag as char, length, max })
        );
        prop_assert_eq!(buf.capacity(), cap);
        prop_assert_eq!(buf.len(), 5);
    }

    #[test]
    fn length_word_below_four_is_bad_length(tag in any::<u8>(), length in i32::MIN..4, max in 0usize..MAX) {
        let mut buf = BytesMut::new();
        buf.put_u8(tag);
        buf.put_i32(length);
        prop_assert_eq!(
            decode_frame(&mut buf, max),
            Err(FrameError::BadLength { tag: tag as char, length: length as i64 })
        );
    }

    #[test]
    fn gigabyte_header_does_not_grow_the_buffer(tag in any::<u8>(), extra in vec(any::<u8>(), 0..64)) {
        let mut buf = BytesMut::new();
        buf.put_u8(tag);
        buf.put_i32(1 << 30);
        buf.extend_from_slice(&extra);
        let refused = matches!(decode_frame(&mut buf, MAX), Err(FrameError::TooLarge { .. }));
        prop_assert!(refused);
        prop_assert!(buf.capacity() <= 64 * 1024, "capacity grew to {}", buf.capacity());
    }

    #[test]
    fn incomplete_frame_within_max_reserves_at_most_max(
        tag in any::<u8>(),
        length in 4i32..(1 << 20),
    ) {
        let mut buf = BytesMut::new();
        buf.put_u8(tag);
        buf.put_i32(length);
        let total = length as usize + 1;
        let r = decode_frame(&mut buf, MAX).unwrap();
        if total == 5 {
            prop_assert!(r.is_some());
        } else {
            prop_assert!(r.is_none());
            prop_assert!(buf.capacity() >= total);
            // Reserving may round up, but never by more than a doubling.
            prop_assert!(buf.capacity() <= 2 * MAX.max(64));
        }
    }

    // ------------------------------------------------------------ startup

    #[test]
    fn decode_startup_never_panics(bytes in vec(any::<u8>(), 0..512)) {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decode_startup(&mut buf) {}
        prop_assert!(buf.capacity() <= 64 * 1024);
    }

    #[test]
    fn decode_startup_never_panics_on_well_framed_packets(
        code in prop_oneof![
            any::<i32>(),
            Just(196_608),
            Just(196_610),
            Just(80_877_102),
            Just(80_877_103),
            Just(80_877_104),
        ],
        body in vec(any::<u8>(), 0..256),
    ) {
        let mut buf = BytesMut::new();
        buf.put_i32(body.len() as i32 + 8);
        buf.put_i32(code);
        buf.extend_from_slice(&body);
        match decode_startup(&mut buf) {
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => panic!("a complete packet is not incomplete"),
        }
    }

    #[test]
    fn decode_startup_refuses_large_lengths_from_the_header(length in (MAX_STARTUP_PACKET as i32 + 1)..=i32::MAX) {
        let mut buf = BytesMut::new();
        buf.put_i32(length);
        let cap = buf.capacity();
        let refused = matches!(
            decode_startup(&mut buf),
            Err(StartupError::Frame(FrameError::TooLarge { .. }))
        );
        prop_assert!(refused);
        prop_assert_eq!(buf.capacity(), cap);
    }

    #[test]
    fn startup_message_round_trips(
        params in vec((nonempty_cstring(), cstring()), 0..12),
        split in any::<prop::sample::Index>(),
    ) {
        let refs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let wire = build::startup_message(&refs);
        prop_assert!(wire.len() <= MAX_STARTUP_PACKET);
        let at = split.index(wire.len());
        let mut buf = BytesMut::from(&wire[..at]);
        prop_assert_eq!(decode_startup(&mut buf), Ok(None));
        buf.extend_from_slice(&wire[at..]);
        let p = decode_startup(&mut buf).unwrap().expect("complete packet");
        prop_assert!(buf.is_empty());
        prop_assert_eq!(p, StartupPacket::Startup { major: 3, minor: 0, params });
    }

    #[test]
    fn cancel_request_round_trips(pid in any::<i32>(), secret in any::<i32>()) {
        let mut buf = BytesMut::from(&build::cancel_request(pid, secret)[..]);
        prop_assert_eq!(decode_startup(&mut buf), Ok(Some(StartupPacket::Cancel { pid, secret })));
        prop_assert!(buf.is_empty());
    }

    // ------------------------------------------------------------ inspect

    #[test]
    fn inspectors_never_panic(bytes in vec(any::<u8>(), 0..1024)) {
        inspect_all(&bytes);
    }

    #[test]
    fn inspectors_never_panic_on_plausible_bodies(
        head in prop_oneof![
            Just(vec![0u8, 0, 0, 10]),
            Just(vec![0u8, 0, 0, 5]),
            Just(vec![b'S']),
            Just(vec![b'P']),
            Just(vec![b'V']),
        ],
        parts in vec(prop_oneof![cbytes().prop_map(|mut b| { b.push(0); b }), vec(any::<u8>(), 0..8)], 0..8),
    ) {
        let mut body = head;
        for p in parts {
            body.extend_from_slice(&p);
        }
        inspect_all(&body);
    }

    #[test]
    fn parse_round_trips(
        name in cbytes(),
        query in cbytes(),
        oids in vec(any::<u32>(), 0..32),
    ) {
        let mut types = Vec::new();
        types.extend_from_slice(&(oids.len() as i16).to_be_bytes());
        for o in &oids {
            types.extend_from_slice(&o.to_be_bytes());
        }
        let f = build::parse(&name, &query, &types);
        prop_assert_eq!(f.tag(), b'P');
        let p = inspect::parse(f.body()).expect("well-formed Parse");
        prop_assert_eq!(p.statement, &name[..]);
        prop_assert_eq!(p.query, &query[..]);
        prop_assert_eq!(p.param_types, &types[..]);
    }

    #[test]
    fn bind_round_trips(portal in cbytes(), stmt in cbytes(), rest in vec(any::<u8>(), 0..256)) {
        let f = build::bind(&portal, &stmt, &rest);
        prop_assert_eq!(f.tag(), b'B');
        let b = inspect::bind(f.body()).expect("well-formed Bind");
        prop_assert_eq!(b.portal, &portal[..]);
        prop_assert_eq!(b.statement, &stmt[..]);
        prop_assert_eq!(b.rest, &rest[..]);
    }

    #[test]
    fn describe_statement_round_trips(name in cbytes()) {
        let f = build::describe_statement(&name);
        prop_assert_eq!(f.tag(), b'D');
        prop_assert_eq!(inspect::target(f.body()), Some(Target::Statement(&name[..])));
    }

    #[test]
    fn error_response_round_trips(
        fatal in any::<bool>(),
        code in sqlstate(),
        msg in cstring(),
    ) {
        let sev = if fatal { Severity::Fatal } else { Severity::Error };
        let f = build::error_response(sev, code, &msg);
        prop_assert_eq!(f.tag(), b'E');
        let e = inspect::error_fields(f.body()).expect("well-formed ErrorResponse");
        prop_assert_eq!(e.severity, if fatal { "FATAL" } else { "ERROR" });
        prop_assert_eq!(e.code, code.code());
        prop_assert_eq!(e.message, msg);
    }

    #[test]
    fn notice_round_trips(msg in cstring()) {
        let f = build::notice_warning(&msg);
        let e = inspect::error_fields(f.body()).expect("well-formed NoticeResponse");
        prop_assert_eq!(e.severity, "WARNING");
        prop_assert_eq!(e.message, msg);
    }

    #[test]
    fn parameter_status_round_trips(name in cstring(), value in cstring()) {
        let f = build::parameter_status(&name, &value);
        prop_assert_eq!(f.tag(), b'S');
        prop_assert_eq!(inspect::parameter_status(f.body()), Some((name.as_str(), value.as_str())));
    }

    #[test]
    fn backend_key_data_round_trips(pid in any::<i32>(), secret in any::<i32>()) {
        let f = build::backend_key_data(pid, secret);
        prop_assert_eq!(f.tag(), b'K');
        prop_assert_eq!(inspect::backend_key_data(f.body()), Some((pid, secret)));
    }

    #[test]
    fn ready_for_query_round_trips(s in tx_status()) {
        let f = build::ready_for_query(s);
        prop_assert_eq!(f.tag(), b'Z');
        prop_assert_eq!(inspect::ready_for_query(f.body()), Some(s));
    }

    #[test]
    fn auth_requests_round_trip(
        salt in any::<[u8; 4]>(),
        mechs in vec(nonempty_cstring(), 0..4),
        data in vec(any::<u8>(), 0..256),
    ) {
        let f = build::auth_ok();
        prop_assert_eq!(inspect::auth_request(f.body()), Some(AuthRequest::Ok));
        let f = build::auth_cleartext();
        prop_assert_eq!(inspect::auth_request(f.body()), Some(AuthRequest::CleartextPassword));
        let f = build::auth_md5(salt);
        prop_assert_eq!(inspect::auth_request(f.body()), Some(AuthRequest::Md5Password { salt }));
        let refs: Vec<&str> = mechs.iter().map(String::as_str).collect();
        let f = build::auth_sasl(&refs);
        prop_assert_eq!(inspect::auth_request(f.body()), Some(AuthRequest::Sasl(refs.clone())));
        let f = build::auth_sasl_continue(&data);
        prop_assert_eq!(inspect::auth_request(f.body()), Some(AuthRequest::SaslContinue(&data[..])));
        let f = build::auth_sasl_final(&data);
        prop_assert_eq!(inspect::auth_request(f.body()), Some(AuthRequest::SaslFinal(&data[..])));
        for f in [build::auth_ok(), build::auth_cleartext(), build::auth_md5(salt), build::auth_sasl(&refs)] {
            prop_assert_eq!(f.tag(), b'R');
        }
    }

    #[test]
    fn client_auth_messages_round_trip(mech in cstring(), data in vec(any::<u8>(), 0..256), pw in cbytes()) {
        let f = build::sasl_initial_response(&mech, &data);
        prop_assert_eq!(inspect::sasl_initial_response(f.body()), Some((mech.as_str(), &data[..])));
        let f = build::password_message(&pw);
        prop_assert_eq!(inspect::password(f.body()), Some(&pw[..]));
    }

    #[test]
    fn built_frames_decode_as_themselves(msg in cstring(), pid in any::<i32>(), name in cbytes()) {
        let frames = vec![
            build::query(&msg),
            build::parameter_status(&msg, &msg),
            build::backend_key_data(pid, pid),
            build::describe_statement(&name),
            build::sync(),
        ];
        let mut buf = BytesMut::new();
        for f in &frames {
            buf.extend_from_slice(f.raw());
        }
        for f in &frames {
            let got = decode_frame(&mut buf, MAX).unwrap();
            prop_assert_eq!(got.as_ref(), Some(f));
        }
        prop_assert!(buf.is_empty());
    }
}
