//! What every session shares: the config snapshot, prepared credentials,
//! the pools and the cancel keys. Built once per config; no globals, so tests
//! run many proxies in one process.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use config::Config;
use dashmap::DashMap;

use crate::auth::Credential;
use crate::cancel::CancelRegistry;
use crate::classify::RuleShape;
use crate::coalesce::{Ack, Coalescer, Rule};
use crate::pool::{Pool, PoolConfig};
use crate::server::ServerTarget;

/// Shared state of one running proxy.
pub struct Shared {
    pub config: Config,
    pub credentials: HashMap<String, Credential>,
    pools: DashMap<(String, String), Pool>,
    pub cancels: CancelRegistry,
    /// Present when the config has coalescing rules.
    pub coalescer: Option<Arc<Coalescer>>,
    /// Connected clients, for `max_client_conn`.
    pub clients: AtomicUsize,
}

impl Shared {
    /// Prepares credentials (SCRAM key derivation happens here, once).
    pub fn new(config: Config) -> Result<Arc<Shared>, String> {
        let mut credentials = HashMap::new();
        for u in &config.users {
            credentials.insert(u.name.clone(), Credential::for_user(u)?);
        }
        let rules: Vec<Rule> = config.coalesce.iter().map(rule_from_config).collect();
        let databases: Vec<String> = config.databases.iter().map(|d| d.name.clone()).collect();
        let coalescer = (!rules.is_empty()).then(|| Arc::new(Coalescer::new(rules, &databases)));
        Ok(Arc::new(Shared {
            coalescer,
            config,
            credentials,
            pools: DashMap::new(),
            cancels: CancelRegistry::default(),
            clients: AtomicUsize::new(0),
        }))
    }

    /// The pool for (database, user), created on first use. The caller has
    /// checked that both are configured.
    pub fn pool(&self, database: &str, user: &str) -> Option<Pool> {
        let key = (database.to_owned(), user.to_owned());
        if let Some(p) = self.pools.get(&key) {
            return Some(p.clone());
        }
        let db = self.config.database(database)?;
        let u = self.config.user(user)?;
        let p = &self.config.pool;
        let target = ServerTarget {
            host: db.host.clone(),
            port: db.port,
            user: u.name.clone(),
            dbname: db.upstream_dbname().to_owned(),
            password: u.server_password.clone().or_else(|| u.password.clone()),
            connect_timeout: p.connect_timeout,
        };
        let cfg = PoolConfig {
            mode: self.config.pool_mode_for(db),
            size: self.config.pool_size_for(db),
            min_idle: p.min_idle,
            idle_timeout: p.idle_timeout,
            query_wait_timeout: p.query_wait_timeout,
            server_lifetime: p.server_lifetime,
        };
        Some(
            self.pools
                .entry(key)
                .or_insert_with(|| Pool::new(target, cfg))
                .clone(),
        )
    }
}

/// A configured coalescing rule, ready for the coalescer.
fn rule_from_config(r: &config::CoalesceRule) -> Rule {
    let last = |name: &str| name.rsplit('.').next().unwrap_or(name).to_owned();
    let barrier_names = r
        .function
        .iter()
        .chain(r.table.iter())
        .chain(r.writes.iter())
        .map(|n| last(n))
        .collect();
    Rule {
        name: r.name.clone(),
        database: r.database.clone(),
        shape: RuleShape {
            function: r.function.clone(),
            table: r.table.clone(),
            arguments: r.arguments.clone(),
            defaults: r
                .defaults
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            key: r.key.clone(),
        },
        flush_sql: r.flush.clone(),
        ack: match r.ack {
            config::AckMode::Flushed => Ack::Flushed,
            config::AckMode::Immediate => Ack::Immediate,
        },
        flush_interval: r.flush_interval,
        max_batch: r.max_batch,
        max_pending: r.max_pending,
        pending_wait_timeout: r.pending_wait_timeout,
        rejects_file: r.rejects_file.clone(),
        barrier_names,
    }
}
