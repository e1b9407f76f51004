//! TLS on the client leg.

use std::path::PathBuf;

use serde::Deserialize;

/// TLS on the client leg: the certificate the proxy presents to clients
/// and whether they must use it (YAML key `tls`). The files are read when
/// the proxy starts; a missing or unparsable one stops it there.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM file with the server certificate first, then any intermediates.
    pub cert_file: PathBuf,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// Whether clients may stay in plain text. Default `allow`.
    #[serde(default)]
    pub client_mode: TlsClientMode,
    /// PEM file with the certificates client certificates must chain to
    /// (Postgres's `ssl_ca_file`). With it, TLS clients are asked for a
    /// certificate, and one that does not chain to these fails the
    /// handshake. Default none: no client certificates.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM file with certificate revocation lists of `ca_file`'s CAs
    /// (Postgres's `ssl_crl_file`): a client certificate they list fails
    /// the handshake. Default none. Needs `ca_file`.
    #[serde(default)]
    pub crl_file: Option<PathBuf>,
    /// Whether a client certificate is required, as `clientcert` in
    /// `pg_hba.conf`. Default `none`.
    #[serde(default)]
    pub client_cert: ClientCertMode,
}

/// Whether clients must present a certificate (YAML `tls.client_cert`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientCertMode {
    /// Not required; one presented is still checked against `ca_file`.
    #[default]
    None,
    /// Every login must come over TLS with a certificate that chains to
    /// `ca_file` (28000 otherwise).
    VerifyCa,
    /// As `verify-ca`, and the certificate's common name must be the user
    /// name the client logs in as.
    VerifyFull,
}

/// Whether a client must negotiate TLS before it logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsClientMode {
    /// TLS and plain-text clients are both accepted (libpq's default
    /// `sslmode=prefer` then uses TLS).
    #[default]
    Allow,
    /// A client that logs in without TLS is refused (28000).
    Require,
}
