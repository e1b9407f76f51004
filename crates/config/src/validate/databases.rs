//! A database's rules: its name, upstream identity, TLS and replicas.

use std::collections::HashSet;

use crate::model::{Database, PoolSettings, ServerTlsMode};
use crate::ConfigError;

use super::check_name;

/// One database; `at` is `databases[i]`.
pub(super) fn validate_database(
    at: &str,
    db: &Database,
    pool: &PoolSettings,
) -> Result<(), ConfigError> {
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
