//! Which statements leave session state on a server connection.
//!
//! In transaction mode a client keeps a server connection only for one
//! transaction, so anything that outlives the transaction (LISTEN, session
//! advisory locks, temp tables, SQL-level PREPARE, `SET` of a parameter the
//! server does not report) pins the client to its connection until it
//! disconnects. Parameters the server reports with ParameterStatus are
//! tracked instead and replayed on whichever connection the client gets.
//!
//! This is a lexical scan (comments, strings and quoted identifiers are
//! skipped), deliberately conservative: a false "pins" costs pooling
//! efficiency, a false "does not pin" would leak state between clients.

/// What a statement string does to the session beyond its transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Effects {
    /// The client must keep this server connection.
    pub pins: bool,
    /// Prepared statements on the connection are gone (DISCARD/DEALLOCATE ALL).
    pub drops_prepared: bool,
}

/// Parameters Postgres reports through ParameterStatus, which the proxy
/// tracks per client and replays on checkout (lower case).
pub const TRACKED_PARAMETERS: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "intervalstyle",
    "timezone",
    "standard_conforming_strings",
    "default_transaction_read_only",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An identifier or keyword, upper-cased.
    Word(String),
    /// A double-quoted identifier, upper-cased (matched only as a function
    /// or schema name, never as a keyword).
    Quoted(String),
    Punct(u8),
    /// A literal or number.
    Other,
}

/// Scans one query string (possibly several statements).
pub fn effects(sql: impl AsRef<[u8]>) -> Effects {
    let sql = sql.as_ref();
    if !mentions_any_trigger(sql) {
        return Effects::default();
    }
    full_scan(sql)
}

/// [`effects`] without the pre-check.
fn full_scan(sql: &[u8]) -> Effects {
    let tokens = tokenize(sql);
    let mut out = Effects::default();
    for stmt in tokens.split(|t| *t == Token::Punct(b';')) {
        statement_effects(stmt, &mut out);
    }
    out
}

/// Word prefixes that every statement with an effect contains somewhere
/// (keywords, function and schema names; quoted names included).
const TRIGGERS: &[&[u8]] = &[
    b"set",
    b"listen",
    b"prepare",
    b"load",
    b"do",
    b"declare",
    b"discard",
    b"deallocate",
    b"pg_",
    b"temp",
];

/// A cheap pre-check: whether any word starts with a trigger prefix. Most
/// statements (plain SELECT/INSERT/UPDATE) have none and skip the scan.
/// It runs on every simple Query: one table lookup per byte, and a word is
/// compared with the prefixes only when its first letter starts one.
fn mentions_any_trigger(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        let class = BYTE_CLASS[s[i] as usize];
        if class == NOT_WORD {
            i += 1;
            continue;
        }
        // A word starts here.
        if class == TRIGGER_INITIAL && starts_with_trigger(&s[i..]) {
            return true;
        }
        i += 1;
        while i < s.len() && BYTE_CLASS[s[i] as usize] != NOT_WORD {
            i += 1;
        }
    }
    false
}

/// Whether `word` (at least one byte) starts with a trigger prefix.
fn starts_with_trigger(word: &[u8]) -> bool {
    let first = word[0].to_ascii_lowercase();
    TRIGGERS
        .iter()
        .any(|t| t[0] == first && word.len() >= t.len() && word[..t.len()].eq_ignore_ascii_case(t))
}

const NOT_WORD: u8 = 0;
const WORD: u8 = 1;
/// A word byte that, in either case, is the first letter of a trigger.
const TRIGGER_INITIAL: u8 = 2;

/// Every byte's class: identifier bytes (ASCII letters, digits, `_` and all
/// non-ASCII bytes) are words.
const BYTE_CLASS: [u8; 256] = {
    let mut table = [NOT_WORD; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80 {
            table[c] = WORD;
        }
        c += 1;
    }
    let mut i = 0;
    while i < TRIGGERS.len() {
        let first = TRIGGERS[i][0];
        table[first as usize] = TRIGGER_INITIAL;
        table[first.to_ascii_uppercase() as usize] = TRIGGER_INITIAL;
        i += 1;
    }
    table
};

fn word(t: Option<&Token>) -> &str {
    match t {
        Some(Token::Word(w)) => w,
        _ => "",
    }
}

/// A name as written either bare or quoted (for function and schema names).
fn name(t: &Token) -> &str {
    match t {
        Token::Word(w) | Token::Quoted(w) => w,
        _ => "",
    }
}

fn statement_effects(stmt: &[Token], out: &mut Effects) {
    match word(stmt.first()) {
        "SET" => {
            let mut i = 1;
            if word(stmt.get(i)) == "SESSION" {
                i += 1;
            }
            match word(stmt.get(i)) {
                "LOCAL" | "TRANSACTION" => {}
                name => {
                    let name = name.to_ascii_lowercase();
                    // SET TIME ZONE is the SQL spelling of SET timezone.
                    let tracked = TRACKED_PARAMETERS.contains(&name.as_str())
                        || (name == "time" && word(stmt.get(i + 1)) == "ZONE");
                    if !tracked {
                        out.pins = true;
                    }
                }
            }
        }
        // DO runs a block no scan can see into: assume the worst.
        "LISTEN" | "PREPARE" | "LOAD" | "DO" => out.pins = true,
        "DECLARE" if stmt.iter().any(|t| word(Some(t)) == "HOLD") => out.pins = true,
        "DISCARD" | "DEALLOCATE" => {
            let all = stmt.iter().any(|t| word(Some(t)) == "ALL");
            if all {
                out.drops_prepared = true;
            }
        }
        _ => {}
    }
    for (i, t) in stmt.iter().enumerate() {
        match name(t) {
            "PG_ADVISORY_LOCK"
            | "PG_ADVISORY_LOCK_SHARED"
            | "PG_TRY_ADVISORY_LOCK"
            | "PG_TRY_ADVISORY_LOCK_SHARED" => out.pins = true,
            // CREATE [OR REPLACE] [GLOBAL|LOCAL] TEMP ..., SELECT ... INTO TEMP ...
            "TEMP" | "TEMPORARY" if matches!(t, Token::Word(_)) => {
                let before = &stmt[i.saturating_sub(4)..i];
                if before
                    .iter()
                    .any(|b| matches!(word(Some(b)), "CREATE" | "INTO" | "GLOBAL" | "LOCAL"))
                {
                    out.pins = true;
                }
            }
            // Objects in the session's temporary schema.
            n if (n == "PG_TEMP" || n.starts_with("PG_TEMP_"))
                && stmt.get(i + 1) == Some(&Token::Punct(b'.')) =>
            {
                out.pins = true
            }
            "SET_CONFIG" if !set_config_is_local(&stmt[i + 1..]) => out.pins = true,
            _ => {}
        }
    }
}

/// `set_config(name, value, is_local)`: local only when the third argument
/// is exactly the literal `true` (anything else may set it for the session).
fn set_config_is_local(after: &[Token]) -> bool {
    if after.first() != Some(&Token::Punct(b'(')) {
        return true; // not a call: a column or some other name
    }
    let mut depth = 0usize;
    let mut last_arg_start = 1;
    for (i, t) in after.iter().enumerate() {
        match t {
            Token::Punct(b'(') => depth += 1,
            Token::Punct(b',') if depth == 1 => last_arg_start = i + 1,
            Token::Punct(b')') => {
                depth -= 1;
                if depth == 0 {
                    return after[last_arg_start..i] == [Token::Word("TRUE".into())];
                }
            }
            _ => {}
        }
    }
    false
}

fn tokenize(s: &[u8]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c' => i += 1,
            b'-' if s.get(i + 1) == Some(&b'-') => {
                while i < s.len() && s[i] != b'\n' && s[i] != b'\r' {
                    i += 1;
                }
            }
            b'/' if s.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < s.len() {
                    if s[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if s[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'\'' => {
                i = skip_quoted(s, i, b'\'', false);
                out.push(Token::Other);
            }
            b'"' => {
                let end = skip_quoted(s, i, b'"', false);
                let inner = &s[i + 1..end.saturating_sub(1).max(i + 1)];
                let ident = String::from_utf8_lossy(inner).replace("\"\"", "\"");
                out.push(Token::Quoted(ident.to_ascii_uppercase()));
                i = end;
            }
            b'$' if dollar_tag(s, i).is_some() => {
                let tag_len = dollar_tag(s, i).unwrap_or(1);
                let tag = &s[i..i + tag_len];
                let body = i + tag_len;
                i = match s[body..].windows(tag_len).position(|w| w == tag) {
                    Some(p) => body + p + tag_len,
                    None => s.len(),
                };
                out.push(Token::Other);
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let start = i;
                while i < s.len()
                    && (s[i].is_ascii_alphanumeric()
                        || s[i] == b'_'
                        || s[i] == b'$'
                        || s[i] >= 0x80)
                {
                    i += 1;
                }
                let w = String::from_utf8_lossy(&s[start..i]).to_ascii_uppercase();
                // E'...' and similar prefixed literals.
                if i < s.len() && s[i] == b'\'' && matches!(w.as_str(), "E" | "B" | "X" | "N") {
                    i = skip_quoted(s, i, b'\'', w == "E");
                    out.push(Token::Other);
                } else {
                    out.push(Token::Word(w));
                }
            }
            c if c.is_ascii_digit() => {
                while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'.') {
                    i += 1;
                }
                out.push(Token::Other);
            }
            _ => {
                out.push(Token::Punct(c));
                i += 1;
            }
        }
    }
    out
}

/// Skips a quoted run starting at `i`: doubled quotes escape, and in
/// `E'...'` strings (`backslash`) so does a backslash.
fn skip_quoted(s: &[u8], mut i: usize, q: u8, backslash: bool) -> usize {
    i += 1;
    while i < s.len() {
        if backslash && s[i] == b'\\' {
            i += 2;
            continue;
        }
        if s[i] == q {
            if s.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    s.len()
}

/// Length of a `$tag$` opener at `i`, if there is one.
fn dollar_tag(s: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < s.len() && (s[j].is_ascii_alphanumeric() || s[j] == b'_' || s[j] >= 0x80) {
        if j == i + 1 && s[j].is_ascii_digit() {
            return None; // $1 is a parameter
        }
        j += 1;
    }
    (s.get(j) == Some(&b'$')).then_some(j + 1 - i)
}

#[cfg(test)]
mod precheck_tests {
    use super::*;
    use proptest::prelude::*;

    /// Words and separators statements with effects are made of, mixed
    /// with ones that merely look like them.
    fn piece() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "SET",
            "set",
            "Set",
            "LISTEN",
            "load",
            "Prepare",
            "DO",
            "declare",
            "DISCARD",
            "deallocate",
            "pg_advisory_lock",
            "PG_TRY_ADVISORY_LOCK",
            "temp",
            "TEMPORARY",
            "\"pg_catalog\"",
            "\"set_config\"",
            "SELECT",
            "FROM",
            "setting",
            "x",
            "1",
            "(",
            ")",
            ";",
            ",",
            " ",
            "\t",
            "\n",
            ".",
            "'",
            "\"",
            "$$",
            "--",
            "/*",
            "*/",
            "é",
            "_set",
            "reset",
            "offset",
            "ALL",
            "ROLE",
            "session",
            "local",
            "time",
            "zone",
        ])
    }

    proptest! {
        /// The pre-check never hides an effect the full scan finds.
        #[test]
        fn the_precheck_never_hides_an_effect(pieces in prop::collection::vec(piece(), 0..24)) {
            let sql = pieces.concat();
            if !mentions_any_trigger(sql.as_bytes()) {
                prop_assert_eq!(full_scan(sql.as_bytes()), Effects::default(), "{}", sql);
            }
        }
    }

    #[test]
    fn words_are_matched_at_their_start_only() {
        assert!(mentions_any_trigger(b"SET x = 1"));
        assert!(mentions_any_trigger(b"select pg_sleep(1)"));
        assert!(mentions_any_trigger(b"x;LISTEN y"));
        assert!(!mentions_any_trigger(b"SELECT offset_x FROM reset_t"));
        assert!(!mentions_any_trigger(
            b"SELECT abalance FROM pgbench_accounts WHERE aid = 1;"
        ));
        assert!(!mentions_any_trigger(b""));
    }
}
