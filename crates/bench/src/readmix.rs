//! The `readmix` scenario: a read-heavy mix (90 % point reads, 10 % point
//! updates of pgbench's accounts) at 64 clients, through pgcoalesce with
//! one streaming replica to split reads to, next to pgcoalesce with the
//! primary only and Postgres directly, interleaved.
//!
//! Two pgcoalesce processes list the replica ([`REPLICA_PROXIES`], config
//! from [`stack::pgcoalesce_config`]): one with the read-splitting defaults,
//! where read-your-writes keeps the reads of a client that wrote in the
//! last second or so on the primary (in this mix every client writes every
//! ten transactions or so, so few reads qualify), and one with
//! read-your-writes off, where every read may go to the replica. They and
//! the replica exist only while this scenario runs ([`ReadSplitGuard`]), so
//! the other scenarios and their figures are unaffected. Reads and writes
//! are separate pgbench scripts weighted 90:10, so the per-transaction log
//! gives read and write latencies apart; [`crate::reads`] counts which
//! server executed the reads.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::pgbench;
use crate::reads;
use crate::scenarios::{
    pgbench_args, run_group, GroupSpec, Measure, Profile, ScenarioReport, Target,
};
use crate::stack::{self, ReadSplitStack, ReadYourWrites, Stack, DB};
use crate::sys;
use crate::writes::Tracking;

/// pgbench query modes, one group each: simple (the proxy parses every
/// statement to route it: each has other literals) and prepared (named
/// statements, as the reference application's drivers use: routed once
/// per statement at Parse).
const MODES: [&str; 2] = ["simple", "prepared"];
/// Share of transactions that read, in percent (pgbench script weights).
const READ_PERCENT: u32 = 90;
/// How long the new pgcoalesce may take to send a first read to the replica
/// (its monitor must have checked the replica once: one health check
/// interval, plus the time to connect).
const SERVING_TIMEOUT: Duration = Duration::from_secs(20);

/// The read script: one account balance by primary key.
fn read_script(scale: u32) -> String {
    format!(
        "\\set aid random(1, {})\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n",
        100_000 * scale
    )
}

/// The write script: one account balance update by primary key.
fn write_script(scale: u32) -> String {
    format!(
        "\\set aid random(1, {})\n\\set delta random(-5000, 5000)\n\
         UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;\n",
        100_000 * scale
    )
}

/// While alive, [`Stack::read_split`] holds a replica of the benchmark
/// cluster and the pgcoalesce processes that split reads to it; dropping
/// the guard stops them (the proxies first).
struct ReadSplitGuard<'a> {
    stack: &'a Stack,
}

impl Drop for ReadSplitGuard<'_> {
    fn drop(&mut self) {
        drop(self.stack.read_split.borrow_mut().take());
    }
}

/// The pgcoalesce processes with the replica: their target, read-your-writes
/// setting and log file (next to pgcoalesce's).
const REPLICA_PROXIES: [(Target, ReadYourWrites, &str); 2] = [
    (
        Target::PgcoalesceReplica,
        ReadYourWrites::UntilReplayed,
        "pgcoalesce-replica.log",
    ),
    (
        Target::PgcoalesceReplicaRywOff,
        ReadYourWrites::Off,
        "pgcoalesce-replica-ryw-off.log",
    ),
];

/// Clones the benchmark cluster into a streaming replica, starts the
/// [`REPLICA_PROXIES`] with it and waits until a read through each reaches
/// the replica.
fn start_read_split(stack: &Stack) -> Result<ReadSplitGuard<'_>> {
    eprintln!("bench: readmix: starting a streaming replica (pg_basebackup)");
    let replica = stack
        .pg
        .start_replica()
        .context("starting a streaming replica of the benchmark cluster")?;
    let track = replica
        .psql(DB, "SHOW pg_stat_statements.track")
        .context("reading pg_stat_statements.track on the replica")?;
    if track != "all" && track != "top" {
        bail!("the replica's pg_stat_statements.track is {track:?}: it would count no reads");
    }
    let mut proxies = Vec::new();
    for (target, ryw, log) in REPLICA_PROXIES {
        let log = stack.pgcoalesce.borrow().log.with_file_name(log);
        let proxy = stack::start_pgcoalesce(
            &stack.pgcoalesce_bin,
            &stack.pg,
            Some((&replica, ryw)),
            &log,
            false,
        )
        .with_context(|| format!("starting {}", target.title(false)))?;
        eprintln!("bench: readmix: {} :{}", target.title(false), proxy.port);
        proxies.push((target, proxy));
    }
    eprintln!("bench: readmix: replica :{}", replica.port());
    *stack.read_split.borrow_mut() = Some(ReadSplitStack { proxies, replica });
    let guard = ReadSplitGuard { stack };
    for (target, _, _) in REPLICA_PROXIES {
        wait_serving(stack, target)?;
    }
    Ok(guard)
}

/// Sends reads through the pgcoalesce of `target` (each from a new client
/// that never wrote) until the replica has executed one.
fn wait_serving(stack: &Stack, target: Target) -> Result<()> {
    let binding = stack.read_split.borrow();
    let rs = binding.as_ref().context("no read-split stack")?;
    let proxy = rs.proxy(target).context("no such pgcoalesce")?;
    let psql = pgtest::bin_dir().join("psql");
    let deadline = Instant::now() + SERVING_TIMEOUT;
    loop {
        reads::before_run(stack)?;
        let out = sys::capture(
            Command::new(&psql)
                .args(["-X", "-A", "-t", "-w", "-h", "127.0.0.1", "-U", "postgres"])
                .args(["-p", &proxy.port.to_string(), "-d", DB])
                .args(["-c", "SELECT abalance FROM pgbench_accounts WHERE aid = 1"])
                .env("PGCONNECT_TIMEOUT", "5")
                .env_remove("PGPASSWORD")
                .env_remove("PGOPTIONS"),
            "psql",
        )?;
        if !out.status.success() {
            bail!(
                "a read through {} failed: {}",
                target.title(false),
                sys::tail(&String::from_utf8_lossy(&out.stderr), 3)
            );
        }
        if reads::count(&rs.replica)? > 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} sent no read to the replica within {SERVING_TIMEOUT:?}; log {}:\n{}",
                target.title(false),
                proxy.log.display(),
                sys::file_tail(&proxy.log, 15)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Creates pgbench's tables at the profile's scale unless they are there
/// (the select scenario makes them).
fn ensure_pgbench_tables(stack: &Stack, scale: u32) -> Result<()> {
    let present = stack
        .pg
        .psql(DB, "SELECT to_regclass('pgbench_accounts') IS NOT NULL")
        .context("looking for pgbench's tables")?;
    let rows = if present == "t" {
        stack
            .pg
            .psql(DB, "SELECT count(*) FROM pgbench_accounts")
            .context("counting pgbench's accounts")?
    } else {
        String::new()
    };
    if rows != (100_000 * u64::from(scale)).to_string() {
        eprintln!("bench: readmix: pgbench -i -s {scale}");
        pgbench::initialize(stack.pg.port(), DB, scale)?;
    }
    Ok(())
}

/// `readmix`: the mix in `modes`, each against direct, pgcoalesce (primary
/// only) and pgcoalesce with a replica.
pub fn readmix(stack: &Stack, profile: &Profile) -> Result<ScenarioReport> {
    let scale = profile.scale;
    ensure_pgbench_tables(stack, scale)?;
    // Before the replica is cloned, so that it inherits track = all.
    let _tracking = Tracking::start(&stack.pg)?;
    let _read_split = start_read_split(stack)?;
    let clients = profile.readmix_clients;
    let seconds = profile.mixed_duration_s;
    let mut groups = Vec::new();
    for mode in MODES {
        let mut args = pgbench_args(profile, mode, clients, seconds);
        args.extend([
            "-f".into(),
            format!("read.sql@{READ_PERCENT}"),
            "-f".into(),
            format!("write.sql@{}", 100 - READ_PERCENT),
        ]);
        let spec = GroupSpec {
            label: format!("{mode}, {clients} clients"),
            args,
            clients,
            files: vec![
                ("read.sql".into(), read_script(scale)),
                ("write.sql".into(), write_script(scale)),
            ],
            targets: Target::READ_SPLIT.to_vec(),
            skip: Vec::new(),
            rounds: profile.readmix_rounds,
            duration_s: seconds,
            measure: Measure::Reads,
            before_run_sql: None,
        };
        groups.push(run_group(stack, &spec)?);
    }
    Ok(ScenarioReport {
        name: "readmix".into(),
        title: "read-heavy mix with a streaming replica".into(),
        description: format!(
            "{READ_PERCENT}% SELECT abalance FROM pgbench_accounts WHERE aid = ?, {}% UPDATE \
             pgbench_accounts SET abalance = abalance + ? WHERE aid = ?, scale {scale} \
             (pgbench -n -M <mode> -c {clients} -j {} -T {seconds} -l -f read.sql@{READ_PERCENT} \
             -f write.sql@{}), median of {} round(s); one streaming replica on the same machine; \
             read_split defaults (read-your-writes: a client's reads stay on the primary until \
             the replica has replayed its last write), and with read_your_writes_window 0",
            100 - READ_PERCENT,
            profile.threads.min(clients),
            100 - READ_PERCENT,
            profile.readmix_rounds
        ),
        group_axis: "pgbench query mode (-M) and client connections (-c)".into(),
        coalescing: false,
        line_chart: false,
        flusher: None,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reads::READ_PATTERN;

    #[test]
    fn scripts() {
        let read = read_script(10);
        assert!(read.starts_with("\\set aid random(1, 1000000)\n"));
        assert!(read.contains("SELECT abalance FROM pgbench_accounts WHERE aid = :aid;"));
        assert!(READ_PATTERN.contains(r"pgbench_accounts\s+where\s+aid"));
        assert!(write_script(1).contains("UPDATE pgbench_accounts SET abalance"));
    }
}
