//! Replica apply: the sinks `type: mysql` (MySQL / MariaDB target) and
//! `type: postgres` (PostgreSQL target) turn row-change records back into
//! SQL on a target database, exactly once.
//!
//! Module map: `options` (YAML options), `change` (records → changes with
//! their binlog position and worker hash), `sql` (statements and value
//! rendering per target column type, both dialects), `target` (the target
//! connection: transactions, the position table, column metadata, DDL,
//! `create_tables`), `sink` (the pipelined sink in front of the applier's
//! task), `applier` (batches → workers, skip-on-restart, DDL barriers,
//! error localisation), `worker` (one worker's target transactions), `build`
//! (statement text in parts), `prepared` (binary-protocol blocks for
//! MySQL targets), `ddl` (DDL replay rules), `pg_ddl` / `pg_lex` /
//! `pg_coldef` (MySQL ALTER / RENAME / DROP TABLE → PostgreSQL), `pg_tls`
//! (TLS to PostgreSQL: `sslmode`, `sslrootcert`),
//! `snapshot` (snapshot progress kept with the position). The sinks touch only the target database (and the
//! source database's schema when `create_tables` is on).

pub mod applier;
pub mod build;
pub mod change;
pub mod ddl;
pub mod options;
pub mod pg_ddl;
pub mod pg_lex;
pub mod pg_tls;
pub mod prepared;
pub mod sink;
pub mod snapshot;
pub mod sql;
pub mod target;
pub mod worker;

use sluice_core::component::{BuildContext, Sink, SinkFactory};
use sluice_core::config::{ComponentOptions, ConfigError};

pub use options::ApplyOptions;
pub use sink::ApplySink;
pub use sql::Dialect;

fn build(
    cx: &BuildContext,
    options: &ComponentOptions,
    dialect: Dialect,
) -> Result<Box<dyn Sink>, ConfigError> {
    let opts: ApplyOptions = options.deserialize()?;
    opts.validate(dialect).map_err(|message| ConfigError {
        location: options.location().clone(),
        message,
        hint: None,
    })?;
    Ok(Box::new(ApplySink::new(cx.name, opts, dialect)))
}

/// Builds `type: mysql` sinks (MySQL / MariaDB targets).
pub struct MysqlApplyFactory;

impl SinkFactory for MysqlApplyFactory {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    fn options_schema(
        &self,
        generator: &mut schemars::SchemaGenerator,
    ) -> Option<schemars::Schema> {
        Some(generator.subschema_for::<options::ApplyOptions>())
    }

    fn build(
        &self,
        cx: &BuildContext,
        options: &ComponentOptions,
    ) -> Result<Box<dyn Sink>, ConfigError> {
        build(cx, options, Dialect::Mysql)
    }
}

/// Builds `type: postgres` sinks (PostgreSQL targets).
pub struct PostgresApplyFactory;

impl SinkFactory for PostgresApplyFactory {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn options_schema(
        &self,
        generator: &mut schemars::SchemaGenerator,
    ) -> Option<schemars::Schema> {
        Some(generator.subschema_for::<options::ApplyOptions>())
    }

    fn build(
        &self,
        cx: &BuildContext,
        options: &ComponentOptions,
    ) -> Result<Box<dyn Sink>, ConfigError> {
        build(cx, options, Dialect::Postgres)
    }
}
