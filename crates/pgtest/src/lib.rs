//! Throwaway PostgreSQL clusters for tests, benchmarks and `pgcoalesce dev`.
//!
//! A [`Cluster`] is a real server built from the system's PostgreSQL binaries
//! (see [`bin_dir`]) in a private temporary directory, with its own TCP port
//! on 127.0.0.1 and its own unix socket directory, so any number of clusters
//! can run side by side from parallel tests in one or many processes. It can
//! spawn streaming replicas ([`Cluster::start_replica`]) and is stopped and
//! deleted when dropped.
//!
//! When the process runs as root, every PostgreSQL program is run as the
//! `postgres` OS user through `runuser`, and the cluster directories are
//! owned by that user.
//!
//! ```no_run
//! let pg = pgtest::Cluster::start(&pgtest::ClusterOptions::default())?;
//! assert_eq!(pg.psql("postgres", "SELECT 1 + 1")?, "2");
//! # Ok::<(), pgtest::Error>(())
//! ```

mod cluster;
mod conf;
mod error;
mod exec;
mod layout;
mod port;
mod replica;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub use cluster::{Cluster, KeptCluster, SUPERUSER};
pub use conf::{quote_ident, quote_literal, ClusterOptions, HbaAuth};
pub use error::Error;

/// Debian/Ubuntu location of the PostgreSQL 15 server binaries.
const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// Directory holding `initdb`, `pg_ctl`, `psql`, ...: `$PG_BIN` if set,
/// else `/usr/lib/postgresql/15/bin` if it exists, else `pg_config --bindir`.
/// If none of these works, an empty path is returned and programs are looked
/// up on `PATH`. Resolved once per process.
pub fn bin_dir() -> PathBuf {
    static BIN_DIR: OnceLock<PathBuf> = OnceLock::new();
    BIN_DIR.get_or_init(resolve_bin_dir).clone()
}

fn resolve_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if Path::new(DEFAULT_BIN_DIR).is_dir() {
        return PathBuf::from(DEFAULT_BIN_DIR);
    }
    Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_default()
}

/// Absolute path of the workspace's `migrations/` directory.
pub fn migrations_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .unwrap_or(manifest)
        .join("migrations")
}
