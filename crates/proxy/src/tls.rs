//! TLS on the client leg: the acceptor built from the configured PEM files,
//! and [`ClientStream`], a client's byte stream in plain text or in TLS.
//!
//! Only the server side of the handshake lives here; when to offer TLS
//! (the SSLRequest exchange) is the session's business.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Why the configured certificate or key cannot be used. Each names the
/// file it is about.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// The file is not PEM, or holds no item of the kind needed.
    #[error("{}: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    /// rustls refused the pair (the key does not fit the certificate, an
    /// unsupported key type…).
    #[error("{} and {}: {source}", cert.display(), key.display())]
    Rejected {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

/// The client-side TLS settings of a running proxy.
#[derive(Clone)]
pub struct ClientTls {
    /// Runs the server side of a handshake.
    pub acceptor: TlsAcceptor,
    /// Whether a client must use TLS before it logs in.
    pub required: bool,
}

impl ClientTls {
    /// Reads the certificate chain and key named in `config` (with the ring
    /// provider, TLS 1.2 and 1.3).
    pub fn load(config: &config::Tls) -> Result<ClientTls, TlsError> {
        let chain = read_chain(&config.cert_file)?;
        let key = read_key(&config.key_file)?;
        let rejected = |source| TlsError::Rejected {
            cert: config.cert_file.clone(),
            key: config.key_file.clone(),
            source,
        };
        let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(rejected)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(rejected)?;
        // As Postgres 17: a client that offers ALPN must offer this one.
        server.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(ClientTls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            required: config.client_mode == config::TlsClientMode::Require,
        })
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            reason: "no CERTIFICATE in the file".into(),
        });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Pem {
            path: path.to_path_buf(),
            reason: "no PRIVATE KEY in the file".into(),
        },
        e => pem_error(path, e),
    })
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> TlsError {
    match e {
        rustls::pki_types::pem::Error::Io(source) => TlsError::Read {
            path: path.to_path_buf(),
            source,
        },
        e => TlsError::Pem {
            path: path.to_path_buf(),
            reason: format!("not a usable PEM file: {e}"),
        },
    }
}

/// A client's connection: plain TCP, or TLS over it once negotiated.
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// A TLS handshake failed: the socket is gone. Reads see the end of the
    /// stream, writes fail.
    Closed,
}

impl ClientStream {
    /// Whether TLS is in use.
    pub fn is_tls(&self) -> bool {
        matches!(self, ClientStream::Tls(_))
    }

    /// Runs the server side of a TLS handshake on a plain stream. On
    /// failure the stream is [`ClientStream::Closed`].
    pub async fn start_tls(&mut self, acceptor: &TlsAcceptor) -> io::Result<()> {
        let plain = match std::mem::replace(self, ClientStream::Closed) {
            ClientStream::Plain(s) => s,
            other => {
                *self = other;
                return Err(io::Error::other("TLS is already in use"));
            }
        };
        *self = ClientStream::Tls(Box::new(acceptor.accept(plain).await?));
        Ok(())
    }
}

// Reads and writes go straight to the stream underneath (one match per
// call, no future of their own: this is the relay's per-message path).
// Reads are cancel-safe: rustls keeps decrypted bytes it has not handed out.
impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            ClientStream::Closed => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            ClientStream::Closed => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    /// For TLS, pushes out the records rustls still holds.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            ClientStream::Closed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            ClientStream::Closed => Poll::Ready(Ok(())),
        }
    }
}
