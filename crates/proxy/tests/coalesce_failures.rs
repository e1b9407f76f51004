//! Coalescing when things go wrong: a bad row in a batch, Postgres
//! restarting under a stream of writes, and shutdown while clients write.
//!
//! The harness below is the same as in `coalesce.rs` (test binaries cannot
//! share code outside `common/`).

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Env, Setup, DB, PASSWORD, USER};
use config::Config;
use proxy::Proxy;
use serde_json::json;
use tokio_postgres::error::SqlState;

const FN_SQL: &str = "SELECT entity.update_metadata_optimized($1, $2, $3::jsonb, $4)";
const GROUP: &str = "public.NORMAL";

#[derive(Clone)]
struct Opts {
    ack: &'static str,
    pool_size: usize,
    rejects_file: Option<PathBuf>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            ack: "flushed",
            pool_size: 8,
            rejects_file: None,
        }
    }
}

fn coalescing_yaml(pg_port: u16, o: &Opts) -> String {
    let ack = format!("ack: {}", o.ack);
    let rejects = o
        .rejects_file
        .as_ref()
        .map(|p| format!("rejects_file: {}", p.display()));
    let mut function = vec![ack.as_str(), "flush_interval: 2ms"];
    function.extend(rejects.as_deref());
    common::coalescing_yaml(
        pg_port,
        &format!(
            "  size: {}\n  query_wait_timeout: 30s\n  connect_timeout: 2s",
            o.pool_size
        ),
        "scram-sha-256",
        &[
            common::function_rule(common::BATCH_FLUSH, &function),
            common::table_rule(&[ack.as_str(), "flush_interval: 2ms"]),
        ],
    )
}

/// A cluster with the migrations, entities `e0`..`e9`, and a coalescing
/// proxy in front of it.
async fn start(o: Opts) -> Env {
    let Env { pg, proxy } = Env::start(Setup {
        migrations: true,
        pool_size: o.pool_size,
        ..Setup::default()
    })
    .await;
    proxy.shutdown(Duration::from_secs(1)).await;
    let config = Config::from_yaml(&coalescing_yaml(pg.port(), &o)).expect("coalescing config");
    let proxy = Proxy::start(config).await.expect("start coalescing proxy");
    assert!(proxy.coalescer().is_some());
    let env = Env { pg, proxy };
    env.direct()
        .await
        .execute(
            "INSERT INTO entity.entities (general__entity_name) \
             SELECT 'e' || g FROM generate_series(0, 9) g",
            &[],
        )
        .await
        .expect("insert entities");
    env
}

#[derive(Debug, Clone, Copy)]
#[allow(dead_code)]
struct Counts {
    received: u64,
    merged: u64,
    flushed_rows: u64,
    flush_batches: u64,
    flush_failures: u64,
    rejected: u64,
}

fn counts(proxy: &Proxy) -> Counts {
    let s = &proxy.coalescer().expect("coalescer").stats;
    Counts {
        received: s.received.load(Ordering::SeqCst),
        merged: s.merged.load(Ordering::SeqCst),
        flushed_rows: s.flushed_rows.load(Ordering::SeqCst),
        flush_batches: s.flush_batches.load(Ordering::SeqCst),
        flush_failures: s.flush_failures.load(Ordering::SeqCst),
        rejected: s.rejected.load(Ordering::SeqCst),
    }
}

/// key -> `n` of the stored value `{"n": n}`, for the rows of `entity`,
/// read straight from Postgres.
async fn stored_n(direct_url: &str, entity: &str) -> HashMap<String, i64> {
    common::connect(direct_url)
        .await
        .query(
            "SELECT metadata__key, (metadata__value->>'n')::bigint \
             FROM entity.entity_metadata WHERE general__entity_name = $1",
            &[&entity],
        )
        .await
        .expect("read directly")
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

// ---------------------------------------------------------------------------
// 6. A bad row fails alone
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_row_fails_alone_in_flushed_mode() {
    const GOOD: usize = 20;
    let env = start(Opts::default()).await;

    // What Postgres says to the same call, for the report.
    let direct_err = env
        .direct()
        .await
        .execute(FN_SQL, &[&"missing", &"bad", &json!({"n": 0}), &GROUP])
        .await
        .expect_err("direct call for a missing entity");
    let direct_db = direct_err.as_db_error().expect("db error");
    println!(
        "direct: {} {} / {:?}",
        direct_db.code().code(),
        direct_db.message(),
        direct_db.detail()
    );
    assert_eq!(direct_db.code(), &SqlState::FOREIGN_KEY_VIOLATION);

    for round in 0..3 {
        let start_line = Arc::new(tokio::sync::Barrier::new(GOOD + 1));
        let mut tasks = Vec::new();
        for i in 0..=GOOD {
            let url = env.url();
            let start_line = start_line.clone();
            tasks.push(tokio::spawn(async move {
                let client = common::connect(&url).await;
                let stmt = client.prepare(FN_SQL).await.expect("prepare");
                let (e, k) = if i == GOOD {
                    ("missing".to_owned(), format!("bad{round}"))
                } else {
                    ("e9".to_owned(), format!("good{round}_{i}"))
                };
                start_line.wait().await;
                let r = client
                    .execute(&stmt, &[&e, &k, &json!({"n": round}), &GROUP])
                    .await;
                // The connection stays usable after an error.
                let one: i32 = client
                    .query_one("SELECT 1", &[])
                    .await
                    .expect("connection usable after the write")
                    .get(0);
                assert_eq!(one, 1);
                (i, r)
            }));
        }
        for t in tasks {
            let (i, r) = t.await.expect("writer");
            if i == GOOD {
                let err = r.expect_err("the write for a missing entity must fail");
                let db = err
                    .as_db_error()
                    .unwrap_or_else(|| panic!("round {round}: not a server error: {err:?}"));
                println!(
                    "round {round}: proxy: {} {} / {:?}",
                    db.code().code(),
                    db.message(),
                    db.detail()
                );
                assert_eq!(
                    db.code(),
                    &SqlState::FOREIGN_KEY_VIOLATION,
                    "round {round}: bad writer's SQLSTATE"
                );
            } else {
                r.unwrap_or_else(|e| panic!("round {round}: good writer {i} failed: {e:?}"));
            }
        }
        let stored = stored_n(&env.direct_url(), "e9").await;
        for i in 0..GOOD {
            assert_eq!(
                stored.get(&format!("good{round}_{i}")),
                Some(&(round as i64)),
                "round {round}: good row {i} did not land"
            );
        }
    }
    let missing_rows: i64 = env
        .direct()
        .await
        .query_one(
            "SELECT count(*) FROM entity.entity_metadata WHERE metadata__key LIKE 'bad%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(missing_rows, 0);
    let c = counts(&env.proxy);
    println!("bad row, flushed: {c:?}");
}

/// The bad writer's error is Postgres' error for its row: drivers show the
/// DETAIL and expose the constraint, table and schema, and applications
/// branch on them (e.g. which foreign key failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_rows_error_carries_postgres_fields() {
    let env = start(Opts::default()).await;
    let (e, k, v) = ("missing", "fields", json!({"n": 1}));
    let direct = env
        .direct()
        .await
        .execute(FN_SQL, &[&e, &k, &v, &GROUP])
        .await
        .expect_err("direct");
    let proxied = env
        .client()
        .await
        .execute(FN_SQL, &[&e, &k, &v, &GROUP])
        .await
        .expect_err("through the proxy");
    let fields = |err: &tokio_postgres::Error| {
        let db = err.as_db_error().expect("server error");
        (
            db.severity().to_owned(),
            db.code().code().to_owned(),
            db.message().to_owned(),
            db.detail().map(str::to_owned),
            db.schema().map(str::to_owned),
            db.table().map(str::to_owned),
            db.constraint().map(str::to_owned),
        )
    };
    assert_eq!(
        fields(&direct),
        fields(&proxied),
        "(severity, code, message, detail, schema, table, constraint): direct vs proxy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_row_is_rejected_alone_in_immediate_mode() {
    const GOOD: usize = 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let rejects = dir.path().join("rejects.jsonl");
    let env = start(Opts {
        ack: "immediate",
        rejects_file: Some(rejects.clone()),
        ..Opts::default()
    })
    .await;
    let start_line = Arc::new(tokio::sync::Barrier::new(GOOD + 1));
    let mut tasks = Vec::new();
    for i in 0..=GOOD {
        let url = env.url();
        let start_line = start_line.clone();
        tasks.push(tokio::spawn(async move {
            let client = common::connect(&url).await;
            let stmt = client.prepare(FN_SQL).await.expect("prepare");
            let e = if i == GOOD { "missing" } else { "e9" };
            let k = format!("imm{i}");
            start_line.wait().await;
            client
                .execute(&stmt, &[&e, &k, &json!({"n": i}), &GROUP])
                .await
                .unwrap_or_else(|err| panic!("writer {i}: immediate ack expected: {err:?}"));
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    // A read through the proxy waits for the pending writes.
    let landed: i64 = env
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM entity.entity_metadata WHERE metadata__key LIKE 'imm%'",
            &[],
        )
        .await
        .expect("read")
        .get(0);
    assert_eq!(landed, GOOD as i64, "good rows that landed");
    let c = counts(&env.proxy);
    println!("bad row, immediate: {c:?}");
    assert_eq!(c.rejected, 1, "the bad row is counted as rejected");
    let text = std::fs::read_to_string(&rejects).unwrap_or_default();
    println!("rejects file: {text}");
    assert!(
        text.contains("missing") && text.contains("23503"),
        "the rejects file names the bad row and its SQLSTATE: {text:?}"
    );
    assert_eq!(text.lines().count(), 1, "one rejected row, one line");
}

// ---------------------------------------------------------------------------
// 7. Upstream restart under a stream of immediate writes
// ---------------------------------------------------------------------------

struct WriterReport {
    /// key -> last acknowledged n.
    acked: HashMap<String, i64>,
    /// key -> last attempted n.
    attempted: HashMap<String, i64>,
    errors: Vec<String>,
    acked_writes: u64,
}

/// Writes `{"n": n}` with n increasing, round-robin over its keys of entity
/// `entity`, until `stop`; stops at its first error if `stop_on_error`.
#[allow(clippy::too_many_arguments)]
fn spawn_writer(
    url: String,
    entity: &'static str,
    w: usize,
    keys: usize,
    stop: Arc<AtomicBool>,
    stop_on_error: bool,
    phase: Arc<AtomicUsize>,
    acked_in_phase: Arc<[AtomicU64; 4]>,
    ready: Arc<tokio::sync::Barrier>,
) -> tokio::task::JoinHandle<WriterReport> {
    tokio::spawn(async move {
        let client = common::connect(&url).await;
        let stmt = client.prepare(FN_SQL).await.expect("prepare");
        ready.wait().await;
        let mut report = WriterReport {
            acked: HashMap::new(),
            attempted: HashMap::new(),
            errors: Vec::new(),
            acked_writes: 0,
        };
        let mut n: i64 = 0;
        while !stop.load(Ordering::SeqCst) {
            n += 1;
            let k = format!("w{w}_{}", n as usize % keys);
            report.attempted.insert(k.clone(), n);
            let r = tokio::time::timeout(
                Duration::from_secs(15),
                client.execute(&stmt, &[&entity, &k, &json!({"n": n}), &GROUP]),
            )
            .await;
            match r {
                Ok(Ok(_)) => {
                    report.acked.insert(k, n);
                    report.acked_writes += 1;
                    acked_in_phase[phase.load(Ordering::SeqCst)].fetch_add(1, Ordering::SeqCst);
                }
                Ok(Err(e)) => {
                    report.errors.push(format!("n={n}: {e:?}"));
                    if stop_on_error || client.is_closed() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(_) => {
                    report.errors.push(format!("n={n}: no reply within 15 s"));
                    break;
                }
            }
        }
        report
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_an_upstream_restart() {
    const WRITERS: usize = 8;
    const KEYS: usize = 10;
    let env = start(Opts {
        ack: "immediate",
        ..Opts::default()
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(AtomicUsize::new(0));
    let acked_in_phase: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let ready = Arc::new(tokio::sync::Barrier::new(WRITERS + 1));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            spawn_writer(
                env.url(),
                "e7",
                w,
                KEYS,
                stop.clone(),
                false,
                phase.clone(),
                acked_in_phase.clone(),
                ready.clone(),
            )
        })
        .collect();
    // Every writer is connected and prepared before the clock starts.
    ready.wait().await;

    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    phase.store(1, Ordering::SeqCst);
    tokio::task::block_in_place(|| env.pg.stop()).expect("stop postgres");
    println!("postgres stopped at {:?}", t0.elapsed());
    phase.store(2, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Not asserted: whether a new client can log in while Postgres is away.
    match tokio::time::timeout(Duration::from_secs(3), common::try_connect(&env.url())).await {
        Ok(Ok(_)) => println!("a new client could log in while Postgres was down"),
        Ok(Err(e)) => println!(
            "a new client could not log in while Postgres was down: {:?}",
            e.as_db_error()
                .map(|d| (d.code().code().to_owned(), d.message().to_owned()))
        ),
        Err(_) => println!("a new client's login hung while Postgres was down (3 s)"),
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    phase.store(3, Ordering::SeqCst);
    tokio::task::block_in_place(|| env.pg.start_again()).expect("start postgres again");
    println!("postgres started again at {:?}", t0.elapsed());
    let remaining = Duration::from_secs(10).saturating_sub(t0.elapsed());
    tokio::time::sleep(remaining.max(Duration::from_secs(2))).await;
    stop.store(true, Ordering::SeqCst);

    let mut acked: HashMap<String, i64> = HashMap::new();
    let mut attempted: HashMap<String, i64> = HashMap::new();
    let mut errors = Vec::new();
    let mut total = 0;
    for (w, t) in writers.into_iter().enumerate() {
        let r = t.await.expect("writer");
        total += r.acked_writes;
        acked.extend(r.acked);
        attempted.extend(r.attempted);
        errors.extend(r.errors.into_iter().map(|e| format!("writer {w}: {e}")));
    }
    let phases: Vec<u64> = acked_in_phase
        .iter()
        .map(|a| a.load(Ordering::SeqCst))
        .collect();
    println!(
        "restart: {total} acknowledged writes (before / stopping / down / after: {phases:?}), \
         {} errors, stats {:?}",
        errors.len(),
        counts(&env.proxy)
    );

    // The proxy serves a normal query after the restart, on a new client
    // and on one that was connected throughout.
    let fresh = common::try_connect(&env.url())
        .await
        .expect("connect after the restart");
    let one: i32 = fresh
        .query_one("SELECT 1", &[])
        .await
        .expect("SELECT 1 through the proxy after the restart")
        .get(0);
    assert_eq!(one, 1);
    let now: Result<Vec<tokio_postgres::SimpleQueryMessage>, _> =
        fresh.simple_query("SELECT now()").await;
    assert!(now.is_ok(), "simple query after the restart: {now:?}");

    let Env { pg, proxy } = env;
    let unflushed = proxy.shutdown(Duration::from_secs(60)).await;
    assert_eq!(unflushed, 0, "writes left unflushed after the restart");

    let direct_url = pg.url(USER, Some(PASSWORD), DB);
    let stored = stored_n(&direct_url, "e7").await;
    let mut lost = Vec::new();
    for (k, n) in &acked {
        match stored.get(k) {
            Some(s) if s >= n && s <= &attempted[k] => {}
            other => lost.push(format!("{k}: acked {n}, stored {other:?}")),
        }
    }
    lost.sort();
    assert!(
        lost.is_empty(),
        "{} keys do not hold their last acknowledged value: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(
        errors.is_empty(),
        "immediate-mode writes failed across the restart ({}): {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(
        phases[2] > 0,
        "no write was acknowledged while Postgres was down (immediate mode acks from the map)"
    );
    // Every acked key holds exactly its last acknowledged value when no
    // write failed.
    for (k, n) in &acked {
        assert_eq!(stored.get(k), Some(n), "key {k}");
    }
}

// ---------------------------------------------------------------------------
// 8. Shutdown under load
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_keeps_every_acknowledged_write() {
    const WRITERS: usize = 8;
    const KEYS: usize = 25;
    let env = start(Opts {
        ack: "immediate",
        ..Opts::default()
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(AtomicUsize::new(0));
    let acked_in_phase: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let ready = Arc::new(tokio::sync::Barrier::new(WRITERS + 1));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            spawn_writer(
                env.url(),
                "e8",
                w,
                KEYS,
                stop.clone(),
                true,
                phase.clone(),
                acked_in_phase.clone(),
                ready.clone(),
            )
        })
        .collect();
    // Every writer is connected and prepared before the clock starts.
    ready.wait().await;
    // Under load: writes have been flowing for a while.
    let deadline = Instant::now() + Duration::from_secs(20);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    while acked_in_phase[0].load(Ordering::SeqCst) < 2000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        acked_in_phase[0].load(Ordering::SeqCst) > 0,
        "no write was acknowledged before shutdown"
    );

    let Env { pg, proxy } = env;
    phase.store(1, Ordering::SeqCst);
    let t0 = Instant::now();
    let unflushed = proxy.shutdown(Duration::from_secs(30)).await;
    phase.store(2, Ordering::SeqCst);
    println!("shutdown took {:?}, left {unflushed}", t0.elapsed());
    // Writers stop at their first error; give them a moment, then stop them.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && !writers.iter().all(|t| t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let still_writing = writers.iter().filter(|t| !t.is_finished()).count();
    phase.store(3, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);

    let mut acked: HashMap<String, i64> = HashMap::new();
    let mut attempted: HashMap<String, i64> = HashMap::new();
    let mut errors = Vec::new();
    for (w, t) in writers.into_iter().enumerate() {
        let r = t.await.expect("writer");
        acked.extend(r.acked);
        attempted.extend(r.attempted);
        errors.extend(r.errors.into_iter().map(|e| format!("writer {w}: {e}")));
    }
    let phases: Vec<u64> = acked_in_phase
        .iter()
        .map(|a| a.load(Ordering::SeqCst))
        .collect();
    println!(
        "shutdown under load: acknowledged writes before / during shutdown / after it returned / \
         after the writers were told to stop: {phases:?}; {still_writing} writers still writing 3 s \
         after shutdown returned; errors: {:?}",
        &errors[..errors.len().min(3)]
    );
    assert_eq!(unflushed, 0, "shutdown left writes unflushed");

    // Whatever Postgres holds now is final: give any straggler a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored = stored_n(&pg.url(USER, Some(PASSWORD), DB), "e8").await;
    let mut lost = Vec::new();
    for (k, n) in &acked {
        match stored.get(k) {
            Some(s) if s >= n && s <= &attempted[k] => {}
            other => lost.push(format!("{k}: acked {n}, stored {other:?}")),
        }
    }
    lost.sort();
    assert!(
        lost.is_empty(),
        "{} of {} keys lost acknowledged writes (acks after shutdown returned: {}): {:?}",
        lost.len(),
        acked.len(),
        phases[2] + phases[3],
        &lost[..lost.len().min(10)]
    );
}
