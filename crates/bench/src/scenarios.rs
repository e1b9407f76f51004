//! The benchmark's scenarios and the shape of their results.
//!
//! Owns the scenario list ([`all`]), the run profile (full or `--quick`),
//! the targets, and running one workload against each target in
//! interleaved order (measuring what reached Postgres, or which server
//! served the reads, when asked). A scenario is a named function that
//! prepares what it needs on the cluster and returns groups of runs (one
//! group per variant, e.g. per pgbench query mode); new scenarios are new
//! entries in [`all`].

use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::coalescing;
use crate::pgbench::{self, Invocation, Outcome};
use crate::readmix;
use crate::reads::{self, Reads};
use crate::stack::{Stack, DB, DB_IMMEDIATE};
use crate::transactions;
use crate::writes::{self, Writes};

pub use crate::targets::Target;

/// Size of the runs: the full benchmark or the `--quick` smoke check.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Profile {
    /// `--quick`.
    pub quick: bool,
    /// pgbench `-T` of the select scenario.
    pub duration_s: u32,
    /// pgbench `-c` of the select scenario.
    pub clients: u32,
    /// pgbench `-j` (at most the client count).
    pub threads: u32,
    /// pgbench `-i -s`.
    pub scale: u32,
    /// Interleaved rounds per group of the select scenario; each target's
    /// median-tps round is reported (one noisy run on a shared 2-core
    /// machine decides nothing).
    pub rounds: usize,
    /// pgbench `-T` of the coalescing scenarios (hot, wide, scaling).
    pub write_duration_s: u32,
    /// Interleaved rounds per group of the coalescing scenarios (1 in the
    /// full run too, to keep `all` under 15 minutes: they have 40 runs).
    pub write_rounds: usize,
    /// Client counts of the hot scenario.
    pub hot_clients: &'static [u32],
    /// Client count of the wide scenario.
    pub wide_clients: u32,
    /// Client counts of the scaling scenario.
    pub scaling_clients: &'static [u32],
    /// pgbench `-T` of the tx and readmix scenarios.
    pub mixed_duration_s: u32,
    /// Interleaved rounds per group of the tx scenario (1 in the full run
    /// too, like the coalescing scenarios, to keep `all` short).
    pub tx_rounds: usize,
    /// Interleaved rounds per group of the readmix scenario (median-tps
    /// round reported: its point is a difference of a few percent).
    pub readmix_rounds: usize,
    /// Client count of the tx scenario.
    pub tx_clients: u32,
    /// Client count of the readmix scenario.
    pub readmix_clients: u32,
}

impl Profile {
    /// Full: select `-T 10 -c 16 -j 2`, scale 10, 3 rounds; coalescing
    /// `-T 10`, 1 round, hot at 16 and 256 clients, scaling at 1 to 1,024;
    /// tx (16 clients) `-T 10`, 1 round; readmix (64 clients) `-T 10`, 3
    /// rounds.
    /// Quick: everything `-T 2`, 1 round, select `-c 4` scale 1, hot at 16
    /// clients, scaling at 1 and 16, tx at 16 and readmix at 64 clients.
    pub fn new(quick: bool) -> Profile {
        if quick {
            Profile {
                quick,
                duration_s: 2,
                clients: 4,
                threads: 2,
                scale: 1,
                rounds: 1,
                write_duration_s: 2,
                write_rounds: 1,
                hot_clients: &[16],
                wide_clients: 16,
                scaling_clients: &[1, 16],
                mixed_duration_s: 2,
                tx_rounds: 1,
                readmix_rounds: 1,
                tx_clients: 16,
                readmix_clients: 64,
            }
        } else {
            Profile {
                quick,
                duration_s: 10,
                clients: 16,
                threads: 2,
                scale: 10,
                rounds: 3,
                write_duration_s: 10,
                write_rounds: 1,
                hot_clients: &[16, 256],
                wide_clients: 16,
                scaling_clients: &[1, 16, 64, 256, 1024],
                mixed_duration_s: 10,
                tx_rounds: 1,
                readmix_rounds: 3,
                tx_clients: 16,
                readmix_clients: 64,
            }
        }
    }

    /// Watchdog for one pgbench run of `seconds`: a minute more.
    pub fn timeout(seconds: u32) -> Duration {
        Duration::from_secs(u64::from(seconds) + 60)
    }
}

/// One run against one target.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// Where the clients connected.
    pub target: Target,
    /// Why this target was not run in this group (not a failure).
    pub skipped: Option<String>,
    /// pgbench's outcome (figures, proxy CPU and memory, error).
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Statements and rows that reached Postgres (coalescing scenarios).
    pub writes: Option<Writes>,
    /// Reads served by the primary and by the replica, and per-script
    /// latencies (readmix scenario).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reads: Option<Reads>,
    /// tps / the direct run's tps in the same group.
    pub ratio_vs_direct: Option<f64>,
    /// tps / the PgBouncer run's tps in the same group.
    pub ratio_vs_pgbouncer: Option<f64>,
    /// tps / the tps of pgcoalesce with the primary only in the same group
    /// (pgcoalesce with a replica only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_vs_primary_only: Option<f64>,
    /// tps of every round (the reported outcome is the median one).
    pub round_tps: Vec<f64>,
}

impl RunRecord {
    /// tps of a successful run.
    pub fn tps(&self) -> Option<f64> {
        self.outcome
            .ok
            .then(|| self.outcome.stats.as_ref().map(|s| s.tps))
            .flatten()
    }

    /// Peak resident memory of the proxy during a successful run, in MiB.
    pub fn rss_mib(&self) -> Option<f64> {
        let m = self.outcome.proxy_memory.as_ref()?;
        self.outcome.ok.then_some(m.rss_peak_kib as f64 / 1024.0)
    }
}

/// One variant of a scenario (e.g. one query mode), run against every target.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    /// Variant name, e.g. `simple`.
    pub label: String,
    /// pgbench `-c` of the group.
    pub clients: u32,
    /// The runs, in the group's target order.
    pub runs: Vec<RunRecord>,
}

/// Results of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// Short name (`--scenario` value).
    pub name: String,
    /// Human title.
    pub title: String,
    /// What the workload is and with which parameters.
    pub description: String,
    /// What distinguishes the groups (chart x axis), e.g. "pgbench query mode".
    pub group_axis: String,
    /// A coalescing scenario: runs carry [`Writes`], pgcoalesce runs in
    /// both ack modes.
    pub coalescing: bool,
    /// Drawn as lines over the client count (scaling.svg) instead of bars.
    pub line_chart: bool,
    /// Variants.
    pub groups: Vec<Group>,
    /// The flusher scenario's figures (it has no groups).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flusher: Option<crate::flusher::FlusherFigures>,
}

/// A scenario: a named workload.
pub struct Scenario {
    /// Short name, used by `--scenario`.
    pub name: &'static str,
    /// One-line summary, shown by `bench list`.
    pub summary: &'static str,
    /// Prepares the cluster and runs every variant against every target.
    pub run: fn(&Stack, &Profile) -> Result<ScenarioReport>,
}

/// Every scenario, in the order they run.
pub fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "select",
            summary: "pgbench select-only (-S) in simple, extended and prepared query modes",
            run: select_only,
        },
        Scenario {
            name: "hot",
            summary: "upserts on 10 entities x 50 keys (prepared and simple), 16 and 256 clients",
            run: coalescing::hot,
        },
        Scenario {
            name: "wide",
            summary: "upserts on 100,000 entities x 10 keys (prepared and simple), 16 clients",
            run: coalescing::wide,
        },
        Scenario {
            name: "scaling",
            summary: "hot-key upserts (simple) at 1, 16, 64, 256 and 1,024 clients",
            run: coalescing::scaling,
        },
        Scenario {
            name: "flusher",
            summary: "the flusher draining a backlog vs bulk statements straight to Postgres; memory per pending entry",
            run: crate::flusher::scenario,
        },
        Scenario {
            name: "tx",
            summary: "the entity store's request: BEGIN, agent context, metadata upsert, COMMIT; 16 clients",
            run: transactions::tx,
        },
        Scenario {
            name: "readmix",
            summary: "90% reads / 10% writes at 64 clients, pgcoalesce with a streaming replica vs primary only",
            run: readmix::readmix,
        },
    ]
}

/// One group: a pgbench invocation run against several targets.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    /// Variant name.
    pub label: String,
    /// pgbench options without connection options (`-c` included).
    pub args: Vec<String>,
    /// pgbench `-c`, for the report.
    pub clients: u32,
    /// Script files for `-f NAME`, as (file name, contents).
    pub files: Vec<(String, String)>,
    /// Targets in interleaving and display order.
    pub targets: Vec<Target>,
    /// Targets of `targets` not run, with the reason.
    pub skip: Vec<(Target, String)>,
    /// Interleaved rounds.
    pub rounds: usize,
    /// pgbench `-T` (for its watchdog).
    pub duration_s: u32,
    /// What is measured around each run besides pgbench's figures.
    pub measure: Measure,
    /// SQL run on the benchmark cluster (database [`DB`]) before every run,
    /// so that each target starts from the same state.
    pub before_run_sql: Option<String>,
}

/// What a group measures around each run besides pgbench's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Nothing more.
    Nothing,
    /// The upserts and rows that reached Postgres ([`writes`]); every
    /// pgcoalesce run gets a fresh process.
    Writes,
    /// Which server served the reads, and per-script latencies ([`reads`]).
    Reads,
}

/// What one round of one target produced.
struct Measured {
    outcome: Outcome,
    writes: Option<Writes>,
    reads: Option<Reads>,
}

/// Runs `spec` against its targets, interleaved per round, and fills in the ratios.
pub fn run_group(stack: &Stack, spec: &GroupSpec) -> Result<Group> {
    let skipped = |t: Target| spec.skip.iter().find(|(s, _)| *s == t).map(|(_, r)| r);
    let mut rounds: Vec<Vec<Measured>> = spec.targets.iter().map(|_| Vec::new()).collect();
    for round in 0..spec.rounds {
        for (i, &target) in spec.targets.iter().enumerate() {
            if skipped(target).is_none() {
                rounds[i].push(run_one(stack, spec, target, round)?);
            }
        }
    }
    let mut runs = Vec::new();
    for (&target, measured) in spec.targets.iter().zip(rounds) {
        let round_tps: Vec<f64> = measured
            .iter()
            .filter_map(|m| m.outcome.stats.as_ref().map(|s| s.tps))
            .collect();
        let (outcome, writes, reads) = match median(measured) {
            Some(m) => (m.outcome, m.writes, m.reads),
            None => (not_run(None), None, None),
        };
        runs.push(RunRecord {
            target,
            skipped: skipped(target).cloned(),
            outcome,
            writes,
            reads,
            ratio_vs_direct: None,
            ratio_vs_pgbouncer: None,
            ratio_vs_primary_only: None,
            round_tps,
        });
    }
    let base = |t: Target| runs.iter().find(|r| r.target == t).and_then(RunRecord::tps);
    let (direct, bouncer) = (base(Target::Direct), base(Target::Pgbouncer));
    let primary_only = base(Target::Pgcoalesce);
    for r in &mut runs {
        let tps = r.tps();
        r.ratio_vs_direct = tps.zip(direct).map(|(a, b)| a / b);
        r.ratio_vs_pgbouncer = tps.zip(bouncer).map(|(a, b)| a / b);
        if r.target.has_replica() {
            r.ratio_vs_primary_only = tps.zip(primary_only).map(|(a, b)| a / b);
        }
    }
    Ok(Group {
        label: spec.label.clone(),
        clients: spec.clients,
        runs,
    })
}

/// The first failed round if any failed, else the round with the median tps.
fn median(mut rounds: Vec<Measured>) -> Option<Measured> {
    if let Some(i) = rounds
        .iter()
        .position(|m| m.outcome.error.is_some() || m.outcome.stats.is_none())
    {
        return Some(rounds.swap_remove(i));
    }
    if rounds.is_empty() {
        return None;
    }
    rounds.sort_by(|a, b| {
        let tps = |m: &Measured| m.outcome.stats.as_ref().map_or(0.0, |s| s.tps);
        tps(a).total_cmp(&tps(b))
    });
    let mid = rounds.len() / 2;
    Some(rounds.swap_remove(mid))
}

/// An outcome for a run that did not happen.
fn not_run(error: Option<String>) -> Outcome {
    Outcome {
        command: String::new(),
        ok: false,
        error,
        stats: None,
        proxy_cpu: None,
        proxy_memory: None,
        wall_seconds: 0.0,
    }
}

/// One pgbench run of `target` in a group's round.
fn run_one(stack: &Stack, spec: &GroupSpec, target: Target, round: usize) -> Result<Measured> {
    let failed = |error: String| Measured {
        outcome: not_run(Some(error)),
        writes: None,
        reads: None,
    };
    if spec.measure == Measure::Writes
        && matches!(target, Target::Pgcoalesce | Target::PgcoalesceImmediate)
    {
        if let Err(e) = stack.restart_pgcoalesce() {
            eprintln!("FAILED: restarting pgcoalesce: {e:#}");
            return Ok(failed(format!("restarting pgcoalesce: {e:#}")));
        }
    }
    let coalesce = |db: &'static str| {
        let p = stack.pgcoalesce.borrow();
        p.check_alive().map(|()| (p.port, Some(p.pid()), db))
    };
    let endpoint = match target {
        Target::Direct => Ok((stack.pg.port(), None, DB)),
        Target::Pgbouncer => stack
            .pgbouncer
            .as_ref()
            .map_err(|e| format!("PgBouncer unavailable: {e}"))
            .and_then(|p| p.check_alive().map(|()| (p.port, Some(p.pid()), DB))),
        Target::Pgcoalesce => coalesce(DB),
        Target::PgcoalesceImmediate => coalesce(DB_IMMEDIATE),
        Target::PgcoalesceReplica | Target::PgcoalesceReplicaRywOff => {
            match stack
                .read_split
                .borrow()
                .as_ref()
                .and_then(|rs| rs.proxy(target))
            {
                Some(p) => p.check_alive().map(|()| (p.port, Some(p.pid()), DB)),
                None => Err(format!("{} is not running", target.title(false))),
            }
        }
    };
    eprint!(
        "bench:   {:<22} {:<20} round {}/{} ",
        spec.label,
        target.label(),
        round + 1,
        spec.rounds
    );
    let (port, watch_pid, db) = match endpoint {
        Ok(e) => e,
        Err(error) => {
            eprintln!("FAILED: {}", error.lines().next().unwrap_or(""));
            return Ok(failed(error));
        }
    };
    if let Some(sql) = &spec.before_run_sql {
        stack
            .pg
            .psql(DB, sql)
            .with_context(|| format!("preparing a run: {sql}"))?;
    }
    match spec.measure {
        Measure::Nothing => {}
        Measure::Writes => writes::before_run(&stack.pg)?,
        Measure::Reads => reads::before_run(stack)?,
    }
    let outcome = pgbench::run(&Invocation {
        watch_pid,
        files: spec.files.clone(),
        ..Invocation::new(
            port,
            db,
            spec.args.clone(),
            Profile::timeout(spec.duration_s),
        )
    })?;
    let writes = match spec.measure {
        Measure::Writes => Some(writes::after_run(&stack.pg, &outcome, watch_pid)?),
        _ => None,
    };
    let reads = match spec.measure {
        Measure::Reads => Some(reads::after_run(stack, &outcome)?),
        _ => None,
    };
    match (&outcome.error, &outcome.stats) {
        (None, Some(s)) => eprintln!(
            "{:.0} tps{}{}",
            s.tps,
            writes.as_ref().map_or(String::new(), |w| format!(
                ", {} statements and {} rows reached Postgres",
                w.upsert_statements, w.rows_written
            )),
            reads.as_ref().map_or(String::new(), |r| format!(
                ", reads served: {} by the primary, {} by the replica",
                r.reads_on_primary, r.reads_on_replica
            ))
        ),
        (Some(e), _) => eprintln!("FAILED: {}", e.lines().next().unwrap_or("")),
        (None, None) => eprintln!("no figures"),
    }
    Ok(Measured {
        outcome,
        writes,
        reads,
    })
}

/// pgbench options for `-M mode -c clients -T seconds -l` (and `-n`).
pub fn pgbench_args(profile: &Profile, mode: &str, clients: u32, seconds: u32) -> Vec<String> {
    let mut v: Vec<String> = ["-n", "-M", mode, "-l"].map(String::from).to_vec();
    v.extend([
        "-c".into(),
        clients.to_string(),
        "-j".into(),
        profile.threads.min(clients).to_string(),
        "-T".into(),
        seconds.to_string(),
    ]);
    v
}

/// pgbench's built-in select-only script in each query mode.
fn select_only(stack: &Stack, profile: &Profile) -> Result<ScenarioReport> {
    eprintln!("bench: select: pgbench -i -s {}", profile.scale);
    pgbench::initialize(stack.pg.port(), DB, profile.scale)?;
    let base = |mode: &str, seconds: u32| -> Vec<String> {
        let mut v = pgbench_args(profile, mode, profile.clients, seconds);
        v.insert(1, "-S".into());
        v
    };
    if !profile.quick {
        // Warm the cache so the first measured run is not the only cold one.
        eprintln!("bench: select: 3 s warm-up directly on Postgres");
        let warm = Invocation::new(stack.pg.port(), DB, base("simple", 3), Profile::timeout(3));
        pgbench::run(&warm)?;
    }
    let mut groups = Vec::new();
    for mode in ["simple", "extended", "prepared"] {
        let spec = GroupSpec {
            label: mode.into(),
            args: base(mode, profile.duration_s),
            clients: profile.clients,
            files: Vec::new(),
            targets: Target::POOLING.to_vec(),
            skip: Vec::new(),
            rounds: profile.rounds,
            duration_s: profile.duration_s,
            measure: Measure::Nothing,
            before_run_sql: None,
        };
        groups.push(run_group(stack, &spec)?);
    }
    Ok(ScenarioReport {
        name: "select".into(),
        title: "pgbench select-only".into(),
        description: format!(
            "pgbench -n -S -M <mode> -c {} -j {} -T {} -l, scale {}; targets interleaved per mode, \
             median of {} rounds; proxies reach Postgres over its Unix socket",
            profile.clients, profile.threads, profile.duration_s, profile.scale, profile.rounds
        ),
        group_axis: "pgbench query mode (-M)".into(),
        coalescing: false,
        line_chart: false,
        flusher: None,
        groups,
    })
}
