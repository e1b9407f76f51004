//! What names mean to the router: the grammar's own constructs that look
//! like function calls, and functions and views whose answer depends on the
//! server asked.

use sqlparser::ast::Ident;

use crate::sql_facts::{Args, Call};

/// Words PostgreSQL's grammar turns into expressions of their own rather
/// than calls of a pg_proc function, when written unquoted and unqualified:
/// `COALESCE(...)`, `NULLIF(...)`, `GREATEST(...)`, `LEAST(...)`,
/// `GROUPING(...)`, `ROW(...)` (`ARRAY(subquery)` is handled apart).
const CONSTRUCTS: &[&str] = &["coalesce", "nullif", "greatest", "least", "grouping", "row"];

/// SQL value functions: keywords Postgres evaluates itself, all stable
/// (`CURRENT_TIMESTAMP` is the transaction's start on whichever server).
const SQL_VALUE_FUNCTIONS: &[&str] = &[
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "localtime",
    "localtimestamp",
    "session_user",
    "system_user",
    "user",
];

/// Functions whose answer depends on the server that gives it, although
/// most are stable: settings, addresses, WAL positions, snapshots and
/// recovery state. Also refused: names starting with `pg_stat_`
/// (statistics of the server asked, pg_stat_statements).
const SERVER_LOCAL_FUNCTIONS: &[&str] = &[
    "current_setting",
    "inet_server_addr",
    "inet_server_port",
    "pg_backend_pid",
    "pg_conf_load_time",
    "pg_control_checkpoint",
    "pg_control_recovery",
    "pg_current_snapshot",
    "pg_current_wal_flush_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_lsn",
    "pg_get_replication_slots",
    "pg_get_wal_replay_pause_state",
    "pg_is_in_recovery",
    "pg_is_wal_replay_paused",
    "pg_last_wal_receive_lsn",
    "pg_last_wal_replay_lsn",
    "pg_last_xact_replay_timestamp",
    "pg_lock_status",
    "pg_postmaster_start_time",
    "pg_show_all_settings",
    "txid_current_snapshot",
];

/// Views showing the state of the server asked rather than replicated
/// data; also refused: names starting with `pg_stat_` or `pg_statio_`
/// (pg_stat_activity, pg_stat_replication, pg_stat_statements, ...).
const SERVER_LOCAL_RELATIONS: &[&str] = &[
    "pg_backend_memory_contexts",
    "pg_cursors",
    "pg_file_settings",
    "pg_hba_file_rules",
    "pg_ident_file_mappings",
    "pg_locks",
    "pg_prepared_statements",
    "pg_prepared_xacts",
    "pg_replication_origin_status",
    "pg_replication_slots",
    "pg_settings",
    "pg_shmem_allocations",
];

/// `SHOW` targets whose answer tells a standby from a primary (drivers ask
/// `transaction_read_only` to find a writable server), and `SHOW ALL`,
/// which includes them.
const SERVER_ROLE_SETTINGS: &[&str] = &["all", "in_hot_standby", "transaction_read_only"];

/// Whether `SHOW <first>...` may be answered by a replica.
pub(super) fn show_ok(first: &Ident) -> bool {
    !SERVER_ROLE_SETTINGS.contains(&first.value.to_ascii_lowercase().as_str())
}

/// Whether the function `name` (normalized, any schema: extensions such as
/// pg_stat_statements live outside pg_catalog, and a user function so
/// named is unlikely) answers for the server asked.
pub(super) fn server_local_function(name: &str) -> bool {
    SERVER_LOCAL_FUNCTIONS.contains(&name) || name.starts_with("pg_stat_")
}

/// Whether `call` is one of the grammar's own constructs ([`CONSTRUCTS`],
/// [`SQL_VALUE_FUNCTIONS`], `ARRAY(subquery)`) rather than a call of a
/// pg_proc function.
pub(super) fn is_construct(call: &Call) -> bool {
    let ([word], true) = (call.name.as_slice(), call.bare) else {
        return false;
    };
    let word = word.as_str();
    match call.args {
        Args::Subquery => word == "array",
        Args::List => CONSTRUCTS.contains(&word) || SQL_VALUE_FUNCTIONS.contains(&word),
        Args::None => SQL_VALUE_FUNCTIONS.contains(&word),
    }
}

/// Whether reading the relation `schema.name` (as normalized) gives the
/// same on a replica: not a temporary table, not a server-local view.
pub(super) fn relation_ok(schema: Option<&str>, name: &str) -> bool {
    if let Some(schema) = schema {
        if schema == "pg_temp" || schema.starts_with("pg_temp_") {
            return false;
        }
    }
    // Matched in any schema, as functions are.
    let server_local = SERVER_LOCAL_RELATIONS.contains(&name)
        || name.starts_with("pg_stat_")
        || name.starts_with("pg_statio_");
    !server_local
}

/// A normalized relation or function name as (schema, name); a three-part
/// name's database is ignored. None for other shapes.
pub(super) fn split_name(parts: &[String]) -> Option<(Option<&str>, &str)> {
    match parts {
        [name] => Some((None, name)),
        [.., schema, name] if parts.len() <= 3 => Some((Some(schema), name)),
        _ => None,
    }
}
