//! Last-write-wins across two proxies writing the same rows: a proxy that
//! flushes an older value after another proxy flushed a newer one must not
//! overwrite it. Proxy `slow` holds its writes for a long flush interval,
//! proxy `fast` flushes at once, both `immediate`; the older write goes
//! through `slow`, the newer through `fast`, so the older one lands last.
//!
//! Each case runs first with the rule's stamps turned off, to show the
//! problem is real (the older value ends up stored), then with them on.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Env, Setup, DB, PASSWORD, USER};
use config::Config;
use proxy::Proxy;
use serde_json::{json, Value};

const FN_CALL: &str = "SELECT entity.update_metadata_optimized($1, $2, $3::jsonb)";
const INSERT: &str = "INSERT INTO entity.entity_metadata \
     (general__entity_name, metadata__key, metadata__value) VALUES ($1, $2, $3) \
     ON CONFLICT (general__entity_name, metadata__key) \
     DO UPDATE SET metadata__value = EXCLUDED.metadata__value";
/// The same with a target alias and a condition of its own, which the
/// version guard is added to.
const INSERT_WHERE: &str = "INSERT INTO entity.entity_metadata AS m \
     (general__entity_name, metadata__key, metadata__value) VALUES ($1, $2, $3) \
     ON CONFLICT (general__entity_name, metadata__key) \
     DO UPDATE SET metadata__value = EXCLUDED.metadata__value \
     WHERE m.metadata__value IS DISTINCT FROM EXCLUDED.metadata__value";
const READ: &str = "SELECT metadata__value FROM entity.entity_metadata \
     WHERE general__entity_name = $1 AND metadata__key = $2";
/// How long `slow` holds its writes.
const SLOW: Duration = Duration::from_millis(1500);

/// A proxy with the function rule and the table rule, stamped or not.
async fn proxy(pg_port: u16, interval: Duration, stamped: bool) -> Proxy {
    let interval = format!("flush_interval: {}ms", interval.as_millis());
    let extra = ["ack: immediate", interval.as_str()];
    let (flush, mut table) = if stamped {
        (
            common::STAMPED_FLUSH,
            vec!["version_column: metadata__written_at_us"],
        )
    } else {
        (common::BATCH_FLUSH, vec![])
    };
    table.extend(extra);
    let yaml = common::coalescing_yaml(
        pg_port,
        "  size: 4",
        "scram-sha-256",
        &[
            common::function_rule(flush, &extra),
            common::table_rule(&table),
        ],
    );
    Proxy::start(Config::from_yaml(&yaml).expect("config"))
        .await
        .expect("start proxy")
}

fn url(p: &Proxy) -> String {
    format!(
        "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{DB}",
        p.addr().port()
    )
}

fn flushed(p: &Proxy) -> u64 {
    let c = p.coalescer().expect("coalescer");
    c.stats.flushed_rows.load(Ordering::SeqCst) + c.stats.rejected.load(Ordering::SeqCst)
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn stored(env: &Env, entity: &str, key: &str) -> Option<Value> {
    env.direct()
        .await
        .query_opt(READ, &[&entity, &key])
        .await
        .expect("read")
        .map(|r| r.get(0))
}

/// Writes `old` through a slow proxy, then `new` through a fast one, and
/// returns what is stored once both have flushed.
async fn older_lands_last(env: &Env, stamped: bool, sql: &str, key: &str) -> Value {
    let slow = proxy(env.pg.port(), SLOW, stamped).await;
    let fast = proxy(env.pg.port(), Duration::from_millis(2), stamped).await;
    let (via_slow, via_fast) = (
        common::connect(&url(&slow)).await,
        common::connect(&url(&fast)).await,
    );
    let (slow_before, fast_before) = (flushed(&slow), flushed(&fast));

    via_slow
        .execute(sql, &[&"e1", &key, &json!({"v": "old"})])
        .await
        .expect("older write through the slow proxy");
    tokio::time::sleep(Duration::from_millis(20)).await;
    via_fast
        .execute(sql, &[&"e1", &key, &json!({"v": "new"})])
        .await
        .expect("newer write through the fast proxy");
    wait_until("the fast proxy flushed", || flushed(&fast) > fast_before).await;
    assert_eq!(stored(env, "e1", key).await, Some(json!({"v": "new"})));
    assert_eq!(
        flushed(&slow),
        slow_before,
        "the slow proxy must still hold its write"
    );
    wait_until("the slow proxy flushed", || flushed(&slow) > slow_before).await;
    let value = stored(env, "e1", key).await.expect("row");

    // A write through the slow proxy that really is newer still lands.
    if stamped {
        let before = flushed(&slow);
        via_slow
            .execute(sql, &[&"e1", &key, &json!({"v": "newest"})])
            .await
            .expect("newest write through the slow proxy");
        wait_until("the slow proxy flushed again", || flushed(&slow) > before).await;
        assert_eq!(stored(env, "e1", key).await, Some(json!({"v": "newest"})));
    }
    slow.shutdown(Duration::from_secs(5)).await;
    fast.shutdown(Duration::from_secs(5)).await;
    value
}

async fn env() -> Env {
    let env = Env::start(Setup {
        migrations: true,
        ..Setup::default()
    })
    .await;
    env.direct()
        .await
        .execute(
            "INSERT INTO entity.entities (general__entity_name) VALUES ('e1')",
            &[],
        )
        .await
        .expect("entity");
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_rule_newest_write_wins_across_proxies() {
    let env = env().await;
    assert_eq!(
        older_lands_last(&env, false, FN_CALL, "unguarded").await,
        json!({"v": "old"}),
        "without stamps the older write, flushed last, overwrites the newer"
    );
    assert_eq!(
        older_lands_last(&env, true, FN_CALL, "guarded").await,
        json!({"v": "new"}),
        "with stamps the newer write stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_rule_newest_write_wins_across_proxies() {
    let env = env().await;
    assert_eq!(
        older_lands_last(&env, false, INSERT, "unguarded").await,
        json!({"v": "old"}),
        "without a version column the older write, flushed last, overwrites the newer"
    );
    assert_eq!(
        older_lands_last(&env, true, INSERT, "guarded").await,
        json!({"v": "new"}),
        "with a version column the newer write stays"
    );
    assert_eq!(
        older_lands_last(&env, true, INSERT_WHERE, "guarded_where").await,
        json!({"v": "new"}),
        "the guard holds beside the statement's own condition"
    );
    // A statement that writes the version column itself is not coalesced:
    // it runs at once, as written.
    let p = proxy(env.pg.port(), SLOW, true).await;
    let c = common::connect(&url(&p)).await;
    c.execute(
        "INSERT INTO entity.entity_metadata (general__entity_name, metadata__key, \
         metadata__value, metadata__written_at_us) VALUES ($1, $2, $3, 7) \
         ON CONFLICT (general__entity_name, metadata__key) \
         DO UPDATE SET metadata__value = EXCLUDED.metadata__value",
        &[&"e1", &"own", &json!(1)],
    )
    .await
    .expect("statement writing the version column");
    assert_eq!(
        p.coalescer()
            .expect("coalescer")
            .stats
            .received
            .load(Ordering::SeqCst),
        0
    );
    assert_eq!(stored(&env, "e1", "own").await, Some(json!(1)));
}
