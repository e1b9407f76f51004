//! Read splitting in the config: `databases[].replicas`, the `read_split`
//! section, and `Config::apply_replica_urls` (the `--replica URL` flag).

mod common;

use std::time::Duration;

use common::{assert_invalid, parse, parse_err};

use config::{Balancing, Config, ConfigError, Database, ReadSplit, Replica};

const BASE: &str = "\
users:
  - name: app
    password: secret
";

/// `BASE` plus `rest` (databases and other sections).
fn yaml(rest: &str) -> String {
    format!("{BASE}{rest}")
}

/// Asserts `err` is a parse error mentioning `needle`, with a line number.
fn assert_parse(err: &ConfigError, needle: &str) {
    match err {
        ConfigError::Parse { message, line, .. } => {
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
            assert!(line.is_some(), "no line in {err}");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
}

/// Asserts `err` is a replica URL error for URL number `index` (0-based)
/// containing `reason`.
fn assert_url_err(err: &ConfigError, index: usize, reason: &str) {
    match err {
        ConfigError::ReplicaUrl {
            index: i,
            reason: r,
        } => {
            assert_eq!(*i, index, "{err}");
            assert!(r.contains(reason), "reason {r:?} lacks {reason:?}");
        }
        other => panic!("expected ReplicaUrl error, got {other:?}"),
    }
}

#[test]
fn defaults_have_no_replicas_and_documented_read_split() {
    let config = parse(&yaml("databases:\n  - name: app\n    host: db.internal\n"));
    assert!(config.databases[0].replicas.is_empty());
    assert!(Database::new("x", "h", 5432).replicas.is_empty());
    let rs = &config.read_split;
    assert_eq!(rs, &ReadSplit::default());
    assert_eq!(rs.health_check_interval, Duration::from_secs(1));
    assert_eq!(rs.max_lag_bytes, 16 * 1024 * 1024);
    assert_eq!(rs.max_lag, Duration::from_secs(5));
    assert_eq!(rs.balancing, Balancing::RoundRobin);
    assert_eq!(rs.read_your_writes_window, None);
}

#[test]
fn replicas_and_read_split_parse() {
    let config = parse(&yaml(
        "\
databases:
  - name: app
    host: primary.internal
    replicas:
      - host: replica1.internal
      - host: 10.0.0.7
        port: 5433
        weight: 3
      - host: /var/run/postgresql
        port: 5434
read_split:
  health_check_interval: 250ms
  max_lag_bytes: 1048576
  max_lag: 2s
  balancing: least_outstanding
  read_your_writes_window: 10s
",
    ));
    assert_eq!(
        config.databases[0].replicas,
        vec![
            Replica::new("replica1.internal", 5432),
            Replica {
                host: "10.0.0.7".into(),
                port: 5433,
                weight: 3,
            },
            Replica::new("/var/run/postgresql", 5434),
        ]
    );
    assert_eq!(
        config.read_split,
        ReadSplit {
            health_check_interval: Duration::from_millis(250),
            max_lag_bytes: 1024 * 1024,
            max_lag: Duration::from_secs(2),
            balancing: Balancing::LeastOutstanding,
            read_your_writes_window: Some(Duration::from_secs(10)),
        }
    );
}

#[test]
fn read_your_writes_window_null_zero_and_millis() {
    let base = "databases:\n  - name: app\n    host: h\n";
    let window = |value: &str| {
        parse(&yaml(&format!(
            "{base}read_split:\n  read_your_writes_window: {value}\n"
        )))
        .read_split
        .read_your_writes_window
    };
    assert_eq!(window("null"), None);
    assert_eq!(window("~"), None);
    assert_eq!(window("0s"), Some(Duration::ZERO));
    assert_eq!(window("1500"), Some(Duration::from_millis(1500)));
    assert_eq!(window("\"2m\""), Some(Duration::from_secs(120)));
    let err = parse_err(&yaml(&format!(
        "{base}read_split:\n  read_your_writes_window: 5 sec\n"
    )));
    assert_parse(&err, "unknown unit");
}

#[test]
fn balancing_spellings() {
    assert_eq!("round_robin".parse(), Ok(Balancing::RoundRobin));
    assert_eq!("least_outstanding".parse(), Ok(Balancing::LeastOutstanding));
    assert_eq!(Balancing::LeastOutstanding.to_string(), "least_outstanding");
    assert!("random".parse::<Balancing>().is_err());
    let err = parse_err(&yaml(
        "databases:\n  - name: app\n    host: h\nread_split:\n  balancing: random\n",
    ));
    assert_parse(&err, "random");
}

#[test]
fn unknown_keys_are_rejected() {
    let err = parse_err(&yaml(
        "databases:\n  - name: app\n    host: h\n    replicas:\n      - host: r\n        wieght: 2\n",
    ));
    assert_parse(&err, "wieght");
    let err = parse_err(&yaml(
        "databases:\n  - name: app\n    host: h\nread_split:\n  max_lag_seconds: 3\n",
    ));
    assert_parse(&err, "max_lag_seconds");
    // A replica needs a host.
    let err = parse_err(&yaml(
        "databases:\n  - name: app\n    host: h\n    replicas:\n      - port: 5433\n",
    ));
    assert_parse(&err, "host");
}

#[test]
fn replica_validation_names_the_field() {
    let db = |replicas: &str| {
        yaml(&format!(
            "databases:\n  - name: app\n    host: h\n  - name: other\n    host: h\n    replicas:\n{replicas}"
        ))
    };
    let err = parse_err(&db(
        "      - host: r1\n      - host: r2\n        weight: 0\n",
    ));
    assert_invalid(
        &err,
        "databases[1].replicas[1].weight",
        "must be at least 1",
    );
    let err = parse_err(&db("      - host: r1\n        port: 0\n"));
    assert_invalid(&err, "databases[1].replicas[0].port", "must not be 0");
    let err = parse_err(&db("      - host: \"  \"\n"));
    assert_invalid(&err, "databases[1].replicas[0].host", "must not be empty");
    let err = parse_err(&db(
        "      - host: r1\n      - host: r1\n        port: 5432\n",
    ));
    assert_invalid(
        &err,
        "databases[1].replicas[1]",
        "duplicate replica r1:5432",
    );
    // The same host on another port is another server.
    parse(&db(
        "      - host: r1\n      - host: r1\n        port: 5433\n",
    ));
    let err = parse_err(&db("      - host: h\n"));
    assert_invalid(
        &err,
        "databases[1].replicas[0]",
        "is the database's primary",
    );
}

#[test]
fn read_split_validation() {
    let err = parse_err(&yaml(
        "databases:\n  - name: app\n    host: h\nread_split:\n  health_check_interval: 0s\n",
    ));
    assert_invalid(
        &err,
        "read_split.health_check_interval",
        "must be greater than zero",
    );
    // Zero bounds are allowed: only fully caught-up replicas, no window.
    let config = parse(&yaml(
        "databases:\n  - name: app\n    host: h\nread_split:\n  max_lag_bytes: 0\n  max_lag: 0s\n",
    ));
    assert_eq!(config.read_split.max_lag_bytes, 0);
    assert_eq!(config.read_split.max_lag, Duration::ZERO);
}

/// Two databases on one primary, one on another.
fn two_primaries() -> Config {
    parse(&yaml(
        "\
databases:
  - name: app
    host: primary
  - name: app_ro
    host: primary
    dbname: app
  - name: stats
    host: stats-primary
    port: 5440
    replicas:
      - host: stats-replica
        weight: 2
",
    ))
}

#[test]
fn replica_urls_without_dbname_go_to_every_database_of_one_primary() {
    let mut config =
        Config::from_upstream_url("postgres://app:pw@primary.internal:5432/app").unwrap();
    config
        .apply_replica_urls(&[
            "postgres://replica1.internal".into(),
            "postgresql://someone:ignored@10.0.0.9:5433".into(),
            "postgres://r3?host=/run/pg".into(),
        ])
        .unwrap();
    assert_eq!(
        config.databases[0].replicas,
        vec![
            Replica::new("replica1.internal", 5432),
            Replica::new("10.0.0.9", 5433),
            Replica::new("/run/pg", 5432),
        ]
    );
    // The user in a replica URL is not added or changed.
    assert_eq!(config.users.len(), 1);
    assert_eq!(config.users[0].password.as_deref(), Some("pw"));
    // Applying again adds nothing.
    let before = config.clone();
    config
        .apply_replica_urls(&["postgres://replica1.internal:5432/app".into()])
        .unwrap();
    assert_eq!(config, before);
}

#[test]
fn replica_urls_with_dbname_pick_databases() {
    let mut config = two_primaries();
    config
        .apply_replica_urls(&["postgres://replica:6000/app".into()])
        .unwrap();
    assert_eq!(
        config.databases[0].replicas,
        vec![Replica::new("replica", 6000)]
    );
    assert_eq!(
        config.databases[1].replicas,
        vec![Replica::new("replica", 6000)]
    );
    // The existing replica keeps its weight; a new one is appended.
    config
        .apply_replica_urls(&[
            "postgres://stats-replica/stats".into(),
            "postgres://stats-replica2/stats".into(),
        ])
        .unwrap();
    assert_eq!(
        config.databases[2].replicas,
        vec![
            Replica {
                host: "stats-replica".into(),
                port: 5432,
                weight: 2,
            },
            Replica::new("stats-replica2", 5432),
        ]
    );
}

#[test]
fn replica_url_errors_leave_the_config_unchanged() {
    let mut config = two_primaries();
    let before = config.clone();
    // Without a dbname the databases span two primaries.
    let err = config
        .apply_replica_urls(&["postgres://replica/app".into(), "postgres://replica".into()])
        .unwrap_err();
    assert_url_err(&err, 1, "different primaries");
    assert!(
        err.to_string().starts_with("invalid replica URL #2: "),
        "{err}"
    );
    assert_eq!(config, before);

    let err = config
        .apply_replica_urls(&["postgres://replica/nope".into()])
        .unwrap_err();
    assert_url_err(
        &err,
        0,
        "no configured database has upstream dbname \"nope\"",
    );

    // A URL naming the primary itself fails validation.
    let err = config
        .apply_replica_urls(&["postgres://primary:5432/app".into()])
        .unwrap_err();
    assert_invalid(
        &err,
        "databases[0].replicas[0]",
        "is the database's primary",
    );
    assert_eq!(config, before);

    for (url, reason) in [
        ("http://replica", "scheme must be postgres://"),
        ("postgres://", "a host is required"),
        ("postgres://replica:0", "port must not be 0"),
        ("postgres://replica/a/b", "single database name"),
        ("postgres://replica?sslmode=require", "not supported"),
        ("postgres://replica#x", "fragments are not supported"),
        ("postgres://a,b", "multiple hosts"),
        (
            "not a url",
            "expected postgres://[user@]host[:port][/dbname]",
        ),
    ] {
        let err = config.apply_replica_urls(&[url.into()]).unwrap_err();
        assert_url_err(&err, 0, reason);
        assert_eq!(config, before, "{url}");
    }
    // The password is never echoed.
    let err = config
        .apply_replica_urls(&["postgres://u:hunter2@replica:0".into()])
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn reference_config_documents_read_split_without_changing_defaults() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/pgcoalesce.yaml");
    let config = config::load(&path).unwrap();
    assert_eq!(config.read_split, ReadSplit::default());
    assert!(config.databases.iter().all(|db| db.replicas.is_empty()));
    // The commented example, uncommented, is valid.
    let text = std::fs::read_to_string(&path).unwrap();
    let example: String = text
        .lines()
        .skip_while(|line| !line.starts_with("#read_split:"))
        .take_while(|line| line.starts_with('#'))
        .map(|line| format!("{}\n", &line[1..]))
        .collect();
    assert!(example.contains("read_split:"), "no example in {path:?}");
    let config = parse(&format!(
        "{BASE}databases:\n  - name: app\n    host: h\n    replicas:\n      - host: r\n{example}"
    ));
    assert_ne!(config.read_split, ReadSplit::default());
}
