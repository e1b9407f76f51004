//! [`Config::validate`]: the rules serde cannot express — ranges, required
//! credentials per auth method, unique names, references between sections.
//!
//! The first violation found is returned as [`ConfigError::Invalid`] with
//! the field path (`users[1].password`) and a reason.

use std::collections::HashSet;
use std::time::Duration;

use crate::model::{
    AckMode, AuthMethod, ClientCertMode, CoalesceRule, Config, Database, PoolSettings, ReadSplit,
    ServerTlsMode, Tls, User, MAX_MESSAGE_SIZE_LIMIT, MIN_MESSAGE_SIZE_LIMIT,
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
    validate_server_tls(at, db)?;
    validate_replicas(at, db)
}

/// A database's `tls`, `tls_ca_file`, `tls_cert_file` and `tls_key_file`;
/// `at` is `databases[i]`.
fn validate_server_tls(at: &str, db: &Database) -> Result<(), ConfigError> {
    validate_server_identity(at, db)?;
    let field = format!("{at}.tls_ca_file");
    match &db.tls_ca_file {
        None if db.tls.verifies() => Err(ConfigError::invalid(
            field,
            format!(
                "required with tls: {} (the certificates to verify the server's against; \
                 sslrootcert= in an upstream URL)",
                db.tls
            ),
        )),
        Some(path) if path.as_os_str().is_empty() => {
            Err(ConfigError::invalid(field, "must not be empty"))
        }
        Some(_) if db.tls == ServerTlsMode::Disable => {
            Err(ConfigError::invalid(field, "not used with tls: disable"))
        }
        _ => Ok(()),
    }
}

/// The client certificate a database's servers may ask for: both files or
/// neither, non-empty, and not with `tls: disable`.
fn validate_server_identity(at: &str, db: &Database) -> Result<(), ConfigError> {
    let pair = [
        (
            "tls_cert_file",
            "tls_key_file",
            "sslcert=",
            &db.tls_cert_file,
        ),
        ("tls_key_file", "tls_cert_file", "sslkey=", &db.tls_key_file),
    ];
    for (name, other, url_key, path) in pair {
        let field = format!("{at}.{name}");
        match path {
            Some(path) if path.as_os_str().is_empty() => {
                return Err(ConfigError::invalid(field, "must not be empty"))
            }
            Some(_) if db.tls == ServerTlsMode::Disable => {
                return Err(ConfigError::invalid(field, "not used with tls: disable"))
            }
            None if db.tls_cert_file.is_some() || db.tls_key_file.is_some() => {
                return Err(ConfigError::invalid(
                    field,
                    format!("required with {other} ({url_key} in an upstream URL)"),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// A database's `replicas`; `at` is `databases[i]`.
fn validate_replicas(at: &str, db: &Database) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (j, replica) in db.replicas.iter().enumerate() {
        let at = format!("{at}.replicas[{j}]");
        if replica.host.trim().is_empty() {
            return Err(ConfigError::invalid(
                format!("{at}.host"),
                "must not be empty",
            ));
        }
        if replica.host.contains('\0') {
            return Err(ConfigError::invalid(
                format!("{at}.host"),
                "must not contain NUL bytes",
            ));
        }
        if replica.port == 0 {
            return Err(ConfigError::invalid(format!("{at}.port"), "must not be 0"));
        }
        if replica.weight == 0 {
            return Err(ConfigError::invalid(
                format!("{at}.weight"),
                "must be at least 1",
            ));
        }
        if replica.host == db.host && replica.port == db.port {
            return Err(ConfigError::invalid(
                at,
                format!(
                    "{}:{} is the database's primary (host and port), not a replica",
                    replica.host, replica.port
                ),
            ));
        }
        if !seen.insert((replica.host.as_str(), replica.port)) {
            return Err(ConfigError::invalid(
                at,
                format!("duplicate replica {}:{}", replica.host, replica.port),
            ));
        }
    }
    Ok(())
}

/// Longest identifier PostgreSQL keeps (NAMEDATALEN - 1); longer ones are
/// truncated by the server and would never match.
const MAX_IDENT_LEN: usize = 63;

/// One coalescing rule on its own; `at` is `coalesce[i]`.
fn validate_rule(at: &str, rule: &CoalesceRule) -> Result<(), ConfigError> {
    match (&rule.function, &rule.table) {
        (Some(function), None) => {
            check_ident(&format!("{at}.function"), function, true)?;
            validate_function_rule(at, rule)?;
        }
        (None, Some(table)) => {
            check_ident(&format!("{at}.table"), table, true)?;
            validate_table_rule(at, rule)?;
        }
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                format!("{at}.table"),
                "not allowed together with function (a rule has exactly one of function / table)",
            ))
        }
        (None, None) => {
            return Err(ConfigError::invalid(
                at,
                "one of function or table is required",
            ))
        }
    }
    let mut written = HashSet::new();
    for (j, table) in rule.writes.iter().enumerate() {
        let field = format!("{at}.writes[{j}]");
        check_ident(&field, table, true)?;
        if !written.insert(table.as_str()) {
            return Err(ConfigError::invalid(
                field,
                format!("duplicate name {table:?}"),
            ));
        }
    }
    if rule.flush_interval.is_zero() {
        return Err(ConfigError::invalid(
            format!("{at}.flush_interval"),
            "must be greater than zero",
        ));
    }
    if rule.max_batch == 0 {
        return Err(ConfigError::invalid(
            format!("{at}.max_batch"),
            "must be at least 1",
        ));
    }
    if rule.max_pending < rule.max_batch {
        return Err(ConfigError::invalid(
            format!("{at}.max_pending"),
            format!("must be at least max_batch ({})", rule.max_batch),
        ));
    }
    if let Some(path) = &rule.rejects_file {
        if rule.ack != AckMode::Immediate {
            return Err(ConfigError::invalid(
                format!("{at}.rejects_file"),
                format!(
                    "only used with ack: immediate (with ack: {} failures reach the writer)",
                    rule.ack
                ),
            ));
        }
        if path.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                format!("{at}.rejects_file"),
                "must not be empty",
            ));
        }
    }
    Ok(())
}

/// The function-rule fields: arguments, defaults, key and flush.
fn validate_function_rule(at: &str, rule: &CoalesceRule) -> Result<(), ConfigError> {
    check_ident_list(&format!("{at}.arguments"), &rule.arguments)?;
    if rule.version_column.is_some() {
        return Err(ConfigError::invalid(
            format!("{at}.version_column"),
            "only allowed for table rules (a function rule's flush statement takes the \
             stamps as the parameter after the arguments')",
        ));
    }
    // Defaults must cover a suffix of the arguments, as in SQL.
    let mut defaulted = false;
    for arg in &rule.arguments {
        let has_default = rule.defaults.contains_key(arg);
        if defaulted && !has_default {
            return Err(ConfigError::invalid(
                format!("{at}.defaults"),
                format!(
                    "argument {arg:?} follows a defaulted argument, so it needs a default \
                     too (only trailing arguments can be omitted)"
                ),
            ));
        }
        defaulted |= has_default;
    }
    if let Some(name) = rule
        .defaults
        .keys()
        .find(|name| rule.argument_index(name).is_none())
    {
        return Err(ConfigError::invalid(
            format!("{at}.defaults.{name}"),
            "is not one of the rule's arguments",
        ));
    }
    if let Some((name, _)) = rule
        .defaults
        .iter()
        .find(|(_, value)| value.as_deref().is_some_and(|v| v.contains('\0')))
    {
        return Err(ConfigError::invalid(
            format!("{at}.defaults.{name}"),
            "must not contain NUL bytes",
        ));
    }
    check_ident_list(&format!("{at}.key"), &rule.key)?;
    if let Some((j, name)) = rule
        .key
        .iter()
        .enumerate()
        .find(|(_, name)| rule.argument_index(name).is_none())
    {
        return Err(ConfigError::invalid(
            format!("{at}.key[{j}]"),
            format!("{name:?} is not one of the rule's arguments"),
        ));
    }
    let field = format!("{at}.flush");
    let flush = match &rule.flush {
        Some(flush) => flush,
        None => return Err(ConfigError::invalid(field, "required for function rules")),
    };
    if flush.trim().is_empty() {
        return Err(ConfigError::invalid(field, "must not be empty"));
    }
    if flush.contains('\0') {
        return Err(ConfigError::invalid(field, "must not contain NUL bytes"));
    }
    let count = rule.arguments.len();
    let used = placeholders(flush);
    if let Some(&beyond) = used.iter().find(|&&n| n == 0 || n > count + 1) {
        return Err(ConfigError::invalid(
            field,
            format!(
                "refers to ${beyond}, but parameters are $1..${count} (one text[] per argument) \
                 and ${} (the rows' arrival stamps)",
                count + 1
            ),
        ));
    }
    if let Some(missing) = (1..=count).find(|n| !used.contains(n)) {
        return Err(ConfigError::invalid(
            field,
            format!(
                "does not use ${missing} (argument {:?}); the statement takes one text[] \
                 parameter per argument, $1..${count}",
                rule.arguments[missing - 1]
            ),
        ));
    }
    Ok(())
}

/// The table-rule fields: key only; function-only fields must be unset.
fn validate_table_rule(at: &str, rule: &CoalesceRule) -> Result<(), ConfigError> {
    if !rule.arguments.is_empty() {
        return Err(ConfigError::invalid(
            format!("{at}.arguments"),
            "only allowed for function rules",
        ));
    }
    if !rule.defaults.is_empty() {
        return Err(ConfigError::invalid(
            format!("{at}.defaults"),
            "only allowed for function rules",
        ));
    }
    if rule.flush.is_some() {
        return Err(ConfigError::invalid(
            format!("{at}.flush"),
            "not allowed for table rules (the flush statement is derived from the \
             client's statement)",
        ));
    }
    check_ident_list(&format!("{at}.key"), &rule.key)?;
    if let Some(v) = &rule.version_column {
        check_ident(&format!("{at}.version_column"), v, false)?;
        if rule.key.contains(v) {
            return Err(ConfigError::invalid(
                format!("{at}.version_column"),
                "must not be a key column",
            ));
        }
    }
    Ok(())
}

/// A non-empty list of unique, unqualified identifiers; `field` is the
/// list's path.
fn check_ident_list(field: &str, names: &[String]) -> Result<(), ConfigError> {
    if names.is_empty() {
        return Err(ConfigError::invalid(field, "must not be empty"));
    }
    let mut seen = HashSet::new();
    for (j, name) in names.iter().enumerate() {
        let at = format!("{field}[{j}]");
        check_ident(&at, name, false)?;
        if !seen.insert(name.as_str()) {
            return Err(ConfigError::invalid(at, format!("duplicate name {name:?}")));
        }
    }
    Ok(())
}

/// An unquoted, lower-cased SQL identifier (see [`CoalesceRule`]): parts
/// of `[a-z0-9_$]`, not starting with a digit or `$`, at most 63 bytes;
/// `qualified` allows one `.` between schema and name.
fn check_ident(field: &str, name: &str, qualified: bool) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::invalid(field, "must not be empty"));
    }
    if let Some(bad) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '.'))
    {
        return Err(ConfigError::invalid(
            field,
            format!(
                "{name:?} contains {bad:?}; only letters, digits, '_' and '$' are allowed{} \
                 (quoted identifiers are not supported)",
                if qualified {
                    ", with one '.' after the schema"
                } else {
                    ""
                }
            ),
        ));
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(ConfigError::invalid(
            field,
            format!("{name:?} must be lower-case (the YAML loader lower-cases names)"),
        ));
    }
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > if qualified { 2 } else { 1 } {
        return Err(ConfigError::invalid(
            field,
            if qualified {
                format!("{name:?} has more than one '.' (expected name or schema.name)")
            } else {
                format!("{name:?} must not be qualified with '.'")
            },
        ));
    }
    for part in parts {
        match part.chars().next() {
            None => {
                return Err(ConfigError::invalid(
                    field,
                    format!("{name:?} has an empty part around '.'"),
                ))
            }
            Some(first) if first.is_ascii_digit() || first == '$' => {
                return Err(ConfigError::invalid(
                    field,
                    format!("{name:?}: a name must not start with a digit or '$'"),
                ))
            }
            Some(_) => {}
        }
        if part.len() > MAX_IDENT_LEN {
            return Err(ConfigError::invalid(
                field,
                format!("{name:?}: a name is limited to {MAX_IDENT_LEN} bytes"),
            ));
        }
    }
    Ok(())
}

/// The parameter numbers (`$1` -> 1) a statement refers to, in order of
/// appearance. A light scan, not a parser: `$` directly after an identifier
/// character (as in `a$1`) and text inside single-quoted literals or
/// double-quoted identifiers are skipped; a number too large for `usize`
/// is reported as `usize::MAX`.
pub(crate) fn placeholders(sql: &str) -> Vec<usize> {
    let bytes = sql.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"') => {
                // A doubled quote inside is an escaped quote: skipping to the
                // next quote and starting over handles it.
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += 1;
                }
                i += 1;
            }
            b'$' if i == 0 || !is_ident_byte(bytes[i - 1]) => {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len() && bytes[end].is_ascii_digit() {
                    end += 1;
                }
                if end > start {
                    let number = sql[start..end].parse().unwrap_or(usize::MAX);
                    found.push(number);
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    found
}

/// Bytes that continue an unquoted identifier.
fn is_ident_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'$' || byte >= 0x80
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
