//! The change stream: a binlog connection plus the [`Decoder`], handing out
//! batches of row changes with the resume position they are covered by.
//! Handles heartbeats (a silent connection is declared dead after three
//! periods), CRC32 checks of every event, reconnects with capped
//! exponential backoff that resume at the last transaction boundary, and
//! fatal errors that name the binlog position. The rows of an XA COMMIT
//! are released from the decoder in batches of at most `max_batch_rows`
//! before the next event is read. A panic inside the event
//! reader (mysql_common on a malformed event) or the decoder is caught and
//! becomes a fatal error naming the position. Talks to the server.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use mysql_async::{BinlogStream, Opts};
use mysql_common::binlog::consts::BinlogChecksumAlg;
use mysql_common::binlog::events::Event;
use sluice_core::record::RowChange;

use crate::connect;
use crate::decoder::Decoder;
use crate::fault::Fault;
use crate::filter::TableFilter;
use crate::gtid::Position;
use crate::infoschema::InfoSchema;
use crate::prereq::{self, ServerInfo};
use crate::spill::SpillConfig;

/// How to run a change stream.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    pub opts: Opts,
    pub server_id: u32,
    pub heartbeat: Duration,
    pub filter: TableFilter,
    /// Hand out a batch at most this many rows long.
    pub max_batch_rows: usize,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Give up after this many failed reconnects in a row (`None`: never).
    pub max_reconnects: Option<u32>,
    /// `source.connector` of every record.
    pub connector: String,
    /// Rows of prepared XA transactions kept in memory; the rest go to
    /// unnamed temporary files.
    pub xa_memory_rows: usize,
    /// Directory of those files (`None`: the system's temporary directory).
    pub xa_spill_dir: Option<PathBuf>,
}

impl StreamConfig {
    pub fn new(opts: Opts, server_id: u32) -> StreamConfig {
        StreamConfig {
            opts,
            server_id,
            heartbeat: Duration::from_secs(2),
            filter: TableFilter::default(),
            max_batch_rows: 4096,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
            max_reconnects: None,
            connector: "mysql".into(),
            xa_memory_rows: SpillConfig::default().memory_rows,
            xa_spill_dir: None,
        }
    }
}

/// Row changes and the position a restart may resume from once they (and
/// everything before them) are durably delivered.
#[derive(Debug)]
pub struct ChangeBatch {
    pub changes: Vec<RowChange>,
    /// The last transaction boundary at or before the end of this batch.
    pub position: Position,
    /// The batch ends exactly at a transaction boundary.
    pub at_boundary: bool,
    /// Set while prepared XA transactions are held: `position` is before
    /// the oldest one's PREPARE, and everything up to this boundary was
    /// delivered (a restart re-reads it without emitting; see
    /// [`ChangeStream::start_replaying`]).
    pub replay_to: Option<Position>,
}

/// A running change stream.
pub struct ChangeStream {
    cfg: StreamConfig,
    info: ServerInfo,
    binlog: Option<BinlogStream>,
    decoder: Decoder,
    last_returned: Position,
    failures: u32,
    /// Reconnects so far (for tests and metrics).
    pub reconnects: u64,
}

impl ChangeStream {
    /// Checks the server's prerequisites and starts streaming at `start`
    /// (`None`: the server's current end of binlog).
    pub async fn start(cfg: StreamConfig, start: Option<Position>) -> anyhow::Result<ChangeStream> {
        ChangeStream::start_replaying(cfg, start, None).await
    }

    /// [`ChangeStream::start`] from a checkpoint whose batch carried
    /// `replay_to`: transactions up to it are read again but not emitted.
    pub async fn start_replaying(
        cfg: StreamConfig,
        start: Option<Position>,
        replay_to: Option<Position>,
    ) -> anyhow::Result<ChangeStream> {
        let mut conn = connect::open(&cfg.opts).await?;
        let info = prereq::check(&mut conn).await?;
        let start = match start {
            Some(p) => p,
            None => connect::current_position(&mut conn, info.mariadb).await?,
        };
        conn.disconnect().await.ok();
        let mut decoder = Decoder::new(
            &cfg.connector,
            cfg.filter.clone(),
            InfoSchema::new(cfg.opts.clone()),
            start.clone(),
        )?;
        decoder.replay_until(replay_to)?;
        decoder.set_spill(SpillConfig {
            memory_rows: cfg.xa_memory_rows,
            dir: cfg.xa_spill_dir.clone(),
        });
        let mut s = ChangeStream {
            cfg,
            info,
            binlog: None,
            decoder,
            last_returned: start,
            failures: 0,
            reconnects: 0,
        };
        s.connect().await?;
        Ok(s)
    }

    pub fn server(&self) -> &ServerInfo {
        &self.info
    }

    /// The last transaction boundary read.
    pub fn position(&self) -> &Position {
        self.decoder.committed()
    }

    /// Rows of prepared XA transactions held in memory (at most
    /// `xa_memory_rows`).
    pub fn held_xa_records(&self) -> usize {
        self.decoder.held_xa_records()
    }

    /// Rows of prepared XA transactions in spill files.
    pub fn spilled_xa_records(&self) -> u64 {
        self.decoder.spilled_xa_records()
    }

    async fn connect(&mut self) -> Result<(), Fault> {
        let at = self.decoder.committed().clone();
        let s = connect::binlog_stream(
            &self.cfg.opts,
            self.cfg.server_id,
            self.cfg.heartbeat,
            &at,
            self.info.mariadb,
        )
        .await
        .map_err(|e| Fault::from_anyhow(e, &format!("binlog position {at}")))?;
        self.binlog = Some(s);
        Ok(())
    }

    /// Drops the connection, rewinds to the last boundary and reconnects
    /// with backoff, unless the fault is fatal or retries are exhausted.
    async fn recover(&mut self, fault: Fault) -> anyhow::Result<()> {
        let mut fault = fault;
        loop {
            if !fault.retryable {
                return Err(fault.into());
            }
            self.failures += 1;
            if self.cfg.max_reconnects.is_some_and(|m| self.failures > m) {
                anyhow::bail!("giving up after {} reconnects: {fault}", self.failures - 1);
            }
            if let Some(b) = self.binlog.take() {
                drop(b);
            }
            self.decoder.rewind();
            let shift = self.failures.saturating_sub(1).min(16);
            let wait =
                (self.cfg.reconnect_min * 2u32.saturating_pow(shift)).min(self.cfg.reconnect_max);
            tracing::warn!(error = %fault, retry_in_ms = wait.as_millis() as u64, resume = %self.decoder.committed(), "binlog connection lost; reconnecting");
            tokio::time::sleep(wait).await;
            match self.connect().await {
                Ok(()) => {
                    self.reconnects += 1;
                    return Ok(());
                }
                Err(f) => fault = f,
            }
        }
    }

    async fn next_event(&mut self, wait: bool) -> Result<Option<Event>, Fault> {
        let at = || self.decoder.committed().to_string();
        let Some(binlog) = self.binlog.as_mut() else {
            return Err(Fault::retry("not connected"));
        };
        // mysql_common panics on some malformed events (a header length
        // beyond its packet): the read is guarded and the stream dropped.
        let guarded = AssertUnwindSafe(binlog.next()).catch_unwind();
        let item = if wait {
            let dead = self.cfg.heartbeat * 3 + Duration::from_secs(1);
            match tokio::time::timeout(dead, guarded).await {
                Ok(item) => item,
                Err(_) => {
                    return Err(Fault::retry(format!(
                        "no event or heartbeat for {} ms after {}",
                        dead.as_millis(),
                        at()
                    )))
                }
            }
        } else {
            match guarded.now_or_never() {
                Some(item) => item,
                None => return Ok(None),
            }
        };
        let item = match item {
            Ok(item) => item,
            Err(panic) => {
                self.binlog = None;
                return Err(Fault::fatal(format!(
                    "malformed binlog event after {}: the event reader failed ({}); stopping \
                     rather than skipping it",
                    at(),
                    panic_text(&*panic)
                )));
            }
        };
        match item {
            Some(Ok(ev)) => {
                verify_checksum(&ev).map_err(|e| Fault::retry(format!("{e} after {}", at())))?;
                Ok(Some(ev))
            }
            Some(Err(e)) => Err(Fault::from_driver(&e, &at())),
            None => Err(Fault::retry(format!(
                "the server closed the binlog stream after {}",
                at()
            ))),
        }
    }

    /// Reads until a batch is ready: `max_batch_rows` rows, or a
    /// transaction boundary with no further event immediately available.
    /// An empty batch reports a boundary that moved without rows (filtered
    /// tables, DDL elsewhere). An XA COMMIT's rows are released into the
    /// batch before the next event is read.
    pub async fn next_batch(&mut self) -> anyhow::Result<ChangeBatch> {
        let max = self.cfg.max_batch_rows.max(1);
        loop {
            if self.decoder.buffered() >= max {
                return Ok(self.batch());
            }
            if self.decoder.releasing() {
                if let Err(f) = self.decoder.release_more(max - self.decoder.buffered()) {
                    self.recover(f).await?;
                }
                continue;
            }
            let idle_ok = self.decoder.at_boundary
                && (self.decoder.buffered() > 0 || *self.decoder.committed() != self.last_returned);
            match self.next_event(!idle_ok).await {
                Ok(Some(ev)) => {
                    let handled = AssertUnwindSafe(self.decoder.handle(&ev))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|panic| {
                            Err(Fault::fatal(format!(
                                "binlog event type {} ending at log_pos {} after {} could not be \
                                 decoded ({}); stopping rather than skipping it",
                                ev.header().event_type_raw(),
                                ev.header().log_pos(),
                                self.decoder.committed(),
                                panic_text(&*panic)
                            )))
                        });
                    if let Err(f) = handled {
                        self.recover(f).await?;
                    } else if self.decoder.at_boundary && !self.decoder.in_transaction() {
                        self.failures = 0;
                    }
                }
                Ok(None) => return Ok(self.batch()),
                Err(f) => self.recover(f).await?,
            }
        }
    }

    fn batch(&mut self) -> ChangeBatch {
        let changes = self.decoder.take();
        let position = self.decoder.committed().clone();
        self.last_returned = position.clone();
        ChangeBatch {
            changes,
            position,
            at_boundary: self.decoder.at_boundary,
            replay_to: self.decoder.replay_to(),
        }
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

fn verify_checksum(ev: &Event) -> Result<(), String> {
    let Some(expected) = ev.checksum() else {
        return Ok(());
    };
    if let Ok(Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32)) = ev.footer().get_checksum_alg() {
        let got = ev.calc_checksum(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32);
        if got.to_le_bytes() != expected {
            return Err(format!(
                "CRC32 mismatch in event type {} at log_pos {}",
                ev.header().event_type_raw(),
                ev.header().log_pos()
            ));
        }
    }
    Ok(())
}
