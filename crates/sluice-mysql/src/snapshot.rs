//! Consistent initial snapshot. One connection: `START TRANSACTION WITH
//! CONSISTENT SNAPSHOT` in REPEATABLE READ with the binlog position read at
//! the same instant (MariaDB: `binlog_snapshot_file/position` and
//! `BINLOG_GTID_POS`, no lock; MySQL: a brief FLUSH TABLES WITH READ LOCK).
//! With `parallelism` > 1: a brief FLUSH TABLES WITH READ LOCK while every
//! worker connection opens its snapshot, so all see the same instant. Tables
//! are read in primary-key chunks (see `chunk`), rows rendered exactly as
//! the binlog decoder renders them (`op: r`); progress (finished tables,
//! last key per table in progress) lets a restart continue. Streaming from
//! the returned position afterwards has no gap and no overlap. Reads the
//! server only.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Value};
use parking_lot::Mutex;
use sluice_core::record::{ChangeSource, Op, RowChange};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use crate::chunk::TableRef;
use crate::chunk::{self, Chunk};
use crate::connect;
use crate::filter::TableFilter;
use crate::gtid::Position;
use crate::progress::{KeyValue, SnapshotProgress};

/// A snapshot in progress.
pub struct Snapshot {
    position: Position,
    server_id: u32,
    tables: Vec<TableRef>,
    rx: mpsc::Receiver<anyhow::Result<Chunk>>,
    workers: Vec<JoinHandle<Conn>>,
    pub rows_done: u64,
    pub rows_estimated: u64,
    done: Vec<String>,
    in_progress: BTreeMap<String, Vec<KeyValue>>,
}

async fn snapshot_conn(opts: &Opts) -> anyhow::Result<Conn> {
    let mut conn = connect::open(opts).await?;
    conn.query_drop("SET time_zone = '+00:00', NAMES utf8mb4")
        .await?;
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await?;
    Ok(conn)
}

const BEGIN: &str = "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY";

/// MariaDB's lock-free snapshot position of the connection's transaction.
async fn mariadb_snapshot_position(conn: &mut Conn) -> anyhow::Result<Position> {
    let rows: Vec<(String, String)> = conn.query("SHOW STATUS LIKE 'binlog_snapshot_%'").await?;
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
    Ok(Position {
        file,
        pos,
        gtid: gtid.unwrap_or_default(),
    })
}

/// Opens `n` connections in one consistent snapshot and its position.
async fn open_snapshots(
    opts: &Opts,
    n: usize,
    mariadb: bool,
) -> anyhow::Result<(Vec<Conn>, Position)> {
    let mut conns = Vec::with_capacity(n);
    if n == 1 && mariadb {
        let mut conn = snapshot_conn(opts).await?;
        conn.query_drop(BEGIN).await?;
        let p = mariadb_snapshot_position(&mut conn).await?;
        conns.push(conn);
        return Ok((conns, p));
    }
    for _ in 0..n {
        conns.push(snapshot_conn(opts).await?);
    }
    let mut lock = connect::open(opts).await?;
    lock.query_drop("FLUSH TABLES WITH READ LOCK")
        .await
        .map_err(|e| {
            anyhow::anyhow!("FLUSH TABLES WITH READ LOCK (needs the RELOAD grant): {e}")
        })?;
    let mut result = Ok(());
    for c in &mut conns {
        if let Err(e) = c.query_drop(BEGIN).await {
            result = Err(e);
            break;
        }
    }
    let position = connect::current_position(&mut lock, mariadb).await;
    lock.query_drop("UNLOCK TABLES").await?;
    lock.disconnect().await.ok();
    result?;
    Ok((conns, position?))
}

impl Snapshot {
    /// Opens the snapshot transaction(s), lists the tables to read and
    /// starts `parallelism` readers. With `resume`, finished tables are
    /// skipped, tables in progress continue after their last key, and the
    /// original position is kept.
    pub async fn begin(
        opts: &Opts,
        filter: &TableFilter,
        chunk_rows: usize,
        parallelism: usize,
        mariadb: bool,
        server_id: u32,
        resume: Option<&SnapshotProgress>,
    ) -> anyhow::Result<Snapshot> {
        let parallelism = parallelism.max(1);
        let (mut conns, position) = open_snapshots(opts, parallelism, mariadb).await?;
        let all: Vec<(String, String, Option<u64>)> = conns[0]
            .query(
                "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES \
                 WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN \
                 ('mysql', 'information_schema', 'performance_schema', 'sys') \
                 ORDER BY TABLE_SCHEMA, TABLE_NAME",
            )
            .await?;
        let done: Vec<String> = resume.map_or_else(Vec::new, |r| r.done.clone());
        let in_progress = resume.map_or_else(BTreeMap::new, |r| r.in_progress.clone());
        let tables: Vec<TableRef> = all
            .into_iter()
            .filter(|(d, t, _)| filter.table(d, t) && !done.contains(&format!("{d}.{t}")))
            .map(|(db, table, rows)| TableRef {
                db,
                table,
                estimated_rows: rows.unwrap_or(0),
            })
            .collect();
        // Tables in progress first, each after its last key.
        let mut queue = VecDeque::new();
        let mut rest = VecDeque::new();
        for t in &tables {
            match in_progress.get(&format!("{}.{}", t.db, t.table)) {
                Some(key) => {
                    let key: Result<Vec<Value>, String> =
                        key.iter().map(KeyValue::to_value).collect();
                    queue.push_back((t.clone(), Some(key.map_err(anyhow::Error::msg)?)));
                }
                None => rest.push_back((t.clone(), None)),
            }
        }
        queue.extend(rest);
        let queue = Arc::new(Mutex::new(queue));
        let (tx, rx) = mpsc::channel(parallelism * 2);
        let chunk_rows = chunk_rows.max(1);
        let filter = Arc::new(filter.clone());
        let workers = conns
            .drain(..)
            .map(|c| {
                let w = chunk::worker(c, queue.clone(), chunk_rows, filter.clone(), tx.clone());
                tokio::spawn(w)
            })
            .collect();
        Ok(Snapshot {
            position: resume.map_or(position, |r| r.position.clone()),
            server_id,
            rows_estimated: tables.iter().map(|t| t.estimated_rows).sum(),
            tables,
            rx,
            workers,
            rows_done: 0,
            done,
            in_progress,
        })
    }

    /// The binlog position the snapshot is consistent with: stream from here.
    pub fn position(&self) -> &Position {
        &self.position
    }

    pub fn tables(&self) -> &[TableRef] {
        &self.tables
    }

    /// The next chunk of rows (`op: r`), `None` when every table is read.
    pub async fn next_chunk(&mut self) -> anyhow::Result<Option<Vec<RowChange>>> {
        loop {
            let Some(chunk) = self.rx.recv().await else {
                return Ok(None);
            };
            let chunk = chunk?;
            let name = format!("{}.{}", chunk.table.db, chunk.table.table);
            if chunk.done {
                self.in_progress.remove(&name);
                self.done.push(name);
            } else if let Some(last) = &chunk.last {
                self.in_progress
                    .insert(name, last.iter().map(KeyValue::from).collect());
            }
            if chunk.rows.is_empty() {
                continue;
            }
            self.rows_done += chunk.rows.len() as u64;
            let now = sluice_core::record::now_ms();
            let gtid = (!self.position.gtid.is_empty()).then(|| self.position.gtid.clone());
            let changes = chunk
                .rows
                .into_iter()
                .map(|after| RowChange {
                    op: Op::Read,
                    before: None,
                    after: Some(after),
                    source: ChangeSource {
                        connector: "mysql".into(),
                        server_id: self.server_id,
                        gtid: gtid.clone(),
                        file: self.position.file.clone(),
                        pos: self.position.pos,
                        row: 0,
                        ts_ms: now,
                        db: chunk.table.db.clone(),
                        table: chunk.table.table.clone(),
                        snapshot: true,
                    },
                    ts_ms: now,
                    transaction: None,
                    primary_key: (*chunk.pk).clone(),
                    ddl: None,
                })
                .collect();
            return Ok(Some(changes));
        }
    }

    /// Progress after the last chunk returned: what a restart skips.
    pub fn progress(&self) -> SnapshotProgress {
        SnapshotProgress {
            position: self.position.clone(),
            done: self.done.clone(),
            in_progress: self.in_progress.clone(),
        }
    }

    /// Ends the snapshot transactions.
    pub async fn finish(mut self) -> anyhow::Result<Position> {
        self.rx.close();
        for w in self.workers.drain(..) {
            let mut conn = w
                .await
                .map_err(|e| anyhow::anyhow!("snapshot reader failed: {e}"))?;
            conn.query_drop("COMMIT").await?;
            conn.disconnect().await.ok();
        }
        Ok(std::mem::take(&mut self.position))
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        for w in &self.workers {
            w.abort();
        }
    }
}
