//! What a coalescing run made Postgres do: the upsert statements that
//! reached it and the rows they wrote, read from pg_stat_statements.
//!
//! pg_stat_statements is preloaded by the benchmark cluster with
//! `track = none`; a coalescing scenario turns it to `all` for its duration
//! ([`Tracking`]), so nested statements (the INSERT inside the plpgsql
//! upsert functions) are counted too. Its counters live in shared memory
//! and are updated when each statement ends, unlike the cumulative
//! statistics views (`pg_stat_user_tables`, `pg_stat_database`), which a
//! pooled server connection that goes idle may only report up to 10 s
//! later (PostgreSQL 15's `PGSTAT_IDLE_INTERVAL`): they could not tell one
//! run from the next. Before each run the table is emptied (every target
//! starts from the same state) and the counters are reset.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::pgbench::Outcome;
use crate::stack::DB;
use crate::sys::ProcStat;

/// How long to wait for writes acknowledged before they were flushed
/// (`ack: immediate`) to reach Postgres after pgbench exits.
/// A full `max_pending` map (100,000 keys) drains in well under this.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Readings this far apart must agree before a run counts as settled.
const SETTLE_POLL: Duration = Duration::from_millis(250);
/// CPU seconds a proxy may use within one [`SETTLE_POLL`] and count as
/// idle (8 %; an idle proxy uses none).
const PROXY_IDLE_CPU: f64 = 0.02;

/// Counters of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Writes {
    /// Upserts the clients had acknowledged (pgbench's transactions: one
    /// upsert each).
    pub client_upserts: u64,
    /// Top-level `entity.update_metadata_optimized` calls Postgres ran
    /// (each client call directly; pgcoalesce's row-by-row retries).
    pub single_calls: u64,
    /// Top-level `entity.update_metadata_batch` calls (pgcoalesce's flushes).
    pub batch_calls: u64,
    /// `single_calls + batch_calls`.
    pub upsert_statements: u64,
    /// Rows the INSERT ... ON CONFLICT inside either function inserted or
    /// updated (an unchanged value is not rewritten, so not counted).
    pub rows_written: u64,
    /// Rows in entity.entity_metadata after the run (distinct keys written).
    pub rows_in_table: u64,
    /// `upsert_statements * 1000 / client_upserts`.
    pub statements_per_1k_upserts: Option<f64>,
    /// `rows_written` per second of the run: pgbench's duration plus
    /// `drain_ms`.
    pub rows_per_second: Option<f64>,
    /// Milliseconds after pgbench exited until the counters reached their
    /// final values (within one 250 ms poll) and the proxy fell idle: how
    /// long acknowledged but unflushed writes (`ack: immediate`) took to
    /// reach Postgres.
    pub drain_ms: u64,
}

/// Turns statement tracking on for a coalescing scenario; off again on drop.
pub struct Tracking<'a> {
    pg: &'a pgtest::Cluster,
}

impl<'a> Tracking<'a> {
    /// `CREATE EXTENSION pg_stat_statements` in [`DB`], `track = all`.
    pub fn start(pg: &'a pgtest::Cluster) -> Result<Tracking<'a>> {
        pg.psql(DB, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .context("creating extension pg_stat_statements")?;
        set_track(pg, Some("all"))?;
        Ok(Tracking { pg })
    }
}

impl Drop for Tracking<'_> {
    fn drop(&mut self) {
        if let Err(e) = set_track(self.pg, None) {
            eprintln!("bench: could not turn pg_stat_statements off again: {e:#}");
        }
    }
}

/// `ALTER SYSTEM SET pg_stat_statements.track` (or `RESET`) and reload. A
/// backend applies a reload before the next statement it reads, so the
/// proxies' idle pooled connections track from their next statement on.
fn set_track(pg: &pgtest::Cluster, value: Option<&str>) -> Result<()> {
    let alter = match value {
        Some(v) => format!("ALTER SYSTEM SET pg_stat_statements.track = '{v}'"),
        None => "ALTER SYSTEM RESET pg_stat_statements.track".to_owned(),
    };
    pg.psql("postgres", &format!("{alter};\nSELECT pg_reload_conf();"))
        .with_context(|| format!("{alter}; pg_reload_conf()"))?;
    // The postmaster signals the backends asynchronously.
    std::thread::sleep(Duration::from_millis(300));
    Ok(())
}

/// Empties the metadata table, vacuums what the triggers update (the
/// previous run left dead rows) and resets the statement counters.
pub fn before_run(pg: &pgtest::Cluster) -> Result<()> {
    pg.psql(
        DB,
        "TRUNCATE entity.entity_metadata;\n\
         VACUUM (ANALYZE) entity.entities, auth.agent_profiles;\n\
         SELECT pg_stat_statements_reset();",
    )
    .context("resetting entity_metadata and pg_stat_statements before a run")
    .map(drop)
}

/// One reading of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reading {
    single_calls: u64,
    batch_calls: u64,
    rows_written: u64,
    rows_in_table: u64,
    /// Other client backends of [`DB`] not idle (running a statement or
    /// inside a transaction): a flush may be under way. pg_stat_statements
    /// counts a statement only when it ends, so equal counters alone do not
    /// prove that a long flush is not still running.
    busy_backends: u64,
}

/// Reads the counters of [`DB`].
fn read(pg: &pgtest::Cluster) -> Result<Reading> {
    let sql = format!(
        "SELECT coalesce(sum(calls) FILTER (WHERE toplevel \
                  AND query ~* 'entity\\.update_metadata_optimized\\s*\\('), 0),\n\
                coalesce(sum(calls) FILTER (WHERE toplevel \
                  AND query ~* 'entity\\.update_metadata_batch\\s*\\('), 0),\n\
                coalesce(sum(rows) FILTER (WHERE NOT toplevel \
                  AND query ~* '^\\s*insert\\s+into\\s+entity\\.entity_metadata\\s'), 0),\n\
                (SELECT count(*) FROM entity.entity_metadata),\n\
                (SELECT count(*) FROM pg_stat_activity WHERE datname = '{DB}' \
                   AND backend_type = 'client backend' AND pid <> pg_backend_pid() \
                   AND state IS DISTINCT FROM 'idle')\n\
         FROM pg_stat_statements\n\
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '{DB}')"
    );
    let out = pg.psql(DB, &sql).context("reading pg_stat_statements")?;
    let fields: Vec<u64> = out
        .trim()
        .split('|')
        .map(|f| f.trim().parse::<u64>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("parsing pg_stat_statements counters {out:?}"))?;
    match fields[..] {
        [single_calls, batch_calls, rows_written, rows_in_table, busy_backends] => Ok(Reading {
            single_calls,
            batch_calls,
            rows_written,
            rows_in_table,
            busy_backends,
        }),
        _ => anyhow::bail!("unexpected pg_stat_statements reading {out:?}"),
    }
}

/// Waits until the run's writes have all reached Postgres (pending
/// `immediate` writes flushed), then computes the run's figures. Settled
/// means: two readings [`SETTLE_POLL`] apart agree, no other backend of
/// [`DB`] is busy, and the proxy (`proxy_pid`) used almost no CPU in
/// between. The last condition matters: a proxy still busy after its
/// clients left (closing sessions, say) may not have started its next
/// flush yet, and its writes would then land in the next run.
pub fn after_run(
    pg: &pgtest::Cluster,
    outcome: &Outcome,
    proxy_pid: Option<u32>,
) -> Result<Writes> {
    let started = Instant::now();
    let cpu = || proxy_pid.and_then(ProcStat::read).map(|s| s.cpu_seconds());
    let mut last = read(pg)?;
    let mut last_cpu = cpu();
    // When the final values were first seen: the backlog was drained by then.
    let mut drained = started.elapsed();
    loop {
        std::thread::sleep(SETTLE_POLL);
        let now = read(pg)?;
        let now_cpu = cpu();
        let proxy_idle = match (last_cpu, now_cpu) {
            (Some(a), Some(b)) => b - a <= PROXY_IDLE_CPU,
            _ => true,
        };
        let settled = now == last && now.busy_backends == 0 && proxy_idle;
        if settled || started.elapsed() > SETTLE_TIMEOUT {
            if now != last {
                drained = started.elapsed();
            }
            last = now;
            break;
        }
        last = now;
        last_cpu = now_cpu;
        drained = started.elapsed();
    }
    let Reading {
        single_calls,
        batch_calls,
        rows_written,
        rows_in_table,
        ..
    } = last;
    let (client_upserts, seconds) = match &outcome.stats {
        Some(s) if s.tps > 0.0 => (s.transactions, Some(s.transactions as f64 / s.tps)),
        Some(s) => (s.transactions, None),
        None => (0, None),
    };
    let upsert_statements = single_calls + batch_calls;
    Ok(Writes {
        client_upserts,
        single_calls,
        batch_calls,
        upsert_statements,
        rows_written,
        rows_in_table,
        statements_per_1k_upserts: (client_upserts > 0)
            .then(|| upsert_statements as f64 * 1000.0 / client_upserts as f64),
        rows_per_second: seconds
            .map(|s| s + drained.as_secs_f64())
            .filter(|s| *s > 0.0)
            .map(|s| rows_written as f64 / s),
        drain_ms: drained.as_millis() as u64,
    })
}
