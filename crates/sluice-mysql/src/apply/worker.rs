//! One apply worker: applies its share of changes on its own target
//! connection in target transactions of whole source transactions (up to
//! `max_transactions` / `max_rows`), merging consecutive upserts and
//! deletes of a table into multi-row statements (prepared blocks on
//! MySQL targets), with the worker's position written in the same
//! transaction. A transaction's text is sent
//! in parts of about a thousand rows: the next part is built on a blocking
//! thread while the target executes the previous one. When the target
//! refuses a statement, the transaction is rolled back and replayed one
//! change at a time to find the refused change; the changes before it are
//! committed. Touches the target database through its connection.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use sluice_core::component::SinkError;
use sluice_core::record::Op;

use super::build::{self, Builder};
use super::change::{Change, Pos};
use super::options::{ApplyOptions, RowErrors};
use super::prepared::{Piece, Pieces};
use super::snapshot::SnapshotProgress;
use super::sql::{Dialect, TableMeta};
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

/// Chunks the target refused and that were replayed one change at a time,
/// by every apply sink of the process (for tests and diagnostics).
static LOCALIZED_TOTAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Refused chunks replayed one change at a time so far, process-wide.
pub fn localized_total() -> u64 {
    LOCALIZED_TOTAL.load(std::sync::atomic::Ordering::Relaxed)
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

/// What a worker has committed in the target: the last stream change and
/// the snapshot progress (as in its position-table row).
#[derive(Clone, Debug, Default)]
pub struct WorkerState {
    pub position: Option<Pos>,
    pub snapshot: SnapshotProgress,
}

impl WorkerState {
    /// The state after `changes` commit (`None`: nothing to record).
    fn after(&self, changes: &[Change]) -> Option<WorkerState> {
        let last = last_pos(changes);
        if let Some(p) = last {
            // Stream changes supersede any snapshot progress.
            return Some(WorkerState {
                position: Some(p.clone()),
                snapshot: SnapshotProgress::default(),
            });
        }
        if !changes.iter().any(|c| c.snapshot) {
            return None;
        }
        let mut next = self.clone();
        for c in changes.iter().filter(|c| c.snapshot) {
            next.snapshot.applied(c);
        }
        Some(next)
    }

    /// The statement recording this state for `worker`.
    fn sql(&self, ctx: &Ctx, worker: usize) -> String {
        let (a, b) = &ctx.position_table;
        target::position_sql(
            ctx.dialect,
            (a, b),
            &ctx.consumer,
            worker,
            ctx.workers,
            self.position.as_ref(),
            self.snapshot.to_json().as_deref(),
        )
    }
}

/// Each worker's state from the consumer's stored rows. Stored with
/// another parallelism, every worker must have stopped at one position
/// outside a snapshot (a graceful stop aligns them); that position is then
/// every new worker's.
pub fn states_from_stored(
    ctx: &Ctx,
    stored: &[target::Stored],
) -> Result<Vec<WorkerState>, SinkError> {
    let n = ctx.workers;
    let mut states = vec![WorkerState::default(); n];
    let progress = |st: &target::Stored| -> SnapshotProgress {
        st.snapshot
            .as_deref()
            .and_then(|j| match SnapshotProgress::from_json(j) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(consumer = %ctx.consumer, error = %e, "snapshot progress ignored");
                    None
                }
            })
            .unwrap_or_default()
    };
    if let Some(was) = stored.first().map(|s| s.workers).filter(|w| *w != n) {
        let all: Vec<&Option<Pos>> = stored.iter().map(|s| &s.position).collect();
        let snapshot = stored.iter().any(|s| !progress(s).is_empty());
        if snapshot || all.windows(2).any(|w| w[0] != w[1]) || stored.len() != was {
            return Err(SinkError::Fatal(anyhow::anyhow!(
                "consumer `{}` was applied with parallelism {was} and its workers stopped at \
                 different positions (or inside a snapshot); run once more with \
                 parallelism: {was} and stop it gracefully after the snapshot before \
                 changing parallelism",
                ctx.consumer
            )));
        }
        let position = all.first().and_then(|p| (*p).clone());
        for st in &mut states {
            st.position = position.clone();
        }
    } else {
        for st in stored {
            if st.worker < n {
                states[st.worker] = WorkerState {
                    position: st.position.clone(),
                    snapshot: progress(st),
                };
            }
        }
    }
    Ok(states)
}

/// How a worker's share of a batch went.
pub struct Outcome {
    pub result: Result<(), Failure>,
    /// Changes refused and skipped (`on_row_error: skip`).
    pub skipped: u64,
}

/// The last stream position among `changes`.
fn last_pos(changes: &[Change]) -> Option<&Pos> {
    changes.iter().rev().find(|c| !c.snapshot).map(|c| &c.pos)
}

/// The stored row says what `state` says (no row: nothing recorded yet).
pub fn unmoved(stored: Option<&target::Stored>, state: &WorkerState) -> bool {
    let Some(s) = stored else {
        return true;
    };
    let snapshot = s
        .snapshot
        .as_deref()
        .and_then(|j| SnapshotProgress::from_json(j).ok())
        .unwrap_or_default();
    s.position == state.position && snapshot == state.snapshot
}

/// Why a transaction was not begun: the stored position moved.
pub fn moved(ctx: &Ctx, worker: usize, stored: Option<&target::Stored>) -> DbError {
    let (db, t) = &ctx.position_table;
    let now = stored
        .and_then(|s| s.position.as_ref())
        .map_or_else(|| "snapshot progress".to_string(), ToString::to_string);
    DbError {
        retryable: true,
        message: format!(
            "the position of consumer `{}` worker {worker} in {db}.{t} moved to {now} under this \
             process (another process applies the same consumer, or an earlier run's last \
             transaction committed late); reloading positions",
            ctx.consumer
        ),
        code: String::new(),
    }
}

/// Begins a target transaction holding the worker's position row, and
/// checks that the row still says `state`. Another process writing the
/// same consumer (an aborted run whose last COMMIT was still executing, or
/// a second instance) waits here or is seen here, so nothing is applied on
/// a stale position: the transaction is rolled back and the sink reloads.
async fn begin_fenced(
    conn: &mut Conn,
    ctx: &Ctx,
    worker: usize,
    state: &WorkerState,
) -> Result<(), DbError> {
    let (db, t) = &ctx.position_table;
    let stored = conn
        .begin_locked((db, t), &ctx.consumer, Some(worker))
        .await?;
    if unmoved(stored.first(), state) {
        return Ok(());
    }
    let _ = conn.exec("ROLLBACK").await;
    Err(moved(ctx, worker, stored.first()))
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

/// Rows per part of a transaction's text (see the module doc).
const PART_ROWS: usize = build::MERGE_ROWS;

/// Sends `pieces` in order; on failure, the failing statement's text.
async fn send(conn: &mut Conn, pieces: Pieces) -> Result<(), (String, DbError)> {
    for p in pieces.0 {
        match p {
            Piece::Text(t) => conn.exec(&t).await.map_err(|e| (t, e))?,
            Piece::Prepared { sql, params } => conn
                .exec_prepared(&sql, params)
                .await
                .map_err(|e| (sql, e))?,
        }
    }
    Ok(())
}

/// Commits `changes[range]` (already known to apply) with the worker's
/// new state; returns that state (`None`: nothing to record).
async fn commit(
    conn: &mut Conn,
    ctx: &Arc<Ctx>,
    worker: usize,
    changes: &Arc<[Change]>,
    range: std::ops::Range<usize>,
    state: &WorkerState,
) -> Result<Option<WorkerState>, build::BuildError> {
    let chunk = &changes[range.clone()];
    let targets = build::resolve(conn, ctx, chunk).await?;
    let mut b = Builder::new(ctx.clone(), changes.clone(), range, targets, true);
    b.binary = ctx.opts.prepared_statements;
    let next = state.after(chunk);
    let mut pieces = b.next_part(PART_ROWS)?;
    begin_fenced(conn, ctx, worker, state)
        .await
        .map_err(|e| (usize::MAX, String::new(), e))?;
    loop {
        let last = b.done();
        if last {
            if let Some(n) = &next {
                pieces.text(&n.sql(ctx, worker));
                pieces.text(";");
            }
            pieces.text("COMMIT");
        }
        // Build the next part while this one executes.
        let building = (!last).then(|| {
            tokio::task::spawn_blocking(move || {
                let part = b.next_part(PART_ROWS);
                (b, part)
            })
        });
        let done = send(conn, pieces).await;
        let built = match building {
            Some(h) => Some(h.await.map_err(|e| {
                (
                    usize::MAX,
                    String::new(),
                    DbError {
                        retryable: true,
                        message: format!("statement builder failed: {e}"),
                        code: String::new(),
                    },
                )
            })?),
            None => None,
        };
        if let Err((text, e)) = done {
            let _ = conn.exec("ROLLBACK").await;
            return Err((usize::MAX, text, e));
        }
        let Some((builder, part)) = built else {
            return Ok(next);
        };
        b = builder;
        match part {
            Ok(p) => pieces = p,
            Err(e) => {
                let _ = conn.exec("ROLLBACK").await;
                return Err(e);
            }
        }
    }
}

/// Replays a refused chunk one change at a time; returns the index of the
/// first refused change with its statement and error, after committing
/// the changes before it (or everything but the refused ones with `skip`).
async fn localize(
    conn: &mut Conn,
    ctx: &Arc<Ctx>,
    worker: usize,
    chunk: &[Change],
    skipped: &mut u64,
    state: &mut WorkerState,
) -> Result<Option<(usize, String, String)>, String> {
    let mut ok: Vec<Change> = Vec::new();
    begin_fenced(conn, ctx, worker, state)
        .await
        .map_err(|e| e.to_string())?;
    for (i, c) in chunk.iter().enumerate() {
        let one = std::slice::from_ref(c);
        let stmts = match build::statements(conn, ctx, one, false).await {
            Ok(s) => s,
            Err((_, _, e)) if e.retryable => return Err(e.message),
            Err((_, s, e)) => {
                if ctx.opts.on_row_error == RowErrors::Skip {
                    tracing::warn!(change = %c.origin(), error = %e, "target refused a row; skipped");
                    *skipped += 1;
                    ok.push(as_skipped(c));
                    continue;
                }
                let _ = conn.exec("ROLLBACK").await;
                return finish(conn, ctx, worker, &ok, Some((i, s, e.message)), state).await;
            }
        };
        // (`continue` below goes on with the next change.)
        if let Some(s) = Some(stmts).filter(|s| !s.is_empty()) {
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
                    begin_fenced(conn, ctx, worker, state)
                        .await
                        .map_err(|e| e.to_string())?;
                    let redo = build::statements(conn, ctx, &ok, false)
                        .await
                        .map_err(|(_, _, e)| e.message)?;
                    if !redo.is_empty() {
                        conn.exec(&redo).await.map_err(|e| e.message)?;
                    }
                    ok.push(as_skipped(c));
                    continue;
                }
                let _ = conn.exec("ROLLBACK").await;
                return finish(
                    conn,
                    ctx,
                    worker,
                    &ok,
                    Some((i, shorten(&s), e.message)),
                    state,
                )
                .await;
            }
        }
        ok.push(c.clone());
    }
    // Everything went through one at a time (the refusal was the merge's).
    let next = state.after(chunk);
    if let Some(n) = &next {
        conn.exec(&n.sql(ctx, worker))
            .await
            .map_err(|e| e.message)?;
    }
    conn.exec("COMMIT").await.map_err(|e| e.message)?;
    if let Some(n) = next {
        *state = n;
    }
    Ok(None)
}

/// A skipped change: no statement, but its position counts as done.
fn as_skipped(c: &Change) -> Change {
    Change {
        row: Arc::new(sluice_core::record::RowChange {
            op: Op::Ddl,
            ..(*c.row).clone()
        }),
        ..c.clone()
    }
}

async fn finish(
    conn: &mut Conn,
    ctx: &Arc<Ctx>,
    worker: usize,
    ok: &[Change],
    refused: Option<(usize, String, String)>,
    state: &mut WorkerState,
) -> Result<Option<(usize, String, String)>, String> {
    if !ok.is_empty() {
        let ok: Arc<[Change]> = ok.into();
        let next = commit(conn, ctx, worker, &ok, 0..ok.len(), state)
            .await
            .map_err(|(_, _, e)| e.message)?;
        if let Some(n) = next {
            *state = n;
        }
    }
    Ok(refused)
}

/// Applies a worker's changes in order; `state` follows what is committed.
pub async fn run(
    conn: &mut Conn,
    ctx: &Arc<Ctx>,
    worker: usize,
    changes: &Arc<[Change]>,
    state: &mut WorkerState,
) -> Outcome {
    let mut out = Outcome {
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
        match commit(conn, ctx, worker, changes, start..end, state).await {
            Ok(next) => {
                if let Some(n) = next {
                    *state = n;
                }
            }
            Err((_, _, e)) if e.retryable => {
                out.result = Err(Failure::Retry(e.message));
                return out;
            }
            Err((i, stmt, e)) => {
                tracing::debug!(error = %e, "chunk refused; locating the change");
                LOCALIZED_TOTAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match localize(conn, ctx, worker, chunk, &mut out.skipped, state).await {
                    Err(msg) => {
                        out.result = Err(Failure::Retry(msg));
                        return out;
                    }
                    Ok(Some((k, s, error))) => {
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
        start = end;
    }
    out
}
