//! Which server served a read-split run's reads, and how long reads and
//! writes took.
//!
//! The readmix scenario's read statement ([`READ_PATTERN`]) is counted by
//! pg_stat_statements on the benchmark cluster (the primary) and on its
//! streaming replica, both reset before every run: each server counts the
//! executions it ran itself, whoever sent them, so the two counts say where
//! the reads went. The replica inherits pg_stat_statements (preloaded, and
//! `track = all` set by [`crate::writes::Tracking`] before it was cloned) and
//! the extension (created on the primary, replayed). These counters live in
//! shared memory and are updated when each statement ends (before its reply
//! is sent), so they are complete when pgbench exits; the cumulative
//! statistics views (`pg_stat_database.xact_commit`, `tup_returned`) are not
//! (an idle pooled backend may report up to 10 s later, see
//! [`crate::writes`]), and would count the proxies' own health checks too.
//!
//! Latencies per statement kind come from pgbench's per-transaction log:
//! reads and writes are separate scripts (`-f read.sql@90 -f
//! write.sql@10`), and the log records each transaction's script.

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::pgbench::Outcome;
use crate::stack::{Stack, DB};

/// The read statement of the readmix scripts as pg_stat_statements shows it
/// (constants and parameters become `$1` alike), as a case-insensitive
/// regular expression.
pub const READ_PATTERN: &str = r"^\s*select\s+abalance\s+from\s+pgbench_accounts\s+where\s+aid\s*=";

/// Where the reads of one run went, and per-kind latencies.
#[derive(Debug, Clone, Serialize)]
pub struct Reads {
    /// Read transactions in pgbench's log (script 0, one read each).
    pub client_reads: u64,
    /// Write transactions in pgbench's log (script 1, one UPDATE each).
    pub client_writes: u64,
    /// Executions of the read statement counted on the primary.
    pub reads_on_primary: u64,
    /// Executions of the read statement counted on the replica (0 without one).
    pub reads_on_replica: u64,
    /// `reads_on_replica / (reads_on_primary + reads_on_replica)`.
    pub replica_share: Option<f64>,
    /// Median latency of the read transactions.
    pub read_p50_ms: Option<f64>,
    /// 99th percentile latency of the read transactions.
    pub read_p99_ms: Option<f64>,
    /// Median latency of the write transactions.
    pub write_p50_ms: Option<f64>,
    /// 99th percentile latency of the write transactions.
    pub write_p99_ms: Option<f64>,
}

/// Resets the statement counters on the primary and, if one is running, the
/// replica.
pub fn before_run(stack: &Stack) -> Result<()> {
    const RESET: &str = "SELECT pg_stat_statements_reset()";
    stack
        .pg
        .psql(DB, RESET)
        .context("resetting pg_stat_statements on the primary")?;
    if let Some(rs) = &*stack.read_split.borrow() {
        rs.replica
            .psql(DB, RESET)
            .context("resetting pg_stat_statements on the replica")?;
    }
    Ok(())
}

/// Counts the run's reads on each server and takes the per-script
/// latencies from `outcome`.
pub fn after_run(stack: &Stack, outcome: &Outcome) -> Result<Reads> {
    let reads_on_primary = count(&stack.pg).context("counting reads on the primary")?;
    let reads_on_replica = match &*stack.read_split.borrow() {
        Some(rs) => count(&rs.replica).context("counting reads on the replica")?,
        None => 0,
    };
    let script = |i: u32| {
        outcome
            .stats
            .as_ref()
            .and_then(|s| s.scripts.iter().find(|sc| sc.script == i))
    };
    let (read, write) = (script(0), script(1));
    let served = reads_on_primary + reads_on_replica;
    Ok(Reads {
        client_reads: read.map_or(0, |s| s.transactions),
        client_writes: write.map_or(0, |s| s.transactions),
        reads_on_primary,
        reads_on_replica,
        replica_share: (served > 0).then(|| reads_on_replica as f64 / served as f64),
        read_p50_ms: read.and_then(|s| s.latency_p50_ms),
        read_p99_ms: read.and_then(|s| s.latency_p99_ms),
        write_p50_ms: write.and_then(|s| s.latency_p50_ms),
        write_p99_ms: write.and_then(|s| s.latency_p99_ms),
    })
}

/// Executions of the read statement in [`DB`] counted on `server`.
pub fn count(server: &pgtest::Cluster) -> Result<u64> {
    let sql = format!(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements \
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '{DB}') \
           AND query ~* '{READ_PATTERN}'"
    );
    let out = server.psql(DB, &sql)?;
    match out.trim().parse::<u64>() {
        Ok(n) => Ok(n),
        Err(_) => bail!("unexpected pg_stat_statements count {out:?}"),
    }
}
