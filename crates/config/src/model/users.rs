//! Users: who may log in, how they prove it, and what the proxy logs in
//! to Postgres with.

use std::fmt;

use serde::Deserialize;

/// How a client proves its identity to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
pub enum AuthMethod {
    /// No password asked.
    #[serde(rename = "trust")]
    Trust,
    /// MD5 challenge; needs the plaintext `password`.
    #[serde(rename = "md5")]
    Md5,
    /// SCRAM-SHA-256; needs `password` or `scram_verifier`.
    #[default]
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// A TLS client certificate that chains to `tls.ca_file` and whose
    /// common name is the user name, as Postgres's `cert`; no password is
    /// asked. Needs `tls.ca_file`. A `password` is then only what the proxy
    /// logs in to Postgres with (the default `server_password`).
    #[serde(rename = "cert")]
    Cert,
}

/// A user clients may log in as, with the credentials used on both sides of
/// the proxy. `Debug` redacts every secret.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The user name (the same on the client side and on Postgres).
    pub name: String,
    /// How clients authenticate to the proxy. Default `scram-sha-256`.
    #[serde(default)]
    pub auth: AuthMethod,
    /// Plaintext password, usable for md5 and scram client auth, and the
    /// default `server_password` (with `cert` auth, only that).
    #[serde(default)]
    pub password: Option<String>,
    /// A Postgres SCRAM secret
    /// `SCRAM-SHA-256$<iter>:<salt>$<storedkey>:<serverkey>`, for scram client
    /// auth without storing the plaintext (see [`crate::ScramSecret`]).
    #[serde(default)]
    pub scram_verifier: Option<String>,
    /// Password the proxy uses to log in to Postgres as this user; defaults
    /// to `password`.
    #[serde(default)]
    pub server_password: Option<String>,
}

impl User {
    /// The password the proxy sends to Postgres: `server_password`, else
    /// `password`, else none (the server must not ask for one).
    pub fn upstream_password(&self) -> Option<&str> {
        self.server_password.as_deref().or(self.password.as_deref())
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn redact(secret: &Option<String>) -> Option<&'static str> {
            secret.as_ref().map(|_| "<redacted>")
        }
        f.debug_struct("User")
            .field("name", &self.name)
            .field("auth", &self.auth)
            .field("password", &redact(&self.password))
            .field("scram_verifier", &redact(&self.scram_verifier))
            .field("server_password", &redact(&self.server_password))
            .finish()
    }
}
