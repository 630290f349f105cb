//! The applier behind the apply sink: takes each batch's changes (in
//! order, on its own task), skips what the target already holds (each
//! change's binlog position against the stored position of the worker its
//! row hashes to) and second copies within the batch (a position at or
//! before one already taken), holds back a source transaction cut by the
//! batch (straight-from-source records only), replays DDL as a barrier on
//! one connection, and runs the workers in parallel. `Ok` from `write`
//! means every change of the batch is committed (or held back, which is
//! safe: the mysql source's checkpoint never passes an unfinished
//! transaction). Touches the target database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sluice_core::component::SinkError;
use sluice_core::record::Op;

use super::build;
use super::change::{split_pk_change, Change, Pos};
use super::ddl::{postgres_ddl, DDL_ALREADY};
use super::options::ApplyOptions;
use super::snapshot::{self, Seen, SnapshotProgress};
use super::sql::{self, Dialect};
use super::target::{self, Conn, DbError};
use super::worker::{self, Ctx, Failure, WorkerState};

/// What a `type: mysql` / `type: postgres` sink holds of its target.
pub struct Applier {
    ctx: Arc<Ctx>,
    conns: Vec<Option<Conn>>,
    /// Per worker: what is committed in the target (last stream change,
    /// snapshot progress).
    states: Vec<WorkerState>,
    /// Per worker: snapshot rows of keyless tables received by this
    /// process (as of the last successful write).
    seen: Seen,
    loaded: bool,
    /// The unfinished tail of a source transaction (from earlier batches).
    held: Vec<Change>,
    pub applied: u64,
    pub skipped: u64,
    /// The last write succeeded (every worker is at or past its changes).
    clean: bool,
}

/// Changes skipped as already applied, by every apply sink of the process
/// (redelivery after a crash or abort; for tests and diagnostics).
static SKIPPED_TOTAL: AtomicU64 = AtomicU64::new(0);

/// Changes skipped as already applied so far, process-wide.
pub fn skipped_total() -> u64 {
    SKIPPED_TOTAL.load(Ordering::Relaxed)
}

fn retry(msg: String) -> SinkError {
    SinkError::Retryable(anyhow::anyhow!(msg))
}

impl Applier {
    pub fn new(name: &str, opts: ApplyOptions, dialect: Dialect) -> Applier {
        let workers = opts.parallelism;
        let filter = opts.filter().unwrap_or_default();
        Applier {
            ctx: Arc::new(Ctx {
                dialect,
                consumer: opts.consumer.clone().unwrap_or_else(|| name.to_string()),
                position_table: opts.position_table(dialect),
                workers,
                meta: Default::default(),
                filter,
                opts,
            }),
            conns: (0..workers).map(|_| None).collect(),
            states: vec![WorkerState::default(); workers],
            seen: vec![Default::default(); workers],
            loaded: false,
            held: Vec::new(),
            applied: 0,
            skipped: 0,
            clean: false,
        }
    }

    /// Connects missing workers; loads the stored positions when needed.
    async fn connect(&mut self) -> Result<(), SinkError> {
        let d = self.ctx.dialect;
        for slot in self.conns.iter_mut() {
            if slot.is_none() {
                // A server that is down or starting is retried; refused
                // credentials, TLS and settings stop the sink (retrying
                // cannot fix them).
                let c =
                    Conn::connect(d, &self.ctx.opts.url)
                        .await
                        .map_err(|e| match e.retryable {
                            true => retry(format!("connecting to the target: {e}")),
                            false => {
                                SinkError::Fatal(anyhow::anyhow!("connecting to the target: {e}"))
                            }
                        })?;
                *slot = Some(c);
            }
        }
        if self.loaded {
            return Ok(());
        }
        let (db, t) = self.ctx.position_table.clone();
        let conn = self.conns[0]
            .as_mut()
            .ok_or_else(|| retry("no connection".into()))?;
        let res = async {
            {
                // Concurrent CREATE … IF NOT EXISTS can collide.
                let _one = build::CREATING.lock().await;
                conn.ensure_position_table(&db, &t).await?;
            }
            conn.load_positions(&db, &t, &self.ctx.consumer).await
        }
        .await;
        let stored = res.map_err(|e| {
            self.conns[0] = None;
            // 23505 / 42P07: another sink created it at the same moment.
            if e.retryable || matches!(e.code.as_str(), "23505" | "42P07" | "1050") {
                retry(format!("reading {db}.{t}: {e}"))
            } else {
                SinkError::Fatal(anyhow::anyhow!("reading position table {db}.{t}: {e}"))
            }
        })?;
        let states = worker::states_from_stored(&self.ctx, &stored)?;
        let positions: Vec<Option<&Pos>> = states.iter().map(|s| s.position.as_ref()).collect();
        tracing::info!(consumer = %self.ctx.consumer, ?positions, "apply positions loaded");
        self.states = states;
        self.loaded = true;
        Ok(())
    }

    /// Replays one DDL statement on worker 0's connection, then records it
    /// as every worker's position.
    async fn ddl(&mut self, c: &Change) -> Result<(), SinkError> {
        let ctx = self.ctx.clone();
        let d = ctx.dialect;
        let r = &c.row;
        let stmt = r.ddl.clone().unwrap_or_default();
        let conn = self.conns[0]
            .as_mut()
            .ok_or_else(|| retry("no connection".into()))?;
        let wanted = if r.source.table.is_empty() {
            ctx.filter.database(&r.source.db)
        } else {
            ctx.filter.table(&r.source.db, &r.source.table)
        };
        let sql = match (d, wanted) {
            (_, false) => None,
            (Dialect::Mysql, true) => {
                let mapped = sql::map_ddl(&stmt, &ctx.opts.database_map);
                if r.source.table.is_empty() || r.source.db.is_empty() {
                    Some(mapped)
                } else {
                    let mut s = String::from("USE ");
                    d.ident(&mut s, ctx.opts.map_db(&r.source.db));
                    Some(format!("{s}; {mapped}"))
                }
            }
            (Dialect::Postgres, true) => postgres_ddl(&ctx, c)?,
        };
        if let Some(sql) = sql {
            match conn.exec(&sql).await {
                Ok(()) => {}
                Err(e) if DDL_ALREADY.contains(&e.code.as_str()) => {
                    tracing::warn!(change = %c.origin(), statement = %stmt, error = %e, "DDL replay: already applied, going on");
                }
                Err(e) if e.retryable => {
                    self.conns[0] = None;
                    self.loaded = false;
                    return Err(retry(format!("DDL at {}: {e}", c.origin())));
                }
                Err(e) => return Err(self.refused(c, &sql, &e.message)),
            }
        }
        ctx.meta.lock().clear();
        let text = self.positions_sql(|_| Some(&c.pos));
        if let Err(e) = self.record_all(&text).await {
            self.conns[0] = None;
            self.loaded = false;
            return Err(retry(format!("recording the position after DDL: {e}")));
        }
        self.states = vec![
            WorkerState {
                position: Some(c.pos.clone()),
                snapshot: SnapshotProgress::default(),
            };
            ctx.workers
        ];
        Ok(())
    }

    fn refused(&mut self, c: &Change, statement: &str, error: &str) -> SinkError {
        let e = anyhow::anyhow!(
            "target refused the change of {} (op {}): {error}; statement: {statement}",
            c.origin(),
            c.row.op.as_str()
        );
        match c.index {
            Some(index) => SinkError::Rejected { index, error: e },
            None => SinkError::Fatal(e),
        }
    }

    /// The target metadata of the tables of snapshot rows whose keys need
    /// it for ordering (see `snapshot`), loaded on worker 0's connection.
    async fn snapshot_metas(
        &mut self,
        changes: &[Change],
    ) -> Result<HashMap<(String, String), Arc<sql::TableMeta>>, SinkError> {
        let mut out = HashMap::new();
        for c in changes.iter().filter(|c| c.snapshot) {
            let r = &c.row;
            let key = (r.source.db.clone(), r.source.table.clone());
            if r.primary_key.is_empty()
                || out.contains_key(&key)
                || !self.ctx.filter.table(&key.0, &key.1)
                || !self.states.iter().any(|s| !s.snapshot.is_empty())
            {
                continue;
            }
            let conn = self.conns[0]
                .as_mut()
                .ok_or_else(|| retry("no connection".into()))?;
            match build::meta_for(conn, &self.ctx, &key.0, &key.1).await {
                Ok(m) => {
                    out.insert(key, m);
                }
                Err(e) if e.retryable => {
                    self.conns[0] = None;
                    self.loaded = false;
                    return Err(retry(format!(
                        "reading the columns of {}.{}: {e}",
                        key.0, key.1
                    )));
                }
                // The worker reports it with the change.
                Err(_) => {}
            }
        }
        Ok(out)
    }

    /// Statements writing every worker's position row (`position(w)`),
    /// with no snapshot progress, each ending in `;`.
    fn positions_sql<'a>(&'a self, position: impl Fn(usize) -> Option<&'a Pos>) -> String {
        let ctx = &self.ctx;
        let (db, t) = &ctx.position_table;
        let mut text = String::new();
        for w in 0..ctx.workers {
            text.push_str(&target::position_sql(
                ctx.dialect,
                (db, t),
                &ctx.consumer,
                w,
                ctx.workers,
                position(w),
                None,
            ));
            text.push(';');
        }
        text
    }

    /// Runs `text` (statements writing position rows, each ending in `;`)
    /// in one transaction that first locks the consumer's rows and checks
    /// they still say what this process holds: a moved row means another
    /// writer, and nothing is written.
    async fn record_all(&mut self, text: &str) -> Result<(), DbError> {
        let ctx = self.ctx.clone();
        let (db, t) = &ctx.position_table;
        let conn = self.conns[0].as_mut().ok_or_else(|| DbError {
            retryable: true,
            message: "no connection".into(),
            code: String::new(),
        })?;
        let stored = conn.begin_locked((db, t), &ctx.consumer, None).await?;
        for (w, st) in self.states.iter().enumerate() {
            let row = stored.iter().find(|s| s.worker == w);
            if !worker::unmoved(row, st) {
                let _ = conn.exec("ROLLBACK").await;
                return Err(worker::moved(&ctx, w, row));
            }
        }
        conn.exec(&format!("{text} COMMIT")).await
    }

    fn skip(&mut self) {
        self.skipped += 1;
        SKIPPED_TOTAL.fetch_add(1, Ordering::Relaxed);
    }

    /// A new snapshot begins while workers hold the progress of an older,
    /// unfinished one (the source started afresh: it crashed before its
    /// first checkpoint): the tables that snapshot wrote are emptied (rows
    /// deleted at the source since would stay, keyless rows would double;
    /// the new snapshot brings every row back), then the progress is
    /// reset. A barrier on worker 0's connection, like DDL.
    async fn abandon_snapshot(&mut self, new: &Pos) -> Result<(), SinkError> {
        let ctx = self.ctx.clone();
        let d = ctx.dialect;
        let mut tables = std::collections::BTreeSet::new();
        for st in &self.states {
            tables.extend(st.snapshot.tables.keys().cloned());
        }
        let conn = self.conns[0]
            .as_mut()
            .ok_or_else(|| retry("no connection".into()))?;
        for name in &tables {
            let Some((db, table)) = name.split_once('.') else {
                continue;
            };
            if !ctx.filter.table(db, table) {
                continue;
            }
            let mut sql = String::from("TRUNCATE TABLE ");
            d.table(&mut sql, ctx.opts.map_db(db), table);
            tracing::warn!(consumer = %ctx.consumer, table = %name, snapshot = %new,
                "a new snapshot replaces an unfinished one: emptying the table it wrote");
            match conn.exec(&sql).await {
                Ok(()) => {}
                Err(e) if DDL_ALREADY.contains(&e.code.as_str()) => {}
                Err(e) => {
                    self.conns[0] = None;
                    self.loaded = false;
                    return Err(retry(format!("emptying {name} for a new snapshot: {e}")));
                }
            }
        }
        let text = self.positions_sql(|w| self.states[w].position.as_ref());
        if let Err(e) = self.record_all(&text).await {
            self.conns[0] = None;
            self.loaded = false;
            return Err(retry(format!("resetting snapshot progress: {e}")));
        }
        for st in &mut self.states {
            st.snapshot = SnapshotProgress::default();
        }
        for s in &mut self.seen {
            s.clear();
        }
        Ok(())
    }

    /// Applies a run of row changes (no DDL) across the workers. `newest`
    /// is the newest stream position taken so far in this batch.
    async fn rows(
        &mut self,
        changes: Vec<Change>,
        newest: &mut Option<Pos>,
    ) -> Result<(), SinkError> {
        let n = self.ctx.workers;
        if let Some(c) = changes.iter().find(|c| c.snapshot) {
            let other = |s: &WorkerState| {
                !s.snapshot.is_empty()
                    && (s.snapshot.file != c.pos.file || s.snapshot.pos != c.pos.pos)
            };
            if self.states.iter().any(other) {
                let pos = c.pos.clone();
                self.abandon_snapshot(&pos).await?;
            }
        }
        let metas = self.snapshot_metas(&changes).await?;
        let mut parts: Vec<Vec<Change>> = vec![Vec::new(); n];
        for c in changes {
            // One source's stream only moves forward: a change at or before
            // one already taken is a second copy. (After a crash the source
            // re-sends what its checkpoint had not passed; through a topic
            // both copies can reach the same batch, where the stored
            // positions, older than both, cannot tell.)
            if !c.snapshot {
                if newest.as_ref().is_some_and(|n| c.pos <= *n) {
                    self.skip();
                    continue;
                }
                match newest {
                    // In place: no allocation per change on this hot path.
                    Some(n) => n.clone_from(&c.pos),
                    None => *newest = Some(c.pos.clone()),
                }
            }
            let (first, second) = match split_pk_change(&c) {
                Some((del, ins)) => (del, Some(ins)),
                None => (c, None),
            };
            for p in std::iter::once(first).chain(second) {
                let w = p.worker(n);
                // Snapshot rows carry the snapshot's binlog position: once
                // this worker applied a stream change at or after it, a
                // redelivered snapshot row is older than the target's row.
                let st = &self.states[w];
                let mut done = st.position.as_ref().is_some_and(|s| p.pos <= *s);
                if !done && p.snapshot && !st.snapshot.is_empty() {
                    let key = (p.row.source.db.clone(), p.row.source.table.clone());
                    done = snapshot::already_applied(
                        &st.snapshot,
                        &mut self.seen[w],
                        &p,
                        metas.get(&key).map(|m| &**m),
                    );
                } else if p.snapshot && p.row.primary_key.is_empty() {
                    // Count rows of keyless tables from the first on.
                    let name = format!("{}.{}", p.row.source.db, p.row.source.table);
                    *self.seen[w].entry(name).or_insert(0) += 1;
                }
                if done {
                    self.skip();
                } else {
                    parts[w].push(p);
                }
            }
        }
        let parts: Vec<Arc<[Change]>> = parts.into_iter().map(Arc::from).collect();
        let ctx = self.ctx.clone();
        let futs = self
            .conns
            .iter_mut()
            .zip(self.states.iter_mut())
            .zip(parts.iter())
            .enumerate()
            .filter(|(_, (_, p))| !p.is_empty())
            .map(|(w, ((conn, state), part))| {
                let ctx = ctx.clone();
                async move {
                    match conn.as_mut() {
                        Some(c) => (w, worker::run(c, &ctx, w, part, state).await),
                        None => (
                            w,
                            worker::Outcome {
                                result: Err(Failure::Retry("no connection".into())),
                                skipped: 0,
                            },
                        ),
                    }
                }
            });
        let outcomes = futures::future::join_all(futs).await;
        let mut first_refused: Option<(Box<Change>, String, String)> = None;
        let mut retry_msg = None;
        for (w, o) in outcomes {
            self.skipped += o.skipped;
            match o.result {
                Ok(()) => self.applied += parts[w].len() as u64,
                Err(Failure::Retry(m)) => {
                    self.conns[w] = None;
                    self.loaded = false;
                    retry_msg = Some(format!("worker {w}: {m}"));
                }
                Err(Failure::Refused {
                    change,
                    statement,
                    error,
                }) => {
                    let earlier = first_refused
                        .as_ref()
                        .is_none_or(|(c, _, _)| change.index < c.index);
                    if earlier {
                        first_refused = Some((change, statement, error));
                    }
                }
            }
        }
        if let Some((c, s, e)) = first_refused {
            return Err(self.refused(&c, &s, &e));
        }
        if let Some(m) = retry_msg {
            return Err(retry(m));
        }
        Ok(())
    }

    async fn apply(&mut self, batch: Vec<Change>, may_hold: bool) -> Result<(), SinkError> {
        self.connect().await?;
        let mut changes = std::mem::take(&mut self.held);
        for c in &mut changes {
            // Not in this batch: its refusal cannot name a record of it.
            c.index = None;
        }
        changes.extend(batch);
        // Hold back the unfinished tail of a source transaction.
        let cut = changes
            .iter()
            .rposition(Change::ends_txn)
            .map_or(0, |i| i + 1);
        let tail = changes.len() - cut;
        let hold = may_hold
            && tail > 0
            && tail <= self.ctx.opts.hold_rows
            && changes[cut..].iter().all(|c| c.direct);
        let held = if hold {
            changes.split_off(cut)
        } else {
            Vec::new()
        };
        // Runs of rows between DDL barriers.
        let mut run = Vec::new();
        let mut newest = None;
        for c in changes {
            if c.row.op != Op::Ddl {
                run.push(c);
                continue;
            }
            if !run.is_empty() {
                self.rows(std::mem::take(&mut run), &mut newest).await?;
            }
            let done = self
                .states
                .iter()
                .filter_map(|s| s.position.as_ref())
                .any(|p| c.pos <= *p);
            if !done {
                self.ddl(&c).await?;
            }
        }
        if !run.is_empty() {
            self.rows(run, &mut newest).await?;
        }
        self.held = held;
        Ok(())
    }

    /// Applies one batch's changes (after what an earlier batch held
    /// back). `may_hold`: the batch's unfinished last transaction may wait
    /// for the next batch (not when a refused record follows it).
    pub async fn write(&mut self, changes: Vec<Change>, may_hold: bool) -> Result<(), SinkError> {
        let seen = self.seen.clone();
        let held = self.held.clone();
        let r = self.apply(changes, may_hold).await;
        match &r {
            // The engine sends this batch again.
            Err(SinkError::Retryable(_)) => {
                self.seen = seen;
                self.held = held;
            }
            // Everything before the refused change is committed; the
            // engine resends what follows it.
            Err(SinkError::Rejected { .. }) => self.held.clear(),
            _ => {}
        }
        self.clean = r.is_ok();
        r
    }

    /// The sink's input is drained.
    pub async fn close(&mut self) -> anyhow::Result<()> {
        // Align every worker on the furthest position (everything up to it
        // is applied), so parallelism may change before the next start.
        let n = self.ctx.workers;
        let Some(max) = self
            .states
            .iter()
            .filter_map(|s| s.position.as_ref())
            .max()
            .cloned()
        else {
            return Ok(());
        };
        if n > 1 && self.clean && self.held.is_empty() && self.conns[0].is_some() {
            let text = self.positions_sql(|_| Some(&max));
            self.record_all(&text)
                .await
                .map_err(|e: DbError| anyhow::anyhow!("recording positions at close: {e}"))?;
        }
        tracing::info!(consumer = %self.ctx.consumer, applied = self.applied, skipped = self.skipped, position = %max, "apply sink closed");
        Ok(())
    }
}
