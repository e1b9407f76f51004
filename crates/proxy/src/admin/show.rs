//! The `SHOW` commands' result sets, each a snapshot of figures kept where
//! they live: the pools, the client registry, the coalescer's counters and
//! groups, and the replica monitors (the same sources as `metrics`).

use std::sync::atomic::Ordering;

use bytes::BytesMut;

use super::command::{Show, SUPPORTED};
use super::table::{bool_val, duration, rfc3339, val, Table, Type};
use crate::state::Shared;

/// The result set of one `SHOW` command.
pub fn show(shared: &Shared, what: Show) -> BytesMut {
    match what {
        Show::Pools => pools(shared),
        Show::Clients => clients(shared),
        Show::Servers => servers(shared),
        Show::Stats => stats(shared),
        Show::Coalesce => coalesce(shared),
        Show::Replicas => replicas(shared),
        Show::Config => config(shared),
        Show::Help => help(),
        Show::Version => version(),
    }
}

/// One row per (database, user) pool on a primary.
fn pools(shared: &Shared) -> BytesMut {
    let mut t = Table::new(&[
        ("database", Type::Text),
        ("user", Type::Text),
        ("pool_mode", Type::Text),
        ("pool_size", Type::Int8),
        ("idle", Type::Int8),
        ("used", Type::Int8),
        ("clients", Type::Int8),
        ("waiting", Type::Int8),
        ("max_wait", Type::Float8),
        ("waits", Type::Int8),
        ("wait_seconds", Type::Float8),
        ("paused", Type::Bool),
    ]);
    let live = shared.live();
    let paused = shared.paused_databases();
    let clients = shared.client_registry.count_by_pool();
    let mut pools = shared.pool_stats();
    pools.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    for (database, user, s) in pools {
        let db = live.config.database(&database);
        let n = clients
            .get(&(database.clone(), user.clone()))
            .copied()
            .unwrap_or(0);
        t.row(vec![
            val(&database),
            val(&user),
            db.map(|d| live.config.pool_mode_for(d).as_str().to_owned()),
            db.map(|d| live.config.pool_size_for(d).to_string()),
            val(s.idle),
            val(s.used),
            val(n),
            val(s.waiting),
            val(s.max_wait.as_secs_f64()),
            val(s.waits_total),
            val(s.wait_time_total.as_secs_f64()),
            bool_val(paused.contains(&database)),
        ]);
    }
    t.finish()
}

/// One row per logged-in client, admin sessions included.
fn clients(shared: &Shared) -> BytesMut {
    let mut t = Table::new(&[
        ("id", Type::Int8),
        ("user", Type::Text),
        ("database", Type::Text),
        ("addr", Type::Text),
        ("port", Type::Int8),
        ("connect_time", Type::Text),
        ("tls", Type::Bool),
        ("state", Type::Text),
    ]);
    for c in shared.client_registry.snapshot() {
        t.row(vec![
            val(c.id),
            val(&c.user),
            val(&c.database),
            c.peer.map(|p| p.ip().to_string()),
            c.peer.map(|p| p.port().to_string()),
            val(rfc3339(c.connected_at)),
            bool_val(c.tls),
            val(c.activity.get().as_str()),
        ]);
    }
    t.finish()
}

/// One row per pool, on primaries and on replicas, with its server
/// connections.
fn servers(shared: &Shared) -> BytesMut {
    let mut t = Table::new(&[
        ("database", Type::Text),
        ("user", Type::Text),
        ("role", Type::Text),
        ("host", Type::Text),
        ("port", Type::Int8),
        ("idle", Type::Int8),
        ("used", Type::Int8),
        ("waiting", Type::Int8),
    ]);
    let live = shared.live();
    let mut rows = Vec::new();
    for (database, user, s) in shared.pool_stats() {
        let Some(db) = live.config.database(&database) else {
            continue;
        };
        let at = (db.host.clone(), db.port);
        rows.push((database, user, None, at, s.idle, s.used, s.waiting));
    }
    for (database, user, index, s) in shared.replica_pool_stats() {
        let Some(r) = live
            .config
            .database(&database)
            .and_then(|db| db.replicas.get(index))
        else {
            continue;
        };
        let at = (r.host.clone(), r.port);
        rows.push((database, user, Some(index), at, s.idle, s.used, s.waiting));
    }
    rows.sort();
    for (database, user, replica, (host, port), idle, used, waiting) in rows {
        let role = match replica {
            None => "primary".to_owned(),
            Some(i) => format!("replica {i}"),
        };
        t.row(vec![
            val(database),
            val(user),
            val(role),
            val(host),
            val(port),
            val(idle),
            val(used),
            val(waiting),
        ]);
    }
    t.finish()
}

/// The coalescer's counters (kept for the whole proxy, not per database)
/// and the number of clients.
fn stats(shared: &Shared) -> BytesMut {
    let mut t = Table::new(&[
        ("clients", Type::Int8),
        ("received", Type::Int8),
        ("merged", Type::Int8),
        ("flushed_rows", Type::Int8),
        ("flush_batches", Type::Int8),
        ("flush_failures", Type::Int8),
        ("rejected", Type::Int8),
        ("avg_flush_us", Type::Int8),
    ]);
    let clients = val(shared.client_registry.len());
    match &shared.coalescer {
        Some(c) => {
            let s = &c.stats;
            let get = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
            let batches = get(&s.flush_batches);
            let avg = get(&s.flush_micros).checked_div(batches).unwrap_or(0);
            t.row(vec![
                clients,
                val(get(&s.received)),
                val(get(&s.merged)),
                val(get(&s.flushed_rows)),
                val(batches),
                val(get(&s.flush_failures)),
                val(get(&s.rejected)),
                val(avg),
            ]);
        }
        None => {
            let mut row = vec![clients];
            row.extend(std::iter::repeat_with(|| val(0)).take(7));
            t.row(row);
        }
    }
    t.finish()
}

/// One row per coalescing group with the distinct keys waiting in it.
fn coalesce(shared: &Shared) -> BytesMut {
    let mut t = Table::new(&[
        ("database", Type::Text),
        ("user", Type::Text),
        ("rule", Type::Text),
        ("columns", Type::Text),
        ("pending", Type::Int8),
    ]);
    if let Some(c) = &shared.coalescer {
        let mut groups: Vec<_> = c
            .pending_by_group()
            .into_iter()
            .map(|(key, rule, pending)| {
                (key.database, key.user, rule, key.columns.join(","), pending)
            })
            .collect();
        groups.sort();
        for (database, user, rule, columns, pending) in groups {
            t.row(vec![
                val(database),
                val(user),
                val(rule),
                val(columns),
                val(pending),
            ]);
        }
    }
    t.finish()
}

/// One row per replica of every database with replicas, as its monitor
/// last saw it.
fn replicas(shared: &Shared) -> BytesMut {
    let mut t = Table::new(&[
        ("database", Type::Text),
        ("host", Type::Text),
        ("port", Type::Int8),
        ("weight", Type::Int8),
        ("up", Type::Bool),
        ("lag_bytes", Type::Int8),
        ("lag_seconds", Type::Float8),
        ("reads_in_flight", Type::Int8),
        ("reads_total", Type::Int8),
        ("reason", Type::Text),
    ]);
    let live = shared.live();
    let mut routers: Vec<_> = live.routers.iter().collect();
    routers.sort_by(|a, b| a.0.cmp(b.0));
    for (database, router) in routers {
        for r in router.replicas.states() {
            t.row(vec![
                val(database),
                val(&r.host),
                val(r.port),
                val(r.weight),
                bool_val(r.up),
                r.lag_bytes.map(|b| b.to_string()),
                r.lag_seconds.map(|s| s.to_string()),
                val(r.in_flight),
                val(r.queries_routed),
                r.reason.clone(),
            ]);
        }
    }
    t.finish()
}

/// The effective top-level settings; never a password.
fn config(shared: &Shared) -> BytesMut {
    let mut t = Table::new(&[("key", Type::Text), ("value", Type::Text)]);
    let live = shared.live();
    let c = &live.config;
    let p = &c.pool;
    let metrics = c.metrics_listen.map_or("off".to_owned(), |a| a.to_string());
    let settings: [(&str, String); 19] = [
        ("listen", c.listen.to_string()),
        ("metrics_listen", metrics),
        ("max_client_conn", c.max_client_conn.to_string()),
        ("max_message_size", c.max_message_size.to_string()),
        ("workers", c.worker_threads().to_string()),
        ("log_format", c.log_format.as_str().to_owned()),
        ("tls", if c.tls.is_some() { "on" } else { "off" }.to_owned()),
        (
            "tls.client_cert",
            c.tls
                .as_ref()
                .map_or("none", |t| t.client_cert.as_str())
                .to_owned(),
        ),
        ("admin_users", c.admin_users.join(",")),
        ("auth_user", c.auth_user.clone().unwrap_or_default()),
        ("auth_query", c.auth_query.clone()),
        ("pool.mode", p.mode.as_str().to_owned()),
        ("pool.size", p.size.to_string()),
        ("pool.min_idle", p.min_idle.to_string()),
        ("pool.idle_timeout", duration(p.idle_timeout)),
        ("pool.connect_timeout", duration(p.connect_timeout)),
        ("pool.query_wait_timeout", duration(p.query_wait_timeout)),
        ("pool.server_lifetime", duration(p.server_lifetime)),
        ("coalesce_rules", c.coalesce.len().to_string()),
    ];
    for (key, value) in settings {
        t.row(vec![val(key), Some(value)]);
    }
    t.finish()
}

fn help() -> BytesMut {
    let mut t = Table::new(&[("command", Type::Text), ("description", Type::Text)]);
    let lines = [
        ("SHOW POOLS", "server connections and clients per pool"),
        ("SHOW CLIENTS", "logged-in clients"),
        ("SHOW SERVERS", "server connections per pool and replica"),
        ("SHOW STATS", "coalescing counters"),
        ("SHOW COALESCE", "pending keys per coalescing group"),
        ("SHOW REPLICAS", "replica health, lag and reads"),
        ("SHOW CONFIG", "effective settings"),
        ("SHOW VERSION", "the proxy's version"),
        (
            "PAUSE [db]",
            "hold new queries, wait for busy servers, close them",
        ),
        ("RESUME [db]", "let queries go on after PAUSE"),
        ("RELOAD", "read the config again and apply it"),
        ("SHUTDOWN", "stop accepting, let clients finish, flush"),
    ];
    debug_assert!(lines.iter().all(|(c, _)| SUPPORTED.contains(c)));
    for (command, description) in lines {
        t.row(vec![val(command), val(description)]);
    }
    t.finish()
}

fn version() -> BytesMut {
    let mut t = Table::new(&[("version", Type::Text)]);
    t.row(vec![val(concat!("pgcoalesce ", env!("CARGO_PKG_VERSION")))]);
    t.finish()
}
