//! The admin console seen by an operator: psql and tokio-postgres log in to
//! the virtual database `pgcoalesce_admin` and query the proxy's state, while
//! application clients use the proxy as usual.

mod common;

use std::time::Duration;

use common::{code, eventually, rows_where, show, Env, Setup, DB, PASSWORD, USER};
use config::{AuthMethod, Config, User};
use proxy::Proxy;
use tokio_postgres::error::SqlState;

/// The admin user the tests log in as (not a Postgres role: the console
/// never goes upstream).
const ADMIN: &str = "ops";
const ADMIN_PASSWORD: &str = "ops-secret";

/// Adds the admin user to `config`.
fn with_admin(mut config: Config) -> Config {
    config.users.push(User {
        name: ADMIN.into(),
        auth: AuthMethod::ScramSha256,
        password: Some(ADMIN_PASSWORD.into()),
        scram_verifier: None,
        server_password: None,
    });
    config.admin_users = vec![ADMIN.into()];
    config.validate().expect("valid admin config");
    config
}

/// The harness's cluster with a proxy that has an admin user.
async fn start() -> Env {
    start_with(Setup::default()).await
}

/// [`start`] with the pool set up as `setup` says.
async fn start_with(setup: Setup) -> Env {
    let Env { pg, proxy } = Env::start(Setup::default()).await;
    proxy.shutdown(Duration::from_secs(1)).await;
    let config = with_admin(common::proxy_config(&pg, &setup));
    let proxy = Proxy::start(config).await.expect("start proxy");
    Env { pg, proxy }
}

/// A cluster with the reference schema, entities `e0`..`e9`, and a
/// coalescing proxy (table rule, acknowledged `ack`, flushed every
/// `interval`) with an admin user.
async fn start_coalescing(ack: &str, interval: &str) -> Env {
    let Env { pg, proxy } = Env::start(Setup {
        migrations: true,
        ..Setup::default()
    })
    .await;
    proxy.shutdown(Duration::from_secs(1)).await;
    let yaml = common::coalescing_yaml(
        pg.port(),
        "  size: 4",
        "scram-sha-256",
        &[common::table_rule(&[
            &format!("ack: {ack}"),
            &format!("flush_interval: {interval}"),
        ])],
    );
    let config = with_admin(Config::from_yaml(&yaml).expect("config"));
    let proxy = Proxy::start(config).await.expect("start proxy");
    let env = Env { pg, proxy };
    env.direct()
        .await
        .execute(
            "INSERT INTO entity.entities (general__entity_name) \
             SELECT 'e' || g FROM generate_series(0, 9) g",
            &[],
        )
        .await
        .expect("entities");
    env
}

fn console_url(env: &Env, user: &str, password: &str) -> String {
    format!(
        "postgres://{user}:{password}@127.0.0.1:{}/pgcoalesce_admin",
        env.addr().port()
    )
}

async fn console(env: &Env) -> tokio_postgres::Client {
    common::connect(&console_url(env, ADMIN, ADMIN_PASSWORD)).await
}

/// psql's unaligned, tuples-only output of one console command.
fn psql(url: &str, command: &str) -> (bool, String, String) {
    tokio::task::block_in_place(|| {
        common::run("psql", &["-X", "-A", "-t", "-F|", url, "-c", command], None)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admin_users_get_the_console() {
    let env = start().await;
    let err = common::try_connect(&console_url(&env, USER, PASSWORD))
        .await
        .expect_err("a user not in admin_users is refused");
    assert_eq!(code(&err), Some(SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    let err = common::try_connect(&console_url(&env, ADMIN, "wrong"))
        .await
        .expect_err("a wrong password is refused");
    assert_eq!(code(&err), Some(SqlState::INVALID_PASSWORD), "{err}");
    let (ok, _, stderr) = psql(&console_url(&env, USER, PASSWORD), "SHOW VERSION");
    assert!(!ok && stderr.contains("not an admin user"), "{stderr}");

    let (ok, out, stderr) = psql(&console_url(&env, ADMIN, ADMIN_PASSWORD), "SHOW VERSION");
    assert!(ok, "{stderr}");
    assert!(out.starts_with("pgcoalesce "), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_and_pools_follow_connected_clients() {
    let env = start().await;
    let admin = console(&env).await;
    let busy = env.client().await;
    let idle: Vec<_> = vec![env.client().await, env.client().await];
    busy.batch_execute("BEGIN; SELECT 1")
        .await
        .expect("open a transaction");
    for c in &idle {
        c.simple_query("SELECT 1").await.expect("idle client works");
    }

    let apps = rows_where(&admin, "SHOW CLIENTS", "user", USER).await;
    assert_eq!(apps.len(), 3, "{apps:?}");
    for c in &apps {
        assert_eq!(c["database"], DB);
        assert_eq!(c["addr"], "127.0.0.1");
        assert_eq!(c["tls"], "f");
        assert!(c["connect_time"].ends_with('Z'), "{c:?}");
    }
    let me = rows_where(&admin, "show clients;", "user", ADMIN).await;
    assert_eq!(me.len(), 1, "the console session is listed too");
    assert_eq!(me[0]["database"], "pgcoalesce_admin");

    // Transaction mode: only the client in a transaction holds a server.
    let url = console_url(&env, ADMIN, ADMIN_PASSWORD);
    eventually("SHOW POOLS: used=1 and 3 clients", || async {
        let (ok, out, err) = psql(&url, "SHOW POOLS");
        assert!(ok, "{err}");
        let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split('|').collect()).collect();
        assert_eq!(rows.len(), 1, "one pool, none for the console: {out}");
        let r = &rows[0];
        assert_eq!(r[..4], [DB, USER, "transaction", "4"], "{out}");
        r[5] == "1" && r[6] == "3"
    })
    .await;

    drop(busy);
    drop(idle);
    eventually("disconnected clients leave SHOW CLIENTS", || async {
        rows_where(&admin, "SHOW CLIENTS", "user", USER)
            .await
            .is_empty()
    })
    .await;
    // The open transaction's server comes back once it is rolled back.
    eventually("SHOW POOLS: used=0 and no clients", || async {
        let pools = show(&admin, "SHOW POOLS").await;
        assert_eq!(pools.len(), 1);
        assert_eq!(pools[0]["clients"], "0");
        pools[0]["used"] == "0"
    })
    .await;
    let servers = show(&admin, "SHOW SERVERS").await;
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert_eq!(servers[0]["role"], "primary");
    assert_eq!(servers[0]["port"], env.pg.port().to_string());
}

/// A coalesced upsert of `entity`'s key `key` through `client`.
async fn upsert(client: &tokio_postgres::Client, entity: &str, key: &str, v: u32) {
    client
        .simple_query(&format!(
            "INSERT INTO entity.entity_metadata \
             (general__entity_name, metadata__key, metadata__value, group__sync) \
             VALUES ('{entity}', '{key}', '{{\"v\": {v}}}', 'public.NORMAL') \
             ON CONFLICT (general__entity_name, metadata__key) \
             DO UPDATE SET metadata__value = EXCLUDED.metadata__value"
        ))
        .await
        .expect("coalesced upsert, acknowledged at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesce_shows_pending_keys_until_they_flush() {
    let env = start_coalescing("flushed", "2ms").await;
    let admin = console(&env).await;
    // Hold flushes back: the first one waits for this lock, and the next
    // cannot start before it ends.
    let mut locker = env.direct().await;
    let lock = locker.transaction().await.expect("begin");
    lock.batch_execute("LOCK TABLE entity.entity_metadata IN EXCLUSIVE MODE")
        .await
        .expect("lock");
    let mut writers = Vec::new();
    let mut write = |entity: &'static str, v: u32, client: tokio_postgres::Client| {
        writers.push(tokio::spawn(async move {
            upsert(&client, entity, "k", v).await;
        }));
    };
    write("e0", 1, env.client().await);
    let watcher = env.direct().await;
    eventually("the first flush waits for the lock", || async {
        let waiting: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND datname = current_database()",
                &[],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        waiting > 0
    })
    .await;
    for (entity, v) in [("e1", 1), ("e2", 1), ("e3", 1), ("e1", 2)] {
        write(entity, v, env.client().await);
    }
    // The writers run concurrently: wait until all five have arrived (the
    // second write of e1 may come after the other keys).
    eventually("SHOW COALESCE: 3 keys wait behind the lock", || async {
        let groups = show(&admin, "SHOW COALESCE").await;
        assert_eq!(groups.len(), 1, "{groups:?}");
        assert_eq!(groups[0]["database"], DB);
        assert_eq!(groups[0]["user"], USER);
        assert_eq!(groups[0]["rule"], "metadata_upsert");
        let received = show(&admin, "SHOW STATS").await[0]["received"].clone();
        groups[0]["pending"] == "3" && received == "5"
    })
    .await;
    let stats = show(&admin, "SHOW STATS").await;
    assert_eq!(stats[0]["merged"], "1");
    assert_eq!(stats[0]["flushed_rows"], "0");

    lock.commit().await.expect("release the lock");
    for w in writers {
        tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("every writer's flush lands")
            .expect("writer");
    }
    assert_eq!(show(&admin, "SHOW COALESCE").await[0]["pending"], "0");
    let stats = show(&admin, "SHOW STATS").await;
    assert_eq!(stats[0]["received"], "5");
    assert_eq!(stats[0]["flushed_rows"], "4");
    let landed: i64 = watcher
        .query_one(
            "SELECT count(*) FROM entity.entity_metadata WHERE metadata__key = 'k'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(landed, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_leave_the_console_usable() {
    let env = start().await;
    let admin = console(&env).await;
    let err = admin
        .simple_query("SHOW NONSENSE")
        .await
        .expect_err("unknown command");
    assert_eq!(code(&err), Some(SqlState::SYNTAX_ERROR), "{err}");
    let message = err.as_db_error().map(|d| d.message().to_owned());
    assert!(message.is_some_and(|m| m.contains("SHOW POOLS")));
    let err = admin
        .simple_query("PAUSE nosuchdb")
        .await
        .expect_err("unknown database");
    assert_eq!(code(&err), Some(SqlState::INVALID_CATALOG_NAME), "{err}");
    assert_eq!(show(&admin, "  show   VERSION ; ").await.len(), 1);

    let extended = tokio::time::timeout(Duration::from_secs(5), admin.query("SHOW POOLS", &[]))
        .await
        .expect("the extended protocol gets an answer, not a hang");
    let err = extended.expect_err("the console speaks the simple protocol only");
    assert_eq!(code(&err), Some(SqlState::FEATURE_NOT_SUPPORTED), "{err}");
    let config = show(&admin, "SHOW CONFIG").await;
    let pool_mode = config.iter().find(|r| r["key"] == "pool.mode");
    assert_eq!(pool_mode.map(|r| r["value"].as_str()), Some("transaction"));
    assert!(
        !config.iter().any(|r| r["value"].contains(PASSWORD)),
        "no secrets"
    );
    assert!(show(&admin, "SHOW REPLICAS").await.is_empty());
    assert_eq!(show(&admin, "SHOW HELP").await.len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_from_the_console_drains_and_flushes() {
    // Hourly: the write is still pending when SHUTDOWN comes.
    let env = start_coalescing("immediate", "1h").await;
    let (app, conn) = tokio_postgres::connect(&env.url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    let closed = tokio::spawn(conn);
    app.simple_query(
        "INSERT INTO entity.entity_metadata \
         (general__entity_name, metadata__key, metadata__value) \
         VALUES ('e5', 'shutdown', '1') \
         ON CONFLICT (general__entity_name, metadata__key) \
         DO UPDATE SET metadata__value = EXCLUDED.metadata__value",
    )
    .await
    .expect("coalesced upsert, pending until the hourly flush");

    let (ok, _, stderr) = psql(&console_url(&env, ADMIN, ADMIN_PASSWORD), "SHUTDOWN");
    assert!(ok, "the console answers SHUTDOWN: {stderr}");
    tokio::time::timeout(Duration::from_secs(5), env.proxy.shutdown_requested())
        .await
        .expect("the proxy sees the request");

    let ended = tokio::time::timeout(Duration::from_secs(10), closed)
        .await
        .expect("the idle client is closed")
        .expect("connection task");
    let err = ended.expect_err("closed with an error");
    assert_eq!(code(&err), Some(SqlState::ADMIN_SHUTDOWN), "{err}");
    eventually("no new connections are accepted", || async {
        tokio::net::TcpStream::connect(env.addr()).await.is_err()
    })
    .await;

    let direct = env.direct().await;
    eventually("the pending write is flushed at shutdown", || async {
        let landed: i64 = direct
            .query_one(
                "SELECT count(*) FROM entity.entity_metadata WHERE metadata__key = 'shutdown'",
                &[],
            )
            .await
            .expect("count")
            .get(0);
        landed == 1
    })
    .await;
    let Env { proxy, pg: _pg } = env;
    assert_eq!(
        tokio::time::timeout(
            Duration::from_secs(10),
            proxy.shutdown(Duration::from_secs(5))
        )
        .await
        .expect("shutdown after a console SHUTDOWN returns"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_pools_counts_clients_waiting_for_a_connection() {
    let env = start_with(Setup {
        pool_size: 1,
        ..Setup::default()
    })
    .await;
    let admin = console(&env).await;
    let holder = env.client().await;
    let waiter = env.client().await;
    // The logins may have waited a moment for each other's connection.
    let waits_before: u64 = rows_where(&admin, "SHOW POOLS", "user", USER).await[0]["waits"]
        .parse()
        .expect("waits");
    holder
        .batch_execute("BEGIN; SELECT 1")
        .await
        .expect("begin");
    let waiting = tokio::spawn(async move {
        let row = waiter.query_one("SELECT 5", &[]).await.expect("query");
        row.get::<_, i32>(0)
    });
    eventually("the second client is listed as waiting", || async {
        let pool = rows_where(&admin, "SHOW POOLS", "user", USER).await;
        pool.first().is_some_and(|p| p["waiting"] == "1")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pool = rows_where(&admin, "SHOW POOLS", "user", USER).await;
    let max_wait: f64 = pool[0]["max_wait"].parse().expect("max_wait");
    assert!(
        max_wait >= 0.2,
        "max_wait {max_wait} counts the wait so far"
    );
    let servers = rows_where(&admin, "SHOW SERVERS", "user", USER).await;
    assert_eq!(servers[0]["waiting"], "1");
    let mut states: Vec<String> = rows_where(&admin, "SHOW CLIENTS", "user", USER)
        .await
        .iter()
        .map(|c| c["state"].clone())
        .collect();
    states.sort();
    assert_eq!(states, ["active", "waiting"], "one holds the connection");
    let consoles = rows_where(&admin, "SHOW CLIENTS", "user", ADMIN).await;
    assert_eq!(consoles[0]["state"], "idle");

    holder.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(waiting.await.expect("task"), 5);
    let pool = rows_where(&admin, "SHOW POOLS", "user", USER).await;
    assert_eq!(pool[0]["waiting"], "0");
    assert_eq!(pool[0]["max_wait"], "0");
    let waits: u64 = pool[0]["waits"].parse().expect("waits");
    assert_eq!(waits, waits_before + 1, "one checkout had to wait");
    let states = rows_where(&admin, "SHOW CLIENTS", "user", USER).await;
    assert!(
        states.iter().all(|c| c["state"] == "idle"),
        "between transactions nobody holds a connection: {states:?}"
    );
    let total: f64 = pool[0]["wait_seconds"].parse().expect("wait_seconds");
    assert!(total >= 0.2, "wait_seconds {total}");
}
