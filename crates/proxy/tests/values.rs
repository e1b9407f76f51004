//! Tests of `proxy::coalesce::values`: parameter values to their text form,
//! and `text[]` array literals.
//!
//! The unit tests pin the expected strings; `matches_postgres` checks the
//! same functions against a real server: binary values decode to what the
//! type's output function prints (and are rejected where the server rejects
//! them), and array literals read back into exactly their elements.

use std::error::Error;

use bytes::BytesMut;
use proxy::coalesce::values::{
    float4_text, float8_text, oid, param_text, text_array_literal, Unsupported,
};
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::{Client, NoTls};

fn text(v: &[u8]) -> Result<Option<String>, Unsupported> {
    param_text(0, Some(v), oid::UNSPECIFIED)
}

fn bin(v: &[u8], type_oid: u32) -> Result<Option<String>, Unsupported> {
    param_text(1, Some(v), type_oid)
}

fn ok(s: &str) -> Result<Option<String>, Unsupported> {
    Ok(Some(s.to_owned()))
}

const MALFORMED_LEN: Unsupported = Unsupported::Malformed("wrong length for binary value");

// ------------------------------------------------------------ text format

#[test]
fn text_format_is_returned_as_is() {
    assert_eq!(text(b"42"), ok("42"));
    assert_eq!(text(b""), ok(""));
    assert_eq!(text(b"  spaced  "), ok("  spaced  "));
    assert_eq!(text("héllo ✓ 🎉".as_bytes()), ok("héllo ✓ 🎉"));
    assert_eq!(text(br#"{"a": [1, 2]}"#), ok(r#"{"a": [1, 2]}"#));
    // The type does not matter for text format.
    for t in [oid::INT8, oid::BOOL, oid::JSONB, oid::TIMESTAMPTZ, 999_999] {
        assert_eq!(param_text(0, Some(b"true"), t), ok("true"));
    }
}

#[test]
fn null_stays_null() {
    for (format, t) in [
        (0, oid::UNSPECIFIED),
        (0, oid::INT4),
        (1, oid::INT4),
        (1, oid::TIMESTAMPTZ),
        (1, oid::UNSPECIFIED),
    ] {
        assert_eq!(param_text(format, None, t), Ok(None));
    }
}

#[test]
fn invalid_utf8_text() {
    assert_eq!(text(b"\xff"), Err(Unsupported::InvalidUtf8));
    assert_eq!(text(b"ab\xc3"), Err(Unsupported::InvalidUtf8));
    assert_eq!(text(b"\xed\xa0\x80"), Err(Unsupported::InvalidUtf8)); // surrogate
    assert_eq!(text(b"a\0b"), Err(Unsupported::InvalidUtf8));
    for t in [oid::TEXT, oid::VARCHAR, oid::BPCHAR, oid::NAME, oid::JSON] {
        assert_eq!(bin(b"\xc3\x28", t), Err(Unsupported::InvalidUtf8), "{t}");
        assert_eq!(bin(b"x\0", t), Err(Unsupported::InvalidUtf8), "{t}");
    }
    assert_eq!(
        bin(b"\x01\"\xff\"", oid::JSONB),
        Err(Unsupported::InvalidUtf8)
    );
}

#[test]
fn unknown_format_code() {
    assert!(matches!(
        param_text(2, Some(b"1"), oid::INT4),
        Err(Unsupported::Malformed(_))
    ));
    assert!(matches!(
        param_text(-1, Some(b"1"), oid::TEXT),
        Err(Unsupported::Malformed(_))
    ));
    // Postgres rejects the code even for a NULL.
    assert!(matches!(
        param_text(2, None, oid::TEXT),
        Err(Unsupported::Malformed(_))
    ));
}

// ---------------------------------------------------------- binary format

#[test]
fn binary_text_types() {
    for t in [oid::TEXT, oid::VARCHAR, oid::BPCHAR, oid::NAME, oid::JSON] {
        assert_eq!(bin(b"", t), ok(""));
        assert_eq!(bin("a\"b\\c é".as_bytes(), t), ok("a\"b\\c é"));
    }
    assert_eq!(bin(b"pad  ", oid::BPCHAR), ok("pad  "));
    assert_eq!(
        bin(br#"{"b":1,  "a":2}"#, oid::JSON),
        ok(r#"{"b":1,  "a":2}"#)
    );
    // name: at most 63 bytes, as namerecv insists.
    let n63 = "n".repeat(63);
    assert_eq!(bin(n63.as_bytes(), oid::NAME), ok(&n63));
    assert!(matches!(
        bin("n".repeat(64).as_bytes(), oid::NAME),
        Err(Unsupported::Malformed(_))
    ));
    // ...but text has no such limit.
    let long = "t".repeat(10_000);
    assert_eq!(bin(long.as_bytes(), oid::TEXT), ok(&long));
}

#[test]
fn binary_jsonb() {
    assert_eq!(bin(b"\x01{\"a\": 1}", oid::JSONB), ok("{\"a\": 1}"));
    assert_eq!(bin(b"\x01[]", oid::JSONB), ok("[]"));
    assert_eq!(bin(b"\x01", oid::JSONB), ok(""));
    assert!(matches!(
        bin(b"\x02{}", oid::JSONB),
        Err(Unsupported::Malformed(_))
    ));
    assert!(matches!(
        bin(b"{}", oid::JSONB),
        Err(Unsupported::Malformed(_))
    ));
    assert!(matches!(
        bin(b"", oid::JSONB),
        Err(Unsupported::Malformed(_))
    ));
}

#[test]
fn binary_integers() {
    for v in [0i16, 1, -1, 42, i16::MIN, i16::MAX] {
        assert_eq!(bin(&v.to_be_bytes(), oid::INT2), ok(&v.to_string()));
    }
    for v in [0i32, 7, -7, 1_000_000, i32::MIN, i32::MAX] {
        assert_eq!(bin(&v.to_be_bytes(), oid::INT4), ok(&v.to_string()));
    }
    for v in [0i64, -1, 1 << 40, i64::MIN, i64::MAX] {
        assert_eq!(bin(&v.to_be_bytes(), oid::INT8), ok(&v.to_string()));
    }
    assert_eq!(
        bin(&i64::MIN.to_be_bytes(), oid::INT8),
        ok("-9223372036854775808")
    );
    assert_eq!(bin(&[0xff, 0xfe], oid::INT2), ok("-2"));
    // oid is unsigned.
    assert_eq!(bin(&u32::MAX.to_be_bytes(), oid::OID), ok("4294967295"));
    assert_eq!(bin(&26u32.to_be_bytes(), oid::OID), ok("26"));
    // Wrong lengths.
    assert_eq!(bin(&[0; 4], oid::INT2), Err(MALFORMED_LEN));
    assert_eq!(bin(&[0; 2], oid::INT4), Err(MALFORMED_LEN));
    assert_eq!(bin(&[0; 4], oid::INT8), Err(MALFORMED_LEN));
    assert_eq!(bin(&[0; 9], oid::INT8), Err(MALFORMED_LEN));
    assert_eq!(bin(&[0; 8], oid::OID), Err(MALFORMED_LEN));
    assert_eq!(bin(&[], oid::INT4), Err(MALFORMED_LEN));
}

#[test]
fn binary_bool() {
    assert_eq!(bin(&[1], oid::BOOL), ok("t"));
    assert_eq!(bin(&[0], oid::BOOL), ok("f"));
    assert_eq!(bin(&[2], oid::BOOL), ok("t"));
    assert_eq!(bin(&[], oid::BOOL), Err(MALFORMED_LEN));
    assert_eq!(bin(&[1, 0], oid::BOOL), Err(MALFORMED_LEN));
}

#[test]
fn binary_uuid() {
    let b: [u8; 16] = [
        0xA0, 0xEE, 0xBC, 0x99, 0x9C, 0x0B, 0x4E, 0xF8, 0xBB, 0x6D, 0x6B, 0xB9, 0xBD, 0x38, 0x0A,
        0x11,
    ];
    assert_eq!(
        bin(&b, oid::UUID),
        ok("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    );
    assert_eq!(
        bin(&[0; 16], oid::UUID),
        ok("00000000-0000-0000-0000-000000000000")
    );
    assert_eq!(
        bin(&[0xff; 16], oid::UUID),
        ok("ffffffff-ffff-ffff-ffff-ffffffffffff")
    );
    assert_eq!(bin(&[0; 15], oid::UUID), Err(MALFORMED_LEN));
    assert_eq!(bin(&[0; 17], oid::UUID), Err(MALFORMED_LEN));
}

#[test]
fn binary_bytea() {
    assert_eq!(bin(b"", oid::BYTEA), ok("\\x"));
    assert_eq!(bin(b"\x00\x01\xab\xff", oid::BYTEA), ok("\\x0001abff"));
    assert_eq!(bin(b"AZ", oid::BYTEA), ok("\\x415a"));
    // Any bytes at all, including invalid UTF-8 and NUL.
    let all: Vec<u8> = (0..=255).collect();
    let want: String = std::iter::once("\\x".to_owned())
        .chain(all.iter().map(|b| format!("{b:02x}")))
        .collect();
    assert_eq!(bin(&all, oid::BYTEA), Ok(Some(want)));
}

#[test]
fn binary_types_not_decoded() {
    for t in [
        oid::TIMESTAMPTZ,
        oid::TIMESTAMP,
        oid::DATE,
        oid::NUMERIC,
        oid::UNSPECIFIED,
        // Declared unknown means "infer": the bytes may be any type's.
        oid::UNKNOWN,
        1186, // interval
        869,  // inet
        1007, // int4[]
        999_999,
    ] {
        assert_eq!(bin(&[0; 8], t), Err(Unsupported::BinaryType(t)), "{t}");
    }
}

#[test]
fn binary_floats() {
    let f8 = |v: f64| bin(&v.to_be_bytes(), oid::FLOAT8);
    let f4 = |v: f32| bin(&v.to_be_bytes(), oid::FLOAT4);
    assert_eq!(f8(1.5), ok("1.5"));
    assert_eq!(f8(-0.1), ok("-0.1"));
    assert_eq!(f4(0.1), ok("0.1"));
    assert_eq!(f4(f32::NAN), ok("NaN"));
    assert_eq!(f8(f64::NEG_INFINITY), ok("-Infinity"));
    assert_eq!(bin(&[0; 4], oid::FLOAT8), Err(MALFORMED_LEN));
    assert_eq!(bin(&[0; 8], oid::FLOAT4), Err(MALFORMED_LEN));
}

#[test]
fn float8_layout() {
    let cases: &[(f64, &str)] = &[
        (0.0, "0"),
        (-0.0, "-0"),
        (f64::NAN, "NaN"),
        (-f64::NAN, "NaN"),
        (f64::INFINITY, "Infinity"),
        (f64::NEG_INFINITY, "-Infinity"),
        (1.0, "1"),
        (-1.0, "-1"),
        (0.1, "0.1"),
        (1.0 / 3.0, "0.3333333333333333"),
        (100.0, "100"),
        (123.456, "123.456"),
        (0.0001, "0.0001"),
        (0.00012, "0.00012"),
        (0.00001, "1e-05"),
        (0.000012, "1.2e-05"),
        (1e14, "100000000000000"),
        (123456789012345.6, "123456789012345.6"),
        (999999999999999.0, "999999999999999"),
        (1e15, "1e+15"),
        (1234567890123456.0, "1.234567890123456e+15"),
        (9007199254740991.0, "9.007199254740991e+15"),
        (1e20, "1e+20"),
        (-2.5e100, "-2.5e+100"),
        (1e-100, "1e-100"),
        (f64::MAX, "1.7976931348623157e+308"),
        (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
        (5e-324, "5e-324"),
        // Where Postgres (Ryu without STRICTLY_SHORTEST) differs from Rust's
        // shortest formatting: interval ends excluded...
        (1e23, "9.999999999999999e+22"),
        (
            f64::from_bits(0xc3565396ce8090f4),
            "-2.5137426649465808e+16",
        ),
        // ...and exact ties rounded to even.
        (f64::from_bits(0x4313d27da8ac08c1), "1.3948654250235362e+15"),
        (f64::from_bits(0xc2e30d42752c9404), "-167581363823776.12"),
    ];
    for &(v, want) in cases {
        assert_eq!(float8_text(v), want, "{v:e}");
    }
}

#[test]
fn float4_layout() {
    let cases: &[(f32, &str)] = &[
        (0.0, "0"),
        (-0.0, "-0"),
        (f32::NAN, "NaN"),
        (f32::INFINITY, "Infinity"),
        (f32::NEG_INFINITY, "-Infinity"),
        (0.1, "0.1"),
        (1.5, "1.5"),
        (100000.0, "100000"),
        (123456.0, "123456"),
        (999999.0, "999999"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-3.25e-7, "-3.25e-07"),
        (f32::MAX, "3.4028235e+38"),
        (f32::MIN_POSITIVE, "1.1754944e-38"),
        (1e-45, "1e-45"),
    ];
    for &(v, want) in cases {
        assert_eq!(float4_text(v), want, "{v:e}");
    }
}

// ---------------------------------------------------------- array literals

#[test]
fn array_literal_basics() {
    assert_eq!(text_array_literal([]), "{}");
    assert_eq!(text_array_literal([Some("a")]), r#"{"a"}"#);
    assert_eq!(
        text_array_literal([Some("a"), Some("b"), None]),
        r#"{"a","b",NULL}"#
    );
    assert_eq!(text_array_literal([None]), "{NULL}");
    assert_eq!(text_array_literal([Some("")]), r#"{""}"#);
    assert_eq!(text_array_literal([Some(""), Some("")]), r#"{"",""}"#);
}

#[test]
fn array_literal_escaping() {
    assert_eq!(
        text_array_literal([Some("say \"hi\"")]),
        r#"{"say \"hi\""}"#
    );
    assert_eq!(text_array_literal([Some(r"C:\dir\")]), r#"{"C:\\dir\\"}"#);
    assert_eq!(text_array_literal([Some(r#"\""#)]), r#"{"\\\""}"#);
    // Commas, braces, blanks and the word NULL stay inside the quotes.
    assert_eq!(
        text_array_literal([Some("a,b"), Some("{x}"), Some(" sp "), Some("NULL")]),
        r#"{"a,b","{x}"," sp ","NULL"}"#
    );
    assert_eq!(text_array_literal([Some("it's")]), r#"{"it's"}"#);
    assert_eq!(
        text_array_literal([Some("é漢字🎉"), Some("line\nbreak\ttab")]),
        "{\"é漢字🎉\",\"line\nbreak\ttab\"}"
    );
}

#[test]
fn array_literal_of_owned_strings() {
    let rows: Vec<Option<String>> = vec![Some("1".into()), None, Some("x\"y".into())];
    assert_eq!(
        text_array_literal(rows.iter().map(|r| r.as_deref())),
        r#"{"1",NULL,"x\"y"}"#
    );
}

// ------------------------------------------------------- against Postgres

/// A parameter sent as exactly these bytes, in binary format, whatever
/// type the statement declares: the server decodes what `param_text` decodes.
#[derive(Debug)]
struct Raw(Vec<u8>);

impl ToSql for Raw {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.extend_from_slice(&self.0);
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// xorshift64*: deterministic pseudo-random numbers without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the server's output function prints for `bytes` received in binary
/// format as type `ty`, or `None` if the server rejects them.
async fn server_text(client: &Client, ty: Type, bytes: &[u8]) -> Option<String> {
    // format('%s', x) calls x's type output function (a cast to text would
    // strip bpchar's trailing blanks).
    let stmt = client
        .prepare_typed("SELECT format('%s', $1)", &[ty])
        .await
        .expect("prepare");
    match client.query_one(&stmt, &[&Raw(bytes.to_vec())]).await {
        Ok(row) => Some(row.get(0)),
        Err(_) => None,
    }
}

/// Checks `param_text` against the server for binary values of one type:
/// accepted values print the same, and exactly the values `param_text` calls
/// malformed (or not UTF-8) are the ones the server rejects.
async fn check_binary(client: &Client, ty: Type, type_oid: u32, values: &[Vec<u8>]) {
    for v in values {
        let ours = param_text(1, Some(v), type_oid);
        let theirs = server_text(client, ty.clone(), v).await;
        match (&ours, &theirs) {
            (Ok(Some(a)), Some(b)) => assert_eq!(a, b, "{ty} {v:02x?}"),
            (Err(Unsupported::Malformed(_) | Unsupported::InvalidUtf8), None) => {}
            _ => panic!("{ty} {v:02x?}: ours {ours:?}, server {theirs:?}"),
        }
    }
}

/// Reads a literal back through `text[]` on the server, element by element.
async fn read_back(client: &Client, literal: &str) -> Vec<Option<String>> {
    let rows = client
        .query(
            "SELECT x FROM unnest(($1::text)::text[]) WITH ORDINALITY AS u(x, i) ORDER BY i",
            &[&literal],
        )
        .await
        .unwrap_or_else(|e| panic!("{literal:?}: {e}"));
    rows.iter().map(|r| r.get(0)).collect()
}

async fn check_literal(client: &Client, values: &[Option<&str>]) {
    let literal = text_array_literal(values.iter().copied());
    let back = read_back(client, &literal).await;
    let want: Vec<Option<String>> = values.iter().map(|v| v.map(str::to_owned)).collect();
    assert_eq!(back, want, "literal {literal:?}");
}

/// Floats whose shortest digits are short as well as long ones: random bit
/// patterns, random decimals, and the edges.
fn float8_samples(rng: &mut Rng) -> Vec<f64> {
    let mut v = vec![
        0.0,
        -0.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        f64::EPSILON,
        5e-324,
        1e15,
        1e14,
        999999999999999.9,
        9007199254740991.0,
        9007199254740992.0,
        0.0001,
        0.00009999999999999999,
        1e-5,
        0.1 + 0.2,
        1e23,
        f64::from_bits(0xc3565396ce8090f4),
        f64::from_bits(0x4313d27da8ac08c1),
    ];
    // Powers of two (a narrower interval below) and their neighbours.
    for e in -1074..=1023 {
        let p = 2f64.powi(e);
        v.extend([p, -p, f64::from_bits(p.to_bits() + 1)]);
        if p.to_bits() > 1 {
            v.push(f64::from_bits(p.to_bits() - 1));
        }
    }
    for e in -330..=310 {
        v.push(format!("1e{e}").parse().unwrap());
        v.push(format!("-4.7e{e}").parse().unwrap());
    }
    for _ in 0..20_000 {
        v.push(f64::from_bits(rng.next()));
    }
    for _ in 0..20_000 {
        let len = 1 + rng.below(17) as u32;
        let digits = rng.below(10u64.pow(len));
        let exp = rng.below(50) as i32 - 25;
        v.push(format!("{digits}e{exp}").parse().unwrap());
    }
    for _ in 0..5_000 {
        v.push(rng.below(1 << 53) as f64);
    }
    v
}

fn float4_samples(rng: &mut Rng) -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        f32::MIN,
        f32::MIN_POSITIVE,
        f32::EPSILON,
        1e-45,
        1e6,
        999999.0,
        999999.94,
        16777215.0,
        0.0001,
        1e-5,
    ];
    for e in -149..=127 {
        let p = 2f32.powi(e);
        v.extend([p, -p, f32::from_bits(p.to_bits() + 1)]);
        if p.to_bits() > 1 {
            v.push(f32::from_bits(p.to_bits() - 1));
        }
    }
    for e in -46..=39 {
        v.push(format!("1e{e}").parse().unwrap());
        v.push(format!("-3.3e{e}").parse().unwrap());
    }
    for _ in 0..20_000 {
        v.push(f32::from_bits(rng.next() as u32));
    }
    for _ in 0..20_000 {
        let len = 1 + rng.below(9) as u32;
        let digits = rng.below(10u64.pow(len));
        let exp = rng.below(30) as i32 - 15;
        v.push(format!("{digits}e{exp}").parse().unwrap());
    }
    v
}

#[tokio::test]
async fn matches_postgres() {
    let pg = tokio::task::spawn_blocking(|| {
        pgtest::Cluster::start(&pgtest::ClusterOptions::default()).expect("start postgres")
    })
    .await
    .expect("start thread");
    let (client, conn) = tokio_postgres::connect(&pg.superuser_url("postgres"), NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    // The default, stated: shortest round-trip float output.
    client
        .batch_execute("SET extra_float_digits = 1; SET bytea_output = hex")
        .await
        .unwrap();

    // --- array literals read back into exactly their elements.
    check_literal(&client, &[]).await;
    check_literal(&client, &[None]).await;
    check_literal(&client, &[Some("")]).await;
    check_literal(&client, &[Some(""), None, Some("")]).await;
    let tricky: &[Option<&str>] = &[
        Some("plain"),
        None,
        Some(""),
        Some(" "),
        Some("  lead"),
        Some("trail  "),
        Some("a,b"),
        Some("{"),
        Some("}"),
        Some("{x,y}"),
        Some(","),
        Some("\""),
        Some("\\"),
        Some("\\\""),
        Some("\"\\"),
        Some("a\"b\\c"),
        Some("NULL"),
        Some("null"),
        Some("'quoted'"),
        Some("é漢字🎉"),
        Some("line\nbreak\r\n"),
        Some("tab\there"),
        Some("\\x00"),
        Some("[1:2]={a,b}"),
        Some("{\"a\": [1, \"b\"]}"),
    ];
    check_literal(&client, tricky).await;
    let long = "x\"\\,{} ".repeat(2_000);
    check_literal(&client, &[Some(&long), None]).await;
    // Random strings over the characters that matter to array syntax.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let alphabet: Vec<char> = "ab \t\n\",\\{}NUL'é🎉[]:=".chars().collect();
    for _ in 0..200 {
        let n = rng.below(6) as usize;
        let owned: Vec<Option<String>> = (0..n)
            .map(|_| {
                (rng.below(5) != 0).then(|| {
                    let len = rng.below(8);
                    (0..len)
                        .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                        .collect()
                })
            })
            .collect();
        let values: Vec<Option<&str>> = owned.iter().map(|v| v.as_deref()).collect();
        check_literal(&client, &values).await;
    }

    // --- binary values print as the output functions print them.
    let mut ints2: Vec<Vec<u8>> = [0i16, 1, -1, 300, i16::MIN, i16::MAX]
        .iter()
        .map(|v| v.to_be_bytes().to_vec())
        .collect();
    ints2.extend([vec![], vec![1], vec![0, 0, 0, 1]]);
    check_binary(&client, Type::INT2, oid::INT2, &ints2).await;

    let mut ints4: Vec<Vec<u8>> = [0i32, 42, -42, i32::MIN, i32::MAX]
        .iter()
        .map(|v| v.to_be_bytes().to_vec())
        .collect();
    ints4.extend([vec![0, 1], vec![0; 8]]);
    check_binary(&client, Type::INT4, oid::INT4, &ints4).await;

    let mut ints8: Vec<Vec<u8>> = [0i64, 1, -1, 1 << 53, i64::MIN, i64::MAX]
        .iter()
        .map(|v| v.to_be_bytes().to_vec())
        .collect();
    ints8.extend([vec![0; 4], vec![0; 9]]);
    check_binary(&client, Type::INT8, oid::INT8, &ints8).await;

    let mut oids: Vec<Vec<u8>> = [0u32, 26, 2_147_483_648, u32::MAX]
        .iter()
        .map(|v| v.to_be_bytes().to_vec())
        .collect();
    oids.push(vec![0; 8]);
    check_binary(&client, Type::OID, oid::OID, &oids).await;

    let bools = vec![vec![0], vec![1], vec![2], vec![255], vec![], vec![1, 1]];
    check_binary(&client, Type::BOOL, oid::BOOL, &bools).await;

    let uuids = vec![
        vec![0; 16],
        vec![0xff; 16],
        (0..16).map(|i| i * 17).collect(),
        uuid::Uuid::parse_str("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11")
            .unwrap()
            .as_bytes()
            .to_vec(),
        vec![0; 15],
        vec![0; 17],
    ];
    check_binary(&client, Type::UUID, oid::UUID, &uuids).await;

    let byteas = vec![
        vec![],
        vec![0],
        b"hello".to_vec(),
        (0..=255).collect(),
        vec![0xff, 0xfe, 0x00, 0x5c],
    ];
    check_binary(&client, Type::BYTEA, oid::BYTEA, &byteas).await;

    let texts: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"plain".to_vec(),
        b"pad   ".to_vec(),
        "é漢字🎉 \"q\" \\".as_bytes().to_vec(),
        b"\xff\xfe".to_vec(),
        b"nul\0inside".to_vec(),
        b"\xed\xa0\x80".to_vec(),
    ];
    for (ty, type_oid) in [
        (Type::TEXT, oid::TEXT),
        (Type::VARCHAR, oid::VARCHAR),
        (Type::BPCHAR, oid::BPCHAR),
        (Type::NAME, oid::NAME),
    ] {
        check_binary(&client, ty, type_oid, &texts).await;
    }
    let names = vec![
        "n".repeat(63).into_bytes(),
        "n".repeat(64).into_bytes(),
        "é".repeat(31).into_bytes(),
        "é".repeat(32).into_bytes(),
    ];
    check_binary(&client, Type::NAME, oid::NAME, &names).await;

    let jsons: Vec<Vec<u8>> = vec![
        br#"{"b": 1,   "a": [true, null]}"#.to_vec(),
        br#"  "str"  "#.to_vec(),
        b"1e400".to_vec(),
        br#"{"a":1,"a":2}"#.to_vec(),
        b"\xff".to_vec(),
    ];
    check_binary(&client, Type::JSON, oid::JSON, &jsons).await;

    // A parameter declared unknown takes the type the statement infers, and
    // its binary bytes are that type's: here int4 42, not the text "\0\0\0*".
    let stmt = client
        .prepare_typed("SELECT format('%s', $1 + 1)", &[Type::UNKNOWN])
        .await
        .unwrap();
    assert_eq!(stmt.params(), &[Type::INT4]);
    let row = client
        .query_one(&stmt, &[&Raw(42i32.to_be_bytes().to_vec())])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "43");
    assert_eq!(
        param_text(1, Some(&42i32.to_be_bytes()), oid::UNKNOWN),
        Err(Unsupported::BinaryType(oid::UNKNOWN))
    );

    // jsonb: the output function respaces and reorders, so compare values:
    // our text cast back equals what the server decoded from the bytes.
    let eq = client
        .prepare_typed("SELECT $1 = $2::jsonb", &[Type::JSONB, Type::TEXT])
        .await
        .unwrap();
    let jsonbs: Vec<Vec<u8>> = vec![
        b"\x01{\"b\": 1,   \"a\": [true, null, 1.50]}".to_vec(),
        b"\x01\"str\"".to_vec(),
        b"\x01{\"a\":1,\"a\":2}".to_vec(),
        b"\x01[1, \"\\u00e9\", {\"k\": {}}]".to_vec(),
        [
            &[1u8][..],
            serde_json::json!({"x": "y\"z", "n": -0.5})
                .to_string()
                .as_bytes(),
        ]
        .concat(),
    ];
    for v in &jsonbs {
        let ours = param_text(1, Some(v), oid::JSONB).unwrap().unwrap();
        let row = client.query_one(&eq, &[&Raw(v.clone()), &ours]).await;
        assert!(row.expect("jsonb accepted").get::<_, bool>(0), "{ours}");
    }
    for bad in [b"\x02{}".to_vec(), b"{}".to_vec(), vec![]] {
        assert!(param_text(1, Some(&bad), oid::JSONB).is_err());
        assert!(server_text(&client, Type::JSONB, &bad).await.is_none());
    }

    // --- floats: many values per round trip, through binary arrays (whose
    // elements are float8send's bytes, the same as to_be_bytes).
    let f8 = float8_samples(&mut rng);
    let rows = client
        .query(
            "SELECT format('%s', x) FROM unnest($1::float8[]) WITH ORDINALITY AS u(x, i) ORDER BY i",
            &[&f8],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), f8.len());
    let mut wrong = Vec::new();
    for (v, row) in f8.iter().zip(&rows) {
        let server: String = row.get(0);
        let ours = param_text(1, Some(&v.to_be_bytes()), oid::FLOAT8)
            .unwrap()
            .unwrap();
        if ours != server {
            wrong.push(format!("{:016x}: ours {ours} server {server}", v.to_bits()));
        }
    }
    assert!(wrong.is_empty(), "float8 mismatches:\n{}", wrong.join("\n"));

    let f4 = float4_samples(&mut rng);
    let rows = client
        .query(
            "SELECT format('%s', x) FROM unnest($1::float4[]) WITH ORDINALITY AS u(x, i) ORDER BY i",
            &[&f4],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), f4.len());
    let mut wrong = Vec::new();
    for (v, row) in f4.iter().zip(&rows) {
        let server: String = row.get(0);
        let ours = param_text(1, Some(&v.to_be_bytes()), oid::FLOAT4)
            .unwrap()
            .unwrap();
        if ours != server {
            wrong.push(format!("{:08x}: ours {ours} server {server}", v.to_bits()));
        }
    }
    assert!(wrong.is_empty(), "float4 mismatches:\n{}", wrong.join("\n"));
    // And single floats as plain binary parameters, like a client sends them.
    check_binary(
        &client,
        Type::FLOAT8,
        oid::FLOAT8,
        &[
            1e20f64.to_be_bytes().to_vec(),
            (-0.0f64).to_be_bytes().to_vec(),
            vec![0; 4],
        ],
    )
    .await;
    check_binary(
        &client,
        Type::FLOAT4,
        oid::FLOAT4,
        &[1e6f32.to_be_bytes().to_vec(), vec![0; 8]],
    )
    .await;

    // --- the way the proxy uses it: values of several types to text, in a
    // literal, cast back through text[] to the original type.
    let ids: Vec<i64> = vec![i64::MIN, -1, 0, 42, i64::MAX];
    let texts: Vec<Option<String>> = ids
        .iter()
        .map(|v| param_text(1, Some(&v.to_be_bytes()), oid::INT8).unwrap())
        .chain([param_text(1, None, oid::INT8).unwrap()])
        .collect();
    let literal = text_array_literal(texts.iter().map(|t| t.as_deref()));
    let back: Vec<Option<i64>> = client
        .query(
            "SELECT x FROM unnest(($1::text)::text[]::int8[]) WITH ORDINALITY AS u(x, i) ORDER BY i",
            &[&literal],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let want: Vec<Option<i64>> = ids.iter().map(|&v| Some(v)).chain([None]).collect();
    assert_eq!(back, want);

    let docs = [
        serde_json::json!({"a": "q\"uote", "b": [1, 2, {"c": "\\"}], "d": null}),
        serde_json::json!("{not, an, array}"),
        serde_json::json!([]),
    ];
    let texts: Vec<String> = docs
        .iter()
        .map(|d| {
            let mut b = vec![1u8];
            b.extend_from_slice(d.to_string().as_bytes());
            param_text(1, Some(&b), oid::JSONB).unwrap().unwrap()
        })
        .collect();
    let literal = text_array_literal(texts.iter().map(|t| Some(t.as_str())));
    let back: Vec<serde_json::Value> = client
        .query(
            "SELECT x FROM unnest(($1::text)::text[]::jsonb[]) WITH ORDINALITY AS u(x, i) ORDER BY i",
            &[&literal],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(back, docs);

    drop(client);
    drop(pg);
}
