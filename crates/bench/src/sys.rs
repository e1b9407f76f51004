//! Talking to the operating system: free ports, running helper commands,
//! the `postgres` OS user, signals, and per-process CPU time from `/proc`.
//!
//! Everything here is Linux-specific (the benchmark reads `/proc`).

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The OS user PostgreSQL and PgBouncer run as when we are root.
pub const PG_OS_USER: &str = "postgres";

/// A currently free TCP port on 127.0.0.1 (the kernel's choice).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("binding a probe socket on 127.0.0.1:0")?;
    let port = listener
        .local_addr()
        .context("reading the probe socket's address")?
        .port();
    Ok(port)
}

/// Runs `cmd` to completion capturing its output; a spawn failure is an
/// error, a non-zero exit is not (the caller decides).
pub fn capture(cmd: &mut Command, what: &str) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))
}

/// Runs `cmd` and returns its trimmed stdout, failing on a non-zero exit
/// with the stderr tail in the message.
pub fn stdout_of(cmd: &mut Command, what: &str) -> Result<String> {
    let out = capture(cmd, what)?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 10)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The last `n` non-empty lines of `text`, joined with newlines.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The last `n` lines of the file at `path` (empty if unreadable).
pub fn file_tail(path: &Path, n: usize) -> String {
    std::fs::read(path)
        .map(|b| tail(&String::from_utf8_lossy(&b), n))
        .unwrap_or_default()
}

/// True when this process runs as root (effective uid 0, from `/proc`).
pub fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
            })
            .unwrap_or(false)
    })
}

/// The uid and gid of the `postgres` OS user (created by the PostgreSQL
/// packages), from `id`.
pub fn postgres_ids() -> Result<(u32, u32)> {
    let id = |flag: &str| -> Result<u32> {
        let text = stdout_of(
            Command::new("id").args([flag, PG_OS_USER]),
            &format!("`id {flag} {PG_OS_USER}`"),
        )?;
        text.parse()
            .with_context(|| format!("parsing `id {flag} {PG_OS_USER}` output {text:?}"))
    };
    Ok((id("-u")?, id("-g")?))
}

/// Sends SIGTERM to `child`, waits up to `grace` for it to exit, then
/// SIGKILLs it. Returns a note when the process had to be killed or had
/// already exited with a failure.
pub fn terminate(child: &mut Child, grace: Duration) -> Option<String> {
    if let Ok(Some(status)) = child.try_wait() {
        return (!status.success()).then(|| format!("had already exited: {status}"));
    }
    let pid = child.id().to_string();
    let _ = Command::new("kill")
        .args(["-TERM", &pid])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    Some(format!(
        "did not exit within {:?} of SIGTERM; killed",
        grace
    ))
}

/// Clock ticks per second used by `/proc/<pid>/stat` (`getconf CLK_TCK`,
/// 100 if that cannot be run).
pub fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        stdout_of(Command::new("getconf").arg("CLK_TCK"), "getconf CLK_TCK")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// State and CPU time of one process, from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy)]
pub struct ProcStat {
    /// Field 3: `R`, `S`, `Z`, ...
    pub state: char,
    /// Fields 14 + 15 (utime + stime), in clock ticks, all threads.
    pub cpu_ticks: u64,
}

impl ProcStat {
    /// Reads `/proc/<pid>/stat`; `None` when the process is gone.
    pub fn read(pid: u32) -> Option<ProcStat> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_stat(&text)
    }

    /// False for a process that is gone or a zombie.
    pub fn alive(pid: u32) -> bool {
        ProcStat::read(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X')
    }

    /// CPU time in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        self.cpu_ticks as f64 / clock_ticks() as f64
    }
}

/// Resident set size of a process in KiB (`VmRSS` from `/proc/<pid>/status`);
/// `None` when the process is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&text)
}

/// The `VmRSS:   1234 kB` line of a `/proc/<pid>/status` text, in KiB.
fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Parses a `/proc/<pid>/stat` line. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after the last `)`.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state), so field N is fields[N - 3].
    let state = fields.first()?.chars().next()?;
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(ProcStat {
        state,
        cpu_ticks: utime + stime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_name() {
        let line = "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 75 0 0 20 0 4 0 12345 1000 100 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.cpu_ticks, 325);
    }

    #[test]
    fn vm_rss() {
        assert_eq!(parse_vm_rss("Name:\tx\nVmRSS:\t   5120 kB\n"), Some(5120));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert!(rss_kib(std::process::id()).is_some_and(|k| k > 0));
    }

    #[test]
    fn own_process_is_alive() {
        assert!(ProcStat::alive(std::process::id()));
        assert!(ProcStat::read(std::process::id()).is_some());
    }

    #[test]
    fn tails() {
        assert_eq!(tail("a\n\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("", 3), "");
    }
}
