//! Transaction control statements, recognized from their words so that
//! every form Postgres accepts (`BEGIN WORK`, `ABORT`, modes separated by
//! commas or not, `DEFERRABLE`, ...) is seen, including those sqlparser does
//! not parse.

use sqlparser::tokenizer::Token;

use super::{hinted, tokenize};

/// Transaction control a client sends, so the caller can follow
/// `BEGIN READ ONLY` transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxControl {
    /// `BEGIN` / `START TRANSACTION` with its modes. `read_only` is true
    /// when the transaction may run on a replica: `READ ONLY` was given,
    /// `READ WRITE` was not, the isolation level is not `SERIALIZABLE`
    /// (which a hot standby refuses), and no `pgcoalesce:primary` hint was
    /// written. It reflects only the statement: a session's
    /// `default_transaction_read_only` is the caller's to add.
    Begin { read_only: bool },
    /// `SET TRANSACTION READ ONLY` (with the same conditions as `read_only`).
    SetTransactionReadOnly,
    /// `COMMIT` / `END` (without `AND CHAIN`).
    Commit,
    /// `ROLLBACK` / `ABORT` (without `AND CHAIN` or `TO SAVEPOINT`).
    Rollback,
    /// Anything else, including several statements in one string, other
    /// `SET TRANSACTION` forms, savepoints, two-phase commit, and `AND
    /// CHAIN`, which continues with a new transaction of the same
    /// characteristics.
    Other,
}

/// Which transaction control statement `sql` (one query string) is.
pub fn tx_control(sql: &str) -> TxControl {
    std::panic::catch_unwind(|| classify(sql)).unwrap_or(TxControl::Other)
}

/// One significant token: an unquoted word upper-cased, a comma, or
/// anything else.
#[derive(Debug, PartialEq, Eq)]
enum Word {
    Keyword(String),
    Comma,
    Other,
}

fn classify(sql: &str) -> TxControl {
    let Some(tokens) = tokenize(sql) else {
        return TxControl::Other;
    };
    let hinted = hinted(&tokens);
    let mut words: Vec<Word> = Vec::new();
    let mut ended = false;
    for token in tokens {
        let word = match token.token {
            Token::Whitespace(_) | Token::EOF => continue,
            // Only trailing semicolons: a second statement makes it Other.
            Token::SemiColon => {
                ended = true;
                continue;
            }
            Token::Word(word) if word.quote_style.is_none() => {
                Word::Keyword(word.value.to_ascii_uppercase())
            }
            Token::Comma => Word::Comma,
            _ => Word::Other,
        };
        if ended {
            return TxControl::Other;
        }
        words.push(word);
    }
    let mut cursor = Cursor {
        words: &words,
        at: 0,
    };
    let control = cursor.statement().unwrap_or(TxControl::Other);
    match control {
        TxControl::Begin { .. } if hinted => TxControl::Begin { read_only: false },
        TxControl::SetTransactionReadOnly if hinted => TxControl::Other,
        control => control,
    }
}

/// A position in the words of one statement.
struct Cursor<'w> {
    words: &'w [Word],
    at: usize,
}

impl Cursor<'_> {
    /// Consumes the next word if it is `keyword`.
    fn eat(&mut self, keyword: &str) -> bool {
        let found = matches!(self.words.get(self.at), Some(Word::Keyword(word)) if word == keyword);
        if found {
            self.at += 1;
        }
        found
    }

    fn done(&self) -> bool {
        self.at >= self.words.len()
    }

    /// The statement, if it is transaction control and nothing follows.
    fn statement(&mut self) -> Option<TxControl> {
        let control = if self.eat("BEGIN") {
            let _ = self.eat("WORK") || self.eat("TRANSACTION");
            TxControl::Begin {
                read_only: self.modes()?,
            }
        } else if self.eat("START") {
            self.eat("TRANSACTION").then_some(())?;
            TxControl::Begin {
                read_only: self.modes()?,
            }
        } else if self.eat("SET") {
            self.eat("TRANSACTION").then_some(())?;
            if self.modes()? {
                TxControl::SetTransactionReadOnly
            } else {
                TxControl::Other
            }
        } else if self.eat("COMMIT") || self.eat("END") {
            self.end_of_transaction(TxControl::Commit)?
        } else if self.eat("ROLLBACK") || self.eat("ABORT") {
            self.end_of_transaction(TxControl::Rollback)?
        } else {
            return None;
        };
        self.done().then_some(control)
    }

    /// `[WORK | TRANSACTION] [AND [NO] CHAIN]` after COMMIT or ROLLBACK.
    fn end_of_transaction(&mut self, control: TxControl) -> Option<TxControl> {
        let _ = self.eat("WORK") || self.eat("TRANSACTION");
        if self.eat("AND") {
            let no = self.eat("NO");
            self.eat("CHAIN").then_some(())?;
            if !no {
                return Some(TxControl::Other);
            }
        }
        Some(control)
    }

    /// Transaction modes up to the end, separated by commas or not; whether
    /// they make a read-only transaction a replica can run. None if a word
    /// is not a mode.
    fn modes(&mut self) -> Option<bool> {
        let (mut read_only, mut read_write, mut serializable) = (false, false, false);
        let mut first = true;
        while !self.done() {
            if !first && self.words.get(self.at) == Some(&Word::Comma) {
                self.at += 1;
            }
            first = false;
            if self.eat("ISOLATION") {
                self.eat("LEVEL").then_some(())?;
                if self.eat("SERIALIZABLE") {
                    serializable = true;
                } else if self.eat("REPEATABLE") {
                    self.eat("READ").then_some(())?;
                } else if self.eat("READ") {
                    (self.eat("COMMITTED") || self.eat("UNCOMMITTED")).then_some(())?;
                } else {
                    return None;
                }
            } else if self.eat("READ") {
                if self.eat("ONLY") {
                    read_only = true;
                } else if self.eat("WRITE") {
                    read_write = true;
                } else {
                    return None;
                }
            } else if self.eat("NOT") {
                self.eat("DEFERRABLE").then_some(())?;
            } else if !self.eat("DEFERRABLE") {
                return None;
            }
        }
        Some(read_only && !read_write && !serializable)
    }
}
