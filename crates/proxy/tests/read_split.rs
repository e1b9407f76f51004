//! Read splitting end to end (issue #5): a real primary, a real streaming
//! replica, the proxy in front of both, and tokio-postgres as the client.
//!
//! Where a statement ran is observed, never assumed:
//! - the routing table counts each statement's executions in
//!   `pg_stat_statements` on both servers, found by a marker comment unique
//!   to the case (the counters are reset before each one);
//! - the other tests read `served_by()`, a function declared STABLE (so the
//!   router lets it go to a replica) that answers `replica` or `primary`
//!   from `pg_is_in_recovery()` of the server that runs it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{proxy_config, Setup, DB, PASSWORD, USER};
use config::ReadSplit;
use pgtest::{Cluster, ClusterOptions, HbaAuth};
use proxy::Proxy;
use tokio_postgres::{Client, SimpleQueryMessage};

/// Which server a statement must run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Primary,
    Replica,
}

use Server::{Primary, Replica};

/// Created on every primary before the replica is cloned (as `app`).
const PROBE_SQL: &str = "
CREATE FUNCTION served_by() RETURNS text LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN CASE WHEN pg_is_in_recovery() THEN 'replica' ELSE 'primary' END;
END $$;
";

/// Runs blocking pgtest work off the runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

/// How to build one primary + replica + proxy.
struct Options {
    /// postgresql.conf settings of the primary (the replica copies them).
    pg_settings: Vec<(&'static str, &'static str)>,
    /// Apply the workspace's `migrations/` before `setup_sql`.
    migrations: bool,
    /// Run as the superuser on the primary (extensions).
    superuser_sql: &'static str,
    /// Run as `app` on the primary, after [`PROBE_SQL`].
    setup_sql: &'static str,
    read_split: ReadSplit,
    pool_size: usize,
    coalesce: Vec<config::CoalesceRule>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            pg_settings: Vec::new(),
            migrations: false,
            superuser_sql: "",
            setup_sql: "",
            read_split: ReadSplit {
                health_check_interval: Duration::from_millis(200),
                ..ReadSplit::default()
            },
            pool_size: 4,
            coalesce: Vec::new(),
        }
    }
}

/// A primary, its streaming replica and a proxy splitting reads to it.
struct SplitEnv {
    primary: Arc<Cluster>,
    replica: Arc<Cluster>,
    proxy: Proxy,
}

impl SplitEnv {
    /// Starts everything and waits until the proxy sends reads to the replica.
    async fn start(opts: Options) -> SplitEnv {
        let Options {
            pg_settings,
            migrations,
            superuser_sql,
            setup_sql,
            read_split,
            pool_size,
            coalesce,
        } = opts;
        let (primary, replica) = blocking(move || {
            let mut options = ClusterOptions::with_auth(HbaAuth::ScramSha256);
            for (name, value) in pg_settings {
                options = options.setting(name, value);
            }
            let primary = Cluster::start(&options).expect("start primary");
            primary
                .create_role(USER, Some(PASSWORD), false)
                .expect("create role");
            primary.create_database(DB).expect("create database");
            primary
                .psql(
                    DB,
                    &format!(
                        "ALTER DATABASE {DB} OWNER TO {USER}; GRANT ALL ON SCHEMA public TO {USER};"
                    ),
                )
                .expect("grant");
            if migrations {
                primary
                    .apply_migrations(DB, &pgtest::migrations_dir())
                    .expect("migrations");
            }
            if !superuser_sql.is_empty() {
                primary.psql(DB, superuser_sql).expect("superuser setup");
            }
            primary
                .psql(DB, &format!("SET ROLE {USER};\n{PROBE_SQL}\n{setup_sql}"))
                .expect("setup sql");
            let replica = primary.start_replica().expect("start replica");
            (primary, replica)
        })
        .await;
        let setup = Setup {
            pool_size,
            ..Setup::default()
        };
        let mut config = proxy_config(&primary, &setup);
        config.databases[0].replicas = vec![config::Replica::new(replica.host(), replica.port())];
        config.read_split = read_split;
        config.coalesce = coalesce;
        config.validate().expect("valid read split config");
        let proxy = Proxy::start(config).await.expect("start proxy");
        let env = SplitEnv {
            primary: Arc::new(primary),
            replica: Arc::new(replica),
            proxy,
        };
        let probe = env.client().await;
        wait_for_server(
            &probe,
            Replica,
            Duration::from_secs(30),
            "first replica read",
        )
        .await;
        env
    }

    fn url(&self) -> String {
        format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{DB}",
            self.proxy.addr().port()
        )
    }

    /// A new client through the proxy (it has never written).
    async fn client(&self) -> Client {
        common::connect(&self.url()).await
    }

    /// A superuser connection straight to the primary.
    async fn primary_admin(&self) -> Client {
        common::connect(&self.primary.superuser_url(DB)).await
    }

    /// A superuser connection straight to the replica.
    async fn replica_admin(&self) -> Client {
        common::connect(&self.replica.superuser_url(DB)).await
    }

    /// Stops the proxy, then both servers.
    async fn finish(self) {
        self.proxy.shutdown(Duration::from_secs(1)).await;
        let (primary, replica) = (self.primary, self.replica);
        blocking(move || drop((replica, primary))).await;
    }
}

/// Which server answered `SELECT served_by()` (extended protocol).
async fn served_by(client: &Client) -> Result<Server, tokio_postgres::Error> {
    let row = client.query_one("SELECT served_by()", &[]).await?;
    Ok(server_named(row.get(0)))
}

/// `SELECT served_by()` over the simple query protocol.
async fn simple_server(client: &Client) -> Result<Server, tokio_postgres::Error> {
    let messages = client.simple_query("SELECT served_by()").await?;
    let name = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0),
            _ => None,
        })
        .expect("a row");
    Ok(server_named(name))
}

fn server_named(name: &str) -> Server {
    match name {
        "replica" => Replica,
        "primary" => Primary,
        other => panic!("served_by() returned {other:?}"),
    }
}

/// Reads `served_by()` on `client` until `want` answers; returns how long
/// that took. Over the simple protocol: a read the primary serves over the
/// extended protocol counts as a write (see
/// a_reader_that_fell_back_to_the_primary_returns_to_the_replica).
async fn wait_for_server(client: &Client, want: Server, limit: Duration, what: &str) -> Duration {
    let start = Instant::now();
    loop {
        let got = simple_server(client)
            .await
            .expect("served_by through the proxy");
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{what}: reads still served by the {got:?} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ------------------------------------------------------------ routing table

/// Objects the routing table's statements use.
const ROUTING_SQL: &str = "
CREATE TABLE rs_items (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO rs_items VALUES (1, 'one'), (2, 'two'), (3, 'three');
CREATE TABLE rs_log (id serial PRIMARY KEY, note text);
CREATE SEQUENCE rs_seq;
CREATE FUNCTION rs_stable(int) RETURNS int LANGUAGE sql STABLE
    AS $$ SELECT count(*)::int + $1 FROM rs_items $$;
CREATE FUNCTION rs_volatile(int) RETURNS int LANGUAGE sql VOLATILE
    AS $$ SELECT $1 + 1 $$;
CREATE FUNCTION rs_volatile_rows() RETURNS SETOF rs_items LANGUAGE sql VOLATILE
    AS $$ SELECT * FROM rs_items $$;
INSERT INTO entity.entities (general__entity_name) VALUES ('e1');
SELECT entity.update_metadata_optimized('e1', 'seed', to_jsonb(1));
";

/// Every statement of the routing table and where it must run. `{m}` is
/// replaced by a marker comment unique to the run, `{id}` by a name suffix
/// unique to the run; `; ` separates statements sent one after another on
/// the same client (transactions).
const ROUTES: &[(&str, Server)] = &[
    // Reads.
    ("SELECT {m} 1", Replica),
    ("SELECT {m} id, name FROM rs_items WHERE id = 1", Replica),
    ("SELECT {m} count(*), max(id) FROM rs_items", Replica),
    ("SELECT {m} i.name FROM rs_items i JOIN rs_items j ON j.id = i.id ORDER BY i.id LIMIT 2", Replica),
    ("SELECT {m} name FROM rs_items WHERE id IN (SELECT id FROM rs_items WHERE id < 3)", Replica),
    ("SELECT {m} id, count(*) OVER () FROM rs_items", Replica),
    ("SELECT {m} id FROM rs_items UNION ALL SELECT 42", Replica),
    ("VALUES {m} (1, 'one'), (2, 'two')", Replica),
    ("SHOW {m} search_path", Replica),
    ("SHOW {m} work_mem", Replica),
    // `TABLE t` belongs here: see table_statement_reads_from_the_replica.
    ("WITH {m} small AS (SELECT id FROM rs_items WHERE id < 3) SELECT count(*) FROM small", Replica),
    ("WITH RECURSIVE {m} n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 5) SELECT sum(x) FROM n", Replica),
    ("SELECT {m} now()", Replica),
    ("SELECT {m} lower('ABC'), upper(name) FROM rs_items WHERE id = 1", Replica),
    ("SELECT {m} current_timestamp, current_user, coalesce(NULL, 1)", Replica),
    ("SELECT {m} * FROM generate_series(1, 3)", Replica),
    ("SELECT {m} jsonb_build_object('a', 1) ->> 'a'", Replica),
    ("SELECT {m} rs_stable(2)", Replica),
    ("SELECT {m} auth.current_agent_id()", Replica),
    ("SELECT {m} metadata__value FROM entity.entity_metadata WHERE general__entity_name = 'e1'", Replica),
    ("EXPLAIN {m} SELECT * FROM rs_items WHERE id = 1", Replica),
    ("BEGIN READ ONLY; SELECT {m} name FROM rs_items WHERE id = 2; COMMIT", Replica),
    ("START TRANSACTION READ ONLY; SELECT {m} count(*) FROM rs_items; COMMIT", Replica),
    // Writes.
    ("INSERT {m} INTO rs_log (note) VALUES ('x')", Primary),
    ("INSERT {m} INTO rs_items VALUES (1, 'one') ON CONFLICT (id) DO UPDATE SET name = excluded.name", Primary),
    ("UPDATE {m} rs_items SET name = name WHERE id = 1", Primary),
    ("DELETE {m} FROM rs_log WHERE note = 'never'", Primary),
    ("WITH {m} u AS (UPDATE rs_items SET name = name WHERE id = 2 RETURNING id) SELECT * FROM u", Primary),
    ("WITH {m} i AS (INSERT INTO rs_log (note) VALUES ('cte') RETURNING id) SELECT count(*) FROM i", Primary),
    ("SELECT {m} * INTO rs_copy_{id} FROM rs_items", Primary),
    ("CREATE TABLE {m} rs_ddl_{id} (x int)", Primary),
    ("CREATE INDEX {m} rs_idx_{id} ON rs_items (name)", Primary),
    ("EXPLAIN {m} DELETE FROM rs_log WHERE note = 'never'", Primary),
    // Row locks.
    ("SELECT {m} * FROM rs_items WHERE id = 1 FOR UPDATE", Primary),
    ("SELECT {m} * FROM rs_items WHERE id = 1 FOR SHARE", Primary),
    ("SELECT {m} * FROM rs_items WHERE id = 1 FOR NO KEY UPDATE", Primary),
    ("SELECT {m} * FROM rs_items WHERE id = 1 FOR KEY SHARE", Primary),
    // Volatile functions, wherever they are called.
    ("SELECT {m} nextval('rs_seq')", Primary),
    ("SELECT {m} name FROM rs_items WHERE id = (SELECT nextval('rs_seq') % 3 + 1)", Primary),
    ("SELECT {m} set_config('x.y', '1', false)", Primary),
    ("SELECT {m} pg_advisory_xact_lock(1)", Primary),
    ("SELECT {m} entity.update_metadata_optimized('e1', 'k{id}', to_jsonb(1))", Primary),
    ("SELECT {m} rs_volatile(1)", Primary),
    ("SELECT {m} * FROM rs_volatile_rows()", Primary),
    ("SELECT {m} random()", Primary),
    ("SELECT {m} clock_timestamp()", Primary),
    ("SELECT {m} gen_random_uuid()", Primary),
    ("VALUES {m} (random())", Primary),
    // Answers that depend on the server asked. pg_is_in_recovery() is
    // VOLATILE in pg_proc (and server-local): the design keeps it on the
    // primary, which is why the other tests probe with served_by().
    ("SELECT {m} pg_is_in_recovery()", Primary),
    ("SELECT {m} current_setting('work_mem')", Primary),
    ("SHOW {m} transaction_read_only", Primary),
    ("SELECT {m} count(*) FROM pg_stat_activity", Primary),
    // Hints and read-write transactions.
    ("/* pgcoalesce:primary */ SELECT {m} 1", Primary),
    ("SELECT {m} name FROM rs_items WHERE id = 1 -- PgCoalesce:Primary", Primary),
    ("BEGIN; SELECT {m} name FROM rs_items WHERE id = 1; COMMIT", Primary),
];

/// Executions of statements containing `marker` on one server.
async fn executions(admin: &Client, marker: &str) -> i64 {
    admin
        .query_one(
            "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements \
             WHERE strpos(query, $1) > 0",
            &[&marker],
        )
        .await
        .expect("read pg_stat_statements")
        .get(0)
}

/// Runs one statement (or `; `-separated sequence) through `client`, with
/// the simple query protocol or the extended one.
async fn run_case(client: &Client, sql: &str, simple: bool) -> Result<(), tokio_postgres::Error> {
    for statement in sql.split("; ") {
        if simple {
            client.simple_query(statement).await?;
        } else {
            client.query(statement, &[]).await?;
        }
    }
    Ok(())
}

/// A primary and replica with pg_stat_statements and the routing table's
/// objects (and the migrations' functions).
async fn routing_env() -> SplitEnv {
    SplitEnv::start(Options {
        pg_settings: vec![
            ("shared_preload_libraries", "pg_stat_statements"),
            ("pg_stat_statements.track", "all"),
        ],
        migrations: true,
        superuser_sql: "CREATE EXTENSION pg_stat_statements;",
        setup_sql: ROUTING_SQL,
        ..Options::default()
    })
    .await
}

/// Runs every case with both protocols, each on a new client, and returns
/// a line for every one that did not run (only) where it must.
async fn check_routes(env: &SplitEnv, cases: &[(&str, Server)]) -> Vec<String> {
    let primary = env.primary_admin().await;
    let replica = env.replica_admin().await;
    let mut wrong = Vec::new();
    for (n, &(template, expect)) in cases.iter().enumerate() {
        for simple in [true, false] {
            let id = format!("{n:02}{}", if simple { "s" } else { "x" });
            let marker = format!("rs_case_{id}");
            let sql = template
                .replace("{m}", &format!("/*{marker}*/"))
                .replace("{id}", &id);
            for admin in [&primary, &replica] {
                admin
                    .batch_execute("SELECT pg_stat_statements_reset()")
                    .await
                    .expect("reset pg_stat_statements");
            }
            // A new client: no earlier write of its own keeps it on the primary.
            let client = env.client().await;
            if let Err(e) = run_case(&client, &sql, simple).await {
                wrong.push(format!("{sql:?} (simple: {simple}) failed: {e:?}"));
                continue;
            }
            drop(client);
            // The counters are updated as the statement ends, which may be
            // just after the client has its answer.
            let deadline = Instant::now() + Duration::from_secs(5);
            let (on_primary, on_replica) = loop {
                let counts = (
                    executions(&primary, &marker).await,
                    executions(&replica, &marker).await,
                );
                if counts.0 + counts.1 > 0 || Instant::now() > deadline {
                    break counts;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let ran = match (on_primary, on_replica) {
                (p, 0) if p > 0 => Some(Primary),
                (0, r) if r > 0 => Some(Replica),
                _ => None,
            };
            if ran != Some(expect) {
                wrong.push(format!(
                    "{sql:?} (simple: {simple}): expected on the {expect:?}, \
                     ran {on_primary}x on the primary and {on_replica}x on the replica"
                ));
            }
        }
    }
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_table_sends_each_statement_where_it_must_run() {
    assert!(ROUTES.len() >= 40);
    let env = routing_env().await;
    let began = Instant::now();
    let wrong = check_routes(&env, ROUTES).await;
    eprintln!(
        "routing table: {} statements x 2 protocols checked in {:?}",
        ROUTES.len(),
        began.elapsed()
    );
    assert!(
        wrong.is_empty(),
        "{} of {} routing checks wrong:\n{}",
        wrong.len(),
        ROUTES.len() * 2,
        wrong.join("\n")
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_statement_reads_from_the_replica() {
    let env = routing_env().await;
    let wrong = check_routes(&env, &[("TABLE {m} rs_items", Replica)]).await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    env.finish().await;
}

// ------------------------------------------------------------ read your writes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_reads_its_writes_while_other_reads_use_a_delayed_replica() {
    const PAIRS: i64 = 1000;
    let env = SplitEnv::start(Options {
        setup_sql: "CREATE TABLE rs_counter (id int PRIMARY KEY, v bigint NOT NULL);
                    INSERT INTO rs_counter VALUES (1, 0);
                    CREATE TABLE rs_rows (id bigint PRIMARY KEY);",
        ..Options::default()
    })
    .await;
    let replica = env.replica.clone();
    blocking(move || {
        replica
            .set_setting("recovery_min_apply_delay", "500ms")
            .expect("set recovery_min_apply_delay")
    })
    .await;
    let replica_admin = env.replica_admin().await;
    let delay: String = replica_admin
        .query_one("SHOW recovery_min_apply_delay", &[])
        .await
        .expect("show delay")
        .get(0);
    assert_eq!(delay, "500ms");

    let writer = env.client().await;
    let reader = env.client().await;
    let done = Arc::new(AtomicBool::new(false));
    let reads = tokio::spawn({
        let done = done.clone();
        async move {
            let probe = reader.prepare("SELECT served_by()").await.expect("prepare");
            let (mut on_replica, mut on_primary) = (0u32, 0u32);
            while !done.load(Ordering::Acquire) {
                let row = reader.query_one(&probe, &[]).await.expect("reader's read");
                match server_named(row.get(0)) {
                    Replica => on_replica += 1,
                    Primary => on_primary += 1,
                }
            }
            (on_replica, on_primary)
        }
    });

    let update = writer
        .prepare("UPDATE rs_counter SET v = $1 WHERE id = 1")
        .await
        .expect("prepare update");
    let read_counter = writer
        .prepare("SELECT v, served_by() FROM rs_counter WHERE id = 1")
        .await
        .expect("prepare read");
    let insert = writer
        .prepare("INSERT INTO rs_rows VALUES ($1)")
        .await
        .expect("prepare insert");
    let read_row = writer
        .prepare("SELECT count(*), served_by() FROM rs_rows WHERE id = $1")
        .await
        .expect("prepare read row");
    let started = Instant::now();
    let mut stale = Vec::new();
    let mut writer_on_replica = 0;
    for i in 1..=PAIRS {
        // Updates and inserts, through the extended and the simple protocol.
        let simple = (i / 2) % 2 == 1;
        let (got, want, server) = if i % 2 == 0 {
            if simple {
                writer
                    .simple_query(&format!("UPDATE rs_counter SET v = {i} WHERE id = 1"))
                    .await
                    .expect("update");
                let (v, s) = simple_pair(
                    &writer,
                    "SELECT v, served_by() FROM rs_counter WHERE id = 1",
                )
                .await;
                (v, i, s)
            } else {
                writer.execute(&update, &[&i]).await.expect("update");
                let row = writer.query_one(&read_counter, &[]).await.expect("read");
                (row.get::<_, i64>(0), i, server_named(row.get(1)))
            }
        } else if simple {
            writer
                .simple_query(&format!("INSERT INTO rs_rows VALUES ({i})"))
                .await
                .expect("insert");
            let sql = format!("SELECT count(*), served_by() FROM rs_rows WHERE id = {i}");
            let (n, s) = simple_pair(&writer, &sql).await;
            (n, 1, s)
        } else {
            writer.execute(&insert, &[&i]).await.expect("insert");
            let row = writer.query_one(&read_row, &[&i]).await.expect("read");
            (row.get::<_, i64>(0), 1, server_named(row.get(1)))
        };
        if got != want {
            stale.push(format!(
                "pair {i}: read {got}, wrote {want} (served by the {server:?})"
            ));
        }
        if server == Replica {
            writer_on_replica += 1;
        }
    }
    let elapsed = started.elapsed();
    // The replica really was behind: without read-your-writes the writer's
    // reads there would have been stale.
    let replica_v: i64 = replica_admin
        .query_one("SELECT v FROM rs_counter WHERE id = 1", &[])
        .await
        .expect("replica counter")
        .get(0);
    done.store(true, Ordering::Release);
    let (on_replica, on_primary) = reads.await.expect("reader task");
    eprintln!(
        "read-your-writes: {PAIRS} pairs in {elapsed:?}, {writer_on_replica} of the writer's reads \
         on the replica; reader: {on_replica} on the replica, {on_primary} on the primary; \
         replica counter right after: {replica_v}"
    );
    assert!(
        stale.is_empty(),
        "{} stale reads:\n{}",
        stale.len(),
        stale.join("\n")
    );
    assert!(
        replica_v < PAIRS,
        "the replica was not behind (counter {replica_v}): the delay did not take"
    );
    let total = on_replica + on_primary;
    assert!(total >= 50, "only {total} reads by the reader");
    assert!(
        f64::from(on_replica) >= 0.9 * f64::from(total),
        "only {on_replica} of the reader's {total} reads were served by the replica"
    );

    // Once the replica has replayed the writes, the writer's reads go back
    // to it, and see them.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row = writer.query_one(&read_counter, &[]).await.expect("read");
        let (v, server) = (row.get::<_, i64>(0), server_named(row.get(1)));
        assert_eq!(v, PAIRS, "writer read a stale counter on the {server:?}");
        if server == Replica {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the writer's reads never went back to the replica"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.finish().await;
}

/// The first row of a simple query returning (bigint, served_by()).
async fn simple_pair(client: &Client, sql: &str) -> (i64, Server) {
    let messages = client.simple_query(sql).await.expect("simple read");
    let row = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .expect("a row");
    let n = row.get(0).expect("value").parse().expect("a number");
    (n, server_named(row.get(1).expect("served_by")))
}

// ------------------------------------------------------------ lag bound

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_leave_a_lagging_replica_and_come_back() {
    let interval = Duration::from_millis(200);
    let env = SplitEnv::start(Options {
        setup_sql: "CREATE TABLE rs_pad (id serial PRIMARY KEY, pad text);",
        read_split: ReadSplit {
            health_check_interval: interval,
            max_lag_bytes: 32 * 1024,
            ..ReadSplit::default()
        },
        ..Options::default()
    })
    .await;
    let replica_admin = env.replica_admin().await;
    let reader = env.client().await;
    let writer = env.client().await;
    let read = reader
        .prepare("SELECT count(*), served_by() FROM rs_pad")
        .await
        .expect("prepare");
    let read_once = || async {
        let row = reader.query_one(&read, &[]).await.expect("reader's read");
        (row.get::<_, i64>(0), server_named(row.get(1)))
    };
    assert_eq!(read_once().await, (0, Replica));

    replica_admin
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .expect("pause replay");
    // About 500 kB of WAL, far past max_lag_bytes.
    writer
        .batch_execute(
            "INSERT INTO rs_pad (pad) SELECT repeat('x', 200) FROM generate_series(1, 2000)",
        )
        .await
        .expect("write");
    let wrote = Instant::now();
    let limit = 10 * interval;
    let moved = loop {
        let (n, server) = read_once().await;
        if server == Primary {
            assert_eq!(n, 2000, "the primary's answer");
            break wrote.elapsed();
        }
        assert_eq!(n, 0, "the replica replayed while paused");
        assert!(
            wrote.elapsed() < limit,
            "reads still on the lagging replica {limit:?} after the write"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // And they stay there while the replica lags.
    for _ in 0..20 {
        assert_eq!(read_once().await, (2000, Primary));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    replica_admin
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .expect("resume replay");
    let resumed = Instant::now();
    loop {
        let (n, server) = read_once().await;
        assert_eq!(n, 2000, "a read on the {server:?} missed the write");
        if server == Replica {
            break;
        }
        assert!(
            resumed.elapsed() < Duration::from_secs(10),
            "reads never went back to the replica after it caught up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "lag bound: reads moved to the primary {moved:?} after the write, back to the replica {:?} after resume",
        resumed.elapsed()
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_fell_back_to_the_primary_returns_to_the_replica() {
    let interval = Duration::from_millis(200);
    let env = SplitEnv::start(Options {
        setup_sql: "CREATE TABLE rs_pad (id serial PRIMARY KEY, pad text);
                    CREATE TABLE rs_tick (id int PRIMARY KEY, n bigint);
                    INSERT INTO rs_tick VALUES (1, 0);",
        read_split: ReadSplit {
            health_check_interval: interval,
            max_lag_bytes: 64 * 1024,
            ..ReadSplit::default()
        },
        ..Options::default()
    })
    .await;
    // A replica a second behind a primary that keeps writing a little:
    // within the lag bounds, so it serves clients that never wrote.
    let replica = env.replica.clone();
    blocking(move || {
        replica
            .set_setting("recovery_min_apply_delay", "1s")
            .expect("delay")
    })
    .await;
    let primary_admin = env.primary_admin().await;
    let ticking = Arc::new(AtomicBool::new(true));
    let ticker = tokio::spawn({
        let ticking = ticking.clone();
        async move {
            while ticking.load(Ordering::Acquire) {
                primary_admin
                    .batch_execute("UPDATE rs_tick SET n = n + 1 WHERE id = 1")
                    .await
                    .expect("tick");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            primary_admin
        }
    });
    let replica_admin = env.replica_admin().await;
    let extended = env.client().await;
    let simple = env.client().await;
    let probe = extended
        .prepare("SELECT served_by()")
        .await
        .expect("prepare");
    let read_extended = || async {
        let row = extended
            .query_one(&probe, &[])
            .await
            .expect("extended read");
        server_named(row.get(0))
    };
    let read_simple = || async { simple_server(&simple).await.expect("simple read") };
    let both = || async { (read_extended().await, read_simple().await) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while both().await != (Replica, Replica) {
        assert!(
            Instant::now() < deadline,
            "reads never used the delayed replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Both readers fall back to the primary while the replica lags further.
    replica_admin
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .expect("pause replay");
    env.client()
        .await
        .batch_execute(
            "INSERT INTO rs_pad (pad) SELECT repeat('x', 200) FROM generate_series(1, 2000)",
        )
        .await
        .expect("write");
    let deadline = Instant::now() + 10 * interval;
    while both().await != (Primary, Primary) {
        assert!(
            Instant::now() < deadline,
            "reads stayed on the lagging replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    replica_admin
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .expect("resume replay");
    let fresh = env.client().await;
    wait_for_server(
        &fresh,
        Replica,
        Duration::from_secs(10),
        "a new client after resume",
    )
    .await;

    // Neither reader ever wrote: both must be back on the replica within
    // a few health checks, reading every 20 ms.
    let (mut extended_back, mut simple_back) = (false, false);
    let until = Instant::now() + 3 * Duration::from_secs(1);
    while Instant::now() < until && !(extended_back && simple_back) {
        let (e, s) = both().await;
        extended_back |= e == Replica;
        simple_back |= s == Replica;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ticking.store(false, Ordering::Release);
    drop(ticker.await.expect("ticker"));
    assert!(
        simple_back,
        "the simple-protocol reader stayed on the primary"
    );
    assert!(
        extended_back,
        "the extended-protocol reader stayed on the primary though it never wrote"
    );
    env.finish().await;
}

// ------------------------------------------------------------ replica stopped

/// One read of a reader task.
struct Read {
    started: Instant,
    /// The server that answered, or the SQLSTATE (or error) it failed with.
    outcome: Result<Server, String>,
}

/// SQLSTATE of a failed read, or what kind of failure it was.
fn failure(e: &tokio_postgres::Error) -> String {
    match e.code() {
        Some(code) => code.code().to_string(),
        None if e.is_closed() => "connection closed".to_string(),
        None => format!("no SQLSTATE: {e}"),
    }
}

/// Whether a failure is what a read in flight on a server being shut down
/// gets: admin_shutdown, a connection exception, or the connection gone.
fn in_flight_failure(what: &str) -> bool {
    what == "57P01"
        || what.starts_with("08")
        || what == "connection closed"
        || what.starts_with("no SQLSTATE")
}

/// Reads `served_by()` in a loop until `stop`, with the simple or the
/// extended (prepared statement) protocol; reconnects after a failure.
async fn reader_loop(url: String, simple: bool, stop: Arc<AtomicBool>) -> Vec<Read> {
    let mut reads = Vec::new();
    let mut client: Option<(Client, tokio_postgres::Statement)> = None;
    while !stop.load(Ordering::Acquire) {
        let started = Instant::now();
        if client.is_none() {
            let connected = match common::try_connect(&url).await {
                Ok(c) => match c.prepare("SELECT served_by()").await {
                    Ok(statement) => Ok((c, statement)),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match connected {
                Ok(c) => client = Some(c),
                Err(e) => {
                    reads.push(Read {
                        started,
                        outcome: Err(format!("connect: {}", failure(&e))),
                    });
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let (c, statement) = client.as_ref().expect("connected");
        let outcome = if simple {
            simple_server(c).await
        } else {
            c.query_one(statement, &[])
                .await
                .map(|row| server_named(row.get(0)))
        };
        let outcome = outcome.map_err(|e| failure(&e));
        if outcome.is_err() {
            client = None;
        }
        reads.push(Read { started, outcome });
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    reads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_survive_the_replica_stopping_and_return_when_it_starts() {
    const READERS: usize = 4;
    let env = SplitEnv::start(Options {
        pool_size: 8,
        ..Options::default()
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    // Even readers use the simple protocol, odd ones prepared statements.
    let tasks: Vec<_> = (0..READERS)
        .map(|r| tokio::spawn(reader_loop(env.url(), r % 2 == 0, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let stopping = Instant::now();
    let replica = env.replica.clone();
    blocking(move || replica.stop().expect("stop replica")).await;
    let stopped = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let restarting = Instant::now();
    let replica = env.replica.clone();
    blocking(move || replica.start_again().expect("start replica again")).await;
    // New clients read from it again.
    let probe = env.client().await;
    let back = wait_for_server(&probe, Replica, Duration::from_secs(20), "after restart").await;
    let fresh = env.client().await;
    assert_eq!(
        served_by(&fresh).await.expect("read"),
        Replica,
        "a new client's prepared read after the restart"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Release);
    let mut per_reader = Vec::new();
    for task in tasks {
        per_reader.push(task.await.expect("reader task"));
    }

    let mut failed = Vec::new();
    for (r, reads) in per_reader.iter().enumerate() {
        for read in reads {
            if let Err(what) = &read.outcome {
                let at = read.started.saturating_duration_since(stopping);
                failed.push(format!(
                    "reader {r}: a read started {at:?} into the stop: {what}"
                ));
            }
        }
    }
    eprintln!(
        "replica stopped: stop took {:?}, a new client read from it {back:?} after start_again; \
         {} failed reads (in flight when it went down){}",
        stopped - stopping,
        failed.len(),
        failed
            .iter()
            .map(|l| format!("\n  {l}"))
            .collect::<String>()
    );
    assert!(failed.len() <= READERS, "{} failed reads", failed.len());

    for (r, reads) in per_reader.iter().enumerate() {
        let during = |from: Instant, to: Instant| {
            reads
                .iter()
                .filter(move |x| x.started >= from && x.started < to)
        };
        // Reads finish in well under the 100 ms margin: one that failed
        // earlier was not in flight when the replica went down.
        let settled = stopping - Duration::from_millis(100);
        let before: Vec<_> = reads.iter().filter(|x| x.started < settled).collect();
        assert!(
            !before.is_empty(),
            "reader {r} read nothing before the stop"
        );
        assert!(
            before.iter().all(|x| x.outcome == Ok(Replica)),
            "reader {r}: reads before the stop did not all succeed on the replica"
        );
        // Only a read in flight on the replica as it went down may fail,
        // once per reader, with admin_shutdown or a connection error.
        let failures: Vec<&String> = during(settled, stopped)
            .filter_map(|x| x.outcome.as_ref().err())
            .collect();
        assert!(failures.len() <= 1, "reader {r} failed {failures:?}");
        for what in failures {
            assert!(
                in_flight_failure(what),
                "reader {r}: a read failed with {what}"
            );
        }
        // Once the replica is down, every read works and the primary serves it.
        let down: Vec<_> = during(stopped, restarting).collect();
        assert!(
            down.len() >= 5,
            "reader {r} made {} reads while the replica was down",
            down.len()
        );
        for x in &down {
            assert_eq!(
                x.outcome.as_ref().ok(),
                Some(&Primary),
                "reader {r}: a read {:?} after the replica stopped",
                x.started - stopped
            );
        }
        let after: Vec<_> = during(restarting, Instant::now()).collect();
        assert!(
            after.iter().all(|x| x.outcome.is_ok()),
            "reader {r} failed after the restart"
        );
        // Readers over the simple protocol go back to the replica; those
        // with prepared statements may not, see
        // a_reader_that_fell_back_to_the_primary_returns_to_the_replica.
        if r % 2 == 0 {
            assert!(
                after.iter().any(|x| x.outcome == Ok(Replica)),
                "reader {r} never read from the restarted replica"
            );
        }
    }
    env.finish().await;
}

/// A read the replica fails before answering (its backend terminated
/// mid-query: FATAL 57P01) runs again on the primary: the client gets an
/// answer, not an error. A plain cancel (57014) is an answer, passed on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_the_replica_fails_before_answering_runs_on_the_primary() {
    let env = SplitEnv::start(Options {
        // Declared STABLE so that it may go to a replica; it sleeps first,
        // leaving time to fail it there.
        setup_sql: "CREATE FUNCTION rs_slow_served_by() RETURNS text LANGUAGE plpgsql STABLE
                        AS $$ BEGIN PERFORM pg_sleep(0.5); RETURN served_by(); END $$;",
        ..Options::default()
    })
    .await;
    let admin = env.replica_admin().await;
    for (kill, code) in [
        ("pg_terminate_backend", "57P01"),
        ("pg_cancel_backend", "57014"),
    ] {
        let client = env.client().await;
        assert_eq!(
            served_by(&client).await.expect("read"),
            Replica,
            "reads use the replica before the {kill} case"
        );
        let read = tokio::spawn(async move {
            let row = client.query_one("SELECT rs_slow_served_by()", &[]).await;
            row.map(|r| server_named(r.get(0)))
        });
        // Find the read on the replica and fail it there.
        let started = Instant::now();
        loop {
            let hit: i64 = admin
                .query_one(
                    &format!(
                        "SELECT count({kill}(pid)) FROM pg_stat_activity \
                         WHERE query LIKE 'SELECT rs_slow_served_by()%' AND pid <> pg_backend_pid()"
                    ),
                    &[],
                )
                .await
                .expect("fail the read on the replica")
                .get(0);
            if hit > 0 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the read never reached the replica"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got = read.await.expect("reader task");
        match code {
            // The replica itself is fine, but this backend is gone: the read
            // is answered by the primary.
            "57P01" => assert_eq!(got.expect("no error reaches the client"), Primary),
            // A cancel the client did not ask for is not retried: it is an
            // answer (57014), and the session goes on.
            _ => {
                let e = got.expect_err("the cancel reaches the client");
                assert_eq!(e.code().map(|c| c.code()), Some(code), "{e}");
            }
        }
    }
    env.finish().await;
}

/// Reads of a coalesced table may use the replica, but only one that has
/// replayed the flushes of every write acknowledged before the read: each
/// read sees the last acknowledged value (immediate mode, so the writes are
/// pending until the read's barrier flushes them), and once writing stops
/// the reads move to the replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_coalesced_tables_see_acknowledged_writes_and_use_the_replica() {
    let rule = config::CoalesceRule {
        name: "metadata_fn".into(),
        function: Some("entity.update_metadata_optimized".into()),
        arguments: ["p_entity_name", "p_key", "p_value", "p_sync_group"]
            .map(String::from)
            .to_vec(),
        defaults: [("p_sync_group".to_owned(), Some("public.NORMAL".to_owned()))].into(),
        key: vec!["p_entity_name".into(), "p_key".into()],
        writes: vec!["entity.entity_metadata".into()],
        flush: Some(
            "SELECT entity.update_metadata_batch($1::text[], $2::text[], $3::text[]::jsonb[], \
             $4::text[], $5::text[]::bigint[])"
                .into(),
        ),
        ack: config::AckMode::Immediate,
        flush_interval: Duration::from_secs(10),
        ..config::CoalesceRule::default()
    };
    let env = SplitEnv::start(Options {
        migrations: true,
        setup_sql: "INSERT INTO entity.entities (general__entity_name) VALUES ('e1');",
        coalesce: vec![rule],
        ..Options::default()
    })
    .await;
    let writer = env.client().await;
    let reader = env.client().await;
    let read = "SELECT served_by(), (metadata__value ->> 'v')::int FROM entity.entity_metadata \
                WHERE general__entity_name = 'e1' AND metadata__key = 'k'";
    for i in 0..50 {
        writer
            .execute(
                "SELECT entity.update_metadata_optimized($1, $2, $3::jsonb)",
                &[&"e1", &"k", &serde_json::json!({ "v": i })],
            )
            .await
            .expect("coalesced write");
        let row = reader.query_one(read, &[]).await.expect("read");
        let seen: i32 = row.get(1);
        assert_eq!(seen, i, "a read after an acknowledged write sees it");
    }
    // Writing stopped: once the replica has replayed the last flush, the
    // same reads go there and still see the last value.
    let started = Instant::now();
    loop {
        let row = reader.query_one(read, &[]).await.expect("read");
        assert_eq!(row.get::<_, i32>(1), 49);
        if server_named(row.get(0)) == Replica {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "reads of the coalesced table never moved to the replica"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.finish().await;
}
