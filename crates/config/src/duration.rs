//! The duration syntax of the config file.
//!
//! A duration is a string of a non-negative integer followed by a unit —
//! `ms`, `s`, `m` (minutes) or `h` — such as `"500ms"`, `"5s"`, `"10m"`,
//! `"1h"`, or a bare integer (YAML number or string) meaning milliseconds.
//! Fractions and compound forms (`"1h30m"`) are not accepted.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

const EXPECTED: &str =
    "a duration such as \"500ms\", \"5s\", \"10m\", \"1h\", or an integer number of milliseconds";

/// Parses a duration written as described in the [module docs](self).
///
/// The error is a one-line reason quoting the input, e.g.
/// `invalid duration "5 sec": unknown unit "sec" (expected ms, s, m or h)`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    let fail = |why: String| format!("invalid duration {text:?}: {why}");
    if digits.is_empty() {
        return Err(fail(format!("expected {EXPECTED}")));
    }
    let value: u64 = digits
        .parse()
        .map_err(|_| fail("number is too large".to_string()))?;
    let seconds_per_unit = match unit.trim_start() {
        "" | "ms" => return Ok(Duration::from_millis(value)),
        "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        other => {
            return Err(fail(format!(
                "unknown unit {other:?} (expected ms, s, m or h)"
            )))
        }
    };
    value
        .checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(|| fail("number is too large".to_string()))
}

/// `deserialize_with` adapter: accepts a YAML integer (milliseconds) or a
/// string in the [duration syntax](self).
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(DurationVisitor)
}

/// `deserialize_with` adapter for an optional duration: YAML `null` (or
/// `~`) is `None`, anything else is read as by [`deserialize`].
pub(crate) fn deserialize_option<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    deserializer.deserialize_option(OptionalDurationVisitor)
}

/// Serde visitor behind [`deserialize_option`].
struct OptionalDurationVisitor;

impl<'de> Visitor<'de> for OptionalDurationVisitor {
    type Value = Option<Duration>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "null or {EXPECTED}")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<Duration>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<Duration>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        deserialize(deserializer).map(Some)
    }
}

/// Serde visitor behind [`deserialize`].
struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_u64<E: de::Error>(self, millis: u64) -> Result<Duration, E> {
        Ok(Duration::from_millis(millis))
    }

    fn visit_i64<E: de::Error>(self, millis: i64) -> Result<Duration, E> {
        u64::try_from(millis)
            .map(Duration::from_millis)
            .map_err(|_| E::custom(format!("invalid duration {millis}: must not be negative")))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        parse_duration(text).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 3 s "), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_garbage_with_reason() {
        let err = parse_duration("5sec").unwrap_err();
        assert!(
            err.contains("\"5sec\"") && err.contains("unknown unit"),
            "{err}"
        );
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("1.5s").is_err());
        assert!(parse_duration("1h30m").is_err());
        let err = parse_duration("99999999999999999999h").unwrap_err();
        assert!(err.contains("too large"), "{err}");
        assert!(parse_duration("18446744073709551615h").is_err());
    }
}
