//! Streaming replicas: [`Cluster::start_replica`].
//!
//! Owns cloning a running cluster with `pg_basebackup -R -X stream` over the
//! primary's unix socket (trusted, so no password handling) into a fresh
//! directory, re-pointing the copy at its own port and socket directory, and
//! waiting until it serves read-only queries in recovery.

use std::time::Duration;

use crate::cluster::{start_on_free_port, Cluster, SUPERUSER};
use crate::error::Result;
use crate::exec::PgCommand;
use crate::layout::Layout;

/// How long a new replica may take to report `pg_is_in_recovery() = t`.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);

impl Cluster {
    /// Creates and starts a streaming replica of this (running) cluster in its
    /// own directory on its own port. Returns once it accepts connections and
    /// `pg_is_in_recovery()` is true. Authentication settings and the
    /// superuser password are the primary's (they are copied with the data).
    pub fn start_replica(&self) -> Result<Cluster> {
        let layout = Layout::create()?;
        PgCommand::new("pg_basebackup")
            .arg("-D")
            .arg(&layout.data_dir)
            .arg("-h")
            .arg(self.socket_dir())
            .args(["-p", &self.port().to_string(), "-U", SUPERUSER])
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync", "-w"])
            .cwd(&layout.root)
            .run()?;
        // The copy carries the primary's instance file (port, socket dir);
        // start_on_free_port rewrites it with this replica's own values.
        let port = start_on_free_port(&layout)?;
        let replica = Cluster::from_parts(layout, port, self.auth, self.superuser_password.clone());
        replica.wait_for(
            "postgres",
            "SELECT pg_is_in_recovery()",
            "t",
            RECOVERY_TIMEOUT,
        )?;
        Ok(replica)
    }
}
