//! Client authentication: trust, md5 and SCRAM-SHA-256, against a
//! configured user (a plain password or a stored SCRAM verifier) or against
//! the secret `auth_query` found in Postgres (an md5 hash or a SCRAM
//! verifier); and cert, the client's TLS certificate for the user's name.
//! The exchange itself is pure: [`ClientAuth`] turns each client message
//! into the next reply, so the session only moves frames. A login
//! also yields what the proxy may log in upstream with when it has no
//! password of its own for the user (see [`AuthStep::Done`]).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use config::{AuthMethod, User};
use pgwire::api::auth::sasl::scram::gen_salted_password;
use rustls::pki_types::CertificateDer;
use wire::build;
use wire::inspect;
use wire::{Frame, SqlState};

use crate::error::ClientError;
use crate::scram::{self, ScramError, ScramKeys, ServerExchange, KEY_LEN};
use crate::server_auth::{md5_password, md5_salted, ServerSecret};

/// Iterations used when the proxy derives a verifier from a plain password.
const SCRAM_ITERATIONS: u32 = 4096;

/// A user's SCRAM secret, derived once when the config is loaded or read
/// from Postgres by `auth_query`.
#[derive(Clone)]
pub struct ScramVerifier {
    salt: Vec<u8>,
    iterations: u32,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl ScramVerifier {
    /// Derives a verifier from a plain password with a fresh random salt.
    pub fn from_password(password: &str) -> ScramVerifier {
        let salt: [u8; 16] = rand::random();
        let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS as usize);
        let (client_key, server_key) = scram::keys_from_salted_password(&salted);
        ScramVerifier {
            salt: salt.to_vec(),
            iterations: SCRAM_ITERATIONS,
            stored_key: scram::stored_key(&client_key).to_vec(),
            server_key: server_key.to_vec(),
        }
    }

    /// Parses Postgres's `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.
    /// `None` unless both keys are SHA-256 sized.
    pub fn parse(text: &str) -> Option<ScramVerifier> {
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (iter_salt, keys) = rest.split_once('$')?;
        let (iter, salt) = iter_salt.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let verifier = ScramVerifier {
            salt: STANDARD.decode(salt).ok()?,
            iterations: iter.parse().ok().filter(|&i| i > 0)?,
            stored_key: STANDARD.decode(stored).ok()?,
            server_key: STANDARD.decode(server).ok()?,
        };
        let sized = verifier.stored_key.len() == KEY_LEN && verifier.server_key.len() == KEY_LEN;
        sized.then_some(verifier)
    }
}

/// What a user needs for client authentication, prepared once (configured
/// users) or per login (`auth_query` users).
#[derive(Clone)]
pub enum Credential {
    Trust,
    /// md5 from a configured plain password.
    Md5 {
        password: String,
    },
    /// md5 from Postgres's stored hash: hex of md5(password + user), without
    /// the `md5` prefix.
    Md5Hash {
        hash: String,
    },
    Scram(ScramVerifier),
    /// Postgres's `cert`: a TLS client certificate (its chain verified by
    /// the handshake against `tls.ca_file`) whose common name is the user
    /// name; no password.
    Cert,
}

impl Credential {
    /// Prepares the credential of a configured user (SCRAM key derivation
    /// happens here, not per login).
    pub fn for_user(user: &User) -> Result<Credential, String> {
        match user.auth {
            AuthMethod::Trust => Ok(Credential::Trust),
            AuthMethod::Cert => Ok(Credential::Cert),
            AuthMethod::Md5 => user
                .password
                .clone()
                .map(|password| Credential::Md5 { password })
                .ok_or_else(|| format!("user {}: md5 needs a password", user.name)),
            AuthMethod::ScramSha256 => {
                if let Some(v) = &user.scram_verifier {
                    ScramVerifier::parse(v)
                        .map(Credential::Scram)
                        .ok_or_else(|| format!("user {}: malformed scram_verifier", user.name))
                } else if let Some(p) = &user.password {
                    Ok(Credential::Scram(ScramVerifier::from_password(p)))
                } else {
                    Err(format!(
                        "user {}: scram-sha-256 needs a password",
                        user.name
                    ))
                }
            }
        }
    }

    /// The credential for a password hash as Postgres stores it (what
    /// `auth_query` returns): `md5` + 32 hex digits, or a SCRAM-SHA-256
    /// verifier. `None` for anything else (a plain password included).
    pub fn from_stored(secret: &str) -> Option<Credential> {
        if let Some(hash) = secret.strip_prefix("md5") {
            let hex = hash.len() == 32
                && hash
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            return hex.then(|| Credential::Md5Hash {
                hash: hash.to_owned(),
            });
        }
        ScramVerifier::parse(secret).map(Credential::Scram)
    }
}

/// One client's authentication exchange.
pub enum ClientAuth {
    Md5 {
        user: String,
        /// The one right answer to this login's salt.
        expected: String,
        /// What the proxy may log in upstream with once it matched.
        secret: Option<ServerSecret>,
    },
    ScramStart {
        verifier: ScramVerifier,
        user: String,
    },
    ScramFinal {
        exchange: ServerExchange,
        verifier: ScramVerifier,
        user: String,
    },
    Done,
}

/// The next step of an exchange.
pub enum AuthStep {
    /// Send this and wait for the client's next password message.
    Continue(Frame),
    /// Authenticated; send `finals` (SASLFinal) before AuthenticationOk.
    /// `secret` is what the login proved that also logs in to Postgres: an
    /// md5 hash the client answered with, or the SCRAM keys recovered from
    /// the client's proof. `None` after trust and a configured md5 password.
    Done {
        finals: Vec<Frame>,
        secret: Option<ServerSecret>,
    },
}

impl ClientAuth {
    /// Starts authentication of `user`; returns the first request to send,
    /// or `None` if no password is asked (trust, and cert once
    /// `client_cert`, the certificate the client presented over TLS, is
    /// found to be for `user`). A cert login without a certificate for
    /// `user` is refused here (28000).
    pub fn start(
        user: &str,
        cred: &Credential,
        client_cert: Option<&CertificateDer<'_>>,
    ) -> Result<(ClientAuth, Option<Frame>), ClientError> {
        let md5 = |expected: &dyn Fn([u8; 4]) -> String, secret| {
            let salt: [u8; 4] = rand::random();
            let auth = ClientAuth::Md5 {
                user: user.to_owned(),
                expected: expected(salt),
                secret,
            };
            (auth, Some(build::auth_md5(salt)))
        };
        Ok(match cred {
            Credential::Trust => (ClientAuth::Done, None),
            Credential::Cert => {
                check_cert(user, client_cert)?;
                (ClientAuth::Done, None)
            }
            Credential::Md5 { password } => md5(&|salt| md5_password(user, password, salt), None),
            Credential::Md5Hash { hash } => md5(
                &|salt| md5_salted(hash, salt),
                Some(ServerSecret::Md5Hash(hash.clone())),
            ),
            Credential::Scram(v) => (
                ClientAuth::ScramStart {
                    verifier: v.clone(),
                    user: user.to_owned(),
                },
                Some(build::auth_sasl(&["SCRAM-SHA-256"])),
            ),
        })
    }

    /// Feeds the body of the client's password message ('p').
    pub fn step(&mut self, body: &[u8]) -> Result<AuthStep, ClientError> {
        match std::mem::replace(self, ClientAuth::Done) {
            ClientAuth::Md5 {
                user,
                expected,
                secret,
            } => {
                let got = inspect::password(body).ok_or_else(bad_message)?;
                if got == expected.as_bytes() {
                    Ok(AuthStep::Done {
                        finals: vec![],
                        secret,
                    })
                } else {
                    Err(failed(&user))
                }
            }
            ClientAuth::ScramStart { verifier, user } => {
                let (mech, data) = inspect::sasl_initial_response(body).ok_or_else(bad_message)?;
                if mech != "SCRAM-SHA-256" {
                    return Err(ClientError::fatal(
                        SqlState::PROTOCOL_VIOLATION,
                        "client selected an invalid SASL authentication mechanism",
                    ));
                }
                let (first, exchange) =
                    ServerExchange::start(data, &verifier.salt, verifier.iterations)
                        .map_err(|e| scram_refused(&user, e))?;
                *self = ClientAuth::ScramFinal {
                    exchange,
                    verifier,
                    user,
                };
                Ok(AuthStep::Continue(build::auth_sasl_continue(
                    first.as_bytes(),
                )))
            }
            ClientAuth::ScramFinal {
                exchange,
                verifier,
                user,
            } => {
                let (fin, client_key) = exchange
                    .finish(body, &verifier.stored_key, &verifier.server_key)
                    .map_err(|e| scram_refused(&user, e))?;
                let keys = ScramKeys {
                    client_key,
                    server_key: verifier.server_key,
                    salt: verifier.salt,
                    iterations: verifier.iterations,
                };
                Ok(AuthStep::Done {
                    finals: vec![build::auth_sasl_final(fin.as_bytes())],
                    secret: Some(ServerSecret::ScramKeys(keys)),
                })
            }
            ClientAuth::Done => Err(bad_message()),
        }
    }
}

/// The `cert` check: a certificate (rustls kept only one whose chain it
/// verified) whose common name is `user`. The refusal is Postgres's, 28000
/// with one message whatever the reason; the reason goes to the log.
fn check_cert(user: &str, client_cert: Option<&CertificateDer<'_>>) -> Result<(), ClientError> {
    let refused = |why: String| {
        ClientError::fatal(
            SqlState::INVALID_AUTHORIZATION,
            format!("certificate authentication failed for user \"{user}\""),
        )
        .with_detail(why)
    };
    let Some(cert) = client_cert else {
        return Err(refused("no client certificate over TLS".into()));
    };
    crate::tls::certificate_is_for(cert, user).map_err(refused)
}

/// The refusal Postgres sends for a wrong password (28P01).
pub fn failed(user: &str) -> ClientError {
    ClientError::fatal(
        SqlState::INVALID_PASSWORD,
        format!("password authentication failed for user \"{user}\""),
    )
}

/// A SCRAM exchange the client broke off: a wrong proof is a wrong
/// password; a malformed message is a protocol violation, as in Postgres.
fn scram_refused(user: &str, e: ScramError) -> ClientError {
    match e {
        ScramError::WrongProof => failed(user),
        ScramError::ChannelBinding => ClientError::fatal(
            SqlState::PROTOCOL_VIOLATION,
            "malformed SCRAM message: the client selected SCRAM-SHA-256 without channel \
             binding, but the message asks for channel binding",
        ),
        other => ClientError::fatal(SqlState::PROTOCOL_VIOLATION, other.to_string()),
    }
}

fn bad_message() -> ClientError {
    ClientError::fatal(SqlState::PROTOCOL_VIOLATION, "invalid password packet")
}

#[cfg(test)]
mod tests;
