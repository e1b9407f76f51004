//! [`Config::validate`]: the rules serde cannot express — ranges, required
//! credentials per auth method, unique names, references between sections.
//!
//! The first violation found is returned as [`ConfigError::Invalid`] with
//! the field path (`users[1].password`) and a reason.

use std::collections::HashSet;
use std::time::Duration;

use crate::model::{
    AuthMethod, Config, Database, PoolSettings, User, MAX_MESSAGE_SIZE_LIMIT,
    MIN_MESSAGE_SIZE_LIMIT,
};
use crate::scram::ScramSecret;
use crate::ConfigError;

impl Config {
    /// Checks every rule; see the field docs of [`Config`] and its parts.
    ///
    /// Rules: `max_client_conn >= 1`; `max_message_size` within 64 KiB..=1
    /// GiB; `pool.size >= 1`, `pool.min_idle <= pool.size`, every pool
    /// duration non-zero; at least one user and one database, names
    /// non-empty and unique; md5 users need `password`, scram-sha-256 users
    /// need `password` or a well-formed `scram_verifier`, and
    /// `scram_verifier` is only allowed with scram-sha-256; `admin_users`
    /// name configured users; databases need a host, a non-zero port, and a
    /// `pool_size` override (if any) in `max(1, pool.min_idle)..`. Names and
    /// secrets must not contain NUL bytes (the protocol cannot carry them).
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
        self.validate_users()?;
        self.validate_databases()
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
        }
        for (i, admin) in self.admin_users.iter().enumerate() {
            if self.user(admin).is_none() {
                return Err(ConfigError::invalid(
                    format!("admin_users[{i}]"),
                    format!("{admin:?} is not a configured user"),
                ));
            }
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
        AuthMethod::Trust | AuthMethod::Md5 if user.scram_verifier.is_some() => {
            Err(ConfigError::invalid(
                format!("{at}.scram_verifier"),
                format!("only usable with scram-sha-256 auth, not {}", user.auth),
            ))
        }
        AuthMethod::Trust => Ok(()),
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

/// One database; `at` is `databases[i]`.
fn validate_database(at: &str, db: &Database, pool: &PoolSettings) -> Result<(), ConfigError> {
    if db.host.trim().is_empty() {
        return Err(ConfigError::invalid(
            format!("{at}.host"),
            "must not be empty",
        ));
    }
    if db.port == 0 {
        return Err(ConfigError::invalid(format!("{at}.port"), "must not be 0"));
    }
    if let Some(dbname) = &db.dbname {
        check_name(&format!("{at}.dbname"), dbname)?;
    }
    if let Some(size) = db.pool_size {
        let least = pool.min_idle.max(1);
        if size < least {
            return Err(ConfigError::invalid(
                format!("{at}.pool_size"),
                format!("must be at least {least} (1 and pool.min_idle)"),
            ));
        }
    }
    Ok(())
}

/// A user or database name: non-empty, no NUL bytes.
fn check_name(field: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::invalid(field, "must not be empty"));
    }
    if name.contains('\0') {
        return Err(ConfigError::invalid(field, "must not contain NUL bytes"));
    }
    Ok(())
}
