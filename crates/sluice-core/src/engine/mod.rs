//! The pipeline engine: wires sources → internal queues → routers → sink
//! buffers → sinks, runs them as tasks, reloads them, and shuts them down
//! in order.
//!
//! Graceful stop: sources are cancelled (they stop reading, wait for their
//! outstanding acknowledgements and write final checkpoints); each queue is
//! closed when its producer ends, so routers and sinks drain and flush. A
//! pipeline whose drain exceeds `shutdown_timeout` — or that gets a second
//! signal — is aborted: unacknowledged batches are dropped, checkpoints stay
//! at what was acknowledged (at-least-once). A component that fails stops
//! the pipeline the same way and `run` returns its error.
//!
//! Reload ([`PipelineHandle::reload`]): a running pipeline is handed a newly
//! built one; components whose settings changed are replaced one by one,
//! the others keep running (`reload.rs`, `supervisor.rs`). Building from a
//! configuration is in `build.rs`. Touches only the components it runs.

mod build;
mod reload;
mod router;
mod sink_runner;
mod supervisor;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::component::{Resources, Sink, Source};
use crate::condition::Condition;
use crate::config::{BatchConfig, OnError, QueueConfig, RetryConfig};
use crate::metrics::{ComponentMetrics, MetricsRegistry};
use crate::queue::BoundedQueue;

pub use reload::{PipelineHandle, ReloadReport};

/// Lifecycle of a running pipeline, for `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineState {
    Starting = 0,
    Running = 1,
    Draining = 2,
    Stopped = 3,
}

/// Shared view of the pipeline's state.
#[derive(Debug, Clone, Default)]
pub struct StateCell(Arc<AtomicU8>);

impl StateCell {
    pub fn get(&self) -> PipelineState {
        match self.0.load(Ordering::Relaxed) {
            0 => PipelineState::Starting,
            1 => PipelineState::Running,
            2 => PipelineState::Draining,
            _ => PipelineState::Stopped,
        }
    }

    fn set(&self, s: PipelineState) {
        self.0.store(s as u8, Ordering::Relaxed);
    }
}

/// A sink's engine-side settings.
#[derive(Debug, Clone, Default)]
pub struct SinkSettings {
    pub inputs: Vec<String>,
    pub condition: Option<Condition>,
    pub buffer: QueueConfig,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
    pub on_error: OnError,
    pub dead_letter_path: Option<PathBuf>,
}

/// What a component was built from, compared on reload: equal fingerprints
/// mean the running component can stay. `None` (components added by hand)
/// never equals anything, so such a component is always rebuilt.
pub(crate) type Fingerprint = Option<serde_json::Value>;

struct SourceEntry {
    name: Arc<str>,
    kind: String,
    source: Box<dyn Source>,
    queue: Arc<BoundedQueue>,
    metrics: Arc<ComponentMetrics>,
    fingerprint: Fingerprint,
}

struct SinkEntry {
    name: Arc<str>,
    kind: String,
    sink: Box<dyn Sink>,
    settings: SinkSettings,
    buffer: Arc<BoundedQueue>,
    metrics: Arc<ComponentMetrics>,
    /// Everything but `inputs` and `where`, which only re-route.
    fingerprint: Fingerprint,
}

/// Signals that stop a running pipeline.
#[derive(Debug, Clone, Default)]
pub struct Control {
    /// Graceful: stop sources, drain, checkpoint.
    pub shutdown: CancellationToken,
    /// Hard: drop everything in flight now.
    pub abort: CancellationToken,
}

/// A built pipeline, ready to run (or to replace a running one).
pub struct Pipeline {
    data_dir: PathBuf,
    checkpoint_interval: Duration,
    shutdown_timeout: Duration,
    resources: Resources,
    metrics: Arc<MetricsRegistry>,
    state: StateCell,
    idle: bool,
    sources: Vec<SourceEntry>,
    sinks: Vec<SinkEntry>,
    reload_tx: mpsc::UnboundedSender<reload::Request>,
    reload_rx: mpsc::UnboundedReceiver<reload::Request>,
}

impl Pipeline {
    pub fn new(data_dir: impl Into<PathBuf>) -> Pipeline {
        let (reload_tx, reload_rx) = mpsc::unbounded_channel();
        Pipeline {
            data_dir: data_dir.into(),
            checkpoint_interval: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(30),
            resources: Resources::default(),
            metrics: MetricsRegistry::new(),
            state: StateCell::default(),
            idle: false,
            sources: Vec::new(),
            sinks: Vec::new(),
            reload_tx,
            reload_rx,
        }
    }

    pub fn with_checkpoint_interval(mut self, every: Duration) -> Pipeline {
        self.checkpoint_interval = every;
        self
    }

    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Pipeline {
        self.shutdown_timeout = timeout;
        self
    }

    pub fn with_resources(mut self, resources: Resources) -> Pipeline {
        self.resources = resources;
        self
    }

    /// With `true`, the pipeline keeps running (waiting for a reload or a
    /// stop) when it has no source left, instead of draining and ending.
    /// For a daemon that serves only the queue API.
    pub fn with_idle(mut self, idle: bool) -> Pipeline {
        self.idle = idle;
        self
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn metrics(&self) -> Arc<MetricsRegistry> {
        self.metrics.clone()
    }

    pub fn state(&self) -> StateCell {
        self.state.clone()
    }

    /// A handle to reload this pipeline once it runs.
    pub fn handle(&self) -> PipelineHandle {
        PipelineHandle::new(self.reload_tx.clone())
    }

    pub fn add_source(
        &mut self,
        name: &str,
        kind: &str,
        source: Box<dyn Source>,
        queue: QueueConfig,
    ) {
        self.push_source(name, kind, source, queue, None);
    }

    fn push_source(
        &mut self,
        name: &str,
        kind: &str,
        source: Box<dyn Source>,
        queue: QueueConfig,
        fingerprint: Fingerprint,
    ) {
        let metrics = ComponentMetrics::new(name, "source", kind);
        let queue = BoundedQueue::new(queue);
        self.metrics.register(metrics.clone(), Some(queue.clone()));
        self.sources.push(SourceEntry {
            name: name.into(),
            kind: kind.to_string(),
            source,
            queue,
            metrics,
            fingerprint,
        });
    }

    pub fn add_sink(
        &mut self,
        name: &str,
        kind: &str,
        sink: Box<dyn Sink>,
        settings: SinkSettings,
    ) {
        self.push_sink(name, kind, sink, settings, None);
    }

    fn push_sink(
        &mut self,
        name: &str,
        kind: &str,
        sink: Box<dyn Sink>,
        settings: SinkSettings,
        fingerprint: Fingerprint,
    ) {
        let metrics = ComponentMetrics::new(name, "sink", kind);
        let buffer = BoundedQueue::new(settings.buffer);
        self.metrics.register(metrics.clone(), Some(buffer.clone()));
        self.sinks.push(SinkEntry {
            name: name.into(),
            kind: kind.to_string(),
            sink,
            settings,
            buffer,
            metrics,
            fingerprint,
        });
    }

    /// Runs until every source has finished and every sink has drained, or
    /// until `control` stops it, applying reloads sent through
    /// [`Pipeline::handle`] meanwhile. Returns the first component error.
    pub async fn run(self, control: Control) -> anyhow::Result<()> {
        supervisor::run(self, control).await
    }
}

/// The text of a caught panic.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}
