-- 001_entity_schema.sql
--
-- Reference entity store of a multi-user 3D world: agents and sync groups
-- (schema auth), entities and their key/value metadata (schema entity),
-- audit triggers, an upsert function, and row-level security per sync group.
--
-- Runs once on a fresh database (PostgreSQL 13+ for gen_random_uuid()).
-- Creates no login roles; grants go to PUBLIC and RLS decides row access.

BEGIN;

CREATE SCHEMA IF NOT EXISTS auth;
CREATE SCHEMA IF NOT EXISTS entity;

-- ---------------------------------------------------------------------------
-- auth: agents, sync groups, per-group permissions, agent context
-- ---------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS auth.agent_profiles (
    general__agent_profile_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    profile__username         text UNIQUE,
    auth__is_admin            boolean NOT NULL DEFAULT false,
    profile__last_seen_at     timestamptz
);

CREATE TABLE IF NOT EXISTS auth.sync_groups (
    general__sync_group    text PRIMARY KEY,
    general__description   text,
    server__tick__rate_ms  int
);

INSERT INTO auth.sync_groups (general__sync_group, general__description, server__tick__rate_ms)
VALUES
    ('public.REALTIME',   'Public realtime group: fastest tick',       20),
    ('public.NORMAL',     'Public default group',                       50),
    ('public.BACKGROUND', 'Public background group: slow updates',     200),
    ('public.STATIC',     'Public static group: rarely changing data', 500)
ON CONFLICT (general__sync_group) DO NOTHING;

-- The system agent: nil uuid, admin. It is also what auth.current_agent_id()
-- returns when no agent context is set.
INSERT INTO auth.agent_profiles (general__agent_profile_id, profile__username, auth__is_admin)
VALUES ('00000000-0000-0000-0000-000000000000', 'system', true)
ON CONFLICT (general__agent_profile_id) DO NOTHING;

CREATE TABLE IF NOT EXISTS auth.agent_sync_group_roles (
    auth__agent_id            uuid NOT NULL REFERENCES auth.agent_profiles (general__agent_profile_id) ON DELETE CASCADE,
    group__sync               text NOT NULL REFERENCES auth.sync_groups (general__sync_group) ON DELETE CASCADE,
    permissions__can_read     boolean NOT NULL DEFAULT true,
    permissions__can_insert   boolean NOT NULL DEFAULT false,
    permissions__can_update   boolean NOT NULL DEFAULT false,
    permissions__can_delete   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (auth__agent_id, group__sync)
);

-- The agent on whose behalf this transaction acts (nil uuid = system when unset).
CREATE OR REPLACE FUNCTION auth.current_agent_id()
RETURNS uuid
LANGUAGE sql
STABLE
AS $$
    SELECT COALESCE(
        NULLIF(pg_catalog.current_setting('app.current_agent_id', true), ''),
        '00000000-0000-0000-0000-000000000000'
    )::uuid
$$;

-- Sets the agent context for the rest of the current transaction, once.
CREATE OR REPLACE FUNCTION auth.set_agent_context_from_agent_id(p_agent_id uuid)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, public
AS $$
DECLARE
    v_current text := current_setting('app.current_agent_id', true);
BEGIN
    IF p_agent_id IS NULL THEN
        RAISE EXCEPTION 'agent id must not be null'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_agent_id <> '00000000-0000-0000-0000-000000000000'::uuid
       AND NOT EXISTS (SELECT 1 FROM auth.agent_profiles
                       WHERE general__agent_profile_id = p_agent_id) THEN
        RAISE EXCEPTION 'agent % does not exist', p_agent_id
            USING ERRCODE = 'invalid_authorization_specification';
    END IF;
    IF v_current IS NOT NULL AND v_current <> '' THEN
        RAISE EXCEPTION 'agent context is already set to % in this transaction', v_current
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM set_config('app.current_agent_id', p_agent_id::text, true);
    RETURN true;
END;
$$;

-- True for the system agent and for agents flagged admin.
CREATE OR REPLACE FUNCTION auth.is_admin_agent()
RETURNS boolean
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT auth.current_agent_id() = '00000000-0000-0000-0000-000000000000'::uuid
        OR EXISTS (SELECT 1 FROM auth.agent_profiles
                   WHERE general__agent_profile_id = auth.current_agent_id()
                     AND auth__is_admin)
$$;

-- Whether the current agent may perform p_action ('read' | 'insert' |
-- 'update' | 'delete') on rows of sync group p_sync_group.
CREATE OR REPLACE FUNCTION auth.has_sync_group_permission(p_sync_group text, p_action text)
RETURNS boolean
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT auth.is_admin_agent()
        OR EXISTS (
            SELECT 1 FROM auth.agent_sync_group_roles r
            WHERE r.auth__agent_id = auth.current_agent_id()
              AND r.group__sync = p_sync_group
              AND CASE p_action
                      WHEN 'read'   THEN r.permissions__can_read
                      WHEN 'insert' THEN r.permissions__can_insert
                      WHEN 'update' THEN r.permissions__can_update
                      WHEN 'delete' THEN r.permissions__can_delete
                      ELSE false
                  END)
$$;

-- ---------------------------------------------------------------------------
-- entity: entities and their metadata
-- ---------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS entity.entities (
    general__entity_name                        text PRIMARY KEY,
    general__semantic_version                   text NOT NULL DEFAULT '1.0.0',
    general__expiry__delete_since_updated_at_ms bigint,
    general__expiry__delete_since_created_at_ms bigint,
    group__sync                                 text NOT NULL DEFAULT 'public.NORMAL'
        REFERENCES auth.sync_groups (general__sync_group),
    group__load_priority                        int,
    general__created_at                         timestamptz NOT NULL DEFAULT now(),
    general__updated_at                         timestamptz NOT NULL DEFAULT now(),
    general__created_by                         uuid DEFAULT auth.current_agent_id(),
    general__updated_by                         uuid DEFAULT auth.current_agent_id()
) WITH (fillfactor = 90);

CREATE INDEX IF NOT EXISTS entities_sync_updated_idx
    ON entity.entities (group__sync, general__updated_at)
    INCLUDE (general__entity_name);

CREATE TABLE IF NOT EXISTS entity.entity_metadata (
    general__entity_name                        text NOT NULL
        REFERENCES entity.entities (general__entity_name) ON DELETE CASCADE,
    metadata__key                               text NOT NULL,
    metadata__value                             jsonb NOT NULL,
    group__sync                                 text NOT NULL DEFAULT 'public.NORMAL'
        REFERENCES auth.sync_groups (general__sync_group),
    general__expiry__delete_since_updated_at_ms bigint,
    general__expiry__delete_since_created_at_ms bigint,
    general__created_at                         timestamptz NOT NULL DEFAULT now(),
    general__updated_at                         timestamptz NOT NULL DEFAULT now(),
    general__created_by                         uuid DEFAULT auth.current_agent_id(),
    general__updated_by                         uuid DEFAULT auth.current_agent_id(),
    PRIMARY KEY (general__entity_name, metadata__key)
) WITH (fillfactor = 90);

CREATE INDEX IF NOT EXISTS entity_metadata_sync_updated_idx
    ON entity.entity_metadata (group__sync, general__updated_at)
    INCLUDE (general__entity_name, metadata__key);
CREATE INDEX IF NOT EXISTS entity_metadata_value_gin_idx
    ON entity.entity_metadata USING gin (metadata__value);
CREATE INDEX IF NOT EXISTS entity_metadata_expiry_updated_idx
    ON entity.entity_metadata (general__expiry__delete_since_updated_at_ms)
    WHERE general__expiry__delete_since_updated_at_ms IS NOT NULL;
CREATE INDEX IF NOT EXISTS entity_metadata_expiry_created_idx
    ON entity.entity_metadata (general__expiry__delete_since_created_at_ms)
    WHERE general__expiry__delete_since_created_at_ms IS NOT NULL;
CREATE INDEX IF NOT EXISTS entity_metadata_covering_idx
    ON entity.entity_metadata (general__entity_name, metadata__key)
    INCLUDE (metadata__value, general__updated_at, group__sync);
CREATE INDEX IF NOT EXISTS entity_metadata_active_idx
    ON entity.entity_metadata (general__entity_name, metadata__key)
    WHERE general__expiry__delete_since_updated_at_ms IS NULL
      AND general__expiry__delete_since_created_at_ms IS NULL;

-- Staging area for bulk writes; merged by entity.merge_temp_metadata().
-- staging__seq orders rows so the last staged value for a key wins.
CREATE UNLOGGED TABLE IF NOT EXISTS entity.entity_metadata_temp (
    staging__seq         bigint GENERATED ALWAYS AS IDENTITY,
    general__entity_name text NOT NULL,
    metadata__key        text NOT NULL,
    metadata__value      jsonb NOT NULL,
    group__sync          text NOT NULL DEFAULT 'public.NORMAL'
);

-- Upserts everything staged into entity_metadata, then empties the staging
-- table. Runs with the caller's rights, so RLS applies to the merge.
CREATE OR REPLACE FUNCTION entity.merge_temp_metadata()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public
AS $$
BEGIN
    INSERT INTO entity.entity_metadata AS m
        (general__entity_name, metadata__key, metadata__value, group__sync)
    SELECT DISTINCT ON (t.general__entity_name, t.metadata__key)
           t.general__entity_name, t.metadata__key, t.metadata__value, t.group__sync
    FROM entity.entity_metadata_temp t
    ORDER BY t.general__entity_name, t.metadata__key, t.staging__seq DESC
    ON CONFLICT (general__entity_name, metadata__key) DO UPDATE
        SET metadata__value = EXCLUDED.metadata__value,
            group__sync     = EXCLUDED.group__sync
        WHERE m.metadata__value IS DISTINCT FROM EXCLUDED.metadata__value
           OR m.group__sync IS DISTINCT FROM EXCLUDED.group__sync;
    TRUNCATE entity.entity_metadata_temp;
END;
$$;

-- ---------------------------------------------------------------------------
-- Triggers on entity_metadata
-- ---------------------------------------------------------------------------

-- Row level, before update: audit columns.
CREATE OR REPLACE FUNCTION entity.entity_metadata_touch()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public
AS $$
BEGIN
    NEW.general__updated_at := now();
    NEW.general__updated_by := auth.current_agent_id();
    RETURN NEW;
END;
$$;

-- Statement level, after insert/update: bump each touched entity once and
-- record that the acting agent was seen (at most once per second).
-- SECURITY DEFINER so these bookkeeping writes are not subject to the
-- caller's RLS or table privileges.
CREATE OR REPLACE FUNCTION entity.entity_metadata_after_write()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
BEGIN
    UPDATE entity.entities e
       SET general__updated_at = now()
      FROM (SELECT DISTINCT general__entity_name FROM new_rows) touched
     WHERE e.general__entity_name = touched.general__entity_name;

    UPDATE auth.agent_profiles
       SET profile__last_seen_at = now()
     WHERE general__agent_profile_id = auth.current_agent_id()
       AND (profile__last_seen_at IS NULL
            OR profile__last_seen_at < now() - interval '1 second');
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS entity_metadata_touch ON entity.entity_metadata;
CREATE TRIGGER entity_metadata_touch
    BEFORE UPDATE ON entity.entity_metadata
    FOR EACH ROW EXECUTE FUNCTION entity.entity_metadata_touch();

DROP TRIGGER IF EXISTS entity_metadata_after_insert ON entity.entity_metadata;
CREATE TRIGGER entity_metadata_after_insert
    AFTER INSERT ON entity.entity_metadata
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION entity.entity_metadata_after_write();

DROP TRIGGER IF EXISTS entity_metadata_after_update ON entity.entity_metadata;
CREATE TRIGGER entity_metadata_after_update
    AFTER UPDATE ON entity.entity_metadata
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION entity.entity_metadata_after_write();

-- ---------------------------------------------------------------------------
-- Single-key upsert
-- ---------------------------------------------------------------------------

-- Writes one metadata value; an unchanged value is not rewritten. Runs as
-- the owner (bypassing RLS), so it checks the caller's sync-group rights
-- itself; admins and the system agent skip the lookup.
CREATE OR REPLACE FUNCTION entity.update_metadata_optimized(
    p_entity_name text,
    p_key         text,
    p_value       jsonb,
    p_sync_group  text DEFAULT 'public.NORMAL'
)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
DECLARE
    v_existing_group text;
BEGIN
    IF NOT auth.is_admin_agent() THEN
        SELECT m.group__sync INTO v_existing_group
          FROM entity.entity_metadata m
         WHERE m.general__entity_name = p_entity_name
           AND m.metadata__key = p_key;
        IF NOT (auth.has_sync_group_permission(p_sync_group, 'insert')
                AND auth.has_sync_group_permission(p_sync_group, 'update')
                AND (v_existing_group IS NULL
                     OR auth.has_sync_group_permission(v_existing_group, 'update'))) THEN
            RAISE EXCEPTION 'agent % may not write metadata in sync group %',
                auth.current_agent_id(), p_sync_group
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;

    INSERT INTO entity.entity_metadata
        (general__entity_name, metadata__key, metadata__value, group__sync)
    VALUES (p_entity_name, p_key, p_value, p_sync_group)
    ON CONFLICT (general__entity_name, metadata__key) DO UPDATE
        SET metadata__value = EXCLUDED.metadata__value,
            group__sync     = EXCLUDED.group__sync
        WHERE entity.entity_metadata.metadata__value IS DISTINCT FROM EXCLUDED.metadata__value;
END;
$$;

-- ---------------------------------------------------------------------------
-- Row-level security: admins and the system agent see and change
-- everything; other agents per sync group via auth.agent_sync_group_roles.
-- (The table owner bypasses RLS, as PostgreSQL does by default.)
-- ---------------------------------------------------------------------------

ALTER TABLE entity.entities ENABLE ROW LEVEL SECURITY;
ALTER TABLE entity.entity_metadata ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS entities_select ON entity.entities;
CREATE POLICY entities_select ON entity.entities FOR SELECT
    USING (auth.has_sync_group_permission(group__sync, 'read'));
DROP POLICY IF EXISTS entities_insert ON entity.entities;
CREATE POLICY entities_insert ON entity.entities FOR INSERT
    WITH CHECK (auth.has_sync_group_permission(group__sync, 'insert'));
DROP POLICY IF EXISTS entities_update ON entity.entities;
CREATE POLICY entities_update ON entity.entities FOR UPDATE
    USING (auth.has_sync_group_permission(group__sync, 'update'))
    WITH CHECK (auth.has_sync_group_permission(group__sync, 'update'));
DROP POLICY IF EXISTS entities_delete ON entity.entities;
CREATE POLICY entities_delete ON entity.entities FOR DELETE
    USING (auth.has_sync_group_permission(group__sync, 'delete'));

DROP POLICY IF EXISTS entity_metadata_select ON entity.entity_metadata;
CREATE POLICY entity_metadata_select ON entity.entity_metadata FOR SELECT
    USING (auth.has_sync_group_permission(group__sync, 'read'));
DROP POLICY IF EXISTS entity_metadata_insert ON entity.entity_metadata;
CREATE POLICY entity_metadata_insert ON entity.entity_metadata FOR INSERT
    WITH CHECK (auth.has_sync_group_permission(group__sync, 'insert'));
DROP POLICY IF EXISTS entity_metadata_update ON entity.entity_metadata;
CREATE POLICY entity_metadata_update ON entity.entity_metadata FOR UPDATE
    USING (auth.has_sync_group_permission(group__sync, 'update'))
    WITH CHECK (auth.has_sync_group_permission(group__sync, 'update'));
DROP POLICY IF EXISTS entity_metadata_delete ON entity.entity_metadata;
CREATE POLICY entity_metadata_delete ON entity.entity_metadata FOR DELETE
    USING (auth.has_sync_group_permission(group__sync, 'delete'));

-- ---------------------------------------------------------------------------
-- Privileges: any role may use the entity tables (RLS filters rows) and read
-- the auth tables; auth tables are written by their owner and the
-- SECURITY DEFINER functions only, so agents cannot grant themselves rights.
-- ---------------------------------------------------------------------------

GRANT USAGE ON SCHEMA auth, entity TO PUBLIC;
GRANT SELECT ON ALL TABLES IN SCHEMA auth TO PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA entity TO PUBLIC;
GRANT TRUNCATE ON entity.entity_metadata_temp TO PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA auth, entity TO PUBLIC;

COMMIT;
