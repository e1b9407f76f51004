//! Coalescing seen from clients: byte-identical replies, last-write-wins under
//! concurrency, read-your-writes in both ack modes, transactions, statement
//! triggers once per flush, look-alike statements passing through, psql.
//!
//! Failure handling (bad rows, upstream restart, shutdown under load) is in
//! `coalesce_failures.rs`.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Env, Setup, DB, PASSWORD, USER};
use config::{AuthMethod, Config};
use pgtest::HbaAuth;
use proxy::Proxy;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------
// Harness: a cluster with the migrations, entities e0..e9, and a proxy with
// the two reference coalescing rules.
// ---------------------------------------------------------------------------

const FN_SQL: &str = "SELECT entity.update_metadata_optimized($1, $2, $3::jsonb, $4)";
const INSERT_SQL: &str = "INSERT INTO entity.entity_metadata \
     (general__entity_name, metadata__key, metadata__value, group__sync) \
     VALUES ($1, $2, $3, $4) \
     ON CONFLICT (general__entity_name, metadata__key) \
     DO UPDATE SET metadata__value = EXCLUDED.metadata__value";
const READ_SQL: &str = "SELECT metadata__value FROM entity.entity_metadata \
     WHERE general__entity_name = $1 AND metadata__key = $2";
const GROUP: &str = "public.NORMAL";

#[derive(Clone, Copy)]
struct Opts {
    /// `flushed` or `immediate`, for both rules.
    ack: &'static str,
    /// Trust auth on both legs (for the raw protocol client).
    trust: bool,
    pool_size: usize,
    /// The rules' `flush_interval`.
    flush_interval: &'static str,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            ack: "flushed",
            trust: false,
            pool_size: 8,
            flush_interval: "2ms",
        }
    }
}

fn coalescing_yaml(pg_port: u16, o: &Opts) -> String {
    let auth = if o.trust { "trust" } else { "scram-sha-256" };
    let ack = format!("ack: {}", o.ack);
    let interval = format!("flush_interval: {}", o.flush_interval);
    let extra = [ack.as_str(), interval.as_str()];
    common::coalescing_yaml(
        pg_port,
        &format!("  size: {}\n  query_wait_timeout: 30s", o.pool_size),
        auth,
        &[
            common::function_rule(common::BATCH_FLUSH, &extra),
            common::table_rule(&extra),
        ],
    )
}

/// A cluster with the migrations applied, entities `e0`..`e9` (inserted as
/// `app` without an agent context, i.e. as the system agent), and a
/// coalescing proxy in front of it.
async fn start(o: Opts) -> Env {
    let (client_auth, upstream_auth) = if o.trust {
        (AuthMethod::Trust, HbaAuth::Trust)
    } else {
        (AuthMethod::ScramSha256, HbaAuth::ScramSha256)
    };
    let Env { pg, proxy } = Env::start(Setup {
        migrations: true,
        pool_size: o.pool_size,
        client_auth,
        upstream_auth,
        ..Setup::default()
    })
    .await;
    // The harness's proxy has no rules: replace it.
    proxy.shutdown(Duration::from_secs(1)).await;
    let config = Config::from_yaml(&coalescing_yaml(pg.port(), &o)).expect("coalescing config");
    let proxy = Proxy::start(config).await.expect("start coalescing proxy");
    assert!(
        proxy.coalescer().is_some(),
        "config has rules: coalescer expected"
    );
    let env = Env { pg, proxy };
    env.direct()
        .await
        .execute(
            "INSERT INTO entity.entities (general__entity_name) \
             SELECT 'e' || g FROM generate_series(0, 9) g",
            &[],
        )
        .await
        .expect("app (system agent, no context) may insert entities");
    env
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    received: u64,
    merged: u64,
    flushed_rows: u64,
    flush_batches: u64,
    flush_failures: u64,
    rejected: u64,
}

fn counts(env: &Env) -> Counts {
    let s = &env.proxy.coalescer().expect("coalescer").stats;
    Counts {
        received: s.received.load(Ordering::SeqCst),
        merged: s.merged.load(Ordering::SeqCst),
        flushed_rows: s.flushed_rows.load(Ordering::SeqCst),
        flush_batches: s.flush_batches.load(Ordering::SeqCst),
        flush_failures: s.flush_failures.load(Ordering::SeqCst),
        rejected: s.rejected.load(Ordering::SeqCst),
    }
}

/// Runs SQL as the superuser (blocking psql, off the async threads).
fn superuser_sql(env: &Env, sql: &str) -> String {
    tokio::task::block_in_place(|| env.pg.psql(DB, sql)).expect("superuser sql")
}

/// (entity, key) -> value of every metadata row, read straight from Postgres.
async fn all_rows(env: &Env) -> HashMap<(String, String), serde_json::Value> {
    env.direct()
        .await
        .query(
            "SELECT general__entity_name, metadata__key, metadata__value \
             FROM entity.entity_metadata",
            &[],
        )
        .await
        .expect("read rows directly")
        .into_iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect()
}

/// One row's value, read straight from Postgres.
async fn direct_value(env: &Env, entity: &str, key: &str) -> Option<serde_json::Value> {
    env.direct()
        .await
        .query_opt(READ_SQL, &[&entity, &key])
        .await
        .expect("read directly")
        .map(|r| r.get(0))
}

// ---------------------------------------------------------------------------
// A tiny raw protocol client, to compare replies byte for byte.
// ---------------------------------------------------------------------------

struct Raw {
    stream: TcpStream,
}

impl Raw {
    /// Connects and logs in (trust), returning once ReadyForQuery arrived.
    async fn connect(addr: SocketAddr) -> Raw {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(&wire::build::startup_message(&[
                ("user", USER),
                ("database", DB),
            ]))
            .await
            .expect("startup");
        let mut raw = Raw { stream };
        let login = raw.until_ready().await;
        assert!(
            login.iter().all(|m| m[0] != b'E'),
            "login failed: {:?}",
            render(&login)
        );
        raw
    }

    async fn read_msg(&mut self) -> Vec<u8> {
        let mut head = [0u8; 5];
        self.stream.read_exact(&mut head).await.expect("header");
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut msg = head.to_vec();
        msg.resize(1 + len, 0);
        self.stream.read_exact(&mut msg[5..]).await.expect("body");
        msg
    }

    /// Every message up to and including the next ReadyForQuery.
    async fn until_ready(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(20), self.read_msg())
                .await
                .unwrap_or_else(|_| panic!("no ReadyForQuery within 20 s; got {:?}", render(&out)));
            let done = m[0] == b'Z';
            out.push(m);
            if done {
                return out;
            }
        }
    }

    /// Sends `bytes` and returns the replies up to `syncs` ReadyForQuery.
    async fn exchange(&mut self, bytes: &[u8], syncs: usize) -> Vec<Vec<u8>> {
        self.stream.write_all(bytes).await.expect("send");
        let mut out = Vec::new();
        for _ in 0..syncs {
            out.extend(self.until_ready().await);
        }
        out
    }
}

/// Messages as printable strings: tag, length and the escaped body, so an
/// assertion failure shows exactly which byte differs (equal strings <=>
/// equal bytes).
fn render(msgs: &[Vec<u8>]) -> Vec<String> {
    msgs.iter()
        .map(|m| {
            let body: String = m[5..]
                .iter()
                .flat_map(|&b| std::ascii::escape_default(b))
                .map(char::from)
                .collect();
            format!("{} len={} {}", m[0] as char, m.len() - 1, body)
        })
        .collect()
}

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn cstr(b: &mut Vec<u8>, s: &[u8]) {
    b.extend_from_slice(s);
    b.push(0);
}

fn query_msg(sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, sql.as_bytes());
    msg(b'Q', &b)
}

fn parse_msg(name: &str, sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, name.as_bytes());
    cstr(&mut b, sql.as_bytes());
    b.extend_from_slice(&0i16.to_be_bytes()); // no parameter types
    msg(b'P', &b)
}

fn bind_msg(
    portal: &str,
    statement: &str,
    param_formats: &[i16],
    params: &[Option<&[u8]>],
    result_formats: &[i16],
) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal.as_bytes());
    cstr(&mut b, statement.as_bytes());
    b.extend_from_slice(&(param_formats.len() as i16).to_be_bytes());
    for f in param_formats {
        b.extend_from_slice(&f.to_be_bytes());
    }
    b.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        match p {
            Some(v) => {
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v);
            }
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    b.extend_from_slice(&(result_formats.len() as i16).to_be_bytes());
    for f in result_formats {
        b.extend_from_slice(&f.to_be_bytes());
    }
    msg(b'B', &b)
}

fn describe_msg(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    cstr(&mut b, name.as_bytes());
    msg(b'D', &b)
}

fn execute_msg(portal: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal.as_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    msg(b'E', &b)
}

fn close_msg(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    cstr(&mut b, name.as_bytes());
    msg(b'C', &b)
}

fn sync_msg() -> Vec<u8> {
    msg(b'S', &[])
}

fn text_params<'a>(p: &'a [&'a str]) -> Vec<Option<&'a [u8]>> {
    p.iter().map(|s| Some(s.as_bytes())).collect()
}

/// Parse (unnamed) + Bind + Describe portal + Execute + Sync, text params.
fn extended(sql: &str, params: &[&str], result_format: i16) -> Vec<u8> {
    [
        parse_msg("", sql),
        bind_msg("", "", &[], &text_params(params), &[result_format]),
        describe_msg(b'P', ""),
        execute_msg(""),
        sync_msg(),
    ]
    .concat()
}

// ---------------------------------------------------------------------------
// 1. Byte-identical replies
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_replies_are_byte_identical_to_postgres() {
    let env = start(Opts {
        trust: true,
        ..Opts::default()
    })
    .await;
    let direct_addr: SocketAddr = format!("127.0.0.1:{}", env.pg.port()).parse().unwrap();
    let mut direct = Raw::connect(direct_addr).await;
    let mut proxied = Raw::connect(env.addr()).await;

    let insert_simple = "INSERT INTO entity.entity_metadata \
         (general__entity_name, metadata__key, metadata__value, group__sync) \
         VALUES ('e1', 'k4', '{\"v\": 4}', 'public.NORMAL') \
         ON CONFLICT (general__entity_name, metadata__key) \
         DO UPDATE SET metadata__value = EXCLUDED.metadata__value";
    // jsonb binary format: version byte 1, then the text.
    let jsonb_bin: Vec<u8> = [&[1u8][..], br#"{"v": 7}"#].concat();

    // (name, bytes, syncs, whether the proxy must coalesce it)
    let cases: Vec<(&str, Vec<u8>, usize, bool)> = vec![
        (
            "a: simple query, function",
            query_msg(
                "SELECT entity.update_metadata_optimized('e1', 'k1', '{\"v\": 1}'::jsonb, 'public.NORMAL')",
            ),
            1,
            true,
        ),
        (
            "a2: simple query, function, defaulted sync group",
            query_msg("SELECT entity.update_metadata_optimized('e1', 'k1b', '{\"v\": 11}')"),
            1,
            true,
        ),
        (
            "b: extended, text results",
            extended(FN_SQL, &["e1", "k2", r#"{"v": 2}"#, GROUP], 0),
            1,
            true,
        ),
        (
            "c: extended, binary results",
            extended(FN_SQL, &["e1", "k3", r#"{"v": 3}"#, GROUP], 1),
            1,
            true,
        ),
        ("d1: simple INSERT ... ON CONFLICT", query_msg(insert_simple), 1, true),
        (
            "d2: extended INSERT ... ON CONFLICT",
            extended(INSERT_SQL, &["e1", "k5", r#"{"v": 5}"#, GROUP], 0),
            1,
            true,
        ),
        (
            "d3: extended INSERT ... ON CONFLICT, binary results",
            extended(INSERT_SQL, &["e1", "k6", r#"{"v": 6}"#, GROUP], 1),
            1,
            true,
        ),
        // Steps of a tokio-postgres prepare-then-execute, each awaited
        // before the next (the proxy only coalesces a Bind when the server
        // owes the client nothing).
        (
            "e1: named statement, Describe statement (tokio-postgres prepare)",
            [parse_msg("s1", FN_SQL), describe_msg(b'S', "s1"), sync_msg()].concat(),
            1,
            false,
        ),
        (
            "e2: Bind of the named statement with binary params, binary results",
            [
                bind_msg(
                    "",
                    "s1",
                    &[1],
                    &[Some(b"e1"), Some(b"k7"), Some(&jsonb_bin), Some(GROUP.as_bytes())],
                    &[1],
                ),
                execute_msg(""),
                sync_msg(),
            ]
            .concat(),
            1,
            true,
        ),
        (
            "e3: Close of the named statement",
            [close_msg(b'S', "s1"), sync_msg()].concat(),
            1,
            false,
        ),
        (
            "e4: prepare, execute and close pipelined in one write (passes through)",
            [
                parse_msg("s2", FN_SQL),
                describe_msg(b'S', "s2"),
                sync_msg(),
                bind_msg(
                    "",
                    "s2",
                    &[1],
                    &[Some(b"e1"), Some(b"k7b"), Some(&jsonb_bin), Some(GROUP.as_bytes())],
                    &[1],
                ),
                execute_msg(""),
                sync_msg(),
                close_msg(b'S', "s2"),
                sync_msg(),
            ]
            .concat(),
            3,
            false,
        ),
        (
            "f: two executions in one pipeline, one Sync",
            [
                parse_msg("", FN_SQL),
                bind_msg("", "", &[], &text_params(&["e1", "k8", r#"{"v": 8}"#, GROUP]), &[]),
                execute_msg(""),
                bind_msg("", "", &[], &text_params(&["e1", "k8", r#"{"v": 9}"#, GROUP]), &[]),
                execute_msg(""),
                sync_msg(),
            ]
            .concat(),
            1,
            true,
        ),
    ];

    let mut problems = Vec::new();
    for (name, bytes, syncs, coalesced) in &cases {
        let want = direct.exchange(bytes, *syncs).await;
        let before = counts(&env).received;
        let got = proxied.exchange(bytes, *syncs).await;
        let after = counts(&env).received;
        if render(&want) == render(&got) {
            println!("case {name}: {} messages identical", want.len());
        } else {
            problems.push(format!(
                "case {name}: proxy reply differs from Postgres'\n  Postgres: {:?}\n  proxy:    {:?}",
                render(&want),
                render(&got)
            ));
        }
        if *coalesced && after == before {
            problems.push(format!(
                "case {name}: the proxy did not coalesce it (received stayed {before})"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The proxied writes landed (flushed mode: acknowledged = committed).
    let rows = all_rows(&env).await;
    for (k, v) in [
        ("k1", json!({"v": 1})),
        ("k1b", json!({"v": 11})),
        ("k2", json!({"v": 2})),
        ("k3", json!({"v": 3})),
        ("k4", json!({"v": 4})),
        ("k5", json!({"v": 5})),
        ("k6", json!({"v": 6})),
        ("k7", json!({"v": 7})),
        ("k7b", json!({"v": 7})),
        ("k8", json!({"v": 9})),
    ] {
        assert_eq!(rows.get(&("e1".into(), k.into())), Some(&v), "row e1/{k}");
    }
}

// ---------------------------------------------------------------------------
// 2. Last-write-wins under concurrency
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_write_wins_for_20000_concurrent_calls() {
    const WRITERS: usize = 16;
    const ENTITIES: usize = 10;
    const KEYS: usize = 50;
    const CALLS: usize = 20_000;
    let env = start(Opts::default()).await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let url = env.url();
        tasks.push(tokio::spawn(async move {
            let client = common::connect(&url).await;
            // Most writers prepare once; every fourth lets tokio-postgres
            // prepare per call (Parse/Describe/Sync, then Bind/Execute/Sync
            // and Close, every time).
            let stmt = if w % 4 != 0 {
                Some(client.prepare(FN_SQL).await.expect("prepare"))
            } else {
                None
            };
            let mine: Vec<usize> = (0..ENTITIES * KEYS).filter(|k| k % WRITERS == w).collect();
            let mut last: HashMap<(String, String), serde_json::Value> = HashMap::new();
            for n in 0..CALLS / WRITERS {
                let key = mine[n % mine.len()];
                let e = format!("e{}", key / KEYS);
                let k = format!("k{}", key % KEYS);
                let v = json!({"w": w, "n": n});
                let r = match &stmt {
                    Some(s) => client.execute(s, &[&e, &k, &v, &GROUP]).await,
                    None => client.execute(FN_SQL, &[&e, &k, &v, &GROUP]).await,
                };
                let affected = r.unwrap_or_else(|err| panic!("writer {w} call {n}: {err:?}"));
                assert_eq!(affected, 1, "a void function call returns one row");
                last.insert((e, k), v);
            }
            last
        }));
    }
    let mut expected = HashMap::new();
    for t in tasks {
        expected.extend(t.await.expect("writer"));
    }
    let elapsed = started.elapsed();
    let c = counts(&env);
    println!(
        "20000 calls by {WRITERS} writers in {elapsed:?}: received {}, merged {}, flushed_rows {}, \
         flush_batches {}, flush_failures {}, rejected {}",
        c.received, c.merged, c.flushed_rows, c.flush_batches, c.flush_failures, c.rejected
    );
    assert_eq!(expected.len(), ENTITIES * KEYS);

    let rows = all_rows(&env).await;
    let missing: Vec<_> = expected.keys().filter(|k| !rows.contains_key(*k)).collect();
    let extra: Vec<_> = rows.keys().filter(|k| !expected.contains_key(*k)).collect();
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(k, v)| rows.get(*k).is_some_and(|got| got != *v))
        .map(|(k, v)| (k, v, &rows[k]))
        .collect();
    assert!(
        missing.is_empty(),
        "{} rows missing: {missing:?}",
        missing.len()
    );
    assert!(
        extra.is_empty(),
        "{} unexpected rows: {extra:?}",
        extra.len()
    );
    assert!(
        wrong.is_empty(),
        "{} rows do not hold their last write (key, expected, found): {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );

    assert_eq!(
        c.received, CALLS as u64,
        "every call went through the coalescer"
    );
    assert_eq!(c.rejected, 0);
    // In flushed mode each writer has one call in flight, so a flush carries
    // at most 16 rows; on 2 shared cores group commit gathers about 6 on
    // average (3000-3800 flushes measured). Require at least 4.
    assert!(
        c.flush_batches < (CALLS / 4) as u64,
        "{} flush statements for {CALLS} calls: coalescing did not batch",
        c.flush_batches
    );
}

// ---------------------------------------------------------------------------
// 3. Read-your-writes
// ---------------------------------------------------------------------------

/// 1000 × (write through the proxy, read it back through the proxy), with
/// another client writing other keys of the same table all the time.
async fn read_your_writes(env: &Env) {
    let noise_url = env.url();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noise_stop = stop.clone();
    let noise = tokio::spawn(async move {
        let client = common::connect(&noise_url).await;
        let stmt = client.prepare(FN_SQL).await.expect("prepare");
        let mut n = 0u64;
        while !noise_stop.load(Ordering::Relaxed) {
            let k = format!("noise{}", n % 40);
            client
                .execute(&stmt, &[&"e2", &k, &json!({"n": n}), &GROUP])
                .await
                .expect("noise write");
            n += 1;
        }
        n
    });

    let client = env.client().await;
    let write_fn = client.prepare(FN_SQL).await.expect("prepare fn");
    let write_insert = client.prepare(INSERT_SQL).await.expect("prepare insert");
    let read = client.prepare(READ_SQL).await.expect("prepare read");
    for i in 0..1000u64 {
        let k = format!("ryw{}", i % 7);
        let v = json!({"i": i, "pad": "x".repeat((i % 13) as usize)});
        if i % 2 == 0 {
            client
                .execute(&write_fn, &[&"e3", &k, &v, &GROUP])
                .await
                .unwrap_or_else(|e| panic!("write {i}: {e:?}"));
        } else {
            client
                .execute(&write_insert, &[&"e3", &k, &v, &GROUP])
                .await
                .unwrap_or_else(|e| panic!("write {i}: {e:?}"));
        }
        let got: serde_json::Value = if i % 10 == 9 {
            // Now and then a simple-protocol read with literals.
            let rows = client
                .simple_query(&format!(
                    "SELECT metadata__value::text FROM entity.entity_metadata \
                     WHERE general__entity_name = 'e3' AND metadata__key = '{k}'"
                ))
                .await
                .expect("simple read");
            let text = rows
                .iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(|s| s.to_owned()),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("iteration {i}: row e3/{k} not found"));
            serde_json::from_str(&text).expect("json")
        } else {
            client
                .query_opt(&read, &[&"e3", &k])
                .await
                .expect("read")
                .unwrap_or_else(|| panic!("iteration {i}: row e3/{k} not found"))
                .get(0)
        };
        assert_eq!(
            got, v,
            "iteration {i}: read through the proxy after a write"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let noise_writes = noise.await.expect("noise writer");
    println!("read-your-writes: 1000 rounds, {noise_writes} concurrent noise writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_flushed() {
    let env = start(Opts::default()).await;
    let before = counts(&env);
    read_your_writes(&env).await;
    let after = counts(&env);
    assert!(
        after.received - before.received >= 1000,
        "the writes were coalesced ({:?} -> {:?})",
        before,
        after
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_does_not_wait_out_a_long_flush_interval() {
    // Acknowledged writes gather for an hour, but a read of their table
    // makes the flusher go at once (its barrier cuts the interval short),
    // every time, not only when the flusher was idle.
    let env = start(Opts {
        ack: "immediate",
        flush_interval: "1h",
        ..Opts::default()
    })
    .await;
    let client = env.client().await;
    for round in 0..3 {
        let value = serde_json::json!({ "round": round });
        client
            .execute(FN_SQL, &[&"e1", &"long_interval", &value, &GROUP])
            .await
            .expect("write");
        let read = tokio::time::timeout(
            Duration::from_secs(30),
            client.query_one(READ_SQL, &[&"e1", &"long_interval"]),
        )
        .await
        .unwrap_or_else(|_| panic!("round {round}: the read waited for the flush interval"))
        .expect("read");
        assert_eq!(read.get::<_, serde_json::Value>(0), value, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_immediate_and_delete_after_pending_upsert() {
    let env = start(Opts {
        ack: "immediate",
        ..Opts::default()
    })
    .await;
    let before = counts(&env);
    read_your_writes(&env).await;
    let after = counts(&env);
    assert!(
        after.received - before.received >= 1000,
        "the writes were coalesced ({:?} -> {:?})",
        before,
        after
    );

    // A DELETE right after a pending (acknowledged, not yet flushed) upsert
    // of the same row: the upsert lands first, the DELETE removes it.
    let client = env.client().await;
    let write_fn = client.prepare(FN_SQL).await.expect("prepare fn");
    let write_insert = client.prepare(INSERT_SQL).await.expect("prepare insert");
    let delete = client
        .prepare(
            "DELETE FROM entity.entity_metadata \
             WHERE general__entity_name = $1 AND metadata__key = $2",
        )
        .await
        .expect("prepare delete");
    for j in 0..60u64 {
        let k = format!("del{j}");
        let v = json!({"j": j});
        if j % 2 == 0 {
            client
                .execute(&write_fn, &[&"e4", &k, &v, &GROUP])
                .await
                .expect("write");
        } else {
            client
                .execute(&write_insert, &[&"e4", &k, &v, &GROUP])
                .await
                .expect("write");
        }
        let deleted = client.execute(&delete, &[&"e4", &k]).await.expect("delete");
        assert_eq!(
            deleted, 1,
            "DELETE of e4/{k} right after its upsert deleted {deleted} rows (upsert not flushed first)"
        );
    }
    // Simple protocol too: upsert with literals, then DELETE.
    for j in 0..20u64 {
        client
            .batch_execute(&format!(
                "SELECT entity.update_metadata_optimized('e4', 'sdel{j}', '{{\"j\": {j}}}', 'public.NORMAL')"
            ))
            .await
            .expect("simple write");
        client
            .batch_execute(&format!(
                "DELETE FROM entity.entity_metadata \
                 WHERE general__entity_name = 'e4' AND metadata__key = 'sdel{j}'"
            ))
            .await
            .expect("simple delete");
    }
    let count_deleted = "SELECT count(*) FROM entity.entity_metadata \
                         WHERE general__entity_name = 'e4' \
                         AND (metadata__key LIKE 'del%' OR metadata__key LIKE 'sdel%')";
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left: i64 = env
        .direct()
        .await
        .query_one(count_deleted, &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "deleted rows came back after 300 ms");

    let Env { pg, proxy } = env;
    let unflushed = proxy.shutdown(Duration::from_secs(20)).await;
    assert_eq!(unflushed, 0, "shutdown left writes unflushed");
    let left = tokio::task::block_in_place(|| pg.psql(DB, count_deleted)).unwrap();
    assert_eq!(left, "0", "deleted rows came back after shutdown's flush");
}

// ---------------------------------------------------------------------------
// 4. Transactions
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_rollback_discards_and_commit_is_atomic() {
    let env = start(Opts::default()).await;
    let mut client = env.client().await;
    let direct = env.direct().await;
    let nil = "00000000-0000-0000-0000-000000000000";

    // ROLLBACK: extended protocol inside tokio-postgres' transaction.
    {
        let tx = client.transaction().await.unwrap();
        tx.execute(FN_SQL, &[&"e5", &"rb1", &json!({"rb": 1}), &GROUP])
            .await
            .expect("write in tx");
        tx.execute(INSERT_SQL, &[&"e5", &"rb2", &json!({"rb": 2}), &GROUP])
            .await
            .expect("insert in tx");
        tx.rollback().await.expect("rollback");
    }
    // ROLLBACK: simple protocol, with an agent context first.
    client
        .batch_execute(&format!(
            "BEGIN; SELECT auth.set_agent_context_from_agent_id('{nil}'::uuid); \
             SELECT entity.update_metadata_optimized('e5', 'rb3', '{{\"rb\": 3}}', 'public.NORMAL'); \
             ROLLBACK"
        ))
        .await
        .expect("simple rollback");
    // Same, one statement per Query message.
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute(&format!(
            "SELECT auth.set_agent_context_from_agent_id('{nil}'::uuid)"
        ))
        .await
        .unwrap();
    client
        .batch_execute(
            "SELECT entity.update_metadata_optimized('e5', 'rb4', '{\"rb\": 4}', 'public.NORMAL')",
        )
        .await
        .unwrap();
    client.batch_execute("ROLLBACK").await.unwrap();

    // COMMIT with another statement in between: passthrough, atomic.
    {
        let tx = client.transaction().await.unwrap();
        tx.execute(FN_SQL, &[&"e5", &"c1", &json!({"c": 1}), &GROUP])
            .await
            .expect("write 1");
        tx.execute(
            "UPDATE entity.entities SET group__load_priority = 7 \
             WHERE general__entity_name = 'e5'",
            &[],
        )
        .await
        .expect("other statement");
        tx.execute(INSERT_SQL, &[&"e5", &"c2", &json!({"c": 2}), &GROUP])
            .await
            .expect("write 2");
        // Nothing is visible outside before COMMIT.
        let visible: i64 = direct
            .query_one(
                "SELECT count(*) FROM entity.entity_metadata \
                 WHERE general__entity_name = 'e5' AND metadata__key IN ('c1', 'c2')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            visible, 0,
            "writes of an open transaction visible outside it"
        );
        let prio: Option<i32> = direct
            .query_one(
                "SELECT group__load_priority FROM entity.entities WHERE general__entity_name = 'e5'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(prio, None);
        tx.commit().await.expect("commit");
    }
    assert_eq!(direct_value(&env, "e5", "c1").await, Some(json!({"c": 1})));
    assert_eq!(direct_value(&env, "e5", "c2").await, Some(json!({"c": 2})));
    let prio: Option<i32> = direct
        .query_one(
            "SELECT group__load_priority FROM entity.entities WHERE general__entity_name = 'e5'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(prio, Some(7));

    // COMMIT of a transaction holding only a context and upserts.
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute(&format!(
            "SELECT auth.set_agent_context_from_agent_id('{nil}'::uuid)"
        ))
        .await
        .unwrap();
    client
        .execute(FN_SQL, &[&"e5", &"c3", &json!({"c": 3}), &GROUP])
        .await
        .expect("write 3");
    client
        .execute(INSERT_SQL, &[&"e5", &"c4", &json!({"c": 4}), &GROUP])
        .await
        .expect("write 4");
    let visible: i64 = direct
        .query_one(
            "SELECT count(*) FROM entity.entity_metadata \
             WHERE general__entity_name = 'e5' AND metadata__key IN ('c3', 'c4')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        visible, 0,
        "writes of an open transaction visible outside it"
    );
    client.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(direct_value(&env, "e5", "c3").await, Some(json!({"c": 3})));
    assert_eq!(direct_value(&env, "e5", "c4").await, Some(json!({"c": 4})));

    // The rolled-back writes never land: not now, not after a read through
    // the proxy (a barrier), not after shutdown's final flush.
    let rolled_back = "SELECT count(*) FROM entity.entity_metadata \
                       WHERE general__entity_name = 'e5' AND metadata__key LIKE 'rb%'";
    let through_proxy: i64 = client.query_one(rolled_back, &[]).await.unwrap().get(0);
    assert_eq!(
        through_proxy, 0,
        "rolled-back writes visible through the proxy"
    );
    drop(client);
    drop(direct);
    let Env { pg, proxy } = env;
    assert_eq!(proxy.shutdown(Duration::from_secs(20)).await, 0);
    let left = tokio::task::block_in_place(|| pg.psql(DB, rolled_back)).unwrap();
    assert_eq!(left, "0", "rolled-back writes landed");
}

// ---------------------------------------------------------------------------
// 5. Statement-level triggers fire once per flush
// ---------------------------------------------------------------------------

const TRIGGER_WRITERS: usize = 16;
const TRIGGER_WRITES: usize = 2000;

/// ~2000 writes from 16 clients under a counting AFTER ... FOR EACH
/// STATEMENT trigger; returns (INSERT statements counted, flush statements).
async fn count_trigger_firings(ack: &'static str) -> (i64, u64) {
    const WRITERS: usize = TRIGGER_WRITERS;
    const WRITES: usize = TRIGGER_WRITES;
    let env = start(Opts {
        ack,
        ..Opts::default()
    })
    .await;
    // Counts statements per operation: an INSERT ... ON CONFLICT DO UPDATE
    // fires the INSERT statement trigger once, and the UPDATE one as well.
    superuser_sql(
        &env,
        "CREATE TABLE public.statement_counter (op text PRIMARY KEY, n bigint NOT NULL);
         CREATE FUNCTION public.count_statement() RETURNS trigger
           LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
         BEGIN
           INSERT INTO public.statement_counter VALUES (TG_OP, 1)
             ON CONFLICT (op) DO UPDATE SET n = statement_counter.n + 1;
           RETURN NULL;
         END $$;
         CREATE TRIGGER count_statement
           AFTER INSERT OR UPDATE ON entity.entity_metadata
           FOR EACH STATEMENT EXECUTE FUNCTION public.count_statement();",
    );
    let before = counts(&env);
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let url = env.url();
        tasks.push(tokio::spawn(async move {
            let client = common::connect(&url).await;
            let stmt = client.prepare(FN_SQL).await.expect("prepare");
            for n in 0..WRITES / WRITERS {
                let e = format!("e{}", n % 10);
                let k = format!("t{w}_{}", n % 20);
                client
                    .execute(&stmt, &[&e, &k, &json!({"n": n}), &GROUP])
                    .await
                    .unwrap_or_else(|err| panic!("writer {w} write {n}: {err:?}"));
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    if ack == "immediate" {
        // A read through the proxy waits until the acknowledged writes landed.
        env.client()
            .await
            .query("SELECT 1 FROM entity.entity_metadata LIMIT 1", &[])
            .await
            .expect("barrier read");
    }
    let after = counts(&env);
    // The counter table is the superuser's: read it as such.
    let read_counter = |op: &str| -> i64 {
        superuser_sql(
            &env,
            &format!("SELECT coalesce(sum(n), 0) FROM public.statement_counter WHERE op = '{op}'"),
        )
        .parse()
        .expect("count")
    };
    let statements = read_counter("INSERT");
    let updates = read_counter("UPDATE");
    println!(
        "{ack}: {WRITES} writes: INSERT statement trigger fired {statements} times, UPDATE {updates} times; \
         flush_batches {}, flushed_rows {}, merged {}, flush_failures {}",
        after.flush_batches - before.flush_batches,
        after.flushed_rows - before.flushed_rows,
        after.merged - before.merged,
        after.flush_failures - before.flush_failures,
    );
    assert_eq!(after.received - before.received, WRITES as u64);
    assert_eq!(after.flush_failures, 0);
    assert!(statements >= 1, "the trigger never fired");
    let flushes = after.flush_batches - before.flush_batches;
    assert_eq!(
        statements as u64, flushes,
        "statement trigger firings vs flush statements"
    );
    (statements, flushes)
}

/// Flushed mode: each of the 16 clients has one write in flight, so a flush
/// carries at most 16 rows (group commit alternates between the writers
/// that arrived during the previous flush). About 9 rows per flush on a
/// quiet machine; the bound (2) leaves room for a loaded CI machine, where
/// fewer writers arrive during each flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_triggers_fire_once_per_flush_flushed() {
    let (statements, _) = count_trigger_firings("flushed").await;
    assert!(
        statements <= (TRIGGER_WRITES / 2) as i64,
        "the statement trigger fired {statements} times for {TRIGGER_WRITES} writes \
         from {TRIGGER_WRITERS} clients"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_triggers_fire_once_per_flush_immediate() {
    let (statements, _) = count_trigger_firings("immediate").await;
    assert!(
        statements < (TRIGGER_WRITES / 10) as i64,
        "the statement trigger fired {statements} times for {TRIGGER_WRITES} writes"
    );
}

// ---------------------------------------------------------------------------
// 9. Statements that only look like upserts pass through
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookalike_statements_pass_through_untouched() {
    let env = start(Opts::default()).await;
    let client = env.client().await;
    let direct = env.direct().await;
    let before = counts(&env).received;

    // An extra select item.
    let row = client
        .query_one(
            "SELECT entity.update_metadata_optimized($1,$2,$3::jsonb,$4), 1",
            &[&"e6", &"look1", &json!({"l": 1}), &GROUP],
        )
        .await
        .expect("function call with an extra column");
    assert_eq!(row.len(), 2);
    let one: i32 = row.get(1);
    assert_eq!(one, 1);

    // RETURNING: the client gets the row.
    let row = client
        .query_one(
            &format!("{INSERT_SQL} RETURNING general__entity_name, metadata__key, metadata__value"),
            &[&"e6", &"look2", &json!({"l": 2}), &GROUP],
        )
        .await
        .expect("INSERT ... RETURNING");
    let (e, k, v): (String, String, serde_json::Value) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        (e.as_str(), k.as_str(), v),
        ("e6", "look2", json!({"l": 2}))
    );

    // Two rows in VALUES.
    let n = client
        .execute(
            "INSERT INTO entity.entity_metadata \
             (general__entity_name, metadata__key, metadata__value, group__sync) \
             VALUES ($1, $2, $3, $4), ($5, $6, $7, $8) \
             ON CONFLICT (general__entity_name, metadata__key) \
             DO UPDATE SET metadata__value = EXCLUDED.metadata__value",
            &[
                &"e6",
                &"look3",
                &json!({"l": 3}),
                &GROUP,
                &"e6",
                &"look4",
                &json!({"l": 4}),
                &GROUP,
            ],
        )
        .await
        .expect("two-row insert");
    assert_eq!(n, 2, "two-row insert reports 2 rows");

    assert_eq!(
        counts(&env).received,
        before,
        "a look-alike statement went into the coalescer"
    );
    assert_eq!(
        direct_value(&env, "e6", "look1").await,
        Some(json!({"l": 1}))
    );
    assert_eq!(
        direct_value(&env, "e6", "look2").await,
        Some(json!({"l": 2}))
    );
    assert_eq!(
        direct_value(&env, "e6", "look3").await,
        Some(json!({"l": 3}))
    );
    assert_eq!(
        direct_value(&env, "e6", "look4").await,
        Some(json!({"l": 4}))
    );

    // More look-alikes, compared with what Postgres answers (column names,
    // tags, rows): whether or not the proxy coalesces them, the client must
    // not see a difference.
    for sql in [
        "SELECT entity.update_metadata_optimized('e6', 'look5', '{\"l\": 5}', 'public.NORMAL') AS done",
        "SELECT * FROM entity.update_metadata_optimized('e6', 'look6', '{\"l\": 6}', 'public.NORMAL')",
        "SELECT entity.update_metadata_optimized('e6', 'look7', '{\"l\": 7}', 'public.NORMAL') WHERE false",
        "INSERT INTO entity.entity_metadata (general__entity_name, metadata__key, metadata__value) \
         VALUES ('e6', 'look8', '{\"l\": 8}') ON CONFLICT (general__entity_name, metadata__key) DO NOTHING",
    ] {
        let shape = |msgs: Vec<tokio_postgres::SimpleQueryMessage>| -> Vec<String> {
            msgs.iter()
                .map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => format!(
                        "row {:?} {:?}",
                        r.columns().iter().map(|c| c.name()).collect::<Vec<_>>(),
                        (0..r.len()).map(|i| r.get(i)).collect::<Vec<_>>()
                    ),
                    tokio_postgres::SimpleQueryMessage::CommandComplete(n) => format!("complete {n}"),
                    tokio_postgres::SimpleQueryMessage::RowDescription(cols) => format!(
                        "columns {:?}",
                        cols.iter().map(|c| c.name()).collect::<Vec<_>>()
                    ),
                    _ => "other".to_owned(),
                })
                .collect()
        };
        let want = shape(direct.simple_query(sql).await.expect("direct"));
        // Each side starts from the same state.
        direct
            .execute(
                "DELETE FROM entity.entity_metadata WHERE general__entity_name = 'e6' \
                 AND metadata__key IN ('look5', 'look6', 'look7', 'look8')",
                &[],
            )
            .await
            .unwrap();
        let got = shape(client.simple_query(sql).await.expect("through the proxy"));
        assert_eq!(want, got, "{sql}");
    }
}

// ---------------------------------------------------------------------------
// 10. psql with literals
// ---------------------------------------------------------------------------

fn psql_c(port: u16, sql: &str) -> (bool, String, String) {
    let out = std::process::Command::new(pgtest::bin_dir().join("psql"))
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            USER,
            "-d",
            DB,
            "-c",
            sql,
        ])
        .env("PGPASSWORD", PASSWORD)
        .output()
        .expect("run psql");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_prints_the_same_through_the_proxy() {
    let env = start(Opts::default()).await;
    let pg_port = env.pg.port();
    let proxy_port = env.addr().port();
    for (sql, key, value) in [
        (
            "SELECT entity.update_metadata_optimized('e1','k9','{\"x\":1}','public.NORMAL')",
            "k9",
            json!({"x": 1}),
        ),
        (
            "SELECT entity.update_metadata_optimized('e1','k10','{\"x\":2}')",
            "k10",
            json!({"x": 2}),
        ),
        (
            "INSERT INTO entity.entity_metadata (general__entity_name, metadata__key, metadata__value, group__sync) \
             VALUES ('e1', 'k11', '{\"x\":3}', 'public.NORMAL') \
             ON CONFLICT (general__entity_name, metadata__key) DO UPDATE SET metadata__value = EXCLUDED.metadata__value",
            "k11",
            json!({"x": 3}),
        ),
    ] {
        let want = tokio::task::block_in_place(|| psql_c(pg_port, sql));
        let before = counts(&env).received;
        let got = tokio::task::block_in_place(|| psql_c(proxy_port, sql));
        let after = counts(&env).received;
        assert!(want.0, "psql direct failed: {}", want.2);
        assert_eq!(want, got, "psql output (direct, proxy) for {sql}");
        println!("psql prints, direct and through the proxy:\n{}", got.1);
        assert_eq!(after - before, 1, "psql's statement was not coalesced: {sql}");
        assert_eq!(direct_value(&env, "e1", key).await, Some(value));
    }
}

// ---------------------------------------------------------------------------
// Extra: extended-protocol edge cases where Postgres does not run the upsert
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upserts_postgres_would_not_run_are_not_written() {
    let env = start(Opts {
        trust: true,
        ..Opts::default()
    })
    .await;
    let direct_addr: SocketAddr = format!("127.0.0.1:{}", env.pg.port()).parse().unwrap();
    let mut direct = Raw::connect(direct_addr).await;
    let mut proxied = Raw::connect(env.addr()).await;

    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "Bind without Execute, then Sync",
            [
                parse_msg("", FN_SQL),
                bind_msg(
                    "",
                    "",
                    &[],
                    &text_params(&["e1", "nx1", r#"{"nx": 1}"#, GROUP]),
                    &[],
                ),
                sync_msg(),
            ]
            .concat(),
        ),
        (
            "Bind, Describe portal, Close portal, Sync (never executed)",
            [
                parse_msg("", INSERT_SQL),
                bind_msg(
                    "p1",
                    "",
                    &[],
                    &text_params(&["e1", "nx2", r#"{"nx": 2}"#, GROUP]),
                    &[],
                ),
                describe_msg(b'P', "p1"),
                close_msg(b'P', "p1"),
                sync_msg(),
            ]
            .concat(),
        ),
        (
            "an error earlier in the same pipeline",
            [
                parse_msg("", "SELECT 1/0"),
                bind_msg("", "", &[], &[], &[]),
                execute_msg(""),
                parse_msg("", FN_SQL),
                bind_msg(
                    "",
                    "",
                    &[],
                    &text_params(&["e1", "nx3", r#"{"nx": 3}"#, GROUP]),
                    &[],
                ),
                execute_msg(""),
                sync_msg(),
            ]
            .concat(),
        ),
        (
            "an upsert of a missing entity first, then a good one, one Sync",
            [
                parse_msg("", FN_SQL),
                bind_msg(
                    "",
                    "",
                    &[],
                    &text_params(&["missing", "nx4", r#"{"nx": 4}"#, GROUP]),
                    &[],
                ),
                execute_msg(""),
                bind_msg(
                    "",
                    "",
                    &[],
                    &text_params(&["e1", "nx5", r#"{"nx": 5}"#, GROUP]),
                    &[],
                ),
                execute_msg(""),
                sync_msg(),
            ]
            .concat(),
        ),
    ];
    let mut problems = Vec::new();
    for (name, bytes) in &cases {
        let want = direct.exchange(bytes, 1).await;
        // Let Postgres forget what the direct run wrote, so the proxy's run
        // is judged on its own.
        env.direct()
            .await
            .execute(
                "DELETE FROM entity.entity_metadata WHERE metadata__key LIKE 'nx%'",
                &[],
            )
            .await
            .unwrap();
        let got = proxied.exchange(bytes, 1).await;
        // A read through the proxy is a barrier: whatever was taken lands.
        let client = env.client().await;
        let written: Vec<String> = client
            .query(
                "SELECT metadata__key FROM entity.entity_metadata WHERE metadata__key LIKE 'nx%'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !written.is_empty() {
            problems.push(format!(
                "case {name}: Postgres writes nothing, but through the proxy {written:?} got written"
            ));
        }
        // An error raised inside the bulk flush function cannot carry the
        // same CONTEXT ('W') as the single call's: compare the rest.
        if render(&without_context(&want)) != render(&without_context(&got)) {
            problems.push(format!(
                "case {name}: proxy reply differs from Postgres'\n  Postgres: {:?}\n  proxy:    {:?}",
                render(&want),
                render(&got)
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// ErrorResponses without their 'W' (context) field; other messages as is.
fn without_context(msgs: &[Vec<u8>]) -> Vec<Vec<u8>> {
    msgs.iter()
        .map(|m| {
            if m[0] != b'E' {
                return m.clone();
            }
            let mut body = Vec::new();
            for field in m[5..].split(|&b| b == 0).filter(|f| !f.is_empty()) {
                if field[0] != b'W' {
                    body.extend_from_slice(field);
                    body.push(0);
                }
            }
            body.push(0);
            msg(b'E', &body)
        })
        .collect()
}
