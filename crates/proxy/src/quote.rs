//! Quoting of names and values in SQL the proxy writes itself (parameter
//! replays, bulk flush statements).

/// A double-quoted identifier, inner quotes doubled.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Each part of a possibly schema-qualified name, quoted.
pub fn name(s: &str) -> String {
    s.split('.').map(ident).collect::<Vec<_>>().join(".")
}

/// A single-quoted string literal, inner quotes doubled (the proxy runs with
/// standard_conforming_strings on, Postgres's default).
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
