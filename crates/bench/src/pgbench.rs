//! Running `pgbench` and reading its results.
//!
//! Owns one pgbench invocation end to end: a private working directory (for
//! the per-transaction logs of `-l`), a watchdog timeout (a hung proxy must
//! not hang the benchmark), sampling a proxy process's CPU time around the
//! run, and parsing pgbench's summary plus latency percentiles from the logs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::sys::{self, ProcStat};

/// libpq variables that must not leak in from the caller's shell.
const SCRUBBED_ENV: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGOPTIONS",
    "PGSSLMODE",
    "PGAPPNAME",
];

/// Path of the `pgbench` matching the server (from pgtest's bin dir).
pub fn pgbench_bin() -> PathBuf {
    let dir = pgtest::bin_dir();
    if dir.as_os_str().is_empty() {
        PathBuf::from("pgbench")
    } else {
        dir.join("pgbench")
    }
}

/// One pgbench invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Port on 127.0.0.1 to connect to.
    pub port: u16,
    /// Database name.
    pub db: String,
    /// Options before the connection options (e.g. `-n -S -c 16 -T 10`).
    pub args: Vec<String>,
    /// Kill pgbench after this long and record the run as failed.
    pub timeout: Duration,
    /// Proxy process whose CPU time is sampled around the run.
    pub watch_pid: Option<u32>,
    /// Files to write into the working directory first (custom scripts for
    /// `-f NAME`), as (file name, contents).
    pub files: Vec<(String, String)>,
}

impl Invocation {
    /// pgbench with `args` against `port`, database `db`, no proxy watched.
    pub fn new(port: u16, db: &str, args: Vec<String>, timeout: Duration) -> Invocation {
        Invocation {
            port,
            db: db.to_owned(),
            args,
            timeout,
            watch_pid: None,
            files: Vec::new(),
        }
    }
}

/// `pgbench -i -q -s <scale>` against `port` (creates the pgbench tables).
pub fn initialize(port: u16, db: &str, scale: u32) -> Result<()> {
    let bin = pgbench_bin();
    let mut cmd = Command::new(&bin);
    cmd.args(["-i", "-q", "-s", &scale.to_string()])
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            db,
        ])
        .env("LC_ALL", "C");
    for key in SCRUBBED_ENV {
        cmd.env_remove(key);
    }
    sys::stdout_of(&mut cmd, "pgbench -i").map(drop)
}

/// pgbench's summary figures (plus percentiles when `-l` was given).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// "number of transactions actually processed".
    pub transactions: u64,
    /// "number of failed transactions" (PostgreSQL 15+; 0 when absent).
    pub failed_transactions: u64,
    /// "tps = N (without initial connection time)".
    pub tps: f64,
    /// "latency average = X ms".
    pub latency_avg_ms: Option<f64>,
    /// Median transaction latency from the `-l` logs.
    pub latency_p50_ms: Option<f64>,
    /// 99th percentile transaction latency from the `-l` logs.
    pub latency_p99_ms: Option<f64>,
    /// Transactions found in the `-l` logs.
    pub logged_transactions: u64,
    /// Per-script figures from the `-l` logs when pgbench ran more than one
    /// script (`-f a@9 -f b@1`), in `-f` order; empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scripts: Vec<ScriptStats>,
}

/// The `-l` figures of one script of a multi-script run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScriptStats {
    /// pgbench's script number (0 for the first `-f`).
    pub script: u32,
    /// Transactions of this script in the logs (failed ones left out).
    pub transactions: u64,
    /// Median latency of this script's transactions.
    pub latency_p50_ms: Option<f64>,
    /// 99th percentile latency of this script's transactions.
    pub latency_p99_ms: Option<f64>,
}

/// CPU used by the watched process during the run.
#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    /// Process id sampled.
    pub pid: u32,
    /// utime + stime consumed during the run, in seconds.
    pub seconds: f64,
    /// `seconds * 1e6 / transactions`.
    pub us_per_tx: Option<f64>,
}

/// Resident memory of the watched process.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// Largest VmRSS seen while pgbench ran (sampled every ~100 ms), KiB.
    pub rss_peak_kib: u64,
    /// VmRSS right after pgbench exited, KiB.
    pub rss_after_kib: Option<u64>,
}

/// What happened to one invocation.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The command line (connection options included).
    pub command: String,
    /// Exit 0 and a parsable summary.
    pub ok: bool,
    /// Why it failed: exit status, timeout, stderr tail.
    pub error: Option<String>,
    /// Parsed figures (also kept for failed runs when pgbench printed them).
    pub stats: Option<Stats>,
    /// CPU of the watched proxy process.
    pub proxy_cpu: Option<CpuUse>,
    /// Memory of the watched proxy process.
    pub proxy_memory: Option<Memory>,
    /// Wall-clock seconds pgbench ran (including connection setup).
    pub wall_seconds: f64,
}

/// Runs pgbench as described; only a failure to even start it (or to set
/// up its working directory) is an `Err`.
pub fn run(inv: &Invocation) -> Result<Outcome> {
    let dir = tempfile::Builder::new()
        .prefix("bench-pgbench-")
        .tempdir()
        .context("creating a working directory for pgbench")?;
    for (name, contents) in &inv.files {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    let stdout_path = dir.path().join("stdout.txt");
    let stderr_path = dir.path().join("stderr.txt");
    let open =
        |p: &Path| std::fs::File::create(p).with_context(|| format!("creating {}", p.display()));

    let bin = pgbench_bin();
    let mut args = inv.args.clone();
    args.extend(
        [
            "-h",
            "127.0.0.1",
            "-p",
            &inv.port.to_string(),
            "-U",
            "postgres",
            &inv.db,
        ]
        .map(String::from),
    );
    let command = format!("{} {}", bin.display(), args.join(" "));

    let mut cmd = Command::new(&bin);
    cmd.args(&args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(open(&stdout_path)?)
        .stderr(open(&stderr_path)?)
        .env("PGCONNECT_TIMEOUT", "10")
        .env("LC_ALL", "C");
    for key in SCRUBBED_ENV {
        cmd.env_remove(key);
    }

    let before = inv.watch_pid.and_then(ProcStat::read);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut timed_out = false;
    let mut rss_peak: Option<u64> = None;
    let mut polls = 0u32;
    let status = loop {
        if polls.is_multiple_of(5) {
            if let Some(kib) = inv.watch_pid.and_then(sys::rss_kib) {
                rss_peak = Some(rss_peak.map_or(kib, |p| p.max(kib)));
            }
        }
        polls += 1;
        match child.try_wait().context("waiting for pgbench")? {
            Some(status) => break status,
            None if started.elapsed() > inv.timeout => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().context("reaping the killed pgbench")?;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let wall_seconds = started.elapsed().as_secs_f64();
    let after = inv.watch_pid.and_then(ProcStat::read);
    let rss_after = inv.watch_pid.and_then(sys::rss_kib);
    let proxy_memory = rss_peak.map(|peak| Memory {
        rss_peak_kib: peak.max(rss_after.unwrap_or(0)),
        rss_after_kib: rss_after,
    });

    let stdout = read_lossy(&stdout_path);
    let stderr = read_lossy(&stderr_path);
    let mut stats = parse_summary(&stdout);
    if let Some(s) = stats.as_mut() {
        let logged = read_log(dir.path())?;
        let mut latencies: Vec<u64> = logged.iter().map(|&(_, us)| us).collect();
        s.logged_transactions = latencies.len() as u64;
        s.latency_p50_ms = percentile_ms(&mut latencies, 50.0);
        s.latency_p99_ms = percentile_ms(&mut latencies, 99.0);
        s.scripts = per_script(&logged);
    }
    let proxy_cpu = match (inv.watch_pid, before, after) {
        (Some(pid), Some(b), Some(a)) => {
            let seconds = a.cpu_seconds() - b.cpu_seconds();
            let tx = stats.as_ref().map_or(0, |s| s.transactions);
            Some(CpuUse {
                pid,
                seconds,
                us_per_tx: (tx > 0).then(|| seconds * 1e6 / tx as f64),
            })
        }
        _ => None,
    };

    let error = if timed_out {
        Some(format!(
            "timed out after {:.0} s (pgbench killed); stderr: {}",
            inv.timeout.as_secs_f64(),
            sys::tail(&stderr, 8)
        ))
    } else if !status.success() {
        Some(format!("pgbench {status}: {}", sys::tail(&stderr, 8)))
    } else if stats.is_none() {
        Some(format!(
            "pgbench printed no summary; stdout: {}",
            sys::tail(&stdout, 8)
        ))
    } else {
        None
    };
    Ok(Outcome {
        command,
        ok: error.is_none(),
        error,
        stats,
        proxy_cpu,
        proxy_memory,
        wall_seconds,
    })
}

/// A file's contents as text (empty if unreadable).
fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Parses pgbench's summary; `None` without a tps line.
pub fn parse_summary(out: &str) -> Option<Stats> {
    let mut stats = Stats::default();
    let mut have_tps = false;
    for line in out.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("number of transactions actually processed:") {
            stats.transactions = first_number(rest)? as u64;
        } else if let Some(rest) = line.strip_prefix("number of failed transactions:") {
            stats.failed_transactions = first_number(rest)? as u64;
        } else if let Some(rest) = line.strip_prefix("latency average =") {
            stats.latency_avg_ms = first_number(rest);
        } else if let Some(rest) = line.strip_prefix("tps =") {
            if rest.contains("without initial connection time") {
                stats.tps = first_number(rest)?;
                have_tps = true;
            }
        }
    }
    have_tps.then_some(stats)
}

/// The leading number of `text` (after whitespace), e.g. `" 123/456"` -> 123.
fn first_number(text: &str) -> Option<f64> {
    let t = text.trim_start();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'))
        .unwrap_or(t.len());
    t[..end].parse().ok()
}

/// (script number, latency in µs) of every transaction in every
/// `pgbench_log.*` file in `dir`.
fn read_log(dir: &Path) -> Result<Vec<(u32, u64)>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with("pgbench_log")
        {
            continue;
        }
        let path = entry.path();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        out.extend(parse_log(&text));
    }
    Ok(out)
}

/// Column 4 (script number) and column 3 (latency, µs) of each
/// per-transaction log line (`client_id transaction_no time script_no
/// time_epoch time_us ...`); skipped (`-`) and failed (`failed`)
/// transactions have no latency and are left out.
fn parse_log(text: &str) -> impl Iterator<Item = (u32, u64)> + '_ {
    text.lines().filter_map(|l| {
        let mut cols = l.split_whitespace().skip(2);
        let us = cols.next()?.parse().ok()?;
        let script = cols.next()?.parse().ok()?;
        Some((script, us))
    })
}

/// Per-script figures of `logged` when it holds more than one script.
fn per_script(logged: &[(u32, u64)]) -> Vec<ScriptStats> {
    let scripts = logged.iter().map(|&(s, _)| s).max().unwrap_or(0);
    if scripts == 0 {
        return Vec::new();
    }
    (0..=scripts)
        .map(|script| {
            let mut us: Vec<u64> = logged
                .iter()
                .filter(|&&(s, _)| s == script)
                .map(|&(_, us)| us)
                .collect();
            ScriptStats {
                script,
                transactions: us.len() as u64,
                latency_p50_ms: percentile_ms(&mut us, 50.0),
                latency_p99_ms: percentile_ms(&mut us, 99.0),
            }
        })
        .collect()
}

/// Nearest-rank percentile of `latencies_us`, in milliseconds.
pub fn percentile_ms(latencies_us: &mut [u64], p: f64) -> Option<f64> {
    if latencies_us.is_empty() {
        return None;
    }
    latencies_us.sort_unstable();
    let n = latencies_us.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    let idx = rank.clamp(1, n) - 1;
    Some(latencies_us[idx] as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 10
query mode: prepared
number of clients: 16
number of threads: 2
maximum number of tries: 1
duration: 10 s
number of transactions actually processed: 412345
number of failed transactions: 3 (0.001%)
latency average = 0.388 ms
initial connection time = 14.210 ms
tps = 41234.567890 (without initial connection time)
";

    #[test]
    fn parses_summary() {
        let s = parse_summary(SAMPLE).unwrap();
        assert_eq!(s.transactions, 412345);
        assert_eq!(s.failed_transactions, 3);
        assert_eq!(s.latency_avg_ms, Some(0.388));
        assert!((s.tps - 41234.56789).abs() < 1e-6);
    }

    #[test]
    fn no_tps_no_summary() {
        assert!(parse_summary("pgbench: error: connection failed").is_none());
    }

    #[test]
    fn log_lines_and_percentiles() {
        let log =
            "0 1 250 0 1700000000 1\n0 2 750 0 1700000000 2\n1 1 failed 0 1 1\n1 2 500 0 1 3\n";
        let logged: Vec<(u32, u64)> = parse_log(log).collect();
        let mut v: Vec<u64> = logged.iter().map(|&(_, us)| us).collect();
        assert_eq!(v.len(), 3);
        assert_eq!(percentile_ms(&mut v, 50.0), Some(0.5));
        assert_eq!(percentile_ms(&mut v, 99.0), Some(0.75));
        assert_eq!(percentile_ms(&mut [], 50.0), None);
        assert!(per_script(&logged).is_empty());
    }

    #[test]
    fn per_script_percentiles() {
        let log = "0 1 100 0 1 1\n0 2 900 1 1 2\n1 1 300 0 1 3\n1 2 failed 1 1 4\n2 1 200 0 1 5\n";
        let s = per_script(&parse_log(log).collect::<Vec<_>>());
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].script, s[0].transactions), (0, 3));
        assert_eq!(s[0].latency_p50_ms, Some(0.2));
        assert_eq!(s[0].latency_p99_ms, Some(0.3));
        assert_eq!((s[1].script, s[1].transactions), (1, 1));
        assert_eq!(s[1].latency_p99_ms, Some(0.9));
    }
}
