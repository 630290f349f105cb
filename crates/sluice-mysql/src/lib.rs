//! sluice-mysql: MySQL / MariaDB change data capture for sluice.
//!
//! The binlog client ([`stream`]) connects as a replica, decodes row events
//! into [`sluice_core::record::RowChange`]s with transaction markers, tracks
//! table schemas, reconnects and resumes at transaction boundaries. The
//! [`source`] module wraps it as the pipeline source `type: mysql`.
//!
//! Module map: `gtid` (positions), `mariadb` (MariaDB-only events),
//! `schema` and `infoschema` (table schemas), `value` / `temporal` / `text`
//! (column decoding), `rows` (rows events), `ddl` (statement
//! classification), `filter` (table globs), `prereq` (server checks),
//! `connect` (replica connection), `fault` (retryable vs fatal errors),
//! `decoder` (events → records), `xa` (held XA transactions) with `spill`
//! (their rows beyond a memory budget, in temporary files), `event`
//! (events from raw bytes), `stream` (the change stream), `snapshot`
//! with `chunk` and `progress` (consistent snapshot), `options` and
//! `source` (the pipeline source). Touches nothing itself.

pub mod apply;
pub mod chunk;
pub mod connect;
pub mod ddl;
pub mod decoder;
pub mod event;
pub mod fault;
pub mod filter;
pub mod gtid;
pub mod gtid_set;
pub mod infoschema;
pub mod mariadb;
pub mod options;
pub mod prereq;
pub mod progress;
mod progress_bar;
pub mod rows;
pub mod schema;
pub mod snapshot;
pub mod source;
pub mod spill;
pub mod stream;
pub mod temporal;
pub mod text;
pub mod value;
pub mod verify;
pub mod xa;

pub use gtid::{Gtid, GtidState, Position};
pub use options::{MysqlSourceOptions, SnapshotMode};
pub use source::{MysqlCheckpoint, MysqlSource, MysqlSourceFactory};
pub use stream::{ChangeBatch, ChangeStream, StreamConfig};
