//! The accept loop. [`Proxy::start`] binds the listen address and serves
//! clients until [`Proxy::shutdown`]; each client gets its own task.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use config::Config;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wire::build::{self, Severity};
use wire::SqlState;

use crate::state::{ConfigSource, Shared};

/// A running proxy.
pub struct Proxy {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid user credentials: {0}")]
    Credentials(String),
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

impl Proxy {
    /// Binds `config.listen` (port 0 picks a free port) and starts serving.
    /// With a `tls` section, its certificate and key are read first. A
    /// reload re-applies this config (re-reading TLS files); use
    /// [`start_with_source`](Self::start_with_source) to reload from a file.
    pub async fn start(config: Config) -> Result<Proxy, StartError> {
        Proxy::start_with_source(config, None).await
    }

    /// [`start`](Self::start), with `source` giving the config that
    /// [`reload`](Self::reload) and the console's `RELOAD` apply.
    pub async fn start_with_source(
        config: Config,
        source: Option<ConfigSource>,
    ) -> Result<Proxy, StartError> {
        let tls = config
            .tls
            .as_ref()
            .map(crate::tls::ClientTls::load)
            .transpose()?;
        let listen = config.listen;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
        let metrics_listen = config.metrics_listen;
        let shared = Shared::new(config, tls, source).map_err(StartError::Credentials)?;
        let (stop, stopped) = watch::channel(false);
        let metrics_addr = match metrics_listen {
            Some(at) => Some(
                crate::metrics::start(at, shared.clone())
                    .await
                    .map_err(|source| StartError::Metrics { addr: at, source })?,
            ),
            None => None,
        };
        let task = tokio::spawn(serve_until_stopped(listener, shared.clone(), stopped));
        if let Some(c) = &shared.coalescer {
            tokio::spawn(crate::coalesce::log_stats(c.stats.clone()));
        }
        tracing::info!(%addr, "pgcoalesce listening");
        Ok(Proxy {
            addr,
            metrics_addr,
            shared,
            stop,
            task,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The metrics endpoint's address, when `metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The coalescer, when the config has rules (for tests and the admin side).
    pub fn coalescer(&self) -> Option<&Arc<crate::coalesce::Coalescer>> {
        self.shared.coalescer.as_ref()
    }

    /// Reads the config again from the source and applies it (SIGHUP). `Ok`
    /// carries warnings about settings that need a restart; `Err` says why
    /// nothing changed. See [`crate::reload`].
    pub async fn reload(&self) -> Result<Vec<String>, String> {
        crate::reload::reload(&self.shared).await
    }

    /// Resolves when an admin asked for shutdown (`SHUTDOWN` on the
    /// console). The proxy is already shutting down then; a binary waits
    /// for this next to its signals and calls [`shutdown`](Self::shutdown),
    /// which waits for that shutdown to complete.
    pub async fn shutdown_requested(&self) {
        let mut requested = self.shared.shutdown_request.subscribe();
        let _ = requested.wait_for(|r| *r).await;
    }

    /// Stops accepting new clients; lets connected clients finish the
    /// transaction or exchange they are in (each is closed with 57P01 once
    /// idle) for up to `limit`; then flushes every pending coalesced write
    /// (retrying while Postgres is away, up to `limit` again). Returns the
    /// number of writes that could not be flushed.
    pub async fn shutdown(self, limit: std::time::Duration) -> usize {
        let _ = self.stop.send(true);
        // After a console SHUTDOWN this waits for that drain to finish.
        let _ = self.task.await;
        drain(&self.shared, limit).await
    }
}

/// How long a shutdown asked for on the admin console lets clients finish,
/// and then retries flushing (SIGTERM's limit in the binary).
const CONSOLE_SHUTDOWN_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Why the accept loop ended.
#[derive(Debug, PartialEq, Eq)]
enum Stopped {
    /// [`Proxy::shutdown`] (SIGTERM in the binary), which drains itself.
    ByOwner,
    /// `SHUTDOWN` on the admin console.
    ByConsole,
}

/// Accepts clients until told to stop; after a console `SHUTDOWN`, also
/// drains the proxy as [`Proxy::shutdown`] does.
async fn serve_until_stopped(
    listener: TcpListener,
    shared: Arc<Shared>,
    stopped: watch::Receiver<bool>,
) {
    if accept_loop(listener, shared.clone(), stopped).await == Stopped::ByConsole {
        drain(&shared, CONSOLE_SHUTDOWN_LIMIT).await;
    }
}

/// Tells sessions to end at their next idle point, waits up to `limit` for
/// them, then flushes every pending coalesced write (retrying up to `limit`
/// again). Returns the number of writes that could not be flushed. Safe to
/// run twice: the second run finds nothing left to wait for.
async fn drain(shared: &Shared, limit: std::time::Duration) -> usize {
    shared.stopping.send_replace(true);
    let deadline = tokio::time::Instant::now() + limit;
    while shared.clients.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let left = shared.clients.load(Ordering::Relaxed);
    if left > 0 {
        tracing::warn!(clients = left, "clients still busy at shutdown are cut off");
    }
    // Pending writes are flushed through the writers' pools.
    for database in shared.paused_databases() {
        shared.resume(&database);
    }
    match &shared.coalescer {
        Some(c) => {
            let left = c.flush_all(limit).await;
            if left > 0 {
                tracing::error!(left, "pending coalesced writes could not be flushed");
            }
            left
        }
        None => 0,
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) -> Stopped {
    let mut requested = shared.shutdown_request.subscribe();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stopped.changed() => return Stopped::ByOwner,
            _ = requested.wait_for(|r| *r) => return Stopped::ByConsole,
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off, go on.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let n = shared.clients.fetch_add(1, Ordering::Relaxed) + 1;
        let shared = shared.clone();
        tokio::spawn(async move {
            if n > shared.live().config.max_client_conn {
                refuse(stream).await;
            } else {
                tracing::debug!(%peer, "client connected");
                crate::session::serve(shared.clone(), stream).await;
            }
            shared.clients.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let e = build::error_response(
        Severity::Fatal,
        SqlState::TOO_MANY_CONNECTIONS,
        "sorry, too many clients already (max_client_conn)",
    );
    let _ = stream.write_all(e.raw()).await;
}
