//! Coalescing rules.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

/// When a coalesced write is acknowledged to its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    /// Group commit: the reply waits until the flush carrying the write has
    /// committed, and a failure reaches the writer.
    #[default]
    Flushed,
    /// Write-behind: the reply is sent once the write is in the map; rows
    /// that later fail to flush are counted, logged and written to the
    /// rule's `rejects_file`.
    Immediate,
}

/// One coalescing rule: which upsert calls are merged and how they are
/// flushed.
///
/// A rule targets either a function (`SELECT schema.fn($1, $2, ...)`, with
/// `arguments`, optional `defaults` and a configured bulk `flush` statement)
/// or a table (`INSERT INTO schema.table ... ON CONFLICT (key) DO UPDATE
/// ...`, flushed with a bulk statement derived from the client's own).
///
/// **Names.** `function`, `table`, `arguments`, `key`, `writes` and the keys
/// of `defaults` are SQL identifiers written without quotes: the YAML loader
/// lower-cases them (ASCII, as PostgreSQL folds unquoted identifiers), and
/// validation accepts only `[A-Za-z0-9_$]` (plus one `.` between schema
/// and name in `function`, `table` and `writes`), not starting with a digit
/// or `$`, at most 63 bytes per part. Quoted (case-sensitive or exotic)
/// identifiers are therefore not supported. A validated rule always holds
/// lower-case names.
///
/// The YAML form is `#[serde(default)]`: omitted fields take the values of
/// [`CoalesceRule::default`]; a missing `name` or `key` is reported by
/// validation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoalesceRule {
    /// The rule's name (in logs, metrics and `SHOW COALESCE`); non-empty,
    /// unique among rules.
    pub name: String,
    /// The configured database (client-facing `name`) this rule is limited
    /// to; `None` means every database.
    pub database: Option<String>,
    /// The coalesced function, optionally schema-qualified, e.g.
    /// `entity.update_metadata_optimized`. Exactly one of `function` and
    /// `table` is set.
    #[serde(deserialize_with = "deserialize_opt_ident")]
    pub function: Option<String>,
    /// The coalesced table of `INSERT ... ON CONFLICT (key) DO UPDATE ...`
    /// statements, optionally schema-qualified, e.g. `entity.entity_metadata`.
    #[serde(deserialize_with = "deserialize_opt_ident")]
    pub table: Option<String>,
    /// Function rules: the function's parameter names, in order (required,
    /// non-empty, unique). Table rules: must be empty.
    #[serde(deserialize_with = "deserialize_idents")]
    pub arguments: Vec<String>,
    /// Function rules: the values (text form; YAML `null` = SQL NULL) used
    /// for trailing arguments a call omits, keyed by argument name. The
    /// defaulted arguments must be a suffix of `arguments`. Table rules:
    /// must be empty.
    #[serde(deserialize_with = "deserialize_defaults")]
    pub defaults: BTreeMap<String, Option<String>>,
    /// The coalescing key: for function rules, argument names (a subset of
    /// `arguments`); for table rules, the `ON CONFLICT` target columns.
    /// Non-empty, unique.
    #[serde(deserialize_with = "deserialize_idents")]
    pub key: Vec<String>,
    /// Tables this rule's writes land in besides `table`, optionally
    /// schema-qualified: for a function rule, the tables the function
    /// writes (the proxy cannot see inside it), e.g.
    /// `[entity.entity_metadata]`. A statement that references one of them
    /// (a read, a DELETE, DDL) first flushes the rule's pending writes, so
    /// readers see acknowledged writes. Default empty; unique.
    #[serde(deserialize_with = "deserialize_idents")]
    pub writes: Vec<String>,
    /// Function rules (required): the bulk statement, taking one `text[]`
    /// parameter per argument in `arguments` order (`$1` = `arguments[0]`,
    /// ...), each holding one element per coalesced row, e.g.
    /// `SELECT entity.update_metadata_batch($1::text[], $2::text[],
    /// $3::text[]::jsonb[], $4::text[])`. Must use exactly `$1`..`$N` for N
    /// = `arguments.len()`, and may use `$N+1`: it then also receives each
    /// row's arrival stamp (see [`CoalesceRule::version_column`]) for the
    /// function's own last-write-wins guard. Table rules: must be `None`
    /// (the flush statement is derived from the client's statement).
    pub flush: Option<String>,
    /// Table rules: a `bigint` column the proxy fills with each write's
    /// arrival stamp (microseconds since the Unix epoch, strictly
    /// increasing within a proxy), and which guards the flush: a stored row
    /// is only overwritten by a write stamped no earlier than it, so that
    /// last-write-wins holds across several proxies writing the same rows.
    /// The client's statements must not write the column themselves (such
    /// statements pass through). Default none: no guard. Function rules get
    /// the stamps as their flush statement's `$N+1` instead.
    #[serde(deserialize_with = "deserialize_opt_ident")]
    pub version_column: Option<String>,
    /// When writes are acknowledged. Default `flushed`.
    pub ack: AckMode,
    /// `immediate` rules: how long writes gather before a flush (unless
    /// `max_batch` fill first). Default 2 ms; must be > 0. `flushed` rules
    /// do not wait: their writers are waiting already, so an idle flusher
    /// starts at once and writes gather while a flush is in flight (group
    /// commit).
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub flush_interval: Duration,
    /// Most rows per flush statement. Default 5000; >= 1.
    pub max_batch: usize,
    /// Most distinct pending keys for this rule before new writes wait.
    /// Default 100 000; >= `max_batch`.
    pub max_pending: usize,
    /// How long a write waits for room in a full map before it fails.
    /// Default 5 s; 0 fails at once.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub pending_wait_timeout: Duration,
    /// `immediate` rules only: rows that fail to flush are appended here as
    /// JSON lines. `None`: they are only counted and logged.
    pub rejects_file: Option<PathBuf>,
}

impl Default for CoalesceRule {
    /// An empty rule (no name, target or key: not valid by itself) with the
    /// default tuning.
    fn default() -> Self {
        CoalesceRule {
            name: String::new(),
            database: None,
            function: None,
            table: None,
            arguments: Vec::new(),
            defaults: BTreeMap::new(),
            key: Vec::new(),
            writes: Vec::new(),
            flush: None,
            version_column: None,
            ack: AckMode::default(),
            flush_interval: Duration::from_millis(2),
            max_batch: 5000,
            max_pending: 100_000,
            pending_wait_timeout: Duration::from_secs(5),
            rejects_file: None,
        }
    }
}

impl CoalesceRule {
    /// Whether the rule applies to the configured database `database`: it
    /// names no database, or this one.
    pub fn applies_to(&self, database: &str) -> bool {
        self.database.as_deref().is_none_or(|db| db == database)
    }

    /// The function or table the rule targets (`function` wins if, invalidly,
    /// both are set; empty if neither is).
    pub fn target(&self) -> &str {
        self.function
            .as_deref()
            .or(self.table.as_deref())
            .unwrap_or("")
    }

    /// Whether this is a function rule (as opposed to a table rule).
    pub fn is_function(&self) -> bool {
        self.function.is_some()
    }

    /// Whether the flush receives each row's arrival stamp: a table rule
    /// with a `version_column`, or a function rule whose flush statement
    /// uses the parameter after the arguments' (`$N+1`).
    pub fn takes_stamps(&self) -> bool {
        match &self.flush {
            Some(flush) if self.is_function() => {
                crate::validate::placeholders(flush).contains(&(self.arguments.len() + 1))
            }
            _ => self.version_column.is_some(),
        }
    }

    /// The position of argument `name` in `arguments`.
    pub fn argument_index(&self, name: &str) -> Option<usize> {
        self.arguments.iter().position(|arg| arg == name)
    }
}

/// Lower-cases an unquoted SQL identifier as PostgreSQL folds it (ASCII only).
fn fold_ident(name: String) -> String {
    name.to_ascii_lowercase()
}

/// `deserialize_with` for an optional identifier: lower-cased.
fn deserialize_opt_ident<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.map(fold_ident))
}

/// `deserialize_with` for a list of identifiers: each lower-cased.
fn deserialize_idents<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(Vec::<String>::deserialize(deserializer)?
        .into_iter()
        .map(fold_ident)
        .collect())
}

/// `deserialize_with` for `defaults`: argument names lower-cased; two names
/// that fold to the same one are an error.
fn deserialize_defaults<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, Option<String>>, D::Error> {
    let raw = BTreeMap::<String, Option<String>>::deserialize(deserializer)?;
    let mut folded = BTreeMap::new();
    for (name, value) in raw {
        let name = fold_ident(name);
        if folded.contains_key(&name) {
            return Err(D::Error::custom(format!(
                "duplicate default for argument {name:?} (names are case-insensitive)"
            )));
        }
        folded.insert(name, value);
    }
    Ok(folded)
}
