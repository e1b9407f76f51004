//! `bench`: pgcoalesce's benchmark against direct Postgres and PgBouncer.
//!
//! `cargo run --release -p bench -- all [--quick] [--out DIR]` starts its own
//! Postgres, PgBouncer and pgcoalesce, runs every scenario against all
//! three (pgcoalesce in both coalescing ack modes where upserts are
//! measured; the readmix scenario adds a streaming replica and pgcoalesce
//! processes that split reads to it), and writes a table (stdout),
//! `results.json`, `chart.svg` and, with the scaling scenario, `scaling.svg`.
//! This file owns the command line and the order of the whole run.

mod chart;
mod coalescing;
mod flusher;
mod linechart;
mod pgbench;
mod readmix;
mod reads;
mod report;
mod scenarios;
mod stack;
mod sys;
mod targets;
mod transactions;
mod writes;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::json;

use crate::scenarios::{Profile, ScenarioReport, Target};
use crate::stack::Stack;

/// pgcoalesce's benchmark: the same workloads directly against Postgres,
/// through PgBouncer and through pgcoalesce, in one run.
#[derive(Parser, Debug)]
#[command(name = "bench")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Start Postgres, PgBouncer and pgcoalesce, run the scenarios, write
    /// the table, results.json and chart.svg.
    All(AllArgs),
    /// List the scenarios.
    List,
}

#[derive(clap::Args, Debug)]
struct AllArgs {
    /// Smoke check for CI: -T 2, 1 round, select at -c 4 scale 1, hot at
    /// 16 clients, scaling at 1 and 16, tx at 16 and readmix at 64 clients;
    /// a failed direct or pgcoalesce run makes the command fail.
    #[arg(long)]
    quick: bool,
    /// Output directory (default: bench-results/ at the workspace root).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Do not run `cargo build --release -p pgcoalesce` first.
    #[arg(long)]
    no_build: bool,
    /// Run only this scenario (repeatable; see `bench list`).
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// Use this pgcoalesce binary instead of target/release/pgcoalesce
    /// (implies --no-build).
    #[arg(long, value_name = "PATH")]
    pgcoalesce_bin: Option<PathBuf>,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::List => {
            for s in scenarios::all() {
                println!("{:<10} {}", s.name, s.summary);
            }
            Ok(())
        }
        Cmd::All(args) => run_all(args),
    }
}

/// The `all` command.
fn run_all(args: AllArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let profile = Profile::new(args.quick);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| stack::workspace_root().join("bench-results"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let selected = select_scenarios(&args.scenarios)?;

    let pgcoalesce_bin = match &args.pgcoalesce_bin {
        Some(p) => p.clone(),
        None => {
            if !args.no_build {
                stack::build_pgcoalesce()?;
            }
            stack::pgcoalesce_bin()?
        }
    };
    let pgbouncer_bin = stack::ensure_pgbouncer().map_err(|e| format!("{e:#}"));
    if let Err(e) = &pgbouncer_bin {
        eprintln!("bench: PgBouncer runs will be recorded as failed: {e}");
    }

    eprintln!("bench: starting Postgres ({})", pgtest::bin_dir().display());
    let pg = stack::start_postgres()?;
    let pgbouncer = pgbouncer_bin
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|bin| {
            stack::start_pgbouncer(bin, &pg, &out.join("pgbouncer.log"))
                .map_err(|e| format!("{e:#}"))
        });
    if let Err(e) = &pgbouncer {
        eprintln!("bench: PgBouncer did not start: {e}");
    }
    let pgcoalesce = stack::start_pgcoalesce(
        &pgcoalesce_bin,
        &pg,
        None,
        &out.join("pgcoalesce.log"),
        false,
    )?;
    let stack = Stack {
        read_split: None.into(),
        pgcoalesce: pgcoalesce.into(),
        pgbouncer,
        pg,
        pgcoalesce_bin: pgcoalesce_bin.clone(),
    };
    eprintln!(
        "bench: postgres :{}  pgbouncer :{}  pgcoalesce :{}",
        stack.pg.port(),
        stack
            .pgbouncer
            .as_ref()
            .map_or("-".to_owned(), |p| p.port.to_string()),
        stack.pgcoalesce.borrow().port
    );

    let mut reports = Vec::new();
    let mut scenario_errors = Vec::new();
    let mut scenario_seconds = serde_json::Map::new();
    for s in &selected {
        eprintln!("bench: scenario {}: {}", s.name, s.summary);
        let scenario_started = std::time::Instant::now();
        match (s.run)(&stack, &profile) {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("bench: scenario {} failed: {e:#}", s.name);
                scenario_errors.push(json!({"scenario": s.name, "error": format!("{e:#}")}));
            }
        }
        let seconds = scenario_started.elapsed().as_secs_f64();
        eprintln!("bench: scenario {} took {seconds:.0} s", s.name);
        scenario_seconds.insert(s.name.to_owned(), json!(seconds));
    }

    for r in &reports {
        println!("\n{}", report::table(r));
    }

    let machine = report::Machine::detect();
    let pg_version = report::version_of(&pgtest::bin_dir().join("postgres"));
    let pgbouncer_version = pgbouncer_bin
        .as_ref()
        .ok()
        .and_then(|b| stack::pgbouncer_version(b));
    let (commit, dirty) = report::git_state(&stack::workspace_root());
    let date = report::utc_now();
    let results = json!({
        "command_line": std::env::args().collect::<Vec<_>>(),
        "date_utc": date,
        "quick": args.quick,
        "profile": profile,
        "machine": machine,
        "workspace": {"git_commit": commit, "git_dirty": dirty},
        "postgres": {
            "version": pg_version,
            "pgbench_version": report::version_of(&pgbench::pgbench_bin()),
            "settings": stack::PG_SETTINGS.iter().map(|(k, v)| (k.to_string(), json!(v)))
                .collect::<serde_json::Map<_, _>>(),
            "settings_note": "on top of pgtest's defaults (wal_level=replica, listen 127.0.0.1); TCP auth trust; pgbench connects over TCP to every target, both proxies reach Postgres over its Unix socket",
        },
        "pgbouncer": {
            "version": pgbouncer_version,
            "command": stack.pgbouncer.as_ref().ok().map(|p| p.command.clone()),
            "settings": stack::pgbouncer_settings().into_iter().map(|(k, v)| (k.to_string(), json!(v)))
                .collect::<serde_json::Map<_, _>>(),
            "error": stack.pgbouncer.as_ref().err(),
        },
        "pgcoalesce": {
            "binary": pgcoalesce_bin,
            "command": stack.pgcoalesce.borrow().command,
            "pool_size": stack::POOL_SIZE,
            "config": stack::pgcoalesce_config(&stack.pg, None, stack.pgcoalesce.borrow().port),
            "read_split": stack::READ_SPLIT.iter().map(|(k, v)| (k.to_string(), json!(v)))
                .collect::<serde_json::Map<_, _>>(),
            "restarts": "a fresh pgcoalesce process (same config, new port) serves each pgcoalesce run of the coalescing scenarios",
        },
        "notes": [
            "tps excludes initial connection time (pgbench's figure).",
            "p50/p99: nearest-rank percentiles of per-transaction latencies from pgbench -l logs.",
            "proxy CPU: utime+stime of the proxy process (all threads) from /proc/<pid>/stat, sampled just before pgbench starts and after it exits (so it includes connection setup), divided by transactions processed.",
            "every run (all targets) writes pgbench -l per-transaction logs, which costs pgbench some CPU alike for all.",
            "ratios compare tps with the direct and PgBouncer runs of the same group.",
            "targets run interleaved within each group (direct, pgbouncer, pgcoalesce[, pgcoalesce_immediate]) so drift hits all alike.",
            "coalescing scenarios (hot, wide, scaling): pgcoalesce is reached as database bench (rule hot_flushed, ack flushed) and as bench_immediate (rule hot_immediate, ack immediate), both upstream database bench; each client transaction is one upsert, so tps = acknowledged upserts per second and cpu us/tx = proxy CPU per acknowledged upsert.",
            "coalescing scenarios: entity.entity_metadata is truncated (and entities vacuumed) before every run; pg_stat_statements (track = all while they run, reset before every run) counts top-level calls of entity.update_metadata_optimized / update_metadata_batch (statements) and rows inserted or updated by the INSERT inside them (rows); after pgbench exits the counters are read until they stop changing, so immediate-mode writes flushed after the last ack are included.",
            "rss: the proxy's VmRSS from /proc/<pid>/status, sampled every ~100 ms while pgbench runs (peak) and right after it exits.",
            "skipped runs: PgBouncer in -M prepared (1.18 keeps no protocol-level prepared statements in transaction mode) and direct above 256 clients (max_connections 400).",
            "tx: each pgbench transaction is one request of the reference application: BEGIN; SELECT auth.set_agent_context_from_agent_id(<agent uuid>); SELECT entity.update_metadata_optimized('avatar:<n>', 'pose.<1..6>', <v>, 'public.NORMAL'); COMMIT. pgbench client n acts as agent n, a non-admin agent with insert/update rights in public.NORMAL (so the upsert checks its rights), writing its own avatar entity; entity_metadata is truncated and entities and agent_profiles vacuumed before every run. pgcoalesce passes upserts inside transaction blocks through (not coalesced).",
            "readmix: reads (SELECT abalance FROM pgbench_accounts WHERE aid = ?) and writes (UPDATE pgbench_accounts SET abalance = abalance + ? WHERE aid = ?) are separate pgbench scripts weighted 90:10 (-f read.sql@90 -f write.sql@10); the -l log records each transaction's script, which gives read and write latencies (read_p50_ms, read_p99_ms, write_p99_ms) apart.",
            "readmix: where reads were served is counted by pg_stat_statements (track = all during the scenario, reset before every run) on the primary and on the replica: calls of the read statement in database bench. Each server counts only the statements it executed, when they end (before the reply is sent), so the counts are complete when pgbench exits and leave out the proxies' health checks; replica_share = reads_on_replica / (reads_on_primary + reads_on_replica), and reads_on_primary + reads_on_replica equals the read transactions in pgbench's log (client_reads). pg_stat_database (xact_commit, tup_returned) was not used: a pooled backend that goes idle may report up to 10 s late and it counts every statement.",
            "readmix: the replica is a pg_basebackup -R -X stream clone of the benchmark cluster (same settings, same machine and CPUs), started for this scenario only. pgcoalesce + replica and pgcoalesce + replica, RYW off are two more pgcoalesce processes with pgcoalesce's config plus replicas: [the replica] on database bench and read_split: (pgcoalesce.read_split below; the second adds read_your_writes_window: 0). With the defaults a client's reads stay on the primary until the replica has replayed past its last write, judged from the replica's replay position sampled once per health_check_interval (1 s), so a client that writes more often than that reads from the primary. Each proxy pools up to 20 server connections per server (40 with the replica); read splitting applies in transaction pool mode only. ratio_vs_primary_only = tps / tps of pgcoalesce (primary only) in the same group.",
        ],
        "scenario_errors": scenario_errors,
        "scenarios": reports,
        "scenario_seconds": scenario_seconds,
        "elapsed_seconds": started.elapsed().as_secs_f64(),
    });
    let json_path = out.join("results.json");
    report::write_json(&json_path, &results)?;

    let subtitle = [
        format!(
            "{date} · {} CPUs{} · {} MiB RAM · PostgreSQL {} · PgBouncer {}",
            machine.nproc,
            machine
                .cpu_model
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default(),
            machine.memory_mib.unwrap_or(0),
            version_number(pg_version.as_deref()),
            version_number(pgbouncer_version.as_deref()),
        ),
        format!(
            "pool size {} (both proxies, transaction mode) · {}",
            stack::POOL_SIZE,
            stack::PG_SETTINGS
                .iter()
                // pg_stat_statements only counts for the coalescing scenarios.
                .filter(
                    |(k, _)| !k.contains("pg_stat_statements") && *k != "shared_preload_libraries"
                )
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
        ),
    ];
    let svg_path = out.join("chart.svg");
    std::fs::write(&svg_path, chart::render(&reports, &subtitle))
        .with_context(|| format!("writing {}", svg_path.display()))?;
    let mut charts = vec![svg_path.display().to_string()];
    for r in reports.iter().filter(|r| r.line_chart) {
        let path = out.join(format!("{}.svg", r.name));
        std::fs::write(&path, linechart::render(r, &subtitle))
            .with_context(|| format!("writing {}", path.display()))?;
        charts.push(path.display().to_string());
    }

    drop(stack);
    let replica_logs = if reports.iter().any(|r| r.name == "readmix") {
        ", pgcoalesce-replica.log, pgcoalesce-replica-ryw-off.log"
    } else {
        ""
    };
    println!(
        "\nresults: {}\ncharts:  {}\nlogs:    {}/pgcoalesce.log, pgbouncer.log{replica_logs}\n({:.0} s)",
        json_path.display(),
        charts.join(", "),
        out.display(),
        started.elapsed().as_secs_f64()
    );
    check_outcome(&args, &reports, scenario_errors.len())
}

/// The version number in a `--version` line (`postgres (PostgreSQL) 15.18
/// (Debian ...)` -> `15.18`): the first word starting with a digit.
fn version_number(version: Option<&str>) -> &str {
    version
        .and_then(|v| {
            v.split_whitespace()
                .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
        })
        .unwrap_or("?")
}

/// The scenarios named by `--scenario` (all when none are named).
fn select_scenarios(names: &[String]) -> Result<Vec<scenarios::Scenario>> {
    let all = scenarios::all();
    let known: Vec<&str> = all.iter().map(|s| s.name).collect();
    if let Some(bad) = names.iter().find(|n| !known.contains(&n.as_str())) {
        bail!("unknown scenario {bad:?}; known: {}", known.join(", "));
    }
    Ok(all
        .into_iter()
        .filter(|s| names.is_empty() || names.iter().any(|n| n == s.name))
        .collect())
}

/// Exit status policy: a scenario that could not run is always an error;
/// with `--quick`, so is any failed direct or pgcoalesce run.
fn check_outcome(args: &AllArgs, reports: &[ScenarioReport], scenario_errors: usize) -> Result<()> {
    if scenario_errors > 0 {
        bail!("{scenario_errors} scenario(s) could not run (see above)");
    }
    let failed: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            r.groups.iter().flat_map(move |g| {
                g.runs
                    .iter()
                    .filter(|run| {
                        !run.outcome.ok && run.skipped.is_none() && run.target != Target::Pgbouncer
                    })
                    .map(move |run| format!("{}/{}/{}", r.name, g.label, run.target.label()))
            })
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else if args.quick {
        bail!("quick mode: failed runs: {}", failed.join(", "))
    } else {
        eprintln!("bench: warning: failed runs: {}", failed.join(", "));
        Ok(())
    }
}
