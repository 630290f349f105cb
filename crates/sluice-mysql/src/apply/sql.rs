//! SQL for the apply sinks, in two dialects: identifier quoting, value
//! rendering that inverts the source's JSON mapping per *target* column
//! type (DECIMAL strings, base64 binary, ISO temporal strings, GEOMETRY as
//! SRID + WKB…), upserts, deletes and no-primary-key matching. Values are
//! rendered as escaped literals; nothing here touches a database.

use std::collections::HashMap;
use std::fmt::Write;

use base64::Engine;
use serde_json::Value;

/// The target's SQL dialect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Mysql,
    Postgres,
}

/// How a target column takes a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Number,
    Bool,
    Text,
    Binary,
    Geometry,
    Date,
    DateTime,
    Timestamp,
    Time,
    Json,
}

impl Kind {
    /// From `information_schema.columns.data_type` of the target.
    pub fn from_data_type(t: &str) -> Kind {
        match t.to_ascii_lowercase().as_str() {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "decimal"
            | "numeric" | "float" | "double" | "real" | "double precision" | "bit" | "year" => {
                Kind::Number
            }
            "boolean" => Kind::Bool,
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "bytea" => {
                Kind::Binary
            }
            "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
            | "multipolygon" | "geometrycollection" => Kind::Geometry,
            "date" => Kind::Date,
            "datetime" | "timestamp without time zone" => Kind::DateTime,
            "timestamp" | "timestamp with time zone" => Kind::Timestamp,
            "time" | "time without time zone" | "interval" => Kind::Time,
            "json" | "jsonb" => Kind::Json,
            _ => Kind::Text,
        }
    }
}

/// A target table's columns (name → kind).
#[derive(Clone, Debug, Default)]
pub struct TableMeta {
    pub columns: HashMap<String, Kind>,
}

impl Dialect {
    pub fn ident(self, out: &mut String, name: &str) {
        match self {
            Dialect::Mysql => {
                out.push('`');
                out.push_str(&name.replace('`', "``"));
                out.push('`');
            }
            Dialect::Postgres => {
                out.push('"');
                out.push_str(&name.replace('"', "\"\""));
                out.push('"');
            }
        }
    }

    pub fn table(self, out: &mut String, db: &str, table: &str) {
        self.ident(out, db);
        out.push('.');
        self.ident(out, table);
    }

    /// A string literal.
    pub fn string(self, out: &mut String, s: &str) -> Result<(), String> {
        out.push('\'');
        match self {
            Dialect::Mysql => {
                // Copy runs of plain bytes; escape the few special ones
                // (all ASCII, so slicing stays on char boundaries).
                let b = s.as_bytes();
                let mut from = 0;
                for (i, &c) in b.iter().enumerate() {
                    let esc = match c {
                        b'\'' => "\\'",
                        b'\\' => "\\\\",
                        0 => "\\0",
                        b'\n' => "\\n",
                        b'\r' => "\\r",
                        0x1a => "\\Z",
                        _ => continue,
                    };
                    out.push_str(&s[from..i]);
                    out.push_str(esc);
                    from = i + 1;
                }
                out.push_str(&s[from..]);
            }
            Dialect::Postgres => {
                if s.contains('\0') {
                    return Err("PostgreSQL text cannot hold a NUL character".into());
                }
                let mut parts = s.split('\'');
                out.push_str(parts.next().unwrap_or(""));
                for p in parts {
                    out.push_str("''");
                    out.push_str(p);
                }
            }
        }
        out.push('\'');
        Ok(())
    }

    /// An ISO date-time (`T` separator) as a literal with a space.
    fn datetime(self, out: &mut String, s: &str) -> Result<(), String> {
        match s.split_once('T') {
            Some((d, t))
                if s.bytes()
                    .all(|c| !matches!(c, b'\'' | b'\\' | 0 | b'\n' | b'\r' | 0x1a)) =>
            {
                out.push('\'');
                out.push_str(d);
                out.push(' ');
                out.push_str(t);
                out.push('\'');
                Ok(())
            }
            _ => self.string(out, &s.replacen('T', " ", 1)),
        }
    }

    fn bytes(self, out: &mut String, b: &[u8]) {
        match self {
            Dialect::Mysql => {
                if b.is_empty() {
                    out.push_str("''");
                    return;
                }
                out.push_str("X'");
            }
            Dialect::Postgres => out.push_str("'\\x"),
        }
        for x in b {
            let _ = write!(out, "{x:02x}");
        }
        out.push('\'');
    }

    /// Renders a JSON-mapped source value for a target column of `kind`.
    pub fn value(self, out: &mut String, v: &Value, kind: Kind) -> Result<(), String> {
        match v {
            Value::Null => out.push_str("NULL"),
            Value::Bool(b) => out.push_str(match (self, b) {
                (Dialect::Mysql, true) => "1",
                (Dialect::Mysql, false) => "0",
                (_, true) => "true",
                (_, false) => "false",
            }),
            Value::Number(n) => match (self, kind) {
                (Dialect::Postgres, Kind::Bool) => out.push_str(if n.as_f64() == Some(0.0) {
                    "false"
                } else {
                    "true"
                }),
                (_, Kind::Text | Kind::Json) => self.string(out, &n.to_string())?,
                _ => {
                    let _ = write!(out, "{n}");
                }
            },
            Value::String(s) => match kind {
                Kind::Binary | Kind::Geometry => {
                    let b = base64::engine::general_purpose::STANDARD
                        .decode(s)
                        .map_err(|e| format!("binary value is not base64: {e}"))?;
                    if kind == Kind::Geometry && self == Dialect::Mysql {
                        if b.len() < 5 {
                            return Err("GEOMETRY value shorter than SRID + WKB".into());
                        }
                        let srid = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                        out.push_str("ST_GeomFromWKB(");
                        self.bytes(out, &b[4..]);
                        let _ = write!(out, ", {srid})");
                    } else {
                        self.bytes(out, &b);
                    }
                }
                Kind::DateTime | Kind::Timestamp if self == Dialect::Mysql => {
                    self.datetime(out, s.trim_end_matches('Z'))?;
                }
                Kind::DateTime => self.datetime(out, s)?,
                Kind::Bool => out.push_str(if matches!(s.as_str(), "" | "0" | "false") {
                    "false"
                } else {
                    "true"
                }),
                _ => self.string(out, s)?,
            },
            Value::Array(_) | Value::Object(_) => self.string(out, &v.to_string())?,
        }
        Ok(())
    }
}

fn kind_of(meta: &TableMeta, col: &str, table: &str) -> Result<Kind, String> {
    meta.columns
        .get(col)
        .copied()
        .ok_or_else(|| format!("column `{col}` does not exist in target table {table}"))
}

/// `INSERT … ON DUPLICATE KEY UPDATE` / `ON CONFLICT DO UPDATE` of after
/// images (one or many rows with the same column list); a plain INSERT for
/// a table without a primary key.
pub fn upsert(
    d: Dialect,
    db: &str,
    table: &str,
    meta: &TableMeta,
    pk: &[String],
    rows: &[&serde_json::Map<String, Value>],
) -> Result<String, String> {
    let mut out = String::with_capacity(128 + rows.len() * 96);
    let Some(first) = rows.first() else {
        return Ok(out);
    };
    let cols = upsert_columns(meta, &format!("{db}.{table}"), first)?;
    upsert_head(d, &mut out, db, table, &cols);
    for (i, r) in rows.iter().enumerate() {
        out.push_str(if i > 0 { ",(" } else { "(" });
        for (j, (c, k)) in cols.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let v = r.get(c.as_str()).unwrap_or(&Value::Null);
            d.value(&mut out, v, *k)
                .map_err(|e| format!("column `{c}`: {e}"))?;
        }
        out.push(')');
    }
    upsert_tail(d, &mut out, pk, &cols);
    Ok(out)
}

/// The columns of an upsert (those of its first row) with their target
/// kinds; `name` is the target table for errors.
pub fn upsert_columns<'a>(
    meta: &TableMeta,
    name: &str,
    first: &'a serde_json::Map<String, Value>,
) -> Result<Vec<(&'a String, Kind)>, String> {
    first
        .keys()
        .map(|c| kind_of(meta, c, name).map(|k| (c, k)))
        .collect()
}

/// `INSERT INTO db.table (cols) VALUES `.
pub fn upsert_head(d: Dialect, out: &mut String, db: &str, table: &str, cols: &[(&String, Kind)]) {
    out.push_str("INSERT INTO ");
    d.table(out, db, table);
    out.push_str(" (");
    for (i, (c, _)) in cols.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        d.ident(out, c);
    }
    out.push_str(") VALUES ");
}

/// ` ON DUPLICATE KEY UPDATE …` / ` ON CONFLICT … DO …` (nothing for a
/// table without a primary key).
pub fn upsert_tail(d: Dialect, out: &mut String, pk: &[String], cols: &[(&String, Kind)]) {
    if pk.is_empty() {
        return;
    }
    let rest: Vec<&&String> = cols
        .iter()
        .map(|(c, _)| c)
        .filter(|c| !pk.contains(c))
        .collect();
    match d {
        Dialect::Mysql => {
            out.push_str(" ON DUPLICATE KEY UPDATE ");
            let set: Vec<&&String> = if rest.is_empty() {
                cols.iter().map(|(c, _)| c).take(1).collect()
            } else {
                rest
            };
            for (i, c) in set.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                d.ident(out, c);
                out.push_str("=VALUES(");
                d.ident(out, c);
                out.push(')');
            }
        }
        Dialect::Postgres => {
            out.push_str(" ON CONFLICT (");
            for (i, c) in pk.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                d.ident(out, c);
            }
            if rest.is_empty() {
                out.push_str(") DO NOTHING");
            } else {
                out.push_str(") DO UPDATE SET ");
                for (i, c) in rest.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    d.ident(out, c);
                    out.push_str("=EXCLUDED.");
                    d.ident(out, c);
                }
            }
        }
    }
}

/// `DELETE FROM db.table WHERE (pk) IN (` (the rows and `)` follow).
pub fn delete_head(d: Dialect, out: &mut String, db: &str, table: &str, pk: &[String]) {
    out.push_str("DELETE FROM ");
    d.table(out, db, table);
    out.push_str(" WHERE (");
    for (i, c) in pk.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        d.ident(out, c);
    }
    out.push_str(") IN (");
}

/// The target kinds of a table's primary-key columns.
pub fn pk_kinds(meta: &TableMeta, name: &str, pk: &[String]) -> Result<Vec<Kind>, String> {
    pk.iter().map(|c| kind_of(meta, c, name)).collect()
}

/// `DELETE … WHERE (pk) IN (…)` for one or many before images.
pub fn delete_by_pk(
    d: Dialect,
    db: &str,
    table: &str,
    meta: &TableMeta,
    pk: &[String],
    rows: &[&serde_json::Map<String, Value>],
) -> Result<String, String> {
    let kinds = pk_kinds(meta, &format!("{db}.{table}"), pk)?;
    let mut out = String::with_capacity(64 + rows.len() * 24);
    delete_head(d, &mut out, db, table, pk);
    for (i, r) in rows.iter().enumerate() {
        out.push_str(if i > 0 { ",(" } else { "(" });
        for (j, c) in pk.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let v = r
                .get(c)
                .ok_or_else(|| format!("before image lacks primary-key column `{c}`"))?;
            d.value(&mut out, v, kinds[j])?;
        }
        out.push(')');
    }
    out.push(')');
    Ok(out)
}

/// The WHERE clause matching every before-image column (no primary key).
fn match_all(
    d: Dialect,
    out: &mut String,
    meta: &TableMeta,
    name: &str,
    before: &serde_json::Map<String, Value>,
) -> Result<(), String> {
    for (i, (c, v)) in before.iter().enumerate() {
        let k = kind_of(meta, c, name)?;
        out.push_str(if i > 0 { " AND " } else { " WHERE " });
        d.ident(out, c);
        if v.is_null() {
            out.push_str(" IS NULL");
        } else {
            out.push('=');
            d.value(out, v, k)?;
        }
    }
    Ok(())
}

/// Delete or update one row of a table without a primary key, matched on
/// all before-image columns, at most one row (`LIMIT 1`; PostgreSQL by
/// `ctid`).
pub fn no_pk_change(
    d: Dialect,
    db: &str,
    table: &str,
    meta: &TableMeta,
    before: &serde_json::Map<String, Value>,
    after: Option<&serde_json::Map<String, Value>>,
) -> Result<String, String> {
    let name = format!("{db}.{table}");
    let mut out = String::with_capacity(256);
    let mut set = String::new();
    if let Some(a) = after {
        for (i, (c, v)) in a.iter().enumerate() {
            let k = kind_of(meta, c, &name)?;
            if i > 0 {
                set.push(',');
            }
            d.ident(&mut set, c);
            set.push('=');
            d.value(&mut set, v, k)
                .map_err(|e| format!("column `{c}`: {e}"))?;
        }
    }
    match d {
        Dialect::Mysql => {
            out.push_str(if after.is_some() {
                "UPDATE "
            } else {
                "DELETE FROM "
            });
            d.table(&mut out, db, table);
            if after.is_some() {
                out.push_str(" SET ");
                out.push_str(&set);
            }
            match_all(d, &mut out, meta, &name, before)?;
            out.push_str(" LIMIT 1");
        }
        Dialect::Postgres => {
            out.push_str(if after.is_some() {
                "UPDATE "
            } else {
                "DELETE FROM "
            });
            d.table(&mut out, db, table);
            if after.is_some() {
                out.push_str(" SET ");
                out.push_str(&set);
            }
            out.push_str(" WHERE ctid = (SELECT ctid FROM ");
            d.table(&mut out, db, table);
            match_all(d, &mut out, meta, &name, before)?;
            out.push_str(" LIMIT 1)");
        }
    }
    Ok(out)
}

/// Rewrites database names in a DDL statement through `database_map`:
/// qualified names (`db`.t, db.t) and `CREATE/DROP/ALTER DATABASE db`.
pub fn map_ddl(sql: &str, map: &std::collections::BTreeMap<String, String>) -> String {
    let mut s = sql.to_string();
    for (from, to) in map {
        let f = regex::escape(from);
        let qualified =
            regex::Regex::new(&format!(r"(?i)(^|[^A-Za-z0-9_$`.])(`{f}`|{f})\s*\.")).ok();
        if let Some(re) = qualified {
            s = re.replace_all(&s, format!("${{1}}`{to}`.")).into_owned();
        }
        let database = regex::Regex::new(&format!(
            r"(?i)\b(DATABASE|SCHEMA)(\s+IF\s+(NOT\s+)?EXISTS)?\s+(`{f}`|{f})(\s|;|$)"
        ))
        .ok();
        if let Some(re) = database {
            s = re
                .replace_all(&s, format!("${{1}}${{2}} `{to}`${{5}}"))
                .into_owned();
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_and_maps() {
        let mut m = TableMeta::default();
        m.columns.insert("id".into(), Kind::Number);
        m.columns.insert("b".into(), Kind::Binary);
        m.columns.insert("t".into(), Kind::Timestamp);
        m.columns.insert("s".into(), Kind::Text);
        let row = json!({"id": 1, "b": "AAE=", "t": "2024-01-02T03:04:05.5Z", "s": "a'b\\"});
        let row = row.as_object().unwrap();
        let sql = upsert(Dialect::Mysql, "d", "t", &m, &["id".into()], &[row]).unwrap();
        assert_eq!(
            sql,
            "INSERT INTO `d`.`t` (`id`,`b`,`t`,`s`) VALUES (1,X'0001','2024-01-02 03:04:05.5','a\\'b\\\\') ON DUPLICATE KEY UPDATE `b`=VALUES(`b`),`t`=VALUES(`t`),`s`=VALUES(`s`)"
        );
        let pg = upsert(Dialect::Postgres, "d", "t", &m, &["id".into()], &[row]).unwrap();
        assert!(pg.contains("'\\x0001'") && pg.contains("'a''b\\'"), "{pg}");
        let mut map = std::collections::BTreeMap::new();
        map.insert("shop".to_string(), "replica".to_string());
        assert_eq!(
            map_ddl(
                "ALTER TABLE shop.t ADD c INT; RENAME TABLE `shop`.a TO shop.b",
                &map
            ),
            "ALTER TABLE `replica`.t ADD c INT; RENAME TABLE `replica`.a TO `replica`.b"
        );
        assert_eq!(
            map_ddl("CREATE DATABASE shop", &map),
            "CREATE DATABASE `replica`"
        );
        assert_eq!(
            map_ddl("create table shopx.t (a int)", &map),
            "create table shopx.t (a int)"
        );
    }
}
