//! Unit tests of the console's pure parts: command parsing, result-set
//! encoding and time formatting.

use std::time::{Duration, SystemTime};

use bytes::Buf;

use super::command::{parse, Command, Show};
use super::table::{rfc3339, val, Table, Type};

#[test]
fn commands_are_case_and_whitespace_insensitive() {
    assert_eq!(parse("SHOW POOLS"), Command::Show(Show::Pools));
    assert_eq!(parse("  show\tclients ;"), Command::Show(Show::Clients));
    assert_eq!(parse("Show Coalesce;;  "), Command::Show(Show::Coalesce));
    assert_eq!(parse("shutdown;"), Command::Shutdown);
    assert_eq!(parse("pause App;"), Command::Pause(Some("App".into())));
    assert_eq!(parse("PAUSE \"My Db\""), Command::Unknown, "one word only");
    assert_eq!(parse("PAUSE \"Db\""), Command::Pause(Some("Db".into())));
    assert_eq!(parse("PAUSE \"Db"), Command::Unknown);
    assert_eq!(parse("pause"), Command::Pause(None));
    assert_eq!(parse("Resume app"), Command::Resume(Some("app".into())));
    assert_eq!(parse("RESUME"), Command::Resume(None));
    assert_eq!(parse("PAUSE a b"), Command::Unknown);
    assert_eq!(parse("reload;"), Command::Reload);
    assert_eq!(parse("RELOAD now"), Command::Unknown);
    assert_eq!(parse(" ; "), Command::Empty);
    assert_eq!(parse("SHOW"), Command::Unknown);
    assert_eq!(parse("SHOW POOLS extra"), Command::Unknown);
    assert_eq!(parse("SHOW FOO"), Command::Unknown);
    assert_eq!(parse("SELECT 1"), Command::Unknown);
    assert_eq!(parse("SHOW POOLS; SHOW CLIENTS"), Command::Unknown);
}

#[test]
fn table_encodes_header_rows_and_nulls() {
    let mut t = Table::new(&[("a", Type::Text), ("n", Type::Int8)]);
    t.row(vec![val("x"), None]);
    t.row(vec![val("y")]);
    let mut out = t.finish().freeze();
    let mut tags = Vec::new();
    while out.has_remaining() {
        let tag = out.get_u8();
        let len = out.get_i32() as usize;
        let mut body = out.split_to(len - 4);
        if tag == b'D' {
            assert_eq!(body.get_i16(), 2, "every row is as wide as the header");
            assert_eq!(body.get_i32(), 1);
            body.advance(1);
            assert_eq!(body.get_i32(), -1, "missing values are NULL");
        }
        if tag == b'T' {
            assert_eq!(body.get_i16(), 2);
        }
        tags.push(tag);
    }
    assert_eq!(tags, b"TDDC");
}

#[test]
fn times_are_rfc3339_utc() {
    assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_251_199);
    assert_eq!(rfc3339(at), "2024-02-29T23:59:59Z");
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
    assert_eq!(rfc3339(at), "2000-02-29T00:00:00Z");
}
