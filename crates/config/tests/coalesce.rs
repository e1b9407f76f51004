//! The `coalesce` section: parsing every field, defaults, identifier
//! folding, each validation error, `rules_for`, and the reference rules
//! shipped in `config/pgcoalesce.yaml`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{assert_invalid, parse, parse_err};

use config::{load, AckMode, CoalesceRule, Config, ConfigError};

/// Users and databases every snippet below needs: databases `app` and `logs`.
const BASE: &str = "\
users:
  - name: app
    password: secret
databases:
  - name: app
    host: db.internal
  - name: logs
    host: logs.internal
";

/// The reference flush statement of the entity store.
const BATCH_FLUSH: &str = "SELECT entity.update_metadata_batch($1::text[], $2::text[], \
                           $3::text[]::jsonb[], $4::text[])";

/// `BASE` followed by `coalesce_section` (which starts with `coalesce:`).
fn with_rules(coalesce_section: &str) -> String {
    format!("{BASE}{coalesce_section}")
}

/// A valid function rule for the entity store, to break one field at a time.
fn function_rule() -> CoalesceRule {
    CoalesceRule {
        name: "meta".into(),
        function: Some("entity.update_metadata_optimized".into()),
        arguments: ["p_entity_name", "p_key", "p_value", "p_sync_group"]
            .map(String::from)
            .to_vec(),
        defaults: BTreeMap::from([("p_sync_group".into(), Some("public.NORMAL".into()))]),
        key: vec!["p_entity_name".into(), "p_key".into()],
        writes: vec!["entity.entity_metadata".into()],
        flush: Some(BATCH_FLUSH.into()),
        ..CoalesceRule::default()
    }
}

/// A valid table rule for the entity store, to break one field at a time.
fn table_rule() -> CoalesceRule {
    CoalesceRule {
        name: "meta_insert".into(),
        table: Some("entity.entity_metadata".into()),
        key: vec!["general__entity_name".into(), "metadata__key".into()],
        ..CoalesceRule::default()
    }
}

/// A valid config (from `BASE`) holding exactly `rules`.
fn config_with(rules: Vec<CoalesceRule>) -> Config {
    let mut config = parse(BASE);
    config.coalesce = rules;
    config
}

/// Validates a config holding just `rule`, expecting an error on `field`.
fn assert_rule_invalid(rule: CoalesceRule, field: &str, reason: &str) {
    match config_with(vec![rule]).validate() {
        Ok(()) => panic!("expected {field} to be rejected"),
        Err(err) => assert_invalid(&err, field, reason),
    }
}

#[test]
fn full_function_rule_parses_every_field() {
    let config = parse(&with_rules(
        "\
coalesce:
  - name: meta
    database: app
    function: Entity.Update_Metadata_Optimized
    arguments: [P_Entity_Name, p_key, p_value, p_sync_group, p_note]
    defaults:
      P_SYNC_GROUP: public.NORMAL
      p_note: null
    key: [p_entity_name, P_KEY]
    writes: [Entity.Entity_Metadata, audit_log]
    flush: SELECT entity.update_metadata_batch2($1::text[], $2::text[], $3::text[]::jsonb[], $4::text[], $5::text[])
    ack: immediate
    flush_interval: 10ms
    max_batch: 100
    max_pending: 1000
    pending_wait_timeout: 1m
    rejects_file: /var/lib/pgcoalesce/rejects.jsonl
",
    ));
    let expected = CoalesceRule {
        name: "meta".into(),
        database: Some("app".into()),
        function: Some("entity.update_metadata_optimized".into()),
        table: None,
        arguments: [
            "p_entity_name",
            "p_key",
            "p_value",
            "p_sync_group",
            "p_note",
        ]
        .map(String::from)
        .to_vec(),
        defaults: BTreeMap::from([
            ("p_sync_group".into(), Some("public.NORMAL".into())),
            ("p_note".into(), None),
        ]),
        key: vec!["p_entity_name".into(), "p_key".into()],
        writes: vec!["entity.entity_metadata".into(), "audit_log".into()],
        flush: Some(
            "SELECT entity.update_metadata_batch2($1::text[], $2::text[], \
             $3::text[]::jsonb[], $4::text[], $5::text[])"
                .into(),
        ),
        version_column: None,
        ack: AckMode::Immediate,
        flush_interval: Duration::from_millis(10),
        max_batch: 100,
        max_pending: 1000,
        pending_wait_timeout: Duration::from_secs(60),
        rejects_file: Some(PathBuf::from("/var/lib/pgcoalesce/rejects.jsonl")),
    };
    assert_eq!(config.coalesce, vec![expected]);
    let rule = &config.coalesce[0];
    assert!(rule.is_function());
    assert_eq!(rule.target(), "entity.update_metadata_optimized");
    assert_eq!(rule.argument_index("p_sync_group"), Some(3));
    assert_eq!(rule.argument_index("P_KEY"), None);
}

#[test]
fn full_table_rule_parses_every_field() {
    let config = parse(&with_rules(
        "\
coalesce:
  - name: meta_insert
    database: logs
    table: Entity.Entity_Metadata
    arguments: []
    defaults: {}
    key: [general__entity_name, Metadata__Key]
    writes: [entity.entities]
    version_column: Metadata__Written_At_Us
    ack: flushed
    flush_interval: 1s
    max_batch: 1
    max_pending: 1
    pending_wait_timeout: 0
",
    ));
    let expected = CoalesceRule {
        name: "meta_insert".into(),
        database: Some("logs".into()),
        function: None,
        table: Some("entity.entity_metadata".into()),
        arguments: vec![],
        defaults: BTreeMap::new(),
        key: vec!["general__entity_name".into(), "metadata__key".into()],
        writes: vec!["entity.entities".into()],
        flush: None,
        version_column: Some("metadata__written_at_us".into()),
        ack: AckMode::Flushed,
        flush_interval: Duration::from_secs(1),
        max_batch: 1,
        max_pending: 1,
        pending_wait_timeout: Duration::ZERO,
        rejects_file: None,
    };
    assert_eq!(config.coalesce, vec![expected]);
    assert!(!config.coalesce[0].is_function());
    assert!(config.coalesce[0].takes_stamps());
    assert_eq!(config.coalesce[0].target(), "entity.entity_metadata");
}

#[test]
fn omitted_fields_take_their_defaults() {
    let config = parse(BASE);
    assert!(config.coalesce.is_empty());
    assert!(config.rules_for("app").is_empty());
    assert_eq!(Config::default().coalesce, vec![]);

    let config = parse(&with_rules(
        "\
coalesce:
  - name: meta_insert
    table: metadata
    key: [id]
",
    ));
    let rule = &config.coalesce[0];
    assert_eq!(rule.database, None);
    assert_eq!(rule.table.as_deref(), Some("metadata"));
    assert!(rule.arguments.is_empty() && rule.defaults.is_empty());
    assert!(rule.writes.is_empty());
    assert_eq!(rule.flush, None);
    assert_eq!(rule.ack, AckMode::Flushed);
    assert_eq!(rule.flush_interval, Duration::from_millis(2));
    assert_eq!(rule.max_batch, 5000);
    assert_eq!(rule.max_pending, 100_000);
    assert_eq!(rule.pending_wait_timeout, Duration::from_secs(5));
    assert_eq!(rule.rejects_file, None);
    let default = CoalesceRule::default();
    assert_eq!(
        (
            default.ack,
            default.flush_interval,
            default.max_batch,
            default.max_pending,
            default.pending_wait_timeout
        ),
        (
            AckMode::Flushed,
            Duration::from_millis(2),
            5000,
            100_000,
            Duration::from_secs(5)
        )
    );
}

#[test]
fn default_values_are_text_and_null_is_sql_null() {
    let config = parse(&with_rules(
        "\
coalesce:
  - name: f
    function: set_value
    arguments: [k, a, b, c, d, e]
    defaults:
      a: 42
      b: true
      c: ''
      d: ~
      e: \"null\"
    key: [k]
    flush: SELECT set_values($1, $2, $3, $4, $5, $6)
",
    ));
    let defaults = &config.coalesce[0].defaults;
    assert_eq!(defaults["a"].as_deref(), Some("42"));
    assert_eq!(defaults["b"].as_deref(), Some("true"));
    assert_eq!(defaults["c"].as_deref(), Some(""));
    assert_eq!(defaults["d"], None);
    assert_eq!(defaults["e"].as_deref(), Some("null"));
}

#[test]
fn ack_mode_spellings() {
    for (mode, text) in [
        (AckMode::Flushed, "flushed"),
        (AckMode::Immediate, "immediate"),
    ] {
        assert_eq!(mode.as_str(), text);
        assert_eq!(mode.to_string(), text);
        assert_eq!(text.parse::<AckMode>(), Ok(mode));
    }
    assert_eq!(AckMode::default(), AckMode::Flushed);
    let err = "later".parse::<AckMode>().unwrap_err();
    assert!(
        err.contains("\"later\"") && err.contains("flushed, immediate"),
        "{err}"
    );
}

#[test]
fn reference_rules_ship_in_the_config_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/pgcoalesce.yaml");
    let config = load(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    // The reference rules carry the cross-proxy last-write-wins guard.
    let function = CoalesceRule {
        name: "entity_metadata_function".into(),
        database: Some("pgcoalesce".into()),
        flush: Some(
            "SELECT entity.update_metadata_batch($1::text[], $2::text[], $3::text[]::jsonb[], \
             $4::text[], $5::text[]::bigint[])"
                .into(),
        ),
        ..function_rule()
    };
    let table = CoalesceRule {
        name: "entity_metadata_upsert".into(),
        database: Some("pgcoalesce".into()),
        version_column: Some("metadata__written_at_us".into()),
        ..table_rule()
    };
    assert!(function.takes_stamps() && table.takes_stamps());
    assert_eq!(config.coalesce, vec![function, table]);
    assert_eq!(config.rules_for("pgcoalesce").len(), 2);
}

#[test]
fn rules_for_selects_by_database() {
    let config = parse(&with_rules(
        "\
coalesce:
  - name: everywhere
    table: a
    key: [id]
  - name: only_app
    database: app
    table: b
    key: [id]
  - name: only_logs
    database: logs
    table: b
    key: [id]
",
    ));
    let names = |db: &str| -> Vec<String> {
        config
            .rules_for(db)
            .into_iter()
            .map(|rule| rule.name.clone())
            .collect()
    };
    assert_eq!(names("app"), ["everywhere", "only_app"]);
    assert_eq!(names("logs"), ["everywhere", "only_logs"]);
    assert_eq!(names("other"), ["everywhere"]);
    assert!(config.coalesce[1].applies_to("app") && !config.coalesce[1].applies_to("logs"));
}

#[test]
fn unknown_keys_and_bad_values_are_parse_errors_with_position() {
    let err = parse_err(&with_rules(
        "\
coalesce:
  - name: meta_insert
    table: metadata
    keys: [id]
",
    ));
    match &err {
        ConfigError::Parse { line, .. } => assert_eq!(*line, Some(12), "{err}"),
        other => panic!("expected Parse, got {other:?}"),
    }
    assert!(err.to_string().contains("keys"), "{err}");

    let err = parse_err(&with_rules(
        "\
coalesce:
  - name: meta_insert
    table: metadata
    key: [id]
    ack: later
",
    ));
    assert!(
        matches!(err, ConfigError::Parse { line: Some(13), .. }),
        "{err}"
    );

    let err = parse_err(&with_rules(
        "\
coalesce:
  - name: meta_insert
    table: metadata
    key: [id]
    flush_interval: 2 weeks
",
    ));
    assert!(
        matches!(err, ConfigError::Parse { line: Some(13), .. }),
        "{err}"
    );
    assert!(err.to_string().contains("2 weeks"), "{err}");

    let err = parse_err(&with_rules(
        "\
coalesce:
  - name: f
    function: f
    arguments: [a, b]
    defaults: {B: x, b: y}
    key: [a]
    flush: SELECT g($1, $2)
",
    ));
    assert!(err.to_string().contains("duplicate"), "{err}");
}

#[test]
fn names_are_unique_and_databases_configured() {
    assert_rule_invalid(
        CoalesceRule {
            name: String::new(),
            ..table_rule()
        },
        "coalesce[0].name",
        "must not be empty",
    );
    let err = config_with(vec![table_rule(), function_rule(), table_rule()])
        .validate()
        .unwrap_err();
    assert_invalid(
        &err,
        "coalesce[2].name",
        "duplicate rule name \"meta_insert\"",
    );
    assert_rule_invalid(
        CoalesceRule {
            database: Some("nope".into()),
            ..table_rule()
        },
        "coalesce[0].database",
        "\"nope\" is not a configured database",
    );
}

#[test]
fn exactly_one_target() {
    assert_rule_invalid(
        CoalesceRule {
            table: Some("entity.entity_metadata".into()),
            ..function_rule()
        },
        "coalesce[0].table",
        "exactly one of function / table",
    );
    assert_rule_invalid(
        CoalesceRule {
            function: None,
            ..function_rule()
        },
        "coalesce[0]",
        "one of function or table is required",
    );
}

#[test]
fn identifiers_are_checked() {
    let cases = [
        ("entity.\"Quoted\"", "quoted identifiers are not supported"),
        ("entity.update metadata", "contains ' '"),
        ("a.b.c", "more than one '.'"),
        ("entity.", "empty part"),
        ("1fn", "must not start with a digit"),
        ("$fn", "must not start with a digit or '$'"),
        ("Entity.Fn", "must be lower-case"),
        ("", "must not be empty"),
    ];
    for (name, reason) in cases {
        assert_rule_invalid(
            CoalesceRule {
                function: Some(name.into()),
                ..function_rule()
            },
            "coalesce[0].function",
            reason,
        );
    }
    assert_rule_invalid(
        CoalesceRule {
            function: Some(format!("s.{}", "x".repeat(64))),
            ..function_rule()
        },
        "coalesce[0].function",
        "limited to 63 bytes",
    );
    assert_rule_invalid(
        CoalesceRule {
            table: Some("public.métadata".into()),
            ..table_rule()
        },
        "coalesce[0].table",
        "contains 'é'",
    );
    // Unqualified names and `$` inside a name are fine.
    config_with(vec![CoalesceRule {
        function: Some("upsert$v2".into()),
        ..function_rule()
    }])
    .validate()
    .expect("unqualified function");
    // Written tables are checked like the target, and unique.
    assert_rule_invalid(
        CoalesceRule {
            writes: vec!["entity.entities".into(), "a.b.c".into()],
            ..table_rule()
        },
        "coalesce[0].writes[1]",
        "more than one '.'",
    );
    assert_rule_invalid(
        CoalesceRule {
            writes: vec!["entities".into(), "entities".into()],
            ..function_rule()
        },
        "coalesce[0].writes[1]",
        "duplicate name \"entities\"",
    );
    // Arguments and key columns cannot be qualified.
    let mut rule = table_rule();
    rule.key[1] = "m.metadata__key".into();
    assert_rule_invalid(rule, "coalesce[0].key[1]", "must not be qualified");
}

#[test]
fn function_rule_arguments_and_defaults() {
    assert_rule_invalid(
        CoalesceRule {
            arguments: vec![],
            defaults: BTreeMap::new(),
            ..function_rule()
        },
        "coalesce[0].arguments",
        "must not be empty",
    );
    let mut rule = function_rule();
    rule.arguments[2] = "p_key".into();
    assert_rule_invalid(rule, "coalesce[0].arguments[2]", "duplicate name \"p_key\"");
    let mut rule = function_rule();
    rule.arguments[1] = "p-key".into();
    assert_rule_invalid(rule, "coalesce[0].arguments[1]", "contains '-'");

    let mut rule = function_rule();
    rule.defaults.insert("p_color".into(), None);
    assert_rule_invalid(
        rule,
        "coalesce[0].defaults.p_color",
        "not one of the rule's arguments",
    );
    let mut rule = function_rule();
    rule.defaults.insert("p_key".into(), Some("k".into()));
    assert_rule_invalid(
        rule,
        "coalesce[0].defaults",
        "argument \"p_value\" follows a defaulted argument",
    );
    let mut rule = function_rule();
    rule.defaults.insert("p_value".into(), Some("\0".into()));
    assert_rule_invalid(
        rule,
        "coalesce[0].defaults.p_value",
        "must not contain NUL bytes",
    );
    // Defaulting every argument, or none, is fine.
    for defaults in [
        BTreeMap::new(),
        ["p_entity_name", "p_key", "p_value", "p_sync_group"]
            .into_iter()
            .map(|name| (name.to_string(), None))
            .collect(),
    ] {
        config_with(vec![CoalesceRule {
            defaults,
            ..function_rule()
        }])
        .validate()
        .expect("valid defaults");
    }
}

#[test]
fn function_rule_key() {
    assert_rule_invalid(
        CoalesceRule {
            key: vec![],
            ..function_rule()
        },
        "coalesce[0].key",
        "must not be empty",
    );
    let mut rule = function_rule();
    rule.key.push("p_key".into());
    assert_rule_invalid(rule, "coalesce[0].key[2]", "duplicate name \"p_key\"");
    let mut rule = function_rule();
    rule.key[1] = "p_color".into();
    assert_rule_invalid(
        rule,
        "coalesce[0].key[1]",
        "\"p_color\" is not one of the rule's arguments",
    );
}

#[test]
fn function_rule_flush_statement() {
    let err = parse_err(&with_rules(
        "\
coalesce:
  - name: meta
    function: entity.update_metadata_optimized
    arguments: [p_entity_name, p_key, p_value]
    key: [p_entity_name, p_key]
",
    ));
    assert_invalid(&err, "coalesce[0].flush", "required for function rules");
    assert_eq!(
        err.to_string(),
        "invalid config: coalesce[0].flush: required for function rules"
    );

    let flush_cases = [
        ("  ", "must not be empty"),
        ("SELECT f($1, $2, $3, '\0')", "must not contain NUL bytes"),
        (
            "SELECT entity.update_metadata_batch($1::text[], $2::text[], $4::text[])",
            "does not use $3 (argument \"p_value\")",
        ),
        (
            "SELECT entity.update_metadata_batch($1, $2, $3, $4, $6)",
            "refers to $6, but parameters are $1..$4 (one text[] per argument) and $5 (the rows' arrival stamps)",
        ),
        ("SELECT f($0, $1, $2, $3, $4)", "refers to $0"),
        (
            "SELECT f($1, $2, $3, $99999999999999999999999)",
            "refers to $",
        ),
        // A placeholder inside a string literal, or a `$` inside a name, is
        // not a parameter.
        ("SELECT f($1, $2, $3, '$4')", "does not use $4"),
        ("SELECT f($1, $2, $3, x$4)", "does not use $4"),
    ];
    for (flush, reason) in flush_cases {
        assert_rule_invalid(
            CoalesceRule {
                flush: Some(flush.into()),
                ..function_rule()
            },
            "coalesce[0].flush",
            reason,
        );
    }
    // Repeats and any order are fine, as are quoted names and literals.
    config_with(vec![CoalesceRule {
        flush: Some("SELECT \"my fn\"($4, $3::jsonb[], $2, $1, $1, 'it''s $9')".into()),
        ..function_rule()
    }])
    .validate()
    .expect("valid flush");
    assert!(!function_rule().takes_stamps());
    // The parameter after the arguments' takes the rows' arrival stamps.
    let stamped = CoalesceRule {
        flush: Some("SELECT f($1, $2, $3, $4, $5::bigint[])".into()),
        ..function_rule()
    };
    config_with(vec![stamped.clone()])
        .validate()
        .expect("valid stamped flush");
    assert!(stamped.takes_stamps());
    assert_rule_invalid(
        CoalesceRule {
            version_column: Some("v".into()),
            ..function_rule()
        },
        "coalesce[0].version_column",
        "only allowed for table rules",
    );
}

#[test]
fn table_rule_fields() {
    assert_rule_invalid(
        CoalesceRule {
            version_column: Some("metadata__key".into()),
            ..table_rule()
        },
        "coalesce[0].version_column",
        "must not be a key column",
    );
    assert_rule_invalid(
        CoalesceRule {
            version_column: Some("a-b".into()),
            ..table_rule()
        },
        "coalesce[0].version_column",
        "contains '-'",
    );
    assert_rule_invalid(
        CoalesceRule {
            arguments: vec!["a".into()],
            ..table_rule()
        },
        "coalesce[0].arguments",
        "only allowed for function rules",
    );
    assert_rule_invalid(
        CoalesceRule {
            defaults: BTreeMap::from([("a".into(), None)]),
            ..table_rule()
        },
        "coalesce[0].defaults",
        "only allowed for function rules",
    );
    assert_rule_invalid(
        CoalesceRule {
            flush: Some("SELECT 1".into()),
            ..table_rule()
        },
        "coalesce[0].flush",
        "not allowed for table rules",
    );
    assert_rule_invalid(
        CoalesceRule {
            key: vec![],
            ..table_rule()
        },
        "coalesce[0].key",
        "must not be empty",
    );
    assert_rule_invalid(
        CoalesceRule {
            key: vec!["id".into(), "id".into()],
            ..table_rule()
        },
        "coalesce[0].key[1]",
        "duplicate name \"id\"",
    );
}

#[test]
fn tuning_ranges() {
    assert_rule_invalid(
        CoalesceRule {
            flush_interval: Duration::ZERO,
            ..table_rule()
        },
        "coalesce[0].flush_interval",
        "must be greater than zero",
    );
    assert_rule_invalid(
        CoalesceRule {
            max_batch: 0,
            ..table_rule()
        },
        "coalesce[0].max_batch",
        "must be at least 1",
    );
    assert_rule_invalid(
        CoalesceRule {
            max_batch: 10,
            max_pending: 9,
            ..table_rule()
        },
        "coalesce[0].max_pending",
        "must be at least max_batch (10)",
    );
    assert_rule_invalid(
        CoalesceRule {
            rejects_file: Some("rejects.jsonl".into()),
            ..table_rule()
        },
        "coalesce[0].rejects_file",
        "only used with ack: immediate",
    );
    assert_rule_invalid(
        CoalesceRule {
            ack: AckMode::Immediate,
            rejects_file: Some(PathBuf::new()),
            ..table_rule()
        },
        "coalesce[0].rejects_file",
        "must not be empty",
    );
    config_with(vec![CoalesceRule {
        ack: AckMode::Immediate,
        rejects_file: Some("rejects.jsonl".into()),
        ..table_rule()
    }])
    .validate()
    .expect("immediate with a rejects file");
}

#[test]
fn one_rule_per_target_and_database() {
    let on = |name: &str, database: Option<&str>| CoalesceRule {
        name: name.into(),
        database: database.map(String::from),
        ..table_rule()
    };
    // Different databases: fine. Same database, or one for all: ambiguous.
    config_with(vec![on("a", Some("app")), on("b", Some("logs"))])
        .validate()
        .expect("disjoint databases");
    for (first, second) in [
        (Some("app"), Some("app")),
        (None, Some("logs")),
        (Some("logs"), None),
        (None, None),
    ] {
        let err = config_with(vec![on("a", first), on("b", second)])
            .validate()
            .unwrap_err();
        assert_invalid(
            &err,
            "coalesce[1].table",
            "entity.entity_metadata is already coalesced by rule \"a\"",
        );
    }
    // A function rule and a table rule never clash.
    config_with(vec![function_rule(), table_rule()])
        .validate()
        .expect("function and table rules");
    let err = config_with(vec![
        function_rule(),
        CoalesceRule {
            name: "again".into(),
            ..function_rule()
        },
    ])
    .validate()
    .unwrap_err();
    assert_invalid(
        &err,
        "coalesce[1].function",
        "already coalesced by rule \"meta\"",
    );
}
