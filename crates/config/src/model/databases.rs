//! Databases: where each lives upstream, its replicas, TLS to its
//! servers, and how reads are split among them.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{PoolMode, DEFAULT_PORT};

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
