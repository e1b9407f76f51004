//! Server connection pools, one per (database, user). A checkout is a
//! [`Lease`]: dropping it returns the connection, resets it first when a
//! client left a transaction or session state behind, or closes it when the
//! exchange on it broke off. No path forgets a connection.
//!
//! A pool outlives config reloads: [`Pool::reconfigure`] changes its size
//! and timing in place, and a new target (host, credentials, TLS) starts a
//! new generation, so connections made for the old one are closed as they
//! come back instead of being handed out again. [`Pool::pause`] holds new
//! checkouts until [`Pool::resume`] (the console's `PAUSE`/`RESUME`).

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use config::PoolMode;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use wire::inspect::TxStatus;
use wire::SqlState;

use crate::error::ClientError;
use crate::prepared::StatementRegistry;
use crate::server::{ServerConn, ServerTarget};
use crate::server_auth::ServerSecret;

/// Timing and sizing of one pool.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub mode: PoolMode,
    pub size: usize,
    pub min_idle: usize,
    pub idle_timeout: Duration,
    pub query_wait_timeout: Duration,
    pub server_lifetime: Duration,
}

/// Connections to one upstream database as one user.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

/// Where a pool's connections go, and which generation of the target that
/// is: a connection made for an older generation is never reused.
struct Generation {
    number: u64,
    target: ServerTarget,
}

struct PoolInner {
    target: ArcSwap<Generation>,
    config: ArcSwap<PoolConfig>,
    /// `target`'s generation number and `config`'s server lifetime (in
    /// milliseconds), copied where every checkout and return reads them
    /// without an `ArcSwap` load. Written under the `idle` lock.
    generation: AtomicU64,
    lifetime_ms: AtomicU64,
    /// Connections of the current generation only. Boxed: a connection
    /// moves in and out of here on every transaction, and a pointer is
    /// cheaper to move than the whole connection.
    #[allow(clippy::vec_box)]
    idle: Mutex<Vec<Box<ServerConn>>>,
    permits: Arc<Semaphore>,
    statements: StatementRegistry,
    /// Set by `PAUSE`: checkouts wait for `resumed`.
    paused: AtomicBool,
    resumed: Notify,
    /// Checkouts that could not take a connection at once.
    waits: WaitBook,
}

/// What a pool holds and owes, for the console and the metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolStats {
    /// Server connections idle in the pool.
    pub idle: usize,
    /// Server connections checked out (or being reset).
    pub used: usize,
    /// Checkouts waiting now for a connection (or for `RESUME`).
    pub waiting: usize,
    /// How long the longest of them has waited.
    pub max_wait: Duration,
    /// Checkouts that had to wait, since the pool was made.
    pub waits_total: u64,
    /// The time those checkouts waited, in total.
    pub wait_time_total: Duration,
}

/// The checkouts waiting now, by arrival, and the totals of finished
/// waits. Touched only by checkouts that cannot take a connection at once.
#[derive(Default)]
struct WaitBook {
    next: AtomicU64,
    waiting: Mutex<BTreeMap<u64, Instant>>,
    total: AtomicU64,
    micros: AtomicU64,
}

/// One waiting checkout, listed in its pool's [`WaitBook`] until dropped
/// (answered, timed out, or abandoned by a client that went away).
struct Waiting<'a> {
    book: &'a WaitBook,
    id: u64,
    since: Instant,
}

impl WaitBook {
    fn enter(&self) -> Waiting<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let since = Instant::now();
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, since);
        Waiting {
            book: self,
            id,
            since,
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let book = self.book;
        book.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
        book.total.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(self.since.elapsed().as_micros()).unwrap_or(u64::MAX);
        book.micros.fetch_add(micros, Ordering::Relaxed);
    }
}

impl Pool {
    /// Creates an empty pool and its maintenance task (idle timeout, lifetime,
    /// min idle), which ends when the pool is dropped.
    pub fn new(target: ServerTarget, config: PoolConfig) -> Pool {
        let inner = Arc::new(PoolInner {
            permits: Arc::new(Semaphore::new(config.size)),
            generation: AtomicU64::new(0),
            lifetime_ms: AtomicU64::new(millis(config.server_lifetime)),
            target: ArcSwap::from_pointee(Generation { number: 0, target }),
            config: ArcSwap::from_pointee(config),
            idle: Mutex::new(Vec::new()),
            statements: StatementRegistry::default(),
            paused: AtomicBool::new(false),
            resumed: Notify::new(),
            waits: WaitBook::default(),
        });
        tokio::spawn(maintain(Arc::downgrade(&inner)));
        Pool { inner }
    }

    /// The pool mode clients of this pool get.
    pub fn mode(&self) -> PoolMode {
        self.inner.config.load().mode
    }

    /// Shared prepared statement names of this pool.
    pub fn statements(&self) -> &StatementRegistry {
        &self.inner.statements
    }

    /// Checks out a connection, waiting up to `query_wait_timeout` for one to
    /// be free (or for the pool to be resumed), and connecting a new one when
    /// none is idle.
    pub async fn acquire(&self) -> Result<Lease, ClientError> {
        // A free slot is taken without arming the wait's timer.
        let permit = match self.try_take() {
            Some(p) => p,
            None => self.wait_for_slot().await?,
        };
        let (conn, generation) = match self.take_idle() {
            Some(reused) => reused,
            None => {
                let target = self.inner.target.load_full();
                // Boxed, so the rare login does not size every acquire's future.
                let conn = Box::pin(ServerConn::connect(&target.target)).await?;
                (Box::new(conn), target.number)
            }
        };
        Ok(Lease {
            conn: Some(conn),
            generation,
            pool: self.inner.clone(),
            _permit: Some(permit),
        })
    }

    /// A free slot, unless there is none or the pool is paused.
    fn try_take(&self) -> Option<OwnedSemaphorePermit> {
        if self.inner.paused.load(Ordering::Acquire) {
            return None;
        }
        self.inner.permits.clone().try_acquire_owned().ok()
    }

    /// Waits up to `query_wait_timeout` for the pool to be resumed (when
    /// paused) and for a free slot, listed among the pool's waiters.
    async fn wait_for_slot(&self) -> Result<OwnedSemaphorePermit, ClientError> {
        let _waiting = self.inner.waits.enter();
        let wait = self.inner.config.load().query_wait_timeout;
        let deadline = tokio::time::Instant::now() + wait;
        if self.inner.paused.load(Ordering::Acquire) {
            self.wait_for_resume(deadline, wait).await?;
        }
        self.wait_for_permit(deadline, wait).await
    }

    /// Waits until `deadline` for a slot in the pool.
    async fn wait_for_permit(
        &self,
        deadline: tokio::time::Instant,
        wait: Duration,
    ) -> Result<OwnedSemaphorePermit, ClientError> {
        let permit = self.inner.permits.clone().acquire_owned();
        match tokio::time::timeout_at(deadline, permit).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(ClientError::fatal(
                SqlState::ADMIN_SHUTDOWN,
                "the pool is closed",
            )),
            Err(_) => Err(wait_timeout(wait, "no server connection became free")),
        }
    }

    /// Waits until `deadline` for a paused pool to be resumed.
    async fn wait_for_resume(
        &self,
        deadline: tokio::time::Instant,
        wait: Duration,
    ) -> Result<(), ClientError> {
        loop {
            let resumed = self.inner.resumed.notified();
            tokio::pin!(resumed);
            // Registered before the check, so a resume in between is seen.
            resumed.as_mut().enable();
            if !self.inner.paused.load(Ordering::Acquire) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, resumed).await.is_err() {
                return Err(wait_timeout(wait, "the pool stayed paused"));
            }
        }
    }

    /// An idle connection of the current generation, with that generation.
    fn take_idle(&self) -> Option<(Box<ServerConn>, u64)> {
        let lifetime = Duration::from_millis(self.inner.lifetime_ms.load(Ordering::Relaxed));
        let mut idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        // Read under the lock: a new generation empties `idle` under it too.
        let generation = self.inner.generation.load(Ordering::Relaxed);
        while let Some(c) = idle.pop() {
            if !c.looks_alive() {
                continue; // closed by the server (restart, terminate): drop it
            }
            if c.created.elapsed() < lifetime {
                return Some((c, generation));
            }
            tokio::spawn(c.terminate());
        }
        None
    }

    /// Connections idle and checked out, and checkouts waiting.
    pub fn stats(&self) -> PoolStats {
        let idle = self.inner.idle.lock().map(|i| i.len()).unwrap_or(0);
        let size = self.inner.config.load().size;
        let used = size.saturating_sub(self.inner.permits.available_permits());
        let book = &self.inner.waits;
        let (waiting, oldest) = {
            let w = book.waiting.lock().unwrap_or_else(|p| p.into_inner());
            (w.len(), w.values().next().copied())
        };
        PoolStats {
            idle,
            used,
            waiting,
            max_wait: oldest.map_or(Duration::ZERO, |since| since.elapsed()),
            waits_total: book.total.load(Ordering::Relaxed),
            wait_time_total: Duration::from_micros(book.micros.load(Ordering::Relaxed)),
        }
    }

    /// Applies a reloaded config. A changed size takes effect at once for
    /// growth and as connections come back for shrinking; a changed target
    /// closes the idle connections now and the checked-out ones when their
    /// clients return them, so every later checkout uses the new target.
    pub fn reconfigure(&self, target: ServerTarget, config: PoolConfig) {
        let inner = &self.inner;
        let old = inner.config.load_full();
        if config.size > old.size {
            inner.permits.add_permits(config.size - old.size);
        } else if config.size < old.size {
            // Taken as they are released, then forgotten.
            let shrink = u32::try_from(old.size - config.size).unwrap_or(u32::MAX);
            let permits = inner.permits.clone();
            tokio::spawn(async move {
                if let Ok(p) = permits.acquire_many_owned(shrink).await {
                    p.forget();
                }
            });
        }
        inner
            .lifetime_ms
            .store(millis(config.server_lifetime), Ordering::Relaxed);
        inner.config.store(Arc::new(config));
        self.set_target(target);
    }

    /// What new connections log in to the server with.
    pub fn secret(&self) -> ServerSecret {
        self.inner.target.load().target.secret.clone()
    }

    /// Uses `target` for the connections made from now on, leaving size and
    /// timing alone. When it is another server or login (not just rebuilt
    /// TLS settings; e.g. a login that proved a newer secret for an
    /// `auth_query` user), also starts a new generation.
    pub fn set_target(&self, target: ServerTarget) {
        let inner = &self.inner;
        let stale = {
            let mut idle = inner.idle.lock().unwrap_or_else(|p| p.into_inner());
            let current = inner.target.load_full();
            let same = same_server(&current.target, &target);
            let number = current.number + u64::from(!same);
            inner.target.store(Arc::new(Generation { number, target }));
            inner.generation.store(number, Ordering::Relaxed);
            if same {
                return;
            }
            std::mem::take(&mut *idle)
        };
        for c in stale {
            tokio::spawn(c.terminate());
        }
    }

    /// Holds new checkouts (they wait up to `query_wait_timeout`), waits
    /// until every checked-out connection is back, then closes the idle
    /// ones, so Postgres can be restarted or failed over underneath.
    /// Clients in session mode keep their connection: this waits for them
    /// to disconnect, as PgBouncer's `PAUSE` does.
    pub async fn pause(&self) {
        self.hold();
        loop {
            if self.stats().used == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let idle = std::mem::take(&mut *self.inner.idle.lock().unwrap_or_else(|p| p.into_inner()));
        for c in idle {
            c.terminate().await;
        }
    }

    /// Holds new checkouts, without waiting for the checked-out ones.
    pub fn hold(&self) {
        self.inner.paused.store(true, Ordering::Release);
    }

    /// Lets waiting and new checkouts go on after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.inner.paused.store(false, Ordering::Release);
        self.inner.resumed.notify_waiters();
    }

    /// Whether the pool is paused.
    pub fn is_paused(&self) -> bool {
        self.inner.paused.load(Ordering::Acquire)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether connections made for `a` are as good as ones made for `b`.
fn same_server(a: &ServerTarget, b: &ServerTarget) -> bool {
    a.host == b.host
        && a.port == b.port
        && a.user == b.user
        && a.dbname == b.dbname
        && a.secret == b.secret
        && a.tls.mode == b.tls.mode
}

/// `query_wait_timeout` ran out; `why` says on what.
fn wait_timeout(wait: Duration, why: &str) -> ClientError {
    ClientError::error(
        SqlState::QUERY_CANCELED,
        format!("query_wait_timeout: {why} within {} ms", wait.as_millis()),
    )
}

/// A checked-out server connection.
pub struct Lease {
    conn: Option<Box<ServerConn>>,
    /// The pool's generation the connection was made for.
    generation: u64,
    pool: Arc<PoolInner>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Deref for Lease {
    type Target = ServerConn;
    fn deref(&self) -> &ServerConn {
        // `conn` is only taken in `drop`.
        self.conn
            .as_ref()
            .expect("lease holds a connection until dropped")
    }
}

impl DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut ServerConn {
        self.conn
            .as_mut()
            .expect("lease holds a connection until dropped")
    }
}

impl Lease {
    /// Marks the connection as lost: it is closed, not returned.
    pub fn discard(mut self) {
        if let Some(c) = self.conn.take() {
            drop(c);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if conn.in_flight {
            // The exchange broke off mid-reply: nothing can resynchronise it.
            return;
        }
        let pool = self.pool.clone();
        let permit = self._permit.take();
        let generation = self.generation;
        if conn.status == TxStatus::Idle && !conn.dirty {
            conn.last_used = Instant::now();
            pool.put_idle(conn, generation);
            drop(permit);
            return;
        }
        // A client left a transaction open or session state behind: roll
        // back and discard it before anyone else gets this connection. The
        // permit is held until then, so the pool never over-commits.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if reset(&mut conn).await {
                    conn.last_used = Instant::now();
                    pool.put_idle(conn, generation);
                }
                drop(permit);
            });
        }
    }
}

impl PoolInner {
    /// Returns a connection to the idle list, or closes it when it was made
    /// for an older generation of the target.
    fn put_idle(&self, conn: Box<ServerConn>, generation: u64) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Relaxed) == generation {
            idle.push(conn);
        } else {
            drop(idle);
            tokio::spawn(conn.terminate());
        }
    }
}

/// Rolls back and clears session state; `false` means close the connection.
async fn reset(conn: &mut ServerConn) -> bool {
    let deadline = Duration::from_secs(5);
    let work = async {
        if conn.status != TxStatus::Idle {
            conn.run_internal("ROLLBACK").await?;
        }
        if conn.dirty {
            conn.run_internal("DISCARD ALL").await?;
            conn.prepared.clear();
            for k in std::mem::take(&mut conn.proxy_set) {
                conn.params.remove(&k);
            }
            conn.params_stamp = None;
            conn.dirty = false;
        }
        Ok::<_, std::io::Error>(conn.status == TxStatus::Idle)
    };
    matches!(tokio::time::timeout(deadline, work).await, Ok(Ok(true)))
}

/// Closes connections idle too long (beyond `min_idle`) or past their
/// lifetime, and opens connections up to `min_idle`.
async fn maintain(pool: Weak<PoolInner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let cfg = pool.config.load_full();
        let expired: Vec<Box<ServerConn>> = {
            let mut idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner());
            let mut keep = Vec::with_capacity(idle.len());
            let mut expired = Vec::new();
            // Oldest-used first, so the freshest connections stay.
            idle.sort_by_key(|c| c.last_used);
            let total = idle.len();
            for (i, c) in idle.drain(..).enumerate() {
                let surplus = total - i > cfg.min_idle;
                if c.created.elapsed() >= cfg.server_lifetime
                    || (surplus && c.last_used.elapsed() >= cfg.idle_timeout)
                {
                    expired.push(c);
                } else {
                    keep.push(c);
                }
            }
            *idle = keep;
            expired
        };
        for c in expired {
            c.terminate().await;
        }
        // A paused pool stays empty until resumed.
        let missing = if pool.paused.load(Ordering::Acquire) {
            0
        } else {
            cfg.min_idle
                .saturating_sub(pool.idle.lock().map(|i| i.len()).unwrap_or(0))
        };
        for _ in 0..missing {
            let Ok(permit) = pool.permits.clone().try_acquire_owned() else {
                break;
            };
            let target = pool.target.load_full();
            match ServerConn::connect(&target.target).await {
                Ok(c) => pool.put_idle(Box::new(c), target.number),
                Err(e) => {
                    tracing::warn!(error = %e, "could not open a min_idle server connection");
                    break;
                }
            }
            drop(permit);
        }
    }
}
