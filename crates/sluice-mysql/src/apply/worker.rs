//! One apply worker: applies its share of changes on its own target
//! connection in target transactions of whole source transactions (up to
//! `max_transactions` / `max_rows`), merging consecutive upserts and
//! deletes of a table into multi-row statements, with the worker's
//! position written in the same transaction. When the target refuses a
//! statement, the transaction is rolled back and replayed one change at a
//! time to find the refused change; the changes before it are committed.
//! Touches the target database through its connection.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{Map, Value};
use sluice_core::record::Op;

use super::change::{Change, Pos};
use super::options::{ApplyOptions, RowErrors};
use super::sql::{self, Dialect, TableMeta};
use super::target::{self, Conn, DbError};

/// What every worker shares.
pub struct Ctx {
    pub dialect: Dialect,
    pub opts: ApplyOptions,
    pub consumer: String,
    pub position_table: (String, String),
    pub workers: usize,
    pub meta: Mutex<HashMap<(String, String), Arc<TableMeta>>>,
    pub filter: crate::filter::TableFilter,
}

/// Why a worker stopped.
#[derive(Debug)]
pub enum Failure {
    /// Transient: the engine retries the batch.
    Retry(String),
    /// The target refused this change (the changes before it committed).
    Refused {
        change: Box<Change>,
        statement: String,
        error: String,
    },
}

/// Changes rows refused and skipped (`on_row_error: skip`).
pub struct Outcome {
    /// The position of the last change committed, if any.
    pub committed: Option<Pos>,
    pub result: Result<(), Failure>,
    pub skipped: u64,
}

pub(crate) static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The target table's metadata (creating the table when allowed).
pub async fn meta_for(
    conn: &mut Conn,
    ctx: &Ctx,
    sdb: &str,
    table: &str,
) -> Result<Arc<TableMeta>, DbError> {
    let tdb = ctx.opts.map_db(sdb).to_string();
    let key = (tdb.clone(), table.to_string());
    if let Some(m) = ctx.meta.lock().get(&key) {
        return Ok(m.clone());
    }
    let mut meta = conn.table_meta(&tdb, table).await?;
    if meta.is_none() && ctx.opts.create_tables {
        if let Some(src) = &ctx.opts.source_url {
            // One creation at a time: concurrent CREATE … IF NOT EXISTS
            // of one table can collide (PostgreSQL catalog races).
            let _one = CREATING.lock().await;
            meta = conn.table_meta(&tdb, table).await?;
            if meta.is_none() {
                let created = target::create_table(conn, src, (sdb, &tdb, table)).await;
                meta = conn.table_meta(&tdb, table).await?;
                if let (Err(mut e), None) = (created, &meta) {
                    e.message = format!("creating {tdb}.{table}: {}", e.message);
                    return Err(e);
                }
            }
        }
    }
    let meta = Arc::new(meta.ok_or_else(|| DbError {
        retryable: false,
        message: format!(
            "target table {tdb}.{table} does not exist (create_tables: true creates it)"
        ),
        code: String::new(),
    })?);
    ctx.meta.lock().insert(key, meta.clone());
    Ok(meta)
}

/// A statement group being merged.
enum Group<'a> {
    Upsert {
        table: (String, String),
        pk: &'a [String],
        meta: Arc<TableMeta>,
        rows: Vec<&'a Map<String, Value>>,
        keys: HashSet<String>,
    },
    Delete {
        table: (String, String),
        pk: &'a [String],
        meta: Arc<TableMeta>,
        rows: Vec<&'a Map<String, Value>>,
    },
}

fn pk_key(pk: &[String], row: &Map<String, Value>) -> String {
    let mut k = String::new();
    for c in pk {
        k.push_str(&row.get(c).map(Value::to_string).unwrap_or_default());
        k.push('\u{1}');
    }
    k
}

fn same_columns(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    a.len() == b.len() && a.keys().zip(b.keys()).all(|(x, y)| x == y)
}

impl Group<'_> {
    fn sql(&self, d: Dialect) -> Result<String, String> {
        match self {
            Group::Upsert {
                table,
                pk,
                meta,
                rows,
                ..
            } => sql::upsert(d, &table.0, &table.1, meta, pk, rows),
            Group::Delete {
                table,
                pk,
                meta,
                rows,
            } => sql::delete_by_pk(d, &table.0, &table.1, meta, pk, rows),
        }
    }
}

/// Statements for `changes`, merged where possible. Every statement ends
/// with `;`. Errors name the change that could not be rendered.
async fn statements(
    conn: &mut Conn,
    ctx: &Ctx,
    changes: &[Change],
    merge: bool,
) -> Result<Vec<String>, (usize, String, DbError)> {
    let d = ctx.dialect;
    let mut out = Vec::new();
    let mut group: Option<Group> = None;
    let bad = |i: usize, msg: String| {
        (
            i,
            String::new(),
            DbError {
                retryable: false,
                message: msg,
                code: String::new(),
            },
        )
    };
    for (i, c) in changes.iter().enumerate() {
        let r = &c.row;
        let (sdb, table) = (&r.source.db, &r.source.table);
        if !ctx.filter.table(sdb, table) || r.op == Op::Ddl {
            continue;
        }
        let meta = meta_for(conn, ctx, sdb, table)
            .await
            .map_err(|e| (i, String::new(), e))?;
        let tkey = (ctx.opts.map_db(sdb).to_string(), table.clone());
        let pk = &r.primary_key;
        let upsert_row = match r.op {
            Op::Create | Op::Read => r.after.as_ref(),
            Op::Update if !pk.is_empty() => r.after.as_ref(),
            _ => None,
        };
        let delete_row = match r.op {
            Op::Delete if !pk.is_empty() => r.before.as_ref(),
            _ => None,
        };
        // Try to extend the current group.
        if merge {
            match (&mut group, upsert_row, delete_row) {
                (
                    Some(Group::Upsert {
                        table, rows, keys, ..
                    }),
                    Some(a),
                    _,
                ) if *table == tkey
                    && rows.len() < 1000
                    && same_columns(rows[0], a)
                    && (pk.is_empty() || !keys.contains(&pk_key(pk, a))) =>
                {
                    if !pk.is_empty() {
                        keys.insert(pk_key(pk, a));
                    }
                    rows.push(a);
                    continue;
                }
                (Some(Group::Delete { table, rows, .. }), _, Some(b))
                    if *table == tkey && rows.len() < 1000 =>
                {
                    rows.push(b);
                    continue;
                }
                _ => {}
            }
        }
        if let Some(g) = group.take() {
            out.push(g.sql(d).map_err(|e| bad(i, e))?);
        }
        if let Some(a) = upsert_row {
            let mut keys = HashSet::new();
            if !pk.is_empty() {
                keys.insert(pk_key(pk, a));
            }
            group = Some(Group::Upsert {
                table: tkey,
                pk,
                meta,
                rows: vec![a],
                keys,
            });
        } else if let Some(b) = delete_row {
            group = Some(Group::Delete {
                table: tkey,
                pk,
                meta,
                rows: vec![b],
            });
        } else {
            // No primary key: update / delete one row matched on all columns.
            let Some(before) = r.before.as_ref() else {
                return Err(bad(
                    i,
                    format!("{} change without a before image", r.op.as_str()),
                ));
            };
            let after = if r.op == Op::Update {
                r.after.as_ref()
            } else {
                None
            };
            out.push(
                sql::no_pk_change(d, &tkey.0, &tkey.1, &meta, before, after)
                    .map_err(|e| bad(i, e))?,
            );
        }
        if !merge {
            if let Some(g) = group.take() {
                out.push(g.sql(d).map_err(|e| bad(i, e))?);
            }
        }
    }
    if let Some(g) = group.take() {
        out.push(
            g.sql(d)
                .map_err(|e| bad(changes.len().saturating_sub(1), e))?,
        );
    }
    Ok(out)
}

/// The last stream position among `changes`.
fn last_pos(changes: &[Change]) -> Option<&Pos> {
    changes.iter().rev().find(|c| !c.snapshot).map(|c| &c.pos)
}

fn begin(d: Dialect) -> &'static str {
    match d {
        Dialect::Mysql => "START TRANSACTION",
        Dialect::Postgres => "BEGIN",
    }
}

fn shorten(s: &str) -> String {
    if s.len() <= 600 {
        return s.to_string();
    }
    let mut end = 600;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

/// Commits `changes` (already known to apply) with the position.
async fn commit(
    conn: &mut Conn,
    ctx: &Ctx,
    worker: usize,
    changes: &[Change],
    merge: bool,
) -> Result<(), (usize, String, DbError)> {
    let d = ctx.dialect;
    let mut text = String::from(begin(d));
    text.push(';');
    for s in statements(conn, ctx, changes, merge).await? {
        text.push_str(&s);
        text.push(';');
    }
    if let Some(p) = last_pos(changes) {
        let (a, b) = &ctx.position_table;
        text.push_str(&target::position_sql(
            d,
            (a, b),
            &ctx.consumer,
            worker,
            ctx.workers,
            p,
        ));
        text.push(';');
    }
    text.push_str("COMMIT");
    match conn.exec(&text).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = conn.exec("ROLLBACK").await;
            Err((usize::MAX, text, e))
        }
    }
}

/// Replays a refused chunk one change at a time; returns the index of the
/// first refused change with its statement and error, after committing
/// the changes before it (or everything but the refused ones with `skip`).
async fn localize(
    conn: &mut Conn,
    ctx: &Ctx,
    worker: usize,
    chunk: &[Change],
    skipped: &mut u64,
) -> Result<Option<(usize, String, String)>, String> {
    let d = ctx.dialect;
    let mut ok: Vec<Change> = Vec::new();
    conn.exec(begin(d)).await.map_err(|e| e.to_string())?;
    for (i, c) in chunk.iter().enumerate() {
        let one = std::slice::from_ref(c);
        let stmts = match statements(conn, ctx, one, false).await {
            Ok(s) => s,
            Err((_, _, e)) if e.retryable => return Err(e.message),
            Err((_, s, e)) => {
                if ctx.opts.on_row_error == RowErrors::Skip {
                    tracing::warn!(change = %c.origin(), error = %e, "target refused a row; skipped");
                    *skipped += 1;
                    continue;
                }
                let _ = conn.exec("ROLLBACK").await;
                return finish(conn, ctx, worker, &ok, Some((i, s, e.message))).await;
            }
        };
        for s in stmts {
            if let Err(e) = conn.exec(&s).await {
                if e.retryable {
                    let _ = conn.exec("ROLLBACK").await;
                    return Err(e.message);
                }
                if ctx.opts.on_row_error == RowErrors::Skip {
                    // Undo the refused change only: replay the rest later.
                    let _ = conn.exec("ROLLBACK").await;
                    tracing::warn!(change = %c.origin(), statement = %shorten(&s), error = %e, "target refused a row; skipped");
                    *skipped += 1;
                    conn.exec(begin(d)).await.map_err(|e| e.to_string())?;
                    let redo = statements(conn, ctx, &ok, false)
                        .await
                        .map_err(|(_, _, e)| e.message)?;
                    for r in redo {
                        conn.exec(&r).await.map_err(|e| e.message)?;
                    }
                    ok.push(Change {
                        row: Arc::new(sluice_core::record::RowChange {
                            op: Op::Ddl,
                            ..(*c.row).clone()
                        }),
                        ..c.clone()
                    });
                    continue;
                }
                let _ = conn.exec("ROLLBACK").await;
                return finish(conn, ctx, worker, &ok, Some((i, shorten(&s), e.message))).await;
            }
        }
        ok.push(c.clone());
    }
    // Everything went through one at a time (the refusal was the merge's).
    if let Some(p) = last_pos(chunk) {
        let (a, b) = &ctx.position_table;
        let s = target::position_sql(d, (a, b), &ctx.consumer, worker, ctx.workers, p);
        conn.exec(&s).await.map_err(|e| e.message)?;
    }
    conn.exec("COMMIT").await.map_err(|e| e.message)?;
    Ok(None)
}

async fn finish(
    conn: &mut Conn,
    ctx: &Ctx,
    worker: usize,
    ok: &[Change],
    refused: Option<(usize, String, String)>,
) -> Result<Option<(usize, String, String)>, String> {
    if !ok.is_empty() {
        commit(conn, ctx, worker, ok, false)
            .await
            .map_err(|(_, _, e)| e.message)?;
    }
    Ok(refused)
}

/// Applies a worker's changes in order.
pub async fn run(conn: &mut Conn, ctx: &Ctx, worker: usize, changes: &[Change]) -> Outcome {
    let mut out = Outcome {
        committed: None,
        result: Ok(()),
        skipped: 0,
    };
    let mut start = 0;
    while start < changes.len() {
        // A chunk: whole source transactions, up to the limits.
        let (mut end, mut txns) = (start, 0);
        while end < changes.len() {
            let c = &changes[end];
            end += 1;
            let txn_end =
                end == changes.len() || c.ends_txn() || changes[end].txn_id() != c.txn_id();
            if txn_end {
                txns += 1;
                if txns >= ctx.opts.max_transactions || end - start >= ctx.opts.max_rows {
                    break;
                }
            }
        }
        let chunk = &changes[start..end];
        match commit(conn, ctx, worker, chunk, true).await {
            Ok(()) => {}
            Err((_, _, e)) if e.retryable => {
                out.result = Err(Failure::Retry(e.message));
                return out;
            }
            Err((i, stmt, e)) => {
                tracing::debug!(error = %e, "chunk refused; locating the change");
                match localize(conn, ctx, worker, chunk, &mut out.skipped).await {
                    Err(msg) => {
                        out.result = Err(Failure::Retry(msg));
                        return out;
                    }
                    Ok(Some((k, s, error))) => {
                        if let Some(p) = last_pos(&chunk[..k]) {
                            out.committed = Some(p.clone());
                        }
                        let statement = if s.is_empty() && i != usize::MAX {
                            stmt
                        } else {
                            s
                        };
                        out.result = Err(Failure::Refused {
                            change: Box::new(chunk[k].clone()),
                            statement: shorten(&statement),
                            error,
                        });
                        return out;
                    }
                    Ok(None) => {}
                }
            }
        }
        if let Some(p) = last_pos(chunk) {
            out.committed = Some(p.clone());
        }
        start = end;
    }
    out
}
