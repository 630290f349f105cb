//! Runs one sink: gathers batches from its buffer, writes them with retry
//! and capped exponential backoff, applies `on_error` to records the sink
//! can never accept, and acknowledges what it durably wrote.
//!
//! Batching is opportunistic: whatever is queued when the sink is ready is
//! written together (up to `batch.max_events` / `max_bytes`), and with a
//! non-zero `batch.timeout_ms` a small batch waits up to that long to fill.
//! A sink that pipelines (`write_pipelined`) gets its next batch while
//! earlier ones are still becoming durable (up to `MAX_PENDING`); their
//! acknowledgements follow in order as each becomes durable. A pending
//! batch that fails retryably or with a refused record is written again,
//! with every batch pending after it, in order, through plain `write`.
//! Touches the sink, its buffer, its metrics and the dead-letter file.

use std::collections::VecDeque;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::component::{PendingDurability, Sink, SinkBatch, SinkError};
use crate::config::{BatchConfig, OnError, RetryConfig};
use crate::encode::Encoding;
use crate::metrics::ComponentMetrics;
use crate::queue::BoundedQueue;
use crate::record::describe_origin;

/// Pipelined batches waiting for durability at most (see
/// `Sink::write_pipelined`).
const MAX_PENDING: usize = 16;

pub(crate) struct SinkRunner {
    pub name: Arc<str>,
    pub sink: Box<dyn Sink>,
    pub buffer: Arc<BoundedQueue>,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
    pub on_error: OnError,
    pub dead_letter_path: PathBuf,
    pub metrics: Arc<ComponentMetrics>,
    /// Fired on a hard stop: give up retrying at once.
    pub abort: CancellationToken,
}

impl SinkRunner {
    pub async fn run(mut self) -> anyhow::Result<()> {
        let result = match AssertUnwindSafe(self.write_all()).catch_unwind().await {
            Ok(r) => r,
            Err(panic) => Err(anyhow::anyhow!(
                "sink `{}` panicked: {}",
                self.name,
                crate::engine::panic_message(&panic)
            )),
        };
        if result.is_err() {
            // Nothing more will be written: refuse new batches and fail what
            // is queued so no checkpoint passes it.
            self.buffer.close();
            self.buffer.abandon();
        }
        let closed = self.sink.close().await;
        result.and(closed)
    }

    async fn write_all(&mut self) -> anyhow::Result<()> {
        // Batches written but not durable yet, oldest first.
        let mut pending: VecDeque<(SinkBatch, PendingDurability)> = VecDeque::new();
        loop {
            // Acknowledge what became durable; wait for the oldest when
            // too many are in flight or nothing new is queued (so acks
            // never wait for more input).
            loop {
                let must_wait = pending.len() >= MAX_PENDING || self.buffer.depth().0 == 0;
                let Some((_, fut)) = pending.front_mut() else {
                    break;
                };
                let ready = match fut.as_mut().now_or_never() {
                    Some(r) => Some(r),
                    None if must_wait => Some(fut.await),
                    None => None,
                };
                let Some(result) = ready else { break };
                let Some((batch, _)) = pending.pop_front() else {
                    break;
                };
                self.settle_or_redo(batch, result, &mut pending).await?;
            }
            let Some(batch) = gather(&self.buffer, self.batch).await else {
                break;
            };
            self.metrics
                .record_in(batch.events as u64, batch.bytes as u64);
            if self.metrics.tap.active() {
                for part in &batch.parts {
                    self.metrics.tap.publish(&part.source, &part.records);
                }
            }
            if let Some(p) = self.write_with_retry(Some(&mut pending), batch).await? {
                pending.push_back(p);
            }
        }
        while let Some((batch, fut)) = pending.pop_front() {
            let result = fut.await;
            self.settle_or_redo(batch, result, &mut pending).await?;
        }
        Ok(())
    }

    /// A pipelined batch's durability resolved: acknowledge it, fail, or
    /// (retryable, refused record) write it and every later pending batch
    /// again (see `Sink::write_pipelined`).
    async fn settle_or_redo(
        &mut self,
        batch: SinkBatch,
        result: Result<(), SinkError>,
        pending: &mut VecDeque<(SinkBatch, PendingDurability)>,
    ) -> anyhow::Result<()> {
        let error = match result {
            Ok(()) | Err(SinkError::Fatal(_)) => return self.settle(batch, result),
            Err(e) => e,
        };
        // Later batches fail too, unwritten: wait for them all first.
        let mut later = Vec::with_capacity(pending.len());
        while let Some((b, fut)) = pending.pop_front() {
            let _ = fut.await;
            later.push(b);
        }
        self.metrics.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = Some(batch);
        match error {
            SinkError::Rejected { index, error } => {
                let mut batch = first.take().unwrap_or_default();
                self.refused_at(&mut batch, index, error).await?;
                first = Some(batch).filter(|b| !b.is_empty());
            }
            e => {
                self.metrics.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(sink = %self.name, batches = later.len() + 1, "pipelined write failed, writing again: {e}");
            }
        }
        for b in first.into_iter().chain(later) {
            self.write_with_retry(None, b).await?;
        }
        Ok(())
    }

    /// A pipelined batch's durability resolved: acknowledge it, or fail.
    fn settle(&mut self, batch: SinkBatch, result: Result<(), SinkError>) -> anyhow::Result<()> {
        match result {
            Ok(()) => {
                self.metrics
                    .record_out(batch.events as u64, batch.bytes as u64);
                batch.ack_all();
                Ok(())
            }
            Err(e) => {
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                Err(e.into_anyhow().context(format!(
                    "sink `{}` failed to make a write durable",
                    self.name
                )))
            }
        }
    }

    /// Writes `batch` until it is accepted; returns it with its pending
    /// durability when the sink pipelines (acknowledged later). Without a
    /// `pending` queue (writing again after a failed pipelined batch) it
    /// uses plain `write`.
    async fn write_with_retry(
        &mut self,
        mut pending: Option<&mut VecDeque<(SinkBatch, PendingDurability)>>,
        mut batch: SinkBatch,
    ) -> anyhow::Result<Option<(SinkBatch, PendingDurability)>> {
        let mut backoff = Duration::from_millis(self.retry.initial_backoff_ms.max(1));
        let max_backoff = Duration::from_millis(self.retry.max_backoff_ms.max(1));
        let mut attempts: u32 = 0;
        loop {
            let written = match pending {
                Some(_) => self.sink.write_pipelined(&batch).await,
                None => self.sink.write(&batch).await.map(|()| None),
            };
            match written {
                Ok(Some(durable)) => return Ok(Some((batch, durable))),
                Ok(None) => {
                    // Durable now, so every earlier batch is too: settle
                    // them first to keep acknowledgements in order (one
                    // failing now breaks the sink's side of the contract).
                    while let Some((b, fut)) = pending.as_mut().and_then(|p| p.pop_front()) {
                        let result = fut.await;
                        self.settle(b, result)?;
                    }
                    self.metrics
                        .record_out(batch.events as u64, batch.bytes as u64);
                    batch.ack_all();
                    return Ok(None);
                }
                Err(SinkError::Retryable(e)) => {
                    attempts += 1;
                    self.metrics.retries.fetch_add(1, Ordering::Relaxed);
                    self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                    if self.retry.max_attempts.is_some_and(|m| attempts >= m) {
                        let e = e.context(format!(
                            "sink `{}` gave up after {attempts} attempts",
                            self.name
                        ));
                        return self.give_up_batch(batch, e).await.map(|()| None);
                    }
                    tracing::warn!(sink = %self.name, attempt = attempts, backoff_ms = backoff.as_millis() as u64, "write failed, retrying: {e:#}");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.abort.cancelled() => anyhow::bail!("sink `{}` stopped while retrying: {e:#}", self.name),
                    }
                    backoff = (backoff * 2).min(max_backoff);
                }
                Err(SinkError::Rejected { index, error }) => {
                    self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                    self.refused_at(&mut batch, index, error).await?;
                    if batch.is_empty() {
                        return Ok(None);
                    }
                    backoff = Duration::from_millis(self.retry.initial_backoff_ms.max(1));
                    attempts = 0;
                }
                Err(SinkError::Fatal(e)) => {
                    self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                    return Err(e.context(format!("sink `{}` failed", self.name)));
                }
            }
        }
    }

    /// The sink wrote `batch` up to `index` and can never accept the
    /// record there: counts what was written, applies `on_error` to that
    /// record and keeps only the records after it.
    async fn refused_at(
        &mut self,
        batch: &mut SinkBatch,
        index: usize,
        error: anyhow::Error,
    ) -> anyhow::Result<()> {
        let written: usize = (0..index)
            .filter_map(|i| batch.get(i))
            .map(|(_, r)| r.size())
            .sum();
        self.metrics.record_out(index as u64, written as u64);
        self.handle_rejected(batch, index, error).await?;
        batch.retain_after(index);
        Ok(())
    }

    /// Retries are exhausted: the whole batch follows `on_error`.
    async fn give_up_batch(
        &mut self,
        batch: SinkBatch,
        error: anyhow::Error,
    ) -> anyhow::Result<()> {
        for i in 0..batch.events {
            self.handle_rejected(&batch, i, anyhow::anyhow!("{error:#}"))
                .await?;
        }
        batch.ack_all();
        Ok(())
    }

    /// Applies `on_error` to one record the sink refused.
    async fn handle_rejected(
        &mut self,
        batch: &SinkBatch,
        index: usize,
        error: anyhow::Error,
    ) -> anyhow::Result<()> {
        let Some((source, record)) = batch.get(index) else {
            anyhow::bail!(
                "sink `{}` refused record {index} of a batch of {}: {error:#}",
                self.name,
                batch.events
            );
        };
        let origin = describe_origin(source, record);
        match self.on_error {
            OnError::Stop => Err(error.context(format!(
                "sink `{}` cannot accept a record from {origin} (on_error: stop)",
                self.name
            ))),
            OnError::Drop => {
                self.metrics
                    .dropped_on_error
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(sink = %self.name, "dropped a record from {origin}: {error:#}");
                Ok(())
            }
            OnError::DeadLetter => {
                let mut line = Vec::with_capacity(256);
                Encoding::Json.encode(record, &mut line);
                let entry = serde_json::json!({
                    "sink": &*self.name,
                    "origin": origin,
                    "error": format!("{error:#}"),
                    "record": serde_json::from_slice::<serde_json::Value>(&line)
                        .unwrap_or_else(|_| String::from_utf8_lossy(&line).into()),
                });
                let path = self.dead_letter_path.clone();
                tokio::task::spawn_blocking(move || append_dead_letter(&path, &entry))
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|r| r)
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "sink `{}`: cannot write dead letter to {}: {e}",
                            self.name,
                            self.dead_letter_path.display()
                        )
                    })?;
                self.metrics.dead_lettered.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    }
}

async fn gather(buffer: &BoundedQueue, config: BatchConfig) -> Option<SinkBatch> {
    let first = buffer.pop().await?;
    let mut batch = SinkBatch::default();
    batch.push(first);
    let deadline = Instant::now() + Duration::from_millis(config.timeout_ms);
    while batch.events < config.max_events && batch.bytes < config.max_bytes {
        let next = if config.timeout_ms == 0 {
            buffer.try_pop()
        } else {
            tokio::time::timeout_at(deadline, buffer.pop())
                .await
                .ok()
                .flatten()
        };
        match next {
            Some(b) => batch.push(b),
            None => break,
        }
    }
    Some(batch)
}

/// Appends one dead-letter entry and syncs it (on the blocking pool).
fn append_dead_letter(path: &std::path::Path, entry: &serde_json::Value) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut line = serde_json::to_vec(entry)?;
    line.push(b'\n');
    f.write_all(&line)?;
    f.sync_data()
}
