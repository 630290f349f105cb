//! `sluice verify`: compares source and target table contents by primary
//! key chunks (CRC32 per chunk, tables and chunks in parallel), drills
//! into chunks that differ, and reports the primary keys missing, extra or
//! different, with a summary. `retry_secs` re-checks differing chunks
//! after a wait (up to `retries` rounds), so it can run while replication
//! is live. The source is MySQL / MariaDB; the target MySQL / MariaDB or
//! PostgreSQL (`postgres://…`). Touches both databases, read-only.

pub mod canon;
pub mod table;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use globset::{Glob, GlobSetBuilder};
use parking_lot::Mutex;

use crate::apply::sql::Dialect;
use crate::apply::target::{Conn, DbError};
use table::{Chunk, Diff, Table};

/// What to compare.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// `mysql://…` of the source.
    pub source: String,
    /// `mysql://…` or `postgres://…` of the target (PostgreSQL TLS:
    /// `?sslmode=…&sslrootcert=…`, see `apply::pg_tls`).
    pub target: String,
    /// Globs on `db.table` (default: every table outside the system
    /// databases and `sluice`).
    pub tables: Vec<String>,
    /// Source database → target database (PostgreSQL: schema).
    pub database_map: BTreeMap<String, String>,
    /// Wait this long before re-checking differing chunks (0: no re-check).
    pub retry_secs: u64,
    /// Re-check rounds at most (with `retry_secs`).
    pub retries: u32,
    /// Rows per chunk.
    pub chunk_rows: usize,
    /// Chunks checked at once.
    pub parallelism: usize,
    /// Primary keys listed per table and kind at most.
    pub max_keys: usize,
}

impl VerifyOptions {
    pub fn new(source: impl Into<String>, target: impl Into<String>) -> VerifyOptions {
        VerifyOptions {
            source: source.into(),
            target: target.into(),
            tables: Vec::new(),
            database_map: BTreeMap::new(),
            retry_secs: 0,
            retries: 5,
            chunk_rows: 10_000,
            parallelism: 4,
            max_keys: 100,
        }
    }
}

/// The result for one table.
#[derive(Clone, Debug, Default)]
pub struct TableReport {
    /// `db.table` in the source.
    pub source: String,
    /// `db.table` in the target.
    pub target: String,
    pub source_rows: u64,
    pub target_rows: u64,
    pub chunks: usize,
    pub differing_chunks: usize,
    pub diff: Diff,
    /// The table could not be compared (missing on the target, …).
    pub error: Option<String>,
}

/// The result of a run.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    pub tables: Vec<TableReport>,
    pub elapsed: Duration,
}

impl VerifyReport {
    /// Every table equal: the exit status is 0 only then.
    pub fn is_equal(&self) -> bool {
        self.tables
            .iter()
            .all(|t| t.error.is_none() && t.diff.is_empty())
    }

    /// Prints the differences and a summary.
    pub fn print(&self, out: &mut impl Write, max_keys: usize) -> std::io::Result<()> {
        let mut rows = 0;
        for t in &self.tables {
            rows += t.source_rows;
            if let Some(e) = &t.error {
                writeln!(out, "{}: ERROR {e}", t.source)?;
                continue;
            }
            let d = &t.diff;
            let status = if d.is_empty() { "equal" } else { "DIFFERENT" };
            writeln!(
                out,
                "{} -> {}: {status} ({} source rows, {} target rows, {} chunks, {} differing)",
                t.source, t.target, t.source_rows, t.target_rows, t.chunks, t.differing_chunks
            )?;
            for (label, keys) in [
                ("missing in target", &d.missing),
                ("extra in target", &d.extra),
                ("different", &d.different),
            ] {
                if keys.is_empty() {
                    continue;
                }
                let shown: Vec<&str> = keys.iter().take(max_keys).map(String::as_str).collect();
                let more = keys.len().saturating_sub(max_keys);
                write!(out, "  {label} ({}): {}", keys.len(), shown.join(" | "))?;
                if more > 0 {
                    write!(out, " … and {more} more")?;
                }
                writeln!(out)?;
            }
        }
        let bad = self
            .tables
            .iter()
            .filter(|t| t.error.is_some() || !t.diff.is_empty())
            .count();
        writeln!(
            out,
            "verify: {} tables, {rows} rows, {bad} differing, {:.2} s: {}",
            self.tables.len(),
            self.elapsed.as_secs_f64(),
            if self.is_equal() {
                "EQUAL"
            } else {
                "DIFFERENT"
            }
        )
    }
}

/// Connections to one side, reused.
struct Pool {
    dialect: Dialect,
    url: String,
    idle: Mutex<Vec<Conn>>,
}

impl Pool {
    async fn get(&self) -> Result<Conn, DbError> {
        if let Some(c) = self.idle.lock().pop() {
            return Ok(c);
        }
        let mut c = Conn::connect(self.dialect, &self.url).await?;
        if self.dialect == Dialect::Mysql {
            c.exec("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                .await?;
        }
        Ok(c)
    }

    fn put(&self, c: Conn) {
        self.idle.lock().push(c);
    }
}

fn dialect_of(url: &str) -> Dialect {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") || url.contains("host=") {
        Dialect::Postgres
    } else {
        Dialect::Mysql
    }
}

/// The tables the globs select, from the source.
async fn tables(src: &mut Conn, opts: &VerifyOptions) -> anyhow::Result<Vec<Table>> {
    let mut b = GlobSetBuilder::new();
    for g in &opts.tables {
        b.add(Glob::new(g).map_err(|e| anyhow::anyhow!("--tables {g}: {e}"))?);
    }
    let globs = b.build()?;
    let rows = src
        .rows(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' \
             AND TABLE_SCHEMA NOT IN ('mysql','information_schema','performance_schema','sys','sluice') \
             ORDER BY TABLE_SCHEMA, TABLE_NAME",
        )
        .await
        .map_err(|e| anyhow::anyhow!("listing source tables: {e}"))?;
    let mut out = Vec::new();
    for r in rows {
        let (Some(Some(db)), Some(Some(t))) = (r.first(), r.get(1)) else {
            continue;
        };
        if !opts.tables.is_empty() && !globs.is_match(format!("{db}.{t}")) {
            continue;
        }
        let (columns, pk_names) = table::describe(src, db, t)
            .await
            .map_err(|e| anyhow::anyhow!("describing {db}.{t}: {e}"))?;
        let pk = pk_names
            .iter()
            .filter_map(|n| columns.iter().position(|c| &c.name == n))
            .collect();
        out.push(Table {
            target_db: opts
                .database_map
                .get(db)
                .cloned()
                .unwrap_or_else(|| db.clone()),
            db: db.clone(),
            table: t.clone(),
            columns,
            pk,
        });
    }
    Ok(out)
}

/// A checked chunk, or its (table, chunk) and the error.
type ChunkResult = Result<Checked, ((usize, usize), String)>;

/// Outcome of checking one chunk.
struct Checked {
    table: usize,
    chunk: usize,
    source_rows: u64,
    target_rows: u64,
    diff: Diff,
}

async fn check(t: &Table, c: &Chunk, src: &Pool, dst: &Pool) -> Result<(u64, u64, Diff), DbError> {
    let (mut a, mut b) = (src.get().await?, dst.get().await?);
    let res = async {
        if dst.dialect == Dialect::Mysql {
            let (x, y) =
                futures::try_join!(t.crc_sql(&mut a, false, c), t.crc_sql(&mut b, true, c))?;
            if x == y {
                return Ok((x.rows, y.rows, Diff::default()));
            }
        }
        let (x, y) = futures::try_join!(t.rows(&mut a, false, c), t.rows(&mut b, true, c))?;
        let (n, m) = (x.len() as u64, y.len() as u64);
        if table::sum_of(&x) == table::sum_of(&y) {
            return Ok((n, m, Diff::default()));
        }
        Ok((n, m, table::diff(&x, &y)))
    }
    .await;
    src.put(a);
    dst.put(b);
    res
}

/// Compares the source and the target.
pub async fn run(opts: VerifyOptions) -> anyhow::Result<VerifyReport> {
    let started = Instant::now();
    let src = Arc::new(Pool {
        dialect: Dialect::Mysql,
        url: opts.source.clone(),
        idle: Mutex::new(Vec::new()),
    });
    let dst = Arc::new(Pool {
        dialect: dialect_of(&opts.target),
        url: opts.target.clone(),
        idle: Mutex::new(Vec::new()),
    });
    let mut first = src
        .get()
        .await
        .map_err(|e| anyhow::anyhow!("source: {e}"))?;
    let list = tables(&mut first, &opts).await?;
    src.put(first);
    let mut reports: Vec<TableReport> = list
        .iter()
        .map(|t| TableReport {
            source: format!("{}.{}", t.db, t.table),
            target: format!("{}.{}", t.target_db, t.table),
            ..TableReport::default()
        })
        .collect();
    // Chunk boundaries, tables in parallel.
    let par = opts.parallelism.max(1);
    let bounds: Vec<(usize, Result<Vec<Chunk>, String>)> =
        futures::stream::iter(list.iter().enumerate())
            .map(|(i, t)| {
                let (src, dst) = (src.clone(), dst.clone());
                async move {
                    let r = async {
                        let mut d = dst.get().await.map_err(|e| format!("target: {e}"))?;
                        let exists = d
                            .table_meta(&t.target_db, &t.table)
                            .await
                            .map_err(|e| e.to_string());
                        dst.put(d);
                        if exists?.is_none() {
                            return Err("table missing in the target".to_string());
                        }
                        let mut s = src.get().await.map_err(|e| format!("source: {e}"))?;
                        let c = t
                            .chunks(&mut s, opts.chunk_rows)
                            .await
                            .map_err(|e| e.to_string());
                        src.put(s);
                        c
                    }
                    .await;
                    (i, r)
                }
            })
            .buffer_unordered(par)
            .collect()
            .await;
    let mut chunks: Vec<Vec<Chunk>> = vec![Vec::new(); list.len()];
    for (i, r) in bounds {
        match r {
            Ok(c) => chunks[i] = c,
            Err(e) => reports[i].error = Some(e),
        }
    }
    let mut todo: Vec<(usize, usize)> = chunks
        .iter()
        .enumerate()
        .flat_map(|(t, cs)| (0..cs.len()).map(move |c| (t, c)))
        .collect();
    for (t, cs) in chunks.iter().enumerate() {
        reports[t].chunks = cs.len();
    }
    let mut round = 0;
    let mut results: BTreeMap<(usize, usize), Checked> = BTreeMap::new();
    let mut failed: BTreeMap<(usize, usize), String> = BTreeMap::new();
    loop {
        let checked: Vec<ChunkResult> = futures::stream::iter(todo.iter().copied())
            .map(|(ti, ci)| {
                let (src, dst) = (src.clone(), dst.clone());
                let (t, c) = (&list[ti], &chunks[ti][ci]);
                async move {
                    let (source_rows, target_rows, diff) = check(t, c, &src, &dst)
                        .await
                        .map_err(|e| ((ti, ci), format!("chunk {ci}: {e}")))?;
                    Ok(Checked {
                        table: ti,
                        chunk: ci,
                        source_rows,
                        target_rows,
                        diff,
                    })
                }
            })
            .buffer_unordered(par)
            .collect()
            .await;
        for r in checked {
            match r {
                Ok(c) => {
                    failed.remove(&(c.table, c.chunk));
                    results.insert((c.table, c.chunk), c);
                }
                Err((k, e)) => {
                    results.remove(&k);
                    failed.insert(k, e);
                }
            }
        }
        todo = results
            .iter()
            .filter(|(_, c)| !c.diff.is_empty())
            .map(|(k, _)| *k)
            .chain(failed.keys().copied())
            .collect();
        round += 1;
        if todo.is_empty() || opts.retry_secs == 0 || round > opts.retries {
            break;
        }
        tracing::info!(
            chunks = todo.len(),
            "differing chunks; re-checking after {} s",
            opts.retry_secs
        );
        tokio::time::sleep(Duration::from_secs(opts.retry_secs)).await;
    }
    for ((t, _), e) in failed {
        reports[t].error.get_or_insert(e);
    }
    for c in results.into_values() {
        let r = &mut reports[c.table];
        r.source_rows += c.source_rows;
        r.target_rows += c.target_rows;
        if !c.diff.is_empty() {
            r.differing_chunks += 1;
            r.diff.missing.extend(c.diff.missing);
            r.diff.extra.extend(c.diff.extra);
            r.diff.different.extend(c.diff.different);
        }
    }
    Ok(VerifyReport {
        tables: reports,
        elapsed: started.elapsed(),
    })
}

/// Parses `--database-map a=b` values.
pub fn parse_database_map(items: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for item in items {
        let (a, b) = item
            .split_once('=')
            .filter(|(a, b)| !a.is_empty() && !b.is_empty())
            .ok_or_else(|| format!("--database-map `{item}`: expected source=target"))?;
        map.insert(a.to_string(), b.to_string());
    }
    Ok(map)
}

/// What `sluice verify` does: runs, prints the report to stdout, and
/// returns whether everything is equal (exit status 0 only then).
pub async fn run_and_print(opts: VerifyOptions) -> anyhow::Result<bool> {
    let max_keys = opts.max_keys;
    let report = run(opts).await?;
    let stdout = std::io::stdout();
    report.print(&mut stdout.lock(), max_keys)?;
    Ok(report.is_equal())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_map_flags() {
        let m = parse_database_map(&["shop=shop_replica".into()]).unwrap();
        assert_eq!(m["shop"], "shop_replica");
        assert!(parse_database_map(&["shop".into()]).is_err());
        assert_eq!(dialect_of("postgres://u@h/db"), Dialect::Postgres);
        assert_eq!(dialect_of("mysql://root@h:3306"), Dialect::Mysql);
    }
}
