//! Parameter values to text, and text[] array literals.
//!
//! A coalesced write is re-sent later as one element of a `text[]` parameter
//! of the bulk statement and cast back to its type there (for example
//! `$3::text[]::jsonb[]`). This module owns the two conversions that needs:
//!
//! - [`param_text`]: one Bind parameter value, in text or binary format, to
//!   the text form Postgres's output function gives for it (so that casting
//!   the text back yields the same value);
//! - [`text_array_literal`]: a list of such texts (or NULLs) to the literal of
//!   a `text[]` value, as `array_in` parses it.
//!
//! Binary formats are those of each type's `*send` function in the Postgres
//! source; the text forms are those of its `*out` function. Types whose
//! binary decoding depends on session settings or is intricate (timestamps,
//! dates, numeric) are refused with [`Unsupported::BinaryType`]: the relay
//! then passes the statement through instead of coalescing it.
//!
//! References:
//! - Bind and format codes:
//!   <https://www.postgresql.org/docs/current/protocol-message-formats.html>
//! - Array literal syntax:
//!   <https://www.postgresql.org/docs/current/arrays.html#ARRAYS-IO>
//! - Float output: <https://www.postgresql.org/docs/current/datatype-numeric.html#DATATYPE-FLOAT>

use std::fmt::Write as _;

/// Why a value cannot be coalesced (the statement is then passed through
/// instead, so Postgres judges it and answers the client itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsupported {
    /// A binary-format value of this type OID (0: unspecified) that this
    /// module does not decode.
    BinaryType(u32),
    /// Text that is not valid UTF-8, or contains NUL (which Postgres rejects
    /// in any text value).
    InvalidUtf8,
    /// A value Postgres itself would reject: wrong binary length, unknown
    /// format code, unknown jsonb version, over-long name.
    Malformed(&'static str),
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unsupported::BinaryType(oid) => {
                write!(f, "binary parameter of type {oid} is not decoded")
            }
            Unsupported::InvalidUtf8 => f.write_str("parameter is not valid UTF-8"),
            Unsupported::Malformed(why) => write!(f, "malformed parameter: {why}"),
        }
    }
}

impl std::error::Error for Unsupported {}

/// Well-known type OIDs (from `pg_type.dat`) that this module knows by name.
pub mod oid {
    /// Unspecified: the server infers the type.
    pub const UNSPECIFIED: u32 = 0;
    /// `unknown`; in a Parse, like 0, it asks the server to infer the type.
    pub const UNKNOWN: u32 = 705;
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// `NAMEDATALEN - 1`: the longest name `namerecv` accepts, in bytes.
const MAX_NAME_BYTES: usize = 63;

/// The text form of one parameter value.
///
/// `format` 0 is text: the bytes must be valid UTF-8 without NUL and are
/// returned as they are, whatever the type (Postgres parses them with the
/// type's input function, as it will when the text is cast back). `format`
/// 1 is binary: the bytes are decoded per `type_oid` into what the type's
/// output function prints. `type_oid` 0 means unspecified, which only text
/// format allows; so does `unknown` (705): declared in a Parse it too means
/// "infer the type", and Postgres then decodes binary bytes with the
/// inferred type's receive function, which this cannot know. NULL stays `None`, in either format. Text is taken to be
/// UTF-8: the caller must only coalesce sessions whose `client_encoding` is
/// UTF8 (other encodings' bytes can be valid UTF-8 and mean something else).
///
/// Binary decoding, per type:
/// - text, varchar, bpchar, name, json: the UTF-8 bytes as they are
///   (a name of 64 bytes or more is [`Unsupported::Malformed`], as
///   `namerecv` rejects it);
/// - jsonb: version byte 1, then the JSON text as it is (semantically the
///   same value once cast back; `jsonb_out` would only respace it);
/// - int2, int4, int8, oid: decimal (`oid` unsigned);
/// - bool: `t` or `f` (`boolrecv` takes any non-zero byte as true);
/// - float4, float8: as `float4out` / `float8out` print them with the default
///   `extra_float_digits` (1, or any positive value): see [`float8_text`];
/// - uuid: lower-case `8-4-4-4-12` hex;
/// - bytea: `\x` and lower-case hex (the default `bytea_output = hex`; the
///   input function reads this form whatever the setting);
/// - anything else, including date, timestamp, timestamptz and numeric:
///   [`Unsupported::BinaryType`].
///
/// Wrong lengths give [`Unsupported::Malformed`]. Never panics.
pub fn param_text(
    format: i16,
    value: Option<&[u8]>,
    type_oid: u32,
) -> Result<Option<String>, Unsupported> {
    // Postgres checks the format code even for NULL.
    match (format, value) {
        (0 | 1, None) => Ok(None),
        (0, Some(bytes)) => utf8(bytes).map(Some),
        (1, Some(bytes)) => binary_text(bytes, type_oid).map(Some),
        _ => Err(Unsupported::Malformed("unknown format code")),
    }
}

/// Bytes as a `String`, if Postgres would accept them as UTF-8 text.
fn utf8(bytes: &[u8]) -> Result<String, Unsupported> {
    if bytes.contains(&0) {
        return Err(Unsupported::InvalidUtf8);
    }
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| Unsupported::InvalidUtf8)
}

/// Exactly `N` bytes, or the length error.
fn fixed<const N: usize>(bytes: &[u8]) -> Result<[u8; N], Unsupported> {
    bytes
        .try_into()
        .map_err(|_| Unsupported::Malformed("wrong length for binary value"))
}

/// Decodes one binary-format value of type `type_oid` to its text form.
fn binary_text(bytes: &[u8], type_oid: u32) -> Result<String, Unsupported> {
    match type_oid {
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::JSON => utf8(bytes),
        oid::NAME => {
            if bytes.len() > MAX_NAME_BYTES {
                return Err(Unsupported::Malformed("name too long"));
            }
            utf8(bytes)
        }
        oid::JSONB => match bytes.split_first() {
            Some((1, json)) => utf8(json),
            Some(_) => Err(Unsupported::Malformed("unsupported jsonb version")),
            None => Err(Unsupported::Malformed("empty jsonb value")),
        },
        oid::INT2 => Ok(i16::from_be_bytes(fixed(bytes)?).to_string()),
        oid::INT4 => Ok(i32::from_be_bytes(fixed(bytes)?).to_string()),
        oid::INT8 => Ok(i64::from_be_bytes(fixed(bytes)?).to_string()),
        oid::OID => Ok(u32::from_be_bytes(fixed(bytes)?).to_string()),
        oid::BOOL => {
            let [b] = fixed::<1>(bytes)?;
            Ok(if b != 0 { "t" } else { "f" }.to_owned())
        }
        oid::FLOAT4 => Ok(float4_text(f32::from_be_bytes(fixed(bytes)?))),
        oid::FLOAT8 => Ok(float8_text(f64::from_be_bytes(fixed(bytes)?))),
        oid::UUID => Ok(uuid_text(&fixed::<16>(bytes)?)),
        oid::BYTEA => Ok(bytea_text(bytes)),
        other => Err(Unsupported::BinaryType(other)),
    }
}

/// `8-4-4-4-12` lower-case hex, as `uuid_out` prints it.
fn uuid_text(b: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{byte:02x}");
    }
    s
}

/// `\x` and lower-case hex, as `byteaout` prints it with `bytea_output = hex`.
fn bytea_text(b: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + 2 * b.len());
    s.push_str("\\x");
    for &byte in b {
        s.push(HEX[usize::from(byte >> 4)] as char);
        s.push(HEX[usize::from(byte & 0xf)] as char);
    }
    s
}

/// A `float8` as `float8out` prints it when `extra_float_digits > 0` (the
/// default since Postgres 12): `double_to_shortest_decimal_buf` in
/// `src/common/d2s.c`, Postgres's port of Ryu.
///
/// The digits are Ryu's: the shortest decimal strictly inside the value's
/// rounding interval (Postgres builds Ryu without `STRICTLY_SHORTEST`, so
/// the interval's ends are excluded even where a correctly rounding reader
/// would accept them: `1e23` prints as `9.999999999999999e+22`), rounded
/// to nearest with ties to even where Ryu can tell a tie. Rust's own
/// shortest formatting includes the ends and rounds ties up, so it differs
/// from Postgres on a small fraction of values; this is a port of Ryu's
/// decision steps instead, with the three scaled bounds it works on computed
/// exactly by a small big-number routine rather than from Ryu's tables.
///
/// The layout is fixed-point when the decimal exponent of the first digit is
/// in `-4..15`, else `d.ddde+XX` / `d.ddde-XX` (at least two exponent
/// digits); `NaN`, `Infinity`, `-Infinity`, `0` and `-0` are spelled out.
///
/// Whatever the session's `extra_float_digits`, the text reads back as
/// exactly the same double, which is what coalescing needs; the test suite
/// also checks it prints exactly as the server does, on many values.
pub fn float8_text(v: f64) -> String {
    let bits = v.to_bits();
    let negative = bits >> 63 != 0;
    let mantissa = bits & ((1 << 52) - 1);
    let exponent = ((bits >> 52) & 0x7ff) as u32;
    if let Some(special) = special_float(negative, exponent == 0x7ff, exponent == 0, mantissa == 0)
    {
        return special;
    }
    match d2d_small_int(mantissa, exponent).or_else(|| d2d(mantissa, exponent)) {
        Some((digits, e10)) => layout(negative, digits, e10, 15),
        // Not reached for any double (Ryu's bounds fit 64 bits); kept so a
        // mistake here can never panic. Rust's shortest text still reads
        // back as the same double.
        None => format!("{v:e}"),
    }
}

/// A `float4` as `float4out` prints it when `extra_float_digits > 0`:
/// `float_to_shortest_decimal_buf` in `src/common/f2s.c`. As
/// [`float8_text`], with single-precision digits and fixed-point output for
/// decimal exponents in `-4..6`.
pub fn float4_text(v: f32) -> String {
    let bits = v.to_bits();
    let negative = bits >> 31 != 0;
    let mantissa = bits & ((1 << 23) - 1);
    let exponent = (bits >> 23) & 0xff;
    if let Some(special) = special_float(negative, exponent == 0xff, exponent == 0, mantissa == 0) {
        return special;
    }
    match f2d_small_int(mantissa, exponent).or_else(|| f2d(mantissa, exponent)) {
        Some((digits, e10)) => layout(negative, digits, e10, 6),
        None => format!("{v:e}"),
    }
}

/// NaN, the infinities and the zeros, as Ryu's `copy_special_str` spells them.
fn special_float(
    negative: bool,
    max_exponent: bool,
    zero_exponent: bool,
    zero_mantissa: bool,
) -> Option<String> {
    let sign = if negative { "-" } else { "" };
    if max_exponent {
        Some(if zero_mantissa {
            format!("{sign}Infinity")
        } else {
            "NaN".to_owned()
        })
    } else if zero_exponent && zero_mantissa {
        Some(format!("{sign}0"))
    } else {
        None
    }
}

/// `floor(log10(2^e))` for `0 <= e <= 1650`, as Ryu computes it.
fn log10_pow2(e: i32) -> u32 {
    ((e as u32) * 78913) >> 18
}

/// `floor(log10(5^e))` for `0 <= e <= 2620`, as Ryu computes it.
fn log10_pow5(e: i32) -> u32 {
    ((e as u32) * 732923) >> 20
}

/// Whether 5^p divides `value` (Ryu's `multipleOfPowerOf5`).
fn multiple_of_pow5(mut value: u64, p: u32) -> bool {
    let mut count = 0;
    while value != 0 && value.is_multiple_of(5) {
        value /= 5;
        count += 1;
    }
    count >= p
}

/// Whether 2^p divides `value` (Ryu's `multipleOfPowerOf2`).
fn multiple_of_pow2(value: u64, p: u32) -> bool {
    p >= 64 || value & ((1u64 << p) - 1) == 0
}

/// `floor(x * 2^e2 / 10^e10)`, exactly: the quantity Ryu's table-driven
/// `mulShift` computes. `None` if it does not fit 64 bits or `e10` is below
/// the scale of `x * 2^e2` (neither happens for Ryu's arguments).
fn scaled_floor(x: u64, e2: i32, e10: i32) -> Option<u64> {
    // x * 2^e2 / 10^e10 = (x * 2^e2) / 10^e10 when e2 >= 0, else
    // (x * 5^-e2) / 10^(e10 - e2): an integer with decimal digits dropped.
    let (pow2, pow5, drop) = if e2 >= 0 {
        (e2.unsigned_abs(), 0, e10)
    } else {
        (0, e2.unsigned_abs(), e10.checked_sub(e2)?)
    };
    let drop = u32::try_from(drop).ok()?;
    let mut n = BigDec::from_u64(x);
    n.mul_pow(2, 29, pow2);
    n.mul_pow(5, 13, pow5);
    n.floor_div_pow10(drop);
    n.to_u64()
}

/// A non-negative integer in base 10^9, least significant limb first: just
/// enough arithmetic for [`scaled_floor`].
struct BigDec(Vec<u32>);

const LIMB: u64 = 1_000_000_000;

impl BigDec {
    fn from_u64(mut x: u64) -> BigDec {
        let mut limbs = Vec::new();
        while x > 0 {
            limbs.push((x % LIMB) as u32);
            x /= LIMB;
        }
        BigDec(limbs)
    }

    /// Multiplies by `base^exp`, `chunk` factors at a time (`base^chunk`
    /// must stay below 2^32 so that no product overflows 64 bits).
    fn mul_pow(&mut self, base: u64, chunk: u32, mut exp: u32) {
        while exp > 0 {
            let k = exp.min(chunk);
            exp -= k;
            let factor = base.pow(k);
            let mut carry = 0u64;
            for limb in &mut self.0 {
                let t = u64::from(*limb) * factor + carry;
                *limb = (t % LIMB) as u32;
                carry = t / LIMB;
            }
            while carry > 0 {
                self.0.push((carry % LIMB) as u32);
                carry /= LIMB;
            }
        }
    }

    /// Replaces the number by `floor(self / 10^digits)`.
    fn floor_div_pow10(&mut self, digits: u32) {
        let whole = (digits / 9) as usize;
        if whole >= self.0.len() {
            self.0.clear();
            return;
        }
        self.0.drain(..whole);
        let divisor = 10u64.pow(digits % 9);
        if divisor > 1 {
            let mut rem = 0u64;
            for limb in self.0.iter_mut().rev() {
                let t = rem * LIMB + u64::from(*limb);
                *limb = (t / divisor) as u32;
                rem = t % divisor;
            }
        }
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }

    fn to_u64(&self) -> Option<u64> {
        self.0.iter().rev().try_fold(0u64, |acc, &limb| {
            acc.checked_mul(LIMB)?.checked_add(u64::from(limb))
        })
    }
}

/// Ryu's fast path for doubles that are integers below 2^53: the integer
/// itself, decimal exponent 0 (`d2d_small_int`).
fn d2d_small_int(mantissa: u64, exponent: u32) -> Option<(u64, i32)> {
    let e2 = exponent as i32 - 1023 - 52;
    if !(-52..=0).contains(&e2) {
        return None;
    }
    let shift = e2.unsigned_abs();
    if mantissa & ((1u64 << shift) - 1) != 0 {
        return None;
    }
    Some((((1u64 << 52) | mantissa) >> shift, 0))
}

/// Ryu's shortest digits of a finite, non-zero double given its raw fields:
/// `(digits, e10)` meaning `digits * 10^e10` (`d2d` in `d2s.c`, with
/// `acceptBounds` false as Postgres builds it).
fn d2d(mantissa: u64, exponent: u32) -> Option<(u64, i32)> {
    let (e2, m2) = if exponent == 0 {
        (1 - 1023 - 52 - 2, mantissa)
    } else {
        (exponent as i32 - 1023 - 52 - 2, (1u64 << 52) | mantissa)
    };
    let mv = 4 * m2;
    let mp = mv + 2;
    let mm_shift = u64::from(mantissa != 0 || exponent <= 1);
    let mm = mv - 1 - mm_shift;
    let e10;
    let mut vr_trailing_zeros = false;
    let (vr, mut vp, vm);
    if e2 >= 0 {
        let q = log10_pow2(e2) - u32::from(e2 > 3);
        e10 = q as i32;
        vr = scaled_floor(mv, e2, e10)?;
        vp = scaled_floor(mp, e2, e10)?;
        vm = scaled_floor(mm, e2, e10)?;
        if q <= 21 {
            if mv % 5 == 0 {
                vr_trailing_zeros = multiple_of_pow5(mv, q);
            } else {
                vp = vp.checked_sub(u64::from(multiple_of_pow5(mp, q)))?;
            }
        }
    } else {
        let q = log10_pow5(-e2) - u32::from(-e2 > 1);
        e10 = q as i32 + e2;
        vr = scaled_floor(mv, e2, e10)?;
        vp = scaled_floor(mp, e2, e10)?;
        vm = scaled_floor(mm, e2, e10)?;
        if q <= 1 {
            vr_trailing_zeros = true;
            vp = vp.checked_sub(1)?;
        } else if q < 63 {
            // Ryu's (loose) test, kept as is: it decides ties.
            vr_trailing_zeros = multiple_of_pow2(mv, q - 1);
        }
    }
    let (digits, removed) = shortest(vr, vp, vm, vr_trailing_zeros, 0);
    Some((digits, e10 + removed))
}

/// Ryu's step 4, shared by doubles and floats: drops digits while the
/// bounds still differ above them, then rounds (ties to even only when the
/// dropped part is known to be exactly ...5000), stepping up when the
/// result would sit on the excluded lower bound. `last` is the digit below
/// `vr` when the caller knows it (f2s), else 0. Returns the digits and how
/// many were dropped.
fn shortest(
    mut vr: u64,
    mut vp: u64,
    mut vm: u64,
    mut vr_trailing_zeros: bool,
    mut last: u64,
) -> (u64, i32) {
    let mut removed = 0;
    while vp / 10 > vm / 10 {
        vr_trailing_zeros &= last == 0;
        last = vr % 10;
        vr /= 10;
        vp /= 10;
        vm /= 10;
        removed += 1;
    }
    if vr_trailing_zeros && last == 5 && vr.is_multiple_of(2) {
        last = 4;
    }
    (vr + u64::from(vr == vm || last >= 5), removed)
}

/// Ryu's fast path for floats that are integers below 2^24 (`f2d_small_int`).
fn f2d_small_int(mantissa: u32, exponent: u32) -> Option<(u64, i32)> {
    let e2 = exponent as i32 - 127 - 23;
    if !(-23..=0).contains(&e2) {
        return None;
    }
    let shift = e2.unsigned_abs();
    if mantissa & ((1u32 << shift) - 1) != 0 {
        return None;
    }
    Some((u64::from(((1u32 << 23) | mantissa) >> shift), 0))
}

/// Ryu's shortest digits of a finite, non-zero float (`f2d` in `f2s.c`,
/// `acceptBounds` false).
fn f2d(mantissa: u32, exponent: u32) -> Option<(u64, i32)> {
    let (e2, m2) = if exponent == 0 {
        (1 - 127 - 23 - 2, u64::from(mantissa))
    } else {
        (
            exponent as i32 - 127 - 23 - 2,
            u64::from((1u32 << 23) | mantissa),
        )
    };
    let mv = 4 * m2;
    let mp = mv + 2;
    let mm_shift = u64::from(mantissa != 0 || exponent <= 1);
    let mm = mv - 1 - mm_shift;
    let e10;
    let mut vr_trailing_zeros = false;
    let mut last = 0;
    let (vr, mut vp, vm);
    if e2 >= 0 {
        let q = log10_pow2(e2);
        e10 = q as i32;
        vr = scaled_floor(mv, e2, e10)?;
        vp = scaled_floor(mp, e2, e10)?;
        vm = scaled_floor(mm, e2, e10)?;
        if q != 0 && vp.saturating_sub(1) / 10 <= vm / 10 {
            last = scaled_floor(mv, e2, e10 - 1)? % 10;
        }
        if q <= 9 {
            if mv % 5 == 0 {
                vr_trailing_zeros = multiple_of_pow5(mv, q);
            } else {
                vp = vp.checked_sub(u64::from(multiple_of_pow5(mp, q)))?;
            }
        }
    } else {
        let q = log10_pow5(-e2);
        e10 = q as i32 + e2;
        vr = scaled_floor(mv, e2, e10)?;
        vp = scaled_floor(mp, e2, e10)?;
        vm = scaled_floor(mm, e2, e10)?;
        if q != 0 && vp.saturating_sub(1) / 10 <= vm / 10 {
            last = scaled_floor(mv, e2, e10 - 1)? % 10;
        }
        if q <= 1 {
            vr_trailing_zeros = true;
            vp = vp.checked_sub(1)?;
        } else if q < 31 {
            vr_trailing_zeros = multiple_of_pow2(mv, q - 1);
        }
    }
    let (digits, removed) = shortest(vr, vp, vm, vr_trailing_zeros, last);
    Some((digits, e10 + removed))
}

/// Prints `digits * 10^e10` as Ryu's `to_chars` does: fixed-point when the
/// decimal exponent of the first digit is in `-4..fixed_below`, else
/// scientific with a signed exponent of at least two digits (trailing zeros
/// of the small-integer path moved into the exponent).
fn layout(negative: bool, mut digits: u64, e10: i32, fixed_below: i32) -> String {
    let mut text = digits.to_string();
    let exp = e10 + text.len() as i32 - 1;
    let mut out = String::with_capacity(text.len() + 8);
    if negative {
        out.push('-');
    }
    if (-4..fixed_below).contains(&exp) {
        let point = e10 + text.len() as i32; // digits before the point
        if point <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', point.unsigned_abs() as usize));
            out.push_str(&text);
        } else if e10 < 0 {
            let (int, frac) = text.split_at(point as usize);
            out.push_str(int);
            out.push('.');
            out.push_str(frac);
        } else {
            out.push_str(&text);
            out.extend(std::iter::repeat_n('0', e10 as usize));
        }
        return out;
    }
    if e10 == 0 {
        while digits > 0 && digits.is_multiple_of(10) {
            digits /= 10;
        }
        text = digits.to_string();
    }
    out.push_str(&text[..1]);
    if text.len() > 1 {
        out.push('.');
        out.push_str(&text[1..]);
    }
    let _ = write!(
        out,
        "e{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.unsigned_abs()
    );
    out
}

/// A Postgres `text[]` array literal: `{"a","b",NULL}`. Every element is
/// double-quoted with `"` and `\` escaped by a backslash, so commas, braces,
/// blanks and the word NULL inside a value stay part of it; NULL is written
/// unquoted; no elements give `{}`. `array_in` reads the literal back into
/// exactly these elements.
pub fn text_array_literal<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> String {
    let mut out = String::from("{");
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match v {
            None => out.push_str("NULL"),
            Some(s) => {
                out.reserve(s.len() + 2);
                out.push('"');
                for c in s.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
        }
    }
    out.push('}');
    out
}
