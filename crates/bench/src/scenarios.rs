//! The benchmark's scenarios and the shape of their results.
//!
//! Owns the scenario list ([`all`]), the run profile (full or `--quick`),
//! the three targets, and running one workload against each target in
//! interleaved order. A scenario is a named function that prepares what it
//! needs on the cluster and returns groups of runs (one group per variant,
//! e.g. per pgbench query mode); new scenarios are new entries in [`all`].

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::pgbench::{self, Invocation, Outcome};
use crate::stack::{Stack, DB};

/// Where a run's clients connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Postgres itself, no proxy.
    Direct,
    /// PgBouncer in transaction mode.
    Pgbouncer,
    /// pgcoalesce in transaction mode.
    Pgcoalesce,
}

impl Target {
    /// Every target, in the order runs are interleaved and shown.
    pub const ALL: [Target; 3] = [Target::Direct, Target::Pgbouncer, Target::Pgcoalesce];

    /// Lowercase name, as in the JSON.
    pub fn label(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Pgbouncer => "pgbouncer",
            Target::Pgcoalesce => "pgcoalesce",
        }
    }
}

/// Size of the runs: the full benchmark or the `--quick` smoke check.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Profile {
    /// `--quick`.
    pub quick: bool,
    /// pgbench `-T`.
    pub duration_s: u32,
    /// Default pgbench `-c` (scenarios with their own client counts scale them).
    pub clients: u32,
    /// pgbench `-j`.
    pub threads: u32,
    /// pgbench `-i -s`.
    pub scale: u32,
    /// Interleaved rounds per group; each target's median-tps round is
    /// reported (one noisy run on a shared 2-core machine decides nothing).
    pub rounds: usize,
}

impl Profile {
    /// `-T 10 -c 16 -j 2`, scale 10; or `-T 2 -c 4 -j 2`, scale 1 when quick.
    pub fn new(quick: bool) -> Profile {
        if quick {
            Profile {
                quick,
                duration_s: 2,
                clients: 4,
                threads: 2,
                scale: 1,
                rounds: 1,
            }
        } else {
            Profile {
                quick,
                duration_s: 10,
                clients: 16,
                threads: 2,
                scale: 10,
                rounds: 3,
            }
        }
    }

    /// Watchdog for one pgbench run: its duration plus a minute.
    fn timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.duration_s) + 60)
    }
}

/// One run against one target.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// Where the clients connected.
    pub target: Target,
    /// pgbench's outcome (figures, proxy CPU, error).
    #[serde(flatten)]
    pub outcome: Outcome,
    /// tps / the direct run's tps in the same group.
    pub ratio_vs_direct: Option<f64>,
    /// tps / the PgBouncer run's tps in the same group.
    pub ratio_vs_pgbouncer: Option<f64>,
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
}

/// One variant of a scenario (e.g. one query mode), run against every target.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    /// Variant name, e.g. `simple`.
    pub label: String,
    /// The runs, in [`Target::ALL`] order.
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
    /// Variants.
    pub groups: Vec<Group>,
}

/// A scenario: a named workload.
pub struct Scenario {
    /// Short name, used by `--scenario`.
    pub name: &'static str,
    /// One-line summary, shown by `--help`-style listings.
    pub summary: &'static str,
    /// Prepares the cluster and runs every variant against every target.
    pub run: fn(&Stack, &Profile) -> Result<ScenarioReport>,
}

/// Every scenario, in the order they run.
pub fn all() -> Vec<Scenario> {
    vec![Scenario {
        name: "select",
        summary: "pgbench select-only (-S) in simple, extended and prepared query modes",
        run: select_only,
    }]
}

/// Runs `args` (pgbench options without connection options) against every
/// target in [`Target::ALL`] order and fills in the ratios.
pub fn run_group(
    stack: &Stack,
    profile: &Profile,
    label: &str,
    args: &[String],
    files: &[(String, String)],
) -> Result<Group> {
    let mut rounds: Vec<Vec<Outcome>> = Target::ALL.iter().map(|_| Vec::new()).collect();
    for round in 0..profile.rounds {
        for (i, target) in Target::ALL.into_iter().enumerate() {
            let outcome = run_one(stack, profile, label, target, args, files, round)?;
            rounds[i].push(outcome);
        }
    }
    let mut runs = Vec::new();
    for (target, outcomes) in Target::ALL.into_iter().zip(rounds) {
        let round_tps: Vec<f64> = outcomes
            .iter()
            .filter_map(|o| o.stats.as_ref().map(|s| s.tps))
            .collect();
        runs.push(RunRecord {
            target,
            outcome: median_outcome(outcomes),
            ratio_vs_direct: None,
            ratio_vs_pgbouncer: None,
            round_tps,
        });
    }
    let base = |t: Target| runs.iter().find(|r| r.target == t).and_then(RunRecord::tps);
    let (direct, bouncer) = (base(Target::Direct), base(Target::Pgbouncer));
    for r in &mut runs {
        let tps = r.tps();
        r.ratio_vs_direct = tps.zip(direct).map(|(a, b)| a / b);
        r.ratio_vs_pgbouncer = tps.zip(bouncer).map(|(a, b)| a / b);
    }
    Ok(Group {
        label: label.to_owned(),
        runs,
    })
}

/// The first failed round if any failed, else the round with the median tps.
fn median_outcome(mut outcomes: Vec<Outcome>) -> Outcome {
    if let Some(i) = outcomes
        .iter()
        .position(|o| o.error.is_some() || o.stats.is_none())
    {
        return outcomes.swap_remove(i);
    }
    outcomes.sort_by(|a, b| {
        let tps = |o: &Outcome| o.stats.as_ref().map_or(0.0, |s| s.tps);
        tps(a).total_cmp(&tps(b))
    });
    let mid = outcomes.len() / 2;
    outcomes.swap_remove(mid)
}

/// One pgbench run of `target` in a group's round.
fn run_one(
    stack: &Stack,
    profile: &Profile,
    label: &str,
    target: Target,
    args: &[String],
    files: &[(String, String)],
    round: usize,
) -> Result<Outcome> {
    let endpoint = match target {
        Target::Direct => Ok((stack.pg.port(), None)),
        Target::Pgbouncer => stack
            .pgbouncer
            .as_ref()
            .map_err(|e| format!("PgBouncer unavailable: {e}"))
            .and_then(|p| p.check_alive().map(|()| (p.port, Some(p.pid())))),
        Target::Pgcoalesce => {
            let p = &stack.pgcoalesce;
            p.check_alive().map(|()| (p.port, Some(p.pid())))
        }
    };
    eprint!(
        "bench:   {label:<12} {:<11} round {}/{} ",
        target.label(),
        round + 1,
        profile.rounds
    );
    let outcome = match endpoint {
        Ok((port, watch_pid)) => pgbench::run(&Invocation {
            watch_pid,
            files: files.to_vec(),
            ..Invocation::new(port, DB, args.to_vec(), profile.timeout())
        })?,
        Err(error) => Outcome {
            command: String::new(),
            ok: false,
            error: Some(error),
            stats: None,
            proxy_cpu: None,
            wall_seconds: 0.0,
        },
    };
    match (&outcome.error, &outcome.stats) {
        (None, Some(s)) => eprintln!("{:.0} tps", s.tps),
        (Some(e), _) => eprintln!("FAILED: {}", e.lines().next().unwrap_or("")),
        (None, None) => eprintln!("no figures"),
    }
    Ok(outcome)
}

/// pgbench's built-in select-only script in each query mode.
fn select_only(stack: &Stack, profile: &Profile) -> Result<ScenarioReport> {
    eprintln!("bench: select: pgbench -i -s {}", profile.scale);
    pgbench::initialize(stack.pg.port(), DB, profile.scale)?;
    let base = |mode: &str, seconds: u32| -> Vec<String> {
        let mut v: Vec<String> = ["-n", "-S", "-M", mode, "-l"].map(String::from).to_vec();
        v.extend([
            "-c".into(),
            profile.clients.to_string(),
            "-j".into(),
            profile.threads.to_string(),
            "-T".into(),
            seconds.to_string(),
        ]);
        v
    };
    if !profile.quick {
        // Warm the cache so the first measured run is not the only cold one.
        eprintln!("bench: select: 3 s warm-up directly on Postgres");
        let warm = Invocation::new(stack.pg.port(), DB, base("simple", 3), profile.timeout());
        pgbench::run(&warm)?;
    }
    let mut groups = Vec::new();
    for mode in ["simple", "extended", "prepared"] {
        groups.push(run_group(
            stack,
            profile,
            mode,
            &base(mode, profile.duration_s),
            &[],
        )?);
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
        groups,
    })
}
