//! DDL replay rules of the apply sinks: which replay errors mean the
//! statement already happened, and what a PostgreSQL target replays.
//! Touches nothing but memory.

use sluice_core::component::SinkError;

use super::change::Change;
use super::sql::Dialect;
use super::worker::Ctx;

/// Errors from DDL replay that mean it already happened (a replay after a
/// crash between the DDL and its position): table/column/key exists or
/// is already gone.
pub const DDL_ALREADY: &[&str] = &[
    "1007", "1008", "1050", "1051", "1054", "1060", "1061", "1091", "1146", "42P07", "42P01",
    "42701", "42703", "3F000", "42P06",
];

/// PostgreSQL: replays TRUNCATE and DROP TABLE; CREATE TABLE is left to
/// `create_tables` (the table is created from the source schema on its
/// first row); other DDL is refused (replay it by hand).
pub fn postgres_ddl(ctx: &Ctx, c: &Change) -> Result<Option<String>, SinkError> {
    let r = &c.row;
    let stmt = r.ddl.clone().unwrap_or_default();
    let words: Vec<String> = stmt
        .split_whitespace()
        .take(3)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let mut t = String::new();
    Dialect::Postgres.table(&mut t, ctx.opts.map_db(&r.source.db), &r.source.table);
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    Ok(match (w(0), w(1)) {
        ("TRUNCATE", _) => Some(format!("TRUNCATE {t}")),
        ("DROP", "TABLE") => Some(format!("DROP TABLE IF EXISTS {t}")),
        ("CREATE", "TABLE") if ctx.opts.create_tables => None,
        ("CREATE" | "DROP", "DATABASE" | "SCHEMA") => None,
        _ => {
            return Err(SinkError::Fatal(anyhow::anyhow!(
                "PostgreSQL target cannot replay the DDL of {}: {stmt} (apply it by hand, \
                 then restart)",
                c.origin()
            )))
        }
    })
}
