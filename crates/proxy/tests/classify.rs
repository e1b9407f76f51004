//! Statement classification: the reference upsert shapes, their near misses,
//! the names other statements mention, and robustness on arbitrary input.

use proxy::classify::*;

const CALL: &str = "SELECT entity.update_metadata_optimized($1, $2, $3::jsonb, $4)";
const INSERT: &str = "INSERT INTO entity.entity_metadata (general__entity_name, metadata__key, metadata__value, group__sync) VALUES ($1, $2, $3, $4) ON CONFLICT (general__entity_name, metadata__key) DO UPDATE SET metadata__value = EXCLUDED.metadata__value";

fn rules() -> Vec<RuleShape> {
    let names = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    vec![
        RuleShape {
            function: Some("entity.update_metadata_optimized".into()),
            table: None,
            arguments: names(&[
                "p_entity_name",
                "p_metadata_key",
                "p_metadata_value",
                "p_sync_group",
            ]),
            defaults: vec![("p_sync_group".into(), Some("public.NORMAL".into()))],
            key: names(&["p_entity_name", "p_metadata_key"]),
        },
        RuleShape {
            function: None,
            table: Some("entity.entity_metadata".into()),
            arguments: vec![],
            defaults: vec![],
            key: names(&["general__entity_name", "metadata__key"]),
        },
    ]
}

fn param(index: usize, cast: Option<&str>) -> ValueSource {
    ValueSource::Param {
        index,
        cast: cast.map(str::to_owned),
    }
}

fn literal(text: Option<&str>, cast: Option<&str>) -> ValueSource {
    ValueSource::Literal {
        text: text.map(str::to_owned),
        cast: cast.map(str::to_owned),
    }
}

fn upsert(sql: &str) -> Template {
    match classify(sql, &rules()) {
        Classified::Upsert(template) => template,
        other => panic!("not recognized: {sql}\n{other:?}"),
    }
}

/// Asserts `sql` is not recognized and mentions every one of `names`.
fn mentions_all(sql: &str, names: &[&str]) {
    match classify(sql, &rules()) {
        Classified::Mentions(found) => {
            for name in names {
                assert!(
                    found.iter().any(|f| f == name),
                    "{sql}: {name} not in {found:?}"
                );
            }
            assert_eq!(mentions(sql), Some(found), "{sql}");
        }
        other => panic!("expected Mentions for {sql}, got {other:?}"),
    }
}

fn call_columns() -> Vec<String> {
    rules()[0].arguments.clone()
}

#[test]
fn reference_function_call() {
    assert_eq!(
        upsert(CALL),
        Template {
            rule: 0,
            columns: call_columns(),
            values: vec![
                param(0, None),
                param(1, None),
                param(2, Some("jsonb")),
                param(3, None)
            ],
            key: vec![0, 1],
            reply: Reply::FunctionRow {
                column: "update_metadata_optimized".into()
            },
            update: None,
            table_alias: None,
            params: 4,
        }
    );
}

#[test]
fn reference_insert() {
    assert_eq!(
        upsert(INSERT),
        Template {
            rule: 1,
            columns: vec![
                "general__entity_name".into(),
                "metadata__key".into(),
                "metadata__value".into(),
                "group__sync".into()
            ],
            values: vec![
                param(0, None),
                param(1, None),
                param(2, None),
                param(3, None)
            ],
            key: vec![0, 1],
            reply: Reply::Insert,
            update: Some(UpdateAction {
                assignments: "metadata__value = EXCLUDED.metadata__value".into(),
                condition: None,
            }),
            table_alias: None,
            params: 4,
        }
    );
}

#[test]
fn literal_function_call_with_comments() {
    let sql = "/* from the app */ SELECT entity.update_metadata_optimized('e1', 'k1', '{\"x\": 1}'::jsonb, 'public.NORMAL'); -- done\n";
    let template = upsert(sql);
    assert_eq!(
        template.values,
        vec![
            literal(Some("e1"), None),
            literal(Some("k1"), None),
            literal(Some("{\"x\": 1}"), Some("jsonb")),
            literal(Some("public.NORMAL"), None),
        ]
    );
    assert_eq!(template.params, 0);
    assert_eq!(template.key, vec![0, 1]);
}

#[test]
fn quoted_and_uppercased_names() {
    for sql in [
        "SELECT \"entity\".\"update_metadata_optimized\"($1, $2, $3, $4)",
        "SELECT ENTITY.Update_Metadata_Optimized($1, $2, $3, $4)",
        "select Entity.\"update_metadata_optimized\"($1,$2,$3,$4);",
    ] {
        assert_eq!(
            upsert(sql).reply,
            Reply::FunctionRow {
                column: "update_metadata_optimized".into()
            },
            "{sql}"
        );
    }
    let aliased = upsert("SELECT entity.update_metadata_optimized($1, $2, $3, $4) AS Done");
    assert_eq!(
        aliased.reply,
        Reply::FunctionRow {
            column: "done".into()
        }
    );
    let quoted = upsert("SELECT entity.update_metadata_optimized($1, $2, $3, $4) \"Done\"");
    assert_eq!(
        quoted.reply,
        Reply::FunctionRow {
            column: "Done".into()
        }
    );

    let insert = upsert(
        "INSERT INTO \"entity\".ENTITY_METADATA (General__Entity_Name, \"metadata__key\", metadata__value) \
         VALUES ($1, $2, $3) ON CONFLICT (METADATA__KEY, general__entity_name) DO UPDATE SET metadata__value = excluded.metadata__value;",
    );
    assert_eq!(
        insert.columns,
        vec!["general__entity_name", "metadata__key", "metadata__value"]
    );
    assert_eq!(insert.key, vec![0, 1]);
    assert_eq!(
        insert.update.map(|u| u.to_string()).as_deref(),
        Some("SET metadata__value = excluded.metadata__value")
    );
}

#[test]
fn omitted_argument_takes_default() {
    let template = upsert("SELECT entity.update_metadata_optimized($1, $2, $3::jsonb)");
    assert_eq!(
        template.values,
        vec![
            param(0, None),
            param(1, None),
            param(2, Some("jsonb")),
            literal(Some("public.NORMAL"), None),
        ]
    );
    assert_eq!(template.columns, call_columns());
    assert_eq!(template.params, 3);
    let literal_call = upsert("SELECT entity.update_metadata_optimized('e', 'k', NULL)");
    assert_eq!(literal_call.values[2], literal(None, None));
    assert_eq!(literal_call.values[3], literal(Some("public.NORMAL"), None));
}

#[test]
fn value_forms() {
    let template = upsert(
        "SELECT entity.update_metadata_optimized(CAST($2 AS uuid), E'a\\nb', 'it''s'::text, $1::\"Sync\".\"Group\")",
    );
    assert_eq!(
        template.values,
        vec![
            param(1, Some("uuid")),
            literal(Some("a\nb"), None),
            literal(Some("it's"), Some("text")),
            param(0, Some("\"Sync\".\"Group\"")),
        ]
    );
    assert_eq!(template.params, 2);
    let template = upsert("SELECT entity.update_metadata_optimized(42, -1.5, TRUE, false)");
    assert_eq!(
        template.values,
        vec![
            literal(Some("42"), None),
            literal(Some("-1.5"), None),
            literal(Some("true"), None),
            literal(Some("false"), None),
        ]
    );
    let template = upsert(
        "SELECT entity.update_metadata_optimized($$x'y$$, 'a\\b', CAST(NULL AS text), jsonb '{}')",
    );
    assert_eq!(
        template.values,
        vec![
            literal(Some("x'y"), None),
            literal(Some("a\\b"), None),
            literal(None, Some("text")),
            literal(Some("{}"), Some("jsonb")),
        ]
    );
    let template = upsert("SELECT entity.update_metadata_optimized($1::varchar(10), $2::text[], $3::timestamp with time zone, $10)");
    assert_eq!(template.values[0], param(0, Some("varchar(10)")));
    assert_eq!(template.values[1], param(1, Some("text[]")));
    assert_eq!(
        template.values[2],
        param(2, Some("timestamp with time zone"))
    );
    assert_eq!(template.params, 10);
}

#[test]
fn insert_with_alias_where_and_literals() {
    let template = upsert(
        "INSERT INTO entity.entity_metadata AS m (metadata__key, metadata__value, general__entity_name, group__sync) \
         VALUES ('k', '{}'::jsonb, $1, NULL) ON CONFLICT (general__entity_name, metadata__key) \
         DO UPDATE SET metadata__value = EXCLUDED.metadata__value, group__sync = coalesce(EXCLUDED.group__sync, m.group__sync) \
         WHERE m.metadata__value IS DISTINCT FROM EXCLUDED.metadata__value",
    );
    assert_eq!(template.rule, 1);
    assert_eq!(template.key, vec![2, 0]);
    assert_eq!(
        template.values,
        vec![
            literal(Some("k"), None),
            literal(Some("{}"), Some("jsonb")),
            param(0, None),
            literal(None, None),
        ]
    );
    assert_eq!(template.table_alias.as_deref(), Some("m"));
    assert_eq!(
        template.update,
        Some(UpdateAction {
            assignments: "metadata__value = EXCLUDED.metadata__value, \
                          group__sync = coalesce(EXCLUDED.group__sync, m.group__sync)"
                .into(),
            condition: Some("m.metadata__value IS DISTINCT FROM EXCLUDED.metadata__value".into()),
        })
    );
    assert_eq!(template.params, 1);
    assert_eq!(template.reply, Reply::Insert);
}

#[test]
fn function_near_misses() {
    let f = "update_metadata_optimized";
    let cases: &[(&str, &[&str])] = &[
        ("SELECT entity.update_metadata_optimized($1,$2,$3,$4), 1", &[f]),
        ("SELECT entity.update_metadata_optimized($1,$2,$3,$4) FROM t", &[f, "t"]),
        ("SELECT entity.update_metadata_optimized(g($1), $2, $3, $4)", &[f, "g"]),
        ("SELECT entity.update_metadata_optimized($1 || 'x', $2, $3, $4)", &[f]),
        ("SELECT entity.update_metadata_optimized((SELECT max(a) FROM u), $2, $3, $4)", &[f, "max", "u"]),
        ("SELECT other.update_metadata_optimized($1,$2,$3,$4)", &[f]),
        ("SELECT update_metadata_optimized($1,$2,$3,$4)", &[f]),
        ("SELECT \"entity.update_metadata_optimized\"($1,$2,$3,$4)", &["entity.update_metadata_optimized"]),
        ("SELECT entity.\"Update_Metadata_Optimized\"($1,$2,$3,$4)", &["Update_Metadata_Optimized"]),
        ("SELECT entity.update_metadata_optimized(p_entity_name => $1, p_metadata_key => $2, p_metadata_value => $3)", &[f]),
        ("SELECT entity.update_metadata_optimized($1, $2)", &[f]),
        ("SELECT entity.update_metadata_optimized($1, $2, $3, $4, $5)", &[f]),
        ("SELECT entity.update_metadata_optimized($0, $2, $3, $4)", &[f]),
        ("SELECT entity.update_metadata_optimized($1::text::jsonb, $2, $3, $4)", &[f]),
        ("SELECT entity.update_metadata_optimized(($1), $2, $3, $4)", &[f]),
        ("SELECT entity.update_metadata_optimized(DISTINCT $1, $2, $3, $4)", &[f]),
        ("SELECT entity.update_metadata_optimized($1, $2, $3, $4)::text", &[f]),
        ("SELECT DISTINCT entity.update_metadata_optimized($1,$2,$3,$4)", &[f]),
        ("SELECT entity.update_metadata_optimized($1,$2,$3,$4) WHERE true", &[f]),
        ("SELECT entity.update_metadata_optimized($1,$2,$3,$4) LIMIT 1", &[f]),
        ("SELECT entity.update_metadata_optimized($1,$2,$3,$4) ORDER BY 1", &[f]),
        ("SELECT entity.update_metadata_optimized($1,$2,$3,$4) GROUP BY 1 HAVING true", &[f]),
        ("SELECT entity.update_metadata_optimized($1,$2,$3,$4) INTO t2", &[f, "t2"]),
        ("WITH x AS (SELECT 1) SELECT entity.update_metadata_optimized($1,$2,$3,$4)", &[f]),
        ("(SELECT entity.update_metadata_optimized($1,$2,$3,$4))", &[f]),
        ("SELECT entity.update_metadata_optimized($1,$2,$3,$4) UNION ALL SELECT 1", &[f]),
        ("SELECT entity.update_metadata_optimized($1,$2,$3,$4); SELECT 1", &[f]),
        ("SELECT entity.update_metadata_optimized($1,$2,$3,$4) FROM generate_series(1,2)", &[f, "generate_series"]),
        ("SELECT count(*) OVER (), entity.update_metadata_optimized($1,$2,$3,$4)", &[f, "count"]),
        ("CALL entity.update_metadata_optimized($1,$2,$3,$4)", &[f]),
        ("PREPARE p AS SELECT entity.update_metadata_optimized($1,$2,$3,$4)", &[f]),
        ("EXPLAIN ANALYZE SELECT entity.update_metadata_optimized($1,$2,$3,$4)", &[f]),
        ("SELECT * FROM entity.update_metadata_optimized($1,$2,$3,$4)", &[f]),
    ];
    for (sql, names) in cases {
        mentions_all(sql, names);
    }
}

#[test]
fn insert_near_misses() {
    let t = "entity_metadata";
    let cols = "(general__entity_name, metadata__key, metadata__value, group__sync)";
    let update = "DO UPDATE SET metadata__value = EXCLUDED.metadata__value";
    let target = "ON CONFLICT (general__entity_name, metadata__key)";
    let cases = [
        format!("{INSERT} RETURNING *"),
        format!("INSERT INTO entity.entity_metadata {cols} VALUES ($1, $2, $3, $4) ON CONFLICT (general__entity_name) {update}"),
        format!("INSERT INTO entity.entity_metadata {cols} VALUES ($1, $2, $3, $4) ON CONFLICT (general__entity_name, metadata__key, group__sync) {update}"),
        format!("INSERT INTO entity.entity_metadata {cols} VALUES ($1, $2, $3, $4) ON CONFLICT ON CONSTRAINT pk {update}"),
        format!("INSERT INTO entity.entity_metadata {cols} VALUES ($1, $2, $3, $4) {target} DO NOTHING"),
        format!("INSERT INTO entity.entity_metadata {cols} VALUES ($1, $2, $3, $4)"),
        format!("INSERT INTO entity.entity_metadata {cols} VALUES ($1, $2, $3, $4), ($5, $6, $7, $8) {target} {update}"),
        format!("INSERT INTO entity.entity_metadata {cols} SELECT $1, $2, $3, $4 WHERE true {target} {update}"),
        format!("INSERT INTO entity.entity_metadata {cols} SELECT * FROM staging {target} {update}"),
        format!("WITH v AS (SELECT 1) INSERT INTO entity.entity_metadata {cols} VALUES ($1, $2, $3, $4) {target} {update}"),
        format!("INSERT INTO entity.entity_metadata VALUES ($1, $2, $3, $4) {target} {update}"),
        format!("INSERT INTO entity.entity_metadata (metadata__key, metadata__value) VALUES ($1, $2) {target} {update}"),
        format!("INSERT INTO entity.entity_metadata {cols} VALUES ($1, $2, DEFAULT, $4) {target} {update}"),
        format!("INSERT INTO entity.entity_metadata {cols} OVERRIDING USER VALUE VALUES ($1, $2, $3, $4) {target} {update}"),
        format!("INSERT INTO entity.entity_metadata {cols} VALUES ($1, lower($2), $3, $4) {target} {update}"),
        format!("INSERT INTO entity.entity_metadata {cols} VALUES ($1, $2, $3) {target} {update}"),
        format!("INSERT INTO entity.entity_metadata (general__entity_name, metadata__key, metadata__key) VALUES ($1, $2, $3) {target} {update}"),
        format!("INSERT INTO entity.entity_metadata {cols} VALUES ($1, $2, $3, $4) {target} {update} WHERE entity_metadata.metadata__value <> $5"),
        format!("INSERT INTO entity.entity_metadata {cols} VALUES ($1, $2, $3, $4) {target} WHERE metadata__key <> '' {update}"),
        format!("INSERT INTO entity_metadata {cols} VALUES ($1, $2, $3, $4) {target} {update}"),
        format!("INSERT INTO other.entity_metadata {cols} VALUES ($1, $2, $3, $4) {target} {update}"),
        format!("INSERT INTO entity.entity_metadata {cols} VALUES ($1, $2, $3, $4) {target} {update} RETURNING metadata__value"),
        format!("INSERT INTO entity.entity_metadata {cols} (VALUES ($1, $2, $3, $4)) {target} {update}"),
        format!("INSERT INTO entity.entity_metadata {cols} VALUES ($1, $2, $3, $4) LIMIT 1 {target} {update}"),
    ];
    for sql in &cases {
        mentions_all(sql, &[t]);
    }
    mentions_all(
        &format!("INSERT INTO entity.entity_metadata {cols} VALUES ($1, $2, $3, $4) {target} DO UPDATE SET metadata__value = f(EXCLUDED.metadata__value) WHERE EXISTS (SELECT 1 FROM audit) RETURNING g(1)"),
        &[t, "f", "audit", "g"],
    );
}

#[test]
fn mentions_of_other_statements() {
    let cases: &[(&str, &[&str])] = &[
        (
            "SELECT * FROM entity.entity_metadata m JOIN entity.entities e USING (general__entity_name) WHERE e.general__entity_name = $1",
            &["entities", "entity_metadata"],
        ),
        ("DELETE FROM entity.entity_metadata WHERE metadata__key = $1", &["entity_metadata"]),
        ("DELETE FROM entity.entities e USING entity.entity_metadata m WHERE e.x = m.x", &["entities", "entity_metadata"]),
        (
            "UPDATE entity.entity_metadata SET metadata__value = now() FROM entity.entities WHERE metadata__key = $1",
            &["entities", "entity_metadata", "now"],
        ),
        ("COPY entity.entity_metadata FROM STDIN", &["entity_metadata"]),
        ("COPY (SELECT * FROM entity.entity_metadata) TO STDOUT", &["entity_metadata"]),
        ("TRUNCATE entity.entity_metadata", &["entity_metadata"]),
        ("TRUNCATE TABLE a, entity.entity_metadata CASCADE", &["a", "entity_metadata"]),
        ("LOCK TABLE entity.entity_metadata IN ACCESS EXCLUSIVE MODE", &["entity_metadata"]),
        ("DROP TABLE IF EXISTS entity.entity_metadata", &["entity_metadata"]),
        ("ALTER TABLE entity.entity_metadata ADD COLUMN x int", &["entity_metadata"]),
        ("CREATE TABLE t2 (a int REFERENCES entity.entity_metadata)", &["t2", "entity_metadata"]),
        ("CREATE VIEW v AS SELECT * FROM entity.entity_metadata", &["v", "entity_metadata"]),
        ("CREATE INDEX ON entity.entity_metadata (metadata__key)", &["entity_metadata"]),
        (
            "WITH x AS (UPDATE entity.entity_metadata SET metadata__value = '{}' RETURNING *) SELECT * FROM x",
            &["entity_metadata", "x"],
        ),
        (
            "WITH RECURSIVE r AS (SELECT 1 UNION SELECT n + 1 FROM r) SELECT * FROM r, LATERAL unnest(ARRAY[1]) u",
            &["r", "unnest"],
        ),
        (
            "SELECT a FROM t WHERE b IN (SELECT g(b) FROM u) AND EXISTS (SELECT 1 FROM v) ORDER BY h(a)",
            &["t", "g", "u", "v", "h"],
        ),
        (
            "SELECT CASE WHEN a THEN f1() ELSE f2() END, sum(x) FILTER (WHERE f3(y)) FROM (SELECT * FROM inner_t) s",
            &["f1", "f2", "sum", "f3", "inner_t"],
        ),
        (
            "MERGE INTO entity.entity_metadata m USING src s ON m.k = s.k WHEN MATCHED THEN UPDATE SET v = f(s.v) WHEN NOT MATCHED THEN INSERT (k) VALUES (s.k)",
            &["entity_metadata", "src", "f"],
        ),
        ("SELECT \"Quoted\".\"MixedCase\"(1) FROM \"Schema\".\"Table\"", &["MixedCase", "Table"]),
        ("DECLARE c CURSOR FOR SELECT * FROM entity.entity_metadata", &["entity_metadata"]),
        ("INSERT INTO log (a) SELECT f(x) FROM entity.entity_metadata", &["log", "f", "entity_metadata"]),
    ];
    for (sql, names) in cases {
        mentions_all(sql, names);
    }
    // Statements without names say so.
    for sql in [
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT s",
        "SELECT 1",
        "",
        "-- nothing",
        ";",
    ] {
        assert_eq!(
            classify(sql, &rules()),
            Classified::Mentions(vec![]),
            "{sql}"
        );
    }
    assert!(matches!(
        classify("SET search_path TO entity, public", &rules()),
        Classified::Mentions(_)
    ));
}

#[test]
fn unparseable_statements() {
    for sql in [
        "SELEC 1",
        "INSERT INTO",
        "SELECT 'unterminated",
        "DO $$ BEGIN PERFORM entity.update_metadata_optimized('a', 'b', 'c'); END $$",
        "SELECT entity.update_metadata_optimized($1,$2,$3,$4) garbage garbage",
        // sqlparser would silently stop at END and drop the DELETE.
        "SELECT entity.update_metadata_optimized($1,$2,$3,$4) END; DELETE FROM entity.entity_metadata",
        "\u{0}\u{1}",
        // A sqlparser 0.64 limitation: INSERT ... SELECT without FROM or WHERE
        // before ON CONFLICT is not parsed (Postgres accepts it).
        "INSERT INTO entity.entity_metadata (a) SELECT $1 ON CONFLICT (a) DO UPDATE SET a = 1",
        "))))",
    ] {
        assert_eq!(classify(sql, &rules()), Classified::Unparsed, "{sql}");
        assert_eq!(mentions(sql), None, "{sql}");
    }
}

#[test]
fn rule_shapes_that_cannot_match_are_skipped() {
    // A key naming an unknown argument, or a missing default, never matches
    // (nor panics); the next rule for the same function still can.
    let mut broken = rules();
    broken[0].key = vec!["nope".into()];
    broken[0].defaults.clear();
    broken.push(rules()[0].clone());
    match classify(
        "SELECT entity.update_metadata_optimized($1, $2, $3)",
        &broken,
    ) {
        Classified::Upsert(template) => assert_eq!(template.rule, 2),
        other => panic!("{other:?}"),
    }
    assert!(matches!(classify(CALL, &[]), Classified::Mentions(_)));
    assert!(matches!(classify(INSERT, &[]), Classified::Mentions(_)));
}

/// Deep operator chains: moderately deep ones are classified, pathological
/// ones are refused before sqlparser builds a tree too deep to drop. Runs on
/// a 2 MiB stack like a tokio worker.
#[test]
fn deep_nesting_does_not_overflow() {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            let chain = |n: usize, op: &str| vec!["f(1)"; n].join(op);
            assert!(matches!(
                classify(&format!("SELECT {}", chain(300, " + ")), &rules()),
                Classified::Mentions(names) if names == ["f"]
            ));
            // Close to MAX_NESTING: parsed, walked and dropped on this stack.
            for (n, op) in [
                (990, "+"),
                (490, " AND "),
                (490, "::int"),
                (990, " UNION SELECT "),
            ] {
                let sql = format!("SELECT * FROM t WHERE {}", vec!["a"; n].join(op));
                assert_eq!(
                    classify(&sql, &rules()),
                    Classified::Mentions(vec!["t".into()]),
                    "{op}"
                );
            }
            for op in ["+", " AND ", " UNION SELECT ", "::int"] {
                let sql = format!("SELECT {}", vec!["1"; 100_000].join(op));
                assert_eq!(classify(&sql, &rules()), Classified::Unparsed, "{op}");
            }
            let parens = format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000));
            assert_eq!(classify(&parens, &rules()), Classified::Unparsed);
            // Wide but flat statements are fine.
            let rows = vec!["($1, $2, $3::jsonb, $4)"; 5_000].join(", ");
            let sql = format!("INSERT INTO entity.entity_metadata (a, b, c, d) VALUES {rows}");
            assert_eq!(
                classify(&sql, &rules()),
                Classified::Mentions(vec!["entity_metadata".into()])
            );
        })
        .unwrap()
        .join()
        .unwrap();
}

/// A small deterministic generator, so failures reproduce.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn never_panics_on_mutated_input() {
    let corpus = [
        CALL,
        INSERT,
        "SELECT entity.update_metadata_optimized('e1', 'k1', '{\"x\": 1}'::jsonb, 'public.NORMAL'); -- c",
        "INSERT INTO entity.entity_metadata AS m (a, b) VALUES (E'\\x41', $$q$$) ON CONFLICT (a) DO UPDATE SET b = m.b WHERE m.b <> EXCLUDED.b",
        "WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM x JOIN y USING (a) WHERE z IN (SELECT f(1))",
        "SELECT CAST($1 AS uuid), U&'d\\0061t', B'101', X'FF', $2::\"T\"[], ARRAY[1,2][1:2], (a).b, a->>'k'",
        "COPY t FROM STDIN; TRUNCATE t; LOCK t; DROP TABLE t; BEGIN; COMMIT",
    ];
    let pieces = [
        "(",
        ")",
        ",",
        ";",
        "'",
        "\"",
        "$",
        "$1",
        "::",
        "E'",
        "$$",
        "--",
        "/*",
        "*/",
        "SELECT",
        "FROM",
        "INSERT",
        "VALUES",
        "ON CONFLICT",
        "DO UPDATE SET",
        "RETURNING",
        "END",
        "UNION",
        "[",
        "]",
        "\\",
        "é",
        "\u{0}",
        " ",
        "\n",
        "ß",
        "𝄞",
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let rules = rules();
    let mut count = 0;
    for base in corpus {
        // Every prefix and suffix at a char boundary.
        for (i, _) in base.char_indices() {
            classify(&base[..i], &rules);
            classify(&base[i..], &rules);
            count += 2;
        }
    }
    for _ in 0..4_000 {
        let mut text: Vec<char> = corpus[rng.below(corpus.len())].chars().collect();
        for _ in 0..=rng.below(6) {
            let at = rng.below(text.len() + 1);
            match rng.below(3) {
                0 if at < text.len() => {
                    text.remove(at);
                }
                1 => {
                    let piece = pieces[rng.below(pieces.len())];
                    for (offset, c) in piece.chars().enumerate() {
                        text.insert(at + offset, c);
                    }
                }
                _ => {
                    let c = char::from_u32(rng.below(0x250) as u32).unwrap_or('?');
                    text.insert(at, c);
                }
            }
        }
        let sql: String = text.into_iter().collect();
        let _ = classify(&sql, &rules);
        let _ = mentions(&sql);
        count += 1;
    }
    for _ in 0..1_000 {
        let len = rng.below(60);
        let sql: String = (0..len)
            .map(|_| pieces[rng.below(pieces.len())])
            .collect::<Vec<_>>()
            .join("");
        let _ = classify(&sql, &rules);
        count += 1;
    }
    assert!(count > 5_000);
}
