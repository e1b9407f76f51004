//! SCRAM-SHA-256 ([RFC 5802], [RFC 7677]) as Postgres speaks it, without
//! channel binding, on both legs of the proxy:
//!
//! - [`ServerExchange`]: the server side, run for clients. Besides checking
//!   the client's proof it recovers the ClientKey the proof was made with
//!   (ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage)).
//! - [`ClientExchange`]: the client side, run to log in to Postgres, from a
//!   password or from such a recovered ClientKey ([`ScramKeys`]): a user
//!   known only by a verifier can still be logged in upstream.
//!
//! Pure: messages in, messages out; the callers move the frames.
//!
//! [RFC 5802]: https://www.rfc-editor.org/rfc/rfc5802
//! [RFC 7677]: https://www.rfc-editor.org/rfc/rfc7677

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::{digest, hmac};

/// Length of a SHA-256 output: ClientKey, StoredKey, ServerKey, proofs and
/// signatures.
pub const KEY_LEN: usize = 32;

/// A SHA-256-sized key or signature.
pub type Key = [u8; KEY_LEN];

/// What goes wrong in an exchange. The text is for the log; callers choose
/// what the client sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A message does not follow the grammar; says where.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asked for channel binding (`p=` flag), which the proxy
    /// never offers (no SCRAM-SHA-256-PLUS).
    #[error("the client asked for channel binding, which was not offered")]
    ChannelBinding,
    /// The client's proof does not match the stored key: wrong password.
    #[error("the client's proof does not match")]
    WrongProof,
    /// The server's salt or iteration count is not the one the keys were
    /// derived with (the password was changed in between).
    #[error(
        "the server's SCRAM salt or iteration count differs from the verifier's \
         (was the password changed?)"
    )]
    OtherSalt,
    /// The server's signature does not match: it does not hold this
    /// user's verifier.
    #[error("the server's SCRAM signature does not match")]
    ServerSignature,
    /// The server ended the exchange with `e=<reason>`.
    #[error("the server reported SCRAM error {0:?}")]
    Server(String),
}

/// What a SCRAM login to Postgres needs in place of a password: ClientKey
/// for the proof, ServerKey to check the server, and the salt and
/// iteration count both were derived with (the server's must be the same).
/// `Debug` redacts the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    pub client_key: Key,
    pub server_key: Vec<u8>,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

impl fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramKeys")
            .field("client_key", &"<redacted>")
            .field("server_key", &"<redacted>")
            .field("iterations", &self.iterations)
            .finish()
    }
}

/// ClientKey and ServerKey from a salted password (RFC 5802 section 3).
pub fn keys_from_salted_password(salted: &[u8]) -> (Key, Key) {
    (
        hmac_sha256(salted, b"Client Key"),
        hmac_sha256(salted, b"Server Key"),
    )
}

/// StoredKey = H(ClientKey).
pub fn stored_key(client_key: &[u8]) -> Key {
    sha256(client_key)
}

/// The server side after the client-first message: what the client-final
/// message is checked against.
pub struct ServerExchange {
    /// `client-first-message-bare "," server-first-message ","`: the
    /// AuthMessage up to the client-final message.
    auth_prefix: String,
    /// `c=` the client must send: base64 of the GS2 header it sent.
    channel_binding: String,
    /// The client's nonce followed by the proxy's.
    nonce: String,
}

impl ServerExchange {
    /// Reads the client-first message and returns the server-first message
    /// (a fresh nonce, `salt`, `iterations`) with the state to finish with.
    /// As in Postgres, the user name in the message is ignored (the startup
    /// packet's counts), `n,,` and `y,,` are accepted, and an authorization
    /// identity is refused.
    pub fn start(
        client_first: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Result<(String, ServerExchange), ScramError> {
        Self::start_with_nonce(client_first, salt, iterations, &random_nonce())
    }

    fn start_with_nonce(
        client_first: &[u8],
        salt: &[u8],
        iterations: u32,
        server_nonce: &str,
    ) -> Result<(String, ServerExchange), ScramError> {
        let text = std::str::from_utf8(client_first)
            .map_err(|_| ScramError::Malformed("client-first message is not UTF-8"))?;
        // gs2-header = gs2-cbind-flag "," [ authzid ] ","
        let (flag, rest) = text
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("unknown channel binding flag")),
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        if !authzid.is_empty() {
            return Err(ScramError::Malformed(
                "authorization identities are not supported",
            ));
        }
        let gs2_header = &text[..text.len() - bare.len()];
        // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
        let mut attrs = bare.split(',');
        let user = attrs.next().unwrap_or_default();
        if user.starts_with("m=") {
            return Err(ScramError::Malformed(
                "mandatory extensions are not supported",
            ));
        }
        if !user.starts_with("n=") {
            return Err(ScramError::Malformed("no user name attribute"));
        }
        let client_nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .filter(|n| is_printable(n))
            .ok_or(ScramError::Malformed("no valid nonce"))?;
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!("r={nonce},s={},i={iterations}", STANDARD.encode(salt));
        let exchange = ServerExchange {
            auth_prefix: format!("{bare},{server_first},"),
            channel_binding: STANDARD.encode(gs2_header),
            nonce,
        };
        Ok((server_first, exchange))
    }

    /// Checks the client-final message against `stored_key`; returns the
    /// server-final message and the client's ClientKey.
    pub fn finish(
        self,
        client_final: &[u8],
        stored_key: &[u8],
        server_key: &[u8],
    ) -> Result<(String, Key), ScramError> {
        let text = std::str::from_utf8(client_final)
            .map_err(|_| ScramError::Malformed("client-final message is not UTF-8"))?;
        // client-final-message = channel-binding "," nonce ["," extensions] "," proof
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs.next().and_then(|a| a.strip_prefix("c="));
        if binding != Some(self.channel_binding.as_str()) {
            return Err(ScramError::Malformed("unexpected channel binding data"));
        }
        let nonce = attrs.next().and_then(|a| a.strip_prefix("r="));
        if nonce != Some(self.nonce.as_str()) {
            return Err(ScramError::Malformed("nonce does not match"));
        }
        let proof: Key = STANDARD
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(ScramError::Malformed("invalid proof"))?;
        if stored_key.len() != KEY_LEN {
            // A verifier of another hash cannot match any proof.
            return Err(ScramError::WrongProof);
        }
        let auth_message = format!("{}{without_proof}", self.auth_prefix);
        let client_key = xor(&proof, &hmac_sha256(stored_key, auth_message.as_bytes()));
        if !constant_time_eq(&sha256(&client_key), stored_key) {
            return Err(ScramError::WrongProof);
        }
        let signature = hmac_sha256(server_key, auth_message.as_bytes());
        Ok((format!("v={}", STANDARD.encode(signature)), client_key))
    }
}

/// Where the client side gets its keys once the server has named its salt
/// and iteration count.
pub enum ClientSecret<'a> {
    /// A password: keys derived with the server's salt and count.
    Password(&'a str),
    /// Keys recovered from a client's login: the server's salt and count
    /// must be theirs.
    Keys(&'a ScramKeys),
}

impl ClientSecret<'_> {
    /// (ClientKey, ServerKey) for the server's `salt` and `iterations`.
    fn keys(&self, salt: &[u8], iterations: u32) -> Result<(Key, Vec<u8>), ScramError> {
        match self {
            ClientSecret::Password(password) => {
                let salted = pgwire::api::auth::sasl::scram::gen_salted_password(
                    password,
                    salt,
                    iterations as usize,
                );
                let (client_key, server_key) = keys_from_salted_password(&salted);
                Ok((client_key, server_key.to_vec()))
            }
            ClientSecret::Keys(keys) => {
                if keys.salt != salt || keys.iterations != iterations {
                    return Err(ScramError::OtherSalt);
                }
                Ok((keys.client_key, keys.server_key.clone()))
            }
        }
    }
}

/// The client side after the client-first message.
pub struct ClientExchange {
    client_first_bare: String,
    client_nonce: String,
}

/// The client side after the client-final message: the server signature
/// it must send.
pub struct ClientFinished {
    expected: Key,
}

impl ClientExchange {
    /// Returns the client-first message (`n,,n=,r=<nonce>`: the user name
    /// is the startup packet's, as libpq does) and the state for the
    /// server-first message.
    pub fn start() -> (String, ClientExchange) {
        Self::start_with_nonce(&random_nonce())
    }

    fn start_with_nonce(nonce: &str) -> (String, ClientExchange) {
        let bare = format!("n=,r={nonce}");
        let first = format!("n,,{bare}");
        let exchange = ClientExchange {
            client_first_bare: bare,
            client_nonce: nonce.to_owned(),
        };
        (first, exchange)
    }

    /// Reads the server-first message and returns the client-final message.
    pub fn finish(
        self,
        server_first: &[u8],
        secret: &ClientSecret<'_>,
    ) -> Result<(String, ClientFinished), ScramError> {
        let text = std::str::from_utf8(server_first)
            .map_err(|_| ScramError::Malformed("server-first message is not UTF-8"))?;
        let mut attrs = text.split(',');
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .filter(|n| n.len() > self.client_nonce.len() && n.starts_with(&self.client_nonce))
            .ok_or(ScramError::Malformed(
                "the server's nonce does not extend ours",
            ))?;
        let salt = attrs
            .next()
            .and_then(|a| a.strip_prefix("s="))
            .and_then(|s| STANDARD.decode(s).ok())
            .ok_or(ScramError::Malformed("no valid salt"))?;
        let iterations: u32 = attrs
            .next()
            .and_then(|a| a.strip_prefix("i="))
            .and_then(|i| i.parse().ok())
            .filter(|&i| i > 0)
            .ok_or(ScramError::Malformed("no valid iteration count"))?;
        let (client_key, server_key) = secret.keys(&salt, iterations)?;
        // c=biws: base64 of the "n,," header sent.
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let signature = hmac_sha256(&stored_key(&client_key), auth_message.as_bytes());
        let proof = xor(&client_key, &signature);
        let expected = hmac_sha256(&server_key, auth_message.as_bytes());
        Ok((
            format!("{without_proof},p={}", STANDARD.encode(proof)),
            ClientFinished { expected },
        ))
    }
}

impl ClientFinished {
    /// Checks the server-final message: the server proved it holds the
    /// verifier.
    pub fn verify(self, server_final: &[u8]) -> Result<(), ScramError> {
        let text = std::str::from_utf8(server_final)
            .map_err(|_| ScramError::Malformed("server-final message is not UTF-8"))?;
        if let Some(reason) = text.strip_prefix("e=") {
            return Err(ScramError::Server(reason.to_owned()));
        }
        let signature = text
            .split(',')
            .next()
            .and_then(|a| a.strip_prefix("v="))
            .and_then(|v| STANDARD.decode(v).ok())
            .ok_or(ScramError::Malformed("no valid server signature"))?;
        if constant_time_eq(&signature, &self.expected) {
            Ok(())
        } else {
            Err(ScramError::ServerSignature)
        }
    }
}

/// 18 random bytes in base64, as Postgres makes its nonces.
fn random_nonce() -> String {
    STANDARD.encode(rand::random::<[u8; 18]>())
}

/// RFC 5802's `printable`: %x21-2B / %x2D-7E (visible ASCII but ',').
fn is_printable(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

fn sha256(data: &[u8]) -> Key {
    let mut out = [0u8; KEY_LEN];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Key {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut out = [0u8; KEY_LEN];
    out.copy_from_slice(hmac::sign(&key, data).as_ref());
    out
}

fn xor(a: &Key, b: &Key) -> Key {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
