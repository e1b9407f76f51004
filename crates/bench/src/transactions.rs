//! The `tx` scenario: what the reference application (REFERENCE-WORKLOAD.md)
//! sends per client request, a transaction that first sets the agent
//! context and then upserts one metadata value:
//!
//! ```sql
//! BEGIN;
//! SELECT auth.set_agent_context_from_agent_id(<agent uuid>);
//! SELECT entity.update_metadata_optimized('avatar:<n>', 'pose.<k>', <v>, 'public.NORMAL');
//! COMMIT;
//! ```
//!
//! Each pgbench client acts as one agent (a non-admin agent whose sync-group
//! role lets it insert and update in `public.NORMAL`, so the upsert checks
//! its rights as it would for a real avatar) and writes the pose keys of its
//! own avatar entity, as avatar clients do. An upsert inside a transaction
//! block is passed through by pgcoalesce, not coalesced, so the targets are
//! the pooling ones: direct, PgBouncer, pgcoalesce.

use anyhow::{Context, Result};

use crate::coalescing::ensure_schema;
use crate::scenarios::{
    pgbench_args, run_group, GroupSpec, Measure, Profile, ScenarioReport, Target,
};
use crate::stack::{Stack, DB};

/// Agents (and their avatar entities) created: one per pgbench client, for
/// up to this many clients.
const AGENTS: u32 = 1024;
/// Pose keys per avatar ('pose.1'..'pose.6'): a snapshot is up to six upserts.
const POSE_KEYS: u32 = 6;
/// The agents' uuids: this prefix and the agent number in 12 digits.
const AGENT_UUID_PREFIX: &str = "00000000-0000-0000-0000-";

/// The pgbench script of one request in `mode`. pgbench's `:client_id`
/// (0-based) picks the agent. In extended and prepared mode the variables
/// become parameters, typed by the function signatures; in simple mode
/// pgbench pastes them as text, so the JSON value is quoted into a literal.
fn script(mode: &str) -> String {
    let value = if mode == "simple" { "':v'" } else { ":v" };
    format!(
        "\\set a :client_id + 1\n\
         \\set k random(1, {POSE_KEYS})\n\
         \\set v random(1, 1000000)\n\
         BEGIN;\n\
         SELECT auth.set_agent_context_from_agent_id(\
         ('{AGENT_UUID_PREFIX}' || lpad(:a::text, 12, '0'))::uuid);\n\
         SELECT entity.update_metadata_optimized('avatar:' || :a, 'pose.' || :k, {value}, \
         'public.NORMAL');\n\
         COMMIT;\n"
    )
}

/// Applies the reference schema if needed and creates the agents, their
/// rights in `public.NORMAL` and their avatar entities.
fn prepare(stack: &Stack) -> Result<()> {
    let pg = &stack.pg;
    ensure_schema(pg)?;
    pg.psql(
        DB,
        &format!(
            "INSERT INTO auth.agent_profiles (general__agent_profile_id, profile__username)\n\
             SELECT ('{AGENT_UUID_PREFIX}' || lpad(g::text, 12, '0'))::uuid, 'bench-agent-' || g\n\
             FROM generate_series(1, {AGENTS}) g ON CONFLICT DO NOTHING;\n\
             INSERT INTO auth.agent_sync_group_roles (auth__agent_id, group__sync,\n\
                 permissions__can_read, permissions__can_insert, permissions__can_update)\n\
             SELECT ('{AGENT_UUID_PREFIX}' || lpad(g::text, 12, '0'))::uuid, 'public.NORMAL',\n\
                 true, true, true\n\
             FROM generate_series(1, {AGENTS}) g ON CONFLICT DO NOTHING;\n\
             INSERT INTO entity.entities (general__entity_name, group__sync)\n\
             SELECT 'avatar:' || g, 'public.NORMAL' FROM generate_series(1, {AGENTS}) g\n\
             ON CONFLICT DO NOTHING;"
        ),
    )
    .context("creating the tx scenario's agents and avatar entities")
    .map(drop)
}

/// What every run starts from: no metadata, vacuumed parents (the triggers
/// update entities and agent profiles on every write).
const BEFORE_RUN: &str = "TRUNCATE entity.entity_metadata;\n\
                          VACUUM (ANALYZE) entity.entities, auth.agent_profiles;";

/// `tx`: the request transaction in prepared mode (what the application's
/// drivers use; PgBouncer skipped) and simple mode (all three targets).
pub fn tx(stack: &Stack, profile: &Profile) -> Result<ScenarioReport> {
    prepare(stack)?;
    let clients = profile.tx_clients.min(AGENTS);
    let seconds = profile.mixed_duration_s;
    let mut groups = Vec::new();
    for mode in ["prepared", "simple"] {
        let mut args = pgbench_args(profile, mode, clients, seconds);
        args.extend(["-f".into(), "tx.sql".into()]);
        let skip = if mode == "prepared" {
            vec![(
                Target::Pgbouncer,
                "PgBouncer 1.18 keeps no protocol-level prepared statements in transaction \
                 mode; compare it in the simple group"
                    .to_owned(),
            )]
        } else {
            Vec::new()
        };
        let spec = GroupSpec {
            label: format!("{mode}, {clients} clients"),
            args,
            clients,
            files: vec![("tx.sql".into(), script(mode))],
            targets: Target::POOLING.to_vec(),
            skip,
            rounds: profile.tx_rounds,
            duration_s: seconds,
            measure: Measure::Nothing,
            before_run_sql: Some(BEFORE_RUN.into()),
        };
        groups.push(run_group(stack, &spec)?);
    }
    Ok(ScenarioReport {
        name: "tx".into(),
        title: "entity store request transactions".into(),
        description: format!(
            "BEGIN; auth.set_agent_context_from_agent_id(agent); \
             update_metadata_optimized('avatar:<agent>', 'pose.<1..{POSE_KEYS}>', v); COMMIT; \
             one non-admin agent per client; pgbench -n -M <mode> -c {clients} -j {} -T {seconds} \
             -l, median of {} round(s); entity_metadata emptied before each run",
            profile.threads.min(clients),
            profile.tx_rounds
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

    #[test]
    fn scripts() {
        let simple = script("simple");
        assert!(simple.starts_with("\\set a :client_id + 1\n"));
        assert!(simple.contains("BEGIN;\nSELECT auth.set_agent_context_from_agent_id("));
        assert!(simple.contains("'pose.' || :k, ':v', 'public.NORMAL');\nCOMMIT;\n"));
        assert!(script("prepared").contains("'pose.' || :k, :v, 'public.NORMAL');"));
    }
}
