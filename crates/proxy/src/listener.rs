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
    #[error("invalid user credentials: {0}")]
    Credentials(String),
}

impl Proxy {
    /// Binds `config.listen` (port 0 picks a free port) and starts serving.
    pub async fn start(config: Config) -> Result<Proxy, StartError> {
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
        let shared = Shared::new(config).map_err(StartError::Credentials)?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, shared, stopped));
        tracing::info!(%addr, "pgcoalesce listening");
        Ok(Proxy { addr, stop, task })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting new clients and waits for the accept loop to end.
    /// Connected clients finish their sessions.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
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
