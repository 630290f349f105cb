//! One table of a `verify` run: its source columns and primary key, its
//! primary-key chunk boundaries (keyset over the source), the CRC32
//! checksum of a chunk on either side (server-side `BIT_XOR(CRC32(…))`
//! when both sides are MySQL / MariaDB; otherwise CRC32 of the canonical
//! row text computed here), and the drill-down that lists the primary keys
//! missing, extra or different in a chunk. Touches both databases, reading.

use std::collections::HashMap;
use std::fmt::Write;

use crate::apply::sql::Dialect;
use crate::apply::target::{lit, Conn, DbError};

use super::canon::{self, Column};

/// A table to compare.
#[derive(Clone, Debug)]
pub struct Table {
    pub db: String,
    pub table: String,
    pub target_db: String,
    pub columns: Vec<Column>,
    /// Indexes into `columns`.
    pub pk: Vec<usize>,
}

/// A chunk: primary keys in `(lo, hi]` (`None` = unbounded).
#[derive(Clone, Debug)]
pub struct Chunk {
    pub lo: Option<Vec<String>>,
    pub hi: Option<Vec<String>>,
}

/// Checksum of a chunk: rows, XOR and sum of row CRC32s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Sum {
    pub rows: u64,
    pub xor: u64,
    pub add: u64,
}

/// Differences found in a chunk, by primary key.
#[derive(Clone, Debug, Default)]
pub struct Diff {
    pub missing: Vec<String>,
    pub extra: Vec<String>,
    pub different: Vec<String>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.different.is_empty()
    }
}

/// Reads the source tables' columns and primary keys.
pub async fn describe(
    src: &mut Conn,
    db: &str,
    table: &str,
) -> Result<(Vec<Column>, Vec<String>), DbError> {
    let q = format!(
        "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {} \
         AND TABLE_NAME = {} ORDER BY ORDINAL_POSITION",
        lit(Dialect::Mysql, db),
        lit(Dialect::Mysql, table)
    );
    let cols = src
        .rows(&q)
        .await?
        .into_iter()
        .filter_map(|r| {
            Some(Column {
                name: r.first()?.clone()?,
                data_type: r.get(1)?.clone()?.to_ascii_lowercase(),
            })
        })
        .collect();
    let q = format!(
        "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = {} \
         AND TABLE_NAME = {} AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
        lit(Dialect::Mysql, db),
        lit(Dialect::Mysql, table)
    );
    let pk = src
        .rows(&q)
        .await?
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect();
    Ok((cols, pk))
}

impl Table {
    fn name(&self, d: Dialect, target: bool) -> String {
        let mut s = String::new();
        d.table(
            &mut s,
            if target { &self.target_db } else { &self.db },
            &self.table,
        );
        s
    }

    fn pk_list(&self, d: Dialect) -> String {
        let mut s = String::new();
        for (i, k) in self.pk.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            d.ident(&mut s, &self.columns[*k].name);
        }
        s
    }

    fn tuple(&self, d: Dialect, vals: &[String]) -> String {
        let mut s = String::from("(");
        for (i, (k, v)) in self.pk.iter().zip(vals).enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&canon::key_literal(d, &self.columns[*k], v));
        }
        s.push(')');
        s
    }

    fn range(&self, d: Dialect, c: &Chunk) -> String {
        if self.pk.is_empty() {
            return String::new();
        }
        let mut w = Vec::new();
        let keys = format!("({})", self.pk_list(d));
        if let Some(lo) = &c.lo {
            w.push(format!("{keys} > {}", self.tuple(d, lo)));
        }
        if let Some(hi) = &c.hi {
            w.push(format!("{keys} <= {}", self.tuple(d, hi)));
        }
        if w.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", w.join(" AND "))
        }
    }

    /// Primary-key chunk boundaries of `rows` rows each, from the source.
    pub async fn chunks(&self, src: &mut Conn, rows: usize) -> Result<Vec<Chunk>, DbError> {
        if self.pk.is_empty() {
            return Ok(vec![Chunk { lo: None, hi: None }]);
        }
        let d = Dialect::Mysql;
        let exprs: Vec<String> = self.pk.iter().map(|k| self.columns[*k].expr(d)).collect();
        let mut out = Vec::new();
        let mut lo: Option<Vec<String>> = None;
        loop {
            let c = Chunk {
                lo: lo.clone(),
                hi: None,
            };
            let q = format!(
                "SELECT {} FROM {}{} ORDER BY {} LIMIT 1 OFFSET {}",
                exprs.join(","),
                self.name(d, false),
                self.range(d, &c),
                self.pk_list(d),
                rows.saturating_sub(1)
            );
            let r = src.rows(&q).await?;
            let hi: Option<Vec<String>> = r
                .into_iter()
                .next()
                .map(|r| r.into_iter().map(Option::unwrap_or_default).collect());
            let done = hi.is_none();
            out.push(Chunk {
                lo: lo.clone(),
                hi: hi.clone(),
            });
            if done {
                return Ok(out);
            }
            lo = hi;
        }
    }

    /// Server-side CRC32 checksum (MySQL / MariaDB on both sides).
    pub async fn crc_sql(&self, conn: &mut Conn, target: bool, c: &Chunk) -> Result<Sum, DbError> {
        let d = Dialect::Mysql;
        let mut cols = String::new();
        let mut nulls = String::from("CONCAT(");
        for (i, col) in self.columns.iter().enumerate() {
            let mut n = String::new();
            d.ident(&mut n, &col.name);
            let _ = write!(cols, "{n},");
            let _ = write!(nulls, "{}ISNULL({n})", if i > 0 { "," } else { "" });
        }
        nulls.push(')');
        let q = format!(
            "SELECT COUNT(*), COALESCE(BIT_XOR(CRC32(CONCAT_WS('#',{cols}{nulls}))),0), \
             COALESCE(SUM(CRC32(CONCAT_WS('#',{cols}{nulls}))),0) FROM {}{}",
            self.name(d, target),
            self.range(d, c)
        );
        let r = conn.rows(&q).await?;
        let num = |i: usize| {
            r.first()
                .and_then(|r| r.get(i).cloned().flatten())
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(Sum {
            rows: num(0),
            xor: num(1),
            add: num(2),
        })
    }

    /// Canonical rows of a chunk: primary key text → row CRC32.
    pub async fn rows(
        &self,
        conn: &mut Conn,
        target: bool,
        c: &Chunk,
    ) -> Result<HashMap<String, u32>, DbError> {
        let d = conn.dialect();
        let exprs: Vec<String> = self.columns.iter().map(|c| c.expr(d)).collect();
        let q = format!(
            "SELECT {} FROM {}{}",
            exprs.join(","),
            self.name(d, target),
            self.range(d, c)
        );
        let rows = conn.rows(&q).await?;
        let mut out = HashMap::with_capacity(rows.len());
        let mut text = String::new();
        for (n, r) in rows.iter().enumerate() {
            text.clear();
            for (v, col) in r.iter().zip(&self.columns) {
                canon::push(&mut text, v.as_deref(), col.norm());
                text.push('\u{1f}');
            }
            let crc = crc32fast::hash(text.as_bytes());
            let key = if self.pk.is_empty() {
                // No primary key: the row itself, numbered among equals.
                let mut k = text.replace('\u{1f}', ",");
                k.truncate(k.len().saturating_sub(1));
                let mut i = 0;
                while out.contains_key(&format!("{k}#{i}")) {
                    i += 1;
                }
                let _ = n;
                format!("{k}#{i}")
            } else {
                let mut k = String::new();
                for (i, p) in self.pk.iter().enumerate() {
                    if i > 0 {
                        k.push(',');
                    }
                    canon::push(
                        &mut k,
                        r.get(*p).and_then(|v| v.as_deref()),
                        self.columns[*p].norm(),
                    );
                }
                k
            };
            out.insert(key, crc);
        }
        Ok(out)
    }
}

/// The CRC32 checksum of canonical rows.
pub fn sum_of(rows: &HashMap<String, u32>) -> Sum {
    let mut s = Sum::default();
    for (k, crc) in rows {
        let h = crc32fast::hash(k.as_bytes()) as u64 ^ ((*crc as u64) << 32);
        s.rows += 1;
        s.xor ^= h;
        s.add = s.add.wrapping_add(h);
    }
    s
}

/// Differences between source and target rows of one chunk.
pub fn diff(src: &HashMap<String, u32>, dst: &HashMap<String, u32>) -> Diff {
    let mut d = Diff::default();
    for (k, v) in src {
        match dst.get(k) {
            None => d.missing.push(k.clone()),
            Some(w) if w != v => d.different.push(k.clone()),
            _ => {}
        }
    }
    for k in dst.keys() {
        if !src.contains_key(k) {
            d.extra.push(k.clone());
        }
    }
    d.missing.sort();
    d.extra.sort();
    d.different.sort();
    d
}
