//! Client authentication (SCRAM-SHA-256 from a password or a stored verifier,
//! md5, trust) and the proxy's own login upstream (SCRAM, md5, trust, with a
//! `server_password` of its own).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Env, Setup, DB, PASSWORD, USER};
use config::{AuthMethod, Config, User};
use pgtest::HbaAuth;
use proxy::Proxy;
use tokio_postgres::error::SqlState;

fn url(addr: SocketAddr, user: &str, password: Option<&str>, db: &str) -> String {
    match password {
        Some(pw) => format!("postgres://{user}:{pw}@127.0.0.1:{}/{db}", addr.port()),
        None => format!("postgres://{user}@127.0.0.1:{}/{db}", addr.port()),
    }
}

/// Logs in through the proxy and returns `current_user` as the server sees it.
async fn login_and_query(url: &str) -> String {
    let work = async {
        let client = common::try_connect(url)
            .await
            .unwrap_or_else(|e| panic!("login through the proxy failed: {e}"));
        let row = client
            .query_one("SELECT current_user::text, 40 + 2", &[])
            .await
            .expect("query through the proxy");
        assert_eq!(row.get::<_, i32>(1), 42);
        row.get::<_, String>(0)
    };
    tokio::time::timeout(Duration::from_secs(8), work)
        .await
        .expect("login and query timed out")
}

/// The login fails with an ErrorResponse carrying `code` (FATAL).
async fn expect_refused(url: &str, code: &SqlState) {
    let result = tokio::time::timeout(Duration::from_secs(8), common::try_connect(url))
        .await
        .expect("a refused login must not hang");
    let err = match result {
        Ok(_) => panic!("login with {url} must fail"),
        Err(e) => e,
    };
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("expected an ErrorResponse from the proxy, got: {err}"));
    assert_eq!(db.code(), code, "{db:?}");
    assert_eq!(db.severity(), "FATAL", "{db:?}");
}

/// Starts a second proxy in front of `env`'s cluster with `edit` applied to
/// the harness config.
async fn proxy_with(env: &Env, edit: impl FnOnce(&mut Config)) -> Proxy {
    let mut cfg = common::proxy_config(&env.pg, &Setup::default());
    edit(&mut cfg);
    cfg.validate().expect("valid test config");
    Proxy::start(cfg).await.expect("start proxy")
}

// ---------------------------------------------------------------------------
// Client authentication
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_client_auth_checks_the_password() {
    let env = Env::start(Setup::default()).await;
    assert_eq!(login_and_query(&env.url()).await, USER);
    expect_refused(
        &url(env.addr(), USER, Some("wrong-secret"), DB),
        &SqlState::INVALID_PASSWORD,
    )
    .await;
    // The refusal left nothing broken behind.
    assert_eq!(login_and_query(&env.url()).await, USER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_client_auth_checks_the_password() {
    let env = Env::start(Setup {
        client_auth: AuthMethod::Md5,
        ..Setup::default()
    })
    .await;
    assert_eq!(login_and_query(&env.url()).await, USER);
    expect_refused(
        &url(env.addr(), USER, Some("wrong-secret"), DB),
        &SqlState::INVALID_PASSWORD,
    )
    .await;
    assert_eq!(login_and_query(&env.url()).await, USER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_client_auth_needs_no_password() {
    let env = Env::start(Setup {
        client_auth: AuthMethod::Trust,
        ..Setup::default()
    })
    .await;
    // tokio-postgres fails client-side if a server asks for a password it
    // was not given: this only works if the proxy asks for none.
    assert_eq!(
        login_and_query(&url(env.addr(), USER, None, DB)).await,
        USER
    );
    // Unknown users are still refused under trust.
    expect_refused(
        &url(env.addr(), "nobody", None, DB),
        &SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
    )
    .await;
}

/// A SCRAM verifier made by Postgres itself (from `pg_authid`) stands in for
/// the plain password on the client side; `server_password` is used upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_verifier_from_postgres_authenticates_clients() {
    let env = Env::start(Setup::default()).await;
    const CLIENT_PW: &str = "verifier-pw";
    let verifier = {
        let pg = &env.pg;
        tokio::task::block_in_place(|| {
            pg.psql(
                "postgres",
                &format!(
                    "SET password_encryption = 'scram-sha-256';\n\
                     CREATE ROLE verifier_source PASSWORD '{CLIENT_PW}';\n\
                     SELECT rolpassword FROM pg_authid WHERE rolname = 'verifier_source';"
                ),
            )
            .expect("make a SCRAM verifier")
        })
    };
    assert!(
        verifier.starts_with("SCRAM-SHA-256$") && !verifier.contains('\n'),
        "not a verifier: {verifier:?}"
    );
    let proxy = proxy_with(&env, |cfg| {
        cfg.users[0] = User {
            name: USER.into(),
            auth: AuthMethod::ScramSha256,
            password: None,
            scram_verifier: Some(verifier.clone()),
            server_password: Some(PASSWORD.into()),
        };
    })
    .await;
    let addr = proxy.addr();
    assert_eq!(
        login_and_query(&url(addr, USER, Some(CLIENT_PW), DB)).await,
        USER
    );
    expect_refused(
        &url(addr, USER, Some("wrong-secret"), DB),
        &SqlState::INVALID_PASSWORD,
    )
    .await;
    // The upstream password is not the client password.
    expect_refused(
        &url(addr, USER, Some(PASSWORD), DB),
        &SqlState::INVALID_PASSWORD,
    )
    .await;
}

// ---------------------------------------------------------------------------
// Upstream login
// ---------------------------------------------------------------------------

/// Postgres asks the proxy for md5: it answers with `app`'s password. With a
/// wrong `server_password` the upstream refusal reaches the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_md5_login() {
    let env = Env::start(Setup {
        upstream_auth: HbaAuth::Md5,
        ..Setup::default()
    })
    .await;
    assert_eq!(login_and_query(&env.url()).await, USER);

    let proxy = proxy_with(&env, |cfg| {
        cfg.users[0].server_password = Some("not-the-upstream-password".into());
    })
    .await;
    // The client's own password is right; the proxy's upstream one is not.
    expect_refused(
        &url(proxy.addr(), USER, Some(PASSWORD), DB),
        &SqlState::INVALID_PASSWORD,
    )
    .await;
}

/// Postgres trusts the proxy: no password is needed upstream at all, not even
/// in the config (a trust user without any password).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_trust_login() {
    let env = Env::start(Setup {
        upstream_auth: HbaAuth::Trust,
        ..Setup::default()
    })
    .await;
    assert_eq!(login_and_query(&env.url()).await, USER);

    let proxy = proxy_with(&env, |cfg| {
        cfg.users[0] = User {
            name: USER.into(),
            auth: AuthMethod::Trust,
            password: None,
            scram_verifier: None,
            server_password: None,
        };
    })
    .await;
    assert_eq!(
        login_and_query(&url(proxy.addr(), USER, None, DB)).await,
        USER
    );
}

/// Clients use the proxy's password; the proxy logs in upstream with its own
/// `server_password`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_password_differs_from_client_password() {
    let env = Env::start(Setup::default()).await;
    const CLIENT_PW: &str = "client-pw";
    let proxy = proxy_with(&env, |cfg| {
        cfg.users[0].auth = AuthMethod::ScramSha256;
        cfg.users[0].password = Some(CLIENT_PW.into());
        cfg.users[0].server_password = Some(PASSWORD.into());
    })
    .await;
    let addr = proxy.addr();
    assert_eq!(
        login_and_query(&url(addr, USER, Some(CLIENT_PW), DB)).await,
        USER
    );
    // Two clients at once, sharing the pool logged in with server_password.
    let client_url = url(addr, USER, Some(CLIENT_PW), DB);
    let (a, b) = tokio::join!(login_and_query(&client_url), login_and_query(&client_url));
    assert_eq!((a.as_str(), b.as_str()), (USER, USER));
    // The upstream password does not open the proxy.
    expect_refused(
        &url(addr, USER, Some(PASSWORD), DB),
        &SqlState::INVALID_PASSWORD,
    )
    .await;
}

// ---------------------------------------------------------------------------
// The real psql
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_logs_in_with_scram() {
    let env = Env::start(Setup::default()).await;
    let addr = env.addr();
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        common::psql_password(
            addr,
            USER,
            PASSWORD,
            "prefer",
            "SELECT 'via proxy: ' || current_user || ' ' || (40 + 2)",
        )
    })
    .await
    .expect("psql thread");
    assert!(ok, "psql failed: {err}");
    assert_eq!(out.trim(), "via proxy: app 42", "stderr: {err}");

    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        common::psql_password(addr, USER, "wrong-secret", "prefer", "SELECT 1")
    })
    .await
    .expect("psql thread");
    assert!(!ok, "psql with a wrong password succeeded: {out}");
    assert!(
        err.contains("password authentication failed"),
        "psql stderr: {err}"
    );
}
