//! The proxy's answers to a server's authentication requests, from the
//! [`ServerSecret`] it holds for the user: a configured password, or what a
//! client's own login proved when the proxy has no password (an `auth_query`
//! user's md5 hash, or the SCRAM keys recovered from the client's proof).

use std::fmt;

use md5::{Digest, Md5};
use wire::build;
use wire::inspect::AuthRequest;
use wire::{Frame, SqlState};

use crate::error::ClientError;
use crate::scram::{ClientExchange, ClientFinished, ClientSecret, ScramError, ScramKeys};

/// What the proxy logs in to Postgres with. `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub enum ServerSecret {
    /// Nothing: the server must not ask (trust).
    None,
    /// A configured password: answers cleartext, md5 and SCRAM.
    Password(String),
    /// Postgres's stored md5 hash without its `md5` prefix (hex of
    /// md5(password + user)), from a client's md5 login: answers md5 only.
    Md5Hash(String),
    /// Keys recovered from a client's SCRAM login: answer SCRAM only, and
    /// only a server whose verifier has their salt and iteration count.
    ScramKeys(ScramKeys),
}

impl ServerSecret {
    /// `Password` when there is one, else `None`.
    pub fn from_password(password: Option<&str>) -> ServerSecret {
        password.map_or(ServerSecret::None, |p| ServerSecret::Password(p.to_owned()))
    }

    fn kind(&self) -> &'static str {
        match self {
            ServerSecret::None => "none",
            ServerSecret::Password(_) => "password",
            ServerSecret::Md5Hash(_) => "md5 hash",
            ServerSecret::ScramKeys(_) => "SCRAM keys",
        }
    }
}

impl fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerSecret::None => f.write_str("None"),
            other => write!(f, "{}(<redacted>)", other.kind()),
        }
    }
}

/// `md5` + hex(md5(hash + salt)): the answer to an md5 challenge from the
/// inner hash (hex of md5(password + user)), as libpq computes it.
pub fn md5_salted(hash: &str, salt: [u8; 4]) -> String {
    let outer = hex(&Md5::digest([hash.as_bytes(), &salt[..]].concat()));
    format!("md5{outer}")
}

/// `md5` + hex(md5(hex(md5(password + user)) + salt)), as libpq computes it.
pub fn md5_password(user: &str, password: &str, salt: [u8; 4]) -> String {
    md5_salted(&md5_hash(user, password), salt)
}

/// hex(md5(password + user)): what Postgres stores after `md5`.
pub fn md5_hash(user: &str, password: &str) -> String {
    hex(&Md5::digest(
        [password.as_bytes(), user.as_bytes()].concat(),
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One login's side of the exchange, as the server's requests arrive.
#[derive(Default)]
pub struct ServerAuth {
    scram: Scram,
}

/// Where a SCRAM exchange with the server stands.
#[derive(Default)]
enum Scram {
    #[default]
    NotStarted,
    SentFirst(ClientExchange),
    SentFinal(ClientFinished),
}

impl ServerAuth {
    /// The reply to the server's request `req` for `user`, or `None` when
    /// none is due (AuthenticationOk, SASLFinal).
    pub fn answer(
        &mut self,
        user: &str,
        secret: &ServerSecret,
        req: AuthRequest<'_>,
    ) -> Result<Option<Frame>, ClientError> {
        let reply = match req {
            AuthRequest::Ok => None,
            AuthRequest::CleartextPassword => match secret {
                ServerSecret::Password(p) => Some(build::password_message(p.as_bytes())),
                other => return Err(cannot_answer("a cleartext password", other)),
            },
            AuthRequest::Md5Password { salt } => {
                let answer = match secret {
                    ServerSecret::Password(p) => md5_password(user, p, salt),
                    ServerSecret::Md5Hash(hash) => md5_salted(hash, salt),
                    other => return Err(cannot_answer("md5", other)),
                };
                Some(build::password_message(answer.as_bytes()))
            }
            AuthRequest::Sasl(mechs) => {
                if !mechs.contains(&"SCRAM-SHA-256") {
                    return Err(unsupported_auth());
                }
                client_secret(secret)?;
                let (first, next) = ClientExchange::start();
                self.scram = Scram::SentFirst(next);
                Some(build::sasl_initial_response(
                    "SCRAM-SHA-256",
                    first.as_bytes(),
                ))
            }
            AuthRequest::SaslContinue(data) => {
                let Scram::SentFirst(exchange) = std::mem::take(&mut self.scram) else {
                    return Err(malformed("SASL order"));
                };
                let (fin, next) = exchange
                    .finish(data, &client_secret(secret)?)
                    .map_err(scram_failed)?;
                self.scram = Scram::SentFinal(next);
                Some(build::sasl_response(fin.as_bytes()))
            }
            AuthRequest::SaslFinal(data) => {
                let Scram::SentFinal(finished) = std::mem::take(&mut self.scram) else {
                    return Err(malformed("SASL order"));
                };
                finished.verify(data).map_err(scram_failed)?;
                None
            }
            AuthRequest::Other(_) => return Err(unsupported_auth()),
        };
        Ok(reply)
    }
}

/// What the SCRAM exchange takes its keys from.
fn client_secret(secret: &ServerSecret) -> Result<ClientSecret<'_>, ClientError> {
    match secret {
        ServerSecret::Password(p) => Ok(ClientSecret::Password(p)),
        ServerSecret::ScramKeys(keys) => Ok(ClientSecret::Keys(keys)),
        other => Err(cannot_answer("SCRAM-SHA-256", other)),
    }
}

/// The server asked for `method` and the proxy's secret cannot answer it.
fn cannot_answer(method: &str, secret: &ServerSecret) -> ClientError {
    let message = match secret {
        ServerSecret::None => format!(
            "the database server asked for {method} authentication and the proxy has no \
             password configured for this user"
        ),
        other => format!(
            "the database server asked for {method} authentication, which the proxy cannot \
             answer with this user's {} (from the client's own login)",
            other.kind()
        ),
    };
    ClientError::fatal(SqlState::INVALID_PASSWORD, message)
}

fn scram_failed(e: ScramError) -> ClientError {
    let message = match e {
        ScramError::OtherSalt => {
            "SCRAM authentication with the database server failed: its verifier for this user \
             has another salt or iteration count than the one the client logged in with \
             (was the password just changed?)"
        }
        _ => "SCRAM authentication with the database server failed",
    };
    ClientError::fatal(SqlState::INVALID_PASSWORD, message).with_detail(e)
}

fn unsupported_auth() -> ClientError {
    ClientError::fatal(
        SqlState::FEATURE_NOT_SUPPORTED,
        "the database server asked for an authentication method the proxy does not support",
    )
}

fn malformed(what: &str) -> ClientError {
    ClientError::fatal(
        SqlState::PROTOCOL_VIOLATION,
        format!("malformed {what} from the database server"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_answers_match_libpq() {
        // psql: md5 of "secret" + "app" is the stored hash; the answer to
        // a challenge is the same from the password and from the hash.
        let hash = md5_hash("app", "secret");
        assert_eq!(hash.len(), 32);
        let salt = [1, 2, 3, 4];
        assert_eq!(md5_salted(&hash, salt), md5_password("app", "secret", salt));
        assert!(md5_salted(&hash, salt).starts_with("md5"));
    }

    #[test]
    fn a_secret_answers_only_what_it_can() {
        let mut auth = ServerAuth::default();
        let hash = ServerSecret::Md5Hash(md5_hash("app", "secret"));
        let salt = [9, 9, 9, 9];
        let reply = auth
            .answer("app", &hash, AuthRequest::Md5Password { salt })
            .unwrap()
            .unwrap();
        let expected = build::password_message(md5_password("app", "secret", salt).as_bytes());
        assert_eq!(reply.raw(), expected.raw());
        for req in [
            AuthRequest::CleartextPassword,
            AuthRequest::Sasl(vec!["SCRAM-SHA-256"]),
        ] {
            let err = auth.answer("app", &hash, req).unwrap_err();
            assert_eq!(err.code, SqlState::INVALID_PASSWORD);
            assert!(err.message.contains("md5 hash"), "{}", err.message);
        }
        let err = auth
            .answer(
                "app",
                &ServerSecret::None,
                AuthRequest::Md5Password { salt },
            )
            .unwrap_err();
        assert!(err.message.contains("no password"), "{}", err.message);
        assert!(!format!("{hash:?}").contains(&md5_hash("app", "secret")));
    }
}
