//! The coalescing scenarios: metadata upserts through
//! `entity.update_metadata_optimized` (the reference schema in
//! `migrations/`), on a hot keyspace (`hot`, `scaling`) and a wide one
//! (`wide`), against Postgres directly, PgBouncer, and pgcoalesce with the
//! call coalesced in both ack modes (database `bench`: `flushed`,
//! `bench_immediate`: `immediate`; see `stack::pgcoalesce_config`).
//!
//! Every run starts from an empty `entity.entity_metadata` and reports,
//! besides pgbench's figures, the upsert statements and rows that reached
//! Postgres ([`crate::writes`]).

use anyhow::{Context, Result};

use crate::scenarios::{
    pgbench_args, run_group, GroupSpec, Measure, Profile, ScenarioReport, Target,
};
use crate::stack::{Stack, DB};
use crate::writes::Tracking;

/// Entities of the hot keyspace ('1'..'10').
const HOT_ENTITIES: u32 = 10;
/// Keys per entity of the hot keyspace ('1'..'50').
const HOT_KEYS: u32 = 50;
/// Entities of the wide keyspace ('1'..'100000').
const WIDE_ENTITIES: u32 = 100_000;
/// Keys per entity of the wide keyspace.
const WIDE_KEYS: u32 = 10;
/// Most clients run directly against Postgres (max_connections is 400 and
/// the proxies keep up to 60 server connections of their own).
const DIRECT_MAX_CLIENTS: u32 = 256;

/// The pgbench script: one upsert of a random key to a random integer (a
/// valid JSON number). Entity names and keys are numeric strings so pgbench
/// variables can produce them. In extended and prepared mode the variables
/// become parameters (typed by the function's signature); in simple mode
/// pgbench pastes them as text, so they are quoted into string literals.
fn script(entities: u32, keys: u32, mode: &str) -> String {
    let call = if mode == "simple" {
        "SELECT entity.update_metadata_optimized(':e', ':k', ':v', 'public.NORMAL');"
    } else {
        "SELECT entity.update_metadata_optimized(:e, :k, :v, 'public.NORMAL');"
    };
    format!(
        "\\set e random(1, {entities})\n\\set k random(1, {keys})\n\
         \\set v random(1, 1000000)\n{call}\n"
    )
}

/// Applies the reference schema (`migrations/`) to [`DB`] unless it is
/// there already.
pub fn ensure_schema(pg: &pgtest::Cluster) -> Result<()> {
    let present = pg
        .psql(
            DB,
            "SELECT to_regclass('entity.entity_metadata') IS NOT NULL",
        )
        .context("looking for the reference schema")?;
    if present != "t" {
        eprintln!("bench: applying migrations/ to database {DB}");
        pg.apply_migrations(DB, &pgtest::migrations_dir())
            .context("applying the reference schema (migrations/)")?;
    }
    Ok(())
}

/// Applies the reference schema to [`DB`] (once), creates the entities of
/// both keyspaces and turns statement tracking on.
fn prepare(stack: &Stack) -> Result<Tracking<'_>> {
    let pg = &stack.pg;
    ensure_entities(pg, HOT_ENTITIES.max(WIDE_ENTITIES))?;
    Tracking::start(pg)
}

/// Applies the reference schema to [`DB`] (once) and creates entities
/// '1'..`count` (those missing).
pub fn ensure_entities(pg: &pgtest::Cluster, count: u32) -> Result<()> {
    ensure_schema(pg)?;
    pg.psql(
        DB,
        &format!(
            "INSERT INTO entity.entities (general__entity_name) \
             SELECT g::text FROM generate_series(1, {count}) g ON CONFLICT DO NOTHING"
        ),
    )
    .context("creating the entities")?;
    Ok(())
}

/// The group of one mode and client count.
fn group(
    profile: &Profile,
    label: String,
    (entities, keys): (u32, u32),
    mode: &str,
    clients: u32,
) -> GroupSpec {
    let mut args = pgbench_args(profile, mode, clients, profile.write_duration_s);
    args.extend(["-f".into(), "upsert.sql".into()]);
    let mut skip = Vec::new();
    if mode == "prepared" {
        skip.push((
            Target::Pgbouncer,
            "PgBouncer 1.18 keeps no protocol-level prepared statements in transaction mode \
             (pgbench -M prepared fails with 'prepared statement does not exist'); \
             compare it in the simple group"
                .to_owned(),
        ));
    }
    if clients > DIRECT_MAX_CLIENTS {
        skip.push((
            Target::Direct,
            format!(
                "{clients} clients exceed what the benchmark cluster accepts \
                 (max_connections 400, direct runs up to {DIRECT_MAX_CLIENTS} clients)"
            ),
        ));
    }
    GroupSpec {
        label,
        args,
        clients,
        files: vec![("upsert.sql".into(), script(entities, keys, mode))],
        targets: Target::ALL.to_vec(),
        skip,
        rounds: profile.write_rounds,
        duration_s: profile.write_duration_s,
        measure: Measure::Writes,
        before_run_sql: None,
    }
}

/// Runs the groups and wraps them in a report.
fn report(
    stack: &Stack,
    specs: Vec<GroupSpec>,
    (name, title, group_axis): (&str, &str, &str),
    description: String,
    line_chart: bool,
) -> Result<ScenarioReport> {
    let mut groups = Vec::new();
    for spec in &specs {
        groups.push(run_group(stack, spec)?);
    }
    Ok(ScenarioReport {
        name: name.into(),
        title: title.into(),
        description,
        group_axis: group_axis.into(),
        coalescing: true,
        line_chart,
        flusher: None,
        groups,
    })
}

/// The pgbench options every description ends with.
fn common_description(profile: &Profile) -> String {
    format!(
        "-j {} -T {} -l, {} round(s)",
        profile.threads, profile.write_duration_s, profile.write_rounds
    )
}

/// `hot`: 10 entities x 50 keys, prepared and simple mode, at each of the
/// profile's hot client counts.
pub fn hot(stack: &Stack, profile: &Profile) -> Result<ScenarioReport> {
    let _tracking = prepare(stack)?;
    let mut specs = Vec::new();
    for &clients in profile.hot_clients {
        for mode in ["prepared", "simple"] {
            specs.push(group(
                profile,
                format!("{mode}, {clients} clients"),
                (HOT_ENTITIES, HOT_KEYS),
                mode,
                clients,
            ));
        }
    }
    report(
        stack,
        specs,
        (
            "hot",
            "hot-key upserts",
            "pgbench query mode (-M) and client connections (-c)",
        ),
        format!(
            "update_metadata_optimized(e, k, v) with e in 1..{HOT_ENTITIES}, k in \
             1..{HOT_KEYS}; pgbench -n -M <mode> -c <clients> {}",
            common_description(profile)
        ),
        false,
    )
}

/// `wide`: 100,000 entities x 10 keys, prepared and simple mode.
pub fn wide(stack: &Stack, profile: &Profile) -> Result<ScenarioReport> {
    let _tracking = prepare(stack)?;
    let clients = profile.wide_clients;
    let specs = ["prepared", "simple"]
        .into_iter()
        .map(|mode| {
            group(
                profile,
                format!("{mode}, {clients} clients"),
                (WIDE_ENTITIES, WIDE_KEYS),
                mode,
                clients,
            )
        })
        .collect();
    report(
        stack,
        specs,
        ("wide", "wide-keyspace upserts", "pgbench query mode (-M)"),
        format!(
            "update_metadata_optimized(e, k, v) with e in 1..{WIDE_ENTITIES}, k in \
             1..{WIDE_KEYS}; pgbench -n -M <mode> -c {clients} {}",
            common_description(profile)
        ),
        false,
    )
}

/// `scaling`: the hot keyspace in simple mode (so PgBouncer takes part) at
/// each of the profile's scaling client counts.
pub fn scaling(stack: &Stack, profile: &Profile) -> Result<ScenarioReport> {
    let _tracking = prepare(stack)?;
    let specs = profile
        .scaling_clients
        .iter()
        .map(|&clients| {
            let label = if clients == 1 {
                "1 client".to_owned()
            } else {
                format!("{clients} clients")
            };
            group(profile, label, (HOT_ENTITIES, HOT_KEYS), "simple", clients)
        })
        .collect();
    report(
        stack,
        specs,
        (
            "scaling",
            "hot-key upserts by client count",
            "client connections (pgbench -c), -M simple",
        ),
        format!(
            "update_metadata_optimized(e, k, v) with e in 1..{HOT_ENTITIES}, k in \
             1..{HOT_KEYS}; pgbench -n -M simple -c <clients> {}",
            common_description(profile)
        ),
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts() {
        let s = script(10, 50, "simple");
        assert!(s.starts_with("\\set e random(1, 10)\n\\set k random(1, 50)\n"));
        assert!(s.contains("(':e', ':k', ':v', 'public.NORMAL');"));
        assert!(script(100_000, 10, "prepared").contains("(:e, :k, :v, 'public.NORMAL');"));
    }

    #[test]
    fn skips() {
        let p = Profile::new(false);
        let g = group(&p, "x".into(), (10, 50), "prepared", 1024);
        let skipped: Vec<Target> = g.skip.iter().map(|(t, _)| *t).collect();
        assert_eq!(skipped, [Target::Pgbouncer, Target::Direct]);
        assert!(group(&p, "x".into(), (10, 50), "simple", 256)
            .skip
            .is_empty());
    }
}
