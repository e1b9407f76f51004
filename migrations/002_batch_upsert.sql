-- 002_batch_upsert.sql
--
-- entity.update_metadata_batch: the bulk twin of
-- entity.update_metadata_optimized (001). pgcoalesce flushes coalesced
-- metadata writes through it, one call per flush:
--
--   SELECT entity.update_metadata_batch($1::text[], $2::text[], $3::text[]::jsonb[],
--                                       $4::text[], $5::text[]::bigint[])
--
-- Element i of the arrays is one write (entity, key, value, sync group,
-- arrival stamp).
-- The call has the effect of calling update_metadata_optimized once per
-- element, in array order, with three differences: it is one INSERT, so the
-- statement-level triggers on entity_metadata fire once per call instead of
-- once per row; a NULL sync group means 'public.NORMAL'; and it is all or
-- nothing: one row the caller may not write (same error and SQLSTATE as the
-- single function), or one failing row (foreign key, NOT NULL, ...), fails the
-- whole call. The proxy isolates the bad row by retrying row by row.
--
-- Last-write-wins across several proxies writing the same rows: each proxy
-- stamps a write with its arrival time (microseconds since the Unix epoch,
-- strictly increasing within the proxy), kept in
-- entity_metadata.metadata__written_at_us; a stamped write only replaces a
-- stored row stamped no later, so a proxy that flushes an older value after
-- another proxy flushed a newer one leaves the newer one. The four-array
-- form writes unstamped (NULL stamps): it replaces a different value and
-- leaves the stored stamp. Writes that bypass the proxies
-- (update_metadata_optimized) do not stamp: the guard orders proxies among
-- themselves.
--
-- Re-runnable.

BEGIN;

ALTER TABLE entity.entity_metadata
    ADD COLUMN IF NOT EXISTS metadata__written_at_us bigint;

-- Writes many metadata values at once; see the header. Runs as the owner
-- (bypassing RLS), so it checks the caller's sync-group rights itself, row
-- by row as update_metadata_optimized does; admins and the system agent
-- skip the lookup. Arrays of different lengths (or NULL arrays, or arrays
-- of more than one dimension) are an error (22023). If the same (entity,
-- key) appears more than once, the last occurrence wins. Rows are written
-- in (entity, key) order, so concurrent batches lock rows in one order.
CREATE OR REPLACE FUNCTION entity.update_metadata_batch(
    p_entity_names text[],
    p_keys         text[],
    p_values       jsonb[],
    p_sync_groups  text[],
    p_written_at_us bigint[]
)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
DECLARE
    v_rows         int := cardinality(p_entity_names);
    v_denied_group text;
BEGIN
    IF p_entity_names IS NULL OR p_keys IS NULL OR p_values IS NULL
       OR p_sync_groups IS NULL THEN
        RAISE EXCEPTION 'entity.update_metadata_batch: arrays must not be null'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_written_at_us IS NULL THEN
        p_written_at_us := array_fill(NULL::bigint, ARRAY[v_rows]);
    END IF;
    IF cardinality(p_keys) <> v_rows OR cardinality(p_values) <> v_rows
       OR cardinality(p_sync_groups) <> v_rows
       OR cardinality(p_written_at_us) <> v_rows THEN
        RAISE EXCEPTION 'entity.update_metadata_batch: arrays differ in length (% names, % keys, % values, % sync groups)',
            v_rows, cardinality(p_keys), cardinality(p_values), cardinality(p_sync_groups)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF array_ndims(p_entity_names) > 1 OR array_ndims(p_keys) > 1
       OR array_ndims(p_values) > 1 OR array_ndims(p_sync_groups) > 1
       OR array_ndims(p_written_at_us) > 1 THEN
        RAISE EXCEPTION 'entity.update_metadata_batch: arrays must be one-dimensional'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_rows = 0 THEN
        RETURN;
    END IF;

    -- The permission check of update_metadata_optimized, for every row
    -- (not only the surviving duplicates, as if each were written in turn):
    -- insert and update rights on the row's sync group, and update rights
    -- on the group of the row it would overwrite. Evaluated once per
    -- distinct (new group, stored group) pair; the first row (in array
    -- order) of a refused pair names the group in the error.
    IF NOT auth.is_admin_agent() THEN
        SELECT w.new_group INTO v_denied_group
          FROM (SELECT DISTINCT ON (new_group, old_group)
                       COALESCE(u.sync_group, 'public.NORMAL') AS new_group,
                       m.group__sync AS old_group,
                       u.ord
                  FROM unnest(p_entity_names, p_keys, p_sync_groups) WITH ORDINALITY
                       AS u(entity_name, key, sync_group, ord)
                  LEFT JOIN entity.entity_metadata m
                         ON m.general__entity_name = u.entity_name
                        AND m.metadata__key = u.key
                 ORDER BY new_group, old_group, u.ord) w
         WHERE NOT (auth.has_sync_group_permission(w.new_group, 'insert')
                    AND auth.has_sync_group_permission(w.new_group, 'update')
                    AND (w.old_group IS NULL
                         OR auth.has_sync_group_permission(w.old_group, 'update')))
         ORDER BY w.ord
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'agent % may not write metadata in sync group %',
                auth.current_agent_id(), v_denied_group
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;

    -- ON CONFLICT cannot touch a row twice in one statement: keep the last
    -- occurrence of each (entity, key).
    -- A stamped write replaces a stored row only if that row's stamp is not
    -- newer (last-write-wins across proxies) and keeps the newest stamp; an
    -- unstamped write (NULL stamps) replaces a different value, as before.
    INSERT INTO entity.entity_metadata
        (general__entity_name, metadata__key, metadata__value, group__sync,
         metadata__written_at_us)
    SELECT DISTINCT ON (u.entity_name, u.key)
           u.entity_name, u.key, u.value, COALESCE(u.sync_group, 'public.NORMAL'),
           u.written_at_us
      FROM unnest(p_entity_names, p_keys, p_values, p_sync_groups, p_written_at_us)
           WITH ORDINALITY AS u(entity_name, key, value, sync_group, written_at_us, ord)
     ORDER BY u.entity_name, u.key, u.ord DESC
    ON CONFLICT (general__entity_name, metadata__key) DO UPDATE
        SET metadata__value = EXCLUDED.metadata__value,
            group__sync     = EXCLUDED.group__sync,
            metadata__written_at_us = COALESCE(EXCLUDED.metadata__written_at_us,
                                               entity.entity_metadata.metadata__written_at_us)
        WHERE CASE
                WHEN EXCLUDED.metadata__written_at_us IS NULL
                THEN entity.entity_metadata.metadata__value IS DISTINCT FROM EXCLUDED.metadata__value
                ELSE entity.entity_metadata.metadata__written_at_us IS NULL
                     OR entity.entity_metadata.metadata__written_at_us <= EXCLUDED.metadata__written_at_us
              END;
END;
$$;

GRANT EXECUTE ON FUNCTION entity.update_metadata_batch(text[], text[], jsonb[], text[], bigint[])
    TO PUBLIC;

-- The four-array form: unstamped writes.
CREATE OR REPLACE FUNCTION entity.update_metadata_batch(
    p_entity_names text[],
    p_keys         text[],
    p_values       jsonb[],
    p_sync_groups  text[]
)
RETURNS void
LANGUAGE sql
SECURITY INVOKER
SET search_path = pg_catalog, public
AS $$
    SELECT entity.update_metadata_batch(p_entity_names, p_keys, p_values, p_sync_groups,
                                        NULL::bigint[]);
$$;

COMMIT;
