//! Running the PostgreSQL programs (`initdb`, `pg_ctl`, `psql`, ...).
//!
//! Owns two decisions every invocation shares: *who* runs the program (the
//! `postgres` OS user through `runuser` when this process is root, because
//! the server refuses to run as root; the current user otherwise) and *what
//! environment* it sees (inherited `PG*` connection variables are removed so
//! a developer's shell settings never redirect a test to another server).

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// OS user that owns clusters when this process runs as root.
pub(crate) const OS_USER: &str = "postgres";

/// libpq / server environment variables that must not leak in from the caller.
const SCRUBBED_ENV: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGSSLMODE",
    "PGREQUIRESSL",
    "PGTARGETSESSIONATTRS",
    "PGCONNECT_TIMEOUT",
    "PGDATA",
    "PGTZ",
    "PGDATESTYLE",
    "PGAPPNAME",
    "PGCHANNELBINDING",
    "PGGSSENCMODE",
    "PGREQUIREAUTH",
];

/// True when the effective uid of this process is 0. Computed once.
pub(crate) fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| match effective_uid_from_proc() {
        Some(uid) => uid == 0,
        None => Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false),
    })
}

/// Reads the effective uid (second field of the `Uid:` line) from `/proc/self/status`.
fn effective_uid_from_proc() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Gives `path` (recursively) to the `postgres` OS user when we are root, so
/// the programs started through `runuser` can write there. No-op otherwise.
pub(crate) fn hand_over(path: &Path) -> Result<()> {
    if !running_as_root() {
        return Ok(());
    }
    let owner = format!("{OS_USER}:{OS_USER}");
    let mut cmd = Command::new("chown");
    cmd.arg("-R").arg(&owner).arg(path);
    let command = format!("chown -R {owner} {}", path.display());
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            command: command.clone(),
            source,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            stdout: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        })
    }
}

/// Captured result of a successful program run.
#[derive(Debug)]
pub(crate) struct Output {
    /// Standard output, untrimmed.
    pub stdout: String,
    /// Standard error, untrimmed (notices, warnings).
    #[allow(dead_code)]
    pub stderr: String,
}

/// Builder for one invocation of a PostgreSQL program from [`crate::bin_dir`].
#[derive(Debug)]
pub(crate) struct PgCommand {
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(String, String)>,
    stdin: Option<Vec<u8>>,
    cwd: Option<PathBuf>,
}

impl PgCommand {
    /// A command running `name` (e.g. `"pg_ctl"`) from the PostgreSQL bin dir.
    pub(crate) fn new(name: &str) -> Self {
        PgCommand {
            program: crate::bin_dir().join(name),
            args: Vec::new(),
            envs: Vec::new(),
            stdin: None,
            cwd: None,
        }
    }

    /// Appends one argument.
    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends several arguments.
    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the program (not shown in errors).
    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Feeds `input` to the program's standard input.
    pub(crate) fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// Runs the program in `dir` (must be accessible to the `postgres` user when root).
    pub(crate) fn cwd(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.to_owned());
        self
    }

    /// The command line as shown in errors (environment values are never shown).
    pub(crate) fn display(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    /// Runs the program to completion; a non-zero exit becomes [`Error::Command`].
    pub(crate) fn run(&self) -> Result<Output> {
        let mut cmd = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", OS_USER, "--"]).arg(&self.program);
            c
        } else {
            Command::new(&self.program)
        };
        cmd.args(&self.args);
        for key in SCRUBBED_ENV {
            cmd.env_remove(key);
        }
        cmd.env("LC_ALL", "C").env("PGCONNECT_TIMEOUT", "10");
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });

        let spawn_err = |source| Error::Spawn {
            command: self.display(),
            source,
        };
        let mut child = cmd.spawn().map_err(spawn_err)?;
        // Feed stdin from a separate thread so a program that writes a lot of
        // output before reading all its input cannot deadlock against us.
        let writer = match (self.stdin.clone(), child.stdin.take()) {
            (Some(input), Some(mut pipe)) => Some(std::thread::spawn(move || {
                // A broken pipe means the program exited early; its exit
                // status and stderr tell the real story.
                let _ = pipe.write_all(&input);
            })),
            _ => None,
        };
        let output = child.wait_with_output().map_err(spawn_err)?;
        if let Some(handle) = writer {
            let _ = handle.join();
        }

        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if output.status.success() {
            Ok(Output { stdout, stderr })
        } else {
            Err(Error::Command {
                command: self.display(),
                status: output.status.to_string(),
                stderr: stderr.trim().to_owned(),
                stdout: stdout.trim().to_owned(),
            })
        }
    }
}
