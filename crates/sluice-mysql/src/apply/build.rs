//! Statement building for an apply worker: the target table of each
//! change (metadata cached in the shared context, the table created when
//! `create_tables` allows), and the SQL text of a run of changes in parts
//! of about a thousand rows — consecutive upserts / deletes of one table
//! merged into multi-row statements (never the same key twice in one
//! statement). With `prepared`, merged statements of a MySQL target go as
//! binary-protocol blocks (`prepared`). A part is built on a blocking
//! thread while the previous one executes (see `worker`). Touches the target only to read metadata (and
//! to create tables).

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;

use serde_json::{Map, Value};
use sluice_core::record::Op;

use super::change::Change;
use super::prepared::{self, Pieces};
use super::sql::{self, Dialect, TableMeta};
use super::target::{self, Conn, DbError};
use super::worker::Ctx;

/// The most rows merged into one group: two prepared blocks of the
/// largest size, so a long run costs two round trips per group (1000 took
/// nine: 512 + 7 × 64 + a text remainder).
pub const MERGE_ROWS: usize = 2 * prepared::BLOCKS[0];

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
        table: Arc<(String, String)>,
        pk: &'a [String],
        meta: Arc<TableMeta>,
        rows: Vec<&'a Map<String, Value>>,
        keys: HashSet<u64>,
    },
    Delete {
        table: Arc<(String, String)>,
        pk: &'a [String],
        meta: Arc<TableMeta>,
        rows: Vec<&'a Map<String, Value>>,
    },
}

/// A hash of a row's primary-key values (a collision only cuts a merged
/// statement short).
fn pk_hash(pk: &[String], row: &Map<String, Value>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for c in pk {
        match row.get(c) {
            Some(Value::String(s)) => s.hash(&mut h),
            Some(Value::Number(n)) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => i.hash(&mut h),
                (_, Some(u)) => u.hash(&mut h),
                _ => n.to_string().hash(&mut h),
            },
            Some(v) => v.to_string().hash(&mut h),
            None => 0u8.hash(&mut h),
        }
    }
    h.finish()
}

fn same_columns(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    a.len() == b.len() && a.keys().zip(b.keys()).all(|(x, y)| x == y)
}

impl Group<'_> {
    /// Appends the group's statement(s): binary-protocol blocks when
    /// `binary` (MySQL targets), else text.
    fn write(&self, d: Dialect, binary: bool, out: &mut Pieces) -> Result<(), String> {
        let binary = binary && d == Dialect::Mysql;
        match self {
            Group::Upsert {
                table,
                pk,
                meta,
                rows,
                ..
            } if binary => prepared::upsert(out, (&table.0, &table.1), meta, pk, rows),
            Group::Upsert {
                table,
                pk,
                meta,
                rows,
                ..
            } => {
                out.text(&sql::upsert(d, &table.0, &table.1, meta, pk, rows)?);
                out.text(";");
                Ok(())
            }
            Group::Delete {
                table,
                pk,
                meta,
                rows,
            } if binary => prepared::delete(out, (&table.0, &table.1), meta, pk, rows),
            Group::Delete {
                table,
                pk,
                meta,
                rows,
            } => {
                out.text(&sql::delete_by_pk(d, &table.0, &table.1, meta, pk, rows)?);
                out.text(";");
                Ok(())
            }
        }
    }
}

/// A change's target table: (target db, table) and its metadata; `None`
/// for DDL and filtered-out tables.
pub type Target = Option<(Arc<(String, String)>, Arc<TableMeta>)>;

/// A refusal to render: (index of the change, statement, error).
pub type BuildError = (usize, String, DbError);

fn bad(i: usize, message: String) -> BuildError {
    (
        i,
        String::new(),
        DbError {
            retryable: false,
            message,
            code: String::new(),
        },
    )
}

/// The target of every change (consecutive changes of one table share the
/// lookup).
pub async fn resolve(
    conn: &mut Conn,
    ctx: &Ctx,
    changes: &[Change],
) -> Result<Vec<Target>, BuildError> {
    let mut out = Vec::with_capacity(changes.len());
    let mut last: Option<(&str, &str, Target)> = None;
    for (i, c) in changes.iter().enumerate() {
        let r = &c.row;
        if r.op == Op::Ddl {
            out.push(None);
            continue;
        }
        let (sdb, table) = (r.source.db.as_str(), r.source.table.as_str());
        let same = matches!(&last, Some((d, t, _)) if *d == sdb && *t == table);
        if !same {
            let target = if ctx.filter.table(sdb, table) {
                let meta = meta_for(conn, ctx, sdb, table)
                    .await
                    .map_err(|e| (i, String::new(), e))?;
                let tkey = Arc::new((ctx.opts.map_db(sdb).to_string(), table.to_string()));
                Some((tkey, meta))
            } else {
                None
            };
            last = Some((sdb, table, target));
        }
        out.push(last.as_ref().and_then(|l| l.2.clone()));
    }
    Ok(out)
}

/// Builds the statements of `changes[range]` part by part. Owns what it
/// reads, so a part can be built on another thread.
pub struct Builder {
    ctx: Arc<Ctx>,
    changes: Arc<[Change]>,
    range: Range<usize>,
    /// Targets of `changes[range]`, in order.
    targets: Vec<Target>,
    next: usize,
    merge: bool,
    /// Merged statements as binary-protocol blocks (MySQL targets).
    pub binary: bool,
}

impl Builder {
    pub fn new(
        ctx: Arc<Ctx>,
        changes: Arc<[Change]>,
        range: Range<usize>,
        targets: Vec<Target>,
        merge: bool,
    ) -> Builder {
        Builder {
            ctx,
            next: range.start,
            changes,
            range,
            targets,
            merge,
            binary: false,
        }
    }

    pub fn done(&self) -> bool {
        self.next >= self.range.end
    }

    /// The statements (each ending with `;`) of the next changes, at
    /// least `rows` rows unless the range ends; errors name the change
    /// (index within the range).
    pub fn next_part(&mut self, rows: usize) -> Result<Pieces, BuildError> {
        let changes = self.changes.clone();
        let d = self.ctx.dialect;
        let binary = self.binary;
        let base = self.range.start;
        let mut out = Pieces::default();
        let mut in_part = 0;
        let mut group: Option<Group> = None;
        let flush = |g: Group, out: &mut Pieces, i: usize| -> Result<(), BuildError> {
            g.write(d, binary, out).map_err(|e| bad(i, e))
        };
        while self.next < self.range.end {
            let i = self.next - base;
            let c = &changes[self.next];
            let Some((tkey, meta)) = &self.targets[i] else {
                self.next += 1;
                continue;
            };
            let r = &c.row;
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
            let h = upsert_row
                .filter(|_| !pk.is_empty())
                .map(|a| pk_hash(pk, a));
            // Try to extend the current group.
            if self.merge {
                match (&mut group, upsert_row, delete_row) {
                    (
                        Some(Group::Upsert {
                            table, rows, keys, ..
                        }),
                        Some(a),
                        _,
                    ) if Arc::ptr_eq(table, tkey)
                        && rows.len() < MERGE_ROWS
                        && same_columns(rows[0], a)
                        && h.is_none_or(|h| !keys.contains(&h)) =>
                    {
                        keys.extend(h);
                        rows.push(a);
                        self.next += 1;
                        in_part += 1;
                        continue;
                    }
                    (Some(Group::Delete { table, rows, .. }), _, Some(b))
                        if Arc::ptr_eq(table, tkey) && rows.len() < MERGE_ROWS =>
                    {
                        rows.push(b);
                        self.next += 1;
                        in_part += 1;
                        continue;
                    }
                    _ => {}
                }
            }
            if let Some(g) = group.take() {
                flush(g, &mut out, i)?;
                if in_part >= rows {
                    return Ok(out);
                }
            }
            if let Some(a) = upsert_row {
                group = Some(Group::Upsert {
                    table: tkey.clone(),
                    pk,
                    meta: meta.clone(),
                    rows: vec![a],
                    keys: h.into_iter().collect(),
                });
            } else if let Some(b) = delete_row {
                group = Some(Group::Delete {
                    table: tkey.clone(),
                    pk,
                    meta: meta.clone(),
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
                out.text(
                    &sql::no_pk_change(d, &tkey.0, &tkey.1, meta, before, after)
                        .map_err(|e| bad(i, e))?,
                );
                out.text(";");
            }
            self.next += 1;
            in_part += 1;
            if !self.merge {
                if let Some(g) = group.take() {
                    flush(g, &mut out, i)?;
                }
            }
        }
        if let Some(g) = group.take() {
            flush(g, &mut out, (self.range.end - base).saturating_sub(1))?;
        }
        Ok(out)
    }
}

/// Every statement of `changes` at once (the slow path: one change at a
/// time when locating a refused change).
pub async fn statements(
    conn: &mut Conn,
    ctx: &Arc<Ctx>,
    changes: &[Change],
    merge: bool,
) -> Result<String, BuildError> {
    let targets = resolve(conn, ctx, changes).await?;
    let n = changes.len();
    let mut b = Builder::new(ctx.clone(), changes.into(), 0..n, targets, merge);
    Ok(b.next_part(usize::MAX)?.to_text())
}
