//! Classifies QUERY-event statements: transaction control (BEGIN, COMMIT,
//! ROLLBACK, XA), schema changes (CREATE / ALTER / DROP / RENAME / TRUNCATE
//! of tables, indexes and databases, with the tables they name) and the
//! rest. A tokenizer over the statement text, not a SQL parser. Touches
//! nothing but memory.

/// What a QUERY event's statement means to the change stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Statement {
    Begin,
    Commit,
    Rollback,
    /// A schema change: the (db, table) pairs it names; a `None` table
    /// means the whole database.
    Ddl(Vec<(Option<String>, Option<String>)>),
    /// Anything else (GRANT, SAVEPOINT, FLUSH, statement-based DML…).
    Other,
}

fn tokens(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() && out.len() < 40 {
        let c = b[i];
        if c.is_ascii_whitespace() || c == b';' {
            i += 1;
        } else if b[i..].starts_with(b"/*") {
            i = sql[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
        } else if b[i..].starts_with(b"--") || c == b'#' {
            i = sql[i..].find('\n').map_or(b.len(), |e| i + e + 1);
        } else if c == b',' || c == b'(' || c == b')' {
            out.push((c as char).to_string());
            i += 1;
        } else {
            // An identifier, possibly dotted and backquoted: `db`.`t`, db.t.
            let mut tok = String::new();
            while i < b.len() {
                let c = b[i];
                if c == b'`' {
                    let end = sql[i + 1..].find('`').map_or(b.len(), |e| i + 1 + e);
                    tok.push('`');
                    tok.push_str(&sql[i + 1..end.min(sql.len())]);
                    tok.push('`');
                    i = end + 1;
                } else if c.is_ascii_whitespace() || matches!(c, b',' | b'(' | b')' | b';') {
                    break;
                } else {
                    let ch = sql[i..].chars().next().unwrap_or(' ');
                    tok.push(ch);
                    i += ch.len_utf8();
                }
            }
            out.push(tok);
        }
    }
    out
}

fn kw(t: Option<&String>, word: &str) -> bool {
    t.is_some_and(|t| !t.starts_with('`') && t.eq_ignore_ascii_case(word))
}

/// `db`.`t` → (Some(db), t); `t` → (None, t).
fn name(tok: &str) -> (Option<String>, String) {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for ch in tok.chars() {
        match ch {
            '`' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(ch),
        }
    }
    parts.push(cur);
    if parts.len() >= 2 {
        let t = parts.pop().unwrap_or_default();
        (parts.pop(), t)
    } else {
        (None, parts.pop().unwrap_or_default())
    }
}

pub fn classify(sql: &str) -> Statement {
    let t = tokens(sql);
    let mut i = 0;
    let first = t.first();
    if kw(first, "BEGIN") || (kw(first, "START") && kw(t.get(1), "TRANSACTION")) {
        return Statement::Begin;
    }
    if kw(first, "COMMIT") || (kw(first, "XA") && kw(t.get(1), "COMMIT")) {
        return Statement::Commit;
    }
    if kw(first, "ROLLBACK") && !kw(t.get(1), "TO") || (kw(first, "XA") && kw(t.get(1), "ROLLBACK"))
    {
        return Statement::Rollback;
    }
    let verb = match first {
        Some(v) => v.to_ascii_uppercase(),
        None => return Statement::Other,
    };
    if !matches!(
        verb.as_str(),
        "CREATE" | "ALTER" | "DROP" | "RENAME" | "TRUNCATE"
    ) {
        return Statement::Other;
    }
    i += 1;
    // Skip modifiers up to the object keyword.
    const MODIFIERS: &[&str] = &[
        "OR",
        "REPLACE",
        "TEMPORARY",
        "ONLINE",
        "IGNORE",
        "UNIQUE",
        "FULLTEXT",
        "SPATIAL",
        "DEFINER",
        "SQL",
        "SECURITY",
        "ALGORITHM",
    ];
    while t
        .get(i)
        .is_some_and(|w| MODIFIERS.iter().any(|m| kw(Some(w), m)) || w.contains('='))
    {
        i += 1;
    }
    let object = t.get(i).map(|s| s.to_ascii_uppercase()).unwrap_or_default();
    let skip_if = |mut i: usize| {
        if kw(t.get(i), "IF") {
            i += 1;
            if kw(t.get(i), "NOT") {
                i += 1;
            }
            if kw(t.get(i), "EXISTS") {
                i += 1;
            }
        }
        i
    };
    let mut names = Vec::new();
    match object.as_str() {
        "TABLE" | "TABLES" => {
            i = skip_if(i + 1);
            if verb == "DROP" || verb == "RENAME" {
                // A list: DROP TABLE a, b; RENAME TABLE a TO b, c TO d.
                while let Some(tok) = t.get(i) {
                    if tok != ","
                        && !kw(Some(tok), "TO")
                        && !kw(Some(tok), "RESTRICT")
                        && !kw(Some(tok), "CASCADE")
                    {
                        let (db, tb) = name(tok);
                        names.push((db, Some(tb)));
                    }
                    i += 1;
                }
            } else if let Some(tok) = t.get(i) {
                let (db, tb) = name(tok);
                names.push((db, Some(tb)));
            }
        }
        "DATABASE" | "SCHEMA" => {
            i = skip_if(i + 1);
            if let Some(tok) = t.get(i) {
                names.push((Some(name(tok).1), None));
            }
        }
        "INDEX" => {
            if let Some(on) = t.iter().skip(i).position(|w| kw(Some(w), "ON")) {
                if let Some(tok) = t.get(i + on + 1) {
                    let (db, tb) = name(tok);
                    names.push((db, Some(tb)));
                }
            }
        }
        _ if verb == "TRUNCATE" => {
            if let Some(tok) = t.get(i) {
                let (db, tb) = name(tok);
                names.push((db, Some(tb)));
            }
        }
        _ => return Statement::Other,
    }
    Statement::Ddl(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ddl(sql: &str) -> Vec<(Option<String>, Option<String>)> {
        match classify(sql) {
            Statement::Ddl(v) => v,
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn classifies_statements() {
        assert_eq!(classify("BEGIN"), Statement::Begin);
        assert_eq!(classify("COMMIT /* implicit */"), Statement::Commit);
        assert_eq!(classify("ROLLBACK TO SAVEPOINT a"), Statement::Other);
        assert_eq!(classify("GRANT ALL ON *.* TO x"), Statement::Other);
        assert_eq!(
            ddl("ALTER TABLE `shop`.`t 1` ADD COLUMN x INT"),
            vec![(Some("shop".into()), Some("t 1".into()))]
        );
        assert_eq!(
            ddl("DROP TABLE IF EXISTS `a`,b.c /* generated by server */"),
            vec![
                (None, Some("a".into())),
                (Some("b".into()), Some("c".into()))
            ]
        );
        assert_eq!(
            ddl("RENAME TABLE a TO b"),
            vec![(None, Some("a".into())), (None, Some("b".into()))]
        );
        assert_eq!(
            ddl("create table if not exists t (id int)"),
            vec![(None, Some("t".into()))]
        );
        assert_eq!(ddl("TRUNCATE t"), vec![(None, Some("t".into()))]);
        assert_eq!(
            ddl("CREATE DATABASE shop"),
            vec![(Some("shop".into()), None)]
        );
        assert_eq!(
            ddl("CREATE UNIQUE INDEX i ON t (a)"),
            vec![(None, Some("t".into()))]
        );
        assert_eq!(classify("CREATE USER x"), Statement::Other);
    }
}
