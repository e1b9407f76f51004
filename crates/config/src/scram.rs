//! The shape of a Postgres SCRAM-SHA-256 secret, as stored in `pg_authid`
//! and accepted in a user's `scram_verifier`:
//!
//! ```text
//! SCRAM-SHA-256$<iterations>:<salt base64>$<StoredKey base64>:<ServerKey base64>
//! ```
//!
//! This module only checks the shape (prefix, iteration count, three
//! non-empty base64 parts) and splits it; decoding the base64 and running
//! the SCRAM exchange is the authentication code's job.

use std::fmt;

const PREFIX: &str = "SCRAM-SHA-256$";

/// A SCRAM-SHA-256 secret split into its parts. The parts stay base64 text.
/// `Debug` redacts the keys, which let anyone impersonate the server.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecret {
    /// PBKDF2 iteration count, >= 1.
    pub iterations: u32,
    /// Salt, base64.
    pub salt: String,
    /// StoredKey, base64.
    pub stored_key: String,
    /// ServerKey, base64.
    pub server_key: String,
}

impl ScramSecret {
    /// Splits and shape-checks a secret. The error is a reason that never
    /// quotes the secret.
    pub fn parse(text: &str) -> Result<ScramSecret, String> {
        let shape = "expected \"SCRAM-SHA-256$<iterations>:<salt>$<storedkey>:<serverkey>\"";
        let rest = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| format!("must start with \"{PREFIX}\"; {shape}"))?;
        let (params, keys) = rest.split_once('$').ok_or_else(|| shape.to_string())?;
        let (iterations, salt) = params.split_once(':').ok_or_else(|| shape.to_string())?;
        let (stored_key, server_key) = keys.split_once(':').ok_or_else(|| shape.to_string())?;
        let iterations: u32 = iterations
            .parse()
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| "iteration count must be a positive integer".to_string())?;
        for (part, what) in [
            (salt, "salt"),
            (stored_key, "stored key"),
            (server_key, "server key"),
        ] {
            check_base64(part).map_err(|why| format!("{what} {why}"))?;
        }
        Ok(ScramSecret {
            iterations,
            salt: salt.to_string(),
            stored_key: stored_key.to_string(),
            server_key: server_key.to_string(),
        })
    }
}

impl fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramSecret")
            .field("iterations", &self.iterations)
            .field("salt", &self.salt)
            .field("stored_key", &"<redacted>")
            .field("server_key", &"<redacted>")
            .finish()
    }
}

/// Checks that `part` is non-empty standard base64: alphabet `A-Za-z0-9+/`,
/// at most two `=` only at the end.
fn check_base64(part: &str) -> Result<(), &'static str> {
    let body = part.trim_end_matches('=');
    if body.is_empty() {
        return Err("must not be empty");
    }
    if part.len() - body.len() > 2 {
        return Err("has too much '=' padding");
    }
    if !body
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    {
        return Err("is not base64");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // A made-up secret of valid shape (the keys are not real).
    const GOOD: &str = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0$\
        K1lW1rE9zlP7Ym2ZQ3bH7o6b1l8kY7bAOZbXJtCq9sM=:\
        u5m5b8Y1CqgLq5bd4t+6Yc6nB0cN0m2hS0gZy0yC/8A=";

    #[test]
    fn splits_a_good_secret() {
        let secret = ScramSecret::parse(GOOD).expect("valid shape");
        assert_eq!(secret.iterations, 4096);
        assert_eq!(secret.salt, "c2FsdHNhbHRzYWx0");
        assert!(secret.server_key.ends_with("/8A="));
        assert!(!format!("{secret:?}").contains("K1lW"));
    }

    #[test]
    fn rejects_bad_shapes() {
        for bad in [
            "",
            "md5abcdef",
            "SCRAM-SHA-256$4096:salt",
            "SCRAM-SHA-256$x:c2FsdA==$a:b",
            "SCRAM-SHA-256$0:c2FsdA==$a:b",
            "SCRAM-SHA-256$4096:$a:b",
            "SCRAM-SHA-256$4096:c2FsdA==$:b",
            "SCRAM-SHA-256$4096:c2FsdA==$a:",
            "SCRAM-SHA-256$4096:c2F*dA==$a:b",
            "SCRAM-SHA-256$4096:c2FsdA===$a:b",
        ] {
            assert!(
                ScramSecret::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
