//! The configuration data model: what the YAML file may say, and the defaults
//! for what it leaves out.
//!
//! Every struct rejects unknown keys. Defaults live in one place per struct:
//! [`Config`] and [`PoolSettings`] are `#[serde(default)]` as a whole and take
//! missing fields from their `Default` impl; [`User`] and [`Database`] have
//! required fields, so each optional field carries its own `#[serde(default)]`.
//! To add a setting, add the field (with `#[serde(default)]` on `User` /
//! `Database`) and, on `Config` / `PoolSettings`, its default in `Default`;
//! the compiler points at the `Default` impl if it is forgotten.
//!
//! [`CoalesceRule`] is `#[serde(default)]` as a whole too (its `Default` is
//! an empty rule with the default tuning), so a missing `name` or `key`
//! surfaces as a validation error naming the field rather than as a parse
//! error.
//!
//! Semantic rules (ranges, references between sections) are checked by
//! [`Config::validate`], not here.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

mod coalesce;
mod databases;
mod tls;
mod users;

pub use coalesce::{AckMode, CoalesceRule};
pub use databases::{Balancing, Database, ReadSplit, Replica, ServerTlsMode};
pub use tls::{ClientCertMode, Tls, TlsClientMode};
pub use users::{AuthMethod, User};

/// Default upstream Postgres port.
pub const DEFAULT_PORT: u16 = 5432;
/// Smallest accepted `max_message_size` (64 KiB).
pub const MIN_MESSAGE_SIZE_LIMIT: usize = 64 * 1024;
/// Largest accepted `max_message_size` (1 GiB).
pub const MAX_MESSAGE_SIZE_LIMIT: usize = 1024 * 1024 * 1024;
/// PgBouncer's default `auth_query`: a user's name and password hash (md5
/// or SCRAM verifier) from `pg_shadow`, which only a superuser may read.
pub const DEFAULT_AUTH_QUERY: &str = "SELECT usename, passwd FROM pg_shadow WHERE usename = $1";

/// The whole proxy configuration: listener, limits, pool defaults, users,
/// databases and coalescing rules. A value returned by this crate's
/// constructors has passed [`Config::validate`]; `Config::default()` has no
/// users or databases and therefore does not.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address clients connect to. Default `127.0.0.1:6432`.
    pub listen: SocketAddr,
    /// Address of the Prometheus metrics endpoint (`GET /metrics`), e.g.
    /// `127.0.0.1:9187`. Default none: no endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// Maximum number of simultaneous client connections. Default 10 000.
    pub max_client_conn: usize,
    /// Largest protocol message accepted, in bytes. Default 256 MiB; must be
    /// within [`MIN_MESSAGE_SIZE_LIMIT`]..=[`MAX_MESSAGE_SIZE_LIMIT`].
    pub max_message_size: usize,
    /// Log output format. Default `text`.
    pub log_format: LogFormat,
    /// Threads serving clients. 0 (the default) means half the machine's
    /// cores, at least one: the proxy shares the machine with Postgres and
    /// its clients, and one thread per two cores spends the least CPU per
    /// forwarded transaction (measured with pgbench on 2 cores).
    pub workers: usize,
    /// Users allowed to use the admin console; each must be in `users`.
    pub admin_users: Vec<String>,
    /// Pool settings applying to every database unless overridden there.
    pub pool: PoolSettings,
    /// Users clients may log in as; at least one, names unique.
    pub users: Vec<User>,
    /// The user the proxy logs in as to look up a client's user that is
    /// not in `users` (PgBouncer's `auth_user`): it runs `auth_query` on
    /// the database the client asked for, with that user's credentials from
    /// `users`. A database's own `auth_user` overrides it. Default none:
    /// only `users` may log in.
    pub auth_user: Option<String>,
    /// The query `auth_user` runs to look a user up: `$1` is the user name,
    /// the reply's first row is (name, password hash), the hash an md5 hash
    /// or a SCRAM verifier as Postgres stores them. Default
    /// [`DEFAULT_AUTH_QUERY`].
    pub auth_query: String,
    /// Databases clients may connect to; at least one, names unique.
    pub databases: Vec<Database>,
    /// Which upsert calls are coalesced, and how they are flushed (YAML key
    /// `coalesce`). Default none: every statement passes through.
    pub coalesce: Vec<CoalesceRule>,
    /// How reads are split to the databases' `replicas` (YAML key
    /// `read_split`). Unused by databases without replicas.
    pub read_split: ReadSplit,
    /// TLS for clients connecting to the proxy (YAML key `tls`). Default
    /// none: an SSLRequest is answered `N` and clients talk in plain text.
    pub tls: Option<Tls>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 6432)),
            metrics_listen: None,
            max_client_conn: 10_000,
            max_message_size: 256 * 1024 * 1024,
            log_format: LogFormat::default(),
            workers: 0,
            admin_users: Vec::new(),
            pool: PoolSettings::default(),
            users: Vec::new(),
            auth_user: None,
            auth_query: DEFAULT_AUTH_QUERY.to_owned(),
            databases: Vec::new(),
            coalesce: Vec::new(),
            read_split: ReadSplit::default(),
            tls: None,
        }
    }
}

impl Config {
    /// The number of worker threads to run: `workers`, or half the cores.
    pub fn worker_threads(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / 2).max(1)
    }

    /// The user named `name`, if configured.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|user| user.name == name)
    }

    /// The database clients know as `name`, if configured.
    pub fn database(&self, name: &str) -> Option<&Database> {
        self.databases.iter().find(|db| db.name == name)
    }

    /// The user that looks up users not in `users` for `db` (see
    /// [`Config::auth_user`]): its own `auth_user`, else the top-level one.
    pub fn auth_user_for<'a>(&'a self, db: &'a Database) -> Option<&'a str> {
        db.auth_user.as_deref().or(self.auth_user.as_deref())
    }

    /// The pool mode for `db`: its own `pool_mode`, else `pool.mode`.
    pub fn pool_mode_for(&self, db: &Database) -> PoolMode {
        db.pool_mode.unwrap_or(self.pool.mode)
    }

    /// The server-connection pool size for `db`: its own `pool_size`, else
    /// `pool.size`.
    pub fn pool_size_for(&self, db: &Database) -> usize {
        db.pool_size.unwrap_or(self.pool.size)
    }

    /// The coalescing rules that apply to the configured database `database`
    /// (its client-facing `name`): those without a `database` and those
    /// naming it, in file order.
    pub fn rules_for(&self, database: &str) -> Vec<&CoalesceRule> {
        self.coalesce
            .iter()
            .filter(|rule| rule.applies_to(database))
            .collect()
    }
}

/// When a server connection returns to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// A client keeps its server connection until it disconnects.
    Session,
    /// A client holds a server connection only for one transaction.
    #[default]
    Transaction,
}

/// Pool settings shared by all databases (see [`Database`] for overrides).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolSettings {
    /// Pooling mode. Default `transaction`.
    pub mode: PoolMode,
    /// Maximum server connections per (database, user) pool. Default 20, >= 1.
    pub size: usize,
    /// Idle server connections kept open per pool. Default 0, <= `size`.
    pub min_idle: usize,
    /// Idle server connections are closed after this long. Default 10 min.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub idle_timeout: Duration,
    /// Limit for establishing (and authenticating) a server connection.
    /// Default 5 s.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub connect_timeout: Duration,
    /// A client waiting longer than this for a server connection gets an
    /// error. Default 120 s.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub query_wait_timeout: Duration,
    /// Server connections older than this are closed once idle. Default 1 h.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub server_lifetime: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            mode: PoolMode::default(),
            size: 20,
            min_idle: 0,
            idle_timeout: Duration::from_secs(10 * 60),
            connect_timeout: Duration::from_secs(5),
            query_wait_timeout: Duration::from_secs(120),
            server_lifetime: Duration::from_secs(60 * 60),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Implements `as_str`, `Display` and `FromStr` for a unit enum from one
/// table of (variant, YAML spelling), so the three always agree with serde.
macro_rules! keyword_enum {
    ($ty:ident, $what:literal, $($variant:ident => $text:literal),+ $(,)?) => {
        impl $ty {
            /// The spelling used in the config file.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, String> {
                match text {
                    $($text => Ok($ty::$variant),)+
                    other => Err(format!(
                        concat!("unknown ", $what, " {:?}, expected one of: {}"),
                        other,
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

keyword_enum!(PoolMode, "pool mode", Session => "session", Transaction => "transaction");
keyword_enum!(
    AuthMethod,
    "auth method",
    Trust => "trust",
    Md5 => "md5",
    ScramSha256 => "scram-sha-256",
    Cert => "cert",
);
keyword_enum!(LogFormat, "log format", Text => "text", Json => "json");
keyword_enum!(TlsClientMode, "TLS client mode", Allow => "allow", Require => "require");
keyword_enum!(
    ClientCertMode,
    "client certificate mode",
    None => "none",
    VerifyCa => "verify-ca",
    VerifyFull => "verify-full",
);
keyword_enum!(
    ServerTlsMode,
    "server TLS mode",
    Disable => "disable",
    Prefer => "prefer",
    Require => "require",
    VerifyCa => "verify-ca",
    VerifyFull => "verify-full",
);
keyword_enum!(AckMode, "ack mode", Flushed => "flushed", Immediate => "immediate");
keyword_enum!(
    Balancing,
    "balancing policy",
    RoundRobin => "round_robin",
    LeastOutstanding => "least_outstanding",
);
