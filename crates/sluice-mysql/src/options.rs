//! The options of a `type: mysql` source, as written in pipeline YAML
//! (unknown keys are errors), and their translation into a
//! [`StreamConfig`]. Touches nothing but memory.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::filter::TableFilter;
use crate::gtid::Position;
use crate::stream::StreamConfig;

/// When the source reads the tables' current contents before streaming.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// When there is no checkpoint yet (the default).
    #[default]
    Initial,
    /// Like `initial`, and again when the checkpoint's binlog was purged.
    WhenNeeded,
    /// Never: stream from the checkpoint or the current end of binlog.
    Never,
    /// On every start.
    Always,
}

fn default_parallelism() -> usize {
    1
}
fn default_heartbeat() -> u64 {
    2000
}
fn default_batch_rows() -> usize {
    4096
}
fn default_chunk_rows() -> usize {
    10_000
}
fn default_reconnect_max() -> u64 {
    10_000
}
fn default_xa_memory_rows() -> usize {
    10_000
}

/// `type: mysql` options.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = |s: &mut schemars::Schema| sluice_core::schema::alias(s, "heartbeat_ms", "heartbeat"))]
pub struct MysqlSourceOptions {
    /// `mysql://user:password@host:port` (TLS with `?require_ssl=true`).
    pub url: String,
    /// Replica server id; unique among the server's replicas.
    pub server_id: u32,
    #[serde(default)]
    pub include_tables: Vec<String>,
    #[serde(default)]
    pub exclude_tables: Vec<String>,
    /// Globs on `db.table.column`.
    #[serde(default)]
    pub include_columns: Vec<String>,
    #[serde(default)]
    pub exclude_columns: Vec<String>,
    #[serde(default)]
    pub snapshot: SnapshotMode,
    /// Rows per primary-key chunk of the snapshot.
    #[serde(default = "default_chunk_rows")]
    pub snapshot_chunk_rows: usize,
    /// Tables read at once by the snapshot (above 1 takes a brief FLUSH
    /// TABLES WITH READ LOCK, which needs the RELOAD grant).
    #[serde(default = "default_parallelism")]
    pub snapshot_parallelism: usize,
    /// Heartbeat period asked of the server, in milliseconds; a connection
    /// silent for three periods is declared dead.
    #[serde(default = "default_heartbeat", alias = "heartbeat")]
    pub heartbeat_ms: u64,
    /// Rows per batch handed to the pipeline.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Longest wait between reconnect attempts, in milliseconds.
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_ms: u64,
    /// Give up after this many failed reconnects in a row (default: never).
    #[serde(default)]
    pub max_reconnects: Option<u32>,
    /// Where to start when there is no checkpoint and no snapshot: a MariaDB
    /// GTID state (`0-1-42`) …
    #[serde(default)]
    pub start_gtid: Option<String>,
    /// … or a binlog file and position.
    #[serde(default)]
    pub start_file: Option<String>,
    #[serde(default)]
    pub start_pos: Option<u64>,
    /// Rows of prepared (not yet committed) XA transactions kept in memory,
    /// over all of them; the rest wait in unnamed temporary files until the
    /// XA COMMIT, which releases them in batches of `batch_rows`.
    #[serde(default = "default_xa_memory_rows")]
    pub xa_memory_rows: usize,
    /// Directory for those files (default: the system's temporary
    /// directory, `TMPDIR`). Prefer a disk over a memory file system.
    #[serde(default)]
    pub xa_spill_dir: Option<std::path::PathBuf>,
}

impl MysqlSourceOptions {
    /// Checks what can be checked without a server.
    pub fn validate(&self) -> Result<(), String> {
        mysql_async::Opts::from_url(&self.url).map_err(|e| format!("url: {e}"))?;
        if self.server_id == 0 {
            return Err("server_id must not be 0 (the server refuses replicas with id 0)".into());
        }
        if self.batch_rows == 0 || self.snapshot_chunk_rows == 0 || self.snapshot_parallelism == 0 {
            return Err(
                "batch_rows, snapshot_chunk_rows and snapshot_parallelism must be positive".into(),
            );
        }
        if let Some(g) = &self.start_gtid {
            g.parse::<crate::gtid::GtidState>()?;
        }
        self.filter()?;
        Ok(())
    }

    pub fn filter(&self) -> Result<TableFilter, String> {
        TableFilter::new(
            &self.include_tables,
            &self.exclude_tables,
            &self.include_columns,
            &self.exclude_columns,
        )
    }

    /// The configured start position, if any.
    pub fn start(&self) -> Option<Position> {
        if self.start_gtid.is_none() && self.start_file.is_none() {
            return None;
        }
        Some(Position {
            file: self.start_file.clone().unwrap_or_default(),
            pos: self.start_pos.unwrap_or(4),
            gtid: self.start_gtid.clone().unwrap_or_default(),
        })
    }

    pub fn stream_config(&self) -> Result<StreamConfig, String> {
        let opts = mysql_async::Opts::from_url(&self.url).map_err(|e| format!("url: {e}"))?;
        let mut cfg = StreamConfig::new(opts, self.server_id);
        cfg.heartbeat = Duration::from_millis(self.heartbeat_ms.max(100));
        cfg.filter = self.filter()?;
        cfg.max_batch_rows = self.batch_rows;
        cfg.reconnect_max = Duration::from_millis(self.reconnect_max_ms.max(10));
        cfg.max_reconnects = self.max_reconnects;
        cfg.xa_memory_rows = self.xa_memory_rows;
        cfg.xa_spill_dir = self.xa_spill_dir.clone();
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_errors() {
        let ok: MysqlSourceOptions = serde_json::from_value(serde_json::json!({
            "url": "mysql://repl@127.0.0.1:3306", "server_id": 4242,
            "include_tables": ["shop.*"], "snapshot": "when_needed", "heartbeat": 500
        }))
        .unwrap();
        assert_eq!(ok.snapshot, SnapshotMode::WhenNeeded);
        assert_eq!(ok.heartbeat_ms, 500);
        assert_eq!(ok.xa_memory_rows, 10_000);
        let cfg = ok.stream_config().unwrap();
        assert_eq!((cfg.xa_memory_rows, cfg.xa_spill_dir), (10_000, None));
        assert!(ok.validate().is_ok());
        let bad = serde_json::from_value::<MysqlSourceOptions>(serde_json::json!({
            "url": "mysql://x@h", "server_id": 1, "include_table": ["x"]
        }));
        assert!(bad.unwrap_err().to_string().contains("include_table"));
    }
}
