//! Replica health and lag, and the choice of a replica for a read.
//!
//! A [`ReplicaSet`] watches the streaming replicas of one database. Its
//! background monitor samples, every `interval`, the primary's WAL position
//! (`pg_current_wal_lsn()`) and then each replica's recovery status, replay
//! position (`pg_last_wal_replay_lsn()`) and the age of its last replayed
//! transaction. From those it derives, per replica:
//!
//! - `lag_bytes`: the primary's position minus the replica's (never
//!   negative: a replica sampled after the primary may be "ahead");
//! - `lag_seconds`: the age of the last replayed transaction, 0 when
//!   `lag_bytes` is 0;
//! - `caught_up_to`: the newest instant T at which the primary was sampled
//!   with an LSN the replica has replayed. The instant is taken *before* the
//!   primary is asked, so every write that finished before T is in that LSN
//!   and therefore on the replica. A client whose last write finished before
//!   T reads its own writes there;
//! - `up`: the replica answered, is in recovery, and is within both lag
//!   bounds (see [`evaluate`]).
//!
//! [`ReplicaSet::choose`] picks among the replicas that are up and, for a
//! client that wrote, have caught up to its last write (or whose write is
//! older than the read-your-writes window); `None` means "use the primary".
//!
//! The arithmetic ([`parse_lsn`], [`lag_bytes`], [`LsnHistory`],
//! [`evaluate`], [`may_serve`]) is pure and public so it can be tested
//! without servers; [`ReplicaSet::with_states`] builds a set with no
//! monitor for testing the balancing policies.
//!
//! Caveats: `lag_seconds` compares the replica's clock with the primary's
//! commit timestamps, so clock skew between the two shows in it. A commit
//! with `synchronous_commit = off` returns before its WAL is written, so
//! `pg_current_wal_lsn()` sampled just after it may not cover it yet; such
//! a client may, for up to one WAL writer delay, read a replica that lacks
//! its write.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use wire::inspect::TxStatus;

pub use config::Balancing;

use crate::server::{ServerConn, ServerTarget};

/// How long primary WAL samples are kept (at least the newest one is kept
/// however old it is).
pub const HISTORY: Duration = Duration::from_secs(60);
/// Upper bound on the time a server gets to connect and log in for a check.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bounds on the time a check query may take (the interval within them).
const MIN_QUERY_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_QUERY_TIMEOUT: Duration = Duration::from_secs(10);

const PRIMARY_SQL: &str = "SELECT pg_current_wal_lsn()::text";
const REPLICA_SQL: &str = "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, \
     extract(epoch from now() - pg_last_xact_replay_timestamp())::float8";

/// Tuning of a [`ReplicaSet`] (from the config's `read_split` section).
#[derive(Debug, Clone, PartialEq)]
pub struct ReadSplitSettings {
    /// Time between the starts of two check cycles.
    pub interval: Duration,
    /// A replica further behind the primary's WAL than this is not up.
    pub max_lag_bytes: u64,
    /// A replica behind the primary whose last replayed transaction is older
    /// than this (and which has not replayed what the primary had this long
    /// ago) is not up.
    pub max_lag: Duration,
    /// How [`ReplicaSet::choose`] picks among eligible replicas.
    pub balancing: Balancing,
    /// `None`: a writer's reads stay on the primary until a replica has
    /// replayed past its write. `Some(d)`: and for at most `d` after it.
    pub read_your_writes_window: Option<Duration>,
}

impl ReadSplitSettings {
    /// The settings of a config's `read_split` section.
    pub fn from_config(rs: &config::ReadSplit) -> ReadSplitSettings {
        ReadSplitSettings {
            interval: rs.health_check_interval,
            max_lag_bytes: rs.max_lag_bytes,
            max_lag: rs.max_lag,
            balancing: rs.balancing,
            read_your_writes_window: rs.read_your_writes_window,
        }
    }
}

impl Default for ReadSplitSettings {
    /// The config defaults (1 s, 16 MiB, 5 s, round robin, no window).
    fn default() -> Self {
        ReadSplitSettings::from_config(&config::ReadSplit::default())
    }
}

/// What the monitor knows of one replica.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaState {
    pub host: String,
    pub port: u16,
    pub weight: u32,
    /// The last check succeeded, the server is in recovery, and its lag is
    /// within bounds; cleared at once by [`ReplicaSet::mark_down`].
    pub up: bool,
    /// The last check connected and ran.
    pub reachable: bool,
    /// Primary's `pg_current_wal_lsn()` minus the replica's
    /// `pg_last_wal_replay_lsn()`, at least 0.
    pub lag_bytes: Option<u64>,
    /// `now() - pg_last_xact_replay_timestamp()` on the replica; 0 when
    /// `lag_bytes` is 0; `None` when unknown (no transaction replayed since
    /// the replica started).
    pub lag_seconds: Option<f64>,
    /// The newest instant T such that the replica has replayed everything
    /// the primary had written at T: clients whose last write finished
    /// before T may read from it.
    pub caught_up_to: Option<Instant>,
    /// When the last check cycle that looked at this replica ended.
    pub checked_at: Option<Instant>,
    /// Reads [`ReplicaSet::choose`] sent here.
    pub queries_routed: u64,
    /// Reads sent here whose [`ReplicaChoice`] is still alive.
    pub in_flight: usize,
    /// Why the replica is not up (`None` when it is, or before any check).
    pub reason: Option<String>,
}

impl ReplicaState {
    /// A replica not checked yet (down).
    pub fn new(host: impl Into<String>, port: u16, weight: u32) -> ReplicaState {
        ReplicaState {
            host: host.into(),
            port,
            weight,
            up: false,
            reachable: false,
            lag_bytes: None,
            lag_seconds: None,
            caught_up_to: None,
            checked_at: None,
            queries_routed: 0,
            in_flight: 0,
            reason: Some("not checked yet".to_string()),
        }
    }

    /// Applies a check's verdict (counters are kept).
    pub fn apply(&mut self, health: Health, at: Instant) {
        self.up = health.up;
        self.reachable = health.reachable;
        self.lag_bytes = health.lag_bytes;
        self.lag_seconds = health.lag_seconds;
        self.caught_up_to = health.caught_up_to;
        self.reason = health.reason;
        self.checked_at = Some(at);
    }
}

/// Parses a `pg_lsn` in text form, `"16/B374D848"` = `(0x16 << 32) |
/// 0xB374D848`. Both halves are 1 to 8 hex digits.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    let half = |part: &str| {
        if part.is_empty() || part.len() > 8 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(part, 16).ok()
    };
    Some((u64::from(half(hi)?) << 32) | u64::from(half(lo)?))
}

/// Formats an LSN as Postgres does (`16/B374D848`).
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// How far `replay` is behind `primary`, in bytes (0 if it is ahead).
pub fn lag_bytes(primary: u64, replay: u64) -> u64 {
    primary.saturating_sub(replay)
}

/// The primary's WAL positions sampled over the last [`HISTORY`], oldest
/// first, non-decreasing.
#[derive(Debug, Clone)]
pub struct LsnHistory {
    samples: VecDeque<(Instant, u64)>,
    keep: Duration,
}

impl Default for LsnHistory {
    fn default() -> Self {
        LsnHistory::new(HISTORY)
    }
}

impl LsnHistory {
    /// An empty history keeping samples for `keep`.
    pub fn new(keep: Duration) -> LsnHistory {
        LsnHistory {
            samples: VecDeque::new(),
            keep,
        }
    }

    /// Records that the primary's WAL position was `lsn` at `at` (the
    /// instant the question was sent). Samples older than `keep` before `at`
    /// are dropped. A position lower than the last one means the primary was
    /// replaced (restored, failed over): the older samples no longer say
    /// anything about it and are dropped too. A sample older than the
    /// newest one is ignored.
    pub fn record(&mut self, at: Instant, lsn: u64) {
        if let Some(&(last_at, last_lsn)) = self.samples.back() {
            if at < last_at {
                return;
            }
            if lsn < last_lsn {
                self.samples.clear();
            }
        }
        self.samples.push_back((at, lsn));
        if let Some(cutoff) = at.checked_sub(self.keep) {
            while self.samples.len() > 1 && self.samples.front().is_some_and(|s| s.0 < cutoff) {
                self.samples.pop_front();
            }
        }
    }

    /// The newest sample.
    pub fn latest(&self) -> Option<(Instant, u64)> {
        self.samples.back().copied()
    }

    /// The newest sample instant whose LSN is at most `replayed`: everything
    /// the primary had written then has been replayed.
    pub fn caught_up_to(&self, replayed: u64) -> Option<Instant> {
        self.samples
            .iter()
            .rev()
            .find(|&&(_, lsn)| lsn <= replayed)
            .map(|&(at, _)| at)
    }

    /// Number of samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no sample is held.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// What one check of a replica returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    /// `pg_last_wal_replay_lsn()`, `None` when NULL.
    pub replay_lsn: Option<u64>,
    /// Seconds since the last replayed transaction's commit
    /// (`now() - pg_last_xact_replay_timestamp()`), `None` when NULL.
    pub replay_age: Option<f64>,
}

impl Observation {
    /// Reads the one row of the replica check query (in recovery, replay
    /// LSN, replay age). An unparsable LSN or age is treated as NULL; a
    /// missing or unparsable recovery flag is an error.
    pub fn from_row(row: &[Option<String>]) -> Result<Observation, String> {
        let col = |i: usize| row.get(i).and_then(|v| v.as_deref());
        let in_recovery = match col(0) {
            Some("t") => true,
            Some("f") => false,
            other => return Err(format!("unexpected pg_is_in_recovery() value {other:?}")),
        };
        Ok(Observation {
            in_recovery,
            replay_lsn: col(1).and_then(parse_lsn),
            replay_age: col(2)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite()),
        })
    }
}

/// A check's verdict on one replica.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub up: bool,
    pub reachable: bool,
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
    pub caught_up_to: Option<Instant>,
    /// Why it is not up; `None` when up.
    pub reason: Option<String>,
}

/// The verdict on a replica from its check (`Err`: the reason it could not
/// be checked), the primary's WAL samples (the newest taken before the
/// replica was asked), the time now and the bounds. Pure.
///
/// - not reachable, or not in recovery (promoted, or pointed at a primary):
///   down;
/// - lag unknown (no primary sample yet, or no replay position): down;
/// - `lag_bytes > max_lag_bytes`: down;
/// - `lag_bytes > 0` and `lag_seconds > max_lag`: down, unless
///   `caught_up_to` is within `max_lag` of `now` (the replica has what the
///   primary had `max_lag` ago: its last transaction is old only because
///   the primary has had no newer one, only other WAL such as checkpoints).
///   An unknown `lag_seconds` (no transaction replayed since the replica
///   started) is judged by `lag_bytes` alone;
/// - otherwise up.
pub fn evaluate(
    check: Result<&Observation, &str>,
    primary: &LsnHistory,
    now: Instant,
    settings: &ReadSplitSettings,
) -> Health {
    let seen = match check {
        Ok(seen) => seen,
        Err(why) => {
            return Health {
                up: false,
                reachable: false,
                lag_bytes: None,
                lag_seconds: None,
                caught_up_to: None,
                reason: Some(format!("unreachable: {why}")),
            }
        }
    };
    let lag = match (primary.latest(), seen.replay_lsn) {
        (Some((_, primary_lsn)), Some(replayed)) => Some(lag_bytes(primary_lsn, replayed)),
        _ => None,
    };
    let lag_seconds = match lag {
        Some(0) => Some(0.0),
        Some(_) => seen.replay_age.map(|age| age.max(0.0)),
        None => None,
    };
    let caught_up_to = seen.replay_lsn.and_then(|lsn| primary.caught_up_to(lsn));
    let reason = if !seen.in_recovery {
        Some("not in recovery (not a standby)".to_string())
    } else {
        match lag {
            None if seen.replay_lsn.is_none() => Some("no replay position".to_string()),
            None => Some("primary WAL position unknown".to_string()),
            Some(bytes) if bytes > settings.max_lag_bytes => Some(format!(
                "lag {bytes} bytes > max_lag_bytes {}",
                settings.max_lag_bytes
            )),
            Some(_) => match lag_seconds {
                Some(secs)
                    if secs > settings.max_lag.as_secs_f64()
                        && !caught_up_to.is_some_and(|t| {
                            now.saturating_duration_since(t) <= settings.max_lag
                        }) =>
                {
                    Some(format!(
                        "lag {secs:.3} s > max_lag {:.3} s",
                        settings.max_lag.as_secs_f64()
                    ))
                }
                _ => None,
            },
        }
    };
    Health {
        up: reason.is_none(),
        reachable: true,
        lag_bytes: lag,
        lag_seconds,
        caught_up_to,
        reason,
    }
}

/// Whether a replica may serve a read of a client whose last write finished
/// at `last_write` (`None`: never wrote), at `now`: it is up, and it has
/// caught up to the write, or the write is at least `window` old. Pure.
pub fn may_serve(
    state: &ReplicaState,
    last_write: Option<Instant>,
    now: Instant,
    window: Option<Duration>,
) -> bool {
    if !state.up {
        return false;
    }
    let Some(written) = last_write else {
        return true;
    };
    state.caught_up_to.is_some_and(|t| t >= written)
        || window.is_some_and(|w| now.saturating_duration_since(written) >= w)
}

/// What the set and its monitor share.
struct Shared {
    settings: ReadSplitSettings,
    table: Mutex<Table>,
    /// Reads in flight per replica (decremented by [`ReplicaChoice`]'s drop).
    outstanding: Vec<AtomicUsize>,
    /// Number of check cycles started.
    started: AtomicU64,
}

/// The replicas' states and the round-robin bookkeeping.
struct Table {
    states: Vec<ReplicaState>,
    /// Smooth weighted round robin: each replica's current weight.
    current: Vec<i64>,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Health of one database's replicas, updated by a background task.
pub struct ReplicaSet {
    shared: Arc<Shared>,
    /// Completed check cycles (by number). The monitor holds the sender and
    /// stops once every receiver, this one included, is gone.
    cycles: watch::Receiver<u64>,
}

/// A replica chosen for one read. Holds the replica's in-flight count up
/// until dropped.
pub struct ReplicaChoice {
    /// Position of the replica in the set (and in the config's list).
    pub index: usize,
    pub host: String,
    pub port: u16,
    _guard: InFlight,
}

impl std::fmt::Debug for ReplicaChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaChoice")
            .field("index", &self.index)
            .field("host", &self.host)
            .field("port", &self.port)
            .finish()
    }
}

/// Decrements a replica's in-flight count on drop.
struct InFlight {
    shared: Arc<Shared>,
    index: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(count) = self.shared.outstanding.get(self.index) {
            count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl ReplicaSet {
    /// Starts the monitor of `replicas` (host, port, weight) of the primary
    /// `primary`, and returns the set; must be called inside a Tokio
    /// runtime. Every `settings.interval` the monitor connects to the
    /// primary and each replica as `primary.user` (to `primary.dbname`, with
    /// `primary.password`), reusing one connection per server across checks
    /// and reconnecting after failures, with a connect timeout of
    /// `min(interval, 2 s)` and a query timeout of the interval within 2..10
    /// s. It samples the primary first, then all replicas at once, then
    /// updates the states. Replicas are down until their first check.
    ///
    /// The monitor ends (closing its connections) when the set is dropped.
    pub fn start(
        primary: ServerTarget,
        replicas: Vec<(String, u16, u32)>,
        settings: ReadSplitSettings,
    ) -> Arc<ReplicaSet> {
        let states = replicas
            .iter()
            .map(|(host, port, weight)| ReplicaState::new(host.clone(), *port, *weight))
            .collect();
        let (set, cycles) = ReplicaSet::build(states, settings);
        let mut primary = primary;
        primary.connect_timeout = set.shared.settings.interval.min(MAX_CONNECT_TIMEOUT);
        let targets = replicas
            .iter()
            .map(|(host, port, _)| ServerTarget {
                host: host.clone(),
                port: *port,
                ..primary.clone()
            })
            .collect();
        tokio::spawn(monitor(set.shared.clone(), primary, targets, cycles));
        Arc::new(set)
    }

    /// A set with the given states and no monitor: they change only through
    /// [`ReplicaSet::mark_down`] and [`ReplicaSet::set_state`]. For tests
    /// of the choice policies and tools; [`ReplicaSet::checked`] returns at
    /// once.
    pub fn with_states(states: Vec<ReplicaState>, settings: ReadSplitSettings) -> Arc<ReplicaSet> {
        let (set, cycles) = ReplicaSet::build(states, settings);
        drop(cycles);
        Arc::new(set)
    }

    fn build(
        states: Vec<ReplicaState>,
        settings: ReadSplitSettings,
    ) -> (ReplicaSet, watch::Sender<u64>) {
        let (tx, rx) = watch::channel(0);
        let n = states.len();
        let shared = Arc::new(Shared {
            settings,
            table: Mutex::new(Table {
                states,
                current: vec![0; n],
            }),
            outstanding: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            started: AtomicU64::new(0),
        });
        (ReplicaSet { shared, cycles: rx }, tx)
    }

    /// The settings the set runs with.
    pub fn settings(&self) -> &ReadSplitSettings {
        &self.shared.settings
    }

    /// Number of replicas.
    pub fn len(&self) -> usize {
        self.shared.outstanding.len()
    }

    /// Whether the set has no replicas.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Chooses a replica for a read by a client whose last write finished
    /// at `last_write` (`None`: never wrote), among those that
    /// [`may_serve`] it, by the balancing policy:
    ///
    /// - round robin: smooth weighted round robin (nginx's): every replica
    ///   gets reads in proportion to its weight, interleaved;
    /// - least outstanding: the replicas with the fewest reads in flight per
    ///   weight (`in_flight / weight`, compared exactly); ties are broken by
    ///   weighted round robin among them.
    ///
    /// `None`: use the primary. The choice counts as a read in flight until
    /// it is dropped.
    pub fn choose(&self, last_write: Option<Instant>) -> Option<ReplicaChoice> {
        let now = Instant::now();
        let window = self.shared.settings.read_your_writes_window;
        let mut table = self.shared.table();
        let mut eligible: Vec<usize> = table
            .states
            .iter()
            .enumerate()
            .filter(|(_, state)| may_serve(state, last_write, now, window))
            .map(|(i, _)| i)
            .collect();
        if self.shared.settings.balancing == Balancing::LeastOutstanding {
            let load = |i: usize| {
                let in_flight = self.shared.outstanding[i].load(Ordering::Acquire) as u128;
                (in_flight, u128::from(table.states[i].weight.max(1)))
            };
            // a/b < c/d  <=>  a*d < c*b (weights are >= 1).
            let least = eligible.iter().copied().min_by(|&x, &y| {
                let ((a, b), (c, d)) = (load(x), load(y));
                (a * d).cmp(&(c * b))
            })?;
            let (a, b) = load(least);
            eligible.retain(|&i| {
                let (c, d) = load(i);
                c * b == a * d
            });
        }
        let index = smooth_round_robin(&mut table, &eligible)?;
        let state = &mut table.states[index];
        state.queries_routed += 1;
        self.shared.outstanding[index].fetch_add(1, Ordering::AcqRel);
        Some(ReplicaChoice {
            index,
            host: state.host.clone(),
            port: state.port,
            _guard: InFlight {
                shared: self.shared.clone(),
                index,
            },
        })
    }

    /// Snapshot for the admin console and tests.
    pub fn states(&self) -> Vec<ReplicaState> {
        let table = self.shared.table();
        table
            .states
            .iter()
            .zip(&self.shared.outstanding)
            .map(|(state, count)| ReplicaState {
                in_flight: count.load(Ordering::Acquire),
                ..state.clone()
            })
            .collect()
    }

    /// Marks a replica down at once (a connection to it failed), until its
    /// next successful check. A replica already down keeps its reason;
    /// out-of-range indexes are ignored.
    pub fn mark_down(&self, index: usize) {
        let mut table = self.shared.table();
        if let Some(state) = table.states.get_mut(index).filter(|s| s.up) {
            tracing::warn!(replica = %format!("{}:{}", state.host, state.port), "replica marked down: a connection to it failed");
            state.up = false;
            state.reason = Some("marked down: a connection to it failed".to_string());
        }
    }

    /// Replaces a replica's health as a check would (sets without a monitor,
    /// tests). Out-of-range indexes are ignored.
    pub fn set_state(&self, index: usize, health: Health) {
        let mut table = self.shared.table();
        if let Some(state) = table.states.get_mut(index) {
            state.apply(health, Instant::now());
        }
    }

    /// Waits until a check cycle that started after this call has
    /// completed. Returns at once if the set has no monitor (or it ended).
    pub async fn checked(&self) {
        let target = self.shared.started.load(Ordering::Acquire) + 1;
        let mut rx = self.cycles.clone();
        let _ = rx.wait_for(|&done| done >= target).await;
    }
}

/// Smooth weighted round robin over `eligible`: each gains its weight, the
/// largest current weight wins and pays the eligible total.
fn smooth_round_robin(table: &mut Table, eligible: &[usize]) -> Option<usize> {
    let total: i64 = eligible
        .iter()
        .map(|&i| i64::from(table.states[i].weight.max(1)))
        .sum();
    let mut best: Option<usize> = None;
    for &i in eligible {
        table.current[i] += i64::from(table.states[i].weight.max(1));
        if best.is_none_or(|b| table.current[i] > table.current[b]) {
            best = Some(i);
        }
    }
    let chosen = best?;
    table.current[chosen] -= total;
    Some(chosen)
}

/// The monitor loop: one check cycle every interval until the set is gone.
async fn monitor(
    shared: Arc<Shared>,
    primary: ServerTarget,
    replicas: Vec<ServerTarget>,
    cycles: watch::Sender<u64>,
) {
    let settings = shared.settings.clone();
    let query_timeout = settings
        .interval
        .clamp(MIN_QUERY_TIMEOUT, MAX_QUERY_TIMEOUT);
    let mut primary_conn: Option<ServerConn> = None;
    let mut replica_conns: Vec<Option<ServerConn>> = replicas.iter().map(|_| None).collect();
    let mut history = LsnHistory::default();
    let mut primary_error: Option<String> = None;
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cycles.closed() => break,
            _ = ticker.tick() => {}
        }
        let number = shared.started.fetch_add(1, Ordering::AcqRel) + 1;
        let cycle = async {
            // The primary first: its sample must predate the replicas' answers.
            let asked = Instant::now();
            let sampled = query(&mut primary_conn, &primary, PRIMARY_SQL, query_timeout)
                .await
                .and_then(|row| {
                    row.first()
                        .and_then(|v| v.as_deref())
                        .and_then(parse_lsn)
                        .ok_or_else(|| "pg_current_wal_lsn() returned no position".to_string())
                });
            let observed = futures::future::join_all(replica_conns.iter_mut().zip(&replicas).map(
                |(conn, target)| async move {
                    let row = query(conn, target, REPLICA_SQL, query_timeout).await?;
                    Observation::from_row(&row)
                },
            ))
            .await;
            (asked, sampled, observed)
        };
        let (asked, sampled, observed) = tokio::select! {
            _ = cycles.closed() => break,
            done = cycle => done,
        };
        match sampled {
            Ok(lsn) => {
                if primary_error.take().is_some() {
                    tracing::info!(primary = %format!("{}:{}", primary.host, primary.port), "replica monitor reaches the primary again");
                }
                history.record(asked, lsn);
            }
            Err(e) => {
                if primary_error.is_none() {
                    tracing::warn!(primary = %format!("{}:{}", primary.host, primary.port), error = %e, "replica monitor cannot sample the primary's WAL position; judging replica lag by the last sample");
                }
                primary_error = Some(e);
            }
        }
        let now = Instant::now();
        {
            let mut table = shared.table();
            for (state, check) in table.states.iter_mut().zip(&observed) {
                let health = evaluate(
                    check.as_ref().map_err(String::as_str),
                    &history,
                    now,
                    &settings,
                );
                log_transition(state, &health);
                state.apply(health, now);
            }
        }
        cycles.send_replace(number);
    }
    for conn in std::iter::once(primary_conn).chain(replica_conns).flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.terminate()).await;
    }
}

/// Logs a replica going up or down.
fn log_transition(state: &ReplicaState, health: &Health) {
    let replica = format!("{}:{}", state.host, state.port);
    match (state.up, health.up, &health.reason) {
        (false, true, _) => tracing::info!(
            %replica,
            lag_bytes = health.lag_bytes.unwrap_or(0),
            "replica is up; reads may use it"
        ),
        // Down and staying down: logged at the first check and when it
        // becomes (un)reachable, not every cycle (lag figures change).
        (false, false, Some(reason))
            if state.checked_at.is_none() || state.reachable != health.reachable =>
        {
            tracing::warn!(%replica, %reason, "replica is down; its reads go elsewhere")
        }
        (true, false, reason) => tracing::warn!(
            %replica,
            reason = reason.as_deref().unwrap_or("unknown"),
            "replica is down; its reads go elsewhere"
        ),
        _ => {}
    }
}

/// Runs `sql` on the server behind `conn`, connecting first if needed, and
/// returns its first row. A broken or timed-out connection is dropped (the
/// next call reconnects); one that reported an SQL error is kept.
async fn query(
    conn: &mut Option<ServerConn>,
    target: &ServerTarget,
    sql: &str,
    timeout: Duration,
) -> Result<Vec<Option<String>>, String> {
    if conn.as_ref().is_some_and(|c| !c.looks_alive()) {
        *conn = None;
    }
    let server = match conn {
        Some(server) => server,
        None => {
            let fresh = ServerConn::connect(target)
                .await
                .map_err(|e| e.to_string())?;
            conn.insert(fresh)
        }
    };
    let (result, keep) = match tokio::time::timeout(timeout, server.execute(sql, &[])).await {
        // Mid-exchange: the rest of the reply would confuse the next check.
        Err(_) => (
            Err(format!("no answer within {} ms", timeout.as_millis())),
            false,
        ),
        Ok(Err(e)) => (Err(format!("connection lost: {e}")), false),
        // The server reported an error and is ready for the next query.
        Ok(Ok(Err(fields))) => (Err(fields.message), server.status == TxStatus::Idle),
        Ok(Ok(Ok(done))) => (
            done.rows
                .into_iter()
                .next()
                .ok_or_else(|| "the check query returned no row".to_string()),
            server.status == TxStatus::Idle,
        ),
    };
    if !keep {
        *conn = None;
    }
    result
}
