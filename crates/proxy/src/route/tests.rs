//! The route's decision over the one walk's facts: writes, locks and calls
//! are found wherever a read can hold them, and the walk's recursion stays
//! within a tokio worker's stack. The integration tests in `tests/route.rs`
//! cover the rules themselves.

use std::collections::HashMap;

use super::{route, Route};

/// A few functions as the loader keys them.
fn volatility() -> HashMap<String, char> {
    [
        ("now", 's'),
        ("lower", 'i'),
        ("random", 'v'),
        ("generate_series", 'i'),
        ("unnest", 'i'),
        ("count", 'i'),
        ("sum", 'i'),
        ("string_agg", 'i'),
        ("percentile_cont", 'i'),
        ("row_number", 'i'),
    ]
    .into_iter()
    .map(|(name, volatility)| (name.to_owned(), volatility))
    .collect()
}

fn check(cases: &[(&str, Route)]) {
    let volatility = volatility();
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(sql, want)| route(sql, &volatility) != *want)
        .map(|(sql, want)| format!("{sql}\n    expected {want:?}"))
        .collect();
    assert!(wrong.is_empty(), "misrouted:\n{}", wrong.join("\n"));
}

#[test]
fn volatile_calls_are_found_everywhere() {
    use Route::Primary;
    check(&[
        (
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY random()) FROM t",
            Primary,
        ),
        (
            "SELECT string_agg(a, ',' ORDER BY random()) FROM t",
            Primary,
        ),
        ("SELECT a FROM t LIMIT random()", Primary),
        ("SELECT a FROM t OFFSET random()", Primary),
        ("SELECT DISTINCT ON (random()) a FROM t", Primary),
        ("SELECT a FROM t GROUP BY random()", Primary),
        ("SELECT a FROM t GROUP BY a HAVING random() > 0", Primary),
        (
            "SELECT * FROM t JOIN (u JOIN v ON random() > 0) ON true",
            Primary,
        ),
        ("SELECT * FROM generate_series(1, random()::int)", Primary),
        ("SELECT * FROM unnest(ARRAY[random()])", Primary),
        ("SELECT a[random()] FROM t", Primary),
        (
            "SELECT row_number() OVER w FROM t WINDOW w AS (ORDER BY random())",
            Primary,
        ),
        ("SELECT * FROM (VALUES (random())) v", Primary),
        ("SELECT 1 UNION SELECT 2 ORDER BY random()", Primary),
        (
            "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.a = random())",
            Primary,
        ),
        // Even where Postgres would not take a function (EXPLAIN's options).
        ("EXPLAIN (ANALYZE random()) SELECT 1", Primary),
        // Words that are constructs in an expression are calls in FROM.
        ("SELECT * FROM localtime(3)", Primary),
    ]);
}

#[test]
fn writes_and_locks_are_found_at_any_depth() {
    use Route::{Primary, ReplicaOk};
    check(&[
        ("SELECT * FROM t WHERE a IN (SELECT b FROM u FOR UPDATE)", Primary),
        ("WITH x AS (SELECT * FROM t FOR SHARE) SELECT * FROM x", Primary),
        ("SELECT (SELECT a FROM t FOR UPDATE)", Primary),
        ("EXPLAIN SELECT * FROM t FOR UPDATE", Primary),
        ("EXPLAIN WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", Primary),
        (
            "SELECT * FROM (WITH y AS (UPDATE t SET a = 1 RETURNING a) SELECT * FROM y) s",
            Primary,
        ),
        (
            "WITH x AS (MERGE INTO t USING u ON true WHEN MATCHED THEN DELETE RETURNING *) SELECT * FROM x",
            Primary,
        ),
        ("SELECT a INTO TEMP x FROM t UNION SELECT 1", Primary),
        ("SELECT 1 UNION TABLE pg_locks", Primary),
        ("SELECT 1 UNION TABLE u", ReplicaOk),
        ("SELECT * FROM t TABLESAMPLE SYSTEM (10)", Primary),
    ]);
}

/// Long chains near `classify::MAX_NESTING`, walked (recursively) on a
/// 2 MiB stack like a tokio worker's.
#[test]
fn deep_trees_fit_a_worker_stack() {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            let volatility = volatility();
            for (n, op) in [
                (990, "+"),
                (490, " AND "),
                (490, "::int"),
                (990, " UNION SELECT "),
            ] {
                let sql = format!("SELECT * FROM t WHERE {}", vec!["a"; n].join(op));
                assert_eq!(route(&sql, &volatility), Route::ReplicaOk, "{op}");
                let sql = format!("{sql} AND random() > 0");
                assert_eq!(route(&sql, &volatility), Route::Primary, "{op}");
            }
        })
        .expect("spawn")
        .join()
        .expect("no overflow");
}
