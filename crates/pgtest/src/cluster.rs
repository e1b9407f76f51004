//! [`Cluster`]: one running throwaway PostgreSQL instance (primary or replica).
//!
//! Owns the server process lifecycle (initdb, start with port retries, stop,
//! restart, teardown on drop) and the superuser conveniences built on `psql`
//! over the instance's private unix socket.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::conf::{self, quote_ident, quote_literal, ClusterOptions, HbaAuth, INSTANCE_CONF};
use crate::error::{Error, Result};
use crate::exec::PgCommand;
use crate::layout::Layout;
use crate::port;

/// The address every cluster listens on.
const HOST: &str = "127.0.0.1";
/// The bootstrap superuser created by initdb.
pub const SUPERUSER: &str = "postgres";
/// How many ports to try before giving up when the chosen one is taken.
const PORT_ATTEMPTS: usize = 5;
/// `pg_ctl -t`: seconds to wait for start/stop.
const PG_CTL_TIMEOUT: &str = "60";
/// Lines of the server log quoted in startup errors.
const LOG_TAIL_LINES: usize = 30;

/// A running PostgreSQL instance in its own temporary directory, listening on
/// its own port on 127.0.0.1 and its own unix socket directory.
///
/// Dropping it stops the server (`-m immediate`) and deletes the directory.
#[derive(Debug)]
pub struct Cluster {
    pub(crate) layout: Layout,
    pub(crate) port: u16,
    pub(crate) auth: HbaAuth,
    pub(crate) superuser_password: Option<String>,
    /// Set by [`Cluster::keep`]: Drop leaves the server and files alone.
    kept: bool,
}

/// A cluster left running with its files in place (see [`Cluster::keep`]).
/// Nothing stops it automatically: use `pg_ctl stop -D <data_dir>` and remove `dir`.
#[derive(Debug, Clone)]
pub struct KeptCluster {
    /// Top-level directory holding `data/`, `sock/` and `postgres.log`.
    pub dir: PathBuf,
    /// The data directory (PGDATA).
    pub data_dir: PathBuf,
    /// The unix socket directory.
    pub socket_dir: PathBuf,
    /// The server log.
    pub log_file: PathBuf,
    /// Always `"127.0.0.1"`.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl KeptCluster {
    /// `postgres://user[:password]@127.0.0.1:port/db`.
    pub fn url(&self, user: &str, password: Option<&str>, db: &str) -> String {
        make_url(&self.host, self.port, user, password, db)
    }
}

impl Cluster {
    /// Creates and starts a new primary: initdb, configuration, start on a free
    /// port (retrying on another port if it was taken), superuser password.
    pub fn start(opts: &ClusterOptions) -> Result<Cluster> {
        let layout = Layout::create()?;
        PgCommand::new("initdb")
            .arg("-D")
            .arg(&layout.data_dir)
            .args(["-U", SUPERUSER, "--auth-local=trust", "--auth-host=trust"])
            .args([
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ])
            .cwd(&layout.root)
            .run()?;
        layout.append_data_file("postgresql.conf", &conf::main_conf_block(opts)?)?;
        layout.write_data_file("pg_hba.conf", &conf::hba_conf_for(opts)?)?;
        if let Some((cert, key)) = &opts.ssl_files {
            install_ssl_files(&layout, cert, key, opts.ssl_ca_file.as_deref())?;
        }

        let port = start_on_free_port(&layout)?;
        let cluster = Cluster {
            layout,
            port,
            auth: opts.auth,
            superuser_password: opts.superuser_password.clone(),
            kept: false,
        };
        if let Some(password) = &opts.superuser_password {
            cluster.psql(
                "postgres",
                &format!(
                    "ALTER ROLE {} PASSWORD {}",
                    quote_ident(SUPERUSER),
                    quote_literal(password)
                ),
            )?;
        }
        Ok(cluster)
    }

    /// Wraps an already started instance (used for replicas).
    pub(crate) fn from_parts(
        layout: Layout,
        port: u16,
        auth: HbaAuth,
        superuser_password: Option<String>,
    ) -> Cluster {
        Cluster {
            layout,
            port,
            auth,
            superuser_password,
            kept: false,
        }
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Always `"127.0.0.1"`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// This instance's private unix socket directory (usable as libpq `host`).
    pub fn socket_dir(&self) -> &Path {
        &self.layout.socket_dir
    }

    /// The data directory (PGDATA).
    pub fn data_dir(&self) -> &Path {
        &self.layout.data_dir
    }

    /// The server log file (`<dir>/postgres.log`).
    pub fn log_file(&self) -> &Path {
        &self.layout.log_file
    }

    /// Authentication method required on TCP.
    pub fn auth(&self) -> HbaAuth {
        self.auth
    }

    /// The password of the `postgres` superuser, if one was set.
    pub fn superuser_password(&self) -> Option<&str> {
        self.superuser_password.as_deref()
    }

    /// `postgres://user[:password]@127.0.0.1:port/db` (components percent-encoded).
    pub fn url(&self, user: &str, password: Option<&str>, db: &str) -> String {
        make_url(HOST, self.port, user, password, db)
    }

    /// URL for the `postgres` superuser with its password.
    pub fn superuser_url(&self, db: &str) -> String {
        self.url(SUPERUSER, self.superuser_password(), db)
    }

    /// Runs `sql` (one or more statements) with psql as the superuser over the
    /// unix socket (`-X -A -t -q -v ON_ERROR_STOP=1`); returns stdout trimmed.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let out = self
            .psql_command(db)
            .args(["-h"])
            .arg(&self.layout.socket_dir)
            .args(["-U", SUPERUSER])
            .stdin(sql)
            .run()?;
        Ok(out.stdout.trim().to_owned())
    }

    /// Like [`Cluster::psql`] but as `user` over TCP to 127.0.0.1, with
    /// `password` passed through `PGPASSWORD` (never prompts). This goes
    /// through `pg_hba.conf`'s `host` rules, i.e. the cluster's [`HbaAuth`].
    pub fn psql_tcp(
        &self,
        user: &str,
        password: Option<&str>,
        db: &str,
        sql: &str,
    ) -> Result<String> {
        let mut cmd = self
            .psql_command(db)
            .args(["-h", HOST, "-U", user])
            .stdin(sql);
        if let Some(pw) = password {
            cmd = cmd.env("PGPASSWORD", pw);
        }
        Ok(cmd.run()?.stdout.trim().to_owned())
    }

    /// Runs the SQL file at `path` with psql as the superuser (the file is read
    /// by this process and piped in, so it need not be readable by `postgres`).
    pub fn psql_file(&self, db: &str, path: &Path) -> Result<()> {
        let sql = fs::read(path).map_err(|e| Error::io("reading", path, e))?;
        self.psql_command(db)
            .arg("-h")
            .arg(&self.layout.socket_dir)
            .args(["-U", SUPERUSER])
            .stdin(sql)
            .run()
            .map_err(|e| match e {
                Error::Command {
                    command,
                    status,
                    stderr,
                    stdout,
                } => Error::Command {
                    command: format!("{command} < {}", path.display()),
                    status,
                    stderr,
                    stdout,
                },
                other => other,
            })?;
        Ok(())
    }

    /// `CREATE DATABASE name`.
    pub fn create_database(&self, name: &str) -> Result<()> {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {}", quote_ident(name)),
        )
        .map(drop)
    }

    /// `CREATE ROLE name LOGIN [SUPERUSER] [PASSWORD '...']`; the password is
    /// hashed with the server's current `password_encryption`.
    pub fn create_role(&self, name: &str, password: Option<&str>, superuser: bool) -> Result<()> {
        let mut sql = format!("CREATE ROLE {} LOGIN", quote_ident(name));
        if superuser {
            sql.push_str(" SUPERUSER");
        }
        if let Some(pw) = password {
            sql.push_str(" PASSWORD ");
            sql.push_str(&quote_literal(pw));
        }
        self.psql("postgres", &sql).map(drop)
    }

    /// Runs every `*.sql` file directly in `dir`, in lexical file-name order.
    pub fn apply_migrations(&self, db: &str, dir: &Path) -> Result<()> {
        for file in sql_files(dir)? {
            self.psql_file(db, &file)?;
        }
        Ok(())
    }

    /// `pg_ctl stop -m fast -w`.
    pub fn stop(&self) -> Result<()> {
        self.pg_ctl_stop("fast").map(drop)
    }

    /// Starts the server again on the same data directory and port.
    pub fn start_again(&self) -> Result<()> {
        pg_ctl_start(&self.layout)
    }

    /// [`Cluster::stop`] then [`Cluster::start_again`].
    pub fn restart(&self) -> Result<()> {
        self.stop()?;
        self.start_again()
    }

    /// True if `pg_ctl status` reports a running server.
    pub fn is_running(&self) -> bool {
        PgCommand::new("pg_ctl")
            .arg("status")
            .arg("-D")
            .arg(&self.layout.data_dir)
            .cwd(&self.layout.root)
            .run()
            .is_ok()
    }

    /// `ALTER SYSTEM SET name = 'value'` and `pg_reload_conf()`. Settings that
    /// need a restart take effect after [`Cluster::restart`].
    pub fn set_setting(&self, name: &str, value: &str) -> Result<()> {
        conf::check_setting_name(name)?;
        self.psql(
            "postgres",
            &format!(
                "ALTER SYSTEM SET {name} = {};\nSELECT pg_reload_conf();",
                quote_literal(value)
            ),
        )
        .map(drop)
    }

    /// Polls `SELECT <sql>` on `db` until it prints `expected` or `timeout` passes.
    pub fn wait_for(&self, db: &str, sql: &str, expected: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(out) = self.psql(db, sql) {
                if out == expected {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("`{sql}` to return {expected:?} on port {}", self.port),
                    seconds: timeout.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Leaves the server running and its files in place, returning where they are.
    pub fn keep(mut self) -> KeptCluster {
        let dir = match self.layout.tmp.take() {
            Some(tmp) => tmp.keep(),
            None => self.layout.root.clone(),
        };
        self.kept = true;
        KeptCluster {
            dir,
            data_dir: self.layout.data_dir.clone(),
            socket_dir: self.layout.socket_dir.clone(),
            log_file: self.layout.log_file.clone(),
            host: HOST.to_owned(),
            port: self.port,
        }
    }

    /// psql with the common flags, connecting to `db` on this instance's port.
    fn psql_command(&self, db: &str) -> PgCommand {
        PgCommand::new("psql")
            .args(["-X", "-A", "-t", "-q", "-w", "-v", "ON_ERROR_STOP=1"])
            .args(["-p", &self.port.to_string(), "-d", db, "-f", "-"])
            .env("PGCLIENTENCODING", "UTF8")
            .env("PGAPPNAME", "pgtest")
            .cwd(&self.layout.root)
    }

    /// `pg_ctl stop -m <mode> -w`.
    fn pg_ctl_stop(&self, mode: &str) -> Result<()> {
        pg_ctl_stop(&self.layout, mode)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        // Best effort: the server may already be stopped.
        let _ = self.pg_ctl_stop("immediate");
        port::release(self.port);
        // The TempDir in `layout` removes the directory (ignoring errors).
    }
}

/// Picks a free port, writes it into the instance config and starts the
/// server; retries with another port when the server could not bind.
pub(crate) fn start_on_free_port(layout: &Layout) -> Result<u16> {
    let mut last_err = None;
    for _ in 0..PORT_ATTEMPTS {
        let port = port::pick_free_port()?;
        layout.write_data_file(
            INSTANCE_CONF,
            &conf::instance_conf(port, &layout.socket_dir)?,
        )?;
        let log_offset = layout.log_len();
        match pg_ctl_start(layout) {
            Ok(()) => return Ok(port),
            Err(e) => {
                port::release(port);
                if !port_was_taken(&layout.log_since(log_offset)) {
                    return Err(e);
                }
                last_err = Some(e);
            }
        }
    }
    Err(last_err.unwrap_or_else(|| Error::Environment("no port attempts were made".into())))
}

/// Whether a server log excerpt says the listen address was already in use.
fn port_was_taken(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("could not create any TCP/IP sockets")
}

/// `pg_ctl start -w`; on failure stops any half-started server and returns
/// [`Error::Startup`] with the log tail.
pub(crate) fn pg_ctl_start(layout: &Layout) -> Result<()> {
    let result = PgCommand::new("pg_ctl")
        .arg("start")
        .arg("-D")
        .arg(&layout.data_dir)
        .arg("-l")
        .arg(&layout.log_file)
        .args(["-w", "-t", PG_CTL_TIMEOUT])
        .cwd(&layout.root)
        .run();
    match result {
        Ok(_) => Ok(()),
        Err(cause) => {
            // A timed-out start can leave a server running; don't orphan it.
            let _ = pg_ctl_stop(layout, "immediate");
            Err(Error::Startup {
                data_dir: layout.data_dir.clone(),
                log: layout.log_file.clone(),
                cause: Box::new(cause),
                log_tail: layout.log_tail(LOG_TAIL_LINES),
            })
        }
    }
}

/// `pg_ctl stop -m <mode> -w`.
fn pg_ctl_stop(layout: &Layout, mode: &str) -> Result<()> {
    PgCommand::new("pg_ctl")
        .arg("stop")
        .arg("-D")
        .arg(&layout.data_dir)
        .args(["-m", mode, "-w", "-t", PG_CTL_TIMEOUT])
        .cwd(&layout.root)
        .run()
        .map(drop)
}

/// The `*.sql` files directly inside `dir`, sorted by file name.
fn sql_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", dir, e))?;
        let path = entry.path();
        if path.is_file() && path.extension().is_some_and(|ext| ext == "sql") {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// Copies the TLS certificate and key, and the client-certificate CA when
/// given, into the data directory, readable by the server only (it refuses
/// a key others may read).
fn install_ssl_files(layout: &Layout, cert: &Path, key: &Path, ca: Option<&Path>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let ca = ca.map(|ca| (ca, conf::SSL_CA));
    for (from, name) in [(cert, conf::SSL_CERT), (key, conf::SSL_KEY)]
        .into_iter()
        .chain(ca)
    {
        let to = layout.data_dir.join(name);
        fs::copy(from, &to).map_err(|e| Error::io("copying", from, e))?;
        fs::set_permissions(&to, fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io("setting permissions of", &to, e))?;
        crate::exec::hand_over(&to)?;
    }
    Ok(())
}

/// Builds `postgres://user[:password]@host:port/db`.
fn make_url(host: &str, port: u16, user: &str, password: Option<&str>, db: &str) -> String {
    let mut url = format!("postgres://{}", percent_encode(user));
    if let Some(pw) = password {
        url.push(':');
        url.push_str(&percent_encode(pw));
    }
    url.push_str(&format!("@{host}:{port}/{}", percent_encode(db)));
    url
}

/// Percent-encodes everything except RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            make_url(HOST, 5432, "app", Some("p@ss:w/d"), "db"),
            "postgres://app:p%40ss%3Aw%2Fd@127.0.0.1:5432/db"
        );
        assert_eq!(
            make_url(HOST, 1, "u", None, "d"),
            "postgres://u@127.0.0.1:1/d"
        );
    }

    #[test]
    fn detects_port_in_use() {
        assert!(port_was_taken(
            "LOG:  could not bind IPv4 address \"127.0.0.1\": Address already in use"
        ));
        assert!(!port_was_taken(
            "FATAL:  data directory has wrong ownership"
        ));
    }

    #[test]
    fn sql_files_sorted() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["010_b.sql", "002_a.sql", "notes.txt"] {
            fs::write(dir.path().join(name), "").unwrap();
        }
        let names: Vec<_> = sql_files(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["002_a.sql", "010_b.sql"]);
    }
}
