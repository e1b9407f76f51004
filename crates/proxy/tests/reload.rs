//! Live operations seen by clients and operators: the console's `RELOAD`
//! applies an edited config file without dropping anyone, a bad file
//! changes nothing, a database moved to another server takes its clients
//! along, and `PAUSE`/`RESUME` hold and release a database's queries.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{code, eventually, show, Env, Setup, DB, PASSWORD, USER};
use pgtest::{Cluster, ClusterOptions, HbaAuth};
use proxy::state::ConfigSource;
use proxy::Proxy;
use tokio_postgres::error::SqlState;
use tokio_postgres::SimpleQueryMessage;

const ADMIN: &str = "ops";
const ADMIN_PASSWORD: &str = "ops-secret";
/// A Postgres role the first config does not list.
const LATE: &str = "late";
const LATE_PASSWORD: &str = "late-secret";

/// What a test's config file says; `yaml` renders it.
#[derive(Clone)]
struct Settings {
    port: u16,
    pool_size: usize,
    query_wait_timeout: &'static str,
    late_user: bool,
    listen: String,
}

impl Settings {
    fn yaml(&self) -> String {
        let late = if self.late_user {
            format!("  - {{name: {LATE}, password: {LATE_PASSWORD}}}\n")
        } else {
            String::new()
        };
        format!(
            "listen: {}\nadmin_users: [{ADMIN}]\npool:\n  mode: transaction\n  \
             size: {}\n  query_wait_timeout: {}\nusers:\n  \
             - {{name: {USER}, password: {PASSWORD}}}\n  \
             - {{name: {ADMIN}, password: {ADMIN_PASSWORD}}}\n{late}databases:\n  \
             - {{name: {DB}, host: 127.0.0.1, port: {}}}\n",
            self.listen, self.pool_size, self.query_wait_timeout, self.port
        )
    }
}

/// A cluster (roles `app` and `late`) and a proxy started from a config
/// file that the test edits; `RELOAD` reads the file again.
struct Live {
    env: Env,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Live {
    async fn start(settings: &Settings) -> (Live, Settings) {
        let Env { pg, proxy } = Env::start(Setup::default()).await;
        proxy.shutdown(Duration::from_secs(1)).await;
        pg.create_role(LATE, Some(LATE_PASSWORD), false)
            .expect("role late");
        let settings = Settings {
            port: pg.port(),
            ..settings.clone()
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("pgcoalesce.yaml");
        std::fs::write(&file, settings.yaml()).expect("write config");
        let config = config::load(&file).expect("valid config");
        let path = file.clone();
        let source: ConfigSource =
            Arc::new(move || config::load(&path).map_err(|e| format!("{e:#}")));
        let proxy = Proxy::start_with_source(config, Some(source))
            .await
            .expect("start proxy");
        let live = Live {
            env: Env { pg, proxy },
            file,
            _dir: dir,
        };
        (live, settings)
    }

    fn write(&self, text: &str) {
        write_file(&self.file, text);
    }

    fn url(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/{db}",
            self.env.addr().port()
        )
    }

    async fn console(&self) -> tokio_postgres::Client {
        common::connect(&self.url(ADMIN, ADMIN_PASSWORD, "pgcoalesce_admin")).await
    }

    async fn app(&self) -> tokio_postgres::Client {
        self.env.client().await
    }
}

fn write_file(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write config");
}

fn defaults() -> Settings {
    Settings {
        port: 0,
        pool_size: 2,
        query_wait_timeout: "30s",
        late_user: false,
        listen: "127.0.0.1:0".into(),
    }
}

/// The `app` pool's row of `SHOW POOLS`.
async fn app_pool(console: &tokio_postgres::Client) -> HashMap<String, String> {
    let rows = show(console, "SHOW POOLS").await;
    rows.into_iter()
        .find(|r| r["database"] == DB && r["user"] == USER)
        .expect("the app pool is listed")
}

async fn one_text(client: &tokio_postgres::Client, sql: &str) -> String {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("one row")
}

/// Waits until `pg` has no connection of role `app` (the proxy's).
async fn no_connections_of_app(pg: &Cluster, what: &str) {
    eventually(what, || async {
        let n = tokio::task::block_in_place(|| {
            pg.psql(
                DB,
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'",
            )
        });
        n.map(|n| n.trim() == "0").unwrap_or(false)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_users_and_pool_size_without_dropping_clients() {
    let (live, settings) = Live::start(&defaults()).await;
    let admin = live.console().await;
    let app = live.app().await;
    app.batch_execute("CREATE TABLE t (v int); BEGIN; INSERT INTO t VALUES (1)")
        .await
        .expect("open transaction");
    let err = common::try_connect(&live.url(LATE, LATE_PASSWORD, DB))
        .await
        .expect_err("late is not configured yet");
    assert_eq!(
        code(&err),
        Some(SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
        "{err}"
    );

    live.write(
        &Settings {
            pool_size: 3,
            late_user: true,
            ..settings.clone()
        }
        .yaml(),
    );
    admin.simple_query("RELOAD").await.expect("reload");
    // The open transaction survived the reload on its connection.
    app.batch_execute("INSERT INTO t VALUES (2); COMMIT")
        .await
        .expect("the transaction goes on");
    assert_eq!(one_text(&app, "SELECT sum(v) FROM t").await, "3");
    let late = common::connect(&live.url(LATE, LATE_PASSWORD, DB)).await;
    assert_eq!(one_text(&late, "SELECT current_user").await, LATE);
    assert_eq!(app_pool(&admin).await["pool_size"], "3");
    let config = show(&admin, "SHOW CONFIG").await;
    let size = config.iter().find(|r| r["key"] == "pool.size");
    assert_eq!(size.map(|r| r["value"].as_str()), Some("3"));

    // Removing the user again refuses new logins but keeps the client.
    live.write(&settings.yaml());
    admin.simple_query("RELOAD").await.expect("reload");
    assert_eq!(one_text(&late, "SELECT current_user").await, LATE);
    let err = common::try_connect(&live.url(LATE, LATE_PASSWORD, DB))
        .await
        .expect_err("late was removed");
    assert_eq!(
        code(&err),
        Some(SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
        "{err}"
    );
    assert_eq!(app_pool(&admin).await["pool_size"], "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_changes_nothing_and_restart_only_settings_warn() {
    let (live, settings) = Live::start(&defaults()).await;
    let admin = live.console().await;

    live.write("pool:\n  size: [\n");
    let err = admin
        .simple_query("RELOAD")
        .await
        .expect_err("broken YAML is refused");
    assert_eq!(code(&err), Some(SqlState::CONFIG_FILE_ERROR), "{err}");
    let message = err.as_db_error().map(|d| d.message().to_owned());
    assert!(message.is_some_and(|m| m.contains("line")), "{err}");

    live.write(
        &Settings {
            pool_size: 0,
            ..settings.clone()
        }
        .yaml(),
    );
    let err = admin
        .simple_query("RELOAD")
        .await
        .expect_err("an invalid setting is refused");
    assert_eq!(code(&err), Some(SqlState::CONFIG_FILE_ERROR), "{err}");
    // Nothing changed: the app logs in and the pool keeps its size.
    let app = live.app().await;
    assert_eq!(one_text(&app, "SELECT 1").await, "1");
    assert_eq!(app_pool(&admin).await["pool_size"], "2");

    // A new listen address needs a restart: psql shows the warning, and
    // the proxy keeps serving where it was.
    live.write(
        &Settings {
            listen: "127.0.0.1:1".into(),
            pool_size: 4,
            ..settings.clone()
        }
        .yaml(),
    );
    let url = live.url(ADMIN, ADMIN_PASSWORD, "pgcoalesce_admin");
    let (ok, _, stderr) = tokio::task::block_in_place(|| {
        common::run("psql", &["-X", "-A", "-t", &url, "-c", "RELOAD"], None)
    });
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("WARNING:  listen changed in the config; it takes effect after a restart"),
        "{stderr}"
    );
    let config = show(&admin, "SHOW CONFIG").await;
    let listen = config.iter().find(|r| r["key"] == "listen");
    assert_eq!(
        listen.map(|r| r["value"].clone()),
        Some("127.0.0.1:0".to_owned())
    );
    assert_eq!(app_pool(&admin).await["pool_size"], "4", "the rest applied");
    assert_eq!(one_text(&live.app().await, "SELECT 2").await, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_moved_to_another_server_takes_its_clients_along() {
    let (live, settings) = Live::start(&defaults()).await;
    let admin = live.console().await;
    let other = tokio::task::spawn_blocking(|| {
        let pg = Cluster::start(&ClusterOptions::with_auth(HbaAuth::ScramSha256))
            .expect("start the second postgres");
        pg.create_role(USER, Some(PASSWORD), false)
            .expect("create role");
        pg.create_database(DB).expect("create database");
        pg
    })
    .await
    .expect("setup thread");
    let first_port = settings.port.to_string();
    let second_port = other.port().to_string();

    let app = live.app().await;
    let idle = live.app().await;
    assert_eq!(one_text(&idle, "SHOW port").await, first_port);
    app.batch_execute("BEGIN").await.expect("begin");
    assert_eq!(one_text(&app, "SHOW port").await, first_port);

    live.write(
        &Settings {
            port: other.port(),
            ..settings.clone()
        }
        .yaml(),
    );
    admin.simple_query("RELOAD").await.expect("reload");
    // The open transaction stays where it started...
    assert_eq!(one_text(&app, "SHOW port").await, first_port);
    app.batch_execute("COMMIT").await.expect("commit");
    // ...and every later transaction, of both clients, runs on the new
    // server: no connection to the old one is reused.
    assert_eq!(one_text(&app, "SHOW port").await, second_port);
    assert_eq!(one_text(&idle, "SHOW port").await, second_port);
    no_connections_of_app(&live.env.pg, "the old server's connections are closed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_waits_for_busy_servers_and_resume_releases_held_queries() {
    let (live, _) = Live::start(&Settings {
        query_wait_timeout: "3s",
        ..defaults()
    })
    .await;
    let admin = Arc::new(live.console().await);
    let busy = live.app().await;
    busy.batch_execute("BEGIN; SELECT 1").await.expect("begin");

    let pausing = {
        let admin = admin.clone();
        tokio::spawn(async move { admin.simple_query("PAUSE app").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !pausing.is_finished(),
        "PAUSE waits for the open transaction"
    );
    busy.batch_execute("COMMIT").await.expect("commit");
    tokio::time::timeout(Duration::from_secs(5), pausing)
        .await
        .expect("PAUSE completes once the transaction ended")
        .expect("task")
        .expect("PAUSE");
    let console = live.console().await;
    assert_eq!(app_pool(&console).await["paused"], "t");
    assert_eq!(app_pool(&console).await["used"], "0");
    no_connections_of_app(&live.env.pg, "the server connections are closed").await;

    // A query and a new login both wait while the database is paused...
    let held = tokio::spawn(async move { one_text(&busy, "SELECT 42").await });
    let url = live.env.url();
    let login = tokio::spawn(async move { common::try_connect(&url).await.map(drop) });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!held.is_finished(), "the query is held");
    assert!(!login.is_finished(), "the login is held");
    // ...and go on at RESUME.
    admin.simple_query("RESUME app").await.expect("RESUME");
    let answer = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("the held query is answered after RESUME")
        .expect("task");
    assert_eq!(answer, "42");
    tokio::time::timeout(Duration::from_secs(5), login)
        .await
        .expect("the held login completes")
        .expect("task")
        .expect("login");
    assert_eq!(app_pool(&console).await["paused"], "f");

    // Held longer than query_wait_timeout: the query gets 57014 and the
    // client can go on after RESUME.
    let client = live.app().await;
    admin.simple_query("PAUSE").await.expect("PAUSE all");
    let err = client
        .simple_query("SELECT 1")
        .await
        .expect_err("held past query_wait_timeout");
    assert_eq!(code(&err), Some(SqlState::QUERY_CANCELED), "{err}");
    admin.simple_query("RESUME").await.expect("RESUME all");
    assert_eq!(one_text(&client, "SELECT 7").await, "7");
}
