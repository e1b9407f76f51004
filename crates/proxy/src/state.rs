//! What every session shares: the live config snapshot with what is built
//! from it (credentials, TLS, read routers), the pools and the cancel keys.
//! No globals, so tests run many proxies in one process.
//!
//! The config part is [`Live`], swapped whole by a reload (see
//! [`crate::reload`]): a session reads one snapshot at login and keeps it.
//! Pools outlive reloads and are reconfigured in place.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use config::Config;
use dashmap::DashMap;

use crate::admin::clients::ClientRegistry;
use crate::auth::Credential;
use crate::cancel::CancelRegistry;
use crate::classify::RuleShape;
use crate::coalesce::{Ack, Coalescer, Rule};
use crate::pool::{Pool, PoolConfig, PoolStats};
use crate::replicas::{ReadSplitSettings, ReplicaSet};
use crate::router::Router;
use crate::server::ServerTarget;
use crate::server_auth::ServerSecret;
use crate::tls::{ClientTls, UpstreamTls};

/// Re-reads the config for a reload (`RELOAD`, SIGHUP): the binary's file
/// and command line. The error is shown to whoever asked for the reload.
pub type ConfigSource = Arc<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// Shared state of one running proxy.
pub struct Shared {
    live: ArcSwap<Live>,
    pools: DashMap<(String, String), Pool>,
    /// Client pools on replicas, by (database, user, replica index).
    replica_pools: DashMap<(String, String, usize), Pool>,
    pub cancels: CancelRegistry,
    /// Present when the config has coalescing rules. Fixed at start: its
    /// rules hold pending writes, so changing them needs a restart.
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
    /// Databases paused by the console's `PAUSE`; pools made for them while
    /// paused start paused.
    paused: Mutex<BTreeSet<String>>,
    /// Where a reload reads the config from; `None`: the config the proxy
    /// was started with (a reload then only re-reads TLS files).
    pub(crate) source: Option<ConfigSource>,
    /// One reload at a time.
    pub(crate) reloading: tokio::sync::Mutex<()>,
}

/// One config and what is built from it. Replaced whole by a reload.
pub struct Live {
    pub config: Config,
    /// TLS for clients, when the config has a `tls` section.
    pub tls: Option<ClientTls>,
    /// TLS to each database's servers (primary and replicas).
    upstream_tls: HashMap<String, UpstreamTls>,
    pub credentials: HashMap<String, Credential>,
    /// Read routing per database that has replicas.
    pub routers: HashMap<String, Arc<Router>>,
}

impl Live {
    /// Prepares credentials (SCRAM key derivation happens here, once) and
    /// upstream TLS. `tls` is the client-side TLS loaded from `config.tls`.
    /// Routers are added by the caller, which owns the pools they use.
    pub(crate) fn new(config: Config, tls: Option<ClientTls>) -> Result<Live, String> {
        let mut credentials = HashMap::new();
        for u in &config.users {
            credentials.insert(u.name.clone(), Credential::for_user(u)?);
        }
        let upstream_tls = config
            .databases
            .iter()
            .map(|db| (db.name.clone(), UpstreamTls::for_database(db)))
            .collect();
        Ok(Live {
            config,
            tls,
            upstream_tls,
            credentials,
            routers: HashMap::new(),
        })
    }
}

impl Shared {
    /// Builds the shared state and starts read routing. `source` is where
    /// reloads read the config from.
    pub fn new(
        config: Config,
        tls: Option<ClientTls>,
        source: Option<ConfigSource>,
    ) -> Result<Arc<Shared>, String> {
        let rules: Vec<Rule> = config.coalesce.iter().map(rule_from_config).collect();
        let databases: Vec<String> = config.databases.iter().map(|d| d.name.clone()).collect();
        let coalescer = (!rules.is_empty()).then(|| Arc::new(Coalescer::new(rules, &databases)));
        let mut live = Live::new(config, tls)?;
        let shared = Shared {
            live: ArcSwap::from_pointee(Live::new(Config::default(), None)?),
            coalescer,
            pools: DashMap::new(),
            cancels: CancelRegistry::default(),
            clients: AtomicUsize::new(0),
            stopping: tokio::sync::watch::channel(false).0,
            client_registry: ClientRegistry::default(),
            shutdown_request: tokio::sync::watch::channel(false).0,
            replica_pools: DashMap::new(),
            paused: Mutex::new(BTreeSet::new()),
            source,
            reloading: tokio::sync::Mutex::new(()),
        };
        live.routers = shared.routers_for(&live, None);
        shared.live.store(Arc::new(live));
        Ok(Arc::new(shared))
    }

    /// The current config snapshot. A session takes it once, at login.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// Makes `live` the current snapshot (a reload's last step).
    pub(crate) fn install(&self, live: Live) {
        self.live.store(Arc::new(live));
    }

    /// Read routers for every database of `live` with replicas: the ones of
    /// `old` where the database's replicas and read-split settings did not
    /// change, new ones (health checks and volatility loading, logged in as
    /// the first configured user) for the rest.
    pub(crate) fn routers_for(
        &self,
        live: &Live,
        old: Option<&Live>,
    ) -> HashMap<String, Arc<Router>> {
        let mut routers = HashMap::new();
        let Some(monitor) = live.config.users.first() else {
            return routers;
        };
        let rs = &live.config.read_split;
        for db in live
            .config
            .databases
            .iter()
            .filter(|d| !d.replicas.is_empty())
        {
            let kept = old.and_then(|old| {
                let before = old.config.database(&db.name)?;
                let same = before.replicas == db.replicas
                    && old.config.read_split == *rs
                    && old.config.users.first() == Some(monitor)
                    && before.host == db.host
                    && before.port == db.port;
                same.then(|| old.routers.get(&db.name).cloned()).flatten()
            });
            if let Some(router) = kept {
                routers.insert(db.name.clone(), router);
                continue;
            }
            let (Some(primary), Some(target)) = (
                self.pool_in(live, &db.name, &monitor.name),
                live.target(&db.name, &monitor.name),
            ) else {
                continue;
            };
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

    /// This client's pools on each replica of `database`, in order. They
    /// log in as its `primary` pool does (the configured password, or what
    /// the client's login proved), and take a newer proved secret as the
    /// primary pool did.
    pub fn replica_pools(
        &self,
        live: &Live,
        database: &str,
        user: &str,
        primary: &Pool,
    ) -> Vec<Pool> {
        let Some(db) = live.config.database(database) else {
            return Vec::new();
        };
        let secret = primary.secret();
        let mut out = Vec::new();
        for i in 0..db.replicas.len() {
            let (Some(target), Some(cfg)) = (
                live.target_at(database, user, secret.clone(), Some(i)),
                live.pool_config(database),
            ) else {
                continue;
            };
            let key = (database.to_owned(), user.to_owned(), i);
            if let Some(p) = self.replica_pools.get(&key) {
                p.set_target(target);
                out.push(p.clone());
                continue;
            }
            let pool = self
                .replica_pools
                .entry(key)
                .or_insert_with(|| self.new_pool(database, target, cfg))
                .clone();
            out.push(pool);
        }
        out
    }

    /// The pool for (database, user) in the current config, created on
    /// first use. `None` when either is not configured.
    pub fn pool(&self, database: &str, user: &str) -> Option<Pool> {
        self.pool_in(&self.live(), database, user)
    }

    /// The pool for (database, user) as configured in `live`.
    pub fn pool_in(&self, live: &Live, database: &str, user: &str) -> Option<Pool> {
        let key = (database.to_owned(), user.to_owned());
        if let Some(p) = self.pools.get(&key) {
            return Some(p.clone());
        }
        let target = live.target(database, user)?;
        let cfg = live.pool_config(database)?;
        Some(
            self.pools
                .entry(key)
                .or_insert_with(|| self.new_pool(database, target, cfg))
                .clone(),
        )
    }

    /// The pool for (database, user) whose server login uses `secret`, what
    /// the client's own login proved (an `auth_query` user, or a configured
    /// user without a password for upstream). An existing pool takes
    /// `secret` for the connections it makes from now on, so a password
    /// changed in Postgres reaches it with the next login.
    pub fn pool_with_secret(
        &self,
        live: &Live,
        database: &str,
        user: &str,
        secret: ServerSecret,
    ) -> Option<Pool> {
        let target = live.target_at(database, user, secret, None)?;
        let cfg = live.pool_config(database)?;
        let key = (database.to_owned(), user.to_owned());
        let pool = self
            .pools
            .entry(key)
            .or_insert_with(|| self.new_pool(database, target.clone(), cfg))
            .clone();
        pool.set_target(target);
        Some(pool)
    }

    /// A new pool, held at once when its database is paused.
    fn new_pool(&self, database: &str, target: ServerTarget, cfg: PoolConfig) -> Pool {
        let pool = Pool::new(target, cfg);
        if self.paused_databases().contains(database) {
            pool.hold();
        }
        pool
    }
}

impl Live {
    /// Where and as whom the proxy logs in to `database`'s primary for `user`.
    pub(crate) fn target(&self, database: &str, user: &str) -> Option<ServerTarget> {
        let u = self.config.user(user)?;
        let secret = ServerSecret::from_password(u.upstream_password());
        self.target_at(database, &u.name, secret, None)
    }

    /// [`target`](Self::target) with `secret` instead of the configured
    /// password, for any user (an `auth_query` user is not configured), on
    /// `database`'s primary (`None`) or on its replica `replica`.
    pub(crate) fn target_at(
        &self,
        database: &str,
        user: &str,
        secret: ServerSecret,
        replica: Option<usize>,
    ) -> Option<ServerTarget> {
        let db = self.config.database(database)?;
        let (host, port) = match replica {
            None => (&db.host, db.port),
            Some(i) => db.replicas.get(i).map(|r| (&r.host, r.port))?,
        };
        Some(ServerTarget {
            host: host.clone(),
            port,
            user: user.to_owned(),
            dbname: db.upstream_dbname().to_owned(),
            secret,
            connect_timeout: self.config.pool.connect_timeout,
            tls: self.upstream_tls.get(database)?.clone(),
        })
    }

    /// What a pool of (`database`, `user`) that now logs in with
    /// `current` logs in with under this config: the configured password,
    /// or, for a user without one (only a SCRAM verifier, or not configured
    /// but found by `auth_query`), still what a client's login proved.
    /// `None`: new logins may no longer use the pool.
    fn secret_for(
        &self,
        database: &str,
        user: &str,
        current: ServerSecret,
    ) -> Option<ServerSecret> {
        let db = self.config.database(database)?;
        match self.config.user(user) {
            Some(u) if u.upstream_password().is_none() && u.scram_verifier.is_some() => {
                Some(current)
            }
            Some(u) => Some(ServerSecret::from_password(u.upstream_password())),
            None => self.config.auth_user_for(db).map(|_| current),
        }
    }

    pub(crate) fn pool_config(&self, database: &str) -> Option<PoolConfig> {
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
    /// Every pool on a primary: (database, user, its figures).
    pub fn pool_stats(&self) -> Vec<(String, String, PoolStats)> {
        self.pools
            .iter()
            .map(|p| (p.key().0.clone(), p.key().1.clone(), p.value().stats()))
            .collect()
    }

    /// Every pool on a replica: (database, user, replica index, its
    /// figures).
    pub fn replica_pool_stats(&self) -> Vec<(String, String, usize, PoolStats)> {
        self.replica_pools
            .iter()
            .map(|p| {
                let (database, user, index) = p.key();
                (database.clone(), user.clone(), *index, p.value().stats())
            })
            .collect()
    }

    /// Databases paused by `PAUSE`.
    pub fn paused_databases(&self) -> BTreeSet<String> {
        self.paused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every pool (primary and replicas) of `database`.
    fn pools_of(&self, database: &str) -> Vec<Pool> {
        let primary = self.pools.iter().filter(|p| p.key().0 == database);
        let replicas = self.replica_pools.iter().filter(|p| p.key().0 == database);
        primary
            .map(|p| p.value().clone())
            .chain(replicas.map(|p| p.value().clone()))
            .collect()
    }

    /// `PAUSE`: holds new checkouts on `database`'s pools and waits until
    /// its server connections are back, then closes them.
    pub async fn pause(&self, database: &str) {
        self.paused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(database.to_owned());
        let pools = self.pools_of(database);
        futures::future::join_all(pools.iter().map(Pool::pause)).await;
    }

    /// `RESUME`: lets `database`'s clients check out connections again.
    pub fn resume(&self, database: &str) {
        self.paused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(database);
        for pool in self.pools_of(database) {
            pool.resume();
        }
    }

    /// Brings the pools in line with `live` (a reload): pools of databases
    /// and users still configured get the new size, timing and target;
    /// the others are dropped from the map, so new logins cannot use them
    /// while clients already on them keep them until they leave.
    pub(crate) fn reconfigure_pools(&self, live: &Live) {
        let apply = |database: &str, user: &str, replica: Option<usize>, pool: &mut Pool| {
            let target = live
                .secret_for(database, user, pool.secret())
                .and_then(|secret| live.target_at(database, user, secret, replica));
            match (target, live.pool_config(database)) {
                (Some(target), Some(cfg)) => {
                    pool.reconfigure(target, cfg);
                    true
                }
                _ => false,
            }
        };
        self.pools
            .retain(|(database, user), pool| apply(database, user, None, pool));
        self.replica_pools
            .retain(|(database, user, index), pool| apply(database, user, Some(*index), pool));
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
