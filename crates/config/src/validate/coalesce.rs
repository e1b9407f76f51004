//! A coalescing rule's rules: names, key columns, its flush statement.

use std::collections::HashSet;

use crate::model::{AckMode, CoalesceRule};
use crate::ConfigError;

/// Longest identifier PostgreSQL keeps (NAMEDATALEN - 1); longer ones are
/// truncated by the server and would never match.
const MAX_IDENT_LEN: usize = 63;

/// One coalescing rule on its own; `at` is `coalesce[i]`.
pub(super) fn validate_rule(at: &str, rule: &CoalesceRule) -> Result<(), ConfigError> {
    match (&rule.function, &rule.table) {
        (Some(function), None) => {
            check_ident(&format!("{at}.function"), function, true)?;
            validate_function_rule(at, rule)?;
        }
        (None, Some(table)) => {
            check_ident(&format!("{at}.table"), table, true)?;
            validate_table_rule(at, rule)?;
        }
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                format!("{at}.table"),
                "not allowed together with function (a rule has exactly one of function / table)",
            ))
        }
        (None, None) => {
            return Err(ConfigError::invalid(
                at,
                "one of function or table is required",
            ))
        }
    }
    let mut written = HashSet::new();
    for (j, table) in rule.writes.iter().enumerate() {
        let field = format!("{at}.writes[{j}]");
        check_ident(&field, table, true)?;
        if !written.insert(table.as_str()) {
            return Err(ConfigError::invalid(
                field,
                format!("duplicate name {table:?}"),
            ));
        }
    }
    if rule.flush_interval.is_zero() {
        return Err(ConfigError::invalid(
            format!("{at}.flush_interval"),
            "must be greater than zero",
        ));
    }
    if rule.max_batch == 0 {
        return Err(ConfigError::invalid(
            format!("{at}.max_batch"),
            "must be at least 1",
        ));
    }
    if rule.max_pending < rule.max_batch {
        return Err(ConfigError::invalid(
            format!("{at}.max_pending"),
            format!("must be at least max_batch ({})", rule.max_batch),
        ));
    }
    if let Some(path) = &rule.rejects_file {
        if rule.ack != AckMode::Immediate {
            return Err(ConfigError::invalid(
                format!("{at}.rejects_file"),
                format!(
                    "only used with ack: immediate (with ack: {} failures reach the writer)",
                    rule.ack
                ),
            ));
        }
        if path.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                format!("{at}.rejects_file"),
                "must not be empty",
            ));
        }
    }
    Ok(())
}

/// The function-rule fields: arguments, defaults, key and flush.
fn validate_function_rule(at: &str, rule: &CoalesceRule) -> Result<(), ConfigError> {
    check_ident_list(&format!("{at}.arguments"), &rule.arguments)?;
    if rule.version_column.is_some() {
        return Err(ConfigError::invalid(
            format!("{at}.version_column"),
            "only allowed for table rules (a function rule's flush statement takes the \
             stamps as the parameter after the arguments')",
        ));
    }
    // Defaults must cover a suffix of the arguments, as in SQL.
    let mut defaulted = false;
    for arg in &rule.arguments {
        let has_default = rule.defaults.contains_key(arg);
        if defaulted && !has_default {
            return Err(ConfigError::invalid(
                format!("{at}.defaults"),
                format!(
                    "argument {arg:?} follows a defaulted argument, so it needs a default \
                     too (only trailing arguments can be omitted)"
                ),
            ));
        }
        defaulted |= has_default;
    }
    if let Some(name) = rule
        .defaults
        .keys()
        .find(|name| rule.argument_index(name).is_none())
    {
        return Err(ConfigError::invalid(
            format!("{at}.defaults.{name}"),
            "is not one of the rule's arguments",
        ));
    }
    if let Some((name, _)) = rule
        .defaults
        .iter()
        .find(|(_, value)| value.as_deref().is_some_and(|v| v.contains('\0')))
    {
        return Err(ConfigError::invalid(
            format!("{at}.defaults.{name}"),
            "must not contain NUL bytes",
        ));
    }
    check_ident_list(&format!("{at}.key"), &rule.key)?;
    if let Some((j, name)) = rule
        .key
        .iter()
        .enumerate()
        .find(|(_, name)| rule.argument_index(name).is_none())
    {
        return Err(ConfigError::invalid(
            format!("{at}.key[{j}]"),
            format!("{name:?} is not one of the rule's arguments"),
        ));
    }
    let field = format!("{at}.flush");
    let flush = match &rule.flush {
        Some(flush) => flush,
        None => return Err(ConfigError::invalid(field, "required for function rules")),
    };
    if flush.trim().is_empty() {
        return Err(ConfigError::invalid(field, "must not be empty"));
    }
    if flush.contains('\0') {
        return Err(ConfigError::invalid(field, "must not contain NUL bytes"));
    }
    let count = rule.arguments.len();
    let used = placeholders(flush);
    if let Some(&beyond) = used.iter().find(|&&n| n == 0 || n > count + 1) {
        return Err(ConfigError::invalid(
            field,
            format!(
                "refers to ${beyond}, but parameters are $1..${count} (one text[] per argument) \
                 and ${} (the rows' arrival stamps)",
                count + 1
            ),
        ));
    }
    if let Some(missing) = (1..=count).find(|n| !used.contains(n)) {
        return Err(ConfigError::invalid(
            field,
            format!(
                "does not use ${missing} (argument {:?}); the statement takes one text[] \
                 parameter per argument, $1..${count}",
                rule.arguments[missing - 1]
            ),
        ));
    }
    Ok(())
}

/// The table-rule fields: key only; function-only fields must be unset.
fn validate_table_rule(at: &str, rule: &CoalesceRule) -> Result<(), ConfigError> {
    if !rule.arguments.is_empty() {
        return Err(ConfigError::invalid(
            format!("{at}.arguments"),
            "only allowed for function rules",
        ));
    }
    if !rule.defaults.is_empty() {
        return Err(ConfigError::invalid(
            format!("{at}.defaults"),
            "only allowed for function rules",
        ));
    }
    if rule.flush.is_some() {
        return Err(ConfigError::invalid(
            format!("{at}.flush"),
            "not allowed for table rules (the flush statement is derived from the \
             client's statement)",
        ));
    }
    check_ident_list(&format!("{at}.key"), &rule.key)?;
    if let Some(v) = &rule.version_column {
        check_ident(&format!("{at}.version_column"), v, false)?;
        if rule.key.contains(v) {
            return Err(ConfigError::invalid(
                format!("{at}.version_column"),
                "must not be a key column",
            ));
        }
    }
    Ok(())
}

/// A non-empty list of unique, unqualified identifiers; `field` is the
/// list's path.
fn check_ident_list(field: &str, names: &[String]) -> Result<(), ConfigError> {
    if names.is_empty() {
        return Err(ConfigError::invalid(field, "must not be empty"));
    }
    let mut seen = HashSet::new();
    for (j, name) in names.iter().enumerate() {
        let at = format!("{field}[{j}]");
        check_ident(&at, name, false)?;
        if !seen.insert(name.as_str()) {
            return Err(ConfigError::invalid(at, format!("duplicate name {name:?}")));
        }
    }
    Ok(())
}

/// An unquoted, lower-cased SQL identifier (see [`CoalesceRule`]): parts
/// of `[a-z0-9_$]`, not starting with a digit or `$`, at most 63 bytes;
/// `qualified` allows one `.` between schema and name.
fn check_ident(field: &str, name: &str, qualified: bool) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::invalid(field, "must not be empty"));
    }
    if let Some(bad) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '.'))
    {
        return Err(ConfigError::invalid(
            field,
            format!(
                "{name:?} contains {bad:?}; only letters, digits, '_' and '$' are allowed{} \
                 (quoted identifiers are not supported)",
                if qualified {
                    ", with one '.' after the schema"
                } else {
                    ""
                }
            ),
        ));
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(ConfigError::invalid(
            field,
            format!("{name:?} must be lower-case (the YAML loader lower-cases names)"),
        ));
    }
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > if qualified { 2 } else { 1 } {
        return Err(ConfigError::invalid(
            field,
            if qualified {
                format!("{name:?} has more than one '.' (expected name or schema.name)")
            } else {
                format!("{name:?} must not be qualified with '.'")
            },
        ));
    }
    for part in parts {
        match part.chars().next() {
            None => {
                return Err(ConfigError::invalid(
                    field,
                    format!("{name:?} has an empty part around '.'"),
                ))
            }
            Some(first) if first.is_ascii_digit() || first == '$' => {
                return Err(ConfigError::invalid(
                    field,
                    format!("{name:?}: a name must not start with a digit or '$'"),
                ))
            }
            Some(_) => {}
        }
        if part.len() > MAX_IDENT_LEN {
            return Err(ConfigError::invalid(
                field,
                format!("{name:?}: a name is limited to {MAX_IDENT_LEN} bytes"),
            ));
        }
    }
    Ok(())
}

/// The parameter numbers (`$1` -> 1) a statement refers to, in order of
/// appearance. A light scan, not a parser: `$` directly after an identifier
/// character (as in `a$1`) and text inside single-quoted literals or
/// double-quoted identifiers are skipped; a number too large for `usize`
/// is reported as `usize::MAX`.
pub(crate) fn placeholders(sql: &str) -> Vec<usize> {
    let bytes = sql.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"') => {
                // A doubled quote inside is an escaped quote: skipping to the
                // next quote and starting over handles it.
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += 1;
                }
                i += 1;
            }
            b'$' if i == 0 || !is_ident_byte(bytes[i - 1]) => {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len() && bytes[end].is_ascii_digit() {
                    end += 1;
                }
                if end > start {
                    let number = sql[start..end].parse().unwrap_or(usize::MAX);
                    found.push(number);
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    found
}

/// Bytes that continue an unquoted identifier.
fn is_ident_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'$' || byte >= 0x80
}
