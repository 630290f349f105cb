//! Reading one table of a snapshot: the SELECT expression and JSON
//! rendering of each column (matching the binlog decoder's mapping), the
//! primary-key cursor, chunk queries, and the worker that reads whole
//! tables from a shared list on its own snapshot connection. Reads the
//! server only.

use std::collections::VecDeque;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value};
use parking_lot::Mutex;
use serde_json::{Number, Value as Json};
use sluice_core::record::Row;
use tokio::sync::mpsc;

use crate::filter::TableFilter;
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

pub struct Cursor {
    pub table: TableRef,
    /// Every column of the table (the order of a table without a key).
    all_columns: Vec<String>,
    /// The captured columns (column filters applied).
    columns: Vec<Column>,
    pub pk: Arc<Vec<String>>,
    /// Raw primary-key values of the last row read.
    pub last: Option<Vec<Value>>,
    offset: u64,
    pub done: bool,
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

/// Opens a cursor over `table`, after `resume` (a primary key) if given.
pub async fn open_cursor(
    conn: &mut Conn,
    table: TableRef,
    resume: Option<Vec<Value>>,
    filter: &TableFilter,
) -> anyhow::Result<Cursor> {
    let cols: Vec<(String, String, Option<String>)> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_SET_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (&table.db, &table.table),
        )
        .await?;
    let pk: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? \
             AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
            (&table.db, &table.table),
        )
        .await?;
    let all_columns: Vec<String> = cols.iter().map(|c| c.0.clone()).collect();
    let names: Vec<&str> = all_columns.iter().map(String::as_str).collect();
    let keep = filter.columns(&table.db, &table.table, &names);
    let columns = cols
        .into_iter()
        .enumerate()
        .filter(|(i, _)| {
            keep.as_ref()
                .is_none_or(|k| k.get(*i).copied().unwrap_or(true))
        })
        .map(|(_, (name, data_type, charset))| {
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
    // A table without a primary key is re-read whole.
    let last = if pk.is_empty() { None } else { resume };
    Ok(Cursor {
        table,
        all_columns,
        columns,
        pk: Arc::new(pk),
        last,
        offset: 0,
        done: false,
    })
}

/// One chunk a worker read.
pub struct Chunk {
    pub table: TableRef,
    pub pk: Arc<Vec<String>>,
    pub rows: Vec<Row>,
    /// Primary key of the chunk's last row (`None` without a primary key).
    pub last: Option<Vec<Value>>,
    /// The table is finished with this chunk.
    pub done: bool,
}

/// Tables waiting for a worker, with the key to continue after.
pub type TableQueue = Arc<Mutex<VecDeque<(TableRef, Option<Vec<Value>>)>>>;

/// Reads tables from `queue` until it is empty, sending every chunk (the
/// last one of a table marked `done`); gives its connection back.
pub async fn worker(
    mut conn: Conn,
    queue: TableQueue,
    chunk_rows: usize,
    filter: Arc<TableFilter>,
    tx: mpsc::Sender<anyhow::Result<Chunk>>,
) -> Conn {
    loop {
        let Some((table, resume)) = queue.lock().pop_front() else {
            return conn;
        };
        let name = format!("`{}`.`{}`", table.db, table.table);
        let mut cursor = match open_cursor(&mut conn, table, resume, &filter).await {
            Ok(c) => c,
            Err(e) => {
                let _ = tx
                    .send(Err(anyhow::anyhow!("snapshot of {name}: {e}")))
                    .await;
                return conn;
            }
        };
        while !cursor.done {
            let chunk = read_chunk(&mut conn, &mut cursor, chunk_rows)
                .await
                .map_err(|e| anyhow::anyhow!("snapshot of {name}: {e}"))
                .map(|rows| Chunk {
                    table: cursor.table.clone(),
                    pk: cursor.pk.clone(),
                    rows,
                    last: cursor.last.clone(),
                    done: cursor.done,
                });
            let failed = chunk.is_err();
            if tx.send(chunk).await.is_err() || failed {
                return conn;
            }
        }
    }
}

pub async fn read_chunk(conn: &mut Conn, c: &mut Cursor, limit: usize) -> anyhow::Result<Vec<Row>> {
    let table = format!("{}.{}", q(&c.table.db), q(&c.table.table));
    let mut select: Vec<String> = c.columns.iter().map(|col| col.expr.clone()).collect();
    select.extend(c.pk.iter().map(|k| q(k)));
    let order: Vec<String> = if c.pk.is_empty() {
        c.all_columns.iter().map(|name| q(name)).collect()
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
