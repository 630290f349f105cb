//! The options of the apply sinks (`type: mysql`, `type: postgres`), as
//! written in pipeline YAML; unknown keys are errors. Touches nothing but
//! memory.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::filter::TableFilter;

use super::sql::Dialect;

/// What the sink does with a row the target refuses (constraint, type).
/// The engine's own `on_error` (stop / drop / dead_letter) sees the
/// refusal unless this says `skip`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RowErrors {
    /// Hand the refused row to the engine (`on_error` decides; default stop).
    #[default]
    Engine,
    /// Log it with its position and statement, count it, go on.
    Skip,
}

fn default_parallelism() -> usize {
    1
}
fn default_max_transactions() -> usize {
    1000
}
fn default_max_rows() -> usize {
    20_000
}
fn default_hold_rows() -> usize {
    100_000
}

/// `type: mysql` / `type: postgres` sink options.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyOptions {
    /// Target: `mysql://user:pw@host:port/` (TLS `?require_ssl=true`) or
    /// `postgres://user@host:port/db` (`host=… user=…` also accepted; TLS
    /// `?sslmode=verify-full&sslrootcert=/ca.pem`, as libpq).
    pub url: String,
    /// Source database → target database (PostgreSQL: target schema).
    #[serde(default)]
    pub database_map: BTreeMap<String, String>,
    /// Globs on the source's `db.table`.
    #[serde(default)]
    pub include_tables: Vec<String>,
    #[serde(default)]
    pub exclude_tables: Vec<String>,
    /// Workers applying rows hashed by (table, primary key).
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
    /// Source transactions per target transaction at most.
    #[serde(default = "default_max_transactions")]
    pub max_transactions: usize,
    /// Rows per target transaction at most (a longer source transaction
    /// is never split for this; see `hold_rows`).
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// A source transaction cut by the engine's batch is held back until
    /// its end arrives (straight from a `type: mysql` source only) up to
    /// this many rows; beyond, it is applied in parts.
    #[serde(default = "default_hold_rows")]
    pub hold_rows: usize,
    /// Create missing target tables from the source schema (needs
    /// `source_url`).
    #[serde(default)]
    pub create_tables: bool,
    /// The source server, read for `create_tables` only.
    #[serde(default)]
    pub source_url: Option<String>,
    /// Name of this consumer's rows in the position table (default: the
    /// sink's name).
    #[serde(default)]
    pub consumer: Option<String>,
    /// Position table (MySQL default `sluice.sluice_apply_position`,
    /// PostgreSQL default `public.sluice_apply_position`).
    #[serde(default)]
    pub position_table: Option<String>,
    /// `skip` logs and skips refused rows; otherwise the engine's `on_error`.
    #[serde(default)]
    pub on_row_error: RowErrors,
    /// MySQL / MariaDB targets: send merged rows as prepared statements
    /// (binary protocol, parsed once per connection). `false` sends only
    /// text statements (e.g. behind a proxy without prepared statements).
    #[serde(default = "default_true")]
    pub prepared_statements: bool,
}

fn default_true() -> bool {
    true
}

impl ApplyOptions {
    /// Checks what can be checked without a server.
    pub fn validate(&self, dialect: Dialect) -> Result<(), String> {
        match dialect {
            Dialect::Mysql => {
                mysql_async::Opts::from_url(&self.url).map_err(|e| format!("url: {e}"))?;
            }
            Dialect::Postgres => {
                super::pg_tls::parse(&self.url)?;
            }
        }
        if let Some(u) = &self.source_url {
            mysql_async::Opts::from_url(u).map_err(|e| format!("source_url: {e}"))?;
        }
        if self.create_tables && self.source_url.is_none() {
            return Err("create_tables needs source_url (the source's schema is read)".into());
        }
        if self.parallelism == 0 || self.parallelism > 64 {
            return Err("parallelism must be between 1 and 64".into());
        }
        if self.max_transactions == 0 || self.max_rows == 0 {
            return Err("max_transactions and max_rows must be positive".into());
        }
        if let Some(t) = &self.position_table {
            if t.split('.').count() != 2 {
                return Err(format!("position_table `{t}` must be `database.table`"));
            }
        }
        self.filter()?;
        Ok(())
    }

    pub fn filter(&self) -> Result<TableFilter, String> {
        TableFilter::new(&self.include_tables, &self.exclude_tables, &[], &[])
    }

    /// The target database (schema) of a source database.
    pub fn map_db<'a>(&'a self, db: &'a str) -> &'a str {
        self.database_map.get(db).map_or(db, String::as_str)
    }

    /// The position table as (database, table).
    pub fn position_table(&self, dialect: Dialect) -> (String, String) {
        let t = self
            .position_table
            .clone()
            .unwrap_or_else(|| match dialect {
                Dialect::Mysql => "sluice.sluice_apply_position".into(),
                Dialect::Postgres => "public.sluice_apply_position".into(),
            });
        let (a, b) = t
            .split_once('.')
            .unwrap_or(("sluice", "sluice_apply_position"));
        (a.to_string(), b.to_string())
    }
}
