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
//! Semantic rules (ranges, references between sections) are checked by
//! [`Config::validate`], not here.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

/// Default upstream Postgres port.
pub const DEFAULT_PORT: u16 = 5432;
/// Smallest accepted `max_message_size` (64 KiB).
pub const MIN_MESSAGE_SIZE_LIMIT: usize = 64 * 1024;
/// Largest accepted `max_message_size` (1 GiB).
pub const MAX_MESSAGE_SIZE_LIMIT: usize = 1024 * 1024 * 1024;

/// The whole proxy configuration: listener, limits, pool defaults, users and
/// databases. A value returned by this crate's constructors has passed
/// [`Config::validate`]; `Config::default()` has no users or databases and
/// therefore does not.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address clients connect to. Default `127.0.0.1:6432`.
    pub listen: SocketAddr,
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
    /// Databases clients may connect to; at least one, names unique.
    pub databases: Vec<Database>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 6432)),
            max_client_conn: 10_000,
            max_message_size: 256 * 1024 * 1024,
            log_format: LogFormat::default(),
            workers: 0,
            admin_users: Vec::new(),
            pool: PoolSettings::default(),
            users: Vec::new(),
            databases: Vec::new(),
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

    /// The pool mode for `db`: its own `pool_mode`, else `pool.mode`.
    pub fn pool_mode_for(&self, db: &Database) -> PoolMode {
        db.pool_mode.unwrap_or(self.pool.mode)
    }

    /// The server-connection pool size for `db`: its own `pool_size`, else
    /// `pool.size`.
    pub fn pool_size_for(&self, db: &Database) -> usize {
        db.pool_size.unwrap_or(self.pool.size)
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

/// How a client proves its identity to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
pub enum AuthMethod {
    /// No password asked.
    #[serde(rename = "trust")]
    Trust,
    /// MD5 challenge; needs the plaintext `password`.
    #[serde(rename = "md5")]
    Md5,
    /// SCRAM-SHA-256; needs `password` or `scram_verifier`.
    #[default]
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
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

/// A user clients may log in as, with the credentials used on both sides of
/// the proxy. `Debug` redacts every secret.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The user name (the same on the client side and on Postgres).
    pub name: String,
    /// How clients authenticate to the proxy. Default `scram-sha-256`.
    #[serde(default)]
    pub auth: AuthMethod,
    /// Plaintext password, usable for md5 and scram client auth, and the
    /// default `server_password`.
    #[serde(default)]
    pub password: Option<String>,
    /// A Postgres SCRAM secret
    /// `SCRAM-SHA-256$<iter>:<salt>$<storedkey>:<serverkey>`, for scram client
    /// auth without storing the plaintext (see [`crate::ScramSecret`]).
    #[serde(default)]
    pub scram_verifier: Option<String>,
    /// Password the proxy uses to log in to Postgres as this user; defaults
    /// to `password`.
    #[serde(default)]
    pub server_password: Option<String>,
}

impl User {
    /// The password the proxy sends to Postgres: `server_password`, else
    /// `password`, else none (the server must not ask for one).
    pub fn upstream_password(&self) -> Option<&str> {
        self.server_password.as_deref().or(self.password.as_deref())
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn redact(secret: &Option<String>) -> Option<&'static str> {
            secret.as_ref().map(|_| "<redacted>")
        }
        f.debug_struct("User")
            .field("name", &self.name)
            .field("auth", &self.auth)
            .field("password", &redact(&self.password))
            .field("scram_verifier", &redact(&self.scram_verifier))
            .field("server_password", &redact(&self.server_password))
            .finish()
    }
}

/// A database clients may connect to, and where it lives upstream.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// The name clients put in their connection string.
    pub name: String,
    /// Upstream primary host (name or IP address).
    pub host: String,
    /// Upstream port. Default 5432.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Upstream database name; defaults to `name`.
    #[serde(default)]
    pub dbname: Option<String>,
    /// Overrides `pool.mode` for this database.
    #[serde(default)]
    pub pool_mode: Option<PoolMode>,
    /// Overrides `pool.size` for this database.
    #[serde(default)]
    pub pool_size: Option<usize>,
}

fn default_port() -> u16 {
    DEFAULT_PORT
}

impl Database {
    /// A database `name` at `host:port`, with no overrides.
    pub fn new(name: impl Into<String>, host: impl Into<String>, port: u16) -> Self {
        Database {
            name: name.into(),
            host: host.into(),
            port,
            dbname: None,
            pool_mode: None,
            pool_size: None,
        }
    }

    /// The database name to send upstream: `dbname`, else `name`.
    pub fn upstream_dbname(&self) -> &str {
        self.dbname.as_deref().unwrap_or(&self.name)
    }
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
);
keyword_enum!(LogFormat, "log format", Text => "text", Json => "json");
