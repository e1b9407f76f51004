//! The crate's error type: every failure carries enough context (the command
//! line, its exit status, its stderr, or the server log) to debug a failed
//! test from the error message alone.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while creating, driving or tearing down a
/// throwaway cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A program could not be started at all (missing binary, no `runuser`, ...).
    #[error("could not run `{command}`: {source}")]
    Spawn {
        /// The command line that was attempted.
        command: String,
        /// The underlying OS error.
        #[source]
        source: io::Error,
    },

    /// A program ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line (passwords are never part of it; they go through the environment).
        command: String,
        /// Human-readable exit status (`exit status: 3`, `signal: 9`, ...).
        status: String,
        /// The program's standard error, trimmed.
        stderr: String,
        /// The program's standard output, trimmed.
        stdout: String,
    },

    /// The server did not come up; `log_tail` holds the last lines of `postgres.log`.
    #[error("PostgreSQL at {data_dir} failed to start: {cause}\n--- last lines of {log} ---\n{log_tail}")]
    Startup {
        /// The data directory that was being started.
        data_dir: PathBuf,
        /// The server log file.
        log: PathBuf,
        /// Why starting failed (usually the `pg_ctl` failure).
        cause: Box<Error>,
        /// The last 30 lines of the server log.
        log_tail: String,
    },

    /// A file-system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`creating`, `writing`, ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying OS error.
        #[source]
        source: io::Error,
    },

    /// Something did not happen within its deadline.
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout {
        /// What was being waited for.
        what: String,
        /// How long we waited.
        seconds: u64,
    },

    /// The caller passed something this crate refuses to put into SQL or a config file.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The environment cannot host a cluster (no binaries, no `postgres` user, ...).
    #[error("environment problem: {0}")]
    Environment(String),
}

impl Error {
    /// Wraps an I/O error with what was being done and to which path.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// The stderr of the failing command, if this error (or its cause) carries one.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            Error::Command { stderr, .. } => Some(stderr),
            Error::Startup { cause, .. } => cause.stderr(),
            _ => None,
        }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
