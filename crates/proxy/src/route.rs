//! Read splitting: whether a statement may run on a streaming replica, and
//! which transaction control statements a client sends.
//!
//! [`route`] owns the question "can a replica answer this exactly as the
//! primary would?". It answers [`Route::ReplicaOk`] only for query strings
//! whose every statement is a read that can neither change anything nor
//! see differently on a replica; anything else, including text sqlparser
//! cannot parse, is [`Route::Primary`]. It never guesses "read": it accepts
//! only read statement kinds, and then only when the facts of the one walk
//! over sqlparser's tree (`crate::sql_facts`, shared with
//! [`crate::classify`]) show nothing it does not know: a construct that
//! walk keeps as text (other dialects' syntax, `TABLESAMPLE`, ...) sends
//! the statement to the primary. Replica lag, health and read-your-writes
//! are the caller's business.
//!
//! [`tx_control`] (the private `tx` module) recognizes BEGIN / START
//! TRANSACTION / SET TRANSACTION / COMMIT / ROLLBACK, so the caller can
//! follow `BEGIN READ ONLY` transactions.
//!
//! A read is ReplicaOk when it is a `SELECT` (or `VALUES`, `TABLE t` where
//! sqlparser parses it, a set operation of those), possibly with CTEs that
//! are reads themselves, a `SHOW`, or an `EXPLAIN [ANALYZE]` of such a
//! read, and when it has:
//! - no data-modifying CTE (INSERT/UPDATE/DELETE/MERGE inside WITH);
//! - no locking clause (`FOR UPDATE/NO KEY UPDATE/SHARE/KEY SHARE`);
//! - no `SELECT ... INTO`;
//! - only functions that [`Volatility`] reports immutable or stable,
//!   wherever they are called (select list, FROM, WHERE, subqueries,
//!   ORDER BY, LATERAL, aggregates, window functions, ...). A name written
//!   schema-qualified is looked up qualified. `COALESCE`, `NULLIF`,
//!   `GREATEST`, `LEAST`, `GROUPING`, `ROW(...)`, `ARRAY(subquery)`, `CASE`
//!   and the SQL value functions (`CURRENT_TIMESTAMP`, `CURRENT_USER`, ...)
//!   are syntax, not pg_proc functions, and are accepted as such;
//! - nothing whose answer depends on which server gives it: the
//!   server-local functions and views listed in the private `names` module
//!   (`current_setting`, `inet_server_addr`, `pg_stat_*`, `pg_locks`, ...),
//!   relations in `pg_temp`, and `SHOW ALL` / `SHOW transaction_read_only`
//!   / `SHOW in_hot_standby` (drivers ask these to tell a standby apart);
//! - no `/* pgcoalesce:primary */` hint in any comment (case-insensitive).
//!
//! Assumptions, stated because the text alone cannot prove them:
//! - Operators and casts are fine: the functions behind them are immutable
//!   or stable for the built-in types. A user-defined operator or cast
//!   backed by a volatile function is not detected.
//! - Functions called inside views, other functions, defaults or RLS
//!   policies are not seen; a relation is assumed to be readable on a
//!   replica (unlogged and temporary tables are not: their reads fail there).
//! - Session state the caller tracks elsewhere (pinned sessions, `SET`
//!   parameters that are not replayed) is the caller's to weigh.
//! - `EXPLAIN` follows the statement it explains: `EXPLAIN [ANALYZE] <read>`
//!   is ReplicaOk, `EXPLAIN <write>` is Primary even without ANALYZE (it
//!   would not execute, but nothing is gained by sending it away).
//! - An empty query string is Primary (Postgres answers it anywhere).
//!
//! Nothing here panics on any input: parsing is guarded as in
//! [`crate::classify`] (a nesting estimate before parsing, `catch_unwind`
//! around sqlparser, all tokens consumed), which also bounds how deep the
//! walk recurses.

mod names;
#[cfg(test)]
mod tests;
mod tx;

use std::collections::HashMap;
use std::hash::BuildHasher;

use sqlparser::ast::{DescribeAlias, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};

use crate::sql_facts::Facts;
use names::{is_construct, relation_ok, server_local_function, show_ok, split_name};
pub use tx::{tx_control, TxControl};

/// Where a statement may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Must run on the primary.
    Primary,
    /// A replica gives the same answer (given it has replayed far enough).
    ReplicaOk,
}

/// What the router needs to know about functions: whether calling one can
/// neither write nor answer differently within a statement.
pub trait Volatility {
    /// True when the function `schema.name` (`schema` None: `name` as the
    /// search path resolves it) is immutable or stable. Names arrive as
    /// Postgres resolves them: unquoted parts ASCII-lower-cased, quoted
    /// parts as written. Unknown names must answer false.
    fn is_safe(&self, schema: Option<&str>, name: &str) -> bool;
}

/// Volatility loaded from `pg_proc` (provolatile: 'i' immutable, 's'
/// stable, 'v' volatile), keyed by lower-cased `"schema.name"` and `"name"`;
/// the loader stores under `"name"` the most volatile of all functions of
/// that name in any schema, so an unqualified lookup is safe only if every
/// function so named is.
///
/// A lookup tries the name as given and, when it has upper-case letters
/// (a quoted name), its lower-cased form too: it is safe only if at least
/// one of them is present and every present one is 'i' or 's'. Names with
/// a dot inside a part cannot be told apart from qualified keys and are
/// never safe.
impl<S: BuildHasher> Volatility for HashMap<String, char, S> {
    fn is_safe(&self, schema: Option<&str>, name: &str) -> bool {
        if name.contains('.') || schema.is_some_and(|schema| schema.contains('.')) {
            return false;
        }
        let key = match schema {
            Some(schema) => format!("{schema}.{name}"),
            None => name.to_owned(),
        };
        let lower = key.to_ascii_lowercase();
        let candidates = [Some(&key), (lower != key).then_some(&lower)];
        let found: Vec<char> = candidates
            .into_iter()
            .flatten()
            .filter_map(|key| self.get(key.as_str()).copied())
            .collect();
        !found.is_empty()
            && found
                .iter()
                .all(|volatility| matches!(volatility, 'i' | 's'))
    }
}

/// Whether one query string (the text of a simple Query or of a Parse) may
/// run on a replica; see the module documentation for the rules.
pub fn route(sql: &str, volatility: &dyn Volatility) -> Route {
    // Neither the walk nor the guards are expected to panic; a panic in
    // sqlparser is its bug, but must not take the session down.
    let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut tokens = tokenize(sql)?;
        if hinted(&tokens) {
            return None;
        }
        if let Some(select) = table_as_select(&tokens) {
            tokens = tokenize(&select)?;
        }
        let statements = crate::classify::parse_tokens(tokens)?;
        (!statements.is_empty() && all_reads(&statements, volatility)).then_some(())
    }));
    match verdict {
        Ok(Some(())) => Route::ReplicaOk,
        _ => Route::Primary,
    }
}

/// Whether every one of `statements` is a read a replica may answer: a read
/// statement kind, and nothing in any of them that writes, locks, is kept
/// as text, reads a server-local relation or calls a function not known to
/// be safe.
fn all_reads(statements: &[Statement], volatility: &dyn Volatility) -> bool {
    if !statements.iter().all(read_statement) {
        return false;
    }
    let facts = Facts::of(statements);
    let relations_ok = facts
        .relations
        .iter()
        .all(|name| split_name(name).is_some_and(|(schema, name)| relation_ok(schema, name)));
    let calls_ok = facts.calls.iter().all(|call| {
        is_construct(call)
            || split_name(&call.name).is_some_and(|(schema, name)| {
                !server_local_function(name) && volatility.is_safe(schema, name)
            })
    });
    !facts.writes && !facts.locks && facts.opaque.is_empty() && relations_ok && calls_ok
}

/// A query, a `SHOW` a replica may answer, or an `EXPLAIN` of one of them
/// (see the module documentation).
fn read_statement(mut statement: &Statement) -> bool {
    loop {
        match statement {
            Statement::Query(_) => return true,
            Statement::ShowVariable { variable } => return variable.first().is_some_and(show_ok),
            Statement::Explain {
                describe_alias: DescribeAlias::Explain,
                statement: explained,
                ..
            } => statement = explained,
            _ => return false,
        }
    }
}

/// `TABLE [ONLY] name` (which sqlparser does not parse alone) as the
/// `SELECT * FROM [ONLY] name` it stands for; None for anything else.
fn table_as_select(tokens: &[TokenWithSpan]) -> Option<String> {
    use sqlparser::keywords::Keyword;
    let mut words = tokens
        .iter()
        .map(|t| &t.token)
        .filter(|t| !matches!(t, Token::Whitespace(_)));
    match words.next()? {
        Token::Word(w) if w.keyword == Keyword::TABLE => {}
        _ => return None,
    }
    let mut rest = String::new();
    let mut expect_name = true;
    let mut ended = false;
    for t in words {
        match t {
            _ if ended => return None, // a second statement
            Token::Word(w) if w.keyword == Keyword::ONLY && rest.is_empty() => {
                rest.push_str("ONLY ")
            }
            Token::Word(_) if expect_name => {
                rest.push_str(&t.to_string());
                expect_name = false;
            }
            Token::Period if !expect_name => {
                rest.push('.');
                expect_name = true;
            }
            Token::SemiColon if !expect_name => ended = true,
            _ => return None,
        }
    }
    (!expect_name).then(|| format!("SELECT * FROM {rest}"))
}

/// The hint a client writes in a comment to keep a statement on the primary.
const PRIMARY_HINT: &str = "pgcoalesce:primary";

/// Tokenizes `sql` as PostgreSQL; None if it cannot be tokenized.
fn tokenize(sql: &str) -> Option<Vec<TokenWithSpan>> {
    Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .ok()
}

/// Whether a comment among `tokens` carries [`PRIMARY_HINT`]
/// (case-insensitive). Block comments are the documented form; a line
/// comment is honoured too, since forcing the primary is always safe.
fn hinted(tokens: &[TokenWithSpan]) -> bool {
    tokens.iter().any(|token| match &token.token {
        Token::Whitespace(Whitespace::MultiLineComment(text))
        | Token::Whitespace(Whitespace::SingleLineComment { comment: text, .. }) => {
            text.to_ascii_lowercase().contains(PRIMARY_HINT)
        }
        _ => false,
    })
}
