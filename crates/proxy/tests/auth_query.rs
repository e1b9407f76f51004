//! `auth_user` / `auth_query`: roles that are not in the proxy's config log
//! in with their Postgres passwords. The proxy looks the role's hash up as
//! the superuser `auth_user`, authenticates the client against it, and logs
//! in upstream with what the client's login proved (no plaintext): the
//! cluster demands SCRAM on TCP (md5 for one role), so a query through the
//! proxy proves the pass-through.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use config::{AuthMethod, Config, Database, PoolMode, User};
use pgtest::{Cluster, ClusterOptions, HbaAuth, SUPERUSER};
use proxy::Proxy;
use tokio_postgres::error::SqlState;

const DB: &str = "app";
/// Stored as a SCRAM verifier; TCP logins need SCRAM.
const SCRAM_ROLE: &str = "scram_role";
const SCRAM_PW: &str = "scram-pw";
/// Stored as an md5 hash; TCP logins use md5.
const MD5_ROLE: &str = "md5_role";
const MD5_PW: &str = "md5-pw";
/// A role without a password (`rolpassword` NULL).
const NO_PW_ROLE: &str = "no_pw_role";

/// Starts a cluster with the three roles and database `app`.
async fn start_pg() -> Cluster {
    tokio::task::spawn_blocking(|| {
        let opts =
            ClusterOptions::with_auth(HbaAuth::ScramSha256).role_auth(MD5_ROLE, HbaAuth::Md5);
        let pg = Cluster::start(&opts).expect("start postgres");
        pg.create_database(DB).expect("create database");
        pg.psql(
            "postgres",
            &format!(
                "CREATE ROLE {SCRAM_ROLE} LOGIN PASSWORD '{SCRAM_PW}';\n\
                 SET password_encryption = 'md5';\n\
                 CREATE ROLE {MD5_ROLE} LOGIN PASSWORD '{MD5_PW}';\n\
                 CREATE ROLE {NO_PW_ROLE} LOGIN;"
            ),
        )
        .expect("create roles");
        pg
    })
    .await
    .expect("setup thread")
}

/// A proxy config for `pg` whose only user is the superuser, the
/// `auth_user`; `edit` changes it further.
fn config(pg: &Cluster, edit: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        auth_user: Some(SUPERUSER.into()),
        ..Config::default()
    };
    config.pool.mode = PoolMode::Transaction;
    config.pool.size = 4;
    config.users.push(User {
        name: SUPERUSER.into(),
        auth: AuthMethod::ScramSha256,
        password: pg.superuser_password().map(String::from),
        scram_verifier: None,
        server_password: None,
    });
    config
        .databases
        .push(Database::new(DB, pg.host(), pg.port()));
    edit(&mut config);
    config.validate().expect("valid test config");
    config
}

async fn start_proxy(config: Config) -> Proxy {
    Proxy::start(config).await.expect("start proxy")
}

fn url(addr: SocketAddr, user: &str, password: &str, db: &str) -> String {
    format!(
        "postgres://{user}:{password}@127.0.0.1:{}/{db}",
        addr.port()
    )
}

/// A client through the proxy, or the login's error.
async fn try_login(
    addr: SocketAddr,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let url = url(addr, user, password, DB);
    let login = common::try_connect(&url);
    tokio::time::timeout(Duration::from_secs(10), login)
        .await
        .expect("a login must not hang")
}

/// `current_user` and `pg_backend_pid()` as the server sees them.
async fn whoami(client: &tokio_postgres::Client) -> (String, i32) {
    let row = tokio::time::timeout(
        Duration::from_secs(10),
        client.query_one("SELECT current_user::text, pg_backend_pid()", &[]),
    )
    .await
    .expect("query timed out")
    .expect("query through the proxy");
    (row.get(0), row.get(1))
}

/// Logs in and returns `current_user`.
async fn login_as(addr: SocketAddr, user: &str, password: &str) -> String {
    let client = try_login(addr, user, password)
        .await
        .unwrap_or_else(|e| panic!("{user} could not log in through the proxy: {e}"));
    whoami(&client).await.0
}

/// The login is refused with a FATAL `code`.
async fn expect_refused(addr: SocketAddr, user: &str, password: &str, code: &SqlState) {
    let err = match try_login(addr, user, password).await {
        Ok(_) => panic!("{user} with {password:?} must be refused"),
        Err(e) => e,
    };
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("expected an ErrorResponse, got: {err}"));
    assert_eq!(db.code(), code, "{db:?}");
    assert_eq!(db.severity(), "FATAL", "{db:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_log_in_with_their_postgres_passwords() {
    let pg = start_pg().await;
    let proxy = start_proxy(config(&pg, |_| {})).await;
    let addr = proxy.addr();

    assert_eq!(login_as(addr, SCRAM_ROLE, SCRAM_PW).await, SCRAM_ROLE);
    assert_eq!(login_as(addr, MD5_ROLE, MD5_PW).await, MD5_ROLE);
    // Two at once share the pool the first login made.
    let (a, b) = tokio::join!(
        login_as(addr, SCRAM_ROLE, SCRAM_PW),
        login_as(addr, SCRAM_ROLE, SCRAM_PW)
    );
    assert_eq!((a.as_str(), b.as_str()), (SCRAM_ROLE, SCRAM_ROLE));

    // The real psql, on both kinds of role.
    for (user, password) in [(SCRAM_ROLE, SCRAM_PW), (MD5_ROLE, MD5_PW)] {
        let (ok, out, err) = tokio::task::spawn_blocking(move || {
            common::psql_password(
                addr,
                user,
                password,
                "disable",
                "SELECT 'via proxy: ' || current_user",
            )
        })
        .await
        .expect("psql thread");
        assert!(ok, "psql as {user} failed: {err}");
        assert_eq!(out.trim(), format!("via proxy: {user}"), "stderr: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_28p01_and_leave_others_working() {
    let pg = start_pg().await;
    let proxy = start_proxy(config(&pg, |_| {})).await;
    let addr = proxy.addr();
    let logged_in = try_login(addr, SCRAM_ROLE, SCRAM_PW)
        .await
        .expect("scram role logs in");

    expect_refused(addr, SCRAM_ROLE, "wrong", &SqlState::INVALID_PASSWORD).await;
    expect_refused(addr, MD5_ROLE, "wrong", &SqlState::INVALID_PASSWORD).await;
    // Postgres does not know the role: refused like a wrong password, so
    // the answer does not tell which roles exist.
    expect_refused(addr, "nobody", "whatever", &SqlState::INVALID_PASSWORD).await;
    // A role without a password cannot log in with any.
    expect_refused(addr, NO_PW_ROLE, "", &SqlState::INVALID_PASSWORD).await;
    expect_refused(addr, NO_PW_ROLE, "x", &SqlState::INVALID_PASSWORD).await;
    // A name that would break out of a spliced string is only a name.
    expect_refused(
        addr,
        "x' OR usename <> '",
        "whatever",
        &SqlState::INVALID_PASSWORD,
    )
    .await;

    // The client logged in before is untouched, and new logins still work.
    assert_eq!(whoami(&logged_in).await.0, SCRAM_ROLE);
    assert_eq!(login_as(addr, MD5_ROLE, MD5_PW).await, MD5_ROLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_password_counts_from_the_next_login() {
    let pg = start_pg().await;
    let proxy = start_proxy(config(&pg, |_| {})).await;
    let addr = proxy.addr();

    let first = try_login(addr, SCRAM_ROLE, SCRAM_PW).await.expect("login");
    let (user, old_pid) = whoami(&first).await;
    drop(first);
    assert_eq!(user, SCRAM_ROLE);
    assert_eq!(login_as(addr, MD5_ROLE, MD5_PW).await, MD5_ROLE);
    // The server connection made for the old password is idle in the pool.
    tokio::task::block_in_place(|| {
        pg.psql(
            "postgres",
            &format!(
                "ALTER ROLE {SCRAM_ROLE} PASSWORD 'scram-new';\n\
                 SET password_encryption = 'md5';\n\
                 ALTER ROLE {MD5_ROLE} PASSWORD 'md5-new';"
            ),
        )
    })
    .expect("change passwords");

    expect_refused(addr, SCRAM_ROLE, SCRAM_PW, &SqlState::INVALID_PASSWORD).await;
    expect_refused(addr, MD5_ROLE, MD5_PW, &SqlState::INVALID_PASSWORD).await;
    let client = try_login(addr, SCRAM_ROLE, "scram-new")
        .await
        .expect("the new password logs in");
    let (user, new_pid) = whoami(&client).await;
    assert_eq!(user, SCRAM_ROLE);
    // The pool now logs in with the new verifier's keys: the connection of
    // the old ones was closed and a new one logged in.
    assert_ne!(
        new_pid, old_pid,
        "a connection of the old password was reused"
    );
    drop(client);
    // More new connections at once, all logging in with the new keys.
    let clients: Vec<_> =
        futures::future::join_all((0..3).map(|_| try_login(addr, SCRAM_ROLE, "scram-new")))
            .await
            .into_iter()
            .map(|c| c.expect("login with the new password"))
            .collect();
    let _held: Vec<_> = futures::future::join_all(clients.iter().map(|c| async move {
        c.execute("BEGIN", &[]).await.expect("begin");
        whoami(c).await
    }))
    .await;
    assert_eq!(login_as(addr, MD5_ROLE, "md5-new").await, MD5_ROLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_lookup_refuses_only_its_client() {
    let pg = start_pg().await;
    // A port nothing listens on: the lookup cannot connect.
    let dead_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let proxy = start_proxy(config(&pg, |c| {
        c.auth_query = "SELECT usename, passwd FROM no_such_table WHERE usename = $1".into();
        c.databases
            .push(Database::new("dead", "127.0.0.1", dead_port));
    }))
    .await;
    let addr = proxy.addr();

    // The query fails on the server: the client gets an error, not a hang.
    expect_refused(addr, SCRAM_ROLE, SCRAM_PW, &SqlState::CONNECTION_FAILURE).await;
    // The server is unreachable: 08001, as for any login to it.
    let err = common::try_connect(&format!(
        "postgres://{SCRAM_ROLE}:{SCRAM_PW}@127.0.0.1:{}/dead",
        addr.port()
    ))
    .await
    .expect_err("a login to an unreachable server fails");
    let db = err.as_db_error().expect("an ErrorResponse");
    assert_eq!(
        db.code(),
        &SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
        "{db:?}"
    );
    // The configured user still logs in and works.
    let superuser = login_as(addr, SUPERUSER, pg.superuser_password().unwrap_or("")).await;
    assert_eq!(superuser, SUPERUSER);
}

/// Configured users are never looked up; a configured user with only a
/// SCRAM verifier logs in upstream with the keys its login proved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_users_take_precedence() {
    let pg = start_pg().await;
    let verifier = tokio::task::block_in_place(|| {
        pg.psql(
            "postgres",
            &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{SCRAM_ROLE}'"),
        )
    })
    .expect("read the verifier");
    assert!(verifier.starts_with("SCRAM-SHA-256$"), "{verifier:?}");
    let proxy = start_proxy(config(&pg, |c| {
        c.users.push(User {
            name: MD5_ROLE.into(),
            auth: AuthMethod::ScramSha256,
            password: Some("config-pw".into()),
            scram_verifier: None,
            server_password: Some(MD5_PW.into()),
        });
        c.users.push(User {
            name: SCRAM_ROLE.into(),
            auth: AuthMethod::ScramSha256,
            password: None,
            scram_verifier: Some(verifier.clone()),
            server_password: None,
        });
    }))
    .await;
    let addr = proxy.addr();

    assert_eq!(login_as(addr, MD5_ROLE, "config-pw").await, MD5_ROLE);
    expect_refused(addr, MD5_ROLE, MD5_PW, &SqlState::INVALID_PASSWORD).await;
    // No password for upstream in the config: SCRAM pass-through.
    assert_eq!(login_as(addr, SCRAM_ROLE, SCRAM_PW).await, SCRAM_ROLE);
    expect_refused(addr, SCRAM_ROLE, "wrong", &SqlState::INVALID_PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_and_reloads_keep_the_proved_login() {
    let pg = start_pg().await;
    // STABLE, so a read calling it may go to a replica; it says which
    // server answered.
    tokio::task::block_in_place(|| {
        pg.psql(
            DB,
            "CREATE FUNCTION public.server_role() RETURNS text STABLE LANGUAGE sql AS \
             $$ SELECT CASE WHEN pg_is_in_recovery() THEN 'replica' ELSE 'primary' END $$",
        )
    })
    .expect("server_role()");
    let replica = tokio::task::block_in_place(|| pg.start_replica()).expect("replica");
    let proxy = start_proxy(config(&pg, |c| {
        c.read_split.health_check_interval = Duration::from_millis(100);
        c.databases[0].replicas.push(config::Replica {
            host: replica.host().to_owned(),
            port: replica.port(),
            weight: 1,
        });
    }))
    .await;
    let addr = proxy.addr();
    let client = try_login(addr, SCRAM_ROLE, SCRAM_PW).await.expect("login");
    // A read that may run on the replica gets there, logged in with the
    // keys the client's SCRAM login proved (the replica demands SCRAM too).
    let started = std::time::Instant::now();
    loop {
        let row = client
            .query_one("SELECT public.server_role(), current_user::text", &[])
            .await
            .expect("read");
        let (server, user): (String, String) = (row.get(0), row.get(1));
        assert_eq!(user, SCRAM_ROLE);
        if server == "replica" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "reads never reached the replica"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A reload keeps the proved login on the pool: clients logged in
    // before it (one at a time, so they shared one server connection)
    // open three transactions at once after it, which needs new server
    // connections, made with no new login in between.
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(try_login(addr, SCRAM_ROLE, SCRAM_PW).await.expect("login"));
    }
    proxy.reload().await.expect("reload");
    let held = futures::future::join_all(others.iter().map(|c| async move {
        c.execute("BEGIN", &[]).await.expect("begin");
        c.execute("CREATE TEMP TABLE t (x int)", &[])
            .await
            .expect("a write on the primary after the reload");
        whoami(c).await
    }))
    .await;
    assert!(held.iter().all(|(user, _)| user == SCRAM_ROLE), "{held:?}");
    let pids: std::collections::BTreeSet<i32> = held.iter().map(|(_, pid)| *pid).collect();
    assert_eq!(pids.len(), 3, "three server connections at once");
}
