//! The Prometheus endpoint (`metrics_listen`): `GET /metrics` answers with
//! a snapshot taken at the request — clients, pools, coalescing counters and
//! pending keys per group, and each replica's state — in the text format.
//!
//! The figures live where they are kept (atomics in the coalescer, the
//! replica monitor's states, the pools); a scrape copies them into a
//! recorder of this proxy's own (not the process-wide one, so several
//! proxies in one process never mix their figures) and renders it.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge, with_local_recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::state::Shared;

/// Longest request head read before answering 400.
const MAX_REQUEST: usize = 8 * 1024;
/// A scraper that sends nothing for this long is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the metrics address and serves scrapes until the task is dropped.
pub async fn start(addr: SocketAddr, shared: Arc<Shared>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let recorder = Arc::new(PrometheusBuilder::new().build_recorder());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let (shared, recorder) = (shared.clone(), recorder.clone());
            tokio::spawn(async move {
                let _ = serve(stream, &shared, &recorder).await;
            });
        }
    });
    tracing::info!(addr = %bound, "metrics endpoint listening");
    Ok(bound)
}

/// Answers one HTTP/1 request and closes the connection.
async fn serve(
    mut stream: TcpStream,
    shared: &Shared,
    recorder: &PrometheusRecorder,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let complete = tokio::time::timeout(READ_TIMEOUT, async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok(head.windows(4).any(|w| w == b"\r\n\r\n"))
    })
    .await
    .unwrap_or(Ok(false))?;
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let (status, body) = if !complete {
        ("400 Bad Request", String::from("bad request\n"))
    } else if method != b"GET" {
        ("405 Method Not Allowed", String::from("only GET\n"))
    } else if path == b"/metrics" || path.starts_with(b"/metrics?") {
        ("200 OK", render(shared, recorder))
    } else {
        ("404 Not Found", String::from("see /metrics\n"))
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Copies the proxy's figures into `recorder` and renders them.
pub fn render(shared: &Shared, recorder: &PrometheusRecorder) -> String {
    with_local_recorder(recorder, || publish(shared));
    recorder.handle().render()
}

fn publish(shared: &Shared) {
    gauge!("pgcoalesce_clients").set(shared.clients.load(Ordering::Relaxed) as f64);
    for (database, user, s) in shared.pool_stats() {
        let labels = [("database", database), ("user", user)];
        gauge!("pgcoalesce_pool_idle_connections", &labels).set(s.idle as f64);
        gauge!("pgcoalesce_pool_active_connections", &labels).set(s.used as f64);
        gauge!("pgcoalesce_pool_waiting_clients", &labels).set(s.waiting as f64);
        gauge!("pgcoalesce_pool_max_wait_seconds", &labels).set(s.max_wait.as_secs_f64());
        counter!("pgcoalesce_pool_waits_total", &labels).absolute(s.waits_total);
        let micros = u64::try_from(s.wait_time_total.as_micros()).unwrap_or(u64::MAX);
        counter!("pgcoalesce_pool_wait_microseconds_total", &labels).absolute(micros);
    }
    if let Some(c) = &shared.coalescer {
        let s = &c.stats;
        let count = |name: &'static str, v: &std::sync::atomic::AtomicU64| {
            counter!(name).absolute(v.load(Ordering::Relaxed));
        };
        count("pgcoalesce_coalesce_received_total", &s.received);
        count("pgcoalesce_coalesce_merged_total", &s.merged);
        count("pgcoalesce_coalesce_flushed_rows_total", &s.flushed_rows);
        count("pgcoalesce_coalesce_flush_batches_total", &s.flush_batches);
        count(
            "pgcoalesce_coalesce_flush_failures_total",
            &s.flush_failures,
        );
        count("pgcoalesce_coalesce_rejected_total", &s.rejected);
        count(
            "pgcoalesce_coalesce_flush_microseconds_total",
            &s.flush_micros,
        );
        for (key, rule, pending) in c.pending_by_group() {
            let labels = [
                ("database", key.database),
                ("user", key.user),
                ("rule", rule),
            ];
            gauge!("pgcoalesce_coalesce_pending_keys", &labels).set(pending as f64);
        }
    }
    let live = shared.live();
    for (database, router) in &live.routers {
        for r in router.replicas.states() {
            let labels = [
                ("database", database.clone()),
                ("replica", format!("{}:{}", r.host, r.port)),
            ];
            gauge!("pgcoalesce_replica_up", &labels).set(if r.up { 1.0 } else { 0.0 });
            if let Some(bytes) = r.lag_bytes {
                gauge!("pgcoalesce_replica_lag_bytes", &labels).set(bytes as f64);
            }
            if let Some(seconds) = r.lag_seconds {
                gauge!("pgcoalesce_replica_lag_seconds", &labels).set(seconds);
            }
            gauge!("pgcoalesce_replica_reads_in_flight", &labels).set(r.in_flight as f64);
            counter!("pgcoalesce_replica_reads_total", &labels).absolute(r.queries_routed);
        }
    }
}
