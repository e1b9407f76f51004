//! pgcoalesce's configuration: the serde model, its validation, and loading.
//!
//! The crate owns everything between "a YAML file or an upstream URL" and "a
//! [`Config`] value the rest of the proxy may trust". It holds no globals:
//! callers get a `Config` by value and pass it (or an `Arc` of it) around.
//!
//! - [`model`]: the data types ([`Config`], [`PoolSettings`], [`User`],
//!   [`Database`], [`Replica`], [`ReadSplit`], [`CoalesceRule`], [`Tls`]
//!   and the enums, [`ServerTlsMode`] among them) with their defaults and
//!   lookup helpers.
//! - [`duration`]: the `"500ms"` / `"5s"` / `"10m"` / `"1h"` duration syntax.
//! - `validate`: [`Config::validate`], the semantic checks serde cannot do.
//! - [`scram`]: the shape of a Postgres SCRAM-SHA-256 secret.
//! - `upstream`: [`Config::from_upstream_url`],
//!   [`Config::apply_upstream_url`] and [`Config::apply_replica_urls`], the
//!   `postgres://` quick form.
//!
//! Entry points: [`load`] for a file, [`Config::from_yaml`] for text, and
//! [`Config::from_upstream_url`] for the no-file quick form. All of them
//! validate before returning, so an `Ok` config is always usable.

pub mod duration;
pub mod model;
pub mod scram;
mod upstream;
mod validate;

use std::path::{Path, PathBuf};

pub use duration::parse_duration;
pub use model::{
    AckMode, AuthMethod, Balancing, ClientCertMode, CoalesceRule, Config, Database, LogFormat,
    PoolMode, PoolSettings, ReadSplit, Replica, ServerTlsMode, Tls, TlsClientMode, User,
    DEFAULT_AUTH_QUERY, DEFAULT_PORT, MAX_MESSAGE_SIZE_LIMIT, MIN_MESSAGE_SIZE_LIMIT,
};
pub use scram::ScramSecret;

/// Everything that can go wrong while producing a [`Config`].
///
/// The `Display` text is meant for the operator; causes are never dropped:
/// [`ConfigError::Io`] keeps the `io::Error` as its `source()` (print with
/// `{:#}` under anyhow to see it), and parse messages come verbatim from the
/// YAML parser, position included.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}", path.display())]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid YAML, or does not fit the model (unknown key,
    /// wrong type, bad duration...). `message` ends with "at line L, column C"
    /// whenever the parser knows the position.
    #[error("invalid config: {message}")]
    Parse {
        /// The parser's message, including the position.
        message: String,
        /// 1-based line of the offending node, when known.
        line: Option<u64>,
        /// 1-based column of the offending node, when known.
        column: Option<u64>,
    },
    /// The config parsed but violates a rule; `field` is the path of the
    /// offending value, e.g. `users[1].password`.
    #[error("invalid config: {field}: {reason}")]
    Invalid {
        /// Path of the offending field, e.g. `databases[0].name`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An upstream `postgres://` URL is malformed or incomplete. The URL
    /// itself is never echoed, since it may carry a password.
    #[error("invalid upstream URL: {reason}")]
    Url {
        /// What is wrong with the URL.
        reason: String,
    },
    /// A replica URL given to [`Config::apply_replica_urls`] is malformed,
    /// or does not say which database it replicates. Like the upstream URL,
    /// the URL itself is never echoed.
    #[error("invalid replica URL #{}: {reason}", index + 1)]
    ReplicaUrl {
        /// 0-based position of the URL in the list given.
        index: usize,
        /// What is wrong with the URL.
        reason: String,
    },
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Invalid`].
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`ConfigError::Url`].
    pub(crate) fn url(reason: impl Into<String>) -> Self {
        ConfigError::Url {
            reason: reason.into(),
        }
    }

    /// Converts a serde-saphyr error, keeping its message and position.
    fn from_yaml_error(err: serde_saphyr::Error) -> Self {
        let location = err.location().filter(|loc| loc.line() > 0);
        ConfigError::Parse {
            message: err.to_string(),
            line: location.map(|loc| loc.line()),
            column: location.map(|loc| loc.column()),
        }
    }
}

impl Config {
    /// Parses YAML text into a config and validates it.
    ///
    /// Syntax and shape problems (including unknown keys at any level) become
    /// [`ConfigError::Parse`] with the line and column; rule violations become
    /// [`ConfigError::Invalid`] naming the field path.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        // Snippets are multi-line; keep the message on one line (it still
        // carries "at line L, column C") so it reads well in logs.
        let options = serde_saphyr::options! { with_snippet: false };
        let config: Config = serde_saphyr::from_str_with_options(text, options)
            .map_err(ConfigError::from_yaml_error)?;
        config.validate()?;
        Ok(config)
    }
}

/// Reads, parses and validates the config file at `path`.
///
/// A read failure yields [`ConfigError::Io`] carrying `path` and the
/// `io::Error`; the other errors are those of [`Config::from_yaml`].
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Config::from_yaml(&text)
}
