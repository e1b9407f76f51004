//! Applying a new config to a running proxy (`RELOAD` on the console,
//! SIGHUP in the binary) without dropping anyone.
//!
//! What a reload changes:
//! - users and passwords, `admin_users`, databases (added ones serve new
//!   logins; removed ones refuse new logins while their clients stay),
//!   `max_client_conn`, `max_message_size`, client TLS (certificate and
//!   key are read again, so a renewed certificate is picked up), upstream
//!   TLS, and the pool settings: a pool grows at once and shrinks as
//!   connections come back; a new host, port, login or TLS mode closes its
//!   idle connections now and the busy ones when their clients return them;
//! - read splitting: a database whose replicas or read-split settings
//!   changed gets new health checks; clients already logged in keep the
//!   replicas they started with, new logins use the new ones.
//!
//! What it keeps until a restart, with a warning: `listen`,
//! `metrics_listen`, `workers`, `log_format` (bound or set up once), and
//! the coalescing rules (their pending writes are keyed by them).
//!
//! A config that does not load or validate changes nothing; the error goes
//! to whoever asked for the reload.

use config::Config;

use crate::state::{Live, Shared};
use crate::tls::ClientTls;

/// Reads the config from the proxy's source (or keeps the one it has, when
/// it was started without a source) and applies it. `Ok` carries the
/// warnings about settings left unchanged until a restart.
pub async fn reload(shared: &Shared) -> Result<Vec<String>, String> {
    let _one_at_a_time = shared.reloading.lock().await;
    let config = match &shared.source {
        Some(source) => source()?,
        None => shared.live().config.clone(),
    };
    apply(shared, config)
}

/// Applies `config` (see the module documentation).
fn apply(shared: &Shared, mut config: Config) -> Result<Vec<String>, String> {
    config.validate().map_err(|e| e.to_string())?;
    let old = shared.live();
    let warnings = keep_restart_only(&old.config, &mut config);
    let tls = config
        .tls
        .as_ref()
        .map(ClientTls::load)
        .transpose()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let mut live = Live::new(config, tls)?;
    shared.reconfigure_pools(&live);
    live.routers = shared.routers_for(&live, Some(&old));
    shared.install(live);
    for w in &warnings {
        tracing::warn!("{w}");
    }
    tracing::info!("config reloaded");
    Ok(warnings)
}

/// Puts back into `new` the settings that need a restart, and says which
/// ones the new config wanted to change.
fn keep_restart_only(old: &Config, new: &mut Config) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut keep = |name: &str, changed: bool| {
        if changed {
            warnings.push(format!(
                "{name} changed in the config; it takes effect after a restart"
            ));
        }
    };
    keep("listen", old.listen != new.listen);
    keep("metrics_listen", old.metrics_listen != new.metrics_listen);
    keep("workers", old.workers != new.workers);
    keep("log_format", old.log_format != new.log_format);
    keep("coalesce", old.coalesce != new.coalesce);
    new.listen = old.listen;
    new.metrics_listen = old.metrics_listen;
    new.workers = old.workers;
    new.log_format = old.log_format;
    new.coalesce = old.coalesce.clone();
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_settings_are_kept_and_named() {
        let old = Config::default();
        let mut new = Config {
            listen: "127.0.0.1:7000".parse().unwrap(),
            max_client_conn: 7,
            workers: 3,
            ..Config::default()
        };
        let warnings = keep_restart_only(&old, &mut new);
        assert_eq!(new.listen, old.listen);
        assert_eq!(new.workers, old.workers);
        assert_eq!(new.max_client_conn, 7, "a live setting is applied");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("listen changed"), "{warnings:?}");
        assert!(warnings[1].starts_with("workers changed"), "{warnings:?}");
    }

    #[test]
    fn an_unchanged_config_warns_of_nothing() {
        let old = Config::default();
        let mut new = old.clone();
        assert!(keep_restart_only(&old, &mut new).is_empty());
    }
}
