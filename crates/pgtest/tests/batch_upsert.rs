//! `entity.update_metadata_batch` (migrations/002_batch_upsert.sql), the
//! bulk statement pgcoalesce flushes coalesced metadata writes with: last
//! occurrence wins, unchanged values are not rewritten, one bad row fails
//! the whole call, statement triggers fire once per call, and the caller's
//! sync-group rights are checked exactly as `update_metadata_optimized`
//! checks them.

use pgtest::{migrations_dir, Cluster, ClusterOptions};

const PLAYER_AGENT: &str = "11111111-1111-1111-1111-111111111111";
const ADMIN_AGENT: &str = "22222222-2222-2222-2222-222222222222";

/// The flush statement of the reference rule `entity_metadata_function` in
/// config/pgcoalesce.yaml, prepared as `flush` with four `text[]`
/// parameters, as the proxy sends it.
const PREPARE_FLUSH: &str = "PREPARE flush(text[], text[], text[], text[]) AS \
     SELECT entity.update_metadata_batch($1::text[], $2::text[], $3::text[]::jsonb[], $4::text[]);";

/// Test-only helpers installed next to the migrations:
/// - `test_util.error_of(sql)`: runs `sql` and returns `'ok'`, or the error's
///   `SQLSTATE: message` (the transaction survives: plpgsql's EXCEPTION
///   block rolls back to a savepoint);
/// - `test_util.trigger_log`: one row per firing of an extra statement-level
///   AFTER INSERT / AFTER UPDATE trigger on `entity.entity_metadata`.
const TEST_UTIL: &str = r#"
CREATE SCHEMA test_util;
GRANT USAGE ON SCHEMA test_util TO PUBLIC;
CREATE FUNCTION test_util.error_of(p_sql text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
    EXECUTE p_sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END;
$f$;
CREATE TABLE test_util.trigger_log (seq bigserial, op text NOT NULL);
GRANT INSERT, SELECT, DELETE ON test_util.trigger_log TO PUBLIC;
GRANT USAGE ON SEQUENCE test_util.trigger_log_seq_seq TO PUBLIC;
CREATE FUNCTION test_util.log_statement() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO test_util.trigger_log (op) VALUES (TG_OP);
    RETURN NULL;
END;
$f$;
CREATE TRIGGER zz_test_log AFTER INSERT OR UPDATE ON entity.entity_metadata
    FOR EACH STATEMENT EXECUTE FUNCTION test_util.log_statement();
"#;

/// A cluster with database `world`, the migrations and the test helpers.
fn world() -> Cluster {
    let pg = Cluster::start(&ClusterOptions::default()).expect("start");
    pg.create_database("world").expect("create database");
    pg.apply_migrations("world", &migrations_dir())
        .expect("migrations apply");
    pg.psql("world", TEST_UTIL).expect("test helpers");
    pg
}

/// Runs `sql` as the superuser (no agent context: the system agent).
fn q(pg: &Cluster, sql: &str) -> String {
    pg.psql("world", sql)
        .unwrap_or_else(|err| panic!("{sql}\nfailed: {err}"))
}

/// `SELECT test_util.error_of(...)` for `sql`, in a script that first runs
/// `setup` (e.g. PREPARE).
fn error_of(pg: &Cluster, setup: &str, sql: &str) -> String {
    q(
        pg,
        &format!("{setup} SELECT test_util.error_of($q${sql}$q$);"),
    )
}

/// Every metadata row as `entity/key=value@group`, sorted.
fn metadata(pg: &Cluster) -> String {
    q(
        pg,
        "SELECT general__entity_name || '/' || metadata__key || '=' || metadata__value::text
                || '@' || group__sync
           FROM entity.entity_metadata ORDER BY 1",
    )
}

/// The statement-trigger firings logged since the last call, as `OP,OP`,
/// and clears the log.
fn take_trigger_log(pg: &Cluster) -> String {
    q(
        pg,
        "SELECT coalesce(string_agg(op, ',' ORDER BY seq), '') FROM test_util.trigger_log;
         DELETE FROM test_util.trigger_log;",
    )
}

#[test]
fn batch_last_wins_skips_unchanged_rows_and_fails_whole() {
    let pg = world();
    q(
        &pg,
        "INSERT INTO entity.entities (general__entity_name) VALUES ('cube'), ('ball')",
    );
    let entity_stamp = "SELECT general__updated_at FROM entity.entities \
                        WHERE general__entity_name = 'cube'";
    let cube_before = q(&pg, entity_stamp);
    take_trigger_log(&pg);

    // Three rows, the first and last for the same key: the last one wins; a
    // NULL sync group means public.NORMAL.
    q(
        &pg,
        &format!(
            r#"{PREPARE_FLUSH}
            EXECUTE flush(ARRAY['cube', 'ball', 'cube'],
                          ARRAY['position', 'color', 'position'],
                          ARRAY['{{"x": 1}}', '"red"', '{{"x": 2}}'],
                          ARRAY[NULL, 'public.REALTIME', NULL]);"#
        ),
    );
    assert_eq!(
        metadata(&pg),
        "ball/color=\"red\"@public.REALTIME\ncube/position={\"x\": 2}@public.NORMAL"
    );
    // One INSERT ... ON CONFLICT DO UPDATE: the AFTER UPDATE and AFTER
    // INSERT statement triggers fire once each for the whole call...
    assert_eq!(take_trigger_log(&pg), "UPDATE,INSERT");
    // ...and 001's statement trigger bumped the touched entities.
    assert_ne!(q(&pg, entity_stamp), cube_before);
    assert_eq!(
        q(
            &pg,
            "SELECT count(*) FROM entity.entities WHERE general__updated_at > general__created_at"
        ),
        "2"
    );
    // For contrast: the single function fires them once per call.
    q(
        &pg,
        r#"BEGIN;
           SELECT entity.update_metadata_optimized('cube', 'a', '1');
           SELECT entity.update_metadata_optimized('cube', 'b', '2');
           SELECT entity.update_metadata_optimized('cube', 'c', '3');
           COMMIT;"#,
    );
    assert_eq!(
        take_trigger_log(&pg),
        "UPDATE,INSERT,UPDATE,INSERT,UPDATE,INSERT"
    );

    // Writing the same value again does not rewrite the row (not even its
    // sync group, as with the single function); a new value does.
    let row_stamp = "SELECT general__updated_at || ' ' || group__sync FROM entity.entity_metadata \
                     WHERE general__entity_name = 'cube' AND metadata__key = 'position'";
    let stamp = q(&pg, row_stamp);
    q(
        &pg,
        r#"SELECT entity.update_metadata_batch(ARRAY['cube'], ARRAY['position'],
                                               ARRAY['{"x": 2}'::jsonb], ARRAY['public.STATIC'])"#,
    );
    assert_eq!(q(&pg, row_stamp), stamp);
    q(
        &pg,
        r#"SELECT entity.update_metadata_batch(ARRAY['cube'], ARRAY['position'],
                                               ARRAY['{"x": 3}'::jsonb], ARRAY['public.STATIC'])"#,
    );
    let changed = q(&pg, row_stamp);
    assert_ne!(changed, stamp);
    assert!(changed.ends_with(" public.STATIC"), "{changed}");
    take_trigger_log(&pg);

    // A row for a missing entity fails the whole call with the foreign key
    // violation; the good row before it is not written either.
    let before = metadata(&pg);
    let err = error_of(
        &pg,
        PREPARE_FLUSH,
        r#"EXECUTE flush(ARRAY['cube', 'ghost'], ARRAY['size', 'x'],
                         ARRAY['3', '4'], ARRAY[NULL, NULL])"#,
    );
    assert!(err.starts_with("23503: "), "{err}");
    assert!(err.contains("entity_metadata"), "{err}");
    assert_eq!(metadata(&pg), before);
    // So does any other bad row, e.g. a NULL value.
    let err = error_of(
        &pg,
        "",
        r#"SELECT entity.update_metadata_batch(ARRAY['cube', 'cube'], ARRAY['size', 'mass'],
                                               ARRAY['3'::jsonb, NULL], ARRAY[NULL, NULL]::text[])"#,
    );
    assert!(err.starts_with("23502: "), "{err}");
    assert_eq!(metadata(&pg), before);

    // Arrays of different lengths, NULL arrays and nested arrays are refused.
    for call in [
        "SELECT entity.update_metadata_batch(ARRAY['cube', 'ball'], ARRAY['k'], \
         ARRAY['1'::jsonb], ARRAY[NULL]::text[])",
        "SELECT entity.update_metadata_batch(ARRAY['cube'], ARRAY['k'], \
         ARRAY['1'::jsonb], ARRAY['public.NORMAL', 'public.NORMAL'])",
        "SELECT entity.update_metadata_batch(ARRAY['cube'], ARRAY['k'], \
         ARRAY['1'::jsonb], NULL)",
        "SELECT entity.update_metadata_batch(ARRAY[['cube']], ARRAY[['k']], \
         ARRAY[['1'::jsonb]], ARRAY[[NULL]]::text[])",
    ] {
        let err = error_of(&pg, "", call);
        assert!(err.starts_with("22023: "), "{call}: {err}");
    }
    assert_eq!(
        error_of(
            &pg,
            "",
            "SELECT entity.update_metadata_batch(ARRAY['cube', 'ball'], ARRAY['k'], \
             ARRAY['1'::jsonb], ARRAY[NULL]::text[])"
        ),
        "22023: entity.update_metadata_batch: arrays differ in length \
         (2 names, 1 keys, 1 values, 1 sync groups)"
    );
    assert_eq!(metadata(&pg), before);
    assert_eq!(take_trigger_log(&pg), "");

    // Empty arrays: nothing is written and no trigger fires.
    q(
        &pg,
        &format!("{PREPARE_FLUSH} EXECUTE flush('{{}}', '{{}}', '{{}}', '{{}}');"),
    );
    assert_eq!(take_trigger_log(&pg), "");
    assert_eq!(metadata(&pg), before);
}

#[test]
fn batch_checks_sync_group_rights_like_the_single_function() {
    let pg = world();
    pg.create_role("player", None, false).expect("role");
    q(
        &pg,
        &format!(
            "INSERT INTO auth.agent_profiles (general__agent_profile_id, profile__username, auth__is_admin)
             VALUES ('{PLAYER_AGENT}', 'player', false), ('{ADMIN_AGENT}', 'admin', true);
             INSERT INTO auth.agent_sync_group_roles (auth__agent_id, group__sync, permissions__can_read)
             VALUES ('{PLAYER_AGENT}', 'public.NORMAL', true);
             INSERT INTO entity.entities (general__entity_name) VALUES ('cube');
             SELECT entity.update_metadata_batch(ARRAY['cube'], ARRAY['secret'],
                                                 ARRAY['1'::jsonb], ARRAY['public.STATIC']);"
        ),
    );
    // Runs `sql` through error_of as the `player` login role acting as `agent`.
    let as_agent = |agent: &str, sql: &str| -> String {
        pg.psql_tcp(
            "player",
            None,
            "world",
            &format!(
                "BEGIN;
                 SELECT auth.set_agent_context_from_agent_id('{agent}');
                 SELECT test_util.error_of($q${sql}$q$);
                 COMMIT;"
            ),
        )
        .unwrap_or_else(|err| panic!("{sql}\nfailed: {err}"))
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
    };
    // A batch call of `[entity, key, value]` rows, all with a NULL group.
    let batch = |rows: &[[&str; 3]]| -> String {
        let column = |at: usize| {
            let items: Vec<String> = rows.iter().map(|row| format!("'{}'", row[at])).collect();
            format!("ARRAY[{}]", items.join(", "))
        };
        let groups = vec!["NULL"; rows.len()].join(", ");
        format!(
            "SELECT entity.update_metadata_batch({}, {}, {}::jsonb[], ARRAY[{groups}]::text[])",
            column(0),
            column(1),
            column(2),
        )
    };
    let single = |key: &str, value: &str| {
        format!("SELECT entity.update_metadata_optimized('cube', '{key}', '{value}')")
    };

    // Read-only on public.NORMAL: refused with the single function's error.
    let refused =
        format!("42501: agent {PLAYER_AGENT} may not write metadata in sync group public.NORMAL");
    assert_eq!(as_agent(PLAYER_AGENT, &single("position", "1")), refused);
    assert_eq!(
        as_agent(PLAYER_AGENT, &batch(&[["cube", "position", "1"]])),
        refused
    );

    // With insert and update rights on public.NORMAL the batch goes through,
    // written as the player.
    q(
        &pg,
        &format!(
            "UPDATE auth.agent_sync_group_roles
                SET permissions__can_insert = true, permissions__can_update = true
              WHERE auth__agent_id = '{PLAYER_AGENT}'"
        ),
    );
    assert_eq!(
        as_agent(
            PLAYER_AGENT,
            &batch(&[["cube", "position", "1"], ["cube", "color", "2"]])
        ),
        "ok"
    );
    assert_eq!(
        q(
            &pg,
            "SELECT string_agg(metadata__key || ':' || general__updated_by, ',' ORDER BY metadata__key)
               FROM entity.entity_metadata WHERE general__created_by IS DISTINCT FROM
                    '00000000-0000-0000-0000-000000000000'"
        ),
        format!("color:{PLAYER_AGENT},position:{PLAYER_AGENT}")
    );

    // Overwriting a row of a group the player may not update is refused,
    // naming the requested group as the single function does; the whole
    // batch fails, including its permitted rows.
    let refused_secret = as_agent(PLAYER_AGENT, &single("secret", "2"));
    assert_eq!(refused_secret, refused);
    assert_eq!(
        as_agent(
            PLAYER_AGENT,
            &batch(&[["cube", "position", "5"], ["cube", "secret", "2"]])
        ),
        refused
    );
    assert_eq!(
        q(
            &pg,
            "SELECT string_agg(metadata__key || '=' || metadata__value::text, ',' ORDER BY metadata__key)
               FROM entity.entity_metadata"
        ),
        "color=2,position=1,secret=1"
    );

    // An admin agent bypasses the sync-group check.
    assert_eq!(
        as_agent(
            ADMIN_AGENT,
            &batch(&[["cube", "position", "5"], ["cube", "secret", "2"]])
        ),
        "ok"
    );
    assert_eq!(
        q(
            &pg,
            "SELECT string_agg(metadata__key || '=' || metadata__value::text || '@' || group__sync, ','
                               ORDER BY metadata__key)
               FROM entity.entity_metadata"
        ),
        "color=2@public.NORMAL,position=5@public.NORMAL,secret=2@public.NORMAL"
    );
}
