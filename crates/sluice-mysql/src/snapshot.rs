//! Consistent initial snapshot: one `START TRANSACTION WITH CONSISTENT
//! SNAPSHOT` in REPEATABLE READ whose binlog position is read at the same
//! instant (MariaDB: `binlog_snapshot_file/position` and `BINLOG_GTID_POS`,
//! no lock; MySQL: a brief FLUSH TABLES WITH READ LOCK), then every
//! captured table read in primary-key chunks inside that transaction, rows
//! rendered exactly as the binlog decoder renders them (`op: r`). Streaming
//! from the returned position afterwards has no gap and no overlap. Reads
//! the server only.

use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Value};
use serde_json::{Number, Value as Json};
use sluice_core::record::{ChangeSource, Op, Row, RowChange};

use crate::connect;
use crate::filter::TableFilter;
use crate::gtid::Position;
use crate::progress::{KeyValue, SnapshotProgress};
use crate::text::base64;

/// How a snapshot column's SELECT value becomes JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Render {
    Plain,
    Text,
    Binary,
}

struct Column {
    name: String,
    expr: String,
    render: Render,
}

/// One table to read.
#[derive(Clone, Debug)]
pub struct TableRef {
    pub db: String,
    pub table: String,
    pub estimated_rows: u64,
}

struct Cursor {
    table: TableRef,
    columns: Vec<Column>,
    pk: Arc<Vec<String>>,
    /// Raw primary-key values of the last row read.
    last: Option<Vec<Value>>,
    offset: u64,
    done: bool,
}

/// A snapshot in progress.
pub struct Snapshot {
    conn: Conn,
    position: Position,
    server_id: u32,
    connector: String,
    chunk_rows: usize,
    tables: Vec<TableRef>,
    next_table: usize,
    cursor: Option<Cursor>,
    pub rows_done: u64,
    pub rows_estimated: u64,
    /// Finished tables (`db.table`).
    done: Vec<String>,
    /// Last key of the first table, when resuming inside it.
    resume_key: Option<Vec<Value>>,
}

fn q(ident: &str) -> String {
    format!("`{}`", ident.replace('`', "``"))
}

fn expr(name: &str, data_type: &str) -> (String, Render) {
    let c = q(name);
    match data_type {
        "bit" => (format!("{c} + 0"), Render::Plain),
        "date" | "time" => (format!("CAST({c} AS CHAR)"), Render::Text),
        "datetime" => (
            format!("REPLACE(CAST({c} AS CHAR), ' ', 'T')"),
            Render::Text,
        ),
        "timestamp" => (
            format!("CONCAT(REPLACE(CAST({c} AS CHAR), ' ', 'T'), 'Z')"),
            Render::Text,
        ),
        "year" => (format!("CAST({c} AS UNSIGNED)"), Render::Plain),
        "decimal" | "numeric" => (format!("CAST({c} AS CHAR)"), Render::Text),
        _ => (c, Render::Plain),
    }
}

fn render(v: Value, how: Render, binary: bool) -> Json {
    match v {
        Value::NULL => Json::Null,
        Value::Int(i) => Json::Number(i.into()),
        Value::UInt(u) => Json::Number(u.into()),
        Value::Float(f) => {
            let f: f64 = f.to_string().parse().unwrap_or(f as f64);
            Number::from_f64(f).map_or(Json::Null, Json::Number)
        }
        Value::Double(f) => Number::from_f64(f).map_or(Json::Null, Json::Number),
        Value::Bytes(b) => {
            if binary && how != Render::Text {
                Json::String(base64(&b))
            } else {
                Json::String(String::from_utf8_lossy(&b).into_owned())
            }
        }
        other => Json::String(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

impl Snapshot {
    /// Opens the snapshot transaction and lists the tables to read.
    pub async fn begin(
        opts: &Opts,
        filter: &TableFilter,
        chunk_rows: usize,
        mariadb: bool,
        server_id: u32,
        resume: Option<&SnapshotProgress>,
    ) -> anyhow::Result<Snapshot> {
        let mut conn = connect::open(opts).await?;
        conn.query_drop("SET time_zone = '+00:00', NAMES utf8mb4")
            .await?;
        conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await?;
        let position = if mariadb {
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                .await?;
            let rows: Vec<(String, String)> =
                conn.query("SHOW STATUS LIKE 'binlog_snapshot_%'").await?;
            let get = |k: &str| {
                rows.iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v.clone())
            };
            let file = get("binlog_snapshot_file").unwrap_or_default();
            let pos: u64 = get("binlog_snapshot_position")
                .and_then(|p| p.parse().ok())
                .unwrap_or(4);
            let gtid: Option<String> = conn
                .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file.as_str(), pos))
                .await?;
            Position {
                file,
                pos,
                gtid: gtid.unwrap_or_default(),
            }
        } else {
            conn.query_drop("FLUSH TABLES WITH READ LOCK").await?;
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                .await?;
            let p = connect::current_position(&mut conn, false).await;
            conn.query_drop("UNLOCK TABLES").await?;
            p?
        };
        let all: Vec<(String, String, Option<u64>)> = conn
            .query(
                "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES \
                 WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN \
                 ('mysql', 'information_schema', 'performance_schema', 'sys') \
                 ORDER BY TABLE_SCHEMA, TABLE_NAME",
            )
            .await?;
        let done: &[String] = resume.map_or(&[], |r| &r.done);
        let mut tables: Vec<TableRef> = all
            .into_iter()
            .filter(|(d, t, _)| filter.table(d, t) && !done.contains(&format!("{d}.{t}")))
            .map(|(db, table, rows)| TableRef {
                db,
                table,
                estimated_rows: rows.unwrap_or(0),
            })
            .collect();
        let rows_estimated = tables.iter().map(|t| t.estimated_rows).sum();
        let mut resume_key = None;
        let position = match resume {
            Some(r) => {
                // Continue the table in progress first, after its last key.
                if let (Some(name), Some(key)) = (&r.table, &r.last_key) {
                    if let Some(i) = tables
                        .iter()
                        .position(|t| &format!("{}.{}", t.db, t.table) == name)
                    {
                        let t = tables.remove(i);
                        tables.insert(0, t);
                        let key: Result<Vec<Value>, String> =
                            key.iter().map(KeyValue::to_value).collect();
                        resume_key = Some(key.map_err(anyhow::Error::msg)?);
                    }
                }
                r.position.clone()
            }
            None => position,
        };
        Ok(Snapshot {
            done: resume.map_or_else(Vec::new, |r| r.done.clone()),
            resume_key,
            conn,
            position,
            server_id,
            connector: "mysql".into(),
            chunk_rows: chunk_rows.max(1),
            tables,
            next_table: 0,
            cursor: None,
            rows_done: 0,
            rows_estimated,
        })
    }

    /// The binlog position the snapshot is consistent with: stream from here.
    pub fn position(&self) -> &Position {
        &self.position
    }

    pub fn tables(&self) -> &[TableRef] {
        &self.tables
    }

    async fn open_cursor(&mut self, table: TableRef) -> anyhow::Result<Cursor> {
        let cols: Vec<(String, String, Option<String>)> = self
            .conn
            .exec(
                "SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_SET_NAME FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (&table.db, &table.table),
            )
            .await?;
        let pk: Vec<String> = self
            .conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? \
                 AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
                (&table.db, &table.table),
            )
            .await?;
        let columns = cols
            .into_iter()
            .map(|(name, data_type, charset)| {
                let dt = data_type.to_ascii_lowercase();
                let (expr, render) = expr(&name, &dt);
                let binary = charset.is_none() && !matches!(render, Render::Text);
                Column {
                    name,
                    expr,
                    render: if binary { Render::Binary } else { render },
                }
            })
            .collect();
        let last = if pk.is_empty() {
            None
        } else {
            self.resume_key.take()
        };
        self.resume_key = None;
        Ok(Cursor {
            table,
            columns,
            pk: Arc::new(pk),
            last,
            offset: 0,
            done: false,
        })
    }

    /// The next chunk of rows (`op: r`), `None` when every table is read.
    pub async fn next_chunk(&mut self) -> anyhow::Result<Option<Vec<RowChange>>> {
        loop {
            if self.cursor.as_ref().is_none_or(|c| c.done) {
                if let Some(c) = self.cursor.take() {
                    self.done.push(format!("{}.{}", c.table.db, c.table.table));
                }
                let Some(t) = self.tables.get(self.next_table).cloned() else {
                    return Ok(None);
                };
                self.next_table += 1;
                self.cursor = Some(self.open_cursor(t).await?);
            }
            let Some(cursor) = self.cursor.as_mut() else {
                continue;
            };
            let rows = read_chunk(&mut self.conn, cursor, self.chunk_rows)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "snapshot of `{}`.`{}`: {e}",
                        cursor.table.db,
                        cursor.table.table
                    )
                })?;
            if rows.is_empty() {
                continue;
            }
            self.rows_done += rows.len() as u64;
            let now = sluice_core::record::now_ms();
            let changes = rows
                .into_iter()
                .map(|after| RowChange {
                    op: Op::Read,
                    before: None,
                    after: Some(after),
                    source: ChangeSource {
                        connector: self.connector.clone(),
                        server_id: self.server_id,
                        gtid: (!self.position.gtid.is_empty()).then(|| self.position.gtid.clone()),
                        file: self.position.file.clone(),
                        pos: self.position.pos,
                        row: 0,
                        ts_ms: now,
                        db: cursor.table.db.clone(),
                        table: cursor.table.table.clone(),
                        snapshot: true,
                    },
                    ts_ms: now,
                    transaction: None,
                    primary_key: (*cursor.pk).clone(),
                    ddl: None,
                })
                .collect();
            return Ok(Some(changes));
        }
    }

    /// Progress after the last chunk returned: what a restart skips.
    pub fn progress(&self) -> SnapshotProgress {
        let mut p = SnapshotProgress {
            position: self.position.clone(),
            done: self.done.clone(),
            table: None,
            last_key: None,
        };
        if let Some(c) = &self.cursor {
            let name = format!("{}.{}", c.table.db, c.table.table);
            if c.done {
                p.done.push(name);
            } else if let Some(last) = &c.last {
                p.table = Some(name);
                p.last_key = Some(last.iter().map(KeyValue::from).collect());
            }
        }
        p
    }

    /// Ends the snapshot transaction.
    pub async fn finish(mut self) -> anyhow::Result<Position> {
        self.conn.query_drop("COMMIT").await?;
        self.conn.disconnect().await.ok();
        Ok(self.position)
    }
}

async fn read_chunk(conn: &mut Conn, c: &mut Cursor, limit: usize) -> anyhow::Result<Vec<Row>> {
    let table = format!("{}.{}", q(&c.table.db), q(&c.table.table));
    let mut select: Vec<String> = c.columns.iter().map(|col| col.expr.clone()).collect();
    select.extend(c.pk.iter().map(|k| q(k)));
    let order: Vec<String> = if c.pk.is_empty() {
        c.columns.iter().map(|col| q(&col.name)).collect()
    } else {
        c.pk.iter().map(|k| q(k)).collect()
    };
    let mut sql = format!("SELECT {} FROM {table}", select.join(", "));
    let mut params: Vec<Value> = Vec::new();
    if let (Some(last), false) = (&c.last, c.pk.is_empty()) {
        let marks = vec!["?"; last.len()].join(", ");
        sql.push_str(&format!(" WHERE ({}) > ({marks})", order.join(", ")));
        params = last.clone();
    }
    sql.push_str(&format!(" ORDER BY {} LIMIT {limit}", order.join(", ")));
    if c.pk.is_empty() {
        sql.push_str(&format!(" OFFSET {}", c.offset));
    }
    let rows: Vec<mysql_async::Row> = conn.exec(sql, params).await?;
    if rows.len() < limit {
        c.done = true;
    }
    c.offset += rows.len() as u64;
    let n = c.columns.len();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut values = row.unwrap();
        if !c.pk.is_empty() {
            c.last = Some(values.split_off(n));
        }
        let mut r = Row::with_capacity(n);
        for (col, v) in c.columns.iter().zip(values) {
            r.insert(
                col.name.clone(),
                render(v, col.render, col.render == Render::Binary),
            );
        }
        out.push(r);
    }
    Ok(out)
}
