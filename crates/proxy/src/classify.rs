//! Classification of statements for the coalescer.
//!
//! [`classify`] owns the question "is this query text one of the configured
//! upserts?". A recognized statement becomes a [`Template`]: where each
//! column's value comes from (a Bind parameter or a literal), which columns
//! form the key, what the client must be answered, and for table rules the
//! `DO UPDATE` text to reuse in the bulk flush statement. Anything else is
//! reported with the names of the tables, views and functions it mentions,
//! so the caller can tell whether it touches coalesced data; text sqlparser
//! cannot parse is [`Classified::Unparsed`].
//!
//! This file owns the public types, parsing (with its safety guards) and
//! name normalization; the private `recognize` module owns the upsert
//! shapes, the private `mentions` module the names read off the one walk
//! over the tree (`crate::sql_facts`, shared with [`crate::route`]).
//!
//! Recognition is deliberately narrow: a statement that only looks like an
//! upsert (RETURNING, another conflict target, extra select items, an
//! expression as an argument, ...) is not one, because answering it from the
//! coalescer would change what the client sees.
//!
//! Names are normalized as Postgres does: unquoted identifiers are
//! ASCII-lower-cased, quoted ones keep their case.
//!
//! Nothing here panics on any input. sqlparser builds left-deep trees for
//! long operator chains and set operations without bounding their depth, and
//! merely dropping such a tree a few ten thousand levels deep overflows the
//! stack; statements whose estimated nesting exceeds [`MAX_NESTING`] are
//! therefore reported as [`Classified::Unparsed`] before they are parsed.

pub mod literals;
mod mentions;
mod recognize;
#[cfg(test)]
mod tests;

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

/// What classification needs of one coalescing rule (built from the config's rule by the caller).
#[derive(Debug, Clone)]
pub struct RuleShape {
    /// Lower-cased function name as configured, possibly schema-qualified ("entity.update_metadata_optimized"); or None for a table rule.
    pub function: Option<String>,
    /// Lower-cased table name as configured, possibly schema-qualified ("entity.entity_metadata"); or None for a function rule.
    pub table: Option<String>,
    /// Function rules: parameter names in order. Table rules: empty.
    pub arguments: Vec<String>,
    /// Function rules: the arguments a call may omit (trailing), with their values (text form, None = NULL).
    pub defaults: Vec<(String, Option<String>)>,
    /// Function: argument names forming the key. Table: the ON CONFLICT target column names.
    pub key: Vec<String>,
}

/// How a statement relates to coalescing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// A recognized upsert of rule `Template::rule`.
    Upsert(Template),
    /// Anything else: the normalized unqualified names (sorted, without
    /// duplicates) of every table, view and function it mentions anywhere.
    /// Precise for queries and DML; for other statements and rare constructs
    /// every word of the construct is listed, which may name more than it
    /// touches but never less. Names inside string literals (function bodies,
    /// `EXECUTE` of a prepared statement) are not seen.
    Mentions(Vec<String>),
    /// Not parseable (or too deeply nested to parse safely): the caller must
    /// assume it may touch anything.
    Unparsed,
}

/// One recognized upsert: enough to merge it in memory and write it in bulk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Index into the rules slice passed to [`classify`].
    pub rule: usize,
    /// Function rules: the rule's `arguments` (all of them, in order); table
    /// rules: the INSERT column list, normalized.
    pub columns: Vec<String>,
    /// One per column (function rules: omitted trailing arguments take the
    /// rule's defaults as `Literal` without cast).
    pub values: Vec<ValueSource>,
    /// Indexes into `columns` of the key, in the rule's key order.
    pub key: Vec<usize>,
    /// What the client must be answered.
    pub reply: Reply,
    /// Table rules: what `DO UPDATE` does. Statements with different ones
    /// (or different [`Template::table_alias`]) must be flushed separately.
    /// Function rules: None.
    pub update: Option<UpdateAction>,
    /// Table rules: the `AS alias` of the INSERT target as SQL text (quoted
    /// if it was quoted), which `update` may refer to; the bulk
    /// statement must use the same alias. None without alias and for
    /// function rules.
    pub table_alias: Option<String>,
    /// Highest `$n` used (0 if none), so the caller can check a Bind's
    /// parameter count.
    pub params: usize,
}

/// A table rule's `DO UPDATE SET <assignments> [WHERE <condition>]`, each
/// part as sqlparser renders it (single spaces, keywords upper-case,
/// identifiers and `EXCLUDED` as written). Neither contains a `$n`
/// parameter (such statements are not recognized).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpdateAction {
    /// `<assignment>, <assignment>...`, e.g.
    /// `metadata__value = EXCLUDED.metadata__value`.
    pub assignments: String,
    /// The `WHERE` condition, if there is one.
    pub condition: Option<String>,
}

impl std::fmt::Display for UpdateAction {
    /// The action as SQL: `SET <assignments>[ WHERE <condition>]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SET {}", self.assignments)?;
        if let Some(c) = &self.condition {
            write!(f, " WHERE {c}")?;
        }
        Ok(())
    }
}

/// Where one column's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueSource {
    /// `$n` (stored 0-based: n-1), with the cast written on it if any: the
    /// type's SQL text, lower-cased outside double quotes (e.g. "jsonb",
    /// "uuid", "text", "varchar(10)", "timestamp with time zone",
    /// `entity."MyType"`).
    Param { index: usize, cast: Option<String> },
    /// A literal in text form as Postgres would receive it: a string
    /// literal's contents (quotes removed, '' unescaped; E'' strings with
    /// backslash escapes decoded; also U&'' and dollar-quoted strings), a
    /// number as written (with a leading `-` for a negated number),
    /// TRUE/FALSE as "true"/"false"; NULL = None. A cast on a literal
    /// (`'x'::t`, `CAST('x' AS t)`, `t 'x'`) is kept in `cast`, formatted as
    /// for `Param`.
    Literal {
        text: Option<String>,
        cast: Option<String>,
    },
}

/// What the client must be answered for a coalesced statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `SELECT f(...)`: one row with one column; `column` is the output
    /// column name (the alias if given, else the function's unqualified
    /// name, as Postgres names it).
    FunctionRow { column: String },
    /// `INSERT`: CommandComplete "INSERT 0 1", no rows.
    Insert,
}

/// Largest nesting a statement may be estimated to build (see
/// `nesting_exceeds`) before it is parsed; above it, it is Unparsed.
pub const MAX_NESTING: usize = 1000;

/// Classifies one query string (the text of a simple Query or a Parse).
pub fn classify(sql: &str, rules: &[RuleShape]) -> Classified {
    let Some(statements) = parse(sql) else {
        return Classified::Unparsed;
    };
    if let [statement] = statements.as_slice() {
        if let Some(template) = recognize::recognize(statement, rules) {
            return Classified::Upsert(template);
        }
    }
    match mentions::of(&statements) {
        Some(names) => Classified::Mentions(names),
        None => Classified::Unparsed,
    }
}

/// The names [`Classified::Mentions`] would list for `sql`, whether or not it
/// is an upsert; None when it cannot be parsed.
pub fn mentions(sql: &str) -> Option<Vec<String>> {
    mentions::of(&parse(sql)?)
}

/// Parses `sql` as PostgreSQL; None if sqlparser fails, panics, stops early,
/// or the statement would nest too deeply to handle safely.
fn parse(sql: &str) -> Option<Vec<Statement>> {
    // A panic in sqlparser is its bug, but must not take the session down.
    std::panic::catch_unwind(|| {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize_with_location()
            .ok()?;
        parse_tokens(tokens)
    })
    .ok()
    .flatten()
}

/// Parses tokenized PostgreSQL (the one guarded way into sqlparser, shared
/// with [`crate::route`]); None if sqlparser fails, stops early, or the
/// statement would nest too deeply to handle safely. Callers catch panics.
pub(crate) fn parse_tokens(tokens: Vec<TokenWithSpan>) -> Option<Vec<Statement>> {
    if nesting_exceeds(&tokens, MAX_NESTING) {
        return None;
    }
    let mut parser = Parser::new(&PostgreSqlDialect {}).with_tokens_with_locations(tokens);
    let statements = parser.parse_statements().ok()?;
    // parse_statements stops, without error, at a word END following a
    // statement and ignores whatever comes after it.
    (parser.peek_token_ref().token == Token::EOF).then_some(statements)
}

/// Whether the tree sqlparser would build from `tokens` may be deeper than
/// `limit`. An over-estimate: every token that is not an operand (name,
/// literal, parameter), a comma or a bracket counts as one level of the
/// expression it is in; a comma ends an expression (its depth is then only
/// carried by the bracket's maximum); a closed bracket adds its deepest
/// expression plus one to the enclosing one. Set operations, whose chains
/// cross commas, are counted per statement.
fn nesting_exceeds(tokens: &[TokenWithSpan], limit: usize) -> bool {
    #[derive(Default)]
    struct Level {
        since_comma: usize,
        max: usize,
    }
    fn add(levels: &mut [Level], open: &mut usize, n: usize) {
        if let Some(top) = levels.last_mut() {
            top.since_comma += n;
            top.max = top.max.max(top.since_comma);
            *open += n;
        }
    }
    let mut levels = vec![Level::default()];
    let mut open = 0usize;
    let mut set_operations = 0usize;
    for token in tokens {
        match &token.token {
            Token::Whitespace(_) | Token::EOF => continue,
            Token::LParen | Token::LBracket | Token::LBrace => levels.push(Level::default()),
            Token::RParen | Token::RBracket | Token::RBrace => {
                if levels.len() > 1 {
                    let inner = levels.pop().unwrap_or_default();
                    open = open.saturating_sub(inner.since_comma);
                    add(&mut levels, &mut open, inner.max + 1);
                }
            }
            Token::Comma => {
                if let Some(top) = levels.last_mut() {
                    open = open.saturating_sub(top.since_comma);
                    top.since_comma = 0;
                }
            }
            Token::SemiColon => {
                levels = vec![Level::default()];
                open = 0;
                set_operations = 0;
            }
            Token::Word(word)
                if matches!(
                    word.keyword,
                    Keyword::UNION | Keyword::INTERSECT | Keyword::EXCEPT
                ) =>
            {
                set_operations += 1;
            }
            Token::Word(word)
                if word.keyword == Keyword::NoKeyword || word.quote_style.is_some() => {}
            Token::Number(..)
            | Token::Placeholder(_)
            | Token::SingleQuotedString(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::DollarQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::DoubleQuotedString(_) => {}
            _ => add(&mut levels, &mut open, 1),
        }
        if open + levels.len() > limit || set_operations > limit {
            return true;
        }
    }
    false
}

/// Whether `name` as written is the configured dotted `wanted` name, part by
/// part after normalization (so `"a.b"` is not `a.b`, and an unqualified
/// name does not match a qualified one).
fn name_matches(name: &ObjectName, wanted: &str) -> bool {
    name.0.len() == wanted.split('.').count()
        && name.0.iter().zip(wanted.split('.')).all(|(part, wanted)| {
            matches!(part, ObjectNamePart::Identifier(part) if ident(part) == wanted)
        })
}

/// An identifier as Postgres resolves it.
pub(crate) fn ident(ident: &Ident) -> String {
    normalize(&ident.value, ident.quote_style)
}

/// Unquoted names are folded to lower case (ASCII only, as Postgres does for
/// UTF-8); quoted names are kept.
fn normalize(value: &str, quote_style: Option<char>) -> String {
    match quote_style {
        Some(_) => value.to_owned(),
        None => value.to_ascii_lowercase(),
    }
}
