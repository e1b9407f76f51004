//! Applies the workspace's `migrations/` to a fresh database and exercises
//! the entity schema: agent context, the metadata upsert, triggers, the
//! staging merge and row-level security for a non-superuser role.

use pgtest::{migrations_dir, Cluster, ClusterOptions};

const SYSTEM_AGENT: &str = "00000000-0000-0000-0000-000000000000";
const PLAYER_AGENT: &str = "11111111-1111-1111-1111-111111111111";

fn world() -> Cluster {
    let pg = Cluster::start(&ClusterOptions::default()).expect("start");
    pg.create_database("world").unwrap();
    pg.apply_migrations("world", &migrations_dir())
        .expect("migrations apply");
    pg
}

#[test]
fn metadata_upsert_agent_context_and_rls() {
    let pg = world();
    let q = |sql: &str| pg.psql("world", sql).unwrap();

    // Seed data from the migration.
    assert_eq!(q("SELECT count(*) FROM auth.sync_groups"), "4");
    assert_eq!(
        q("SELECT server__tick__rate_ms FROM auth.sync_groups WHERE general__sync_group = 'public.REALTIME'"),
        "20"
    );
    assert_eq!(
        q(&format!("SELECT profile__username, auth__is_admin FROM auth.agent_profiles WHERE general__agent_profile_id = '{SYSTEM_AGENT}'")),
        "system|t"
    );
    assert_eq!(q("SELECT auth.current_agent_id()"), SYSTEM_AGENT);

    q("INSERT INTO entity.entities (general__entity_name) VALUES ('cube')");
    let before =
        q("SELECT general__updated_at FROM entity.entities WHERE general__entity_name = 'cube'");

    // Two upserts of the same key in one agent-context transaction: last wins.
    q(&format!(
        "BEGIN;
         SELECT auth.set_agent_context_from_agent_id('{SYSTEM_AGENT}');
         SELECT entity.update_metadata_optimized('cube', 'position', '{{\"x\": 1}}');
         SELECT entity.update_metadata_optimized('cube', 'position', '{{\"x\": 2}}');
         COMMIT;"
    ));
    assert_eq!(
        q("SELECT metadata__value FROM entity.entity_metadata WHERE general__entity_name = 'cube' AND metadata__key = 'position'"),
        r#"{"x": 2}"#
    );
    // Writing the same value again is a no-op (the row is not rewritten).
    let row_stamp = "SELECT general__updated_at FROM entity.entity_metadata WHERE general__entity_name = 'cube' AND metadata__key = 'position'";
    let stamp = q(row_stamp);
    q("SELECT entity.update_metadata_optimized('cube', 'position', '{\"x\": 2}')");
    assert_eq!(q(row_stamp), stamp);
    // Statement triggers: entity bumped, system agent seen.
    let after =
        q("SELECT general__updated_at FROM entity.entities WHERE general__entity_name = 'cube'");
    assert_ne!(before, after);
    assert_eq!(
        q(&format!("SELECT profile__last_seen_at IS NOT NULL FROM auth.agent_profiles WHERE general__agent_profile_id = '{SYSTEM_AGENT}'")),
        "t"
    );

    // Setting the agent context twice in one transaction fails...
    let err = pg
        .psql(
            "world",
            &format!(
                "BEGIN;
                 SELECT auth.set_agent_context_from_agent_id('{SYSTEM_AGENT}');
                 SELECT auth.set_agent_context_from_agent_id('{SYSTEM_AGENT}');
                 COMMIT;"
            ),
        )
        .unwrap_err();
    assert!(err.stderr().unwrap_or("").contains("already set"), "{err}");
    // ...unknown agents are refused, and the context is per transaction.
    assert!(pg
        .psql(
            "world",
            &format!("SELECT auth.set_agent_context_from_agent_id('{PLAYER_AGENT}')")
        )
        .is_err());
    assert_eq!(
        q(&format!(
            "SELECT auth.set_agent_context_from_agent_id('{SYSTEM_AGENT}')"
        )),
        "t"
    );
    assert_eq!(
        q(&format!(
            "SELECT auth.set_agent_context_from_agent_id('{SYSTEM_AGENT}')"
        )),
        "t"
    );

    // Staging merge: last staged value per key wins, staging is emptied.
    q("INSERT INTO entity.entity_metadata_temp (general__entity_name, metadata__key, metadata__value)
       VALUES ('cube', 'color', '\"red\"'), ('cube', 'color', '\"blue\"'), ('cube', 'size', '3')");
    q("SELECT entity.merge_temp_metadata()");
    assert_eq!(
        q("SELECT metadata__key || '=' || metadata__value FROM entity.entity_metadata WHERE general__entity_name = 'cube' ORDER BY 1"),
        "color=\"blue\"\nposition={\"x\": 2}\nsize=3"
    );
    assert_eq!(q("SELECT count(*) FROM entity.entity_metadata_temp"), "0");

    // Row-level security for an ordinary login role acting as a player agent
    // that may only read public.NORMAL.
    pg.create_role("player", None, false).unwrap();
    q(&format!(
        "INSERT INTO auth.agent_profiles (general__agent_profile_id, profile__username) VALUES ('{PLAYER_AGENT}', 'player');
         INSERT INTO auth.agent_sync_group_roles (auth__agent_id, group__sync, permissions__can_read) VALUES ('{PLAYER_AGENT}', 'public.NORMAL', true);
         INSERT INTO entity.entities (general__entity_name, group__sync) VALUES ('vault', 'public.STATIC');"
    ));
    let as_player = |sql: &str| {
        pg.psql_tcp(
            "player",
            None,
            "world",
            &format!("BEGIN; SELECT auth.set_agent_context_from_agent_id('{PLAYER_AGENT}'); {sql}; COMMIT;"),
        )
    };
    assert_eq!(
        as_player("SELECT string_agg(general__entity_name, ',') FROM entity.entities").unwrap(),
        "t\ncube"
    );
    assert_eq!(
        as_player("SELECT count(*) FROM entity.entity_metadata").unwrap(),
        "t\n3"
    );
    let denied =
        as_player("SELECT entity.update_metadata_optimized('cube', 'position', '{\"x\": 9}')")
            .unwrap_err();
    assert!(
        denied.stderr().unwrap_or("").contains("may not write"),
        "{denied}"
    );
    assert_eq!(
        as_player("UPDATE entity.entity_metadata SET metadata__value = '0' WHERE general__entity_name = 'cube'")
            .unwrap(),
        "t"
    );
    assert_eq!(
        q("SELECT metadata__value FROM entity.entity_metadata WHERE general__entity_name = 'cube' AND metadata__key = 'size'"),
        "3",
        "RLS must have filtered the player's UPDATE to zero rows"
    );
    // Agents cannot promote themselves.
    assert!(as_player("UPDATE auth.agent_profiles SET auth__is_admin = true").is_err());

    // Granting update rights lets the player write through the function.
    q(&format!(
        "UPDATE auth.agent_sync_group_roles SET permissions__can_insert = true, permissions__can_update = true
         WHERE auth__agent_id = '{PLAYER_AGENT}'"
    ));
    as_player("SELECT entity.update_metadata_optimized('cube', 'position', '{\"x\": 9}')").unwrap();
    assert_eq!(
        q("SELECT metadata__value, general__updated_by FROM entity.entity_metadata WHERE general__entity_name = 'cube' AND metadata__key = 'position'"),
        format!("{{\"x\": 9}}|{PLAYER_AGENT}")
    );
}

#[test]
fn migrations_can_be_reapplied() {
    let pg = world();
    pg.apply_migrations("world", &migrations_dir())
        .expect("second run");
    assert_eq!(
        pg.psql("world", "SELECT count(*) FROM auth.agent_profiles")
            .unwrap(),
        "1"
    );
}
