//! Client authentication against the users in the config: trust, md5 and
//! SCRAM-SHA-256 (from a plain password or a stored SCRAM verifier). The
//! exchange itself is pure: [`ClientAuth`] turns each client message into the
//! next reply, so the session only moves frames.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use config::{AuthMethod, User};
use md5::{Digest, Md5};
use pgwire::api::auth::sasl::scram::ScramServerAuthWaitingForClientFinal;
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramSecret, ScramServerAuth};
use wire::build;
use wire::inspect;
use wire::{Frame, SqlState};

use crate::error::ClientError;

/// Iterations used when the proxy derives a verifier from a plain password.
const SCRAM_ITERATIONS: usize = 4096;

/// `md5` + hex(md5(hex(md5(password + user)) + salt)), as libpq computes it.
pub fn md5_password(user: &str, password: &str, salt: [u8; 4]) -> String {
    let inner = hex(&Md5::digest(
        [password.as_bytes(), user.as_bytes()].concat(),
    ));
    let outer = hex(&Md5::digest([inner.as_bytes(), &salt[..]].concat()));
    format!("md5{outer}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A user's SCRAM secret, derived once when the config is loaded.
#[derive(Clone)]
pub struct ScramVerifier {
    salt: Vec<u8>,
    iterations: usize,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl ScramVerifier {
    /// Derives a verifier from a plain password with a fresh random salt.
    pub fn from_password(password: &str) -> ScramVerifier {
        let salt: [u8; 16] = rand::random();
        let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
        Self::from_secret(ScramSecret::verifier_from_salted_password(
            salt.to_vec(),
            salted,
            SCRAM_ITERATIONS,
        ))
    }

    /// Parses Postgres's `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.
    pub fn parse(text: &str) -> Option<ScramVerifier> {
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (iter_salt, keys) = rest.split_once('$')?;
        let (iter, salt) = iter_salt.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        Some(ScramVerifier {
            salt: STANDARD.decode(salt).ok()?,
            iterations: iter.parse().ok()?,
            stored_key: STANDARD.decode(stored).ok()?,
            server_key: STANDARD.decode(server).ok()?,
        })
    }

    fn from_secret(secret: ScramSecret) -> ScramVerifier {
        match secret {
            ScramSecret::Verifier {
                salt,
                iterations,
                stored_key,
                server_key,
            } => ScramVerifier {
                salt,
                iterations,
                stored_key,
                server_key,
            },
            // verifier_from_salted_password always returns a Verifier.
            ScramSecret::SaltedPassword { salt, .. } => ScramVerifier {
                salt,
                iterations: SCRAM_ITERATIONS,
                stored_key: Vec::new(),
                server_key: Vec::new(),
            },
        }
    }

    fn secret(&self) -> ScramSecret {
        ScramSecret::Verifier {
            salt: self.salt.clone(),
            iterations: self.iterations,
            stored_key: self.stored_key.clone(),
            server_key: self.server_key.clone(),
        }
    }
}

/// What a configured user needs for client authentication, prepared once.
#[derive(Clone)]
pub enum Credential {
    Trust,
    Md5 { password: String },
    Scram(ScramVerifier),
}

impl Credential {
    /// Prepares the credential of a configured user (SCRAM key derivation
    /// happens here, not per login).
    pub fn for_user(user: &User) -> Result<Credential, String> {
        match user.auth {
            AuthMethod::Trust => Ok(Credential::Trust),
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
}

/// One client's authentication exchange.
pub enum ClientAuth {
    Md5 {
        user: String,
        password: String,
        salt: [u8; 4],
    },
    ScramStart {
        verifier: ScramVerifier,
        user: String,
    },
    ScramFinal {
        state: Box<ScramServerAuthWaitingForClientFinal>,
        user: String,
    },
    Done,
}

/// The next step of an exchange.
pub enum AuthStep {
    /// Send this and wait for the client's next password message.
    Continue(Frame),
    /// Authenticated; send these frames (SASLFinal) before AuthenticationOk.
    Done(Vec<Frame>),
}

impl ClientAuth {
    /// Starts authentication of `user`; returns the first request to send,
    /// or `None` if the user is trusted.
    pub fn start(user: &str, cred: &Credential) -> (ClientAuth, Option<Frame>) {
        match cred {
            Credential::Trust => (ClientAuth::Done, None),
            Credential::Md5 { password } => {
                let salt: [u8; 4] = rand::random();
                (
                    ClientAuth::Md5 {
                        user: user.to_owned(),
                        password: password.clone(),
                        salt,
                    },
                    Some(build::auth_md5(salt)),
                )
            }
            Credential::Scram(v) => (
                ClientAuth::ScramStart {
                    verifier: v.clone(),
                    user: user.to_owned(),
                },
                Some(build::auth_sasl(&["SCRAM-SHA-256"])),
            ),
        }
    }

    /// Feeds the body of the client's password message ('p').
    pub fn step(&mut self, body: &[u8]) -> Result<AuthStep, ClientError> {
        match std::mem::replace(self, ClientAuth::Done) {
            ClientAuth::Md5 {
                user,
                password,
                salt,
            } => {
                let got = inspect::password(body).ok_or_else(bad_message)?;
                if got == md5_password(&user, &password, salt).as_bytes() {
                    Ok(AuthStep::Done(vec![]))
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
                let (first, state) = ScramServerAuth::new()
                    .on_client_first_message_with_secret(data, verifier.secret())
                    .map_err(|e| failed(&user).with_detail(e))?;
                *self = ClientAuth::ScramFinal {
                    state: Box::new(state),
                    user,
                };
                Ok(AuthStep::Continue(build::auth_sasl_continue(
                    first.as_bytes(),
                )))
            }
            ClientAuth::ScramFinal { state, user } => {
                let fin = state
                    .on_client_final_message(body)
                    .map_err(|e| failed(&user).with_detail(e))?;
                Ok(AuthStep::Done(vec![build::auth_sasl_final(fin.as_bytes())]))
            }
            ClientAuth::Done => Err(bad_message()),
        }
    }
}

fn failed(user: &str) -> ClientError {
    ClientError::fatal(
        SqlState::INVALID_PASSWORD,
        format!("password authentication failed for user \"{user}\""),
    )
}

fn bad_message() -> ClientError {
    ClientError::fatal(SqlState::PROTOCOL_VIOLATION, "invalid password packet")
}
