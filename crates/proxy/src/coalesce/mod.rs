//! Upsert coalescing: recognized upserts go into a last-write-wins map per
//! (database, role, statement shape) instead of to Postgres, and a flusher
//! writes the survivors in one bulk statement per flush.
//!
//! - [`group`]: one group's pending writes, their order and watermark.
//! - [`flush`]: the flusher loop around `flush_once`, the bulk statement,
//!   row-by-row isolation of bad rows, retries while Postgres is away.
//! - [`values`]: parameter values to text, and text[] array literals.
//!
//! The relay asks [`Coalescer::inspect`] what a statement is, hands
//! recognized upserts to [`Coalescer::submit`], and calls
//! [`Coalescer::barrier`] before forwarding anything that touches a
//! coalesced table or function, so every client reads its acknowledged writes.

pub mod flush;
pub mod group;
pub mod values;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::{oneshot, watch, Notify};
use wire::SqlState;

use crate::classify::{self, Classified, RuleShape, Template, UpdateAction, ValueSource};
use crate::error::ClientError;
use crate::pool::Pool;

pub use group::{AckResult, Rejection};

/// When a writer hears back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// When its write is in the map (write-behind).
    Immediate,
    /// When the flush that carried its write has committed.
    Flushed,
}

/// One coalescing rule, ready for use.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// Only for this database; `None` for every database.
    pub database: Option<String>,
    pub shape: RuleShape,
    /// Function rules: the bulk statement taking one text[] per argument.
    pub flush_sql: Option<String>,
    pub ack: Ack,
    pub flush_interval: Duration,
    pub max_batch: usize,
    pub max_pending: usize,
    pub pending_wait_timeout: Duration,
    pub rejects_file: Option<PathBuf>,
    /// Lower-cased unqualified names whose mention in another statement
    /// needs this rule's pending writes flushed first.
    pub barrier_names: Vec<String>,
    /// Each row carries its arrival stamp (see [`Coalescer::submit`]) as
    /// one more value after the template's columns, for the flush's
    /// cross-proxy last-write-wins guard.
    pub stamped: bool,
    /// Table rules: the column the stamp is written to and guarded on.
    pub version_column: Option<String>,
}

impl Rule {
    /// Whether a recognized statement of this rule writes the version
    /// column itself: it is then not coalesced (the proxy owns that column).
    fn writes_version(&self, t: &Template) -> bool {
        self.version_column
            .as_ref()
            .is_some_and(|v| t.columns.iter().any(|c| c == v))
    }
}

/// What the relay should do with a statement.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Not related to coalescing.
    Irrelevant,
    /// A recognized upsert.
    Upsert(Arc<Template>),
    /// Touches coalesced objects of these rules (indexes into the
    /// database's rules), or of all of them (`None`: unparseable).
    Touches(Option<Vec<usize>>),
}

/// The rules of one database, with what recognition needs.
struct DbRules {
    rules: Vec<Arc<Rule>>,
    shapes: Vec<RuleShape>,
    /// The rules' names; a statement mentioning none is irrelevant.
    needles: Needles,
    /// Verdicts by shape (see [`classify::literals`]).
    by_shape: DashMap<String, Verdict>,
}

impl DbRules {
    /// A recognized upsert: coalesced, unless it writes the rule's version
    /// column itself (then it only touches the rule's tables).
    fn upsert(&self, t: Template) -> Verdict {
        if self.rules.get(t.rule).is_some_and(|r| r.writes_version(&t)) {
            Verdict::Touches(Some(vec![t.rule]))
        } else {
            Verdict::Upsert(Arc::new(t))
        }
    }

    /// A statement mentioning `names`: the rules whose objects it touches.
    fn touched(&self, names: &[String]) -> Verdict {
        let hit: Vec<usize> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.barrier_names.iter().any(|n| names.contains(n)))
            .map(|(i, _)| i)
            .collect();
        if hit.is_empty() {
            Verdict::Irrelevant
        } else {
            Verdict::Touches(Some(hit))
        }
    }
}

/// Shapes cached per database, at most this many.
const SHAPE_CACHE: usize = 10_000;

/// Identity of a group: writes that are flushed together.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub database: String,
    pub user: String,
    pub rule: usize,
    pub columns: Vec<String>,
    pub update: Option<UpdateAction>,
    pub table_alias: Option<String>,
}

/// Counters, for the logs and the metrics endpoint.
#[derive(Debug, Default)]
pub struct Stats {
    pub received: AtomicU64,
    pub merged: AtomicU64,
    pub flushed_rows: AtomicU64,
    pub flush_batches: AtomicU64,
    pub flush_failures: AtomicU64,
    pub rejected: AtomicU64,
    /// Sum of flush latencies in microseconds (with `flush_batches`, the mean).
    pub flush_micros: AtomicU64,
}

/// One group: its pending writes and its flusher's signals.
pub struct Group {
    pub key: GroupKey,
    pub rule: Arc<Rule>,
    pub template: Arc<Template>,
    pub pool: Pool,
    pub pending: Mutex<group::Pending>,
    /// Work arrived, or a barrier wants a flush now.
    pub wake: Notify,
    /// The watermark after each flush.
    pub progress: watch::Sender<u64>,
    /// Held for the whole of a flush: flushes of a group never overlap, so
    /// an older value can never land after a newer one.
    pub flushing: tokio::sync::Mutex<()>,
    /// The bulk statement, built at the first flush.
    pub flush_sql: std::sync::OnceLock<String>,
}

impl Group {
    fn lock(&self) -> std::sync::MutexGuard<'_, group::Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// All coalescing state of one proxy.
pub struct Coalescer {
    by_db: HashMap<String, DbRules>,
    /// Rules without a database, for databases not named by any rule.
    any_db: DbRules,
    groups: DashMap<GroupKey, Arc<Group>>,
    verdicts: DashMap<(String, Bytes), Verdict>,
    /// The last arrival stamp handed out (microseconds since the epoch).
    last_stamp: AtomicU64,
    pub stats: Arc<Stats>,
    stop: watch::Sender<bool>,
    /// False once shutdown began. Writers hold it for reading while they
    /// insert, so after shutdown takes it for writing no write can slip into
    /// a map that was already drained.
    accepting: std::sync::RwLock<bool>,
}

/// Verdicts cached per statement text, at most this many.
const VERDICT_CACHE: usize = 10_000;

impl Coalescer {
    /// Prepares the rules for each configured database.
    pub fn new(rules: Vec<Rule>, databases: &[String]) -> Coalescer {
        let rules: Vec<Arc<Rule>> = rules.into_iter().map(Arc::new).collect();
        let for_db = |db: Option<&str>| {
            let chosen: Vec<Arc<Rule>> = rules
                .iter()
                .filter(|r| r.database.is_none() || r.database.as_deref() == db)
                .cloned()
                .collect();
            DbRules {
                shapes: chosen.iter().map(|r| r.shape.clone()).collect(),
                needles: Needles::new(
                    chosen
                        .iter()
                        .flat_map(|r| r.barrier_names.iter().cloned())
                        .collect(),
                ),
                rules: chosen,
                by_shape: DashMap::new(),
            }
        };
        let by_db = databases
            .iter()
            .map(|d| (d.clone(), for_db(Some(d))))
            .collect();
        Coalescer {
            by_db,
            any_db: for_db(None),
            groups: DashMap::new(),
            verdicts: DashMap::new(),
            last_stamp: AtomicU64::new(0),
            stats: Arc::new(Stats::default()),
            stop: watch::channel(false).0,
            accepting: std::sync::RwLock::new(true),
        }
    }

    fn rules(&self, db: &str) -> &DbRules {
        self.by_db.get(db).unwrap_or(&self.any_db)
    }

    /// A write's arrival stamp: the wall clock in microseconds since the
    /// Unix epoch, made strictly increasing within this proxy (so arrival
    /// order survives a clock stepping back). Proxies compare stamps with
    /// each other, so their clocks should be synchronized (NTP): two writes
    /// of one row through different proxies closer together than the clocks'
    /// skew may land in either order.
    fn stamp(&self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let prev = self
            .last_stamp
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or(0);
        now.max(prev + 1)
    }

    /// Every group with its rule's name and the distinct keys waiting in it.
    pub fn pending_by_group(&self) -> Vec<(GroupKey, String, usize)> {
        self.groups
            .iter()
            .map(|g| (g.key.clone(), g.rule.name.clone(), g.lock().len()))
            .collect()
    }

    /// Whether any rule applies to `db`.
    pub fn active_for(&self, db: &str) -> bool {
        !self.rules(db).rules.is_empty()
    }

    /// What `sql` (a simple Query's or a Parse's text) is with respect to
    /// `db`'s rules. Cached by shape (see [`classify::literals`]) when the
    /// text has literals, so statements differing only in their values are
    /// parsed once; otherwise by text.
    pub fn inspect(&self, db: &str, sql: &[u8]) -> Verdict {
        self.inspect_shaped(db, sql).0
    }

    /// [`inspect`](Self::inspect) of a simple Query, and for a recognized
    /// upsert the row its literals carry (`None` when they cannot be taken).
    pub fn inspect_query(&self, db: &str, sql: &[u8]) -> (Verdict, Option<Vec<Option<String>>>) {
        let (verdict, values) = self.inspect_shaped(db, sql);
        let row = match &verdict {
            Verdict::Upsert(t) => t
                .values
                .iter()
                .map(|v| match v {
                    ValueSource::Param { index, .. } => values.get(*index).cloned().map(Some),
                    ValueSource::Literal { text, .. } => Some(text.clone()),
                })
                .collect(),
            _ => None,
        };
        (verdict, row)
    }

    /// The verdict, and the literals of `sql` when it was judged by its
    /// shape (the values of a shape template's `$n`).
    fn inspect_shaped(&self, db: &str, sql: &[u8]) -> (Verdict, Vec<String>) {
        let rules = self.rules(db);
        if rules.rules.is_empty() || !rules.needles.in_text(sql) {
            return (Verdict::Irrelevant, Vec::new());
        }
        let shaped = std::str::from_utf8(sql)
            .ok()
            .and_then(classify::literals::parameterize)
            .filter(|(_, values)| !values.is_empty());
        let Some((shape, values)) = shaped else {
            return (self.inspect_text(db, rules, sql), Vec::new());
        };
        if let Some(v) = rules.by_shape.get(&shape) {
            return (v.clone(), values);
        }
        let verdict = match classify::classify(&shape, &rules.shapes) {
            // Every literal must be one of the row's values.
            Classified::Upsert(t) if t.params == values.len() => rules.upsert(t),
            Classified::Upsert(t) => Verdict::Touches(Some(vec![t.rule])),
            Classified::Mentions(names) => rules.touched(&names),
            // `$n` where a literal stood may not parse (`INTERVAL $1`):
            // judge the text itself.
            Classified::Unparsed => return (self.inspect_text(db, rules, sql), Vec::new()),
        };
        if rules.by_shape.len() >= SHAPE_CACHE {
            rules.by_shape.clear();
        }
        rules.by_shape.insert(shape, verdict.clone());
        (verdict, values)
    }

    /// [`inspect`] by the exact text.
    fn inspect_text(&self, db: &str, rules: &DbRules, sql: &[u8]) -> Verdict {
        let key = (db.to_owned(), Bytes::copy_from_slice(sql));
        if let Some(v) = self.verdicts.get(&key) {
            return v.clone();
        }
        let verdict = match std::str::from_utf8(sql) {
            Err(_) => Verdict::Touches(None),
            Ok(text) => match classify::classify(text, &rules.shapes) {
                Classified::Upsert(t) => rules.upsert(t),
                Classified::Unparsed => Verdict::Touches(None),
                Classified::Mentions(names) => rules.touched(&names),
            },
        };
        if self.verdicts.len() >= VERDICT_CACHE {
            self.verdicts.clear();
        }
        self.verdicts.insert(key, verdict.clone());
        verdict
    }

    /// The ack mode of a recognized upsert's rule.
    pub fn ack_mode(&self, db: &str, template: &Template) -> Ack {
        self.rules(db)
            .rules
            .get(template.rule)
            .map_or(Ack::Flushed, |r| r.ack)
    }

    /// Takes a recognized write into its group. `Ok(Some(rx))` resolves
    /// when it landed (flushed mode); `Ok(None)` means it is acknowledged now
    /// (immediate). When the map is full, waits up to the rule's
    /// `pending_wait_timeout` for room, then fails: nothing is dropped
    /// silently.
    pub async fn submit(
        &self,
        group: &Group,
        mut row: Vec<Option<String>>,
    ) -> Result<Option<oneshot::Receiver<AckResult>>, ClientError> {
        let rule = &group.rule;
        if rule.stamped {
            row.push(Some(self.stamp().to_string()));
        }
        let key: group::Key = group
            .template
            .key
            .iter()
            .map(|&i| row.get(i).cloned().flatten())
            .collect();
        let deadline = tokio::time::Instant::now() + rule.pending_wait_timeout;
        let mut progress = group.progress.subscribe();
        let mut row = Some(row);
        loop {
            let taken = {
                let accepting = self.accepting.read().unwrap_or_else(|p| p.into_inner());
                if !*accepting {
                    return Err(ClientError::error(
                        SqlState::ADMIN_SHUTDOWN,
                        "the proxy is shutting down and takes no more coalesced writes",
                    ));
                }
                let mut pending = group.lock();
                if pending.len() >= rule.max_pending && !pending.contains(&key) {
                    None
                } else {
                    let (tx, rx) = match rule.ack {
                        Ack::Flushed => {
                            let (tx, rx) = oneshot::channel();
                            (Some(tx), Some(rx))
                        }
                        Ack::Immediate => (None, None),
                    };
                    let merged_before = pending.merged;
                    pending.insert(key.clone(), row.take().unwrap_or_default(), tx);
                    Some((pending.merged > merged_before, pending.len(), rx))
                }
            };
            if let Some((merged, len, rx)) = taken {
                self.stats.received.fetch_add(1, Ordering::Relaxed);
                if merged {
                    self.stats.merged.fetch_add(1, Ordering::Relaxed);
                }
                if len >= rule.max_batch {
                    group.wake.notify_one();
                } else if len == 1 {
                    group.wake.notify_waiters();
                }
                return Ok(rx);
            }
            // Full: make the flusher go, and wait for room.
            group.wake.notify_one();
            if tokio::time::timeout_at(deadline, progress.changed())
                .await
                .is_err()
            {
                return Err(ClientError::error(
                    SqlState::CONFIGURATION_LIMIT_EXCEEDED,
                    format!(
                        "coalescing rule {}: {} writes are pending and none landed within {} ms",
                        rule.name,
                        rule.max_pending,
                        rule.pending_wait_timeout.as_millis()
                    ),
                ));
            }
        }
    }

    /// The group a recognized write of `user` on `db` belongs to, created
    /// (with its flusher) on first use. Callers cache it per template.
    pub fn group(
        &self,
        db: &str,
        user: &str,
        pool: &Pool,
        template: &Arc<Template>,
    ) -> Result<Arc<Group>, ClientError> {
        let key = GroupKey {
            database: db.to_owned(),
            user: user.to_owned(),
            rule: template.rule,
            columns: template.columns.clone(),
            update: template.update.clone(),
            table_alias: template.table_alias.clone(),
        };
        if let Some(g) = self.groups.get(&key) {
            return Ok(g.clone());
        }
        let rule = self
            .rules(db)
            .rules
            .get(template.rule)
            .cloned()
            .ok_or_else(|| {
                ClientError::error(SqlState::INTERNAL_ERROR, "unknown coalescing rule")
            })?;
        let entry = self.groups.entry(key.clone()).or_insert_with(|| {
            let group = Arc::new(Group {
                key,
                rule,
                template: template.clone(),
                pool: pool.clone(),
                pending: Mutex::new(group::Pending::default()),
                wake: Notify::new(),
                progress: watch::channel(0).0,
                flushing: tokio::sync::Mutex::new(()),
                flush_sql: std::sync::OnceLock::new(),
            });
            tokio::spawn(flush::run(
                group.clone(),
                self.stats.clone(),
                self.stop.subscribe(),
            ));
            group
        });
        Ok(entry.clone())
    }

    /// Waits until every write to the rules `touched` (all of `db`'s rules
    /// when `None`) that was pending when it was called has landed: the
    /// sequence watermark, so a stream of newer writes never starves it.
    /// Returns when the last flush of those rules committed: a read may go
    /// to a replica that has replayed past it.
    pub async fn barrier(
        &self,
        db: &str,
        touched: Option<&[usize]>,
        limit: Duration,
    ) -> Result<Option<std::time::Instant>, ClientError> {
        let groups: Vec<Arc<Group>> = self
            .groups
            .iter()
            .filter(|g| g.key.database == db && touched.is_none_or(|t| t.contains(&g.key.rule)))
            .map(|g| g.clone())
            .collect();
        let deadline = tokio::time::Instant::now() + limit;
        let mut landed = None;
        for g in groups {
            let target = g.lock().last_seq();
            let mut progress = g.progress.subscribe();
            while g.lock().watermark() < target {
                g.wake.notify_one();
                if tokio::time::timeout_at(deadline, progress.changed())
                    .await
                    .is_err()
                {
                    return Err(ClientError::error(
                        SqlState::QUERY_CANCELED,
                        "timed out waiting for pending coalesced writes to land before this statement",
                    ));
                }
            }
            landed = landed.max(g.lock().landed_at);
        }
        Ok(landed)
    }

    /// Pending distinct keys over all groups.
    pub fn pending(&self) -> usize {
        self.groups.iter().map(|g| g.lock().len()).sum()
    }

    /// Flushes everything pending (shutdown), retrying while Postgres is
    /// away until `limit` passes. Returns the keys still pending.
    pub async fn flush_all(&self, limit: Duration) -> usize {
        *self.accepting.write().unwrap_or_else(|p| p.into_inner()) = false;
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + limit;
        let groups: Vec<Arc<Group>> = self.groups.iter().map(|g| g.clone()).collect();
        for g in &groups {
            while !g.lock().is_empty() && tokio::time::Instant::now() < deadline {
                if !flush::flush_once(g, &self.stats).await {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        self.pending()
    }
}

/// Whether `sql` contains any needle, ignoring ASCII case.
/// Names to look for in statement text, in any ASCII case. The check runs
/// on every statement of a database with rules: one table lookup per byte,
/// and the names are compared only where a byte starts one of them.
#[derive(Default)]
struct Needles {
    /// Lower-cased names.
    names: Vec<String>,
    /// Whether a byte (either case) is the first byte of a name.
    starts: Vec<bool>,
}

impl Needles {
    fn new(names: Vec<String>) -> Needles {
        let mut starts = vec![false; 256];
        for n in &names {
            if let Some(&first) = n.as_bytes().first() {
                starts[first.to_ascii_lowercase() as usize] = true;
                starts[first.to_ascii_uppercase() as usize] = true;
            }
        }
        Needles { names, starts }
    }

    /// Whether `sql` mentions any of the names.
    fn in_text(&self, sql: &[u8]) -> bool {
        sql.iter().enumerate().any(|(i, &c)| {
            self.starts[c as usize]
                && self.names.iter().any(|n| {
                    sql.get(i..i + n.len())
                        .is_some_and(|w| w.eq_ignore_ascii_case(n.as_bytes()))
                })
        })
    }
}

/// Logs the counters every 10 s while they change.
pub async fn log_stats(stats: Arc<Stats>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    let mut last = 0;
    loop {
        tick.tick().await;
        let received = stats.received.load(Ordering::Relaxed);
        if received == last {
            continue;
        }
        last = received;
        let batches = stats.flush_batches.load(Ordering::Relaxed).max(1);
        tracing::info!(
            received,
            merged = stats.merged.load(Ordering::Relaxed),
            flushed_rows = stats.flushed_rows.load(Ordering::Relaxed),
            flush_batches = stats.flush_batches.load(Ordering::Relaxed),
            flush_failures = stats.flush_failures.load(Ordering::Relaxed),
            rejected = stats.rejected.load(Ordering::Relaxed),
            mean_flush_us = stats.flush_micros.load(Ordering::Relaxed) / batches,
            "coalescing"
        );
    }
}
