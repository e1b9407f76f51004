//! Unit tests of `proxy::pinning::effects`: which statement strings pin a
//! client to its server connection, and which drop prepared statements.
//!
//! A false "pins" costs pooling efficiency; a false "does not pin" leaks
//! session state between clients, so the second kind is the one the cases
//! below hunt for.

use proxy::pinning::{effects, Effects};

const PINS: Effects = Effects {
    pins: true,
    drops_prepared: false,
};
const NOTHING: Effects = Effects {
    pins: false,
    drops_prepared: false,
};
const DROPS: Effects = Effects {
    pins: false,
    drops_prepared: true,
};

#[track_caller]
fn check(cases: &[&str], want: Effects) {
    let wrong: Vec<String> = cases
        .iter()
        .filter(|sql| effects(sql) != want)
        .map(|sql| format!("{sql:?} -> {:?}", effects(sql)))
        .collect();
    assert!(
        wrong.is_empty(),
        "want {want:?} for:\n  {}",
        wrong.join("\n  ")
    );
}

// ------------------------------------------------------------------ pins

#[test]
fn session_set_pins() {
    check(
        &[
            "SET search_path = x",
            "set statement_timeout to 0",
            "SET SESSION work_mem = '1MB'",
            "SET search_path TO DEFAULT",
            "SET ROLE other",
            "set role other",
            "SET SESSION AUTHORIZATION other",
            "SET SESSION AUTHORIZATION DEFAULT",
            "SET myapp.tenant_id = 42",
            "SET SCHEMA 'app'",
            "  SET\n\tsearch_path = x  ",
            "SET /* local */ search_path = x",
            "SET LOCAL a = 1; SET b = 2",
        ],
        PINS,
    );
}

#[test]
fn listen_pins() {
    check(
        &[
            "LISTEN chan",
            "listen chan",
            "LISTEN \"Chan\"",
            "SELECT 1; LISTEN x",
            "SELECT 1;LISTEN x;",
            "/* c */ LISTEN x",
            "/* a /* nested */ comment */ LISTEN x",
            "-- comment\nLISTEN x",
            "SELECT 'it''s'; LISTEN x",
            "SELECT E'it''s'; LISTEN x",
            "SELECT \"a\"\"b\" FROM t; LISTEN x",
            "SELECT $$ a $$; LISTEN x",
            "SELECT $q$ $$ $q$; LISTEN x",
            "SELECT $1; LISTEN x",
            "SELECT U&'\\0041'; LISTEN x",
            "SELECT 'é'; LISTEN x",
        ],
        PINS,
    );
}

#[test]
fn session_advisory_locks_pin() {
    check(
        &[
            "select pg_advisory_lock(1)",
            "SELECT pg_advisory_lock(1, 2)",
            "SELECT pg_advisory_lock_shared(1)",
            "SELECT pg_try_advisory_lock(1)",
            "SELECT pg_try_advisory_lock_shared(1)",
            "SELECT pg_catalog.pg_advisory_lock(1)",
            "SELECT x FROM t WHERE pg_try_advisory_lock(t.id)",
            "SELECT pg_advisory_lock /* c */ (1)",
        ],
        PINS,
    );
}

#[test]
fn temp_objects_pin() {
    check(
        &[
            "CREATE TEMP TABLE t(x int)",
            "create temporary table t (x int)",
            "CREATE LOCAL TEMPORARY TABLE t()",
            "CREATE GLOBAL TEMPORARY TABLE t()",
            "CREATE LOCAL TEMP TABLE t()",
            "CREATE TEMP TABLE IF NOT EXISTS t AS SELECT 1",
            "CREATE TEMP VIEW v AS SELECT 1",
            "CREATE TEMPORARY SEQUENCE s",
            "SELECT 1 INTO TEMP t",
            "SELECT * INTO TEMPORARY TABLE t FROM x",
            "SELECT * INTO LOCAL TEMP t FROM x",
            "CREATE /* c */ TEMP TABLE t()",
            "EXPLAIN ANALYZE CREATE TEMP TABLE t AS SELECT 1",
        ],
        PINS,
    );
}

#[test]
fn sql_prepare_and_held_cursors_pin() {
    check(
        &[
            "PREPARE p AS SELECT 1",
            "prepare p(int) as select $1",
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "declare c no scroll cursor with hold for select 1",
            "LOAD 'auto_explain'",
        ],
        PINS,
    );
}

#[test]
fn session_set_config_pins() {
    check(
        &[
            "SELECT set_config('a.b', 'c', false)",
            "SELECT set_config('a.b', 'c', FALSE)",
            "SELECT set_config('search_path', 'x', false)",
            // Unknown at scan time: must be assumed to be session-wide.
            "SELECT set_config('a.b', 'c', $1)",
            "SELECT set_config('a.b', 'c', 'true')",
            "SELECT set_config('a.b', (SELECT 'c'), false)",
            "SELECT set_config('a', 'b', true), set_config('c', 'd', false)",
            "SELECT pg_catalog.set_config('a.b', 'c', false)",
            "SELECT set_config('a.b', 'c', false",
        ],
        PINS,
    );
}

// ------------------------------------------------------------------ does not pin

#[test]
fn transaction_scoped_set_does_not_pin() {
    check(
        &[
            "SET LOCAL search_path = x",
            "set local statement_timeout = 0",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET TRANSACTION READ ONLY",
            "BEGIN; SET LOCAL work_mem = '1MB'; COMMIT",
        ],
        NOTHING,
    );
}

#[test]
fn tracked_parameters_do_not_pin() {
    check(
        &[
            "SET application_name = 'x'",
            "SET SESSION application_name TO 'x'",
            "SET TIME ZONE 'UTC'",
            "SET SESSION TIME ZONE LOCAL",
            "SET TimeZone = 'UTC'",
            "SET DateStyle = ISO",
            "SET datestyle TO 'ISO, MDY'",
            "SET IntervalStyle = postgres",
            "SET client_encoding = 'UTF8'",
            "SET standard_conforming_strings = on",
            "SET default_transaction_read_only = on",
        ],
        NOTHING,
    );
}

#[test]
fn transaction_scoped_functions_do_not_pin() {
    check(
        &[
            "select pg_advisory_xact_lock(1)",
            "SELECT pg_try_advisory_xact_lock(1)",
            "SELECT pg_advisory_xact_lock_shared(1)",
            "SELECT pg_advisory_unlock(1)",
            "SELECT set_config('app.current_agent_id', $1, true)",
            "SELECT set_config('a.b', 'c', TRUE)",
            "SELECT set_config('a.b', lower('C'), true)",
            "SELECT current_setting('a.b')",
        ],
        NOTHING,
    );
}

#[test]
fn keywords_in_literals_comments_and_identifiers_do_not_pin() {
    check(
        &[
            "SELECT 'LISTEN x'",
            "SELECT E'LISTEN x'",
            "SELECT 'a'';LISTEN x'",
            "SELECT \"listen\" FROM t",
            "SELECT \"x\"\"; LISTEN y\" FROM t",
            "-- LISTEN x\nSELECT 1",
            "SELECT 1 -- ; LISTEN x",
            "/* LISTEN x */ SELECT 1",
            "/* /* */ LISTEN x */ SELECT 1",
            "SELECT $$ LISTEN x $$",
            "SELECT $$ ; LISTEN x $$",
            "SELECT $tag$ create temp table $tag$",
            "SELECT $a$ $b$ ; LISTEN x $b$ $a$",
            "SELECT 'pg_advisory_lock(1)'",
            "SELECT 'SET search_path = x'",
            "SELECT $$ set_config('a', 'b', false) $$",
        ],
        NOTHING,
    );
}

#[test]
fn lookalike_words_do_not_pin() {
    check(
        &[
            "SELECT temp FROM t",
            "SELECT temp, temporary FROM t",
            "UPDATE t SET temp = 1",
            "UNLISTEN *",
            "UNLISTEN chan",
            "SELECT * FROM pg_listening_channels()",
            "SELECT listen FROM t",
            "NOTIFY chan, 'LISTEN x'",
            "SELECT pg_notify('chan', 'x')",
            "SELECT my_pg_advisory_lock(1)",
            "SELECT set_config_x('a', 'b', false)",
            "SELECT prepared FROM t",
            "DECLARE c CURSOR FOR SELECT 1",
            "EXECUTE p",
            "DEALLOCATE p",
            "",
            ";;;",
            "   ",
        ],
        NOTHING,
    );
}

// ------------------------------------------------------------------ drops_prepared

#[test]
fn discard_and_deallocate_all_drop_prepared() {
    // Postgres: DISCARD ALL; DEALLOCATE [ PREPARE ] { name | ALL }.
    check(
        &[
            "DISCARD ALL",
            "discard all",
            "DEALLOCATE ALL",
            "deallocate all",
            "DEALLOCATE PREPARE ALL",
            "deallocate prepare all",
            "SELECT 1; DISCARD ALL",
            "DEALLOCATE ALL;",
        ],
        DROPS,
    );
}

#[test]
fn deallocate_one_does_not_drop_prepared() {
    check(
        &[
            "DEALLOCATE p",
            "DEALLOCATE PREPARE p",
            "DEALLOCATE \"all\"",
            "DEALLOCATE all_statements",
            "DISCARD PLANS",
            "DISCARD TEMP",
            "DISCARD SEQUENCES",
            "SELECT 'DISCARD ALL'",
            "-- DEALLOCATE ALL\nSELECT 1",
            "SELECT ALL x FROM t",
            "SELECT 1 UNION ALL SELECT 2",
        ],
        NOTHING,
    );
}

#[test]
fn effects_accumulate_over_statements() {
    assert_eq!(
        effects("DEALLOCATE ALL; LISTEN x"),
        Effects {
            pins: true,
            drops_prepared: true
        }
    );
    assert_eq!(
        effects("LISTEN x; SELECT 1; DISCARD ALL"),
        Effects {
            pins: true,
            drops_prepared: true
        }
    );
}

// ------------------------------------------------------------------ known misses

// Each case below executes session-level state in Postgres but `effects`
// reports `pins: false`, so the client's server connection would go back to
// the pool carrying that state.

#[test]

fn create_or_replace_temp_view_pins() {
    check(
        &[
            "CREATE OR REPLACE TEMP VIEW v AS SELECT 1",
            "CREATE OR REPLACE TEMPORARY VIEW v AS SELECT 1",
            "CREATE OR REPLACE TEMP RECURSIVE VIEW v(n) AS SELECT 1",
        ],
        PINS,
    );
}

#[test]

fn pg_temp_schema_pins() {
    check(
        &[
            "CREATE TABLE pg_temp.t (x int)",
            "CREATE VIEW pg_temp.v AS SELECT 1",
            "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "SELECT 1 INTO pg_temp.t",
        ],
        PINS,
    );
}

#[test]

fn escape_string_backslash_quote_pins() {
    // E'\'' is a one-character string; the LISTEN after it runs.
    check(
        &[
            "SELECT E'\\''; LISTEN x",
            "SELECT e'\\'' ; LISTEN x",
            "SELECT E'a\\'b'; SET search_path = x",
        ],
        PINS,
    );
}

#[test]

fn comment_ended_by_carriage_return_pins() {
    check(&["-- c\rLISTEN x", "SELECT 1 -- c\r; LISTEN x"], PINS);
}

#[test]

fn vertical_tab_is_whitespace() {
    check(&["\x0bLISTEN x", "SELECT 1;\x0bSET search_path = x"], PINS);
}

#[test]

fn non_ascii_dollar_tag_pins() {
    // Postgres: the string $ä$'$ä$, then LISTEN x, then a -- comment.
    check(&["SELECT $ä$'$ä$; LISTEN x; --'"], PINS);
}

#[test]

fn quoted_function_names_pin() {
    check(
        &[
            "SELECT \"pg_advisory_lock\"(1)",
            "SELECT pg_catalog.\"pg_try_advisory_lock\"(1)",
            "SELECT \"set_config\"('a.b', 'c', false)",
        ],
        PINS,
    );
}

#[test]

fn set_config_with_expression_is_local_pins() {
    check(
        &[
            "SELECT set_config('a.b', 'c', NOT true)",
            "SELECT set_config('a.b', 'c', false AND true)",
        ],
        PINS,
    );
}

#[test]

fn do_blocks_pin() {
    check(
        &[
            "DO $$ BEGIN PERFORM pg_advisory_lock(1); END $$",
            "DO $$ BEGIN EXECUTE 'LISTEN x'; END $$",
            "DO $$ BEGIN CREATE TEMP TABLE t(x int); END $$",
        ],
        PINS,
    );
}

// ------------------------------------------------------------------ never panics

/// Deterministic xorshift so failures reproduce without a seed printout.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Fragments that drive every branch of the scanner, including unterminated
/// quotes, comments and dollar tags, and multi-byte characters.
const FRAGMENTS: &[&str] = &[
    "'",
    "''",
    "\"",
    "\"\"",
    "$",
    "$$",
    "$a$",
    "$1",
    "$a",
    "-",
    "--",
    "/",
    "*",
    "/*",
    "*/",
    ";",
    "(",
    ")",
    "\\",
    "\n",
    "\r",
    " ",
    "\t",
    "E",
    "e'",
    "U&",
    "x",
    "_",
    "0",
    "1.5e",
    "é",
    "ß",
    "日本",
    "\u{0}",
    "\u{7f}",
    "\u{feff}",
    "SET",
    "LOCAL",
    "SESSION",
    "TIME",
    "ZONE",
    "LISTEN",
    "TEMP",
    "CREATE",
    "INTO",
    "GLOBAL",
    "set_config",
    "pg_advisory_lock",
    "TRUE",
    "DECLARE",
    "HOLD",
    "DISCARD",
    "DEALLOCATE",
    "ALL",
    "PREPARE",
];

#[test]
fn never_panics_on_all_short_strings() {
    // Every string of up to four symbols over an alphabet of the scanner's
    // special characters.
    let alphabet = [
        "'", "\"", "$", "-", "/", "*", ";", "(", ")", "\\", "a", "1", "é", "\n", " ", "E",
    ];
    let mut idx = Vec::new();
    for len in 0..=4 {
        idx.clear();
        idx.resize(len, 0usize);
        loop {
            let s: String = idx.iter().map(|&i| alphabet[i]).collect();
            let _ = effects(&s);
            // Next combination, odometer style.
            let mut k = 0;
            while k < len {
                idx[k] += 1;
                if idx[k] < alphabet.len() {
                    break;
                }
                idx[k] = 0;
                k += 1;
            }
            if k == len {
                break;
            }
        }
    }
}

#[test]
fn never_panics_on_random_fragment_soup() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let n = rng.below(24);
        let s: String = (0..n)
            .map(|_| FRAGMENTS[rng.below(FRAGMENTS.len())])
            .collect();
        let e = effects(&s);
        // Scanning is a pure function of the text.
        assert_eq!(e, effects(&s), "{s:?}");
    }
}

#[test]
fn never_panics_on_random_bytes() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    for _ in 0..20_000 {
        let n = rng.below(64);
        let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        let _ = effects(&bytes);
    }
}

#[test]
fn never_panics_on_unterminated_constructs() {
    for s in [
        "'",
        "\"",
        "$$",
        "$a$",
        "$a$ x $b$",
        "/*",
        "/* /* */",
        "--",
        "E'",
        "E'\\",
        "U&'",
        "SELECT set_config(",
        "SELECT set_config",
        "SELECT set_config)",
        "SELECT set_config((",
        "SET",
        "SET SESSION",
        "SET TIME",
        "DECLARE",
        "CREATE TEMP",
        "TEMP",
        "$",
        "$1$",
        "SELECT $ä$ x",
        "\u{10ffff}",
        "é'",
        "a$$",
    ] {
        let _ = effects(s);
        let _ = effects(format!("LISTEN x; {s}"));
        assert!(
            effects(format!("LISTEN x; {s}")).pins,
            "LISTEN before {s:?}"
        );
    }
}
