//! The Prometheus endpoint seen by a scraper: after real client traffic
//! through a coalescing proxy, `GET /metrics` reports what happened.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::{Env, Setup, DB, USER};
use config::Config;
use proxy::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn yaml(pg_port: u16) -> String {
    let config = common::coalescing_yaml(
        pg_port,
        "  size: 2",
        "scram-sha-256",
        &[common::function_rule(
            common::BATCH_FLUSH,
            &["ack: flushed"],
        )],
    );
    format!("metrics_listen: 127.0.0.1:0\n{config}")
}

/// Sends one raw HTTP request; returns the status line and the body.
async fn http(addr: SocketAddr, request: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect to metrics");
    s.write_all(request.as_bytes()).await.expect("send request");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read response");
    let (head, body) = out.split_once("\r\n\r\n").expect("HTTP head and body");
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

/// `name{labels}` -> value, for every sample line.
fn samples(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

fn value(s: &HashMap<String, f64>, name: &str) -> f64 {
    *s.get(name)
        .unwrap_or_else(|| panic!("{name} missing from {:?}", s.keys()))
}

/// A cluster with the migrations and a coalescing proxy serving metrics.
async fn start() -> Env {
    let Env { pg, proxy } = Env::start(Setup {
        migrations: true,
        ..Setup::default()
    })
    .await;
    proxy.shutdown(Duration::from_secs(1)).await;
    let proxy = Proxy::start(Config::from_yaml(&yaml(pg.port())).expect("config"))
        .await
        .expect("start proxy");
    Env { pg, proxy }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_reports_clients_pools_and_coalescing() {
    let env = start().await;
    let metrics = env.proxy.metrics_addr().expect("metrics endpoint bound");
    env.direct()
        .await
        .execute(
            "INSERT INTO entity.entities (general__entity_name) \
             SELECT 'e' || g FROM generate_series(0, 4) g",
            &[],
        )
        .await
        .expect("entities");

    let client = env.client().await;
    let upsert = client
        .prepare("SELECT entity.update_metadata_optimized($1, $2, $3::jsonb)")
        .await
        .expect("prepare");
    for i in 0..20 {
        let entity = format!("e{}", i % 5);
        let v = serde_json::json!({ "v": i });
        client
            .execute(&upsert, &[&entity, &"k", &v])
            .await
            .expect("coalesced upsert");
    }

    let (status, body) = http(metrics, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let s = samples(&body);
    assert_eq!(value(&s, "pgcoalesce_coalesce_received_total"), 20.0);
    // Flushed mode: each reply waited for its flush, so all 20 landed, in
    // at most 20 rows and no more batches than writes.
    let rows = value(&s, "pgcoalesce_coalesce_flushed_rows_total");
    assert!((5.0..=20.0).contains(&rows), "flushed rows {rows}");
    let batches = value(&s, "pgcoalesce_coalesce_flush_batches_total");
    assert!((1.0..=20.0).contains(&batches), "batches {batches}");
    assert_eq!(value(&s, "pgcoalesce_coalesce_rejected_total"), 0.0);
    let pending = format!(
        "pgcoalesce_coalesce_pending_keys{{database=\"{DB}\",user=\"{USER}\",rule=\"metadata_fn\"}}"
    );
    assert_eq!(
        value(&s, &pending),
        0.0,
        "everything acknowledged has landed"
    );
    assert_eq!(value(&s, "pgcoalesce_clients"), 1.0);
    let pool = format!("{{database=\"{DB}\",user=\"{USER}\"}}");
    let idle = value(&s, &format!("pgcoalesce_pool_idle_connections{pool}"));
    let active = value(&s, &format!("pgcoalesce_pool_active_connections{pool}"));
    assert!(idle + active >= 1.0, "the login connection is pooled");
    let waiting = value(&s, &format!("pgcoalesce_pool_waiting_clients{pool}"));
    assert_eq!(waiting, 0.0, "nobody waits for a connection now");
    let max_wait = value(&s, &format!("pgcoalesce_pool_max_wait_seconds{pool}"));
    assert_eq!(max_wait, 0.0);

    // What the rows say agrees with the counters.
    let landed: i64 = env
        .direct()
        .await
        .query_one(
            "SELECT count(*) FROM entity.entity_metadata WHERE metadata__key = 'k'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(landed, 5);

    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, body) = http(metrics, "GET /metrics HTTP/1.0\r\n\r\n").await;
    assert_eq!(value(&samples(&body), "pgcoalesce_clients"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_requests_get_http_errors() {
    let env = start().await;
    let metrics = env.proxy.metrics_addr().expect("metrics endpoint bound");
    let (status, _) = http(metrics, "GET /other HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _) = http(metrics, "POST /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    let junk = "x".repeat(20_000);
    let (status, _) = http(metrics, &junk).await;
    assert_eq!(status, "HTTP/1.1 400 Bad Request");
    // The proxy still serves clients.
    let n: i32 = env
        .client()
        .await
        .query_one("SELECT 41 + 1", &[])
        .await
        .expect("query")
        .get(0);
    assert_eq!(n, 42);
}
