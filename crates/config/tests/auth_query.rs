//! `auth_user` and `auth_query`: users looked up in Postgres itself.

mod common;

use common::{assert_invalid, parse, parse_err};

use config::{ConfigError, DEFAULT_AUTH_QUERY};

const USERS: &str = "\
users:
  - name: app
    password: secret
  - name: lookup
    password: lookup-pw
";

const DATABASES: &str = "\
databases:
  - name: shop
    host: db.internal
  - name: crm
    host: db.internal
    auth_user: app
";

#[test]
fn auth_query_defaults_to_pgbouncers_and_auth_user_to_none() {
    let config = parse(&format!("{USERS}{DATABASES}"));
    assert_eq!(config.auth_user, None);
    assert_eq!(
        config.auth_query,
        "SELECT usename, passwd FROM pg_shadow WHERE usename = $1"
    );
    assert_eq!(config.auth_query, DEFAULT_AUTH_QUERY);
    let shop = config.database("shop").expect("shop");
    assert_eq!(config.auth_user_for(shop), None);
    // A database's own auth_user applies without a top-level one.
    let crm = config.database("crm").expect("crm");
    assert_eq!(config.auth_user_for(crm), Some("app"));
}

#[test]
fn a_databases_auth_user_overrides_the_top_level_one() {
    let config = parse(&format!(
        "{USERS}auth_user: lookup\nauth_query: SELECT u, p FROM my_users WHERE u = $1\n\
         {DATABASES}"
    ));
    assert_eq!(config.auth_user.as_deref(), Some("lookup"));
    assert_eq!(config.auth_query, "SELECT u, p FROM my_users WHERE u = $1");
    let shop = config.database("shop").expect("shop");
    assert_eq!(config.auth_user_for(shop), Some("lookup"));
    let crm = config.database("crm").expect("crm");
    assert_eq!(config.auth_user_for(crm), Some("app"));
}

#[test]
fn auth_user_must_be_a_configured_user() {
    let err = parse_err(&format!("{USERS}auth_user: postgres\n{DATABASES}"));
    assert_invalid(&err, "auth_user", "\"postgres\" is not a configured user");

    let err = parse_err(&format!(
        "{USERS}{DATABASES}  - name: hr\n    host: h\n    auth_user: nobody\n"
    ));
    assert_invalid(
        &err,
        "databases[2].auth_user",
        "\"nobody\" is not a configured user",
    );
}

#[test]
fn auth_query_binds_the_user_name_as_dollar_one_only() {
    for (query, reason) in [
        ("\"\"", "must not be empty"),
        ("\"  \"", "must not be empty"),
        (
            "SELECT usename, passwd FROM pg_shadow WHERE usename = 'app'",
            "does not use $1",
        ),
        (
            "SELECT usename, passwd FROM pg_shadow WHERE usename = $1 OR usename = $2",
            "refers to $2",
        ),
    ] {
        let err = parse_err(&format!(
            "{USERS}auth_user: lookup\nauth_query: {query}\n{DATABASES}"
        ));
        assert_invalid(&err, "auth_query", reason);
    }
    // `$1` inside a quoted literal is not a parameter.
    let err = parse_err(&format!(
        "{USERS}auth_query: \"SELECT u, p FROM t WHERE u = '$1'\"\n{DATABASES}"
    ));
    assert_invalid(&err, "auth_query", "does not use $1");
}

#[test]
fn misspelt_keys_are_parse_errors_with_their_line() {
    let err = parse_err(&format!("{USERS}auth_users: lookup\n{DATABASES}"));
    match &err {
        ConfigError::Parse { line, .. } => assert_eq!(*line, Some(6), "{err}"),
        other => panic!("expected Parse, got {other:?}"),
    }
    assert!(err.to_string().contains("auth_users"), "{err}");

    let err = parse_err(&format!("{USERS}{DATABASES}    authuser: app\n"));
    match &err {
        ConfigError::Parse { line, .. } => assert_eq!(*line, Some(12), "{err}"),
        other => panic!("expected Parse, got {other:?}"),
    }
}
