//! The Source and Sink traits, the contexts the engine hands them, and the
//! registry of component factories that the binary fills in.
//!
//! A component crate implements a factory per component type; the factory
//! turns the component's options into a ready-to-run component without
//! touching the outside world (so `validate` can build every component
//! safely). Touches nothing but memory.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use schemars::{Schema, SchemaGenerator};
use tokio_util::sync::CancellationToken;

use crate::checkpoint::Checkpoints;
use crate::config::{ComponentOptions, ConfigError};
use crate::metrics::ComponentMetrics;
use crate::queue::SourceOutput;
use crate::record::{Batch, Record};

/// Reads from the world and hands batches to the pipeline.
#[async_trait]
pub trait Source: Send + 'static {
    /// Runs until the world ends (finite sources) or `cx.shutdown` fires.
    /// After shutdown a source stops reading, waits (bounded by the engine)
    /// for outstanding acknowledgements, and writes its final checkpoint.
    async fn run(self: Box<Self>, cx: SourceContext) -> anyhow::Result<()>;
}

/// What the engine gives a running source.
pub struct SourceContext {
    pub name: Arc<str>,
    pub output: SourceOutput,
    pub shutdown: CancellationToken,
    pub checkpoints: Checkpoints,
    /// Write checkpoints at most this often (the final one always).
    pub checkpoint_interval: Duration,
    pub metrics: Arc<ComponentMetrics>,
    pub data_dir: PathBuf,
    pub resources: Resources,
}

/// A sink's refusal of a batch.
#[derive(Debug)]
pub enum SinkError {
    /// Transient (network, busy target): the engine retries the same batch
    /// with capped exponential backoff.
    Retryable(anyhow::Error),
    /// Records `[0, index)` were accepted; the record at `index` can never be
    /// accepted; the rest were not attempted. The engine applies `on_error`
    /// to that record and writes the rest again.
    Rejected { index: usize, error: anyhow::Error },
    /// The sink cannot go on: the pipeline stops with this error.
    Fatal(anyhow::Error),
}

impl SinkError {
    pub fn retryable(e: impl Into<anyhow::Error>) -> SinkError {
        SinkError::Retryable(e.into())
    }

    /// The error, whatever its kind.
    pub fn into_anyhow(self) -> anyhow::Error {
        match self {
            SinkError::Retryable(e) | SinkError::Fatal(e) => e,
            SinkError::Rejected { index, error } => error.context(format!("record {index}")),
        }
    }
}

impl std::fmt::Display for SinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkError::Retryable(e) => write!(f, "{e:#}"),
            SinkError::Rejected { index, error } => write!(f, "record {index} refused: {error:#}"),
            SinkError::Fatal(e) => write!(f, "{e:#}"),
        }
    }
}

/// Batches gathered for one write: whole source batches, so records are
/// never copied between read and sink.
#[derive(Debug, Default)]
pub struct SinkBatch {
    pub parts: Vec<Batch>,
    pub events: usize,
    pub bytes: usize,
}

impl SinkBatch {
    pub fn push(&mut self, batch: Batch) {
        self.events += batch.len();
        self.bytes += batch.bytes;
        self.parts.push(batch);
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Every record with the name of the source it came from.
    pub fn records(&self) -> impl Iterator<Item = (&Arc<str>, &Record)> {
        self.parts
            .iter()
            .flat_map(|b| b.records.iter().map(move |r| (&b.source, r)))
    }

    /// The record at `index` across parts, with its source.
    pub fn get(&self, mut index: usize) -> Option<(&Arc<str>, &Record)> {
        for b in &self.parts {
            if index < b.len() {
                return Some((&b.source, &b.records[index]));
            }
            index -= b.len();
        }
        None
    }

    /// Keeps only the records after `index`; the acknowledgement references
    /// of dropped parts are acknowledged (they were handled).
    pub fn retain_after(&mut self, index: usize) {
        let mut skip = index + 1;
        let mut kept = SinkBatch::default();
        for b in std::mem::take(&mut self.parts) {
            if skip >= b.len() {
                skip -= b.len();
                b.ack.ack();
            } else if skip > 0 {
                let rest = b.records[skip..].to_vec();
                skip = 0;
                let nb = b.with_records(rest);
                b.ack.ack();
                kept.push(nb);
            } else {
                kept.push(b);
            }
        }
        *self = kept;
    }

    /// Acknowledges every part: the batch was durably accepted.
    pub fn ack_all(self) {
        for b in self.parts {
            b.ack.ack();
        }
    }
}

/// Writes batches somewhere durable.
#[async_trait]
pub trait Sink: Send + 'static {
    /// Durably writes the batch. `Ok` means every record is accepted and the
    /// engine acknowledges the batch.
    async fn write(&mut self, batch: &SinkBatch) -> Result<(), SinkError>;

    /// Like `write`, but may return *before* the batch is durable, with a
    /// future that resolves when it is (e.g. the store's group-commit
    /// fsync, or a replica apply that runs while the next batch is
    /// prepared). The engine goes on writing later batches meanwhile and
    /// acknowledges each batch, in order, only when its future resolves.
    ///
    /// The future may fail like `write`: `Fatal` fails the sink;
    /// `Retryable` or `Rejected` (the batch was not written, or only up to
    /// `index`) make the engine write that batch again, and every batch
    /// pending after it, in order, with `write` (retrying and applying
    /// `on_error` as usual). So after such a failure the sink must write
    /// nothing of a later pipelined batch until its `write` is called
    /// (their futures fail too). The default is `write` with nothing
    /// pending.
    async fn write_pipelined(
        &mut self,
        batch: &SinkBatch,
    ) -> Result<Option<PendingDurability>, SinkError> {
        self.write(batch).await.map(|()| None)
    }

    /// Called once when the sink's input is drained, before it is dropped.
    async fn close(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Resolves when a pipelined write is durable (see `Sink::write_pipelined`).
pub type PendingDurability =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), SinkError>> + Send>>;

/// Shared objects the binary provides to components (the embedded store,
/// the API router, …), looked up by type.
#[derive(Clone, Default)]
pub struct Resources {
    map: Arc<parking_lot::RwLock<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>,
}

impl Resources {
    pub fn insert<T: Any + Send + Sync>(&self, value: Arc<T>) {
        self.map.write().insert(TypeId::of::<T>(), value);
    }

    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let v = self.map.read().get(&TypeId::of::<T>())?.clone();
        v.downcast::<T>().ok()
    }
}

/// What a factory may look at while building a component.
pub struct BuildContext<'a> {
    pub name: &'a str,
    pub data_dir: &'a Path,
    pub resources: &'a Resources,
}

pub trait SourceFactory: Send + Sync {
    /// The `type:` value.
    fn kind(&self) -> &'static str;
    /// Whether the source answers a client, so `when_full: reject` is valid.
    fn answers_clients(&self) -> bool {
        false
    }
    /// Builds the source from its options, without touching the outside world.
    fn build(
        &self,
        cx: &BuildContext,
        options: &ComponentOptions,
    ) -> Result<Box<dyn Source>, ConfigError>;
    /// JSON Schema of the options (every key but `type` and `queue`), for
    /// `sluice schema`; usually `generator.root_schema_for::<Options>()`.
    fn options_schema(&self, generator: &mut SchemaGenerator) -> Option<Schema> {
        let _ = generator;
        None
    }
}

pub trait SinkFactory: Send + Sync {
    fn kind(&self) -> &'static str;
    fn build(
        &self,
        cx: &BuildContext,
        options: &ComponentOptions,
    ) -> Result<Box<dyn Sink>, ConfigError>;
    /// JSON Schema of the options (every key but `type` and the engine's
    /// sink keys), for `sluice schema`.
    fn options_schema(&self, generator: &mut SchemaGenerator) -> Option<Schema> {
        let _ = generator;
        None
    }
}

/// Every component type the binary knows.
#[derive(Default, Clone)]
pub struct Registry {
    sources: BTreeMap<&'static str, Arc<dyn SourceFactory>>,
    sinks: BTreeMap<&'static str, Arc<dyn SinkFactory>>,
}

impl Registry {
    pub fn add_source(&mut self, f: impl SourceFactory + 'static) {
        self.sources.insert(f.kind(), Arc::new(f));
    }

    pub fn add_sink(&mut self, f: impl SinkFactory + 'static) {
        self.sinks.insert(f.kind(), Arc::new(f));
    }

    pub fn source(&self, kind: &str) -> Option<&Arc<dyn SourceFactory>> {
        self.sources.get(kind)
    }

    pub fn sink(&self, kind: &str) -> Option<&Arc<dyn SinkFactory>> {
        self.sinks.get(kind)
    }

    pub fn source_kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.sources.keys().copied()
    }

    pub fn sink_kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.sinks.keys().copied()
    }
}
