//! MySQL / MariaDB `ALTER TABLE`, `RENAME TABLE` and `DROP TABLE` →
//! PostgreSQL, for the
//! `type: postgres` apply sink: columns added, dropped, renamed, changed
//! and modified (types through the documented mapping, `target::pg_type`,
//! the one `create_tables` uses), defaults, the primary key, table
//! renames and moves; indexes, foreign keys, checks and table options are
//! noted and ignored. A tokenizer (`pg_lex`) and a small parser, not a
//! SQL engine: a clause it does not understand is an error naming it.
//! Touches nothing but memory.

use std::collections::BTreeMap;

use super::pg_lex::{tokens, Tok, INDEX_WORDS, TABLE_OPTIONS};
use super::sql::Dialect;
use super::target::lit;

/// The PostgreSQL statements for one source statement (run in order, in
/// one implicit transaction) and the clauses ignored (to be logged).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Translated {
    pub sql: Vec<String>,
    pub ignored: Vec<String>,
}

/// Translates an `ALTER TABLE`, `RENAME TABLE` or `DROP TABLE` statement. Unqualified
/// names are in `default_db`; databases become schemas through `map`.
/// `keep(db, table)` tells which source tables the sink replicates: a
/// RENAME / DROP TABLE leaves the others alone.
pub fn translate(
    stmt: &str,
    default_db: &str,
    map: &BTreeMap<String, String>,
    keep: &dyn Fn(&str, &str) -> bool,
) -> Result<Translated, String> {
    if stmt.contains("$sluice$") {
        return Err("the statement holds `$sluice$` (the quote of the generated DO blocks)".into());
    }
    let toks = tokens(stmt)?;
    let mut p = Parser {
        t: &toks,
        i: 0,
        db: default_db,
        map,
        keep,
        out: Translated::default(),
        table: Default::default(),
    };
    if p.eat("ALTER") {
        p.alter()?;
    } else if p.eat("RENAME") {
        p.rename_tables()?;
    } else if p.eat("DROP") {
        p.drop_tables()?;
    } else {
        return Err("not an ALTER TABLE, RENAME TABLE or DROP TABLE statement".into());
    }
    Ok(p.out)
}

struct Parser<'a> {
    t: &'a [Tok],
    i: usize,
    db: &'a str,
    map: &'a BTreeMap<String, String>,
    keep: &'a dyn Fn(&str, &str) -> bool,
    out: Translated,
    /// The table an ALTER works on: (target schema, name).
    table: (String, String),
}

fn q(name: &str) -> String {
    let mut s = String::new();
    Dialect::Postgres.ident(&mut s, name);
    s
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a Tok> {
        self.t.get(self.i)
    }

    fn at(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
    }

    fn at_any(&self, ws: &[&str]) -> bool {
        ws.iter().any(|w| self.at(w))
    }

    fn eat(&mut self, w: &str) -> bool {
        let yes = self.at(w);
        if yes {
            self.i += 1;
        }
        yes
    }

    fn eat_p(&mut self, c: char) -> bool {
        let yes = self.peek() == Some(&Tok::P(c));
        if yes {
            self.i += 1;
        }
        yes
    }

    fn near(&self) -> String {
        let rest: Vec<String> = self.t[self.i.min(self.t.len())..]
            .iter()
            .take(8)
            .map(Tok::text)
            .collect();
        if rest.is_empty() {
            "the end of the statement".into()
        } else {
            format!("`{}`", rest.join(" "))
        }
    }

    fn expect(&mut self, w: &str) -> Result<(), String> {
        if self.eat(w) {
            Ok(())
        } else {
            Err(format!("expected {w} at {}", self.near()))
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(Tok::Word(w)) | Some(Tok::Name(w)) => {
                self.i += 1;
                Ok(w.clone())
            }
            _ => Err(format!("expected a name at {}", self.near())),
        }
    }

    /// `[db.]name` → (target schema, name).
    fn table_name(&mut self) -> Result<(String, String), String> {
        self.source_table().map(|(_, s, t)| (s, t))
    }

    /// `[db.]name` → (source database, target schema, name).
    fn source_table(&mut self) -> Result<(String, String, String), String> {
        let first = self.ident()?;
        let (db, t) = if self.eat_p('.') {
            (first, self.ident()?)
        } else {
            (self.db.to_string(), first)
        };
        let schema = self.map.get(&db).cloned().unwrap_or_else(|| db.clone());
        Ok((db, schema, t))
    }

    fn done(&self) -> bool {
        self.i >= self.t.len()
    }

    /// Skips to the end of the clause (a comma outside parentheses).
    fn skip_clause(&mut self, from: usize) {
        let mut depth = 0i32;
        while let Some(t) = self.peek() {
            match t {
                Tok::P('(') => depth += 1,
                Tok::P(')') => depth -= 1,
                Tok::P(',') if depth <= 0 => break,
                _ => {}
            }
            self.i += 1;
        }
        let text: Vec<String> = self.t[from..self.i].iter().map(Tok::text).collect();
        self.out.ignored.push(text.join(" "));
    }

    /// Skips a parenthesised list, if one is next.
    fn skip_parens(&mut self) {
        if self.peek() != Some(&Tok::P('(')) {
            return;
        }
        let mut depth = 0i32;
        while let Some(t) = self.peek() {
            self.i += 1;
            match t {
                Tok::P('(') => depth += 1,
                Tok::P(')') => {
                    depth -= 1;
                    if depth == 0 {
                        return;
                    }
                }
                _ => {}
            }
        }
    }

    /// DROP TABLE [IF EXISTS] a [, b]… [RESTRICT | CASCADE]
    fn drop_tables(&mut self) -> Result<(), String> {
        self.expect("TABLE")?;
        if self.eat("IF") {
            self.expect("EXISTS")?;
        }
        loop {
            let (db, s, t) = self.source_table()?;
            if (self.keep)(&db, &t) {
                self.out
                    .sql
                    .push(format!("DROP TABLE IF EXISTS {}.{}", q(&s), q(&t)));
            }
            if !self.eat_p(',') {
                break;
            }
        }
        let _ = self.eat("RESTRICT") || self.eat("CASCADE");
        if !self.done() {
            return Err(format!("unexpected {}", self.near()));
        }
        Ok(())
    }

    /// RENAME TABLE a TO b [, c TO d]…
    fn rename_tables(&mut self) -> Result<(), String> {
        if !self.eat("TABLE") {
            self.expect("TABLES")?;
        }
        loop {
            let (db, s, t) = self.source_table()?;
            self.expect("TO")?;
            let to = self.table_name()?;
            if (self.keep)(&db, &t) {
                self.rename_table(&(s, t), &to);
            }
            if !self.eat_p(',') {
                break;
            }
        }
        if !self.done() {
            return Err(format!("unexpected {}", self.near()));
        }
        Ok(())
    }

    fn rename_table(&mut self, (s1, t1): &(String, String), (s2, t2): &(String, String)) {
        if t1 != t2 {
            self.out.sql.push(format!(
                "ALTER TABLE {}.{} RENAME TO {}",
                q(s1),
                q(t1),
                q(t2)
            ));
        }
        if s1 != s2 {
            self.out.sql.push(format!(
                "CREATE SCHEMA IF NOT EXISTS {}; ALTER TABLE {}.{} SET SCHEMA {}",
                q(s2),
                q(s1),
                q(t2),
                q(s2)
            ));
        }
    }

    /// ALTER [ONLINE] [IGNORE] TABLE [IF EXISTS] t clause [, clause]…
    fn alter(&mut self) -> Result<(), String> {
        while self.eat("ONLINE") || self.eat("OFFLINE") || self.eat("IGNORE") {}
        self.expect("TABLE")?;
        if self.eat("IF") {
            self.expect("EXISTS")?;
        }
        self.table = self.table_name()?;
        if self.eat("WAIT") {
            self.i += 1;
        } else {
            self.eat("NOWAIT");
        }
        while !self.done() {
            self.clause()?;
            self.eat_p(',');
        }
        Ok(())
    }

    /// The table being altered, quoted.
    fn t(&self) -> String {
        format!("{}.{}", q(&self.table.0), q(&self.table.1))
    }

    /// One ALTER TABLE clause (RENAME TO changes the table of the next).
    fn clause(&mut self) -> Result<(), String> {
        let start = self.i;
        let t = &self.t();
        if self.eat("ADD") {
            if self.at_any(&["PARTITION", "PERIOD", "SYSTEM"]) {
                return Err(format!("ADD {} is not replayed", self.near()));
            }
            let constraint = self.at("CONSTRAINT");
            if constraint {
                self.i += 1;
                if !self.at_any(&["PRIMARY", "UNIQUE", "FOREIGN", "CHECK"]) {
                    self.ident()?;
                }
            }
            if self.eat("PRIMARY") {
                self.expect("KEY")?;
                return self.add_primary_key(t);
            }
            if constraint || self.at_any(INDEX_WORDS) {
                self.skip_clause(start);
                return Ok(());
            }
            self.eat("COLUMN");
            let if_not = self.eat("IF");
            if if_not {
                self.expect("NOT")?;
                self.expect("EXISTS")?;
            }
            if self.eat_p('(') {
                loop {
                    self.add_column(t, if_not)?;
                    if !self.eat_p(',') {
                        break;
                    }
                }
                if !self.eat_p(')') {
                    return Err(format!("expected ) at {}", self.near()));
                }
                return Ok(());
            }
            return self.add_column(t, if_not);
        }
        if self.eat("DROP") {
            if self.at_any(&["PARTITION", "SYSTEM", "PERIOD"]) {
                return Err(format!("DROP {} is not replayed", self.near()));
            }
            if self.eat("PRIMARY") {
                self.expect("KEY")?;
                self.out.sql.push(drop_primary_key(t));
                return Ok(());
            }
            if self.at_any(INDEX_WORDS) {
                self.skip_clause(start);
                return Ok(());
            }
            self.eat("COLUMN");
            let if_exists = self.eat("IF");
            if if_exists {
                self.expect("EXISTS")?;
            }
            let c = self.ident()?;
            let _ = self.eat("RESTRICT") || self.eat("CASCADE");
            self.out.sql.push(format!(
                "ALTER TABLE {t} DROP COLUMN {}{}",
                if if_exists { "IF EXISTS " } else { "" },
                q(&c)
            ));
            return Ok(());
        }
        if self.eat("MODIFY") {
            self.eat("COLUMN");
            self.no_if_exists("MODIFY")?;
            let c = self.ident()?;
            let def = self.column_def()?;
            self.redefine(t, &c, &def);
            return Ok(());
        }
        if self.eat("CHANGE") {
            self.eat("COLUMN");
            self.no_if_exists("CHANGE")?;
            let old = self.ident()?;
            let new = self.ident()?;
            let def = self.column_def()?;
            if old != new {
                self.out.sql.push(format!(
                    "ALTER TABLE {t} RENAME COLUMN {} TO {}",
                    q(&old),
                    q(&new)
                ));
            }
            self.redefine(t, &new, &def);
            return Ok(());
        }
        if self.eat("RENAME") {
            if self.at_any(&["INDEX", "KEY"]) {
                self.skip_clause(start);
                return Ok(());
            }
            if self.eat("COLUMN") {
                let old = self.ident()?;
                self.expect("TO")?;
                let new = self.ident()?;
                self.out.sql.push(format!(
                    "ALTER TABLE {t} RENAME COLUMN {} TO {}",
                    q(&old),
                    q(&new)
                ));
                return Ok(());
            }
            let _ = self.eat("TO") || self.eat("AS");
            let to = self.table_name()?;
            let from = std::mem::replace(&mut self.table, to.clone());
            self.rename_table(&from, &to);
            return Ok(());
        }
        if self.eat("ALTER") {
            if self.at_any(&["INDEX", "KEY", "CHECK", "CONSTRAINT"]) {
                self.skip_clause(start);
                return Ok(());
            }
            self.eat("COLUMN");
            let c = self.ident()?;
            if self.eat("SET") {
                if self.eat("DEFAULT") {
                    let d = self.default_value(None)?;
                    self.out.sql.push(format!(
                        "ALTER TABLE {t} ALTER COLUMN {} SET DEFAULT {d}",
                        q(&c)
                    ));
                    return Ok(());
                }
                if self.eat("VISIBLE") || self.eat("INVISIBLE") {
                    self.out
                        .ignored
                        .push(format!("ALTER COLUMN {c} SET VISIBLE"));
                    return Ok(());
                }
            } else if self.eat("DROP") && self.eat("DEFAULT") {
                self.out.sql.push(format!(
                    "ALTER TABLE {t} ALTER COLUMN {} DROP DEFAULT",
                    q(&c)
                ));
                return Ok(());
            }
            return Err(format!("ALTER COLUMN … {} is not understood", self.near()));
        }
        if self.at_any(TABLE_OPTIONS) {
            if self.at("WITH") || self.at("WITHOUT") {
                let sysv = matches!(self.t.get(self.i + 1), Some(Tok::Word(w)) if w.eq_ignore_ascii_case("SYSTEM"));
                if sysv {
                    return Err(format!("{} is not replayed", self.near()));
                }
            }
            self.skip_clause(start);
            return Ok(());
        }
        Err(format!("the clause at {} is not understood", self.near()))
    }

    fn no_if_exists(&mut self, verb: &str) -> Result<(), String> {
        if self.at("IF") {
            return Err(format!("{verb} IF EXISTS is not translated"));
        }
        Ok(())
    }

    fn add_primary_key(&mut self, t: &str) -> Result<(), String> {
        if self.eat("USING") {
            self.ident()?;
        }
        if !self.eat_p('(') {
            return Err(format!("expected ( at {}", self.near()));
        }
        let mut cols = Vec::new();
        loop {
            cols.push(q(&self.ident()?));
            self.skip_parens(); // a prefix length: col(10)
            let _ = self.eat("ASC") || self.eat("DESC");
            if !self.eat_p(',') {
                break;
            }
        }
        if !self.eat_p(')') {
            return Err(format!("expected ) at {}", self.near()));
        }
        while !self.done() && self.peek() != Some(&Tok::P(',')) {
            self.i += 1; // index options (USING, COMMENT, …)
        }
        self.out.sql.push(add_primary_key(t, &cols.join(", ")));
        Ok(())
    }

    fn add_column(&mut self, t: &str, if_not: bool) -> Result<(), String> {
        let c = self.ident()?;
        let def = self.column_def()?;
        if def.auto_increment {
            return Err(format!(
                "ADD COLUMN {c} … AUTO_INCREMENT numbers the existing rows on the source only"
            ));
        }
        let mut s = format!(
            "ALTER TABLE {t} ADD COLUMN {}{} {}",
            if if_not { "IF NOT EXISTS " } else { "" },
            q(&c),
            def.ty.pg()
        );
        let implicit = match (&def.default, def.not_null) {
            (None, true) => def.ty.implicit_default(),
            _ => None,
        };
        if let Some(d) = def.default.as_ref().or(implicit.as_ref()) {
            s.push_str(" DEFAULT ");
            s.push_str(d);
        }
        if def.not_null {
            s.push_str(" NOT NULL");
        }
        self.out.sql.push(s);
        if implicit.is_some() {
            self.out.sql.push(format!(
                "ALTER TABLE {t} ALTER COLUMN {} DROP DEFAULT",
                q(&c)
            ));
        }
        if def.primary {
            self.out.sql.push(add_primary_key(t, &q(&c)));
        }
        Ok(())
    }

    /// MODIFY / CHANGE: the column's type, nullability and default become
    /// the definition's (MySQL redefines the whole column).
    fn redefine(&mut self, t: &str, c: &str, def: &ColDef) {
        let (cq, ty) = (q(c), def.ty.pg());
        self.out.sql.push(format!(
            "ALTER TABLE {t} ALTER COLUMN {cq} TYPE {ty} USING {cq}::{ty}"
        ));
        if def.not_null {
            self.out
                .sql
                .push(format!("ALTER TABLE {t} ALTER COLUMN {cq} SET NOT NULL"));
        } else {
            // A primary-key column stays NOT NULL (MySQL makes it so).
            self.out.sql.push(format!(
                "DO $sluice$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a \
                 ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = {}::regclass \
                 AND i.indisprimary AND a.attname = {}) THEN ALTER TABLE {t} ALTER COLUMN {cq} \
                 DROP NOT NULL; END IF; END $sluice$",
                lit(Dialect::Postgres, t),
                lit(Dialect::Postgres, c)
            ));
        }
        match &def.default {
            Some(d) => self
                .out
                .sql
                .push(format!("ALTER TABLE {t} ALTER COLUMN {cq} SET DEFAULT {d}")),
            None => self
                .out
                .sql
                .push(format!("ALTER TABLE {t} ALTER COLUMN {cq} DROP DEFAULT")),
        }
        if def.primary {
            self.out.sql.push(add_primary_key(t, &cq));
        }
        if def.auto_increment {
            self.out.ignored.push(format!("AUTO_INCREMENT of {c}"));
        }
    }
}

#[path = "pg_coldef.rs"]
mod coldef;

use coldef::{add_primary_key, drop_primary_key, ColDef};

#[cfg(test)]
#[path = "pg_ddl_tests.rs"]
mod tests;
