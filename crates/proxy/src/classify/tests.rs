//! Names found by the one walk (`crate::sql_facts`) in every place a
//! statement can hold them; the integration tests in `tests/classify.rs`
//! cover recognition.

use super::mentions;

/// Asserts `sql` mentions exactly `names`.
fn exactly(sql: &str, names: &[&str]) {
    assert_eq!(
        mentions(sql),
        Some(names.iter().map(|n| n.to_string()).collect()),
        "{sql}"
    );
}

/// Asserts `sql` mentions at least `names` (statements kept as text list
/// every word).
fn at_least(sql: &str, names: &[&str]) {
    let found = mentions(sql).unwrap_or_else(|| panic!("unparsed: {sql}"));
    for name in names {
        assert!(
            found.iter().any(|f| f == name),
            "{sql}: {name} not in {found:?}"
        );
    }
}

#[test]
fn functions_anywhere_in_a_query() {
    exactly("SELECT * FROM f()", &["f"]);
    exactly("SELECT * FROM s.f(1, g(2)) AS x(a int)", &["f", "g"]);
    exactly("SELECT * FROM t, LATERAL h(t.a) x", &["h", "t"]);
    exactly(
        "SELECT row_number() OVER (PARTITION BY f(a) ORDER BY g(b) ROWS BETWEEN h(1) PRECEDING AND CURRENT ROW) FROM t",
        &["f", "g", "h", "row_number", "t"],
    );
    exactly(
        "SELECT sum(a) OVER w FROM t WINDOW w AS (PARTITION BY f(a) ORDER BY g(b))",
        &["f", "g", "sum", "t"],
    );
    exactly(
        "SELECT a FROM t ORDER BY f(a) LIMIT g(1) OFFSET h(2)",
        &["f", "g", "h", "t"],
    );
    exactly(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY f(a)) FROM t GROUP BY g(b) HAVING h(1)",
        &["f", "g", "h", "percentile_cont", "t"],
    );
    exactly(
        "SELECT DISTINCT ON (f(a)) a[g(1)], (h(a)).x FROM t JOIN (u JOIN v ON k(u.a)) ON true",
        &["f", "g", "h", "k", "t", "u", "v"],
    );
    exactly(
        "SELECT CASE f(a) WHEN g(1) THEN h(2) END, x IN (SELECT k(1)) FROM (VALUES (m(1))) v(x)",
        &["f", "g", "h", "k", "m"],
    );
}

#[test]
fn relations_and_functions_in_dml() {
    exactly(
        "INSERT INTO t (a) VALUES (DEFAULT) ON CONFLICT (a) DO UPDATE SET a = f(EXCLUDED.a) WHERE g(t.a) RETURNING h(a)",
        &["f", "g", "h", "t"],
    );
    exactly(
        "INSERT INTO s.t SELECT f(x) FROM u JOIN v ON w(u.a) = v.a",
        &["f", "t", "u", "v", "w"],
    );
    exactly(
        "UPDATE t SET a = f(u.b) FROM u JOIN v USING (k) WHERE g(t.a) RETURNING h(t.a)",
        &["f", "g", "h", "t", "u", "v"],
    );
    exactly(
        "DELETE FROM t USING u, v WHERE f(t.a) = u.a RETURNING g(1)",
        &["f", "g", "t", "u", "v"],
    );
    exactly(
        "MERGE INTO t USING (SELECT f(a) a FROM u) s ON t.a = s.a WHEN MATCHED AND g(s.a) THEN UPDATE SET b = h(s.a) WHEN NOT MATCHED THEN INSERT (a) VALUES (k(s.a))",
        &["f", "g", "h", "k", "t", "u"],
    );
    exactly(
        "WITH x AS (DELETE FROM t RETURNING f(a)) INSERT INTO u SELECT * FROM x",
        &["f", "t", "u", "x"],
    );
}

#[test]
fn names_of_other_walked_statements() {
    exactly("CALL p(f(1), (SELECT g(a) FROM t))", &["f", "g", "p", "t"]);
    exactly("COPY (SELECT f(a) FROM t) TO STDOUT", &["f", "t"]);
    exactly("COPY s.t (a, b) FROM STDIN", &["t"]);
    exactly("LOCK TABLE t, s.u IN SHARE MODE", &["t", "u"]);
    exactly("TRUNCATE ONLY t, u RESTART IDENTITY", &["t", "u"]);
    exactly("DROP TABLE t, s.u CASCADE", &["t", "u"]);
    exactly("CREATE VIEW v AS SELECT f(a) FROM t", &["f", "t", "v"]);
    exactly("EXPLAIN ANALYZE SELECT f(a) FROM t", &["f", "t"]);
    exactly("PREPARE q AS INSERT INTO t VALUES (g($1))", &["g", "t"]);
    exactly(
        "DECLARE c CURSOR WITH HOLD FOR SELECT f(a) FROM t",
        &["f", "t"],
    );
    exactly("SELECT 1 UNION TABLE s.u", &["u"]);
    exactly("SELECT * FROM t, u FOR UPDATE OF u", &["t", "u"]);
}

/// Constructs the former walker rendered word by word are now taken apart:
/// the names are there, the keywords and columns are not.
#[test]
fn formerly_rendered_constructs_are_precise() {
    exactly("SELECT f(a) INTO TEMP new_t FROM t", &["f", "new_t", "t"]);
    exactly(
        "MERGE INTO t USING u ON t.a = u.a WHEN MATCHED THEN DELETE RETURNING f(1)",
        &["f", "t", "u"],
    );
    exactly(
        "CREATE INDEX i ON t USING gin (f(a) jsonb_path_ops) WHERE g(c)",
        &["f", "g", "t"],
    );
    // SHOW reads a setting, no relation.
    exactly("SHOW search_path", &[]);
}

/// What the former walkers did not see.
#[test]
fn formerly_missed_names() {
    // `unnest(...)` in FROM is sqlparser's UNNEST factor, not a call.
    exactly(
        "SELECT * FROM unnest(ARRAY[f(1)]) WITH ORDINALITY",
        &["f", "unnest"],
    );
    // Expressions in EXPLAIN's options.
    exactly("EXPLAIN (ANALYZE f()) SELECT 1", &["f"]);
}

#[test]
fn constructs_kept_as_text_list_every_word() {
    at_least(
        "CREATE TABLE t (a int DEFAULT f(), b int CHECK (g(b) > 0))",
        &["t", "f", "g"],
    );
    at_least("ALTER TABLE t ADD COLUMN b int DEFAULT f()", &["t", "f"]);
    at_least(
        "SELECT * FROM t TABLESAMPLE system_rows(10)",
        &["t", "system_rows"],
    );
    at_least("EXECUTE p(f(1))", &["p", "f"]);
}
