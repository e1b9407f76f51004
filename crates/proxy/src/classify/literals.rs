//! The shape of a simple-protocol statement: its text with every plain
//! string and number literal replaced by `$1`, `$2`, … in order, and the
//! literals' values. Statements that differ only in their values share a
//! shape, so a recognized upsert is parsed once per shape rather than once
//! per call; the values are read here, without a parser.
//!
//! Only what can be read exactly is taken: `'…'` strings (standard
//! conforming, `''` for a quote) and unsigned numbers. Anything this lexer
//! does not fully understand — prefixed strings (`E'…'`, `U&'…'`, `B'…'`),
//! dollar quotes, a `$n` already in the text, a number running into a
//! word, an unterminated quote or comment — gives no shape, and the
//! statement is classified from its own text as before.

/// `(shape, values)`, or `None` when the statement has no plain shape.
pub fn parameterize(sql: &str) -> Option<(String, Vec<String>)> {
    let b = sql.as_bytes();
    let mut shape = String::with_capacity(sql.len());
    let mut values = Vec::new();
    let mut i = 0;
    // Start of the run of bytes copied unchanged.
    let mut copied = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' => {
                if i > 0 && (is_word(b[i - 1]) || b[i - 1] == b'&') {
                    return None; // E'', U&'', B'', X'', N'' or a type name glued on
                }
                let (value, end) = quoted(b, i, b'\'')?;
                shape.push_str(&sql[copied..i]);
                values.push(value);
                shape.push('$');
                shape.push_str(&values.len().to_string());
                i = end;
                copied = i;
            }
            b'"' => i = quoted(b, i, b'"')?.1,
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p + 1);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => i = block_comment(b, i)?,
            b'$' => return None, // $n or a dollar quote
            c if c.is_ascii_digit()
                || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                let end = number(b, i);
                if b.get(end).is_some_and(|&c| is_word(c) || c == b'.') {
                    return None;
                }
                shape.push_str(&sql[copied..i]);
                values.push(sql[i..end].to_owned());
                shape.push('$');
                shape.push_str(&values.len().to_string());
                i = end;
                copied = i;
            }
            c if is_word(c) => {
                while i < b.len() && (is_word(b[i]) || b[i] == b'$') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    shape.push_str(&sql[copied..]);
    Some((shape, values))
}

/// A byte that continues an identifier or keyword.
fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// A quoted run starting at `start` (a `q`): its contents with doubled
/// quotes undone, and the index after the closing quote.
fn quoted(b: &[u8], start: usize, q: u8) -> Option<(String, usize)> {
    let mut out = Vec::new();
    let mut i = start + 1;
    loop {
        let c = *b.get(i)?;
        if c == q {
            if b.get(i + 1) == Some(&q) {
                out.push(q);
                i += 2;
                continue;
            }
            return Some((String::from_utf8(out).ok()?, i + 1));
        }
        out.push(c);
        i += 1;
    }
}

/// The index after a (nested) block comment starting at `start`.
fn block_comment(b: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i + 1 < b.len() {
        match (b[i], b[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// The index after an unsigned number starting at `start`: digits, an
/// optional fraction, an optional exponent.
fn number(b: &[u8], start: usize) -> usize {
    let digits = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut i = digits(start);
    if b.get(i) == Some(&b'.') && b.get(i + 1) != Some(&b'.') {
        i = digits(i + 1);
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
        if b.get(i + 1 + sign).is_some_and(u8::is_ascii_digit) {
            i = digits(i + 1 + sign);
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::parameterize;

    fn shape(sql: &str) -> Option<(String, Vec<String>)> {
        parameterize(sql)
    }

    #[test]
    fn strings_and_numbers_become_parameters() {
        let (s, v) = shape(
            "SELECT entity.update_metadata_optimized('e1', 'it''s', '{\"a\": 1}'::jsonb, 42, 1.5e-3);",
        )
        .expect("shape");
        assert_eq!(
            s,
            "SELECT entity.update_metadata_optimized($1, $2, $3::jsonb, $4, $5);"
        );
        assert_eq!(v, ["e1", "it's", "{\"a\": 1}", "42", "1.5e-3"]);
    }

    #[test]
    fn names_comments_and_quoted_identifiers_are_kept() {
        let (s, v) = shape(
            "/* '1' /* nested 'x' */ */ INSERT INTO \"t'2\" (c1, x$y) VALUES ('a', 7) -- '9'\n",
        )
        .expect("shape");
        assert_eq!(
            s,
            "/* '1' /* nested 'x' */ */ INSERT INTO \"t'2\" (c1, x$y) VALUES ($1, $2) -- '9'\n"
        );
        assert_eq!(v, ["a", "7"]);
        assert_eq!(shape("SELECT 1").expect("shape").1, ["1"]);
        assert_eq!(shape("SELECT a.b").expect("shape").1, Vec::<String>::new());
    }

    #[test]
    fn what_it_cannot_read_exactly_has_no_shape() {
        for sql in [
            "SELECT E'a\\nb'",
            "SELECT U&'d\\0061t'",
            "SELECT B'101'",
            "SELECT $1",
            "SELECT $$x$$",
            "SELECT $q$x$q$",
            "SELECT 'open",
            "SELECT \"open",
            "SELECT /* open",
            "SELECT 1abc",
            "SELECT 0x1F",
            "SELECT 1.2.3",
        ] {
            assert_eq!(shape(sql), None, "{sql}");
        }
    }

    #[test]
    fn never_panics_on_arbitrary_text() {
        for sql in [
            "", "'", "''", ".", "1e", "1e+", "/*", "*/", "--", "é'x'", "é 'x'", "a.1",
        ] {
            let _ = shape(sql);
        }
        assert_eq!(shape("1e"), None);
        assert_eq!(shape("é 'x'").expect("shape").1, ["x"]);
    }
}
