//! What every session shares: the config snapshot, prepared credentials,
//! the pools and the cancel keys. Built once per config; no globals, so tests
//! run many proxies in one process.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use config::Config;
use dashmap::DashMap;

use crate::admin::clients::ClientRegistry;
use crate::auth::Credential;
use crate::cancel::CancelRegistry;
use crate::classify::RuleShape;
use crate::coalesce::{Ack, Coalescer, Rule};
use crate::pool::{Pool, PoolConfig};
use crate::replicas::{ReadSplitSettings, ReplicaSet};
use crate::router::Router;
use crate::server::ServerTarget;
use crate::tls::{ClientTls, UpstreamTls};

/// Shared state of one running proxy.
pub struct Shared {
    pub config: Config,
    /// TLS for clients, when the config has a `tls` section.
    pub tls: Option<ClientTls>,
    /// TLS to each database's servers (primary and replicas), built once.
    upstream_tls: HashMap<String, UpstreamTls>,
    pub credentials: HashMap<String, Credential>,
    pools: DashMap<(String, String), Pool>,
    /// Client pools on replicas, by (database, user, replica index).
    replica_pools: DashMap<(String, String, usize), Pool>,
    /// Read routing per database that has replicas.
    pub routers: HashMap<String, Arc<Router>>,
    pub cancels: CancelRegistry,
    /// Present when the config has coalescing rules.
    pub coalescer: Option<Arc<Coalescer>>,
    /// Connected clients, for `max_client_conn`.
    pub clients: AtomicUsize,
    /// Set at shutdown: sessions end at their next idle point.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// Logged-in clients, for the admin console.
    pub client_registry: ClientRegistry,
    /// Set by the admin console's `SHUTDOWN`: the listener then runs the
    /// same graceful shutdown as SIGTERM.
    pub shutdown_request: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    /// Every pool on a primary: (database, user, idle, checked out).
    pub fn pool_counts(&self) -> Vec<(String, String, usize, usize)> {
        self.pools
            .iter()
            .map(|p| {
                let (idle, used) = p.value().counts();
                (p.key().0.clone(), p.key().1.clone(), idle, used)
            })
            .collect()
    }

    /// Prepares credentials (SCRAM key derivation happens here, once).
    /// `tls` is the client-side TLS loaded from `config.tls`.
    pub fn new(config: Config, tls: Option<ClientTls>) -> Result<Arc<Shared>, String> {
        let mut credentials = HashMap::new();
        for u in &config.users {
            credentials.insert(u.name.clone(), Credential::for_user(u)?);
        }
        let rules: Vec<Rule> = config.coalesce.iter().map(rule_from_config).collect();
        let databases: Vec<String> = config.databases.iter().map(|d| d.name.clone()).collect();
        let coalescer = (!rules.is_empty()).then(|| Arc::new(Coalescer::new(rules, &databases)));
        let upstream_tls = config
            .databases
            .iter()
            .map(|db| (db.name.clone(), UpstreamTls::for_database(db)))
            .collect();
        let mut shared = Shared {
            coalescer,
            config,
            tls,
            upstream_tls,
            credentials,
            pools: DashMap::new(),
            cancels: CancelRegistry::default(),
            clients: AtomicUsize::new(0),
            stopping: tokio::sync::watch::channel(false).0,
            client_registry: ClientRegistry::default(),
            shutdown_request: tokio::sync::watch::channel(false).0,
            replica_pools: DashMap::new(),
            routers: HashMap::new(),
        };
        shared.routers = shared.start_routers();
        Ok(Arc::new(shared))
    }

    /// Starts health checks and volatility loading for every database with
    /// replicas. They log in as the first configured user.
    fn start_routers(&self) -> HashMap<String, Arc<Router>> {
        let mut routers = HashMap::new();
        let Some(monitor) = self.config.users.first() else {
            return routers;
        };
        for db in self
            .config
            .databases
            .iter()
            .filter(|d| !d.replicas.is_empty())
        {
            let (Some(primary), Some(target)) = (
                self.pool(&db.name, &monitor.name),
                self.target(&db.name, &monitor.name),
            ) else {
                continue;
            };
            let rs = &self.config.read_split;
            let replicas = ReplicaSet::start(
                target,
                db.replicas
                    .iter()
                    .map(|r| (r.host.clone(), r.port, r.weight))
                    .collect(),
                ReadSplitSettings {
                    interval: rs.health_check_interval,
                    max_lag_bytes: rs.max_lag_bytes,
                    max_lag: rs.max_lag,
                    balancing: rs.balancing,
                    read_your_writes_window: rs.read_your_writes_window,
                },
            );
            routers.insert(db.name.clone(), Router::start(replicas, primary));
        }
        routers
    }

    /// This client's pools on each replica of `database`, in order.
    pub fn replica_pools(&self, database: &str, user: &str) -> Vec<Pool> {
        let Some(db) = self.config.database(database) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, r) in db.replicas.iter().enumerate() {
            let key = (database.to_owned(), user.to_owned(), i);
            if let Some(p) = self.replica_pools.get(&key) {
                out.push(p.clone());
                continue;
            }
            let (Some(mut target), Some(cfg)) =
                (self.target(database, user), self.pool_config(database))
            else {
                continue;
            };
            target.host = r.host.clone();
            target.port = r.port;
            let pool = self
                .replica_pools
                .entry(key)
                .or_insert_with(|| Pool::new(target, cfg))
                .clone();
            out.push(pool);
        }
        out
    }

    /// The pool for (database, user), created on first use. The caller has
    /// checked that both are configured.
    pub fn pool(&self, database: &str, user: &str) -> Option<Pool> {
        let key = (database.to_owned(), user.to_owned());
        if let Some(p) = self.pools.get(&key) {
            return Some(p.clone());
        }
        let target = self.target(database, user)?;
        let cfg = self.pool_config(database)?;
        Some(
            self.pools
                .entry(key)
                .or_insert_with(|| Pool::new(target, cfg))
                .clone(),
        )
    }
}

impl Shared {
    /// Where and as whom the proxy logs in to `database`'s primary for `user`.
    fn target(&self, database: &str, user: &str) -> Option<ServerTarget> {
        let db = self.config.database(database)?;
        let u = self.config.user(user)?;
        Some(ServerTarget {
            host: db.host.clone(),
            port: db.port,
            user: u.name.clone(),
            dbname: db.upstream_dbname().to_owned(),
            password: u.server_password.clone().or_else(|| u.password.clone()),
            connect_timeout: self.config.pool.connect_timeout,
            tls: self.upstream_tls.get(database)?.clone(),
        })
    }

    fn pool_config(&self, database: &str) -> Option<PoolConfig> {
        let db = self.config.database(database)?;
        let p = &self.config.pool;
        Some(PoolConfig {
            mode: self.config.pool_mode_for(db),
            size: self.config.pool_size_for(db),
            min_idle: p.min_idle,
            idle_timeout: p.idle_timeout,
            query_wait_timeout: p.query_wait_timeout,
            server_lifetime: p.server_lifetime,
        })
    }
}

impl Shared {
    /// Every pool on a replica: (database, user, replica index, idle,
    /// checked out).
    pub fn replica_pool_counts(&self) -> Vec<(String, String, usize, usize, usize)> {
        self.replica_pools
            .iter()
            .map(|p| {
                let (database, user, index) = p.key();
                let (idle, used) = p.value().counts();
                (database.clone(), user.clone(), *index, idle, used)
            })
            .collect()
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
        stamped: r.takes_stamps(),
        version_column: r.version_column.clone(),
    }
}
