//! [`Config::validate`]: the rules serde cannot express — ranges, required
//! credentials per auth method, unique names, references between sections.
//!
//! The first violation found is returned as [`ConfigError::Invalid`] with
//! the field path (`users[1].password`) and a reason.

use std::collections::HashSet;
use std::time::Duration;

use crate::model::{
    AuthMethod, ClientCertMode, Config, PoolSettings, ReadSplit, Tls, User, MAX_MESSAGE_SIZE_LIMIT,
    MIN_MESSAGE_SIZE_LIMIT,
};
use crate::scram::ScramSecret;
use crate::ConfigError;

mod coalesce;
mod databases;

pub(crate) use coalesce::placeholders;
use coalesce::validate_rule;
use databases::validate_database;

impl Config {
    /// Checks every rule; see the field docs of [`Config`] and its parts.
    ///
    /// Rules: `max_client_conn >= 1`; `max_message_size` within 64 KiB..=1
    /// GiB; `pool.size >= 1`, `pool.min_idle <= pool.size`, every pool
    /// duration non-zero; at least one user and one database, names
    /// non-empty and unique; md5 users need `password`, scram-sha-256 users
    /// need `password` or a well-formed `scram_verifier`, and
    /// `scram_verifier` is only allowed with scram-sha-256; cert users need
    /// `tls.ca_file` (a `password` is optional: the upstream one); `admin_users`,
    /// `auth_user` and each database's `auth_user` name configured users;
    /// `auth_query` is non-empty and uses `$1` and no other parameter;
    /// databases need a host, a non-zero port, and a
    /// `pool_size` override (if any) in `max(1, pool.min_idle)..`. Names and
    /// secrets must not contain NUL bytes (the protocol cannot carry them).
    ///
    /// Replicas: a host (no NUL bytes), a non-zero port, `weight >= 1`, no
    /// two replicas of one database at the same host and port, and none at
    /// the database's own `host` and `port` (that is the primary).
    /// `read_split.health_check_interval > 0`.
    ///
    /// Coalescing rules: names non-empty and unique; `database` names a
    /// configured database; exactly one of `function` / `table`, a valid
    /// identifier (see [`CoalesceRule`]); function rules need non-empty,
    /// unique `arguments`, `defaults` only for a suffix of them, a `key`
    /// within them and a `flush` statement using exactly `$1`..`$N`; table
    /// rules need a `key` and no `arguments`, `defaults` or `flush`; `writes`
    /// holds unique identifiers;
    /// `flush_interval > 0`, `max_batch >= 1`, `max_pending >= max_batch`;
    /// `rejects_file` only with `ack: immediate`; no two rules on the same
    /// function or table for an overlapping set of databases.
    ///
    /// TLS: `tls.cert_file` and `tls.key_file` are non-empty paths. Whether
    /// they exist and hold a usable certificate and key is checked when the
    /// proxy starts, which reads them. A database's `tls: verify-ca` or
    /// `verify-full` needs a `tls_ca_file`, which must not be empty and is
    /// not allowed with `tls: disable`; so are `tls_cert_file` and
    /// `tls_key_file`, which come together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_client_conn == 0 {
            return Err(ConfigError::invalid(
                "max_client_conn",
                "must be at least 1",
            ));
        }
        if self.workers > 256 {
            return Err(ConfigError::invalid("workers", "must be at most 256"));
        }
        if !(MIN_MESSAGE_SIZE_LIMIT..=MAX_MESSAGE_SIZE_LIMIT).contains(&self.max_message_size) {
            return Err(ConfigError::invalid(
                "max_message_size",
                format!(
                    "must be between {MIN_MESSAGE_SIZE_LIMIT} (64 KiB) and \
                     {MAX_MESSAGE_SIZE_LIMIT} (1 GiB) bytes, got {}",
                    self.max_message_size
                ),
            ));
        }
        validate_pool(&self.pool)?;
        validate_read_split(&self.read_split)?;
        if let Some(tls) = &self.tls {
            validate_tls(tls)?;
        }
        self.validate_users()?;
        validate_auth_query(&self.auth_query)?;
        self.validate_databases()?;
        self.validate_coalesce()
    }

    /// Users and `admin_users`.
    fn validate_users(&self) -> Result<(), ConfigError> {
        if self.users.is_empty() {
            return Err(ConfigError::invalid(
                "users",
                "at least one user is required",
            ));
        }
        let mut seen = HashSet::new();
        for (i, user) in self.users.iter().enumerate() {
            let at = format!("users[{i}]");
            check_name(&format!("{at}.name"), &user.name)?;
            if !seen.insert(user.name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("{at}.name"),
                    format!("duplicate user name {:?}", user.name),
                ));
            }
            validate_user(&at, user)?;
            if user.auth == AuthMethod::Cert
                && self.tls.as_ref().is_none_or(|tls| tls.ca_file.is_none())
            {
                return Err(ConfigError::invalid(
                    format!("{at}.auth"),
                    "cert needs tls.ca_file (the certificates client certificates must \
                     chain to)",
                ));
            }
        }
        for (i, admin) in self.admin_users.iter().enumerate() {
            if self.user(admin).is_none() {
                return Err(ConfigError::invalid(
                    format!("admin_users[{i}]"),
                    format!("{admin:?} is not a configured user"),
                ));
            }
        }
        if let Some(name) = &self.auth_user {
            self.check_auth_user("auth_user", name)?;
        }
        Ok(())
    }

    /// An `auth_user` (at `field`) must be in `users`: the proxy logs in as
    /// it with the credentials configured there.
    fn check_auth_user(&self, field: &str, name: &str) -> Result<(), ConfigError> {
        if self.user(name).is_none() {
            return Err(ConfigError::invalid(
                field,
                format!(
                    "{name:?} is not a configured user (the proxy runs auth_query as this \
                     user, with its credentials from users)"
                ),
            ));
        }
        Ok(())
    }

    /// Databases, including their pool overrides.
    fn validate_databases(&self) -> Result<(), ConfigError> {
        if self.databases.is_empty() {
            return Err(ConfigError::invalid(
                "databases",
                "at least one database is required",
            ));
        }
        let mut seen = HashSet::new();
        for (i, db) in self.databases.iter().enumerate() {
            let at = format!("databases[{i}]");
            check_name(&format!("{at}.name"), &db.name)?;
            if !seen.insert(db.name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("{at}.name"),
                    format!("duplicate database name {:?}", db.name),
                ));
            }
            validate_database(&at, db, &self.pool)?;
            if let Some(name) = &db.auth_user {
                self.check_auth_user(&format!("{at}.auth_user"), name)?;
            }
        }
        Ok(())
    }

    /// `coalesce` rules, each on its own and against each other.
    fn validate_coalesce(&self) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        for (i, rule) in self.coalesce.iter().enumerate() {
            let at = format!("coalesce[{i}]");
            check_name(&format!("{at}.name"), &rule.name)?;
            if !names.insert(rule.name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("{at}.name"),
                    format!("duplicate rule name {:?}", rule.name),
                ));
            }
            if let Some(db) = &rule.database {
                if self.database(db).is_none() {
                    return Err(ConfigError::invalid(
                        format!("{at}.database"),
                        format!("{db:?} is not a configured database"),
                    ));
                }
            }
            validate_rule(&at, rule)?;
            // Two rules on one target whose databases overlap would make it
            // ambiguous which one a call belongs to.
            let clash = self.coalesce[..i].iter().find(|earlier| {
                earlier.target() == rule.target()
                    && match (&earlier.database, &rule.database) {
                        (Some(a), Some(b)) => a == b,
                        _ => true,
                    }
            });
            if let Some(earlier) = clash {
                let field = if rule.is_function() {
                    "function"
                } else {
                    "table"
                };
                return Err(ConfigError::invalid(
                    format!("{at}.{field}"),
                    format!(
                        "{} is already coalesced by rule {:?} for the same database",
                        rule.target(),
                        earlier.name
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// `pool.*` ranges.
fn validate_pool(pool: &PoolSettings) -> Result<(), ConfigError> {
    if pool.size == 0 {
        return Err(ConfigError::invalid("pool.size", "must be at least 1"));
    }
    if pool.min_idle > pool.size {
        return Err(ConfigError::invalid(
            "pool.min_idle",
            format!("must not exceed pool.size ({})", pool.size),
        ));
    }
    let durations: [(&str, Duration); 4] = [
        ("pool.idle_timeout", pool.idle_timeout),
        ("pool.connect_timeout", pool.connect_timeout),
        ("pool.query_wait_timeout", pool.query_wait_timeout),
        ("pool.server_lifetime", pool.server_lifetime),
    ];
    for (field, value) in durations {
        if value.is_zero() {
            return Err(ConfigError::invalid(field, "must be greater than zero"));
        }
    }
    Ok(())
}

/// `read_split.*` ranges.
fn validate_read_split(read_split: &ReadSplit) -> Result<(), ConfigError> {
    if read_split.health_check_interval.is_zero() {
        return Err(ConfigError::invalid(
            "read_split.health_check_interval",
            "must be greater than zero",
        ));
    }
    Ok(())
}

/// `auth_query`: sent as one statement with the user name bound as `$1`.
fn validate_auth_query(query: &str) -> Result<(), ConfigError> {
    let field = "auth_query";
    if query.trim().is_empty() {
        return Err(ConfigError::invalid(field, "must not be empty"));
    }
    if query.contains('\0') {
        return Err(ConfigError::invalid(field, "must not contain NUL bytes"));
    }
    let used = placeholders(query);
    if let Some(other) = used.iter().find(|&&n| n != 1) {
        return Err(ConfigError::invalid(
            field,
            format!("refers to ${other}; the only parameter is $1, the user name"),
        ));
    }
    if used.is_empty() {
        return Err(ConfigError::invalid(
            field,
            "does not use $1 (the user name to look up)",
        ));
    }
    Ok(())
}

/// `tls.*` paths.
fn validate_tls(tls: &Tls) -> Result<(), ConfigError> {
    for (field, path) in [
        ("tls.cert_file", &tls.cert_file),
        ("tls.key_file", &tls.key_file),
    ] {
        if path.as_os_str().is_empty() {
            return Err(ConfigError::invalid(field, "must not be empty"));
        }
    }
    match (&tls.crl_file, &tls.ca_file) {
        (Some(path), _) if path.as_os_str().is_empty() => {
            return Err(ConfigError::invalid("tls.crl_file", "must not be empty"));
        }
        (Some(_), None) => {
            return Err(ConfigError::invalid(
                "tls.crl_file",
                "needs tls.ca_file (the CAs whose revocations it lists)",
            ));
        }
        _ => {}
    }
    match &tls.ca_file {
        Some(path) if path.as_os_str().is_empty() => {
            Err(ConfigError::invalid("tls.ca_file", "must not be empty"))
        }
        None if tls.client_cert != ClientCertMode::None => Err(ConfigError::invalid(
            "tls.client_cert",
            "needs tls.ca_file (the certificates client certificates must chain to)",
        )),
        _ => Ok(()),
    }
}

/// One user's credentials against its auth method; `at` is `users[i]`.
fn validate_user(at: &str, user: &User) -> Result<(), ConfigError> {
    for (field, secret) in [
        ("password", &user.password),
        ("scram_verifier", &user.scram_verifier),
        ("server_password", &user.server_password),
    ] {
        if let Some(secret) = secret {
            if secret.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{at}.{field}"),
                    "must not be empty",
                ));
            }
            if secret.contains('\0') {
                return Err(ConfigError::invalid(
                    format!("{at}.{field}"),
                    "must not contain NUL bytes",
                ));
            }
        }
    }
    match user.auth {
        AuthMethod::Trust | AuthMethod::Md5 | AuthMethod::Cert if user.scram_verifier.is_some() => {
            Err(ConfigError::invalid(
                format!("{at}.scram_verifier"),
                format!("only usable with scram-sha-256 auth, not {}", user.auth),
            ))
        }
        // A cert user's password, if any, is only the upstream one.
        AuthMethod::Trust | AuthMethod::Cert => Ok(()),
        AuthMethod::Md5 if user.password.is_none() => Err(ConfigError::invalid(
            format!("{at}.password"),
            "required for md5 auth",
        )),
        AuthMethod::Md5 => Ok(()),
        AuthMethod::ScramSha256 => match &user.scram_verifier {
            Some(verifier) => ScramSecret::parse(verifier)
                .map(drop)
                .map_err(|reason| ConfigError::invalid(format!("{at}.scram_verifier"), reason)),
            None if user.password.is_none() => Err(ConfigError::invalid(
                format!("{at}.password"),
                "required for scram-sha-256 auth unless scram_verifier is set",
            )),
            None => Ok(()),
        },
    }
}

/// A user, database or rule name: non-empty, no NUL bytes.
fn check_name(field: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::invalid(field, "must not be empty"));
    }
    if name.contains('\0') {
        return Err(ConfigError::invalid(field, "must not contain NUL bytes"));
    }
    Ok(())
}
