//! A console result set in the wire format: RowDescription, DataRows and
//! CommandComplete, every value in text format.
//! <https://www.postgresql.org/docs/current/protocol-message-formats.html>

use std::time::SystemTime;

use bytes::{BufMut, BytesMut};
use wire::build;

/// A column's type as the client is told it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Text,
    Int8,
    Float8,
    Bool,
}

impl Type {
    /// The type's OID and size (`pg_type.typlen`).
    fn oid_and_size(self) -> (u32, i16) {
        match self {
            Type::Text => (25, -1),
            Type::Int8 => (20, 8),
            Type::Float8 => (701, 8),
            Type::Bool => (16, 1),
        }
    }
}

/// One result set being written: the header at creation, then rows.
pub struct Table {
    out: BytesMut,
    width: usize,
}

impl Table {
    /// Starts a result set with these columns.
    pub fn new(columns: &[(&str, Type)]) -> Table {
        let mut out = BytesMut::with_capacity(1024);
        build::append(&mut out, b'T', |b| {
            b.put_i16(columns.len() as i16);
            for (name, ty) in columns {
                let (oid, size) = ty.oid_and_size();
                b.put_slice(name.as_bytes());
                b.put_u8(0);
                b.put_u32(0); // no table
                b.put_i16(0); // no attribute number
                b.put_u32(oid);
                b.put_i16(size);
                b.put_i32(-1); // no type modifier
                b.put_i16(0); // text format
            }
        });
        Table {
            out,
            width: columns.len(),
        }
    }

    /// Adds a row; `None` is NULL. Missing trailing values are NULL, extra
    /// ones are dropped, so a row always matches the header.
    pub fn row(&mut self, values: Vec<Option<String>>) {
        let width = self.width;
        build::append(&mut self.out, b'D', |b| {
            b.put_i16(width as i16);
            let mut values = values.into_iter();
            for _ in 0..width {
                match values.next().flatten() {
                    Some(v) => {
                        b.put_i32(v.len() as i32);
                        b.put_slice(v.as_bytes());
                    }
                    None => b.put_i32(-1),
                }
            }
        });
    }

    /// Ends the result set with CommandComplete `SHOW`.
    pub fn finish(mut self) -> BytesMut {
        self.out
            .extend_from_slice(build::command_complete("SHOW").raw());
        self.out
    }
}

/// A value as text.
pub fn val(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

/// A boolean as Postgres writes it.
pub fn bool_val(b: bool) -> Option<String> {
    Some(if b { "t" } else { "f" }.to_owned())
}

/// `at` in RFC 3339, UTC, to the second (`2024-05-01T12:34:56Z`).
pub fn rfc3339(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A duration as the config file may write it: whole seconds as `30s`,
/// otherwise milliseconds.
pub fn duration(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
