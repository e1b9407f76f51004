//! Read splitting decisions: which statements may run on a replica, the
//! volatility lookup behind them, transaction control, and robustness on
//! arbitrary input.

use std::collections::HashMap;

use proxy::route::{route, tx_control, Route, TxControl, Volatility};

use Route::{Primary, ReplicaOk};

/// Functions as `pg_proc` has them: (schema, name, provolatile).
const PG_PROC: &[(&str, &str, char)] = &[
    ("pg_catalog", "now", 's'),
    ("pg_catalog", "lower", 'i'),
    ("pg_catalog", "upper", 'i'),
    ("pg_catalog", "length", 'i'),
    ("pg_catalog", "abs", 'i'),
    ("pg_catalog", "random", 'v'),
    ("pg_catalog", "clock_timestamp", 'v'),
    ("pg_catalog", "nextval", 'v'),
    ("pg_catalog", "setval", 'v'),
    ("pg_catalog", "currval", 'v'),
    ("pg_catalog", "lastval", 'v'),
    ("pg_catalog", "set_config", 'v'),
    ("pg_catalog", "current_setting", 's'),
    ("pg_catalog", "pg_advisory_lock", 'v'),
    ("pg_catalog", "pg_try_advisory_lock", 'v'),
    ("pg_catalog", "pg_advisory_xact_lock", 'v'),
    ("pg_catalog", "txid_current", 'v'),
    ("pg_catalog", "pg_current_wal_lsn", 'v'),
    ("pg_catalog", "pg_notify", 'v'),
    ("pg_catalog", "pg_is_in_recovery", 'v'),
    ("pg_catalog", "inet_server_addr", 's'),
    ("pg_catalog", "pg_stat_get_activity", 's'),
    ("pg_catalog", "generate_series", 'i'),
    ("pg_catalog", "unnest", 'i'),
    ("pg_catalog", "count", 'i'),
    ("pg_catalog", "sum", 'i'),
    ("pg_catalog", "max", 'i'),
    ("pg_catalog", "string_agg", 'i'),
    ("pg_catalog", "row_number", 'i'),
    ("pg_catalog", "lag", 'i'),
    ("pg_catalog", "jsonb_build_object", 's'),
    ("pg_catalog", "jsonb_array_elements", 'i'),
    ("pg_catalog", "to_char", 's'),
    // date_trunc(text, timestamp) is immutable, (text, timestamptz) stable.
    ("pg_catalog", "date_trunc", 'i'),
    ("pg_catalog", "date_trunc", 's'),
    ("entity", "update_metadata_optimized", 'v'),
    ("auth", "set_agent_context_from_agent_id", 'v'),
    ("public", "safe_fn", 's'),
    ("public", "volatile_fn", 'v'),
    // One name, two schemas: only the qualified call of the safe one is safe.
    ("public", "lookup", 'i'),
    ("audit", "lookup", 'v'),
];

/// Builds the map the way the loader does: `schema.name` per function, and
/// `name` with the most volatile of all functions so named.
fn pg_proc() -> HashMap<String, char> {
    fn rank(volatility: char) -> u8 {
        match volatility {
            'i' => 0,
            's' => 1,
            _ => 2,
        }
    }
    let mut map = HashMap::new();
    for &(schema, name, volatility) in PG_PROC {
        for key in [format!("{schema}.{name}"), name.to_owned()] {
            let entry = map.entry(key).or_insert(volatility);
            if rank(volatility) > rank(*entry) {
                *entry = volatility;
            }
        }
    }
    map
}

fn check(cases: &[(&str, Route)]) {
    let volatility = pg_proc();
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(sql, want)| route(sql, &volatility) != *want)
        .map(|(sql, want)| format!("{sql}\n    expected {want:?}"))
        .collect();
    assert!(wrong.is_empty(), "misrouted:\n{}", wrong.join("\n"));
}

#[test]
fn plain_reads_go_to_replicas() {
    check(&[
        ("SELECT 1", ReplicaOk),
        ("select * from entity.entities", ReplicaOk),
        (
            "SELECT metadata__key, metadata__value FROM entity.entity_metadata \
             WHERE general__entity_name = $1 AND metadata__key IN ($2, $3)",
            ReplicaOk,
        ),
        (
            "SELECT e.general__entity_name, m.metadata__value FROM entity.entities e \
             JOIN entity.entity_metadata m USING (general__entity_name) \
             LEFT JOIN entity.entities p ON p.general__entity_name = e.group__sync \
             WHERE m.metadata__value ->> 'kind' = 'npc' ORDER BY 1 LIMIT 10 OFFSET 5",
            ReplicaOk,
        ),
        (
            "SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE EXISTS (SELECT 1 FROM v WHERE v.id = u.id))",
            ReplicaOk,
        ),
        (
            "SELECT (SELECT max(x) FROM u) AS m, a::text, CAST(b AS int), c COLLATE \"C\" FROM t",
            ReplicaOk,
        ),
        ("SELECT * FROM (SELECT a FROM t) s, LATERAL (SELECT s.a) l", ReplicaOk),
        ("SELECT 1 UNION ALL SELECT 2 EXCEPT SELECT 3", ReplicaOk),
        ("SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, b DESC NULLS LAST", ReplicaOk),
        ("SELECT a FROM t FETCH FIRST 3 ROWS ONLY", ReplicaOk),
        ("SELECT t.* FROM ONLY t WHERE a BETWEEN 1 AND 2 AND b LIKE 'x%' AND c IS NOT NULL", ReplicaOk),
        ("SELECT a[1], (r).f, ARRAY[1, 2], ROW(1, 2), interval '1 day', date '2024-01-01' FROM t", ReplicaOk),
        ("SELECT a FROM t WHERE a = ANY($1::int[]) AND (a, b) = (1, 2)", ReplicaOk),
    ]);
}

#[test]
fn other_read_statements_go_to_replicas() {
    check(&[
        ("VALUES (1, 'a'), (2, 'b')", ReplicaOk),
        ("SELECT * FROM (VALUES (1)) v(a)", ReplicaOk),
        ("SHOW search_path", ReplicaOk),
        ("SHOW TRANSACTION ISOLATION LEVEL", ReplicaOk),
        // What drivers ask to tell a primary from a standby.
        ("SHOW transaction_read_only", Primary),
        ("SHOW in_hot_standby", Primary),
        ("SHOW ALL", Primary),
        // TABLE t is read as the SELECT * FROM t it stands for.
        ("TABLE t", ReplicaOk),
        ("table ONLY s.t;", ReplicaOk),
        ("TABLE t; DELETE FROM t", Primary),
        ("TABLE t; TABLE u", Primary),
        ("TABLE pg_stat_activity", Primary),
        ("TABLE t WHERE true", Primary),
        ("TABLE", Primary),
        ("TABLE s.", Primary),
        ("EXPLAIN SELECT * FROM t", ReplicaOk),
        ("EXPLAIN ANALYZE SELECT * FROM t", ReplicaOk),
        (
            "EXPLAIN (ANALYZE, BUFFERS) SELECT count(*) FROM t",
            ReplicaOk,
        ),
        ("EXPLAIN ANALYZE INSERT INTO t VALUES (1)", Primary),
        ("EXPLAIN INSERT INTO t VALUES (1)", Primary),
        ("EXPLAIN ANALYZE SELECT nextval('s')", Primary),
    ]);
}

#[test]
fn ctes_are_reads_only_without_data_modifying_statements() {
    check(&[
        ("WITH x AS (SELECT a FROM t) SELECT * FROM x", ReplicaOk),
        (
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT sum(n) FROM r",
            ReplicaOk,
        ),
        ("WITH x AS MATERIALIZED (SELECT 1) SELECT * FROM x", ReplicaOk),
        ("WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM x", Primary),
        ("WITH x AS (INSERT INTO t VALUES (1) RETURNING a) SELECT * FROM x", Primary),
        ("WITH x AS (DELETE FROM t RETURNING a) SELECT count(*) FROM x", Primary),
        ("WITH x AS (SELECT 1), y AS (DELETE FROM t RETURNING a) SELECT * FROM x", Primary),
        ("SELECT * FROM (WITH x AS (SELECT nextval('s')) SELECT * FROM x) s", Primary),
    ]);
}

#[test]
fn locking_and_select_into_go_to_the_primary() {
    check(&[
        ("SELECT * FROM t FOR UPDATE", Primary),
        ("SELECT * FROM t WHERE id = $1 FOR SHARE", Primary),
        // sqlparser 0.64 does not parse these two (so: Primary as well).
        ("SELECT * FROM t FOR NO KEY UPDATE", Primary),
        ("SELECT * FROM t FOR KEY SHARE", Primary),
        ("SELECT * FROM t FOR UPDATE OF t SKIP LOCKED", Primary),
        ("SELECT * FROM (SELECT * FROM t FOR UPDATE) s", Primary),
        ("SELECT * INTO new_t FROM t", Primary),
        ("SELECT 1 INTO TEMP x", Primary),
    ]);
}

#[test]
fn functions_follow_their_volatility() {
    check(&[
        ("SELECT now(), lower(a), upper('x'), length(a) FROM t", ReplicaOk),
        ("SELECT pg_catalog.now()", ReplicaOk),
        ("SELECT * FROM generate_series(1, 10) g", ReplicaOk),
        ("SELECT * FROM unnest(ARRAY[1, 2]) WITH ORDINALITY", ReplicaOk),
        ("SELECT jsonb_build_object('k', metadata__key) FROM entity.entity_metadata", ReplicaOk),
        ("SELECT count(*), sum(a) FILTER (WHERE a > 0) FROM t GROUP BY b HAVING count(*) > 1", ReplicaOk),
        ("SELECT row_number() OVER (PARTITION BY a ORDER BY b), lag(b) OVER w FROM t WINDOW w AS (ORDER BY a)", ReplicaOk),
        ("SELECT string_agg(a, ',' ORDER BY a) FROM t", ReplicaOk),
        ("SELECT public.safe_fn(1)", ReplicaOk),
        ("SELECT to_char(date_trunc('day', now()), 'YYYY')", ReplicaOk),
        ("SELECT * FROM t, LATERAL jsonb_array_elements(t.j) e", ReplicaOk),
        // Constructs, not pg_proc functions.
        ("SELECT coalesce(a, 0), nullif(a, 1), greatest(a, 2), least(a, 3), CASE WHEN a THEN 1 ELSE 2 END FROM t", ReplicaOk),
        ("SELECT CURRENT_TIMESTAMP, current_date, current_user, session_user, localtime(3)", ReplicaOk),
        ("SELECT ARRAY(SELECT a FROM t)", ReplicaOk),
        ("SELECT EXTRACT(epoch FROM now()), substring(a FROM 1 FOR 2), trim(both ' ' FROM a), position('a' IN a) FROM t", ReplicaOk),
        // Volatile, wherever they are called.
        ("SELECT random()", Primary),
        ("SELECT nextval('entity.seq')", Primary),
        ("SELECT currval('s'), lastval()", Primary),
        ("SELECT set_config('app.current_agent_id', 'x', true)", Primary),
        ("SELECT pg_advisory_lock(42)", Primary),
        ("SELECT txid_current()", Primary),
        ("SELECT pg_notify('chan', 'payload')", Primary),
        ("SELECT entity.update_metadata_optimized($1, $2, $3::jsonb, $4)", Primary),
        ("SELECT auth.set_agent_context_from_agent_id($1::uuid)", Primary),
        ("SELECT * FROM public.volatile_fn()", Primary),
        ("SELECT public.volatile_fn()", Primary),
        ("SELECT a FROM t WHERE b > random()", Primary),
        ("SELECT a FROM t ORDER BY random()", Primary),
        ("SELECT a FROM t WHERE a IN (SELECT nextval('s'))", Primary),
        ("SELECT sum(a) OVER (ORDER BY random()) FROM t", Primary),
        ("SELECT count(*) FILTER (WHERE random() > 0.5) FROM t", Primary),
        ("SELECT * FROM t, LATERAL public.volatile_fn() f", Primary),
        ("SELECT coalesce(a, random()) FROM t", Primary),
        ("SELECT CASE WHEN a THEN nextval('s') END FROM t", Primary),
        ("SELECT ARRAY(SELECT random())", Primary),
        ("VALUES (1), (random())", Primary),
        ("SELECT pg_is_in_recovery()", Primary),
        ("SELECT pg_current_wal_lsn()", Primary),
        // Unknown functions are volatile.
        ("SELECT no_such_fn(1)", Primary),
        ("SELECT public.no_such_fn(1)", Primary),
        ("SELECT pg_catalog.coalesce(a, 1) FROM t", Primary),
        // Overloaded across schemas: unqualified takes the most volatile.
        ("SELECT lookup(1)", Primary),
        ("SELECT public.lookup(1)", ReplicaOk),
        ("SELECT audit.lookup(1)", Primary),
        // Stable, but answered by the server asked.
        ("SELECT current_setting('app.current_agent_id')", Primary),
        ("SELECT inet_server_addr()", Primary),
        ("SELECT * FROM pg_stat_get_activity(NULL)", Primary),
    ]);
}

#[test]
fn server_local_relations_go_to_the_primary() {
    check(&[
        ("SELECT * FROM pg_stat_activity", Primary),
        ("SELECT * FROM pg_catalog.pg_stat_replication", Primary),
        ("SELECT * FROM pg_locks", Primary),
        ("SELECT * FROM public.pg_stat_statements", Primary),
        ("SELECT * FROM pg_temp.scratch", Primary),
        // Replicated catalogs are fine.
        (
            "SELECT relname FROM pg_catalog.pg_class JOIN pg_namespace n ON true",
            ReplicaOk,
        ),
    ]);
}

#[test]
fn writes_and_everything_else_go_to_the_primary() {
    check(&[
        ("INSERT INTO t VALUES (1)", Primary),
        ("INSERT INTO entity.entity_metadata (general__entity_name, metadata__key, metadata__value, group__sync) VALUES ($1, $2, $3, $4) ON CONFLICT (general__entity_name, metadata__key) DO UPDATE SET metadata__value = EXCLUDED.metadata__value", Primary),
        ("UPDATE t SET a = 1", Primary),
        ("DELETE FROM t", Primary),
        ("MERGE INTO t USING u ON t.a = u.a WHEN MATCHED THEN DELETE", Primary),
        ("CREATE TABLE x (a int)", Primary),
        ("DROP TABLE x", Primary),
        ("TRUNCATE t", Primary),
        ("COPY t TO STDOUT", Primary),
        ("LISTEN chan", Primary),
        ("SET search_path = x", Primary),
        ("PREPARE p AS SELECT 1", Primary),
        ("DECLARE c CURSOR FOR SELECT 1", Primary),
        ("BEGIN", Primary),
        ("VACUUM t", Primary),
        ("", Primary),
        (";", Primary),
        ("SELEC 1", Primary),
        ("SELECT FROM WHERE", Primary),
        ("garbage; more garbage", Primary),
        ("SELECT 'unterminated", Primary),
    ]);
}

#[test]
fn every_statement_of_a_string_must_be_a_read() {
    check(&[
        ("SELECT 1; SELECT 2", ReplicaOk),
        ("SELECT a FROM t; SHOW search_path; VALUES (1);", ReplicaOk),
        ("SELECT 1; UPDATE t SET a = 1", Primary),
        ("SELECT 1; SELECT random()", Primary),
        ("BEGIN; SELECT 1; COMMIT", Primary),
        ("BEGIN READ ONLY; SELECT 1; COMMIT", Primary),
        // sqlparser stops at END; whatever follows must not be ignored.
        ("SELECT 1 END; DELETE FROM t", Primary),
        ("SELECT 1 END DELETE FROM t", Primary),
    ]);
}

#[test]
fn the_hint_forces_the_primary() {
    check(&[
        ("/* pgcoalesce:primary */ SELECT 1", Primary),
        ("SELECT a FROM t /* PgCoalesce:Primary */", Primary),
        ("SELECT /*pgcoalesce:primary*/ 1", Primary),
        ("SELECT 1 -- pgcoalesce:primary", Primary),
        ("/* just a comment */ SELECT 1", ReplicaOk),
        // Not a comment.
        ("SELECT '/* pgcoalesce:primary */'", ReplicaOk),
    ]);
}

#[test]
fn long_operator_chains_route_without_overflowing_the_stack() {
    let volatility = pg_proc();
    let chain = format!("SELECT 1{}", " + a".repeat(900));
    assert_eq!(route(&chain, &volatility), ReplicaOk);
    let with_call = format!("{chain} + random()");
    assert_eq!(route(&with_call, &volatility), Primary);
    // Too deep to parse safely.
    let deep = format!("SELECT 1{}", " + 1".repeat(50_000));
    assert_eq!(route(&deep, &volatility), Primary);
}

#[test]
fn volatility_map_lookup() {
    let map = pg_proc();
    assert!(map.is_safe(None, "now"));
    assert!(map.is_safe(Some("pg_catalog"), "now"));
    assert!(map.is_safe(None, "lower"));
    assert!(map.is_safe(None, "date_trunc"));
    assert!(!map.is_safe(None, "random"));
    assert!(!map.is_safe(None, "unknown_fn"));
    assert!(!map.is_safe(Some("public"), "now"));
    assert!(!map.is_safe(None, "lookup"));
    assert!(map.is_safe(Some("public"), "lookup"));
    // A quoted name: its lower-cased form counts too, but only if safe.
    assert!(map.is_safe(None, "Lower"));
    assert!(!map.is_safe(None, "Random"));
    // Dots inside a part are not keys' separators.
    assert!(!map.is_safe(None, "pg_catalog.now"));
    let mut odd = HashMap::new();
    odd.insert("f".to_owned(), 'x');
    assert!(!odd.is_safe(None, "f"));
}

#[test]
fn transaction_control() {
    use TxControl::*;
    let cases: &[(&str, TxControl)] = &[
        ("BEGIN", Begin { read_only: false }),
        ("begin;", Begin { read_only: false }),
        ("BEGIN READ ONLY", Begin { read_only: true }),
        ("BEGIN WORK READ ONLY", Begin { read_only: true }),
        ("BEGIN TRANSACTION READ WRITE", Begin { read_only: false }),
        ("START TRANSACTION READ ONLY", Begin { read_only: true }),
        ("START TRANSACTION", Begin { read_only: false }),
        (
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            Begin { read_only: true },
        ),
        (
            "BEGIN READ ONLY ISOLATION LEVEL READ COMMITTED NOT DEFERRABLE",
            Begin { read_only: true },
        ),
        // Hot standbys refuse serializable transactions.
        (
            "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE",
            Begin { read_only: false },
        ),
        (
            "BEGIN READ ONLY /* pgcoalesce:primary */",
            Begin { read_only: false },
        ),
        (
            "BEGIN ISOLATION LEVEL READ UNCOMMITTED",
            Begin { read_only: false },
        ),
        ("SET TRANSACTION READ ONLY", SetTransactionReadOnly),
        (
            "set transaction isolation level repeatable read, read only;",
            SetTransactionReadOnly,
        ),
        ("SET TRANSACTION READ WRITE", Other),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", Other),
        ("SET TRANSACTION SNAPSHOT '00000003-0000001B-1'", Other),
        (
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            Other,
        ),
        ("COMMIT", Commit),
        ("commit work", Commit),
        ("END", Commit),
        ("END TRANSACTION;", Commit),
        ("COMMIT AND NO CHAIN", Commit),
        ("COMMIT AND CHAIN", Other),
        ("COMMIT PREPARED 'x'", Other),
        ("ROLLBACK", Rollback),
        ("ABORT", Rollback),
        ("rollback transaction", Rollback),
        ("ROLLBACK AND CHAIN", Other),
        ("ROLLBACK TO SAVEPOINT s", Other),
        ("ROLLBACK PREPARED 'x'", Other),
        ("SAVEPOINT s", Other),
        ("SELECT 1", Other),
        ("BEGIN; SELECT 1", Other),
        ("COMMIT; BEGIN READ ONLY", Other),
        ("BEGIN READ SOMETHING", Other),
        ("BEGIN , READ ONLY", Other),
        ("\"BEGIN\"", Other),
        ("", Other),
        ("BEGIN 'unterminated", Other),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(sql, want)| tx_control(sql) != *want)
        .map(|(sql, want)| format!("{sql}: expected {want:?}, got {:?}", tx_control(sql)))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn never_panics_on_mutated_statements() {
    const PIECES: &[&str] = &[
        "(",
        ")",
        "[",
        "]",
        "'",
        "\"",
        "$$",
        "$1",
        ";",
        ",",
        "::",
        "/*",
        "*/",
        "--",
        "\n",
        " ",
        "SELECT",
        "FROM",
        "WHERE",
        "WITH",
        "AS",
        "UPDATE",
        "FOR",
        "INTO",
        "VALUES",
        "UNION",
        "random()",
        "now()",
        "nextval('s')",
        "E'\\'",
        "U&'",
        "\0",
        "é",
        "🦀",
        "ARRAY[",
        "CASE",
        "END",
        "BEGIN",
        "READ ONLY",
        "LATERAL",
        "OVER (",
        "FILTER (WHERE",
        "pgcoalesce:primary",
    ];
    let seeds = [
        "SELECT metadata__key, metadata__value FROM entity.entity_metadata WHERE general__entity_name = $1 AND metadata__key IN ($2, $3)",
        "WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM x FOR UPDATE",
        "SELECT count(*) FILTER (WHERE a > 0) OVER (PARTITION BY b ORDER BY c ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM t, LATERAL generate_series(1, a) g",
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SELECT ARRAY(SELECT coalesce(a, 1) FROM t); COMMIT",
        "EXPLAIN (ANALYZE) SELECT entity.update_metadata_optimized($1, $2, $3::jsonb, $4)",
        "SELECT CASE WHEN a THEN substring(b FROM 1 FOR 2) ELSE trim(both ' ' FROM c) END /* c */ FROM (VALUES (1)) v(a)",
    ];
    let volatility = pg_proc();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut tried, mut replica_ok) = (0usize, 0usize);
    for seed in seeds {
        for _ in 0..400 {
            let mut text = seed.to_owned();
            for _ in 0..1 + rng.below(6) {
                let mut at = rng.below(text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                match rng.below(4) {
                    0 => text.insert_str(at, PIECES[rng.below(PIECES.len())]),
                    1 => {
                        let mut end = (at + 1 + rng.below(8)).min(text.len());
                        while !text.is_char_boundary(end) {
                            end -= 1;
                        }
                        text.replace_range(at..end, "");
                    }
                    2 => text.truncate(at),
                    _ => {
                        let copy = text[at..].to_owned();
                        text.push_str(&copy);
                    }
                }
            }
            let routed = route(&text, &volatility);
            let _ = tx_control(&text);
            // The hint always wins, whatever else the text has become.
            let hinted = format!("/* pgcoalesce:primary */ {text}");
            assert_eq!(route(&hinted, &volatility), Primary, "{hinted}");
            // A read stays a read only as long as nothing else joins it.
            if routed == ReplicaOk {
                for tail in ["\n; SELECT random()", "\n; UPDATE t SET a = 1"] {
                    let joined = format!("{text}{tail}");
                    assert_eq!(route(&joined, &volatility), Primary, "{joined}");
                }
                replica_ok += 1;
            }
            tried += 1;
        }
    }
    assert_eq!(tried, seeds.len() * 400);
    // The mutations must leave some reads intact, or the check above is idle.
    assert!(replica_ok > 0);
}

#[test]
fn never_panics_on_pathological_input() {
    let volatility = pg_proc();
    let inputs = [
        "(".repeat(100_000),
        format!("SELECT {}1{}", "(".repeat(5_000), ")".repeat(5_000)),
        format!("SELECT {}", "ARRAY[".repeat(20_000)),
        format!("SELECT 1{}", " UNION SELECT 1".repeat(5_000)),
        format!("SELECT {}", "NOT ".repeat(50_000)),
        format!("SELECT {}", "-".repeat(50_000)),
        format!("SELECT a{}", "::int".repeat(20_000)),
        format!("SELECT a{}", "[1]".repeat(20_000)),
        "/* never closed".to_owned(),
        "SELECT $$ never closed".to_owned(),
        "\0\0\0".to_owned(),
        "SELECT '\u{feff}'".to_owned(),
        ";".repeat(10_000),
    ];
    for input in &inputs {
        let routed = route(input, &volatility);
        assert!(matches!(routed, Primary | ReplicaOk));
        let _ = tx_control(input);
    }
    // The balanced nesting within the parser's limits still routes.
    assert_eq!(route("SELECT ((((((1))))))", &volatility), ReplicaOk);
}
