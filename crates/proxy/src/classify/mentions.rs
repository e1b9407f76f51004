//! Which tables, views and functions parsed statements mention: the names
//! behind [`super::Classified::Mentions`], read off [`Facts`].
//!
//! Relations and calls are listed by their last part. What the walk keeps
//! as text (statements other than queries, DML, COPY, TRUNCATE, LOCK, DROP,
//! CREATE VIEW/INDEX, EXPLAIN, PREPARE, DECLARE, CALL, SHOW and transaction
//! control; rare clauses and expression kinds) contributes every word of
//! it, so nothing is missed at the price of listing column names and
//! keywords too.

use std::collections::BTreeSet;

use sqlparser::ast::Statement;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::normalize;
use crate::sql_facts::Facts;

/// The sorted, deduplicated names `statements` mention; None if a construct
/// kept as text could not be tokenized (then nothing can be promised).
pub(super) fn of(statements: &[Statement]) -> Option<Vec<String>> {
    let facts = Facts::of(statements);
    let named = facts
        .relations
        .iter()
        .chain(facts.calls.iter().map(|call| &call.name));
    let mut names: BTreeSet<String> = named.filter_map(|name| name.last().cloned()).collect();
    for text in &facts.opaque {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, text)
            .tokenize()
            .ok()?;
        names.extend(tokens.into_iter().filter_map(|token| match token {
            Token::Word(word) => Some(normalize(&word.value, word.quote_style)),
            _ => None,
        }));
    }
    Some(names.into_iter().collect())
}
