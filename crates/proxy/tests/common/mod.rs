//! Shared harness for the proxy's end-to-end tests: a real Postgres started
//! for the test, and a proxy in front of it on a free port.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use config::{AuthMethod, Config, Database, PoolMode, User};
use pgtest::{Cluster, ClusterOptions, HbaAuth};
use proxy::Proxy;

/// The database every test uses on its own cluster.
pub const DB: &str = "app";
/// The login role the proxy uses upstream (password-authenticated).
pub const USER: &str = "app";
pub const PASSWORD: &str = "app-secret";

/// A Postgres cluster and a proxy in front of it.
pub struct Env {
    pub pg: Cluster,
    pub proxy: Proxy,
}

/// How to set a test's proxy up.
pub struct Setup {
    pub mode: PoolMode,
    pub pool_size: usize,
    pub client_auth: AuthMethod,
    pub upstream_auth: HbaAuth,
    pub migrations: bool,
    pub query_wait_timeout: Duration,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            mode: PoolMode::Transaction,
            pool_size: 4,
            client_auth: AuthMethod::ScramSha256,
            upstream_auth: HbaAuth::ScramSha256,
            migrations: false,
            query_wait_timeout: Duration::from_secs(30),
        }
    }
}

impl Env {
    /// Starts a cluster (role `app` with a password, database `app`) and a
    /// proxy in front of it.
    pub async fn start(setup: Setup) -> Env {
        let (pg, _) = tokio::task::spawn_blocking(move || {
            let pg = Cluster::start(&ClusterOptions::with_auth(setup.upstream_auth))
                .expect("start postgres");
            pg.create_role(USER, Some(PASSWORD), false)
                .expect("create role");
            pg.create_database(DB).expect("create database");
            pg.psql(
                DB,
                &format!(
                    "ALTER DATABASE {DB} OWNER TO {USER}; GRANT ALL ON SCHEMA public TO {USER};"
                ),
            )
            .expect("grant");
            if setup.migrations {
                pg.apply_migrations(DB, &pgtest::migrations_dir())
                    .expect("migrations");
            }
            (pg, ())
        })
        .await
        .expect("setup thread");
        let proxy = Proxy::start(proxy_config(&pg, &setup))
            .await
            .expect("start proxy");
        Env { pg, proxy }
    }

    pub fn addr(&self) -> SocketAddr {
        self.proxy.addr()
    }

    /// A libpq-style URL through the proxy.
    pub fn url(&self) -> String {
        format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{DB}",
            self.addr().port()
        )
    }

    /// A libpq-style URL straight to Postgres.
    pub fn direct_url(&self) -> String {
        self.pg.url(USER, Some(PASSWORD), DB)
    }

    /// A tokio-postgres client through the proxy.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url()).await
    }

    /// A tokio-postgres client straight to Postgres.
    pub async fn direct(&self) -> tokio_postgres::Client {
        connect(&self.direct_url()).await
    }
}

/// The proxy config for one test: listen on a free port, one database, one user.
pub fn proxy_config(pg: &Cluster, setup: &Setup) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..Config::default()
    };
    config.pool.mode = setup.mode;
    config.pool.size = setup.pool_size;
    config.pool.query_wait_timeout = setup.query_wait_timeout;
    config.users.push(User {
        name: USER.into(),
        auth: setup.client_auth,
        password: Some(PASSWORD.into()),
        scram_verifier: None,
        server_password: None,
    });
    config
        .databases
        .push(Database::new(DB, pg.host(), pg.port()));
    config.validate().expect("valid test config");
    config
}

/// Connects with tokio-postgres and drives the connection in the background.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    try_connect(url).await.expect("connect")
}

pub async fn try_connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Runs a command line tool (psql, pgbench) and returns (success, stdout, stderr).
pub fn run(cmd: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The reference batch flush (migrations/002), unstamped.
pub const BATCH_FLUSH: &str = "SELECT entity.update_metadata_batch($1::text[], $2::text[], \
     $3::text[]::jsonb[], $4::text[])";
/// The same with each row's arrival stamp (the cross-proxy guard).
pub const STAMPED_FLUSH: &str = "SELECT entity.update_metadata_batch($1::text[], $2::text[], \
     $3::text[]::jsonb[], $4::text[], $5::text[]::bigint[])";

/// A coalescing proxy's YAML: transaction mode with `pool` (more `pool:`
/// keys as `key: value` YAML lines, two-space indented), user `app` with
/// `auth`, database `app` on 127.0.0.1:`pg_port`, and `rules` (from
/// [`function_rule`] and [`table_rule`]).
pub fn coalescing_yaml(pg_port: u16, pool: &str, auth: &str, rules: &[String]) -> String {
    format!(
        "listen: 127.0.0.1:0\npool:\n  mode: transaction\n{pool}\nusers:\n  \
         - {{name: {USER}, auth: {auth}, password: {PASSWORD}}}\ndatabases:\n  \
         - {{name: {DB}, host: 127.0.0.1, port: {pg_port}}}\ncoalesce:\n{}",
        rules.concat()
    )
}

/// The reference function rule `metadata_fn` (entity.update_metadata_optimized)
/// flushed by `flush`; `extra` are more `key: value` YAML lines.
pub fn function_rule(flush: &str, extra: &[&str]) -> String {
    format!(
        "  - name: metadata_fn\n    function: entity.update_metadata_optimized\n    \
         arguments: [p_entity_name, p_key, p_value, p_sync_group]\n    \
         defaults: {{p_sync_group: public.NORMAL}}\n    key: [p_entity_name, p_key]\n    \
         writes: [entity.entity_metadata]\n    flush: \"{flush}\"\n{}",
        rule_lines(extra)
    )
}

/// The reference table rule `metadata_upsert` (INSERT INTO
/// entity.entity_metadata ... ON CONFLICT); `extra` as for [`function_rule`].
pub fn table_rule(extra: &[&str]) -> String {
    format!(
        "  - name: metadata_upsert\n    table: entity.entity_metadata\n    \
         key: [general__entity_name, metadata__key]\n{}",
        rule_lines(extra)
    )
}

fn rule_lines(extra: &[&str]) -> String {
    extra.iter().map(|l| format!("    {l}\n")).collect()
}

/// A console command's rows, each as column -> value (NULLs left out).
pub async fn show(
    console: &tokio_postgres::Client,
    command: &str,
) -> Vec<std::collections::HashMap<String, String>> {
    let messages = console
        .simple_query(command)
        .await
        .unwrap_or_else(|e| panic!("{command}: {e}"));
    messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                r.columns()
                    .iter()
                    .enumerate()
                    .filter_map(|(i, c)| Some((c.name().to_owned(), r.get(i)?.to_owned())))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The rows of `command` whose `column` is `value`.
pub async fn rows_where(
    console: &tokio_postgres::Client,
    command: &str,
    column: &str,
    value: &str,
) -> Vec<std::collections::HashMap<String, String>> {
    let mut rows = show(console, command).await;
    rows.retain(|r| r.get(column).map(String::as_str) == Some(value));
    rows
}

/// Polls `check` until it holds, for up to 10 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(10), "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn code(e: &tokio_postgres::Error) -> Option<tokio_postgres::error::SqlState> {
    e.as_db_error().map(|d| d.code().clone())
}

/// `/usr/bin/psql` through the proxy at `addr` as `user` with `password`
/// (`PGPASSWORD`, never a prompt), `sslmode` as given, on database [`DB`];
/// (success, stdout, stderr).
pub fn psql_password(
    addr: SocketAddr,
    user: &str,
    password: &str,
    sslmode: &str,
    sql: &str,
) -> (bool, String, String) {
    let out = std::process::Command::new("/usr/bin/psql")
        .args(["-X", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", "127.0.0.1", "-p", &addr.port().to_string()])
        .args(["-U", user, "-d", DB, "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        .env("PGSSLMODE", sslmode)
        .env_remove("PGSERVICE")
        .env_remove("PGPASSFILE")
        .env_remove("PGOPTIONS")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run /usr/bin/psql");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
