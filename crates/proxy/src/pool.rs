//! Server connection pools, one per (database, user). A checkout is a
//! [`Lease`]: dropping it returns the connection, resets it first when a
//! client left a transaction or session state behind, or closes it when the
//! exchange on it broke off. No path forgets a connection.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use config::PoolMode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wire::inspect::TxStatus;
use wire::SqlState;

use crate::error::ClientError;
use crate::prepared::StatementRegistry;
use crate::server::{ServerConn, ServerTarget};

/// Timing and sizing of one pool.
#[derive(Debug, Clone)]
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

struct PoolInner {
    target: ServerTarget,
    config: PoolConfig,
    /// Boxed: a connection moves in and out of here on every transaction,
    /// and a pointer is cheaper to move than the whole connection.
    #[allow(clippy::vec_box)]
    idle: Mutex<Vec<Box<ServerConn>>>,
    permits: Arc<Semaphore>,
    statements: StatementRegistry,
}

impl Pool {
    /// Creates an empty pool and its maintenance task (idle timeout, lifetime,
    /// min idle), which ends when the pool is dropped.
    pub fn new(target: ServerTarget, config: PoolConfig) -> Pool {
        let inner = Arc::new(PoolInner {
            permits: Arc::new(Semaphore::new(config.size)),
            target,
            config,
            idle: Mutex::new(Vec::new()),
            statements: StatementRegistry::default(),
        });
        tokio::spawn(maintain(Arc::downgrade(&inner)));
        Pool { inner }
    }

    /// The pool mode clients of this pool get.
    pub fn mode(&self) -> PoolMode {
        self.inner.config.mode
    }

    /// Shared prepared statement names of this pool.
    pub fn statements(&self) -> &StatementRegistry {
        &self.inner.statements
    }

    /// Checks out a connection, waiting up to `query_wait_timeout` for one to
    /// be free, and connecting a new one when none is idle.
    pub async fn acquire(&self) -> Result<Lease, ClientError> {
        let wait = self.inner.config.query_wait_timeout;
        // A free slot is taken without arming the wait's timer.
        let free = self.inner.permits.clone().try_acquire_owned();
        let permit = match free {
            Ok(p) => p,
            Err(_) => self.wait_for_permit(wait).await?,
        };
        let reuse = self.take_idle();
        let conn = match reuse {
            Some(c) => c,
            // Boxed, so the rare login does not size every acquire's future.
            None => Box::new(Box::pin(ServerConn::connect(&self.inner.target)).await?),
        };
        Ok(Lease {
            conn: Some(conn),
            pool: self.inner.clone(),
            _permit: Some(permit),
        })
    }

    /// Waits up to `wait` for a slot in the pool.
    async fn wait_for_permit(&self, wait: Duration) -> Result<OwnedSemaphorePermit, ClientError> {
        match tokio::time::timeout(wait, self.inner.permits.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(ClientError::fatal(
                SqlState::ADMIN_SHUTDOWN,
                "the pool is closed",
            )),
            Err(_) => Err(ClientError::error(
                SqlState::QUERY_CANCELED,
                format!(
                    "query_wait_timeout: no server connection became free within {} ms",
                    wait.as_millis()
                ),
            )),
        }
    }

    fn take_idle(&self) -> Option<Box<ServerConn>> {
        let lifetime = self.inner.config.server_lifetime;
        let mut idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(c) = idle.pop() {
            if !c.looks_alive() {
                continue; // closed by the server (restart, terminate): drop it
            }
            if c.created.elapsed() < lifetime {
                return Some(c);
            }
            tokio::spawn(c.terminate());
        }
        None
    }

    /// Number of connections idle and checked out, for the admin console.
    pub fn counts(&self) -> (usize, usize) {
        let idle = self.inner.idle.lock().map(|i| i.len()).unwrap_or(0);
        let used = self.inner.config.size - self.inner.permits.available_permits();
        (idle, used)
    }
}

/// A checked-out server connection.
pub struct Lease {
    conn: Option<Box<ServerConn>>,
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
        if conn.status == TxStatus::Idle && !conn.dirty {
            conn.last_used = Instant::now();
            pool.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
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
                    pool.idle
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(conn);
                }
                drop(permit);
            });
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
        let cfg = &pool.config;
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
        let missing = cfg
            .min_idle
            .saturating_sub(pool.idle.lock().map(|i| i.len()).unwrap_or(0));
        for _ in 0..missing {
            let Ok(permit) = pool.permits.clone().try_acquire_owned() else {
                break;
            };
            match ServerConn::connect(&pool.target).await {
                Ok(c) => pool
                    .idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Box::new(c)),
                Err(e) => {
                    tracing::warn!(error = %e, "could not open a min_idle server connection");
                    break;
                }
            }
            drop(permit);
        }
    }
}
