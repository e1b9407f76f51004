//! The flusher against Postgres's own bulk ceiling, and what one pending
//! write costs in memory (the coalescing issue's last two figures).
//!
//! 1. **Bulk ceiling**: one connection straight to Postgres runs the rules'
//!    bulk statement ([`crate::stack::FLUSH_STATEMENT`], arrival stamps
//!    included) with batches of
//!    [`BATCH`] distinct rows of the wide keyspace, back to back: rows/s.
//! 2. **The flusher**: a pgcoalesce process with one `immediate` rule
//!    (`max_batch` [`BATCH`], the same statement). A direct session holds a
//!    lock on `entity.entity_metadata` that makes the flushes wait, while
//!    clients write distinct keys through pgcoalesce (acknowledged at
//!    once): the proxy's resident memory grows by the pending map, which
//!    gives the bytes per pending entry. Then the lock is released and the
//!    time until every row has landed gives the flusher's distinct rows/s.
//!
//! Both phases start from an empty table and insert the same kind of rows,
//! so their rates compare.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tokio_postgres::NoTls;

use crate::scenarios::{Profile, ScenarioReport};
use crate::stack::{self, Stack, DB, FLUSH_STATEMENT, UPSERT_FUNCTION};
use crate::sys;

/// Rows per bulk statement, the rules' default `max_batch`.
pub const BATCH: usize = 5000;
/// Entities of the keyspace (the wide scenario's); keys per entity follow.
const ENTITIES: usize = 100_000;
/// Client connections writing through pgcoalesce.
const WRITERS: usize = 8;
/// Longest wait for the backlog to land.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// The figures, as printed and written to results.json.
#[derive(Debug, Clone, Serialize)]
pub struct FlusherFigures {
    /// Rows per bulk statement in both phases.
    pub batch_rows: usize,
    /// Phase 1: distinct rows per second Postgres absorbed as bulk upserts
    /// from one connection.
    pub bulk_rows_per_second: f64,
    /// Phase 1: statements run and seconds spent.
    pub bulk_statements: u64,
    pub bulk_seconds: f64,
    /// Phase 2: distinct keys acknowledged by pgcoalesce while its flushes
    /// were held back.
    pub pending_entries: u64,
    /// Phase 2: acknowledged upserts per second while writing them.
    pub acknowledged_per_second: f64,
    /// The proxy's resident set before the writes and with them pending.
    pub rss_before_kib: u64,
    pub rss_pending_kib: u64,
    /// (rss_pending - rss_before) / pending_entries.
    pub bytes_per_pending_entry: f64,
    /// Phase 2: from releasing the lock until every row had landed.
    pub drain_seconds: f64,
    /// pending_entries / drain_seconds.
    pub flusher_rows_per_second: f64,
    /// flusher_rows_per_second / bulk_rows_per_second.
    pub flusher_vs_bulk: f64,
}

/// Entity name and key of row `i` of the keyspace.
fn row_key(i: usize) -> (String, String) {
    (
        ((i % ENTITIES) + 1).to_string(),
        ((i / ENTITIES) % 10 + 1).to_string(),
    )
}

/// The `flusher` scenario: [`measure`], reported without groups.
pub fn scenario(stack: &Stack, profile: &Profile) -> Result<ScenarioReport> {
    let figures = measure(stack, profile)?;
    Ok(ScenarioReport {
        name: "flusher".into(),
        title: "flusher ceiling and pending memory".into(),
        description: format!(
            "bulk statements of {BATCH} distinct rows straight to Postgres for {} s, vs a \
             pgcoalesce flusher draining a backlog of distinct keys held back by a lock",
            profile.write_duration_s
        ),
        group_axis: String::new(),
        coalescing: true,
        line_chart: false,
        groups: Vec::new(),
        flusher: Some(figures),
    })
}

/// Runs both phases against the benchmark cluster.
pub fn measure(stack: &Stack, profile: &Profile) -> Result<FlusherFigures> {
    let pg = &stack.pg;
    crate::coalescing::ensure_entities(pg, ENTITIES as u32)?;
    let entries: usize = if profile.quick { 20_000 } else { 200_000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting a tokio runtime")?;
    let direct_url = format!(
        "host={} port={} user=postgres dbname={DB}",
        pg.socket_dir().display(),
        pg.port()
    );

    // Phase 1: the bulk ceiling.
    empty_table(pg)?;
    let seconds = f64::from(profile.write_duration_s);
    let (bulk_statements, bulk_rows, bulk_seconds) =
        rt.block_on(bulk_ceiling(&direct_url, Duration::from_secs_f64(seconds)))?;

    // Phase 2: the flusher, held back, then let go.
    empty_table(pg)?;
    let metrics_port = sys::free_port()?;
    let port = sys::free_port()?;
    let config = proxy_config(pg, port, metrics_port);
    let log = stack.pgcoalesce.borrow().log.clone();
    let proxy = stack::start_pgcoalesce_with(&stack.pgcoalesce_bin, &config, port, &log, true)?;
    let proxy_url = format!("host=127.0.0.1 port={port} user=postgres dbname={DB}");
    let (locker, writers) = rt.block_on(async {
        let locker = connect(&direct_url).await?;
        locker
            .batch_execute("BEGIN; LOCK TABLE entity.entity_metadata IN SHARE ROW EXCLUSIVE MODE")
            .await
            .context("locking entity.entity_metadata")?;
        let mut writers = Vec::new();
        for _ in 0..WRITERS {
            writers.push(connect(&proxy_url).await?);
        }
        anyhow::Ok((locker, writers))
    })?;
    let rss_before_kib = sys::rss_kib(proxy.pid()).context("reading pgcoalesce's RSS")?;
    let started = Instant::now();
    let writers = rt.block_on(write_distinct(writers, entries))?;
    let acknowledged_per_second = entries as f64 / started.elapsed().as_secs_f64();
    let m = scrape(metrics_port)?;
    let distinct = (m.sum("pgcoalesce_coalesce_received_total")
        - m.sum("pgcoalesce_coalesce_merged_total")) as u64;
    if distinct != entries as u64 || m.sum("pgcoalesce_coalesce_flushed_rows_total") > 0.0 {
        bail!(
            "expected {entries} distinct writes held back, the proxy reports {distinct} and {} flushed",
            m.sum("pgcoalesce_coalesce_flushed_rows_total")
        );
    }
    let rss_pending_kib = sys::rss_kib(proxy.pid()).context("reading pgcoalesce's RSS")?;

    let released = Instant::now();
    rt.block_on(locker.batch_execute("COMMIT"))
        .context("releasing the lock")?;
    loop {
        let flushed = scrape(metrics_port)?.sum("pgcoalesce_coalesce_flushed_rows_total");
        if flushed as u64 >= distinct {
            break;
        }
        if released.elapsed() > DRAIN_TIMEOUT {
            bail!("only {flushed} of {distinct} rows landed within {DRAIN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let drain_seconds = released.elapsed().as_secs_f64();
    let landed: u64 = pg
        .psql(DB, "SELECT count(*) FROM entity.entity_metadata")?
        .trim()
        .parse()
        .context("counting rows")?;
    if landed != distinct {
        bail!("{landed} rows in the table, {distinct} written");
    }
    drop(writers);
    drop(proxy);

    let bulk_rows_per_second = bulk_rows as f64 / bulk_seconds;
    let flusher_rows_per_second = distinct as f64 / drain_seconds;
    Ok(FlusherFigures {
        batch_rows: BATCH,
        bulk_rows_per_second,
        bulk_statements,
        bulk_seconds,
        pending_entries: distinct,
        acknowledged_per_second,
        rss_before_kib,
        rss_pending_kib,
        bytes_per_pending_entry: (rss_pending_kib.saturating_sub(rss_before_kib) * 1024) as f64
            / distinct as f64,
        drain_seconds,
        flusher_rows_per_second,
        flusher_vs_bulk: flusher_rows_per_second / bulk_rows_per_second,
    })
}

fn empty_table(pg: &pgtest::Cluster) -> Result<()> {
    pg.psql(
        DB,
        "TRUNCATE entity.entity_metadata; VACUUM entity.entities",
    )
    .context("emptying entity.entity_metadata")?;
    Ok(())
}

async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Phase 1: bulk statements of [`BATCH`] fresh distinct rows for `limit`.
/// Returns (statements, rows, seconds).
async fn bulk_ceiling(url: &str, limit: Duration) -> Result<(u64, u64, f64)> {
    let client = connect(url).await?;
    let stmt = client
        .prepare(FLUSH_STATEMENT)
        .await
        .context("preparing the bulk statement")?;
    let started = Instant::now();
    let (mut statements, mut rows) = (0u64, 0u64);
    while started.elapsed() < limit {
        let first = rows as usize;
        let (mut names, mut keys, mut values, mut groups, mut stamps) = (
            Vec::with_capacity(BATCH),
            Vec::with_capacity(BATCH),
            Vec::with_capacity(BATCH),
            Vec::with_capacity(BATCH),
            Vec::with_capacity(BATCH),
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        for i in first..first + BATCH {
            let (e, k) = row_key(i);
            names.push(e);
            keys.push(k);
            values.push(format!("{{\"v\": {i}}}"));
            groups.push("public.NORMAL".to_owned());
            stamps.push((now + i as u128).to_string());
        }
        client
            .execute(&stmt, &[&names, &keys, &values, &groups, &stamps])
            .await
            .context("bulk upsert")?;
        statements += 1;
        rows += BATCH as u64;
    }
    Ok((statements, rows, started.elapsed().as_secs_f64()))
}

/// Phase 2: `entries` distinct upserts spread over the writers, which are
/// handed back (still connected) when all are acknowledged.
async fn write_distinct(
    writers: Vec<tokio_postgres::Client>,
    entries: usize,
) -> Result<Vec<tokio_postgres::Client>> {
    let sql = format!("SELECT {UPSERT_FUNCTION}($1, $2, $3::jsonb)");
    let mut tasks = Vec::new();
    for (w, client) in writers.into_iter().enumerate() {
        let stmt = client.prepare(&sql).await.context("preparing the upsert")?;
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < entries {
                let (e, k) = row_key(i);
                let v = serde_json::json!({ "v": i });
                client
                    .execute(&stmt, &[&e, &k, &v])
                    .await
                    .context("upsert through pgcoalesce")?;
                i += WRITERS;
            }
            anyhow::Ok(client)
        }));
    }
    let mut back = Vec::new();
    for t in tasks {
        back.push(t.await.context("writer task")??);
    }
    Ok(back)
}

/// The proxy of phase 2: one `immediate` rule on [`DB`] with the default
/// batch size and room for the whole backlog, and a metrics endpoint.
fn proxy_config(pg: &pgtest::Cluster, port: u16, metrics_port: u16) -> String {
    format!(
        "listen: 127.0.0.1:{port}\n\
         metrics_listen: 127.0.0.1:{metrics_port}\n\
         pool: {{mode: transaction, size: {pool}}}\n\
         users:\n  - {{name: postgres, auth: trust}}\n\
         databases:\n  - {{name: {DB}, host: \"{host}\", port: {pgport}}}\n\
         coalesce:\n  - name: backlog\n    function: {UPSERT_FUNCTION}\n\
         \x20   arguments: [p_entity_name, p_key, p_value, p_sync_group]\n\
         \x20   defaults: {{p_sync_group: public.NORMAL}}\n\
         \x20   key: [p_entity_name, p_key]\n\
         \x20   writes: [entity.entity_metadata]\n\
         \x20   flush: \"{FLUSH_STATEMENT}\"\n\
         \x20   ack: immediate\n\
         \x20   max_batch: {BATCH}\n\
         \x20   max_pending: 1000000\n",
        pool = stack::POOL_SIZE,
        host = pg.socket_dir().display(),
        pgport = pg.port(),
    )
}

/// Samples of one scrape of the metrics endpoint, by metric name.
struct Scrape(HashMap<String, f64>);

impl Scrape {
    /// The sum of every series of `name`.
    fn sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| k.as_str() == name || k.starts_with(&format!("{name}{{")))
            .map(|(_, v)| v)
            .sum()
    }
}

fn scrape(port: u16) -> Result<Scrape> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))
        .context("connecting to pgcoalesce's metrics endpoint")?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok(Scrape(
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_owned(), v.parse().ok()?))
            })
            .collect(),
    ))
}

/// The printed table.
pub fn table(f: &FlusherFigures) -> String {
    format!(
        "== flusher ceiling and pending memory (flusher) ==  batches of {} distinct rows\n\
         bulk statements straight to Postgres   {:>9.0} rows/s  ({} statements in {:.1} s)\n\
         pgcoalesce flusher draining a backlog  {:>9.0} rows/s  ({} rows in {:.2} s)  = {:.2}x the bulk ceiling\n\
         acknowledged while held back           {:>9.0} upserts/s\n\
         memory per pending entry               {:>9.0} bytes  (RSS {} -> {} KiB for {} entries)",
        f.batch_rows,
        f.bulk_rows_per_second,
        f.bulk_statements,
        f.bulk_seconds,
        f.flusher_rows_per_second,
        f.pending_entries,
        f.drain_seconds,
        f.flusher_vs_bulk,
        f.acknowledged_per_second,
        f.bytes_per_pending_entry,
        f.rss_before_kib,
        f.rss_pending_kib,
        f.pending_entries,
    )
}
