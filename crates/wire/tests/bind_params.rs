//! Tests of `wire::inspect::bind_params`: the parameter section of a Bind
//! message, built by hand and wrapped with `wire::build::bind`, decodes to the
//! formats and values it was built from; malformed sections give `None`;
//! arbitrary bytes never panic.

use proptest::collection::vec;
use proptest::prelude::*;
use wire::build;
use wire::inspect::{self, BindParams};

/// Encodes a Bind parameter section the way a client sends it.
fn encode(formats: &[i16], values: &[Option<&[u8]>], result_formats: &[i16]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(formats.len() as u16).to_be_bytes());
    for f in formats {
        b.extend_from_slice(&f.to_be_bytes());
    }
    b.extend_from_slice(&(values.len() as u16).to_be_bytes());
    for v in values {
        match v {
            Some(v) => {
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v);
            }
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    b.extend_from_slice(&(result_formats.len() as u16).to_be_bytes());
    for f in result_formats {
        b.extend_from_slice(&f.to_be_bytes());
    }
    b
}

/// Wraps `rest` in a Bind frame, takes it apart again and decodes the
/// parameter section.
fn round_trip(rest: &[u8]) -> Option<BindParams<'static>> {
    let frame = build::bind(b"portal", b"stmt", rest);
    let body: &'static [u8] = Box::leak(frame.body().to_vec().into_boxed_slice());
    let bind = inspect::bind(body).expect("names");
    assert_eq!(bind.portal, b"portal");
    assert_eq!(bind.statement, b"stmt");
    inspect::bind_params(bind.rest)
}

#[test]
fn text_values_round_trip() {
    let rest = encode(&[], &[Some(b"42"), Some(b"hello"), Some(b"")], &[]);
    let p = round_trip(&rest).unwrap();
    assert!(p.formats.is_empty());
    assert_eq!(
        p.values,
        vec![Some(&b"42"[..]), Some(&b"hello"[..]), Some(&b""[..])]
    );
    assert!(p.result_formats.is_empty());
    for i in 0..3 {
        assert_eq!(p.format_of(i), 0);
    }
    assert_eq!(p.result_format_of(0), 0);
}

#[test]
fn nulls_are_none() {
    let rest = encode(&[], &[None, Some(b"x"), None], &[]);
    let p = round_trip(&rest).unwrap();
    assert_eq!(p.values, vec![None, Some(&b"x"[..]), None]);
}

#[test]
fn empty_value_is_not_null() {
    let rest = encode(&[], &[Some(b"")], &[]);
    assert_eq!(round_trip(&rest).unwrap().values, vec![Some(&b""[..])]);
}

#[test]
fn zero_params() {
    let p = round_trip(&encode(&[], &[], &[])).unwrap();
    assert_eq!(
        p,
        BindParams {
            formats: vec![],
            values: vec![],
            result_formats: vec![],
        }
    );
    // The bytes of a Bind with no parameters and no result codes.
    assert_eq!(
        inspect::bind_params(b"\0\0\0\0\0\0").unwrap().values.len(),
        0
    );
    // One format code with zero parameters is accepted by Postgres too.
    let p = round_trip(&encode(&[1], &[], &[])).unwrap();
    assert_eq!(p.formats, vec![1]);
    assert!(p.values.is_empty());
}

#[test]
fn single_format_applies_to_all() {
    let rest = encode(&[1], &[Some(&[0, 0, 0, 7]), Some(&[0, 1])], &[1]);
    let p = round_trip(&rest).unwrap();
    assert_eq!(p.formats, vec![1]);
    assert_eq!(p.format_of(0), 1);
    assert_eq!(p.format_of(1), 1);
    assert_eq!(p.result_formats, vec![1]);
    assert_eq!(p.result_format_of(0), 1);
    assert_eq!(p.result_format_of(5), 1);
}

#[test]
fn one_format_per_param() {
    let rest = encode(&[0, 1, 0], &[Some(b"a"), Some(&[1]), None], &[1, 0, 1, 1]);
    let p = round_trip(&rest).unwrap();
    assert_eq!(p.formats, vec![0, 1, 0]);
    assert_eq!(
        (0..3).map(|i| p.format_of(i)).collect::<Vec<_>>(),
        vec![0, 1, 0]
    );
    assert_eq!(
        (0..4).map(|i| p.result_format_of(i)).collect::<Vec<_>>(),
        vec![1, 0, 1, 1]
    );
    // Past the codes: text.
    assert_eq!(p.format_of(3), 0);
    assert_eq!(p.result_format_of(4), 0);
}

#[test]
fn format_codes_are_kept_as_sent() {
    // Postgres rejects code 2 with an ordinary error when it binds, not as
    // a framing problem, so the decoder keeps it for the caller to judge.
    let p = round_trip(&encode(&[2], &[Some(b"x")], &[])).unwrap();
    assert_eq!(p.format_of(0), 2);
}

#[test]
fn binary_values_may_contain_anything() {
    let blob: Vec<u8> = (0..=255).collect();
    let rest = encode(&[1], &[Some(&blob), Some(&[0, 0, 0, 0])], &[]);
    let p = round_trip(&rest).unwrap();
    assert_eq!(p.values[0], Some(&blob[..]));
    assert_eq!(p.values[1], Some(&[0u8, 0, 0, 0][..]));
}

#[test]
fn counts_are_unsigned_like_the_server_reads_them() {
    // 40000 parameters: more than i16::MAX, still valid for Postgres.
    let values: Vec<Option<&[u8]>> = (0..40_000)
        .map(|i| if i % 2 == 0 { None } else { Some(&b"v"[..]) })
        .collect();
    let rest = encode(&[], &values, &[]);
    let p = inspect::bind_params(&rest).unwrap();
    assert_eq!(p.values.len(), 40_000);
    assert_eq!(p.values[1], Some(&b"v"[..]));
    assert_eq!(p.values[39_998], None);
}

#[test]
fn malformed_is_none() {
    let good = encode(&[0, 1], &[Some(b"ab"), None], &[1]);
    assert!(inspect::bind_params(&good).is_some());

    // Every strict prefix is truncated somewhere.
    for cut in 0..good.len() {
        assert_eq!(inspect::bind_params(&good[..cut]), None, "prefix {cut}");
    }
    // Trailing bytes.
    let mut long = good.clone();
    long.push(0);
    assert_eq!(inspect::bind_params(&long), None);

    // Format count neither 0, 1 nor the number of values.
    let two_for_three = encode(&[0, 1], &[None, None, None], &[]);
    assert_eq!(inspect::bind_params(&two_for_three), None);
    let two_for_none = encode(&[0, 1], &[], &[]);
    assert_eq!(inspect::bind_params(&two_for_none), None);

    // A negative length other than -1.
    let mut neg = Vec::new();
    neg.extend_from_slice(&[0, 0, 0, 1]);
    neg.extend_from_slice(&(-2i32).to_be_bytes());
    neg.extend_from_slice(&[0, 0]);
    assert_eq!(inspect::bind_params(&neg), None);
    let mut min = Vec::new();
    min.extend_from_slice(&[0, 0, 0, 1]);
    min.extend_from_slice(&i32::MIN.to_be_bytes());
    min.extend_from_slice(&[0, 0]);
    assert_eq!(inspect::bind_params(&min), None);

    // A length past the end.
    let mut past = Vec::new();
    past.extend_from_slice(&[0, 0, 0, 1]);
    past.extend_from_slice(&5i32.to_be_bytes());
    past.extend_from_slice(b"abc");
    past.extend_from_slice(&[0, 0]);
    assert_eq!(inspect::bind_params(&past), None);
    let mut huge = Vec::new();
    huge.extend_from_slice(&[0, 0, 0, 1]);
    huge.extend_from_slice(&i32::MAX.to_be_bytes());
    huge.extend_from_slice(&[0, 0]);
    assert_eq!(inspect::bind_params(&huge), None);

    // Counts promising more than the body holds.
    assert_eq!(inspect::bind_params(&[0xff, 0xff]), None);
    assert_eq!(inspect::bind_params(&[0, 0, 0xff, 0xff, 0, 0]), None);
    assert_eq!(inspect::bind_params(&[0, 0, 0, 0, 0, 3, 0, 1]), None);

    // Empty input: not even the format count.
    assert_eq!(inspect::bind_params(&[]), None);
}

/// A value: NULL or up to 64 arbitrary bytes.
fn value() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::of(vec(any::<u8>(), 0..64))
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(rest in vec(any::<u8>(), 0..512)) {
        if let Some(p) = inspect::bind_params(&rest) {
            // Whatever decoded must be consistent with the rules.
            prop_assert!(p.formats.len() <= 1 || p.formats.len() == p.values.len());
            for i in 0..p.values.len() + 2 {
                let _ = p.format_of(i);
                let _ = p.result_format_of(i);
            }
        }
    }

    #[test]
    fn small_arbitrary_bytes_never_panic(rest in vec(0u8..4, 0..24)) {
        let _ = inspect::bind_params(&rest);
    }

    #[test]
    fn well_formed_round_trips(
        values in vec(value(), 0..12),
        format_mode in 0usize..3,
        codes in vec(0i16..=1, 12),
        result_formats in vec(0i16..=1, 0..6),
    ) {
        let formats: Vec<i16> = match format_mode {
            0 => vec![],
            1 => vec![codes[0]],
            _ => codes[..values.len()].to_vec(),
        };
        let borrowed: Vec<Option<&[u8]>> = values.iter().map(|v| v.as_deref()).collect();
        let rest = encode(&formats, &borrowed, &result_formats);
        let p = round_trip(&rest).expect("well-formed");
        prop_assert_eq!(&p.formats, &formats);
        prop_assert_eq!(&p.values, &borrowed);
        prop_assert_eq!(&p.result_formats, &result_formats);
        for i in 0..values.len() {
            let want = match format_mode {
                0 => 0,
                1 => codes[0],
                _ => codes[i],
            };
            prop_assert_eq!(p.format_of(i), want);
        }
        // Any trailing byte makes it malformed.
        let mut long = rest.clone();
        long.push(0);
        prop_assert_eq!(inspect::bind_params(&long), None);
    }
}
