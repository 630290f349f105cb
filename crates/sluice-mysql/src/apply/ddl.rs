//! DDL replay rules of the apply sinks: which replay errors mean the
//! statement already happened, and what a PostgreSQL target replays (the
//! ALTER / RENAME translation is `pg_ddl`). Touches nothing but memory.

use sluice_core::component::SinkError;

use super::change::Change;
use super::pg_ddl::translate;
use super::pg_lex::{tokens, Tok};
use super::sql::Dialect;
use super::target::position_sql;
use super::worker::Ctx;

/// Errors from DDL replay that mean it already happened (a replay after a
/// crash between the DDL and its position): table/column/key exists or
/// is already gone.
pub const DDL_ALREADY: &[&str] = &[
    "1007", "1008", "1050", "1051", "1054", "1060", "1061", "1091", "1146", "42P07", "42P01",
    "42701", "42703", "3F000", "42P06",
];

/// PostgreSQL: replays TRUNCATE, DROP TABLE, ALTER TABLE and RENAME
/// TABLE (translated by `pg_ddl`); CREATE TABLE is left to
/// `create_tables` (the table is created from the source schema on its
/// first row); CREATE / DROP INDEX is logged and ignored; other DDL stops
/// the sink with the statement, its position and what to do.
pub fn postgres_ddl(ctx: &Ctx, c: &Change) -> Result<Option<String>, SinkError> {
    let r = &c.row;
    let stmt = r.ddl.clone().unwrap_or_default();
    let words: Vec<String> = tokens(&stmt)
        .unwrap_or_default()
        .into_iter()
        .take(4)
        .map(|t| match t {
            Tok::Word(w) => w.to_ascii_uppercase(),
            _ => String::new(),
        })
        .collect();
    let mut t = String::new();
    Dialect::Postgres.table(&mut t, ctx.opts.map_db(&r.source.db), &r.source.table);
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    let (w0, mut w1) = (w(0), w(1));
    if matches!(
        w1,
        "ONLINE" | "OFFLINE" | "IGNORE" | "UNIQUE" | "FULLTEXT" | "SPATIAL"
    ) {
        w1 = w(2);
    }
    Ok(match (w0, w1) {
        ("TRUNCATE", _) => Some(format!("TRUNCATE {t}")),
        ("CREATE", "TABLE") if ctx.opts.create_tables => None,
        ("CREATE" | "DROP" | "ALTER", "DATABASE" | "SCHEMA") => None,
        // Temporary tables are not in row-based binlogs.
        ("CREATE" | "DROP", "TEMPORARY") => None,
        // MariaDB: a new table in place of the old one, created (by
        // create_tables) on its first row.
        ("CREATE", "OR") if ctx.opts.create_tables && w(3) == "TABLE" => {
            Some(format!("DROP TABLE IF EXISTS {t}"))
        }
        ("CREATE" | "DROP", "INDEX") => {
            tracing::info!(change = %c.origin(), statement = %stmt,
                "PostgreSQL target: index DDL ignored (indexes are not replicated)");
            None
        }
        ("ALTER", _) | ("RENAME", "TABLE" | "TABLES") | ("DROP", "TABLE") => {
            let keep = |db: &str, table: &str| ctx.filter.table(db, table);
            let tr = translate(&stmt, &r.source.db, &ctx.opts.database_map, &keep)
                .map_err(|why| refuse(ctx, c, &stmt, &why))?;
            if !tr.ignored.is_empty() {
                tracing::info!(change = %c.origin(), statement = %stmt, ignored = ?tr.ignored,
                    "PostgreSQL target: DDL clauses without effect on the copy ignored");
            }
            (!tr.sql.is_empty()).then(|| tr.sql.join(";\n"))
        }
        _ => {
            return Err(refuse(
                ctx,
                c,
                &stmt,
                "this kind of statement is not translated",
            ))
        }
    })
}

/// The error that stops the sink at a DDL it cannot replay: the statement,
/// its position, why, and the statements that record it as applied once
/// the change is made on the target by hand.
fn refuse(ctx: &Ctx, c: &Change, stmt: &str, why: &str) -> SinkError {
    let (db, table) = &ctx.position_table;
    let mark: Vec<String> = (0..ctx.workers)
        .map(|w| {
            position_sql(
                Dialect::Postgres,
                (db, table),
                &ctx.consumer,
                w,
                ctx.workers,
                Some(&c.pos),
                None,
            )
        })
        .collect();
    SinkError::Fatal(anyhow::anyhow!(
        "PostgreSQL target cannot replay the DDL of {}: {why}; statement: {stmt} — make the \
         change on the target by hand, then mark the statement applied with `{};` and restart \
         (or exclude the table with exclude_tables)",
        c.origin(),
        mark.join("; ")
    ))
}
