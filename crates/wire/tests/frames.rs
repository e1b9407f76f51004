//! Example-based tests of the framer, the startup decoder, the builders and
//! the inspectors: the protocol edge cases named one by one.

use bytes::{BufMut, BytesMut};
use wire::build::{self, Severity};
use wire::inspect::{self, AuthRequest, ErrorFields, Target, TxStatus};
use wire::startup::{
    StartupError, CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, MAX_STARTUP_PACKET, PROTOCOL_3_0,
    SSL_REQUEST_CODE,
};
use wire::{decode_frame, decode_startup, FrameError, SqlState, StartupPacket};

const MAX: usize = 1 << 20;

/// tag + length word (counting itself) + body.
fn typed(tag: u8, body: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_u8(tag);
    b.put_i32(body.len() as i32 + 4);
    b.put_slice(body);
    b
}

/// A typed header with an arbitrary length word and no body.
fn header(tag: u8, length: i32) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_u8(tag);
    b.put_i32(length);
    b
}

/// An untyped startup packet: length word, request code, body.
fn untyped(code: i32, body: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_i32(body.len() as i32 + 8);
    b.put_i32(code);
    b.put_slice(body);
    b
}

// ---------------------------------------------------------------- frames

#[test]
fn empty_and_short_buffers_are_incomplete() {
    for n in 0..5 {
        let mut buf = BytesMut::from(&b"Q\0\0\0\x05"[..n]);
        assert_eq!(decode_frame(&mut buf, MAX), Ok(None), "{n} header bytes");
        assert_eq!(buf.len(), n, "an incomplete header is not consumed");
    }
}

#[test]
fn empty_body_frame() {
    let mut buf = typed(b'S', b"");
    let f = decode_frame(&mut buf, MAX).unwrap().unwrap();
    assert_eq!(f.tag(), b'S');
    assert!(f.body().is_empty());
    assert_eq!(f.len(), 5);
    assert!(!f.is_empty());
    assert!(buf.is_empty());
}

#[test]
fn query_frame_and_trailing_bytes_stay() {
    let mut buf = typed(b'Q', b"SELECT 1\0");
    buf.put_slice(b"X\0\0");
    let f = decode_frame(&mut buf, MAX).unwrap().unwrap();
    assert_eq!(f.tag(), b'Q');
    assert_eq!(f.body(), b"SELECT 1\0");
    assert_eq!(&f.body_bytes()[..], b"SELECT 1\0");
    assert_eq!(&f.raw()[..5], b"Q\0\0\0\x0d");
    assert_eq!(&buf[..], b"X\0\0", "bytes of the next frame are left");
    assert_eq!(decode_frame(&mut buf, MAX), Ok(None));
}

#[test]
fn length_word_below_four_is_bad_length() {
    for length in [0, 1, 2, 3, -1, -4, i32::MIN] {
        let mut buf = header(b'Q', length);
        assert_eq!(
            decode_frame(&mut buf, MAX),
            Err(FrameError::BadLength {
                tag: 'Q',
                length: length as i64
            }),
            "length {length}"
        );
    }
}

#[test]
fn max_length_word_is_too_large() {
    let mut buf = header(b'D', 0x7fff_ffff);
    assert_eq!(
        decode_frame(&mut buf, MAX),
        Err(FrameError::TooLarge {
            tag: 'D',
            length: 0x7fff_ffff,
            max: MAX
        })
    );
}

#[test]
fn too_large_is_reported_from_the_header_alone_without_allocating() {
    let mut buf = header(b'D', 1 << 30);
    let cap = buf.capacity();
    assert!(matches!(
        decode_frame(&mut buf, MAX),
        Err(FrameError::TooLarge { .. })
    ));
    assert_eq!(buf.capacity(), cap, "no room reserved for a refused frame");
    assert!(buf.capacity() <= 64 * 1024);
}

#[test]
fn max_counts_the_tag_byte() {
    // A frame of exactly `max` wire bytes passes; one more is refused.
    let body = vec![7u8; 95];
    let mut buf = typed(b'd', &body);
    assert_eq!(buf.len(), 100);
    let f = decode_frame(&mut buf, 100).unwrap().unwrap();
    assert_eq!(f.len(), 100);

    let mut buf = typed(b'd', &[7u8; 96]);
    assert!(matches!(
        decode_frame(&mut buf, 100),
        Err(FrameError::TooLarge { length: 100, .. })
    ));
}

#[test]
fn incomplete_frame_reserves_room_for_its_rest() {
    let mut buf = header(b'd', 4 + 1000);
    assert_eq!(decode_frame(&mut buf, MAX), Ok(None));
    assert!(buf.capacity() >= 1005);
    assert_eq!(buf.len(), 5, "nothing consumed while incomplete");
}

#[test]
fn byte_by_byte_arrival() {
    let wire = typed(b'P', b"s1\0SELECT $1\0\0\x01\0\0\0\x17");
    let mut buf = BytesMut::new();
    for (i, &b) in wire.iter().enumerate() {
        buf.put_u8(b);
        let r = decode_frame(&mut buf, MAX).unwrap();
        if i + 1 < wire.len() {
            assert!(
                r.is_none(),
                "complete after {} of {} bytes",
                i + 1,
                wire.len()
            );
        } else {
            let f = r.unwrap();
            assert_eq!(f.raw(), &wire.clone().freeze());
        }
    }
    assert!(buf.is_empty());
}

#[test]
fn frame_error_messages() {
    let e = FrameError::TooLarge {
        tag: 'D',
        length: 10,
        max: 5,
    };
    assert!(e.to_string().contains("over the limit of 5"));
    let e = FrameError::BadLength {
        tag: 'Q',
        length: 2,
    };
    assert!(e.to_string().contains("invalid message length 2"));
}

#[test]
fn frame_debug_hides_the_body() {
    let f = build::password_message(b"hunter2");
    let s = format!("{f:?}");
    assert!(!s.contains("hunter2"), "{s}");
    assert!(s.contains("'p'"), "{s}");
}

// ---------------------------------------------------------------- startup

#[test]
fn startup_needs_the_whole_packet() {
    let full = build::startup_message(&[("user", "u"), ("database", "d")]);
    for n in 0..full.len() {
        let mut buf = BytesMut::from(&full[..n]);
        assert_eq!(decode_startup(&mut buf), Ok(None), "{n} bytes");
    }
    let mut buf = BytesMut::from(&full[..]);
    let p = decode_startup(&mut buf).unwrap().unwrap();
    assert_eq!(p.param("user"), Some("u"));
    assert_eq!(p.param("database"), Some("d"));
    assert_eq!(p.param("options"), None);
    assert!(buf.is_empty());
}

#[test]
fn ssl_request_decodes() {
    let mut buf = untyped(SSL_REQUEST_CODE, b"");
    assert_eq!(buf.len(), 8);
    assert_eq!(
        decode_startup(&mut buf),
        Ok(Some(StartupPacket::SslRequest))
    );
    assert!(buf.is_empty());
}

#[test]
fn gssenc_request_decodes() {
    let mut buf = untyped(GSSENC_REQUEST_CODE, b"");
    assert_eq!(
        decode_startup(&mut buf),
        Ok(Some(StartupPacket::GssEncRequest))
    );
}

#[test]
fn ssl_request_followed_by_startup_leaves_the_startup() {
    // A client may pipeline nothing after SSLRequest, but the decoder must
    // consume exactly its 8 bytes either way.
    let mut buf = untyped(SSL_REQUEST_CODE, b"");
    buf.put_slice(&build::startup_message(&[("user", "u")]));
    assert_eq!(
        decode_startup(&mut buf),
        Ok(Some(StartupPacket::SslRequest))
    );
    assert!(matches!(
        decode_startup(&mut buf),
        Ok(Some(StartupPacket::Startup { .. }))
    ));
    assert!(buf.is_empty());
}

#[test]
fn ssl_request_with_a_body_is_refused() {
    let mut buf = untyped(SSL_REQUEST_CODE, b"junk");
    assert_eq!(
        decode_startup(&mut buf),
        Err(StartupError::UnsupportedProtocol(SSL_REQUEST_CODE))
    );
}

#[test]
fn cancel_request_decodes() {
    let mut buf = BytesMut::from(&build::cancel_request(1234, -5678)[..]);
    assert_eq!(
        decode_startup(&mut buf),
        Ok(Some(StartupPacket::Cancel {
            pid: 1234,
            secret: -5678
        }))
    );
    assert!(buf.is_empty());
}

#[test]
fn short_cancel_request_is_malformed() {
    let mut buf = untyped(CANCEL_REQUEST_CODE, &[0, 0, 0, 1]);
    assert!(matches!(
        decode_startup(&mut buf),
        Err(StartupError::Malformed(_))
    ));
}

#[test]
fn unknown_request_code_is_unsupported_protocol() {
    for code in [0, 1, 2 << 16, 4 << 16, 1234 << 16 | 5677, -1, i32::MIN] {
        let mut buf = untyped(code, b"user\0u\0\0");
        assert_eq!(
            decode_startup(&mut buf),
            Err(StartupError::UnsupportedProtocol(code)),
            "code {code}"
        );
    }
    let e = StartupError::UnsupportedProtocol(2 << 16);
    assert_eq!(e.to_string(), "unsupported frontend protocol 2.0");
}

#[test]
fn protocol_3_minor_versions_decode() {
    let mut buf = untyped(PROTOCOL_3_0 | 2, b"user\0u\0\0");
    assert_eq!(
        decode_startup(&mut buf),
        Ok(Some(StartupPacket::Startup {
            major: 3,
            minor: 2,
            params: vec![("user".into(), "u".into())]
        }))
    );
}

#[test]
fn startup_length_above_the_postgres_limit_is_refused() {
    // From the length word alone, before the body arrives.
    let mut buf = BytesMut::new();
    buf.put_i32(MAX_STARTUP_PACKET as i32 + 1);
    buf.put_i32(PROTOCOL_3_0);
    let cap = buf.capacity();
    assert!(matches!(
        decode_startup(&mut buf),
        Err(StartupError::Frame(FrameError::TooLarge { .. }))
    ));
    assert_eq!(buf.capacity(), cap);

    // And with the whole oversized packet present.
    let long = "x".repeat(MAX_STARTUP_PACKET);
    let packet = build::startup_message(&[("user", "u"), ("options", &long)]);
    assert!(packet.len() > MAX_STARTUP_PACKET);
    let mut buf = BytesMut::from(&packet[..]);
    assert!(decode_startup(&mut buf).is_err());
}

#[test]
fn startup_of_exactly_the_limit_is_accepted() {
    // 8 header bytes + "user\0" + value + "\0" + final "\0".
    let value = "v".repeat(MAX_STARTUP_PACKET - 8 - 5 - 1 - 1);
    let packet = build::startup_message(&[("user", &value)]);
    assert_eq!(packet.len(), MAX_STARTUP_PACKET);
    let mut buf = BytesMut::from(&packet[..]);
    assert_eq!(
        decode_startup(&mut buf).unwrap().unwrap().param("user"),
        Some(&value[..])
    );
}

#[test]
fn startup_length_below_eight_is_bad_length() {
    for length in [0, 4, 7, -1, i32::MIN] {
        let mut buf = BytesMut::new();
        buf.put_i32(length);
        buf.put_i32(PROTOCOL_3_0);
        assert!(
            matches!(
                decode_startup(&mut buf),
                Err(StartupError::Frame(FrameError::BadLength { .. }))
            ),
            "length {length}"
        );
    }
}

#[test]
fn startup_params_missing_final_nul_are_malformed() {
    let mut buf = untyped(PROTOCOL_3_0, b"user\0u\0");
    assert!(matches!(
        decode_startup(&mut buf),
        Err(StartupError::Malformed(_))
    ));
}

#[test]
fn startup_param_without_value_is_malformed() {
    let mut buf = untyped(PROTOCOL_3_0, b"user\0u\0database\0");
    assert!(matches!(
        decode_startup(&mut buf),
        Err(StartupError::Malformed(_))
    ));
    let mut buf = untyped(PROTOCOL_3_0, b"user");
    assert!(matches!(
        decode_startup(&mut buf),
        Err(StartupError::Malformed(_))
    ));
}

#[test]
fn startup_with_empty_body_is_malformed() {
    let mut buf = untyped(PROTOCOL_3_0, b"");
    assert!(matches!(
        decode_startup(&mut buf),
        Err(StartupError::Malformed(_))
    ));
}

#[test]
fn startup_bytes_after_terminator_are_malformed() {
    let mut buf = untyped(PROTOCOL_3_0, b"user\0u\0\0extra");
    assert!(matches!(
        decode_startup(&mut buf),
        Err(StartupError::Malformed(_))
    ));
}

#[test]
fn startup_non_utf8_param_is_malformed() {
    let mut buf = untyped(PROTOCOL_3_0, b"user\0\xff\xfe\0\0");
    assert!(matches!(
        decode_startup(&mut buf),
        Err(StartupError::Malformed(_))
    ));
}

#[test]
fn startup_with_no_params() {
    let mut buf = BytesMut::from(&build::startup_message(&[])[..]);
    assert_eq!(
        decode_startup(&mut buf),
        Ok(Some(StartupPacket::Startup {
            major: 3,
            minor: 0,
            params: vec![]
        }))
    );
}

#[test]
fn param_on_non_startup_is_none() {
    assert_eq!(StartupPacket::SslRequest.param("user"), None);
}

// ---------------------------------------------------------------- inspect

#[test]
fn parse_view() {
    let f = build::parse(b"s1", b"SELECT $1", &[0, 1, 0, 0, 0, 23]);
    assert_eq!(f.tag(), b'P');
    let p = inspect::parse(f.body()).unwrap();
    assert_eq!(p.statement, b"s1");
    assert_eq!(p.query, b"SELECT $1");
    assert_eq!(p.param_types, &[0, 1, 0, 0, 0, 23]);
}

#[test]
fn parse_view_refuses_bad_type_sections() {
    // Missing count, negative count, count disagreeing with the OIDs.
    for types in [
        &[][..],
        &[0][..],
        &[0xff, 0xff][..],
        &[0, 1][..],
        &[0, 0, 0][..],
        &[0, 1, 0, 0, 0, 23, 0][..],
    ] {
        let f = build::parse(b"", b"SELECT 1", types);
        assert_eq!(inspect::parse(f.body()), None, "{types:?}");
    }
    assert_eq!(inspect::parse(b"s1"), None);
    assert_eq!(inspect::parse(b"s1\0SELECT"), None);
}

#[test]
fn bind_view() {
    let f = build::bind(b"", b"s1", b"\0\0\0\x01\0\0\0\x011\0\0");
    assert_eq!(f.tag(), b'B');
    let b = inspect::bind(f.body()).unwrap();
    assert_eq!(b.portal, b"");
    assert_eq!(b.statement, b"s1");
    assert_eq!(b.rest, b"\0\0\0\x01\0\0\0\x011\0\0");
    assert_eq!(inspect::bind(b"portal-only\0"), None);
}

#[test]
fn target_view() {
    let f = build::describe_statement(b"s1");
    assert_eq!(f.tag(), b'D');
    assert_eq!(inspect::target(f.body()), Some(Target::Statement(b"s1")));
    assert_eq!(inspect::target(b"Pcur\0"), Some(Target::Portal(b"cur")));
    assert_eq!(inspect::target(b"Xs1\0"), None);
    assert_eq!(inspect::target(b"Ss1"), None);
    assert_eq!(inspect::target(b"Ss1\0extra"), None);
    assert_eq!(inspect::target(b""), None);
}

#[test]
fn error_fields_view() {
    let f = build::error_response(
        Severity::Fatal,
        SqlState::TOO_MANY_CONNECTIONS,
        "no more connections allowed",
    );
    assert_eq!(f.tag(), b'E');
    assert_eq!(
        inspect::error_fields(f.body()),
        Some(ErrorFields {
            severity: "FATAL".into(),
            code: "53300".into(),
            message: "no more connections allowed".into(),
            body: f.body().to_vec(),
        })
    );
}

#[test]
fn error_fields_prefers_v_over_s() {
    // Servers send localized S first, then the untranslated V.
    let body = b"SFEHLER\0VERROR\0C42601\0Mboom\0\0";
    let e = inspect::error_fields(body).unwrap();
    assert_eq!(e.severity, "ERROR");
    // Old servers: only S.
    let e = inspect::error_fields(b"SERROR\0C42601\0Mboom\0\0").unwrap();
    assert_eq!(e.severity, "ERROR");
    // Unknown fields are skipped; a missing terminator is malformed.
    let e = inspect::error_fields(b"Dsome detail\0Mm\0\0").unwrap();
    assert_eq!(e.message, "m");
    assert_eq!(inspect::error_fields(b"Mm\0"), None);
    assert_eq!(inspect::error_fields(b"Mm"), None);
}

#[test]
fn notice_warning_view() {
    let f = build::notice_warning("careful");
    assert_eq!(f.tag(), b'N');
    let e = inspect::error_fields(f.body()).unwrap();
    assert_eq!(e.severity, "WARNING");
    assert_eq!(e.code, "01000");
    assert_eq!(e.message, "careful");
}

#[test]
fn parameter_status_view() {
    let f = build::parameter_status("TimeZone", "UTC");
    assert_eq!(f.tag(), b'S');
    assert_eq!(
        inspect::parameter_status(f.body()),
        Some(("TimeZone", "UTC"))
    );
    assert_eq!(inspect::parameter_status(b"TimeZone\0UTC"), None);
}

#[test]
fn backend_key_data_view() {
    let f = build::backend_key_data(42, i32::MIN);
    assert_eq!(f.tag(), b'K');
    assert_eq!(inspect::backend_key_data(f.body()), Some((42, i32::MIN)));
    assert_eq!(inspect::backend_key_data(&[0; 7]), None);
}

#[test]
fn ready_for_query_view() {
    for s in [TxStatus::Idle, TxStatus::InBlock, TxStatus::Failed] {
        let f = build::ready_for_query(s);
        assert_eq!(f.tag(), b'Z');
        assert_eq!(f.len(), 6);
        assert_eq!(inspect::ready_for_query(f.body()), Some(s));
    }
    assert_eq!(inspect::ready_for_query(b"X"), None);
    assert_eq!(inspect::ready_for_query(b""), None);
    assert_eq!(inspect::ready_for_query(b"II"), None);
}

#[test]
fn auth_request_views() {
    assert_eq!(
        inspect::auth_request(build::auth_ok().body()),
        Some(AuthRequest::Ok)
    );
    assert_eq!(
        inspect::auth_request(build::auth_cleartext().body()),
        Some(AuthRequest::CleartextPassword)
    );
    assert_eq!(
        inspect::auth_request(build::auth_md5([1, 2, 3, 4]).body()),
        Some(AuthRequest::Md5Password { salt: [1, 2, 3, 4] })
    );
    assert_eq!(
        inspect::auth_request(build::auth_sasl(&["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"]).body()),
        Some(AuthRequest::Sasl(vec![
            "SCRAM-SHA-256",
            "SCRAM-SHA-256-PLUS"
        ]))
    );
    assert_eq!(
        inspect::auth_request(build::auth_sasl_continue(b"r=abc,s=xyz,i=4096").body()),
        Some(AuthRequest::SaslContinue(b"r=abc,s=xyz,i=4096"))
    );
    assert_eq!(
        inspect::auth_request(build::auth_sasl_final(b"v=sig").body()),
        Some(AuthRequest::SaslFinal(b"v=sig"))
    );
    // GSS (7) and SSPI (9) are "other".
    assert_eq!(
        inspect::auth_request(&[0, 0, 0, 7]),
        Some(AuthRequest::Other(7))
    );
    // Truncated bodies.
    assert_eq!(inspect::auth_request(&[0, 0, 0]), None);
    assert_eq!(inspect::auth_request(&[0, 0, 0, 5, 1, 2, 3]), None);
    assert_eq!(inspect::auth_request(b"\0\0\0\x0aSCRAM-SHA-256\0"), None);
    for f in [
        build::auth_ok(),
        build::auth_md5([0; 4]),
        build::auth_cleartext(),
    ] {
        assert_eq!(f.tag(), b'R');
    }
}

#[test]
fn sasl_initial_response_view() {
    let f = build::sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=nonce");
    assert_eq!(f.tag(), b'p');
    assert_eq!(
        inspect::sasl_initial_response(f.body()),
        Some(("SCRAM-SHA-256", &b"n,,n=,r=nonce"[..]))
    );
    // Length -1: no initial response.
    assert_eq!(
        inspect::sasl_initial_response(b"SCRAM-SHA-256\0\xff\xff\xff\xff"),
        Some(("SCRAM-SHA-256", &b""[..]))
    );
    // Length longer than the data.
    assert_eq!(
        inspect::sasl_initial_response(b"SCRAM-SHA-256\0\0\0\0\x09abc"),
        None
    );
}

#[test]
fn password_view() {
    let f = build::password_message(b"md5abc");
    assert_eq!(f.tag(), b'p');
    assert_eq!(inspect::password(f.body()), Some(&b"md5abc"[..]));
    assert_eq!(inspect::password(b"no-terminator"), None);
}

#[test]
fn fixed_builders_have_their_tags_and_lengths() {
    for (f, tag) in [
        (build::parse_complete(), b'1'),
        (build::close_complete(), b'3'),
        (build::sync(), b'S'),
        (build::terminate(), b'X'),
    ] {
        assert_eq!(f.tag(), tag);
        assert_eq!(&f.raw()[..], &[tag, 0, 0, 0, 4]);
    }
    let q = build::query("SELECT 1");
    assert_eq!(&q.raw()[..], b"Q\0\0\0\x0dSELECT 1\0");
    let v = build::negotiate_protocol_version(0, &["_pq_.x"]);
    assert_eq!(v.tag(), b'v');
    assert_eq!(v.body(), b"\0\0\0\0\0\0\0\x01_pq_.x\0");
}

#[test]
fn built_frames_decode_as_themselves() {
    let frames = [
        build::query("SELECT 1"),
        build::sync(),
        build::error_response(Severity::Error, SqlState::PROTOCOL_VIOLATION, "bad"),
        build::ready_for_query(TxStatus::Idle),
    ];
    let mut buf = BytesMut::new();
    for f in &frames {
        buf.put_slice(f.raw());
    }
    for f in &frames {
        assert_eq!(decode_frame(&mut buf, MAX).unwrap().as_ref(), Some(f));
    }
    assert!(buf.is_empty());
}
