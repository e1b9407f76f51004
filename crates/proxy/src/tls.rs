//! TLS settings for both legs.
//!
//! Client leg: the acceptor built from the configured PEM files (with
//! client certificates checked against `tls.ca_file` when it is set), the
//! `tls.client_cert` rule a login must pass, and [`ClientStream`], a
//! client's byte stream in plain text or in TLS. Only the server side of
//! the handshake lives here; when to offer TLS (the SSLRequest exchange) is
//! the session's business.
//!
//! Server leg: [`UpstreamTls`], the rustls client settings for one
//! database's `tls` mode and `tls_ca_file`, with the certificate checks of
//! libpq's `sslmode`, and the client certificate of `tls_cert_file` /
//! `tls_key_file` (libpq's `sslcert` / `sslkey`). The SSLRequest exchange
//! is in [`crate::server`].

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use config::{ClientCertMode, ServerTlsMode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

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
    /// A `tls_ca_file` holds no certificate rustls accepts as a root, or
    /// the verifier could not be built from them.
    #[error("{}: {reason}", path.display())]
    Roots { path: PathBuf, reason: String },
    /// The server-leg mode verifies certificates but no `tls_ca_file` is
    /// configured (validation refuses such a config).
    #[error("tls: {0} needs a tls_ca_file")]
    NoRoots(ServerTlsMode),
    /// rustls refused the client settings.
    #[error("TLS client settings: {0}")]
    Client(rustls::Error),
}

/// The client-side TLS settings of a running proxy.
#[derive(Clone)]
pub struct ClientTls {
    /// Runs the server side of a handshake.
    pub acceptor: TlsAcceptor,
    /// Whether a client must use TLS before it logs in.
    pub required: bool,
    /// Whether a login needs a client certificate, and for whom.
    pub client_cert: ClientCertMode,
}

impl ClientTls {
    /// Reads the certificate chain and key named in `config` (with the ring
    /// provider, TLS 1.2 and 1.3), and the client certificates' roots from
    /// `ca_file` when set.
    pub fn load(config: &config::Tls) -> Result<ClientTls, TlsError> {
        let chain = read_chain(&config.cert_file)?;
        let key = read_key(&config.key_file)?;
        let rejected = |source| TlsError::Rejected {
            cert: config.cert_file.clone(),
            key: config.key_file.clone(),
            source,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(rejected)?;
        let builder = match &config.ca_file {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                // A certificate is asked for but not demanded here: whether
                // a login needs one is `client_cert`'s rule, checked with
                // the user name at login. One that is presented must chain
                // to the roots, or the handshake fails.
                let mut verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(read_roots(ca)?),
                    provider,
                )
                .allow_unauthenticated();
                if let Some(crl) = &config.crl_file {
                    verifier = verifier
                        .with_crls(read_crls(crl)?)
                        .only_check_end_entity_revocation();
                }
                let verifier = verifier.build().map_err(|e| TlsError::Roots {
                    path: ca.clone(),
                    reason: e.to_string(),
                })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut server = builder.with_single_cert(chain, key).map_err(rejected)?;
        // As Postgres 17: a client that offers ALPN must offer this one.
        server.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
        Ok(ClientTls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            required: config.client_mode == config::TlsClientMode::Require,
            client_cert: config.client_cert,
        })
    }

    /// Applies `client_cert` to a login as `user` over `stream`: `Err` says
    /// why it is refused (the session answers 28000, as Postgres does for
    /// a failed `clientcert` check).
    pub fn admit(&self, stream: &ClientStream, user: &str) -> Result<(), String> {
        if self.client_cert == ClientCertMode::None {
            return Ok(());
        }
        // rustls has verified the chain of any certificate it kept.
        let Some(cert) = stream.client_certificate() else {
            return Err("connection requires a valid client certificate".into());
        };
        if self.client_cert == ClientCertMode::VerifyFull {
            certificate_is_for(cert, user).map_err(|why| {
                format!(
                    "certificate validation (client_cert: verify-full) failed for user \"{user}\": {why}"
                )
            })?;
        }
        Ok(())
    }
}

/// Whether `cert` was issued for `user`: its common name is the user name
/// (`verify-full` and the `cert` method). `Err` says why not.
pub fn certificate_is_for(cert: &CertificateDer<'_>, user: &str) -> Result<(), String> {
    match common_name(cert) {
        Some(name) if name == user => Ok(()),
        Some(name) => Err(format!("the certificate's common name is \"{name}\"")),
        None => Err("the certificate has no common name".into()),
    }
}

/// The subject's common name of a certificate (the first, if several).
fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
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

/// The revocation lists in a PEM file (at least one).
fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if crls.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            reason: "no X509 CRL in the file".into(),
        });
    }
    Ok(crls)
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

    /// Whether the client's first byte opens a TLS handshake (a record of
    /// type 22), i.e. a direct TLS connection without SSLRequest. Waits for
    /// that byte without consuming it; `false` at the end of the stream. No
    /// startup packet starts with this byte: its length would be beyond
    /// 350 MB.
    pub async fn opens_with_tls_handshake(&self) -> io::Result<bool> {
        let ClientStream::Plain(s) = self else {
            return Ok(false);
        };
        let mut first = [0u8; 1];
        Ok(s.peek(&mut first).await? == 1 && first[0] == TLS_HANDSHAKE_RECORD)
    }

    /// Whether the TLS handshake settled on the `postgresql` ALPN protocol.
    pub fn negotiated_postgresql_alpn(&self) -> bool {
        match self {
            ClientStream::Tls(s) => s.get_ref().1.alpn_protocol() == Some(ALPN_POSTGRESQL),
            _ => false,
        }
    }

    /// The certificate the client presented in the TLS handshake (its end
    /// entity), if any.
    pub fn client_certificate(&self) -> Option<&CertificateDer<'static>> {
        match self {
            ClientStream::Tls(s) => s.get_ref().1.peer_certificates()?.first(),
            _ => None,
        }
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

/// ALPN protocol name Postgres 17 expects when a client offers ALPN
/// (<https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-SSL>).
const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// The content type of a TLS handshake record: a client's first byte in a
/// direct TLS connection.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// TLS on the proxy's connections to one database's servers: its `tls`
/// mode and, unless that is `disable`, the handshake settings built from it,
/// `tls_ca_file`, and the client certificate of `tls_cert_file` /
/// `tls_key_file`, presented when a server asks for one.
///
/// Certificate checks follow libpq's `sslmode`: `prefer` and `require`
/// accept any certificate, unless a CA file is configured, when they verify
/// the chain like `verify-ca`; `verify-ca` verifies the chain against the
/// CA file but not the name; `verify-full` also checks that the certificate
/// is for the configured host name or IP address.
#[derive(Clone)]
pub struct UpstreamTls {
    /// The configured mode.
    pub mode: ServerTlsMode,
    /// `None` with `disable`. `Err` says why the settings could not be
    /// built (an unreadable CA file, client certificate or key); every
    /// connection that would use TLS then fails with it.
    connector: Option<Result<TlsConnector, Arc<TlsError>>>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("mode", &self.mode)
            .field(
                "settings",
                &match &self.connector {
                    None => "none",
                    Some(Ok(_)) => "ready",
                    Some(Err(_)) => "unusable",
                },
            )
            .finish()
    }
}

impl UpstreamTls {
    /// Plain text: no SSLRequest is sent.
    pub fn disabled() -> UpstreamTls {
        UpstreamTls {
            mode: ServerTlsMode::Disable,
            connector: None,
        }
    }

    /// Builds the settings for `db`'s `tls` mode, reading the PEM roots in
    /// `tls_ca_file` and the client certificate and key in `tls_cert_file`
    /// and `tls_key_file`. Fails on a file that cannot be used (the error
    /// names it), or a verifying mode without a CA file.
    pub fn load(db: &config::Database) -> Result<UpstreamTls, TlsError> {
        if db.tls == ServerTlsMode::Disable {
            return Ok(UpstreamTls::disabled());
        }
        let identity = match (&db.tls_cert_file, &db.tls_key_file) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            _ => None,
        };
        let config = client_config(db.tls, db.tls_ca_file.as_deref(), identity)?;
        Ok(UpstreamTls {
            mode: db.tls,
            connector: Some(Ok(TlsConnector::from(Arc::new(config)))),
        })
    }

    /// The settings for `db`'s servers. A file that cannot be used is
    /// logged here and makes each connection needing TLS fail (with 08001)
    /// rather than fall back to plain text or go on without the client
    /// certificate.
    pub fn for_database(db: &config::Database) -> UpstreamTls {
        match UpstreamTls::load(db) {
            Ok(tls) => tls,
            Err(e) => {
                tracing::error!(database = %db.name, "server TLS settings unusable: {e}");
                UpstreamTls {
                    mode: db.tls,
                    connector: Some(Err(Arc::new(e))),
                }
            }
        }
    }

    /// The handshake settings: `None` with `disable`, `Err` when they
    /// could not be built.
    pub fn connector(&self) -> Option<Result<&TlsConnector, &TlsError>> {
        self.connector
            .as_ref()
            .map(|c| c.as_ref().map_err(|e| &**e))
    }
}

/// The rustls client settings for a mode other than `disable` (ring
/// provider, TLS 1.2 and 1.3, ALPN `postgresql`), with `identity` (PEM
/// certificate chain and key files) as the client certificate when given.
fn client_config(
    mode: ServerTlsMode,
    ca_file: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = ca_file.map(read_roots).transpose()?;
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots, ca_file) {
        (ServerTlsMode::VerifyFull, Some(roots), Some(path)) => {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| TlsError::Roots {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?
        }
        (mode, None, _) if mode.verifies() => return Err(TlsError::NoRoots(mode)),
        (_, roots, _) => Arc::new(ChainCheck {
            roots,
            provider: provider.clone(),
        }),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Client)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(read_chain(cert)?, read_key(key)?)
            .map_err(|source| TlsError::Rejected {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                source,
            })?,
    };
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(config)
}

/// The certificates in a `tls_ca_file`, as trust anchors.
fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_chain(path)? {
        roots.add(cert).map_err(|e| TlsError::Roots {
            path: path.to_path_buf(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

/// `verify-ca` (and `prefer` / `require` with a CA file): the chain must
/// lead to one of the roots; the name it was issued for is not checked.
/// `prefer` and `require` without a CA file (no roots): any certificate is
/// accepted (libpq's `sslmode=require` does not verify either). Either way
/// the handshake signatures are checked, so the peer holds the
/// certificate's key.
#[derive(Debug)]
struct ChainCheck {
    roots: Option<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
