//! Presenting results: the stdout table, `results.json`, and the facts about
//! the machine and software versions recorded with them.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::scenarios::{RunRecord, ScenarioReport};
use crate::sys;

/// The machine the benchmark ran on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs available to this process.
    pub nproc: usize,
    /// "model name" from /proc/cpuinfo.
    pub cpu_model: Option<String>,
    /// MemTotal from /proc/meminfo, in MiB.
    pub memory_mib: Option<u64>,
    /// `uname -sr`.
    pub kernel: Option<String>,
    /// PRETTY_NAME from /etc/os-release.
    pub os: Option<String>,
}

impl Machine {
    /// Reads everything it can; missing facts are `None`.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: key_value(&cpuinfo, "model name", ':'),
            memory_mib: key_value(&meminfo, "MemTotal", ':')
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .map(|kib| kib / 1024),
            kernel: sys::stdout_of(Command::new("uname").arg("-sr"), "uname").ok(),
            os: key_value(&os_release, "PRETTY_NAME", '=').map(|v| v.trim_matches('"').to_owned()),
        }
    }
}

/// The value of the first `key<sep>value` line in `text`, trimmed.
fn key_value(text: &str, key: &str, sep: char) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(sep)?;
        (k.trim() == key).then(|| v.trim().to_owned())
    })
}

/// First line of `<bin> --version`, if it runs.
pub fn version_of(bin: &Path) -> Option<String> {
    sys::stdout_of(Command::new(bin).arg("--version"), "--version")
        .ok()
        .and_then(|s| s.lines().next().map(str::to_owned))
}

/// `git rev-parse HEAD` of the workspace and whether the tree has changes.
pub fn git_state(root: &Path) -> (Option<String>, Option<bool>) {
    let git = |args: &[&str]| {
        sys::stdout_of(Command::new("git").arg("-C").arg(root).args(args), "git").ok()
    };
    let commit = git(&["rev-parse", "HEAD"]);
    let dirty = git(&["status", "--porcelain"]).map(|s| !s.is_empty());
    (commit, dirty)
}

/// Current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Writes `value` as pretty JSON to `path`.
pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("serializing the results")?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// Formats an optional number with `decimals`, `-` when absent.
fn num(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:.decimals$}"))
}

/// Formats a ratio as `1.23x`, `-` when absent.
fn ratio(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:.2}x"))
}

/// Which columns a scenario's table has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Columns {
    /// pgbench's figures, proxy CPU, ratios to direct and PgBouncer.
    Pooling,
    /// Those and what reached Postgres ([`crate::writes::Writes`]).
    Coalescing,
    /// pgbench's figures, read and write p99, the replica's share of the
    /// reads, ratios to direct and to pgcoalesce with the primary only.
    ReadSplit,
}

impl Columns {
    fn of(report: &ScenarioReport) -> Columns {
        if report.coalescing {
            Columns::Coalescing
        } else if report
            .groups
            .iter()
            .any(|g| g.runs.iter().any(|r| r.reads.is_some()))
        {
            Columns::ReadSplit
        } else {
            Columns::Pooling
        }
    }

    fn headers(self) -> Vec<&'static str> {
        let first = if self == Columns::Coalescing {
            "group"
        } else {
            "mode"
        };
        let mut h = vec![first, "target", "tps", "avg ms", "p50 ms", "p99 ms"];
        match self {
            Columns::Pooling => h.extend(["cpu µs/tx", "vs direct", "vs pgbouncer"]),
            Columns::Coalescing => h.extend([
                "cpu µs/tx",
                "vs direct",
                "vs pgbouncer",
                "stmts/1k",
                "rows/s",
                "drain s",
                "rss MiB",
            ]),
            Columns::ReadSplit => h.extend([
                "read p50",
                "read p99",
                "write p99",
                "replica %",
                "cpu µs/tx",
                "vs direct",
                "vs primary only",
            ]),
        }
        h
    }
}

/// The stdout table of one scenario.
pub fn table(report: &ScenarioReport) -> String {
    if let Some(f) = &report.flusher {
        return crate::flusher::table(f);
    }
    let columns = Columns::of(report);
    let headers = columns.headers();
    // (group index, cells)
    let mut rows: Vec<(usize, Vec<String>)> = Vec::new();
    let mut failures = Vec::new();
    let mut skips: Vec<String> = Vec::new();
    for (gi, group) in report.groups.iter().enumerate() {
        for run in &group.runs {
            rows.push((gi, row(&group.label, run, columns)));
            if let Some(e) = &run.outcome.error {
                failures.push(format!("{} / {}: {}", group.label, run.target.label(), e));
            }
            if let Some(reason) = &run.skipped {
                let line = format!("{}: {reason}", run.target.label());
                if !skips.contains(&line) {
                    skips.push(line);
                }
            }
        }
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for (_, r) in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            let pad = w.saturating_sub(cell.chars().count());
            if i < 2 {
                let _ = write!(s, "{cell}{}  ", " ".repeat(pad));
            } else {
                let _ = write!(s, "{}{cell}  ", " ".repeat(pad));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = format!(
        "== {} ({}) ==\n{}\n",
        report.title, report.name, report.description
    );
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let header_line = line(&header);
    out.push_str(&header_line);
    out.push('\n');
    out.push_str(&"-".repeat(header_line.chars().count()));
    out.push('\n');
    for (i, (gi, cells)) in rows.iter().enumerate() {
        if i > 0 && rows[i - 1].0 != *gi {
            out.push('\n');
        }
        out.push_str(&line(cells));
        out.push('\n');
    }
    match columns {
        Columns::Coalescing => out.push_str(COALESCING_LEGEND),
        Columns::ReadSplit => out.push_str(READ_SPLIT_LEGEND),
        Columns::Pooling => {}
    }
    for skip in skips {
        out.push_str(&format!("skipped {skip}\n"));
    }
    if !failures.is_empty() {
        out.push_str("failed runs:\n");
        for f in failures {
            let mut lines = f.lines();
            out.push_str(&format!("  {}\n", lines.next().unwrap_or("")));
            // The full stderr tail is in results.json.
            for l in lines.take(3) {
                out.push_str(&format!("      {l}\n"));
            }
        }
    }
    out
}

/// What the columns of a coalescing scenario's table mean.
const COALESCING_LEGEND: &str = "\
one upsert per pgbench transaction: tps = acknowledged upserts/s, cpu = proxy CPU per ack; \
entity_metadata emptied before each run\n\
stmts/1k: upsert statements reaching Postgres per 1,000 client upserts; rows/s: rows \
inserted or updated per second of run + drain (pg_stat_statements)\n\
drain: time from the last ack until the last write reached Postgres; rss: proxy's peak \
VmRSS during the run (pgcoalesce: a fresh process per run)\n";

/// What the columns of a read-splitting scenario's table mean.
const READ_SPLIT_LEGEND: &str = "\
read p50/p99, write p99: latency (ms) of the read and of the write transactions (pgbench -l, \
per script); p50/p99: all transactions\n\
replica %: share of the reads executed by the replica (pg_stat_statements on both servers); \
vs primary only: tps / tps of pgcoalesce without the replica in the same group\n";

/// One table row, with the columns of `columns`.
fn row(mode: &str, run: &RunRecord, columns: Columns) -> Vec<String> {
    let stats = run.outcome.stats.as_ref().filter(|_| run.outcome.ok);
    let coalescing = columns == Columns::Coalescing;
    let mut cells = vec![mode.to_owned(), run.target.title(coalescing).to_owned()];
    let width = columns.headers().len() - 2;
    match stats {
        Some(s) => {
            cells.extend([
                format!("{:.0}", s.tps),
                num(s.latency_avg_ms, 3),
                num(s.latency_p50_ms, 3),
                num(s.latency_p99_ms, 3),
            ]);
            if columns == Columns::ReadSplit {
                let r = run.reads.as_ref();
                cells.extend([
                    num(r.and_then(|r| r.read_p50_ms), 3),
                    num(r.and_then(|r| r.read_p99_ms), 3),
                    num(r.and_then(|r| r.write_p99_ms), 3),
                    num(r.and_then(|r| r.replica_share).map(|x| x * 100.0), 1),
                ]);
            }
            cells.push(num(
                run.outcome.proxy_cpu.as_ref().and_then(|c| c.us_per_tx),
                1,
            ));
            cells.push(ratio(run.ratio_vs_direct));
            cells.push(if columns == Columns::ReadSplit {
                ratio(run.ratio_vs_primary_only)
            } else {
                ratio(run.ratio_vs_pgbouncer)
            });
            if coalescing {
                let w = run.writes.as_ref();
                cells.extend([
                    num(w.and_then(|w| w.statements_per_1k_upserts), 1),
                    num(w.and_then(|w| w.rows_per_second), 0),
                    num(w.map(|w| w.drain_ms as f64 / 1000.0), 1),
                    num(run.rss_mib(), 1),
                ]);
            }
        }
        None => {
            cells.push(
                if run.skipped.is_some() {
                    "skipped"
                } else {
                    "FAILED"
                }
                .into(),
            );
            cells.extend((1..width).map(|_| "-".to_owned()));
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(utc_now().len(), 20);
    }

    #[test]
    fn key_values() {
        let text = "processor\t: 0\nmodel name\t: Some CPU @ 2GHz\n";
        assert_eq!(
            key_value(text, "model name", ':').as_deref(),
            Some("Some CPU @ 2GHz")
        );
        assert_eq!(key_value(text, "flags", ':'), None);
    }
}
