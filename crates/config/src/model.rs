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

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

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
    /// A TLS client certificate that chains to `tls.ca_file` and whose
    /// common name is the user name, as Postgres's `cert`; no password is
    /// asked. Needs `tls.ca_file`. A `password` is then only what the proxy
    /// logs in to Postgres with (the default `server_password`).
    #[serde(rename = "cert")]
    Cert,
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
    /// default `server_password` (with `cert` auth, only that).
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
    /// Streaming replicas of this database's primary that reads may be
    /// split to (see [`ReadSplit`]). Default none: everything runs on the
    /// primary. They use the database's `tls`, `tls_ca_file`,
    /// `tls_cert_file` and `tls_key_file`.
    #[serde(default)]
    pub replicas: Vec<Replica>,
    /// TLS on the proxy's own connections to this database's servers (the
    /// primary and its replicas), as libpq's `sslmode`. Default `prefer`.
    /// Never used for a Unix-socket host (as in libpq).
    #[serde(default)]
    pub tls: ServerTlsMode,
    /// PEM file with the certificates the servers' certificates are
    /// verified against; required by `verify-ca` and `verify-full`. As in
    /// libpq with a root certificate file, `prefer` and `require` then
    /// verify the chain too (like `verify-ca`). Read when the config is
    /// loaded (at start and on reload): a file that cannot be used makes
    /// every TLS connection to the database's servers fail (08001, with
    /// the file named in the log). Default none.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM file with the client certificate (then any intermediates) the
    /// proxy presents when a server asks for one (libpq's `sslcert`: a
    /// `cert` line or `clientcert=` in `pg_hba.conf`). Set with
    /// `tls_key_file` or not at all; not allowed with `tls: disable`. Read
    /// and, when unusable, reported like `tls_ca_file`. Default none.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM file with the private key of `tls_cert_file` (PKCS#8, PKCS#1 or
    /// SEC1; libpq's `sslkey`). Default none.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// Overrides the top-level `auth_user` for this database.
    #[serde(default)]
    pub auth_user: Option<String>,
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
            replicas: Vec::new(),
            tls: ServerTlsMode::default(),
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            auth_user: None,
        }
    }

    /// The database name to send upstream: `dbname`, else `name`.
    pub fn upstream_dbname(&self) -> &str {
        self.dbname.as_deref().unwrap_or(&self.name)
    }
}

/// A streaming replica (hot standby) of a database's primary. The proxy
/// logs in to it with the same user name, password and database name as to
/// the primary (a physical replica has the primary's roles and databases).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replica {
    /// Host name, IP address, or Unix socket directory (starting with `/`).
    pub host: String,
    /// Port. Default 5432.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Share of the reads this replica gets relative to the others (with
    /// round-robin balancing), or how many reads in flight it takes per one
    /// on a weight-1 replica (with least-outstanding). Default 1, >= 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

impl Replica {
    /// A replica at `host:port` with weight 1.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Replica {
            host: host.into(),
            port,
            weight: default_weight(),
        }
    }
}

/// How reads pick a replica among those that are up and caught up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balancing {
    /// Smooth weighted round robin: each replica gets reads in proportion to
    /// its `weight`, interleaved.
    #[default]
    RoundRobin,
    /// The replica with the fewest reads in flight relative to its `weight`.
    LeastOutstanding,
}

/// Read splitting: health checks of the replicas and the rules for sending
/// a read to one (YAML key `read_split`; every field optional).
///
/// Which statements count as reads is not configured here: only those that
/// cannot change an answer (see the design notes) are ever sent to a
/// replica.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadSplit {
    /// How often the primary's WAL position and every replica's replay
    /// position are sampled. Default 1 s; must be > 0.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub health_check_interval: Duration,
    /// A replica further behind the primary's WAL than this many bytes is
    /// skipped. Default 16 MiB (16777216).
    pub max_lag_bytes: u64,
    /// A replica behind the primary whose last replayed transaction is older
    /// than this is skipped. Default 5 s.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub max_lag: Duration,
    /// How a replica is picked. Default `round_robin`.
    pub balancing: Balancing,
    /// Read-your-writes: after a client writes, its reads stay on the
    /// primary until a replica has replayed past the write. With a window,
    /// for at most that long after the write; after it any healthy replica
    /// may serve them (0 turns read-your-writes off). Default none (no
    /// upper bound). YAML `null` is none.
    #[serde(deserialize_with = "crate::duration::deserialize_option")]
    pub read_your_writes_window: Option<Duration>,
}

impl Default for ReadSplit {
    fn default() -> Self {
        ReadSplit {
            health_check_interval: Duration::from_secs(1),
            max_lag_bytes: 16 * 1024 * 1024,
            max_lag: Duration::from_secs(5),
            balancing: Balancing::default(),
            read_your_writes_window: None,
        }
    }
}

/// TLS on the client leg: the certificate the proxy presents to clients
/// and whether they must use it (YAML key `tls`). The files are read when
/// the proxy starts; a missing or unparsable one stops it there.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM file with the server certificate first, then any intermediates.
    pub cert_file: PathBuf,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// Whether clients may stay in plain text. Default `allow`.
    #[serde(default)]
    pub client_mode: TlsClientMode,
    /// PEM file with the certificates client certificates must chain to
    /// (Postgres's `ssl_ca_file`). With it, TLS clients are asked for a
    /// certificate, and one that does not chain to these fails the
    /// handshake. Default none: no client certificates.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Whether a client certificate is required, as `clientcert` in
    /// `pg_hba.conf`. Default `none`.
    #[serde(default)]
    pub client_cert: ClientCertMode,
}

/// Whether clients must present a certificate (YAML `tls.client_cert`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientCertMode {
    /// Not required; one presented is still checked against `ca_file`.
    #[default]
    None,
    /// Every login must come over TLS with a certificate that chains to
    /// `ca_file` (28000 otherwise).
    VerifyCa,
    /// As `verify-ca`, and the certificate's common name must be the user
    /// name the client logs in as.
    VerifyFull,
}

impl ClientCertMode {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientCertMode::None => "none",
            ClientCertMode::VerifyCa => "verify-ca",
            ClientCertMode::VerifyFull => "verify-full",
        }
    }
}

/// Whether a client must negotiate TLS before it logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsClientMode {
    /// TLS and plain-text clients are both accepted (libpq's default
    /// `sslmode=prefer` then uses TLS).
    #[default]
    Allow,
    /// A client that logs in without TLS is refused (28000).
    Require,
}

/// Whether and how the proxy uses TLS to a database server, with the
/// meaning of libpq's `sslmode` of the same name (`allow` is not offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerTlsMode {
    /// Plain text; no SSLRequest is sent.
    Disable,
    /// TLS when the server offers it, else plain text.
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is not verified (unless
    /// `tls_ca_file` is set, as in libpq).
    Require,
    /// TLS, with the certificate chain verified against `tls_ca_file`
    /// (not the host name).
    VerifyCa,
    /// TLS, with the chain verified against `tls_ca_file` and the
    /// certificate issued for the configured host name or IP address.
    VerifyFull,
}

impl ServerTlsMode {
    /// Whether the mode verifies certificates against `tls_ca_file`, so
    /// that one must be configured.
    pub fn verifies(self) -> bool {
        matches!(self, ServerTlsMode::VerifyCa | ServerTlsMode::VerifyFull)
    }
}

/// When a coalesced write is acknowledged to its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    /// Group commit: the reply waits until the flush carrying the write has
    /// committed, and a failure reaches the writer.
    #[default]
    Flushed,
    /// Write-behind: the reply is sent once the write is in the map; rows
    /// that later fail to flush are counted, logged and written to the
    /// rule's `rejects_file`.
    Immediate,
}

/// One coalescing rule: which upsert calls are merged and how they are
/// flushed.
///
/// A rule targets either a function (`SELECT schema.fn($1, $2, ...)`, with
/// `arguments`, optional `defaults` and a configured bulk `flush` statement)
/// or a table (`INSERT INTO schema.table ... ON CONFLICT (key) DO UPDATE
/// ...`, flushed with a bulk statement derived from the client's own).
///
/// **Names.** `function`, `table`, `arguments`, `key`, `writes` and the keys
/// of `defaults` are SQL identifiers written without quotes: the YAML loader
/// lower-cases them (ASCII, as PostgreSQL folds unquoted identifiers), and
/// validation accepts only `[A-Za-z0-9_$]` (plus one `.` between schema
/// and name in `function`, `table` and `writes`), not starting with a digit
/// or `$`, at most 63 bytes per part. Quoted (case-sensitive or exotic)
/// identifiers are therefore not supported. A validated rule always holds
/// lower-case names.
///
/// The YAML form is `#[serde(default)]`: omitted fields take the values of
/// [`CoalesceRule::default`]; a missing `name` or `key` is reported by
/// validation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoalesceRule {
    /// The rule's name (in logs, metrics and `SHOW COALESCE`); non-empty,
    /// unique among rules.
    pub name: String,
    /// The configured database (client-facing `name`) this rule is limited
    /// to; `None` means every database.
    pub database: Option<String>,
    /// The coalesced function, optionally schema-qualified, e.g.
    /// `entity.update_metadata_optimized`. Exactly one of `function` and
    /// `table` is set.
    #[serde(deserialize_with = "deserialize_opt_ident")]
    pub function: Option<String>,
    /// The coalesced table of `INSERT ... ON CONFLICT (key) DO UPDATE ...`
    /// statements, optionally schema-qualified, e.g. `entity.entity_metadata`.
    #[serde(deserialize_with = "deserialize_opt_ident")]
    pub table: Option<String>,
    /// Function rules: the function's parameter names, in order (required,
    /// non-empty, unique). Table rules: must be empty.
    #[serde(deserialize_with = "deserialize_idents")]
    pub arguments: Vec<String>,
    /// Function rules: the values (text form; YAML `null` = SQL NULL) used
    /// for trailing arguments a call omits, keyed by argument name. The
    /// defaulted arguments must be a suffix of `arguments`. Table rules:
    /// must be empty.
    #[serde(deserialize_with = "deserialize_defaults")]
    pub defaults: BTreeMap<String, Option<String>>,
    /// The coalescing key: for function rules, argument names (a subset of
    /// `arguments`); for table rules, the `ON CONFLICT` target columns.
    /// Non-empty, unique.
    #[serde(deserialize_with = "deserialize_idents")]
    pub key: Vec<String>,
    /// Tables this rule's writes land in besides `table`, optionally
    /// schema-qualified: for a function rule, the tables the function
    /// writes (the proxy cannot see inside it), e.g.
    /// `[entity.entity_metadata]`. A statement that references one of them
    /// (a read, a DELETE, DDL) first flushes the rule's pending writes, so
    /// readers see acknowledged writes. Default empty; unique.
    #[serde(deserialize_with = "deserialize_idents")]
    pub writes: Vec<String>,
    /// Function rules (required): the bulk statement, taking one `text[]`
    /// parameter per argument in `arguments` order (`$1` = `arguments[0]`,
    /// ...), each holding one element per coalesced row, e.g.
    /// `SELECT entity.update_metadata_batch($1::text[], $2::text[],
    /// $3::text[]::jsonb[], $4::text[])`. Must use exactly `$1`..`$N` for N
    /// = `arguments.len()`, and may use `$N+1`: it then also receives each
    /// row's arrival stamp (see [`CoalesceRule::version_column`]) for the
    /// function's own last-write-wins guard. Table rules: must be `None`
    /// (the flush statement is derived from the client's statement).
    pub flush: Option<String>,
    /// Table rules: a `bigint` column the proxy fills with each write's
    /// arrival stamp (microseconds since the Unix epoch, strictly
    /// increasing within a proxy), and which guards the flush: a stored row
    /// is only overwritten by a write stamped no earlier than it, so that
    /// last-write-wins holds across several proxies writing the same rows.
    /// The client's statements must not write the column themselves (such
    /// statements pass through). Default none: no guard. Function rules get
    /// the stamps as their flush statement's `$N+1` instead.
    #[serde(deserialize_with = "deserialize_opt_ident")]
    pub version_column: Option<String>,
    /// When writes are acknowledged. Default `flushed`.
    pub ack: AckMode,
    /// `immediate` rules: how long writes gather before a flush (unless
    /// `max_batch` fill first). Default 2 ms; must be > 0. `flushed` rules
    /// do not wait: their writers are waiting already, so an idle flusher
    /// starts at once and writes gather while a flush is in flight (group
    /// commit).
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub flush_interval: Duration,
    /// Most rows per flush statement. Default 5000; >= 1.
    pub max_batch: usize,
    /// Most distinct pending keys for this rule before new writes wait.
    /// Default 100 000; >= `max_batch`.
    pub max_pending: usize,
    /// How long a write waits for room in a full map before it fails.
    /// Default 5 s; 0 fails at once.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub pending_wait_timeout: Duration,
    /// `immediate` rules only: rows that fail to flush are appended here as
    /// JSON lines. `None`: they are only counted and logged.
    pub rejects_file: Option<PathBuf>,
}

impl Default for CoalesceRule {
    /// An empty rule (no name, target or key: not valid by itself) with the
    /// default tuning.
    fn default() -> Self {
        CoalesceRule {
            name: String::new(),
            database: None,
            function: None,
            table: None,
            arguments: Vec::new(),
            defaults: BTreeMap::new(),
            key: Vec::new(),
            writes: Vec::new(),
            flush: None,
            version_column: None,
            ack: AckMode::default(),
            flush_interval: Duration::from_millis(2),
            max_batch: 5000,
            max_pending: 100_000,
            pending_wait_timeout: Duration::from_secs(5),
            rejects_file: None,
        }
    }
}

impl CoalesceRule {
    /// Whether the rule applies to the configured database `database`: it
    /// names no database, or this one.
    pub fn applies_to(&self, database: &str) -> bool {
        self.database.as_deref().is_none_or(|db| db == database)
    }

    /// The function or table the rule targets (`function` wins if, invalidly,
    /// both are set; empty if neither is).
    pub fn target(&self) -> &str {
        self.function
            .as_deref()
            .or(self.table.as_deref())
            .unwrap_or("")
    }

    /// Whether this is a function rule (as opposed to a table rule).
    pub fn is_function(&self) -> bool {
        self.function.is_some()
    }

    /// Whether the flush receives each row's arrival stamp: a table rule
    /// with a `version_column`, or a function rule whose flush statement
    /// uses the parameter after the arguments' (`$N+1`).
    pub fn takes_stamps(&self) -> bool {
        match &self.flush {
            Some(flush) if self.is_function() => {
                crate::validate::placeholders(flush).contains(&(self.arguments.len() + 1))
            }
            _ => self.version_column.is_some(),
        }
    }

    /// The position of argument `name` in `arguments`.
    pub fn argument_index(&self, name: &str) -> Option<usize> {
        self.arguments.iter().position(|arg| arg == name)
    }
}

/// Lower-cases an unquoted SQL identifier as PostgreSQL folds it (ASCII only).
fn fold_ident(name: String) -> String {
    name.to_ascii_lowercase()
}

/// `deserialize_with` for an optional identifier: lower-cased.
fn deserialize_opt_ident<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.map(fold_ident))
}

/// `deserialize_with` for a list of identifiers: each lower-cased.
fn deserialize_idents<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(Vec::<String>::deserialize(deserializer)?
        .into_iter()
        .map(fold_ident)
        .collect())
}

/// `deserialize_with` for `defaults`: argument names lower-cased; two names
/// that fold to the same one are an error.
fn deserialize_defaults<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, Option<String>>, D::Error> {
    let raw = BTreeMap::<String, Option<String>>::deserialize(deserializer)?;
    let mut folded = BTreeMap::new();
    for (name, value) in raw {
        let name = fold_ident(name);
        if folded.contains_key(&name) {
            return Err(D::Error::custom(format!(
                "duplicate default for argument {name:?} (names are case-insensitive)"
            )));
        }
        folded.insert(name, value);
    }
    Ok(folded)
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
