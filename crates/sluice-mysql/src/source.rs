//! The pipeline source `type: mysql`: optional snapshot, then the change
//! stream, emitted as row-change records. The binlog is read on its own
//! task (so acknowledgements are processed while it waits); checkpoints
//! hold a transaction-boundary position and advance only as the pipeline
//! acknowledges (AckTracker), so a restart never resumes inside a
//! transaction. Touches the server, the pipeline and its checkpoint file.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sluice_core::checkpoint::Throttle;
use sluice_core::component::{BuildContext, Source, SourceContext, SourceFactory};
use sluice_core::config::{ComponentOptions, ConfigError};
use sluice_core::metrics::ComponentMetrics;
use sluice_core::record::{Meta, Record, RowChange};
use sluice_core::AckTracker;
use tokio::sync::mpsc;

use crate::gtid::Position;
use crate::options::{MysqlSourceOptions, SnapshotMode};
use crate::progress::SnapshotProgress;
use crate::snapshot::Snapshot;
use crate::stream::ChangeStream;

/// What the source checkpoints.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MysqlCheckpoint {
    /// A transaction boundary: everything before it was delivered.
    pub position: Position,
    /// The snapshot finished (or none was wanted).
    #[serde(default)]
    pub snapshot_done: bool,
    /// A snapshot in progress: where a restart continues it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotProgress>,
    /// Set while prepared XA transactions were held: `position` is before
    /// the oldest PREPARE and everything up to this boundary was delivered
    /// (re-read on restart without being emitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_to: Option<Position>,
}

/// Builds `type: mysql` sources.
pub struct MysqlSourceFactory;

impl SourceFactory for MysqlSourceFactory {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    fn options_schema(
        &self,
        generator: &mut schemars::SchemaGenerator,
    ) -> Option<schemars::Schema> {
        Some(generator.subschema_for::<MysqlSourceOptions>())
    }

    fn build(
        &self,
        _cx: &BuildContext,
        options: &ComponentOptions,
    ) -> Result<Box<dyn Source>, ConfigError> {
        let opts: MysqlSourceOptions = options.deserialize()?;
        opts.validate().map_err(|message| ConfigError {
            location: options.location().clone(),
            message,
            hint: None,
        })?;
        Ok(Box::new(MysqlSource { opts }))
    }
}

/// A configured `type: mysql` source.
pub struct MysqlSource {
    pub opts: MysqlSourceOptions,
}

enum Item {
    Rows(Vec<RowChange>, Position, Option<Position>),
    Snapshot(Vec<RowChange>, SnapshotProgress),
    SnapshotDone(Position),
}

/// Turns a row change into a pipeline record keyed by its primary key.
pub fn to_record(change: RowChange) -> Record {
    let image = change.after.as_ref().or(change.before.as_ref());
    let key = image.filter(|_| !change.primary_key.is_empty()).map(|img| {
        let mut k = serde_json::Map::new();
        for c in &change.primary_key {
            k.insert(c.clone(), img.get(c).cloned().unwrap_or_default());
        }
        Bytes::from(serde_json::Value::Object(k).to_string())
    });
    Record {
        key,
        value: Bytes::new(),
        headers: None,
        timestamp_ms: change.source.ts_ms,
        meta: Meta::Row(Arc::new(change)),
    }
}

impl MysqlSource {
    /// Reads the snapshot (if due) and the stream on their own task.
    async fn produce(
        opts: MysqlSourceOptions,
        checkpoint: Option<MysqlCheckpoint>,
        tx: mpsc::Sender<Item>,
        metrics: Arc<ComponentMetrics>,
    ) -> anyhow::Result<()> {
        let cfg = opts.stream_config().map_err(anyhow::Error::msg)?;
        let mut probe = crate::connect::open(&cfg.opts).await?;
        let info = crate::prereq::check(&mut probe).await?;
        probe.disconnect().await.ok();
        let resume = checkpoint
            .as_ref()
            .filter(|c| c.snapshot_done)
            .map(|c| c.position.clone());
        let replay_to = checkpoint
            .as_ref()
            .filter(|c| c.snapshot_done)
            .and_then(|c| c.replay_to.clone());
        let unfinished = checkpoint
            .as_ref()
            .filter(|c| !c.snapshot_done)
            .and_then(|c| c.snapshot.clone())
            .filter(|_| opts.snapshot != SnapshotMode::Never);
        let snapshot = match opts.snapshot {
            SnapshotMode::Never => false,
            SnapshotMode::Always => true,
            SnapshotMode::Initial | SnapshotMode::WhenNeeded => {
                resume.is_none() && opts.start().is_none()
            }
        };
        let start = if unfinished.is_some() || snapshot {
            Some(Self::snapshot(&opts, info.mariadb, unfinished.as_ref(), &tx, &metrics).await?)
        } else {
            resume.clone().or_else(|| opts.start())
        };
        let replay_to = replay_to.filter(|_| start == resume);
        let mut stream = match ChangeStream::start_replaying(cfg.clone(), start.clone(), replay_to)
            .await
        {
            Ok(s) => s,
            Err(e) if opts.snapshot == SnapshotMode::WhenNeeded && is_purged(&e) => {
                tracing::warn!(error = %e, "binlog purged past the checkpoint; taking a new snapshot");
                let p = Self::snapshot(&opts, info.mariadb, None, &tx, &metrics).await?;
                ChangeStream::start(cfg.clone(), Some(p)).await?
            }
            Err(e) => return Err(e),
        };
        loop {
            let batch = match stream.next_batch().await {
                Ok(b) => b,
                Err(e) if opts.snapshot == SnapshotMode::WhenNeeded && is_purged(&e) => {
                    tracing::warn!(error = %e, "binlog purged past the checkpoint; taking a new snapshot");
                    let p = Self::snapshot(&opts, info.mariadb, None, &tx, &metrics).await?;
                    stream = ChangeStream::start(cfg.clone(), Some(p)).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if tx
                .send(Item::Rows(batch.changes, batch.position, batch.replay_to))
                .await
                .is_err()
            {
                return Ok(());
            }
        }
    }

    async fn snapshot(
        opts: &MysqlSourceOptions,
        mariadb: bool,
        resume: Option<&SnapshotProgress>,
        tx: &mpsc::Sender<Item>,
        metrics: &ComponentMetrics,
    ) -> anyhow::Result<Position> {
        let cfg = opts.stream_config().map_err(anyhow::Error::msg)?;
        let mut snap = Snapshot::begin(
            &cfg.opts,
            &cfg.filter,
            opts.snapshot_chunk_rows,
            opts.snapshot_parallelism,
            mariadb,
            opts.server_id,
            resume,
        )
        .await?;
        let start = snap.position().clone();
        tracing::info!(position = %start, tables = snap.tables().len(), rows_estimated = snap.rows_estimated, "snapshot started");
        let began = std::time::Instant::now();
        let mut last_report = began;
        metrics
            .snapshot_rows_estimated
            .store(snap.rows_estimated, Relaxed);
        metrics.snapshot_rows_done.store(snap.rows_done, Relaxed);
        metrics.snapshot_finished_ms.store(0, Relaxed);
        metrics
            .snapshot_started_ms
            .store(sluice_core::record::now_ms(), Relaxed);
        let bar = crate::progress_bar::SnapshotBar::new(snap.rows_estimated);
        while let Some(rows) = snap.next_chunk().await? {
            metrics.snapshot_rows_done.store(snap.rows_done, Relaxed);
            bar.set(snap.rows_done);
            if last_report.elapsed() >= std::time::Duration::from_secs(5) {
                last_report = std::time::Instant::now();
                report_progress(snap.rows_done, snap.rows_estimated, began.elapsed());
            }
            // Each chunk carries the progress a restart continues from.
            if tx
                .send(Item::Snapshot(rows, snap.progress()))
                .await
                .is_err()
            {
                anyhow::bail!("pipeline closed during the snapshot");
            }
        }
        let done = snap.rows_done;
        let pos = snap.finish().await?;
        metrics.snapshot_rows_done.store(done, Relaxed);
        metrics
            .snapshot_finished_ms
            .store(sluice_core::record::now_ms(), Relaxed);
        bar.finish(done);
        let secs = began.elapsed().as_secs_f64().max(1e-9);
        tracing::info!(rows = done, rows_per_sec = (done as f64 / secs) as u64, position = %pos, "snapshot finished");
        let _ = tx.send(Item::SnapshotDone(pos.clone())).await;
        Ok(pos)
    }
}

/// Logs snapshot progress: rows done and estimated, rows/s, ETA.
fn report_progress(done: u64, estimated: u64, elapsed: std::time::Duration) {
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
    let left = estimated.saturating_sub(done) as f64;
    tracing::info!(
        rows_done = done,
        rows_estimated = estimated,
        rows_per_sec = rate as u64,
        eta_secs = (left / rate.max(1.0)) as u64,
        "snapshot progress"
    );
}

fn is_purged(e: &anyhow::Error) -> bool {
    e.to_string().contains("purged")
}

#[async_trait]
impl Source for MysqlSource {
    async fn run(self: Box<Self>, cx: SourceContext) -> anyhow::Result<()> {
        let checkpoint: Option<MysqlCheckpoint> = cx
            .checkpoints
            .load()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let mut current = checkpoint.clone().unwrap_or_default();
        let (tx, mut rx) = mpsc::channel::<Item>(4);
        let mut producer = tokio::spawn(Self::produce(
            self.opts.clone(),
            checkpoint,
            tx,
            cx.metrics.clone(),
        ));
        let mut tracker: AckTracker<MysqlCheckpoint> = AckTracker::new();
        let mut throttle = Throttle::new(cx.checkpoint_interval);
        let mut dirty = false;
        let result: anyhow::Result<()> = loop {
            tokio::select! {
                biased;
                _ = cx.shutdown.cancelled() => break Ok(()),
                done = &mut producer => {
                    break match done {
                        Ok(r) => r,
                        Err(e) => Err(anyhow::anyhow!("binlog reader task failed: {e}")),
                    };
                }
                Some(pos) = tracker.next(), if tracker.outstanding() > 0 && !tracker.is_stuck() => {
                    current = pos;
                    dirty = true;
                }
                item = rx.recv() => {
                    let Some(item) = item else { continue };
                    let (changes, mark) = match item {
                        Item::Rows(changes, position, replay_to) => {
                            (changes, MysqlCheckpoint { position, snapshot_done: true, snapshot: None, replay_to })
                        }
                        Item::Snapshot(changes, progress) => (
                            changes,
                            MysqlCheckpoint {
                                position: progress.position.clone(),
                                snapshot_done: false,
                                snapshot: Some(progress),
                                replay_to: None,
                            },
                        ),
                        Item::SnapshotDone(position) => {
                            (Vec::new(), MysqlCheckpoint { position, snapshot_done: true, snapshot: None, replay_to: None })
                        }
                    };
                    let ack = tracker.track(mark);
                    if changes.is_empty() {
                        ack.ack();
                    } else {
                        let records: Vec<Record> = changes.into_iter().map(to_record).collect();
                        // A full queue must not hold up shutdown: the batch
                        // is dropped unacknowledged and read again later.
                        tokio::select! {
                            biased;
                            _ = cx.shutdown.cancelled() => break Ok(()),
                            sent = cx.output.send(records, ack) => {
                                if sent.is_err() {
                                    break Ok(());
                                }
                            }
                        }
                    }
                }
            }
            if let Some(c) = tracker.poll() {
                current = c;
                dirty = true;
            }
            if dirty && throttle.due() {
                cx.checkpoints.save(&current).await?;
                dirty = false;
            }
        };
        producer.abort();
        // Wait (the engine bounds this) for what is in flight, then write
        // the final checkpoint.
        while tracker.outstanding() > 0 && !tracker.is_stuck() {
            match tracker.next().await {
                Some(c) => {
                    current = c;
                    dirty = true;
                }
                None => break,
            }
        }
        if dirty {
            cx.checkpoints.save(&current).await?;
        }
        result
    }
}
