//! Completes a table schema from information_schema when the table map has
//! no FULL metadata: column names, signedness, charsets, ENUM/SET labels and
//! the primary key, cached per table and dropped on DDL. Checks column count
//! and type family against the table map and refuses (rather than mislabel
//! columns) when they disagree. Reads information_schema over its own query
//! connection.

use std::collections::HashMap;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};

use crate::schema::{Kind, TableSchema};
use crate::text::Charset;

/// One column as information_schema describes it.
#[derive(Clone, Debug)]
pub struct InfoColumn {
    pub name: String,
    pub data_type: String,
    pub column_type: String,
    pub charset: Option<String>,
    pub key: String,
}

/// Cached information_schema lookups.
#[derive(Default)]
pub struct InfoSchema {
    opts: Option<Opts>,
    conn: Option<Conn>,
    cache: HashMap<(String, String), Arc<Vec<InfoColumn>>>,
}

impl InfoSchema {
    pub fn new(opts: Opts) -> InfoSchema {
        InfoSchema {
            opts: Some(opts),
            conn: None,
            cache: HashMap::new(),
        }
    }

    /// Forgets a table (after DDL on it); `None` table forgets the database.
    pub fn invalidate(&mut self, db: &str, table: Option<&str>) {
        match table {
            Some(t) => {
                self.cache.remove(&(db.to_string(), t.to_string()));
            }
            None => self.cache.retain(|(d, _), _| d != db),
        }
    }

    pub async fn columns(&mut self, db: &str, table: &str) -> anyhow::Result<Arc<Vec<InfoColumn>>> {
        let key = (db.to_string(), table.to_string());
        if let Some(c) = self.cache.get(&key) {
            return Ok(c.clone());
        }
        if self.conn.is_none() {
            let opts = self
                .opts
                .clone()
                .ok_or_else(|| anyhow::anyhow!("no connection settings for information_schema"))?;
            self.conn = Some(crate::connect::open(&opts).await?);
        }
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("no connection"))?;
        let rows: Vec<(String, String, String, Option<String>, String)> = match conn
            .exec(
                "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME, COLUMN_KEY \
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
                 ORDER BY ORDINAL_POSITION",
                (db, table),
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                self.conn = None;
                return Err(e.into());
            }
        };
        let cols: Arc<Vec<InfoColumn>> = Arc::new(
            rows.into_iter()
                .map(|(name, data_type, column_type, charset, key)| InfoColumn {
                    name,
                    data_type: data_type.to_ascii_lowercase(),
                    column_type,
                    charset,
                    key,
                })
                .collect(),
        );
        self.cache.insert(key, cols.clone());
        Ok(cols)
    }
}

/// Whether a binlog kind can hold an information_schema data type.
fn compatible(kind: Kind, data_type: &str) -> bool {
    use Kind::*;
    match kind {
        Tiny => matches!(data_type, "tinyint" | "bool" | "boolean"),
        Short => data_type == "smallint",
        Int24 => data_type == "mediumint",
        Long => matches!(data_type, "int" | "integer"),
        LongLong => data_type == "bigint",
        Float => data_type == "float",
        Double => matches!(data_type, "double" | "real"),
        Decimal { .. } => matches!(data_type, "decimal" | "numeric"),
        Bit { .. } => data_type == "bit",
        Date => data_type == "date",
        Time | Time2 { .. } => data_type == "time",
        DateTime | DateTime2 { .. } => data_type == "datetime",
        Timestamp | Timestamp2 { .. } => data_type == "timestamp",
        Year => data_type == "year",
        VarChar { .. } | Char { .. } => {
            matches!(
                data_type,
                "varchar" | "char" | "varbinary" | "binary" | "inet6" | "inet4" | "uuid"
            )
        }
        Blob { .. } => {
            data_type.ends_with("blob") || data_type.ends_with("text") || data_type == "json"
        }
        Geometry { .. } => true,
        Json { .. } => data_type == "json",
        Enum { .. } => data_type == "enum",
        Set { .. } => data_type == "set",
        Null => true,
    }
}

/// ENUM('a','b') / SET('a','b') labels from a COLUMN_TYPE.
fn labels(column_type: &str) -> Vec<String> {
    let Some(open) = column_type.find('(') else {
        return Vec::new();
    };
    let close = column_type
        .rfind(')')
        .filter(|&c| c > open)
        .unwrap_or(column_type.len());
    let body = column_type.get(open + 1..close).unwrap_or("");
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = body.chars().peekable();
    let mut inside = false;
    while let Some(c) = chars.next() {
        match (inside, c) {
            (false, '\'') => inside = true,
            (true, '\'') if chars.peek() == Some(&'\'') => {
                chars.next();
                cur.push('\'');
            }
            (true, '\'') => {
                inside = false;
                out.push(std::mem::take(&mut cur));
            }
            (true, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (true, c) => cur.push(c),
            _ => {}
        }
    }
    out
}

/// Fills names, signedness, charsets, labels and the key of `schema` from
/// `cols`, or says why the two disagree.
pub fn complete(schema: &mut TableSchema, cols: &[InfoColumn]) -> Result<(), String> {
    if cols.len() != schema.columns.len() {
        return Err(format!(
            "the binlog has {} columns but information_schema has {} (the table changed since this event was written; \
             set binlog_row_metadata=FULL to capture across DDL)",
            schema.columns.len(),
            cols.len()
        ));
    }
    let mut pk = Vec::new();
    for (i, (c, info)) in schema.columns.iter_mut().zip(cols).enumerate() {
        if !compatible(c.kind, &info.data_type) {
            return Err(format!(
                "column {} is {:?} in the binlog but `{}` {} in information_schema (the table changed since \
                 this event was written; set binlog_row_metadata=FULL)",
                i + 1,
                c.kind,
                info.name,
                info.column_type
            ));
        }
        c.name = info.name.clone();
        c.unsigned = info.column_type.contains("unsigned");
        if !matches!(c.kind, Kind::Geometry { .. } | Kind::Bit { .. }) {
            c.charset = Charset::from_name(info.charset.as_deref());
        }
        if matches!(c.kind, Kind::Enum { .. } | Kind::Set { .. }) {
            c.labels = labels(&info.column_type);
        }
        if info.key == "PRI" {
            pk.push(info.name.clone());
        }
    }
    schema.primary_key = Arc::new(pk);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_enum_labels() {
        assert_eq!(labels("enum('a','b''c','d,e')"), vec!["a", "b'c", "d,e"]);
        assert_eq!(labels("int(11)"), Vec::<String>::new());
    }
}
