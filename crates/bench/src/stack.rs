//! The systems under test: a throwaway Postgres, PgBouncer and pgcoalesce.
//!
//! Owns their whole lifecycle: the benchmark cluster's settings, installing
//! PgBouncer when missing, writing its config, building and locating the
//! pgcoalesce binary, starting both proxies on free ports, waiting until they
//! answer, and stopping them on drop (guards, so errors never leak processes).

use std::cell::RefCell;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tempfile::TempDir;

use crate::scenarios::Target;
use crate::sys::{self, ProcStat};

/// The database every scenario works in.
pub const DB: &str = "bench";
/// Server connections per pool, for both proxies.
pub const POOL_SIZE: u32 = 20;
/// How long a proxy may take to answer its first query.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a proxy gets to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The second client-facing database of pgcoalesce: the same upstream
/// database as [`DB`], coalesced with `ack: immediate` instead of `flushed`.
pub const DB_IMMEDIATE: &str = "bench_immediate";
/// The coalesced function of the write scenarios.
pub const UPSERT_FUNCTION: &str = "entity.update_metadata_optimized";

/// `postgresql.conf` settings of the benchmark cluster (on top of pgtest's).
/// pg_stat_statements is loaded but tracks nothing until a write scenario
/// turns it on (it counts the statements and rows that reach Postgres).
pub const PG_SETTINGS: &[(&str, &str)] = &[
    ("max_connections", "400"),
    ("shared_buffers", "256MB"),
    ("synchronous_commit", "off"),
    ("fsync", "on"),
    ("shared_preload_libraries", "pg_stat_statements"),
    ("pg_stat_statements.track", "none"),
];

/// Starts the benchmark cluster (trust auth) and creates [`DB`] in it.
pub fn start_postgres() -> Result<pgtest::Cluster> {
    let mut opts = pgtest::ClusterOptions::with_auth(pgtest::HbaAuth::Trust);
    for (name, value) in PG_SETTINGS {
        opts = opts.setting(name, value);
    }
    let pg = pgtest::Cluster::start(&opts).context("starting the benchmark Postgres")?;
    pg.create_database(DB)
        .with_context(|| format!("creating database {DB}"))?;
    Ok(pg)
}

/// Polls `SELECT 1` through `port` with psql until it answers, `child`
/// exits, or [`READY_TIMEOUT`] passes.
fn wait_ready(name: &str, port: u16, child: &mut Child, log: &Path) -> Result<()> {
    let psql = pgtest::bin_dir().join("psql");
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("polling {name}"))?
        {
            bail!(
                "{name} exited during startup ({status}); log {}:\n{}",
                log.display(),
                sys::file_tail(log, 20)
            );
        }
        let out = sys::capture(
            Command::new(&psql)
                .args(["-X", "-A", "-t", "-w", "-h", "127.0.0.1", "-U", "postgres"])
                .args(["-p", &port.to_string(), "-d", DB, "-c", "SELECT 1"])
                .env("PGCONNECT_TIMEOUT", "5")
                .env_remove("PGPASSWORD")
                .env_remove("PGOPTIONS"),
            "psql",
        )?;
        if out.status.success() {
            return Ok(());
        }
        let last = sys::tail(&String::from_utf8_lossy(&out.stderr), 3);
        if Instant::now() >= deadline {
            bail!(
                "{name} did not answer SELECT 1 on port {port} within {:?}: {last}; log {}:\n{}",
                READY_TIMEOUT,
                log.display(),
                sys::file_tail(log, 20)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A proxy process that is stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct ProxyProcess {
    /// "pgbouncer" or "pgcoalesce".
    pub name: &'static str,
    /// Listen port on 127.0.0.1.
    pub port: u16,
    /// Its stdout+stderr.
    pub log: PathBuf,
    /// The command line, for the report.
    pub command: String,
    child: Child,
    /// Already stopped by [`ProxyProcess::stop`].
    stopped: bool,
    /// Config directory to delete after the process is gone.
    _dir: Option<TempDir>,
}

impl ProxyProcess {
    /// The proxy's own process id (not a wrapper's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Err` with the log tail when the process has died.
    pub fn check_alive(&self) -> std::result::Result<(), String> {
        if ProcStat::alive(self.pid()) {
            Ok(())
        } else {
            Err(format!(
                "{} (pid {}) is not running; log {}:\n{}",
                self.name,
                self.pid(),
                self.log.display(),
                sys::file_tail(&self.log, 15)
            ))
        }
    }
}

impl ProxyProcess {
    /// SIGTERM, then SIGKILL after a grace period; a note when it had to be
    /// killed or had already failed. Nothing is done the second time.
    pub fn stop(&mut self) -> Option<String> {
        if self.stopped {
            return None;
        }
        self.stopped = true;
        sys::terminate(&mut self.child, STOP_GRACE)
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Some(note) = self.stop() {
            eprintln!("bench: {} (pid {}) {note}", self.name, self.child.id());
        }
    }
}

/// Finds `pgbouncer` on PATH or in the sbin directories.
fn find_pgbouncer() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|d| d.join("pgbouncer"))
        .find(|p| p.is_file())
}

/// The pgbouncer binary, installed with apt-get when missing (root only).
pub fn ensure_pgbouncer() -> Result<PathBuf> {
    if let Some(p) = find_pgbouncer() {
        return Ok(p);
    }
    if !sys::running_as_root() {
        bail!("pgbouncer is not installed (install it with `apt-get install pgbouncer`)");
    }
    eprintln!("bench: pgbouncer not found; installing it with apt-get");
    let install = || {
        sys::capture(
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", "pgbouncer"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
            "apt-get install pgbouncer",
        )
    };
    let mut out = install()?;
    if !out.status.success() {
        eprintln!("bench: apt-get install failed; running apt-get update and retrying");
        sys::capture(Command::new("apt-get").arg("update"), "apt-get update")?;
        out = install()?;
    }
    if !out.status.success() {
        bail!(
            "apt-get install pgbouncer failed: {}",
            sys::tail(&String::from_utf8_lossy(&out.stderr), 10)
        );
    }
    find_pgbouncer().ok_or_else(|| anyhow!("pgbouncer still not found after apt-get install"))
}

/// `pgbouncer --version`'s first line.
pub fn pgbouncer_version(bin: &Path) -> Option<String> {
    sys::stdout_of(Command::new(bin).arg("--version"), "pgbouncer --version")
        .ok()
        .and_then(|s| s.lines().next().map(str::to_owned))
}

/// PgBouncer settings written to its ini (besides addresses and files).
pub fn pgbouncer_settings() -> Vec<(&'static str, String)> {
    vec![
        ("pool_mode", "transaction".into()),
        ("default_pool_size", POOL_SIZE.to_string()),
        ("max_client_conn", "2000".into()),
        ("auth_type", "trust".into()),
        ("listen_addr", "127.0.0.1".into()),
    ]
}

/// Starts PgBouncer in front of `pg` on a free port (as the `postgres` OS
/// user when we are root), logging to `log`.
pub fn start_pgbouncer(bin: &Path, pg: &pgtest::Cluster, log: &Path) -> Result<ProxyProcess> {
    let dir = tempfile::Builder::new()
        .prefix("bench-pgbouncer-")
        .tempdir()
        .context("creating PgBouncer's config directory")?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
        .context("making PgBouncer's config directory readable")?;
    let port = sys::free_port()?;
    let auth_file = dir.path().join("userlist.txt");
    write_public(&auth_file, "\"postgres\" \"\"\n")?;
    let mut ini = format!(
        "[databases]\n{DB} = host={} port={} dbname={DB} user=postgres\n\n[pgbouncer]\n",
        pg.socket_dir().display(),
        pg.port()
    );
    for (k, v) in pgbouncer_settings() {
        ini.push_str(&format!("{k} = {v}\n"));
    }
    ini.push_str(&format!(
        "listen_port = {port}\nunix_socket_dir =\nauth_file = {}\nadmin_users = postgres\n",
        auth_file.display()
    ));
    let ini_path = dir.path().join("pgbouncer.ini");
    write_public(&ini_path, &ini)?;

    let mut cmd = Command::new(bin);
    cmd.arg(&ini_path);
    if sys::running_as_root() {
        // PgBouncer refuses to run as root. Switching uid in the child (rather
        // than through runuser) keeps the spawned pid the pgbouncer process
        // itself, whose CPU time we sample.
        let (uid, gid) = sys::postgres_ids()?;
        cmd.uid(uid).gid(gid);
    }
    let command = format!("{} {}", bin.display(), ini_path.display());
    let child = spawn_logged(&mut cmd, log, false, "pgbouncer")?;
    let mut proc = ProxyProcess {
        name: "pgbouncer",
        port,
        log: log.to_owned(),
        command,
        child,
        stopped: false,
        _dir: Some(dir),
    };
    wait_ready("pgbouncer", port, &mut proc.child, log)?;
    Ok(proc)
}

/// Writes a file readable by everyone (PgBouncer runs as another user).
fn write_public(path: &Path, contents: &str) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
        .with_context(|| format!("chmod {}", path.display()))
}

/// Spawns `cmd` with stdin closed and stdout+stderr written to `log`
/// (truncated first unless `append`).
fn spawn_logged(cmd: &mut Command, log: &Path, append: bool, what: &str) -> Result<Child> {
    let file = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let file2 = file
        .try_clone()
        .with_context(|| format!("duplicating the handle of {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(file)
        .stderr(file2)
        .spawn()
        .with_context(|| format!("starting {what}"))
}

/// Workspace root (two levels above this crate's manifest).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .unwrap_or(manifest)
        .to_owned()
}

/// `cargo build --release -p pgcoalesce` in the workspace, output shown.
pub fn build_pgcoalesce() -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("bench: cargo build --release -p pgcoalesce");
    let mut cmd = Command::new(&cargo);
    // `cargo run` gives this process the package's CARGO_MANIFEST_DIR,
    // CARGO_PKG_*, ...; some build scripts (ring) rerun when those differ,
    // which would rebuild half the tree on every run. Hide them.
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || matches!(
                k.as_ref(),
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
            )
        {
            cmd.env_remove(&key);
        }
    }
    let status = cmd
        .args(["build", "--release", "-p", "pgcoalesce"])
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .status()
        .context("running cargo build --release -p pgcoalesce")?;
    if !status.success() {
        bail!("cargo build --release -p pgcoalesce failed ({status})");
    }
    Ok(())
}

/// The release pgcoalesce binary: `target/release/pgcoalesce`, found from
/// this executable's location (`target/<profile>/bench`).
pub fn pgcoalesce_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the bench executable")?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("unexpected executable location {}", exe.display()))?;
    let bin = target.join("release").join("pgcoalesce");
    if !bin.is_file() {
        bail!(
            "{} not found: run `cargo build --release -p pgcoalesce` (or drop --no-build)",
            bin.display()
        );
    }
    Ok(bin)
}

/// Starts pgcoalesce in transaction mode in front of `pg` (and `replica`,
/// if any) with the benchmark's config file (see [`pgcoalesce_config`]),
/// logging to `log` (appending when `append`).
pub fn start_pgcoalesce(
    bin: &Path,
    pg: &pgtest::Cluster,
    replica: Option<(&pgtest::Cluster, ReadYourWrites)>,
    log: &Path,
    append: bool,
) -> Result<ProxyProcess> {
    let port = sys::free_port()?;
    start_pgcoalesce_with(
        bin,
        &pgcoalesce_config(pg, replica, port),
        port,
        log,
        append,
    )
}

/// Starts pgcoalesce with the config text `config` (which must listen on
/// 127.0.0.1:`port`), logging to `log` (appending when `append`).
pub fn start_pgcoalesce_with(
    bin: &Path,
    config: &str,
    port: u16,
    log: &Path,
    append: bool,
) -> Result<ProxyProcess> {
    let dir = tempfile::Builder::new()
        .prefix("bench-pgcoalesce-")
        .tempdir()
        .context("creating pgcoalesce's config directory")?;
    let config_path = dir.path().join("pgcoalesce.yaml");
    fs::write(&config_path, config)
        .with_context(|| format!("writing {}", config_path.display()))?;
    let args = vec![
        "--config".to_owned(),
        config_path.display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
    ];
    let mut cmd = Command::new(bin);
    cmd.args(&args).env("RUST_LOG", "warn");
    let command = format!("RUST_LOG=warn {} {}", bin.display(), args.join(" "));
    let child = spawn_logged(&mut cmd, log, append, "pgcoalesce")?;
    let mut proc = ProxyProcess {
        name: "pgcoalesce",
        port,
        log: log.to_owned(),
        command,
        child,
        stopped: false,
        _dir: Some(dir),
    };
    wait_ready("pgcoalesce", port, &mut proc.child, log)?;
    Ok(proc)
}

/// pgcoalesce's YAML config: transaction mode, pool size [`POOL_SIZE`],
/// user `postgres` with trust, databases [`DB`] and [`DB_IMMEDIATE`] (both
/// upstream database `bench`, reached like PgBouncer over Postgres's Unix
/// socket, as a proxy on the database host would), and one coalescing rule
/// for [`UPSERT_FUNCTION`] per database: `hot_flushed` (ack flushed) on
/// [`DB`] and `hot_immediate` (ack immediate) on [`DB_IMMEDIATE`], with the
/// reference rule's arguments, key, writes and flush statement and default
/// tuning. Statements that are not such calls pass through both alike.
/// With `replica`, [`DB`] lists it under `replicas:` (reached over its Unix
/// socket too) and a `read_split:` section ([`READ_SPLIT`]) is added.
pub fn pgcoalesce_config(
    pg: &pgtest::Cluster,
    replica: Option<(&pgtest::Cluster, ReadYourWrites)>,
    listen_port: u16,
) -> String {
    let host = yaml_str(&pg.socket_dir().display().to_string());
    let port = pg.port();
    let mut lines = vec![
        format!("listen: 127.0.0.1:{listen_port}"),
        "pool:".into(),
        "  mode: transaction".into(),
        format!("  size: {POOL_SIZE}"),
        "users:".into(),
        "  - name: postgres".into(),
        "    auth: trust".into(),
        "databases:".into(),
    ];
    for name in [DB, DB_IMMEDIATE] {
        lines.extend([
            format!("  - name: {name}"),
            format!("    host: {host}"),
            format!("    port: {port}"),
            format!("    dbname: {DB}"),
        ]);
        if let (DB, Some((r, _))) = (name, replica) {
            lines.extend([
                "    replicas:".into(),
                format!(
                    "      - host: {}",
                    yaml_str(&r.socket_dir().display().to_string())
                ),
                format!("        port: {}", r.port()),
            ]);
        }
    }
    if let Some((_, ryw)) = replica {
        lines.push("read_split:".into());
        lines.extend(READ_SPLIT.iter().map(|(k, v)| format!("  {k}: {v}")));
        if ryw == ReadYourWrites::Off {
            lines.push("  read_your_writes_window: 0".into());
        }
    }
    lines.push("coalesce:".into());
    for (rule, db, ack) in [
        ("hot_flushed", DB, "flushed"),
        ("hot_immediate", DB_IMMEDIATE, "immediate"),
    ] {
        lines.extend([
            format!("  - name: {rule}"),
            format!("    database: {db}"),
            format!("    function: {UPSERT_FUNCTION}"),
            "    arguments: [p_entity_name, p_key, p_value, p_sync_group]".into(),
            "    defaults: {p_sync_group: public.NORMAL}".into(),
            "    key: [p_entity_name, p_key]".into(),
            "    writes: [entity.entity_metadata]".into(),
            format!("    flush: {}", yaml_str(FLUSH_STATEMENT)),
            format!("    ack: {ack}"),
        ]);
    }
    lines.join("\n") + "\n"
}

/// The `read_split:` section of a pgcoalesce with a replica: the defaults,
/// spelled out (plus `read_your_writes_window: 0` for
/// [`ReadYourWrites::Off`]).
pub const READ_SPLIT: &[(&str, &str)] = &[
    ("health_check_interval", "1s"),
    ("max_lag_bytes", "16777216"),
    ("max_lag", "5s"),
    ("balancing", "round_robin"),
];

/// How a pgcoalesce with a replica treats the reads of a client that wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadYourWrites {
    /// The default: they stay on the primary until the replica has
    /// replayed the client's last write.
    UntilReplayed,
    /// `read_your_writes_window: 0`: any read may go to the replica.
    Off,
}

/// The rules' bulk statement, as in the reference config: the batch upsert
/// of migrations/002 with the arrival stamps (`$5`).
pub const FLUSH_STATEMENT: &str = "SELECT entity.update_metadata_batch($1::text[], $2::text[], \
                               $3::text[]::jsonb[], $4::text[], $5::text[]::bigint[])";

/// A YAML double-quoted scalar.
fn yaml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// pgcoalesce processes in front of the benchmark cluster and one
/// streaming replica of it. Field order is drop order: the proxies stop
/// before the replica.
pub struct ReadSplitStack {
    /// pgcoalesce processes with the replica in their config, by the
    /// target they serve.
    pub proxies: Vec<(Target, ProxyProcess)>,
    /// The replica (its files are removed on drop).
    pub replica: pgtest::Cluster,
}

impl ReadSplitStack {
    /// The process serving `target`.
    pub fn proxy(&self, target: Target) -> Option<&ProxyProcess> {
        self.proxies
            .iter()
            .find(|(t, _)| *t == target)
            .map(|(_, p)| p)
    }
}

/// Everything scenarios run against. Field order is drop order: the proxies
/// stop before the cluster does.
pub struct Stack {
    /// pgcoalesce with a replica, while a scenario that needs it runs.
    pub read_split: RefCell<Option<ReadSplitStack>>,
    /// pgcoalesce (replaced by [`Stack::restart_pgcoalesce`]).
    pub pgcoalesce: RefCell<ProxyProcess>,
    /// PgBouncer, or why it is unavailable (its runs are then recorded as failed).
    pub pgbouncer: std::result::Result<ProxyProcess, String>,
    /// The benchmark cluster.
    pub pg: pgtest::Cluster,
    /// The pgcoalesce binary, for restarts.
    pub pgcoalesce_bin: PathBuf,
}

impl Stack {
    /// Stops pgcoalesce (SIGTERM) and starts a fresh one on a new port, its
    /// output appended to the same log: coalescing runs each get a process
    /// of their own, so its memory figures belong to that run alone.
    pub fn restart_pgcoalesce(&self) -> Result<()> {
        let mut current = self.pgcoalesce.borrow_mut();
        if let Some(note) = current.stop() {
            eprintln!("bench: pgcoalesce (pid {}) {note}", current.pid());
        }
        let log = current.log.clone();
        *current = start_pgcoalesce(&self.pgcoalesce_bin, &self.pg, None, &log, true)?;
        Ok(())
    }
}
