//! Tokens of a MySQL / MariaDB DDL statement for the PostgreSQL DDL
//! translation (`pg_ddl`): words, backquoted names, string / hex / bit
//! literals, numbers and punctuation, with comments dropped and the
//! content of executable comments (`/*!50100 … */`, `/*M! … */`) kept;
//! and the ALTER TABLE words the translation ignores.
//! Touches nothing but memory.

/// Words that start an index / constraint definition after ADD or DROP.
pub const INDEX_WORDS: &[&str] = &[
    "INDEX",
    "KEY",
    "UNIQUE",
    "FULLTEXT",
    "SPATIAL",
    "FOREIGN",
    "CONSTRAINT",
    "CHECK",
];

/// Table options and other clauses with no effect on a PostgreSQL copy.
pub const TABLE_OPTIONS: &[&str] = &[
    "ENGINE",
    "AUTO_INCREMENT",
    "AVG_ROW_LENGTH",
    "CHECKSUM",
    "TABLE_CHECKSUM",
    "COMMENT",
    "COMPRESSION",
    "CONNECTION",
    "DATA",
    "INDEX",
    "DELAY_KEY_WRITE",
    "ENCRYPTED",
    "ENCRYPTION",
    "ENCRYPTION_KEY_ID",
    "IETF_QUOTES",
    "INSERT_METHOD",
    "KEY_BLOCK_SIZE",
    "MAX_ROWS",
    "MIN_ROWS",
    "PACK_KEYS",
    "PAGE_CHECKSUM",
    "PAGE_COMPRESSED",
    "PAGE_COMPRESSION_LEVEL",
    "PASSWORD",
    "ROW_FORMAT",
    "STATS_AUTO_RECALC",
    "STATS_PERSISTENT",
    "STATS_SAMPLE_PAGES",
    "TABLESPACE",
    "TRANSACTIONAL",
    "UNION",
    "ALGORITHM",
    "LOCK",
    "CHARSET",
    "COLLATE",
    "CHARACTER",
    "DEFAULT",
    "CONVERT",
    "FORCE",
    "ORDER",
    "ENABLE",
    "DISABLE",
    "WITH",
    "WITHOUT",
];

/// One token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    /// An unquoted word: keyword or name.
    Word(String),
    /// A backquoted name (quotes removed, doubled quotes undone).
    Name(String),
    /// A string literal's value ('…' or "…", escapes undone).
    Str(String),
    /// A hex literal's digits (X'…' or 0x…).
    Hex(String),
    /// A bit literal's digits (B'…' or 0b…).
    Bit(String),
    /// A number as written (no sign).
    Num(String),
    /// Any other single character: ( ) , . = ; - + …
    P(char),
}

impl Tok {
    /// The statement text of the token, for error messages.
    pub fn text(&self) -> String {
        match self {
            Tok::Word(w) | Tok::Num(w) => w.clone(),
            Tok::Name(n) => format!("`{n}`"),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Hex(h) => format!("X'{h}'"),
            Tok::Bit(b) => format!("b'{b}'"),
            Tok::P(c) => c.to_string(),
        }
    }
}

/// A quoted run starting at `i` (the quote): its value and the index
/// after the closing quote. Backslash escapes apply to strings only.
fn quoted(s: &[char], i: usize, backslash: bool) -> Result<(String, usize), String> {
    let q = s[i];
    let mut out = String::new();
    let mut j = i + 1;
    while j < s.len() {
        let c = s[j];
        if c == q {
            if s.get(j + 1) == Some(&q) {
                out.push(q);
                j += 2;
                continue;
            }
            return Ok((out, j + 1));
        }
        if backslash && c == '\\' && j + 1 < s.len() {
            let n = s[j + 1];
            out.push(match n {
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                '0' => '\0',
                'Z' => '\x1a',
                'b' => '\x08',
                other => other,
            });
            j += 2;
            continue;
        }
        out.push(c);
        j += 1;
    }
    Err(format!("unterminated {q}…{q} in the statement"))
}

fn word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || !c.is_ascii()
}

/// Splits a statement into tokens.
pub fn tokens(sql: &str) -> Result<Vec<Tok>, String> {
    let s: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    // Inside an executable comment: its closing `*/` is dropped.
    let mut in_exec = false;
    while i < s.len() {
        let c = s[i];
        let next = s.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('*') {
            let exec = s.get(i + 2) == Some(&'!')
                || (s.get(i + 2) == Some(&'M') && s.get(i + 3) == Some(&'!'));
            if exec && !in_exec {
                i += if s[i + 2] == 'M' { 4 } else { 3 };
                while i < s.len() && s[i].is_ascii_digit() {
                    i += 1;
                }
                in_exec = true;
            } else {
                let mut j = i + 2;
                while j + 1 < s.len() && !(s[j] == '*' && s[j + 1] == '/') {
                    j += 1;
                }
                i = j + 2;
            }
        } else if in_exec && c == '*' && next == Some('/') {
            in_exec = false;
            i += 2;
        } else if c == '#'
            || (c == '-' && next == Some('-') && s.get(i + 2).is_none_or(|c| c.is_whitespace()))
        {
            while i < s.len() && s[i] != '\n' {
                i += 1;
            }
        } else if c == '`' {
            let (v, j) = quoted(&s, i, false)?;
            out.push(Tok::Name(v));
            i = j;
        } else if c == '\'' || c == '"' {
            let (v, j) = quoted(&s, i, true)?;
            out.push(Tok::Str(v));
            i = j;
        } else if matches!(c, 'x' | 'X' | 'b' | 'B') && next == Some('\'') {
            let (v, j) = quoted(&s, i + 1, false)?;
            out.push(if c.eq_ignore_ascii_case(&'x') {
                Tok::Hex(v)
            } else {
                Tok::Bit(v)
            });
            i = j;
        } else if c.is_ascii_digit() {
            let mut j = i;
            while j < s.len() && (word_char(s[j]) || s[j] == '.') {
                j += 1;
            }
            let w: String = s[i..j].iter().collect();
            out.push(if let Some(h) = w.strip_prefix("0x") {
                Tok::Hex(h.to_string())
            } else if let Some(b) = w.strip_prefix("0b") {
                Tok::Bit(b.to_string())
            } else {
                Tok::Num(w)
            });
            i = j;
        } else if word_char(c) {
            let mut j = i;
            while j < s.len() && word_char(s[j]) {
                j += 1;
            }
            let w: String = s[i..j].iter().collect();
            // A character set introducer (_utf8mb4'…', N'…') before a string.
            let intro = (w.starts_with('_') || w.eq_ignore_ascii_case("n"))
                && matches!(s.get(j), Some('\'') | Some('"'));
            if !intro {
                out.push(Tok::Word(w));
            }
            i = j;
        } else {
            out.push(Tok::P(c));
            i += 1;
        }
    }
    while out.last() == Some(&Tok::P(';')) {
        out.pop();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_of_a_statement() {
        let t = tokens(
            "ALTER /* c */ TABLE `a``b`.t -- x\n ADD c INT DEFAULT 'it''s\\n' # y\n, \
             ADD d BIT DEFAULT b'101', ADD e BLOB DEFAULT x'0aFF' /*!50100 , ALGORITHM=INPLACE */;",
        )
        .unwrap();
        use Tok::*;
        let w = |s: &str| Word(s.into());
        assert_eq!(
            t,
            vec![
                w("ALTER"),
                w("TABLE"),
                Name("a`b".into()),
                P('.'),
                w("t"),
                w("ADD"),
                w("c"),
                w("INT"),
                w("DEFAULT"),
                Str("it's\n".into()),
                P(','),
                w("ADD"),
                w("d"),
                w("BIT"),
                w("DEFAULT"),
                Bit("101".into()),
                P(','),
                w("ADD"),
                w("e"),
                w("BLOB"),
                w("DEFAULT"),
                Hex("0aFF".into()),
                P(','),
                w("ALGORITHM"),
                P('='),
                w("INPLACE"),
            ]
        );
        assert_eq!(
            tokens("a DEFAULT _utf8mb4'x' DEFAULT -1.5e3 0x1F").unwrap(),
            vec![
                w("a"),
                w("DEFAULT"),
                Str("x".into()),
                w("DEFAULT"),
                P('-'),
                Num("1.5e3".into()),
                Hex("1F".into())
            ]
        );
        assert!(tokens("ALTER TABLE t ADD c INT DEFAULT 'x").is_err());
        assert_eq!(
            tokens("a--b").unwrap(),
            vec![w("a"), P('-'), P('-'), w("b")]
        );
    }
}
