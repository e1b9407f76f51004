//! Behaviour of the public API: parsing, defaults, validation, the upstream
//! URL quick form, and loading files (including the shipped reference config).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{assert_invalid, parse, parse_err};

use config::{
    load, AuthMethod, ClientCertMode, Config, ConfigError, Database, LogFormat, PoolMode,
    PoolSettings, ServerTlsMode, Tls, TlsClientMode, User,
};

const VERIFIER: &str = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0$\
    K1lW1rE9zlP7Ym2ZQ3bH7o6b1l8kY7bAOZbXJtCq9sM=:\
    u5m5b8Y1CqgLq5bd4t+6Yc6nB0cN0m2hS0gZy0yC/8A=";

const MINIMAL: &str = "\
users:
  - name: app
    password: secret
databases:
  - name: app
    host: db.internal
";

/// Asserts `err` is a parse error at `line` whose text names the line.
fn assert_parse_at(err: &ConfigError, line: u64, needle: &str) {
    match err {
        ConfigError::Parse { line: l, .. } => assert_eq!(*l, Some(line), "{err}"),
        other => panic!("expected Parse, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(&format!("line {line}")), "{text}");
    assert!(text.contains(needle), "{text}");
}

#[test]
fn minimal_config_takes_defaults() {
    let config = parse(MINIMAL);
    assert_eq!(
        config.listen,
        "127.0.0.1:6432".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.max_client_conn, 10_000);
    assert_eq!(config.max_message_size, 256 * 1024 * 1024);
    assert_eq!(config.log_format, LogFormat::Text);
    assert!(config.admin_users.is_empty());
    assert_eq!(config.pool, PoolSettings::default());
    assert_eq!(config.pool.mode, PoolMode::Transaction);
    assert_eq!(config.pool.size, 20);
    assert_eq!(config.pool.min_idle, 0);
    assert_eq!(config.pool.idle_timeout, Duration::from_secs(600));
    assert_eq!(config.pool.connect_timeout, Duration::from_secs(5));
    assert_eq!(config.pool.query_wait_timeout, Duration::from_secs(120));
    assert_eq!(config.pool.server_lifetime, Duration::from_secs(3600));

    let user = config.user("app").expect("user app");
    assert_eq!(user.auth, AuthMethod::ScramSha256);
    assert_eq!(user.upstream_password(), Some("secret"));
    let db = config.database("app").expect("database app");
    assert_eq!(db.port, 5432);
    assert_eq!(db.upstream_dbname(), "app");
    assert_eq!(config.pool_mode_for(db), PoolMode::Transaction);
    assert_eq!(config.pool_size_for(db), 20);
    assert!(config.user("nobody").is_none() && config.database("nope").is_none());
}

#[test]
fn every_field_round_trips() {
    let yaml = format!(
        "\
listen: 0.0.0.0:7000
max_client_conn: 50
max_message_size: 65536
log_format: json
workers: 3
admin_users: [ops]
pool:
  mode: session
  size: 8
  min_idle: 2
  idle_timeout: 30s
  connect_timeout: 1500ms
  query_wait_timeout: 2m
  server_lifetime: 2h
users:
  - name: app
    auth: scram-sha-256
    scram_verifier: \"{VERIFIER}\"
    server_password: upstream-secret
  - name: ops
    auth: md5
    password: ops-pw
  - name: reader
    auth: trust
auth_user: ops
auth_query: SELECT rolname, rolpassword FROM pg_authid WHERE rolname = $1
databases:
  - name: shop
    host: 10.0.0.5
    port: 6543
    dbname: shop_prod
    pool_mode: transaction
    pool_size: 3
    tls: verify-full
    tls_ca_file: /etc/pgcoalesce/upstream-ca.pem
    tls_cert_file: /etc/pgcoalesce/proxy.crt
    tls_key_file: /etc/pgcoalesce/proxy.key
    auth_user: app
  - name: analytics
    host: analytics.internal
"
    );
    let expected = Config {
        listen: "0.0.0.0:7000".parse().unwrap(),
        max_client_conn: 50,
        max_message_size: 65536,
        log_format: LogFormat::Json,
        workers: 3,
        admin_users: vec!["ops".into()],
        pool: PoolSettings {
            mode: PoolMode::Session,
            size: 8,
            min_idle: 2,
            idle_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_millis(1500),
            query_wait_timeout: Duration::from_secs(120),
            server_lifetime: Duration::from_secs(7200),
        },
        users: vec![
            User {
                name: "app".into(),
                auth: AuthMethod::ScramSha256,
                password: None,
                scram_verifier: Some(VERIFIER.into()),
                server_password: Some("upstream-secret".into()),
            },
            User {
                name: "ops".into(),
                auth: AuthMethod::Md5,
                password: Some("ops-pw".into()),
                scram_verifier: None,
                server_password: None,
            },
            User {
                name: "reader".into(),
                auth: AuthMethod::Trust,
                password: None,
                scram_verifier: None,
                server_password: None,
            },
        ],
        databases: vec![
            Database {
                name: "shop".into(),
                host: "10.0.0.5".into(),
                port: 6543,
                dbname: Some("shop_prod".into()),
                pool_mode: Some(PoolMode::Transaction),
                pool_size: Some(3),
                replicas: vec![],
                tls: ServerTlsMode::VerifyFull,
                tls_ca_file: Some("/etc/pgcoalesce/upstream-ca.pem".into()),
                tls_cert_file: Some("/etc/pgcoalesce/proxy.crt".into()),
                tls_key_file: Some("/etc/pgcoalesce/proxy.key".into()),
                auth_user: Some("app".into()),
            },
            Database::new("analytics", "analytics.internal", 5432),
        ],
        auth_user: Some("ops".into()),
        auth_query: "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = $1".into(),
        coalesce: vec![],
        read_split: Default::default(),
        metrics_listen: None,
        tls: None,
    };
    let config = parse(&yaml);
    assert_eq!(config, expected);

    let shop = config.database("shop").unwrap();
    assert_eq!(shop.upstream_dbname(), "shop_prod");
    assert_eq!(config.pool_mode_for(shop), PoolMode::Transaction);
    assert_eq!(config.pool_size_for(shop), 3);
    let analytics = config.database("analytics").unwrap();
    assert_eq!(config.pool_mode_for(analytics), PoolMode::Session);
    assert_eq!(config.pool_size_for(analytics), 8);
    assert_eq!(
        config.user("app").unwrap().upstream_password(),
        Some("upstream-secret")
    );
    assert_eq!(config.user("reader").unwrap().upstream_password(), None);
}

#[test]
fn bare_integer_durations_are_milliseconds() {
    let config = parse(&format!(
        "pool:\n  connect_timeout: 250\n  idle_timeout: \"90\"\n{MINIMAL}"
    ));
    assert_eq!(config.pool.connect_timeout, Duration::from_millis(250));
    assert_eq!(config.pool.idle_timeout, Duration::from_millis(90));
}

#[test]
fn unknown_top_level_key_reports_its_line() {
    let err = parse_err(&format!("{MINIMAL}listen_addr: 0.0.0.0:1\n"));
    assert_parse_at(&err, 7, "listen_addr");
}

#[test]
fn unknown_nested_keys_report_their_line() {
    let err = parse_err(&format!("pool:\n  size: 4\n  max_size: 9\n{MINIMAL}"));
    assert_parse_at(&err, 3, "max_size");

    let err = parse_err(
        "users:\n  - name: a\n    password: x\n  - name: b\n    pasword: y\n\
         databases:\n  - name: d\n    host: h\n",
    );
    assert_parse_at(&err, 5, "pasword");

    // (`replicas` is a real key now; a misspelling of it is not.)
    let err = parse_err(&format!("{MINIMAL}    replica: [r1]\n"));
    assert_parse_at(&err, 7, "replica");
}

#[test]
fn bad_duration_is_a_parse_error_naming_the_value() {
    let err = parse_err(&format!("pool:\n  idle_timeout: 10 minutes\n{MINIMAL}"));
    assert_parse_at(&err, 2, "\"10 minutes\"");
    let err = parse_err(&format!("pool:\n  server_lifetime: -5\n{MINIMAL}"));
    assert_parse_at(&err, 2, "negative");
}

#[test]
fn bad_enum_values_are_parse_errors() {
    let err = parse_err(&format!("pool:\n  mode: statement\n{MINIMAL}"));
    assert_parse_at(&err, 2, "statement");
    let err = parse_err("users:\n  - name: a\n    auth: scram\ndatabases: []\n");
    assert_parse_at(&err, 3, "scram");
}

#[test]
fn tls_section_is_optional_and_client_mode_defaults_to_allow() {
    assert_eq!(parse(MINIMAL).tls, None);
    let config = parse(&format!(
        "{MINIMAL}tls:\n  cert_file: /etc/pgcoalesce/server.crt\n  \
         key_file: /etc/pgcoalesce/server.key\n"
    ));
    assert_eq!(
        config.tls,
        Some(Tls {
            cert_file: "/etc/pgcoalesce/server.crt".into(),
            key_file: "/etc/pgcoalesce/server.key".into(),
            client_mode: TlsClientMode::Allow,
            ca_file: None,
            crl_file: None,
            client_cert: ClientCertMode::None,
        })
    );
    let config = parse(&format!(
        "{MINIMAL}tls:\n  cert_file: c.pem\n  key_file: k.pem\n  client_mode: require\n"
    ));
    assert_eq!(
        config.tls.map(|t| t.client_mode),
        Some(TlsClientMode::Require)
    );
    assert_eq!("require".parse(), Ok(TlsClientMode::Require));
    assert_eq!(TlsClientMode::Allow.to_string(), "allow");
    let config = parse(&format!(
        "{MINIMAL}tls:\n  cert_file: c.pem\n  key_file: k.pem\n  ca_file: ca.pem\n  \
         client_cert: verify-full\n"
    ));
    let tls = config.tls.expect("tls");
    assert_eq!(tls.ca_file, Some("ca.pem".into()));
    assert_eq!(tls.client_cert, ClientCertMode::VerifyFull);
}

#[test]
fn client_certificates_need_a_ca_file() {
    let err = parse_err(&format!(
        "{MINIMAL}tls:\n  cert_file: c.pem\n  key_file: k.pem\n  client_cert: verify-ca\n"
    ));
    assert_invalid(&err, "tls.client_cert", "needs tls.ca_file");
    let err = parse_err(&format!(
        "{MINIMAL}tls:\n  cert_file: c.pem\n  key_file: k.pem\n  crl_file: r.crl\n"
    ));
    assert_invalid(&err, "tls.crl_file", "needs tls.ca_file");
    let err = parse_err(&format!(
        "{MINIMAL}tls:\n  cert_file: c.pem\n  key_file: k.pem\n  ca_file: \"\"\n"
    ));
    assert_invalid(&err, "tls.ca_file", "must not be empty");
    let err = parse_err(&format!(
        "{MINIMAL}tls:\n  cert_file: c.pem\n  key_file: k.pem\n  ca_file: ca.pem\n  \
         client_cert: required\n"
    ));
    assert_parse_at(&err, 11, "required");
}

#[test]
fn tls_section_rejects_unknown_keys_bad_modes_and_missing_paths() {
    // Lines 7.. are the tls section.
    let err = parse_err(&format!(
        "{MINIMAL}tls:\n  cert_file: c.pem\n  key_file: k.pem\n  crl_path: crl.pem\n"
    ));
    assert_parse_at(&err, 10, "crl_path");
    let err = parse_err(&format!(
        "{MINIMAL}tls:\n  cert_file: c.pem\n  key_file: k.pem\n  client_mode: prefer\n"
    ));
    assert_parse_at(&err, 10, "prefer");
    let err = parse_err(&format!("{MINIMAL}tls:\n  cert_file: c.pem\n"));
    assert!(err.to_string().contains("key_file"), "{err}");
    let err = parse_err(&format!(
        "{MINIMAL}tls:\n  cert_file: \"\"\n  key_file: k.pem\n"
    ));
    assert_invalid(&err, "tls.cert_file", "must not be empty");
}

#[test]
fn server_tls_defaults_to_prefer_and_takes_every_libpq_mode() {
    let db = parse(MINIMAL).databases.remove(0);
    assert_eq!((db.tls, db.tls_ca_file), (ServerTlsMode::Prefer, None));
    for (text, mode) in [
        ("disable", ServerTlsMode::Disable),
        ("prefer", ServerTlsMode::Prefer),
        ("require", ServerTlsMode::Require),
        ("verify-ca", ServerTlsMode::VerifyCa),
        ("verify-full", ServerTlsMode::VerifyFull),
    ] {
        let ca = if mode == ServerTlsMode::Disable {
            ""
        } else {
            "    tls_ca_file: ca.pem\n"
        };
        let db = parse(&format!("{MINIMAL}    tls: {text}\n{ca}"))
            .databases
            .remove(0);
        assert_eq!(db.tls, mode);
        assert_eq!(mode.to_string(), text);
        assert_eq!(text.parse(), Ok(mode));
    }
    // Without a CA file, require and prefer are fine (no verification).
    let db = parse(&format!("{MINIMAL}    tls: require\n"))
        .databases
        .remove(0);
    assert_eq!((db.tls, db.tls_ca_file), (ServerTlsMode::Require, None));
}

#[test]
fn server_tls_rejects_unknown_modes_and_verification_without_roots() {
    // Line 7 is the database's `tls`.
    let err = parse_err(&format!("{MINIMAL}    tls: verify\n"));
    assert_parse_at(&err, 7, "verify");
    let err = parse_err(&format!("{MINIMAL}    tls: allow\n"));
    assert_parse_at(&err, 7, "allow");
    let err = parse_err(&format!("{MINIMAL}    tls_ca: ca.pem\n"));
    assert_parse_at(&err, 7, "tls_ca");
    for mode in ["verify-ca", "verify-full"] {
        let err = parse_err(&format!("{MINIMAL}    tls: {mode}\n"));
        assert_invalid(
            &err,
            "databases[0].tls_ca_file",
            &format!("required with tls: {mode}"),
        );
    }
    let err = parse_err(&format!(
        "{MINIMAL}    tls: verify-full\n    tls_ca_file: \"\"\n"
    ));
    assert_invalid(&err, "databases[0].tls_ca_file", "must not be empty");
    let err = parse_err(&format!(
        "{MINIMAL}    tls: disable\n    tls_ca_file: ca.pem\n"
    ));
    assert_invalid(
        &err,
        "databases[0].tls_ca_file",
        "not used with tls: disable",
    );
}

#[test]
fn upstream_url_takes_sslmode_and_sslrootcert() {
    let config = Config::from_upstream_url(
        "postgres://app@db:5433/shop?sslmode=verify-full&sslrootcert=/ca.pem",
    )
    .unwrap();
    let db = &config.databases[0];
    assert_eq!(db.tls, ServerTlsMode::VerifyFull);
    assert_eq!(db.tls_ca_file.as_deref(), Some(Path::new("/ca.pem")));
    assert_eq!((db.host.as_str(), db.port), ("db", 5433));
    let config = Config::from_upstream_url("postgres://app@db/shop").unwrap();
    assert_eq!(config.databases[0].tls, ServerTlsMode::Prefer);
    let config = Config::from_upstream_url("postgres://app@db/shop?sslmode=disable").unwrap();
    assert_eq!(config.databases[0].tls, ServerTlsMode::Disable);

    let err = Config::from_upstream_url("postgres://app@db/shop?sslmode=allow").unwrap_err();
    assert!(
        matches!(&err, ConfigError::Url { reason } if reason.contains("sslmode") && reason.contains("allow")),
        "{err}"
    );
    let err = Config::from_upstream_url("postgres://app@db/shop?sslmode=verify-ca").unwrap_err();
    assert_invalid(&err, "databases[0].tls_ca_file", "sslrootcert=");
    let err = Config::from_upstream_url("postgres://app@db/shop?sslcrl=/c.pem").unwrap_err();
    assert!(err.to_string().contains("sslcrl"), "{err}");

    // Amending a file: the URL's TLS settings win, absent ones are kept.
    let mut config = parse(&format!(
        "{MINIMAL}    tls: verify-ca\n    tls_ca_file: /file-ca.pem\n"
    ));
    config
        .apply_upstream_url("postgres://app@db2/app?sslmode=verify-full")
        .unwrap();
    let db = &config.databases[0];
    assert_eq!(db.tls, ServerTlsMode::VerifyFull);
    assert_eq!(db.tls_ca_file.as_deref(), Some(Path::new("/file-ca.pem")));

    // Replicas use their database's settings.
    let err = config
        .apply_replica_urls(&["postgres://r1/app?sslmode=require".to_string()])
        .unwrap_err();
    assert!(
        matches!(&err, ConfigError::ReplicaUrl { index: 0, reason } if reason.contains("sslmode")),
        "{err}"
    );
}

#[test]
fn server_client_certificate_comes_as_a_pair_and_not_with_disable() {
    let config = parse(&format!(
        "{MINIMAL}    tls: require\n    tls_cert_file: /c.pem\n    tls_key_file: /k.pem\n"
    ));
    let db = &config.databases[0];
    assert_eq!(db.tls_cert_file.as_deref(), Some(Path::new("/c.pem")));
    assert_eq!(db.tls_key_file.as_deref(), Some(Path::new("/k.pem")));
    assert_eq!(parse(MINIMAL).databases[0].tls_cert_file, None);

    let err = parse_err(&format!("{MINIMAL}    tls_cert_file: /c.pem\n"));
    assert_invalid(
        &err,
        "databases[0].tls_key_file",
        "required with tls_cert_file (sslkey= in an upstream URL)",
    );
    let err = parse_err(&format!("{MINIMAL}    tls_key_file: /k.pem\n"));
    assert_invalid(
        &err,
        "databases[0].tls_cert_file",
        "required with tls_key_file (sslcert= in an upstream URL)",
    );
    let err = parse_err(&format!(
        "{MINIMAL}    tls_cert_file: \"\"\n    tls_key_file: /k.pem\n"
    ));
    assert_invalid(&err, "databases[0].tls_cert_file", "must not be empty");
    let err = parse_err(&format!(
        "{MINIMAL}    tls_cert_file: /c.pem\n    tls_key_file: \"\"\n"
    ));
    assert_invalid(&err, "databases[0].tls_key_file", "must not be empty");
    let err = parse_err(&format!(
        "{MINIMAL}    tls: disable\n    tls_cert_file: /c.pem\n    tls_key_file: /k.pem\n"
    ));
    assert_invalid(
        &err,
        "databases[0].tls_cert_file",
        "not used with tls: disable",
    );
}

#[test]
fn upstream_url_takes_sslcert_and_sslkey() {
    let config = Config::from_upstream_url(
        "postgres://app@db/shop?sslmode=require&sslcert=/c.pem&sslkey=/k.pem",
    )
    .unwrap();
    let db = &config.databases[0];
    assert_eq!(db.tls_cert_file.as_deref(), Some(Path::new("/c.pem")));
    assert_eq!(db.tls_key_file.as_deref(), Some(Path::new("/k.pem")));

    let err = Config::from_upstream_url("postgres://app@db/shop?sslcert=/c.pem").unwrap_err();
    assert_invalid(&err, "databases[0].tls_key_file", "sslkey=");
    let err = Config::from_upstream_url("postgres://app@db/shop?sslkey=/k.pem").unwrap_err();
    assert_invalid(&err, "databases[0].tls_cert_file", "sslcert=");
    let err =
        Config::from_upstream_url("postgres://app@db/shop?sslcert=&sslkey=/k.pem").unwrap_err();
    assert!(
        matches!(&err, ConfigError::Url { reason } if reason.contains("sslcert must not be empty")),
        "{err}"
    );
    let err = Config::from_upstream_url(
        "postgres://app@db/shop?sslmode=disable&sslcert=/c.pem&sslkey=/k.pem",
    )
    .unwrap_err();
    assert_invalid(
        &err,
        "databases[0].tls_cert_file",
        "not used with tls: disable",
    );

    // Amending a file: the URL's files replace the file's, absent ones are
    // kept.
    let mut config = parse(&format!(
        "{MINIMAL}    tls: require\n    tls_cert_file: /file.crt\n    tls_key_file: /file.key\n"
    ));
    config
        .apply_upstream_url("postgres://app@db2/app?sslcert=/url.crt&sslkey=/url.key")
        .unwrap();
    let db = &config.databases[0];
    assert_eq!(db.tls_cert_file.as_deref(), Some(Path::new("/url.crt")));
    assert_eq!(db.tls_key_file.as_deref(), Some(Path::new("/url.key")));
    config
        .apply_upstream_url("postgres://app@db3/app?sslmode=verify-ca&sslrootcert=/ca.pem")
        .unwrap();
    let db = &config.databases[0];
    assert_eq!(db.tls_cert_file.as_deref(), Some(Path::new("/url.crt")));
    assert_eq!(db.tls_key_file.as_deref(), Some(Path::new("/url.key")));

    // Replicas use their database's client certificate.
    let err = config
        .apply_replica_urls(&["postgres://r1/app?sslcert=/r.crt&sslkey=/r.key".to_string()])
        .unwrap_err();
    assert!(
        matches!(&err, ConfigError::ReplicaUrl { index: 0, reason } if reason.contains("sslcert")),
        "{err}"
    );
}

#[test]
fn cert_users_need_a_ca_file_and_may_keep_an_upstream_password() {
    let dbs = "databases:\n  - name: d\n    host: h\n";
    let tls = "tls:\n  cert_file: c.pem\n  key_file: k.pem\n  ca_file: ca.pem\n";
    let config = parse(&format!(
        "users:\n  - name: a\n    auth: cert\n  - name: b\n    auth: cert\n    \
         password: upstream\n{dbs}{tls}"
    ));
    assert_eq!(config.users[0].auth, AuthMethod::Cert);
    assert_eq!(config.users[0].upstream_password(), None);
    assert_eq!(config.users[1].upstream_password(), Some("upstream"));
    assert_eq!("cert".parse(), Ok(AuthMethod::Cert));
    assert_eq!(AuthMethod::Cert.to_string(), "cert");

    let err = parse_err(&format!("users:\n  - name: a\n    auth: cert\n{dbs}"));
    assert_invalid(&err, "users[0].auth", "cert needs tls.ca_file");
    let err = parse_err(&format!(
        "users:\n  - name: a\n    auth: cert\n{dbs}tls:\n  cert_file: c.pem\n  key_file: k.pem\n"
    ));
    assert_invalid(&err, "users[0].auth", "cert needs tls.ca_file");
    let err = parse_err(&format!(
        "users:\n  - name: a\n    auth: cert\n    scram_verifier: \"{VERIFIER}\"\n{dbs}{tls}"
    ));
    assert_invalid(
        &err,
        "users[0].scram_verifier",
        "only usable with scram-sha-256 auth, not cert",
    );
}

#[test]
fn reference_config_tls_example_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/pgcoalesce.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(load(&path).unwrap().tls, None);
    let example: String = text
        .lines()
        .skip_while(|line| !line.starts_with("#tls:"))
        .take_while(|line| line.starts_with('#'))
        .map(|line| format!("{}\n", &line[1..]))
        .collect();
    assert!(example.starts_with("tls:"), "no example in {path:?}");
    let tls = parse(&format!("{MINIMAL}{example}")).tls.expect("tls");
    assert_eq!(tls.client_mode, TlsClientMode::Require);
}

#[test]
fn md5_user_without_password_is_rejected() {
    let err = parse_err(
        "users:\n  - name: a\n    password: x\n  - name: b\n    auth: md5\n\
         databases:\n  - name: d\n    host: h\n",
    );
    assert_invalid(&err, "users[1].password", "required for md5 auth");
}

#[test]
fn scram_user_needs_password_or_wellformed_verifier() {
    let dbs = "databases:\n  - name: d\n    host: h\n";
    let err = parse_err(&format!("users:\n  - name: a\n{dbs}"));
    assert_invalid(&err, "users[0].password", "required for scram-sha-256");
    let err = parse_err(&format!(
        "users:\n  - name: a\n    scram_verifier: \"SCRAM-SHA-256$many:c2FsdA==$a:b\"\n{dbs}"
    ));
    assert_invalid(&err, "users[0].scram_verifier", "iteration count");
    let err = parse_err(&format!(
        "users:\n  - name: a\n    auth: md5\n    password: p\n    scram_verifier: \"{VERIFIER}\"\n{dbs}"
    ));
    assert_invalid(
        &err,
        "users[0].scram_verifier",
        "only usable with scram-sha-256",
    );
    parse(&format!("users:\n  - name: a\n    auth: trust\n{dbs}"));
}

#[test]
fn duplicate_names_are_rejected() {
    let err = parse_err(
        "users:\n  - name: a\n    password: x\n\
         databases:\n  - name: d\n    host: h1\n  - name: e\n    host: h2\n  - name: d\n    host: h3\n",
    );
    assert_invalid(&err, "databases[2].name", "duplicate database name \"d\"");
    let err = parse_err(
        "users:\n  - name: a\n    password: x\n  - name: a\n    auth: trust\n\
         databases:\n  - name: d\n    host: h\n",
    );
    assert_invalid(&err, "users[1].name", "duplicate user name");
}

#[test]
fn admin_users_must_be_configured_users() {
    let err = parse_err(&format!("admin_users: [app, root]\n{MINIMAL}"));
    assert_invalid(&err, "admin_users[1]", "\"root\" is not a configured user");
}

#[test]
fn ranges_and_required_sections_are_checked() {
    assert_invalid(
        &parse_err("databases:\n  - name: d\n    host: h\n"),
        "users",
        "at least one",
    );
    assert_invalid(
        &parse_err("users:\n  - name: a\n    auth: trust\n"),
        "databases",
        "at least one",
    );
    let cases = [
        (
            "max_message_size: 1024\n",
            "max_message_size",
            "must be between",
        ),
        (
            "max_message_size: 2147483648\n",
            "max_message_size",
            "must be between",
        ),
        ("max_client_conn: 0\n", "max_client_conn", "at least 1"),
        ("pool:\n  size: 0\n", "pool.size", "at least 1"),
        (
            "pool:\n  size: 2\n  min_idle: 3\n",
            "pool.min_idle",
            "must not exceed",
        ),
        (
            "pool:\n  connect_timeout: 0s\n",
            "pool.connect_timeout",
            "greater than zero",
        ),
    ];
    for (prefix, field, reason) in cases {
        assert_invalid(&parse_err(&format!("{prefix}{MINIMAL}")), field, reason);
    }
    assert_invalid(
        &parse_err(&format!("{MINIMAL}    pool_size: 0\n")),
        "databases[0].pool_size",
        "at least 1",
    );
    assert_invalid(
        &parse_err(&format!("{MINIMAL}    port: 0\n")),
        "databases[0].port",
        "must not be 0",
    );
}

#[test]
fn debug_output_redacts_secrets() {
    let config = parse(&format!(
        "users:\n  - name: app\n    password: hunter2\n    server_password: s3cr3t\n\
         \x20 - name: v\n    scram_verifier: \"{VERIFIER}\"\n\
         databases:\n  - name: d\n    host: h\n"
    ));
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("s3cr3t") && !debug.contains("K1lW"),
        "{debug}"
    );
    assert!(
        debug.contains("<redacted>") && debug.contains("\"app\""),
        "{debug}"
    );
}

#[test]
fn keyword_enums_display_and_parse_like_yaml() {
    assert_eq!(AuthMethod::ScramSha256.to_string(), "scram-sha-256");
    assert_eq!("session".parse::<PoolMode>(), Ok(PoolMode::Session));
    assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
    assert!("statement"
        .parse::<PoolMode>()
        .unwrap_err()
        .contains("session, transaction"));
}

#[test]
fn upstream_url_with_password() {
    let config = Config::from_upstream_url("postgres://alice:s3cret@db.example:6000/shop").unwrap();
    assert_eq!(config.users.len(), 1);
    let user = &config.users[0];
    assert_eq!(user.name, "alice");
    assert_eq!(user.auth, AuthMethod::ScramSha256);
    assert_eq!(user.password.as_deref(), Some("s3cret"));
    assert_eq!(user.server_password.as_deref(), Some("s3cret"));
    assert_eq!(
        config.databases,
        vec![Database::new("shop", "db.example", 6000)]
    );
    assert_eq!(config.pool, PoolSettings::default());
    assert_eq!(config.listen, Config::default().listen);
}

#[test]
fn upstream_url_without_password_uses_trust() {
    let config = Config::from_upstream_url("postgresql://bob@127.0.0.1/app").unwrap();
    let user = &config.users[0];
    assert_eq!((user.name.as_str(), user.auth), ("bob", AuthMethod::Trust));
    assert_eq!(
        (user.password.as_ref(), user.server_password.as_ref()),
        (None, None)
    );
    assert_eq!(
        config.databases,
        vec![Database::new("app", "127.0.0.1", 5432)]
    );

    let v6 = Config::from_upstream_url("postgres://bob@[::1]:5433/app").unwrap();
    assert_eq!(
        (v6.databases[0].host.as_str(), v6.databases[0].port),
        ("::1", 5433)
    );
}

#[test]
fn upstream_url_percent_decodes() {
    let config =
        Config::from_upstream_url("postgres://us%40er:p%40ss%3Aw%2Frd%25@h/my%20db").unwrap();
    assert_eq!(config.users[0].name, "us@er");
    assert_eq!(config.users[0].password.as_deref(), Some("p@ss:w/rd%"));
    assert_eq!(config.databases[0].name, "my db");
}

#[test]
fn upstream_url_errors() {
    let cases = [
        ("postgres://alice:pw@h:5432/", "database name is required"),
        ("postgres://alice:pw@h:5432", "database name is required"),
        ("postgres://h/db", "user name is required"),
        ("mysql://alice@h/db", "scheme"),
        ("postgres://alice@h/db?application_name=x", "query"),
        ("postgres://alice@h/a/b", "single database name"),
        (
            "postgres://alice:%zz@h/db",
            "percent-escape in the password",
        ),
        ("not a url", "relative URL"),
    ];
    for (url, reason) in cases {
        match Config::from_upstream_url(url) {
            Err(ConfigError::Url { reason: r }) => assert!(r.contains(reason), "{url}: {r}"),
            other => panic!("{url}: expected Url error containing {reason:?}, got {other:?}"),
        }
    }
    let err = Config::from_upstream_url("postgres://alice:topsecret@h/").unwrap_err();
    assert!(!err.to_string().contains("topsecret"), "{err}");
}

#[test]
fn apply_upstream_url_repoints_matching_databases_and_replaces_the_user() {
    let mut config = parse(
        "pool:\n  size: 7\n\
         admin_users: [app]\n\
         users:\n  - name: app\n    auth: md5\n    password: old\n  - name: other\n    auth: trust\n\
         databases:\n\
         \x20 - name: shop\n    host: old-host\n    dbname: shop_prod\n    pool_size: 3\n\
         \x20 - name: alias\n    host: old-host\n    dbname: shop_prod\n\
         \x20 - name: misc\n    host: misc-host\n",
    );
    config
        .apply_upstream_url("postgres://app:new@new-host:6000/shop_prod")
        .unwrap();
    assert_eq!(config.pool.size, 7);
    assert_eq!(config.admin_users, vec!["app".to_string()]);
    assert_eq!(config.databases.len(), 3);
    let shop = config.database("shop").unwrap();
    assert_eq!(
        (shop.host.as_str(), shop.port, shop.upstream_dbname()),
        ("new-host", 6000, "shop_prod")
    );
    assert_eq!(shop.pool_size, Some(3));
    let alias = config.database("alias").unwrap();
    assert_eq!((alias.host.as_str(), alias.port), ("new-host", 6000));
    assert_eq!(config.database("misc").unwrap().host, "misc-host");
    let app = config.user("app").unwrap();
    assert_eq!(
        (app.auth, app.password.as_deref()),
        (AuthMethod::ScramSha256, Some("new"))
    );
    assert_eq!(config.users.len(), 2);

    // No database serves the URL's dbname: it is added, with the new user.
    config
        .apply_upstream_url("postgres://carol@h2/reports")
        .unwrap();
    assert_eq!(
        config.database("reports"),
        Some(&Database::new("reports", "h2", 5432))
    );
    assert_eq!(config.user("carol").unwrap().auth, AuthMethod::Trust);
    assert_eq!(config.users.len(), 3);

    // The URL's dbname is the name of a database pointing elsewhere: error, no change.
    let before = config.clone();
    let err = config
        .apply_upstream_url("postgres://app:x@h3/shop")
        .unwrap_err();
    assert!(
        matches!(&err, ConfigError::Url { reason } if reason.contains("\"shop_prod\"")),
        "{err}"
    );
    assert_eq!(config, before);
}

#[test]
fn load_missing_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.yaml");
    let err = load(&path).unwrap_err();
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    match &err {
        ConfigError::Io { path: p, source } => {
            assert_eq!(p, &path);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Io, got {other:?}"),
    }
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn load_reads_and_validates_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pgcoalesce.yaml");
    std::fs::write(&path, MINIMAL).unwrap();
    assert_eq!(load(&path).unwrap(), parse(MINIMAL));
    std::fs::write(&path, format!("{MINIMAL}bogus: 1\n")).unwrap();
    assert_parse_at(&load(&path).unwrap_err(), 7, "bogus");
}

#[test]
fn reference_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/pgcoalesce.yaml");
    let config = load(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    assert_eq!(config.pool.mode, PoolMode::Transaction);
    let db = config.database("pgcoalesce").expect("database pgcoalesce");
    assert_eq!(
        (db.host.as_str(), db.port, db.upstream_dbname()),
        ("127.0.0.1", 5432, "pgcoalesce")
    );
    let app = config.user("app").expect("user app");
    assert_eq!(
        (app.auth, app.password.as_deref()),
        (AuthMethod::ScramSha256, Some("app"))
    );
    assert_eq!(
        config.user("admin").expect("user admin").auth,
        AuthMethod::Md5
    );
    assert_eq!(config.admin_users, vec!["admin".to_string()]);
    // The reference coalescing rules (checked in detail in tests/coalesce.rs).
    let names: Vec<&str> = config
        .rules_for("pgcoalesce")
        .iter()
        .map(|rule| rule.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["entity_metadata_function", "entity_metadata_upsert"]
    );
    // Every key in the reference file spells out its default except the lists.
    let defaults = Config {
        admin_users: config.admin_users.clone(),
        users: config.users.clone(),
        databases: config.databases.clone(),
        coalesce: config.coalesce.clone(),
        ..Config::default()
    };
    assert_eq!(config, defaults);
}

#[test]
fn workers_default_to_half_the_cores_and_are_bounded() {
    let mut config = Config::from_upstream_url("postgres://app@127.0.0.1/app").unwrap();
    assert_eq!(config.workers, 0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(config.worker_threads(), (cores / 2).max(1));
    config.workers = 3;
    assert_eq!(config.worker_threads(), 3);
    config.workers = 1000;
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("workers"), "{err}");
}

#[test]
fn upstream_url_with_a_unix_socket_directory() {
    let config =
        Config::from_upstream_url("postgres://alice@localhost:5433/db?host=/var/run/postgresql")
            .unwrap();
    assert_eq!(config.databases[0].host, "/var/run/postgresql");
    assert_eq!(config.databases[0].port, 5433);
    let err = Config::from_upstream_url("postgres://alice@h/db?host=relative").unwrap_err();
    assert!(err.to_string().contains("host=/socket/dir"), "{err}");
}
