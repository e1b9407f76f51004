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

use crate::state::Shared;

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
    /// With a `tls` section, its certificate and key are read first.
    pub async fn start(config: Config) -> Result<Proxy, StartError> {
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
        let shared = Shared::new(config, tls).map_err(StartError::Credentials)?;
        let (stop, stopped) = watch::channel(false);
        let metrics_addr = match shared.config.metrics_listen {
            Some(at) => Some(
                crate::metrics::start(at, shared.clone())
                    .await
                    .map_err(|source| StartError::Metrics { addr: at, source })?,
            ),
            None => None,
        };
        let task = tokio::spawn(accept_loop(listener, shared.clone(), stopped));
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

    /// Stops accepting new clients; lets connected clients finish the
    /// transaction or exchange they are in (each is closed with 57P01 once
    /// idle) for up to `limit`; then flushes every pending coalesced write
    /// (retrying while Postgres is away, up to `limit` again). Returns the
    /// number of writes that could not be flushed.
    pub async fn shutdown(self, limit: std::time::Duration) -> usize {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.shared.stopping.send_replace(true);
        let deadline = tokio::time::Instant::now() + limit;
        while self.shared.clients.load(Ordering::Relaxed) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let left = self.shared.clients.load(Ordering::Relaxed);
        if left > 0 {
            tracing::warn!(clients = left, "clients still busy at shutdown are cut off");
        }
        match &self.shared.coalescer {
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
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stopped.changed() => return,
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
            if n > shared.config.max_client_conn {
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
