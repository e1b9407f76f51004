//! The `postgres://` quick form: building or amending a [`Config`] from an
//! upstream URL `postgres://user[:password]@host[:port]/dbname`.
//!
//! The scheme may be `postgres` or `postgresql`. User, password and dbname
//! are percent-decoded; the port defaults to 5432; user, host and dbname are
//! required. The query parameters taken are libpq's `host=/socket/dir` (a
//! Unix-socket upstream), `sslmode` (`disable`, `prefer`, `require`,
//! `verify-ca`, `verify-full`: the database's `tls`), `sslrootcert=FILE`
//! (its `tls_ca_file`), and `sslcert=FILE` and `sslkey=FILE` (its
//! `tls_cert_file` and `tls_key_file`); other parameters and fragments are
//! rejected rather than silently ignored. Errors never quote the URL, which may hold a
//! password.
//!
//! Replica URLs ([`Config::apply_replica_urls`]) take the same form with
//! user and dbname optional: `postgres://[user@]host[:port][/dbname]`.

use std::path::PathBuf;

use url::{Host, Url};

use crate::model::{AuthMethod, Config, Database, Replica, ServerTlsMode, User, DEFAULT_PORT};
use crate::ConfigError;

/// The parts of a `postgres://` URL, decoded; `user` and `dbname` are empty
/// when the URL has none.
struct UrlParts {
    user: String,
    password: Option<String>,
    host: String,
    port: u16,
    dbname: String,
    /// `sslmode`, when given.
    tls: Option<ServerTlsMode>,
    /// `sslrootcert`, when given.
    tls_ca_file: Option<PathBuf>,
    /// `sslcert`, when given.
    tls_cert_file: Option<PathBuf>,
    /// `sslkey`, when given.
    tls_key_file: Option<PathBuf>,
}

impl UrlParts {
    /// Parses the URL forms shared by upstream and replica URLs; `form` is the
    /// expected shape, quoted in errors. Returns the reason on failure.
    fn parse(text: &str, form: &str) -> Result<UrlParts, String> {
        let url = Url::parse(text).map_err(|err| format!("{err}; {form}"))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "scheme must be postgres:// or postgresql://, got {}://",
                url.scheme()
            ));
        }
        // The query parameters taken, as in libpq: `?host=/socket/dir` for
        // a Unix-socket upstream, `sslmode`, and the files `sslrootcert`,
        // `sslcert` and `sslkey`.
        let mut socket_dir = None;
        let mut tls = None;
        let mut tls_ca_file = None;
        let mut tls_cert_file = None;
        let mut tls_key_file = None;
        for (k, v) in url.query_pairs() {
            match &*k {
                "host" if v.starts_with('/') => socket_dir = Some(v.into_owned()),
                "sslmode" => {
                    tls = Some(
                        v.parse::<ServerTlsMode>()
                            .map_err(|e| format!("sslmode: {e}"))?,
                    )
                }
                "sslrootcert" | "sslcert" | "sslkey" if v.is_empty() => {
                    return Err(format!("{k} must not be empty"))
                }
                "sslrootcert" => tls_ca_file = Some(PathBuf::from(&*v)),
                "sslcert" => tls_cert_file = Some(PathBuf::from(&*v)),
                "sslkey" => tls_key_file = Some(PathBuf::from(&*v)),
                _ => {
                    return Err(format!(
                        "query parameter {k:?} is not supported (only host=/socket/dir, \
                         sslmode, sslrootcert, sslcert and sslkey); {form}"
                    ))
                }
            }
        }
        if url.fragment().is_some() {
            return Err(format!("fragments are not supported; {form}"));
        }
        let user = percent_decode(url.username(), "user name")?;
        let password = match url.password() {
            Some(encoded) if !encoded.is_empty() => Some(percent_decode(encoded, "password")?),
            _ => None,
        };
        let host = match (socket_dir, url.host()) {
            (Some(dir), _) => dir,
            (None, Some(Host::Domain(name))) => percent_decode(name, "host")?,
            (None, Some(Host::Ipv4(addr))) => addr.to_string(),
            (None, Some(Host::Ipv6(addr))) => addr.to_string(),
            (None, None) => String::new(),
        };
        if host.is_empty() {
            return Err(format!("a host is required; {form}"));
        }
        if host.contains(',') {
            return Err("multiple hosts are not supported".to_string());
        }
        let port = url.port().unwrap_or(DEFAULT_PORT);
        if port == 0 {
            return Err("port must not be 0".to_string());
        }
        let path = url.path().strip_prefix('/').unwrap_or(url.path());
        if path.contains('/') {
            return Err(format!("the path must be a single database name; {form}"));
        }
        let dbname = percent_decode(path, "database name")?;
        Ok(UrlParts {
            user,
            password,
            host,
            port,
            dbname,
            tls,
            tls_ca_file,
            tls_cert_file,
            tls_key_file,
        })
    }
}

/// The parts of an upstream URL, decoded.
struct UpstreamUrl {
    user: String,
    password: Option<String>,
    host: String,
    port: u16,
    dbname: String,
    tls: Option<ServerTlsMode>,
    tls_ca_file: Option<PathBuf>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
}

impl UpstreamUrl {
    fn parse(text: &str) -> Result<UpstreamUrl, ConfigError> {
        const FORM: &str = "expected postgres://user[:password]@host[:port]/dbname";
        let parts = UrlParts::parse(text, FORM).map_err(ConfigError::url)?;
        if parts.user.is_empty() {
            return Err(ConfigError::url(format!("a user name is required; {FORM}")));
        }
        if parts.dbname.is_empty() {
            return Err(ConfigError::url(format!(
                "a database name is required; {FORM}"
            )));
        }
        Ok(UpstreamUrl {
            user: parts.user,
            password: parts.password,
            host: parts.host,
            port: parts.port,
            dbname: parts.dbname,
            tls: parts.tls,
            tls_ca_file: parts.tls_ca_file,
            tls_cert_file: parts.tls_cert_file,
            tls_key_file: parts.tls_key_file,
        })
    }

    /// The URL's user: scram-sha-256 with the URL's password (used on both
    /// sides), or trust when there is none.
    fn user(&self) -> User {
        User {
            name: self.user.clone(),
            auth: if self.password.is_some() {
                AuthMethod::ScramSha256
            } else {
                AuthMethod::Trust
            },
            password: self.password.clone(),
            scram_verifier: None,
            server_password: self.password.clone(),
        }
    }

    /// The URL's database, named after its dbname, with the URL's
    /// `sslmode` (default `prefer`), `sslrootcert`, `sslcert` and `sslkey`.
    fn database(&self) -> Database {
        let mut db = Database::new(self.dbname.clone(), self.host.clone(), self.port);
        self.apply_tls(&mut db);
        db
    }

    /// Sets `db`'s `tls`, `tls_ca_file`, `tls_cert_file` and `tls_key_file`
    /// to those the URL gives.
    fn apply_tls(&self, db: &mut Database) {
        if let Some(mode) = self.tls {
            db.tls = mode;
        }
        for (from, to) in [
            (&self.tls_ca_file, &mut db.tls_ca_file),
            (&self.tls_cert_file, &mut db.tls_cert_file),
            (&self.tls_key_file, &mut db.tls_key_file),
        ] {
            if from.is_some() {
                to.clone_from(from);
            }
        }
    }
}

impl Config {
    /// The quick form needing no file: one database and one user from a URL
    /// `postgres://user[:password]@host[:port]/dbname`, every other setting
    /// at its default.
    ///
    /// The database is named `dbname` and points at `host:port`, with the
    /// URL's `sslmode` as its `tls` (default `prefer`), `sslrootcert` as
    /// its `tls_ca_file`, and `sslcert` / `sslkey` as its `tls_cert_file` /
    /// `tls_key_file`. The user
    /// logs in to the proxy with the URL's password (auth scram-sha-256) or,
    /// without a password, with trust; its `server_password` is the URL's
    /// password.
    pub fn from_upstream_url(url: &str) -> Result<Config, ConfigError> {
        let upstream = UpstreamUrl::parse(url)?;
        let config = Config {
            users: vec![upstream.user()],
            databases: vec![upstream.database()],
            ..Config::default()
        };
        config.validate()?;
        Ok(config)
    }

    /// Merges an upstream URL into a loaded config (`--config FILE
    /// --upstream URL`: the flag overrides the file). The exact rule:
    ///
    /// 1. Every database whose [`upstream_dbname`](Database::upstream_dbname)
    ///    equals the URL's dbname gets the URL's host and port, and its
    ///    `sslmode` / `sslrootcert` / `sslcert` / `sslkey` as `tls` /
    ///    `tls_ca_file` / `tls_cert_file` / `tls_key_file` when the URL has
    ///    them; its name, `dbname`, pool overrides and the TLS settings the
    ///    URL does not give are kept.
    /// 2. If none matched, a database named after the URL's dbname is added
    ///    (as in [`Config::from_upstream_url`]); if that name is already taken
    ///    by a database pointing at another upstream dbname, this is an error.
    /// 3. The URL's user (built as in [`Config::from_upstream_url`]) replaces
    ///    the user of the same name entirely, or is added.
    /// 4. Everything else (listener, limits, pool, other users and
    ///    databases, `admin_users`) is kept, and the result is validated.
    ///
    /// On error `self` is left unchanged.
    pub fn apply_upstream_url(&mut self, url: &str) -> Result<(), ConfigError> {
        let upstream = UpstreamUrl::parse(url)?;
        let mut next = self.clone();
        let mut matched = false;
        for db in &mut next.databases {
            if db.upstream_dbname() == upstream.dbname {
                db.host.clone_from(&upstream.host);
                db.port = upstream.port;
                upstream.apply_tls(db);
                matched = true;
            }
        }
        if !matched {
            if let Some(clash) = next.database(&upstream.dbname) {
                return Err(ConfigError::url(format!(
                    "database {:?} is already configured with upstream dbname {:?}",
                    clash.name,
                    clash.upstream_dbname()
                )));
            }
            next.databases.push(upstream.database());
        }
        let user = upstream.user();
        match next.users.iter_mut().find(|u| u.name == user.name) {
            Some(existing) => *existing = user,
            None => next.users.push(user),
        }
        next.validate()?;
        *self = next;
        Ok(())
    }
}

impl Config {
    /// Adds streaming replicas given as URLs (the `--replica URL` flag,
    /// repeatable) to the databases they replicate. The exact rule:
    ///
    /// 1. Each URL has the form `postgres://[user[:password]@]host[:port][/dbname]`
    ///    and is parsed like the upstream URL (`postgres` or `postgresql`
    ///    scheme, port default 5432, `?host=/socket/dir` for a Unix socket,
    ///    no other query parameters, no fragment). `sslmode`,
    ///    `sslrootcert`, `sslcert` and `sslkey` are refused: a replica uses
    ///    its database's TLS settings.
    /// 2. User and password are ignored: the proxy logs in to a replica with
    ///    the same user, password and upstream database name as to the
    ///    primary (a physical replica has the primary's roles and databases).
    /// 3. Without a dbname the replica is added to every database; with one,
    ///    to every database whose [`upstream_dbname`](Database::upstream_dbname)
    ///    is that name (at least one must be). Either way those databases must
    ///    all have the same primary (host and port), since a streaming
    ///    replica copies one server; otherwise this is an error asking to name
    ///    the database or use the config file.
    /// 4. A database that already lists a replica at that host and port keeps
    ///    it (with its weight); otherwise the replica is appended with weight 1.
    /// 5. The result is validated (so a URL naming a database's own primary
    ///    is rejected).
    ///
    /// On error `self` is left unchanged. URL errors are
    /// [`ConfigError::ReplicaUrl`] with the URL's position in `urls`.
    pub fn apply_replica_urls(&mut self, urls: &[String]) -> Result<(), ConfigError> {
        const FORM: &str = "expected postgres://[user@]host[:port][/dbname]";
        let mut next = self.clone();
        for (index, text) in urls.iter().enumerate() {
            let fail = |reason: String| ConfigError::ReplicaUrl { index, reason };
            let parts = UrlParts::parse(text, FORM).map_err(fail)?;
            let tls_given = parts.tls.is_some()
                || parts.tls_ca_file.is_some()
                || parts.tls_cert_file.is_some()
                || parts.tls_key_file.is_some();
            if tls_given {
                return Err(fail(
                    "sslmode, sslrootcert, sslcert and sslkey are not supported in a replica \
                     URL: a replica uses the TLS settings (tls, tls_ca_file, tls_cert_file, \
                     tls_key_file) of the database it belongs to"
                        .to_string(),
                ));
            }
            let targets: Vec<usize> = next
                .databases
                .iter()
                .enumerate()
                .filter(|(_, db)| parts.dbname.is_empty() || db.upstream_dbname() == parts.dbname)
                .map(|(i, _)| i)
                .collect();
            let Some(&first) = targets.first() else {
                return Err(fail(if next.databases.is_empty() {
                    "no database is configured to add the replica to".to_string()
                } else {
                    format!(
                        "no configured database has upstream dbname {:?}",
                        parts.dbname
                    )
                }));
            };
            let primary = (&next.databases[first].host, next.databases[first].port);
            if targets
                .iter()
                .any(|&i| (&next.databases[i].host, next.databases[i].port) != primary)
            {
                return Err(fail(
                    "the databases it would apply to have different primaries; name the \
                     database in the URL (postgres://host:port/dbname) or list the replicas \
                     in the config file"
                        .to_string(),
                ));
            }
            for i in targets {
                let db = &mut next.databases[i];
                let known = db
                    .replicas
                    .iter()
                    .any(|r| r.host == parts.host && r.port == parts.port);
                if !known {
                    db.replicas
                        .push(Replica::new(parts.host.clone(), parts.port));
                }
            }
        }
        next.validate()?;
        *self = next;
        Ok(())
    }
}

/// Decodes `%XX` escapes; `what` names the URL part for the error.
fn percent_decode(text: &str, what: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = |at: usize| bytes.get(at).and_then(|&b| (b as char).to_digit(16));
        match (hex(i + 1), hex(i + 2)) {
            // Both digits are < 16, so the byte cannot overflow.
            (Some(high), Some(low)) => out.push((high * 16 + low) as u8),
            _ => return Err(format!("bad percent-escape in the {what}")),
        }
        i += 3;
    }
    String::from_utf8(out).map_err(|_| format!("the {what} is not valid UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("p%40ss%2Fw%3Ard", "x").ok().as_deref(),
            Some("p@ss/w:rd")
        );
        assert_eq!(
            percent_decode("caf%C3%A9", "x").ok().as_deref(),
            Some("café")
        );
        assert!(percent_decode("%4", "x").is_err());
        assert!(percent_decode("%zz", "x").is_err());
        assert!(percent_decode("%+1", "x").is_err());
        assert!(percent_decode("%FF", "x").is_err());
    }
}
