//! The pipeline engine: wires sources → internal queues → routers → sink
//! buffers → sinks, runs them as tasks, and shuts them down in order.
//!
//! Graceful stop: sources are cancelled (they stop reading, wait for their
//! outstanding acknowledgements and write final checkpoints); each queue is
//! closed when its producer ends, so routers and sinks drain and flush. A
//! pipeline whose drain exceeds `shutdown_timeout` — or that gets a second
//! signal — is aborted: unacknowledged batches are dropped, checkpoints stay
//! at what was acknowledged (at-least-once). A component that fails stops
//! the pipeline the same way and `run` returns its error.
//! Touches only the components it runs.

mod router;
mod sink_runner;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use globset::Glob;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::Checkpoints;
use crate::component::{BuildContext, Registry, Resources, Sink, Source, SourceContext};
use crate::condition::Condition;
use crate::config::{BatchConfig, ConfigError, OnError, PipelineConfig, QueueConfig, RetryConfig};
use crate::metrics::{ComponentMetrics, MetricsRegistry};
use crate::queue::{BoundedQueue, SourceOutput};

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

struct SourceEntry {
    name: Arc<str>,
    source: Box<dyn Source>,
    queue: Arc<BoundedQueue>,
    metrics: Arc<ComponentMetrics>,
}

struct SinkEntry {
    name: Arc<str>,
    sink: Box<dyn Sink>,
    settings: SinkSettings,
    buffer: Arc<BoundedQueue>,
    metrics: Arc<ComponentMetrics>,
}

/// Signals that stop a running pipeline.
#[derive(Debug, Clone, Default)]
pub struct Control {
    /// Graceful: stop sources, drain, checkpoint.
    pub shutdown: CancellationToken,
    /// Hard: drop everything in flight now.
    pub abort: CancellationToken,
}

/// A built pipeline, ready to run.
pub struct Pipeline {
    data_dir: PathBuf,
    checkpoint_interval: Duration,
    shutdown_timeout: Duration,
    resources: Resources,
    metrics: Arc<MetricsRegistry>,
    state: StateCell,
    sources: Vec<SourceEntry>,
    sinks: Vec<SinkEntry>,
}

enum TaskEnd {
    /// A source ended (`true`) or its router failed (`false`).
    Source(Arc<str>, anyhow::Result<()>, bool),
    Router,
    Sink(Arc<str>, anyhow::Result<()>),
}

impl Pipeline {
    pub fn new(data_dir: impl Into<PathBuf>) -> Pipeline {
        Pipeline {
            data_dir: data_dir.into(),
            checkpoint_interval: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(30),
            resources: Resources::default(),
            metrics: MetricsRegistry::new(),
            state: StateCell::default(),
            sources: Vec::new(),
            sinks: Vec::new(),
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

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn metrics(&self) -> Arc<MetricsRegistry> {
        self.metrics.clone()
    }

    pub fn state(&self) -> StateCell {
        self.state.clone()
    }

    pub fn add_source(
        &mut self,
        name: &str,
        kind: &str,
        source: Box<dyn Source>,
        queue: QueueConfig,
    ) {
        let metrics = ComponentMetrics::new(name, "source", kind);
        let queue = BoundedQueue::new(queue);
        self.metrics.register(metrics.clone(), Some(queue.clone()));
        self.sources.push(SourceEntry {
            name: name.into(),
            source,
            queue,
            metrics,
        });
    }

    pub fn add_sink(
        &mut self,
        name: &str,
        kind: &str,
        sink: Box<dyn Sink>,
        settings: SinkSettings,
    ) {
        let metrics = ComponentMetrics::new(name, "sink", kind);
        let buffer = BoundedQueue::new(settings.buffer);
        self.metrics.register(metrics.clone(), Some(buffer.clone()));
        self.sinks.push(SinkEntry {
            name: name.into(),
            sink,
            settings,
            buffer,
            metrics,
        });
    }

    /// Builds every component of a loaded configuration.
    pub fn from_config(
        config: &PipelineConfig,
        registry: &Registry,
        resources: Resources,
    ) -> Result<Pipeline, Vec<ConfigError>> {
        let mut p = Pipeline::new(&config.data_dir)
            .with_checkpoint_interval(Duration::from_millis(config.checkpoint_interval_ms))
            .with_shutdown_timeout(Duration::from_secs(config.shutdown_timeout_secs))
            .with_resources(resources);
        let mut errors = Vec::new();
        let unknown = |kind: &str, loc: &crate::config::Location| ConfigError {
            location: loc.clone(),
            message: format!("unknown component type `{kind}`"),
            hint: None,
        };
        for s in config.sources.values() {
            let cx = BuildContext {
                name: &s.name,
                data_dir: &config.data_dir,
                resources: &p.resources,
            };
            match registry.source(&s.kind).map(|f| f.build(&cx, &s.options)) {
                Some(Ok(src)) => p.add_source(&s.name, &s.kind, src, s.queue),
                Some(Err(e)) => errors.push(e),
                None => errors.push(unknown(&s.kind, &s.location)),
            }
        }
        for s in config.sinks.values() {
            let cx = BuildContext {
                name: &s.name,
                data_dir: &config.data_dir,
                resources: &p.resources,
            };
            let settings = SinkSettings {
                inputs: s.inputs.clone(),
                condition: s.condition.clone(),
                buffer: s.buffer,
                batch: s.batch,
                retry: s.retry,
                on_error: s.on_error,
                dead_letter_path: s.dead_letter_path.clone(),
            };
            match registry.sink(&s.kind).map(|f| f.build(&cx, &s.options)) {
                Some(Ok(sink)) => p.add_sink(&s.name, &s.kind, sink, settings),
                Some(Err(e)) => errors.push(e),
                None => errors.push(unknown(&s.kind, &s.location)),
            }
        }
        if errors.is_empty() {
            Ok(p)
        } else {
            Err(errors)
        }
    }

    /// Runs until every source has finished and every sink has drained, or
    /// until `control` stops it. Returns the first component error.
    pub async fn run(self, control: Control) -> anyhow::Result<()> {
        let Pipeline {
            data_dir,
            checkpoint_interval,
            shutdown_timeout,
            resources,
            state,
            sources,
            sinks,
            ..
        } = self;
        let stop_sources = CancellationToken::new();
        let mut tasks: JoinSet<TaskEnd> = JoinSet::new();

        // Routes: which sinks each source feeds.
        let mut routes: Vec<Vec<router::Route>> = sources.iter().map(|_| Vec::new()).collect();
        for sink in &sinks {
            let feeders = Arc::new(AtomicUsize::new(0));
            let matchers: Vec<_> = sink
                .settings
                .inputs
                .iter()
                .filter_map(|i| Glob::new(i).ok().map(|g| g.compile_matcher()))
                .collect();
            for (i, src) in sources.iter().enumerate() {
                if matchers.iter().any(|m| m.is_match(&*src.name)) {
                    feeders.fetch_add(1, Ordering::Relaxed);
                    routes[i].push(router::Route {
                        buffer: sink.buffer.clone(),
                        condition: sink.settings.condition.clone(),
                        sink_metrics: sink.metrics.clone(),
                        feeders: feeders.clone(),
                    });
                }
            }
            if feeders.load(Ordering::Relaxed) == 0 {
                sink.buffer.close();
            }
        }

        let mut live_sinks = sinks.len();
        for sink in sinks {
            let name = sink.name.clone();
            let dead_letter_path = sink.settings.dead_letter_path.clone().unwrap_or_else(|| {
                data_dir
                    .join("dead_letter")
                    .join(format!("{}.ndjson", sink.name))
            });
            let runner = sink_runner::SinkRunner {
                name: sink.name,
                sink: sink.sink,
                buffer: sink.buffer,
                batch: sink.settings.batch,
                retry: sink.settings.retry,
                on_error: sink.settings.on_error,
                dead_letter_path,
                metrics: sink.metrics,
                abort: control.abort.clone(),
            };
            tasks.spawn(async move { TaskEnd::Sink(name, runner.run().await) });
        }
        let mut live_sources = sources.len();
        for (src, routes) in sources.into_iter().zip(routes) {
            let queue = src.queue.clone();
            let router_name = src.name.clone();
            tasks.spawn(async move {
                if let Err(panic) = AssertUnwindSafe(router::route(queue.clone(), routes))
                    .catch_unwind()
                    .await
                {
                    // Nothing more leaves this source's queue.
                    queue.close();
                    queue.abandon();
                    return TaskEnd::Source(
                        router_name.clone(),
                        Err(anyhow::anyhow!(
                            "the router of source `{router_name}` panicked: {}",
                            panic_message(&panic)
                        )),
                        false,
                    );
                }
                TaskEnd::Router
            });
            let cx = SourceContext {
                name: src.name.clone(),
                output: SourceOutput::new(src.name.clone(), src.queue.clone(), src.metrics.clone()),
                shutdown: stop_sources.child_token(),
                checkpoints: Checkpoints::new(&data_dir, &src.name),
                checkpoint_interval,
                metrics: src.metrics,
                data_dir: data_dir.clone(),
                resources: resources.clone(),
            };
            let (name, queue, source) = (src.name, src.queue, src.source);
            tasks.spawn(async move {
                let result = match AssertUnwindSafe(source.run(cx)).catch_unwind().await {
                    Ok(r) => r,
                    Err(panic) => Err(anyhow::anyhow!("panicked: {}", panic_message(&panic))),
                };
                queue.close();
                TaskEnd::Source(name, result, true)
            });
        }
        state.set(PipelineState::Running);

        let mut first_error: Option<anyhow::Error> = None;
        let mut deadline: Option<tokio::time::Instant> = None;
        let begin_drain = |deadline: &mut Option<tokio::time::Instant>| {
            if deadline.is_none() {
                state.set(PipelineState::Draining);
                stop_sources.cancel();
                *deadline = Some(tokio::time::Instant::now() + shutdown_timeout);
            }
        };
        while live_sinks > 0 || live_sources > 0 {
            let until = deadline
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86400 * 365));
            tokio::select! {
                end = tasks.join_next() => {
                    let Some(end) = end else { break };
                    match end {
                        Ok(TaskEnd::Source(name, r, source_ended)) => {
                            if source_ended {
                                live_sources -= 1;
                            }
                            if let Err(e) = r {
                                tracing::error!(source = %name, "source failed: {e:#}");
                                first_error.get_or_insert(e.context(format!("source `{name}` failed")));
                                begin_drain(&mut deadline);
                            }
                        }
                        Ok(TaskEnd::Sink(name, r)) => {
                            live_sinks -= 1;
                            if let Err(e) = r {
                                tracing::error!(sink = %name, "sink failed: {e:#}");
                                first_error.get_or_insert(e);
                                begin_drain(&mut deadline);
                            }
                        }
                        Ok(TaskEnd::Router) => {}
                        Err(e) => {
                            // Tasks catch their own panics; this is a cancelled task.
                            first_error.get_or_insert(anyhow::anyhow!("a pipeline task ended unexpectedly: {e}"));
                            break;
                        }
                    }
                }
                _ = control.shutdown.cancelled(), if deadline.is_none() => {
                    tracing::info!("shutting down: draining queues (up to {}s)", shutdown_timeout.as_secs());
                    begin_drain(&mut deadline);
                }
                _ = control.abort.cancelled() => {
                    tracing::warn!("hard stop: abandoning what is in flight (it will be re-delivered)");
                    break;
                }
                _ = tokio::time::sleep_until(until) => {
                    first_error.get_or_insert(anyhow::anyhow!(
                        "the drain did not finish within {}s (shutdown_timeout_secs): what was in flight was abandoned and will be re-delivered on restart",
                        shutdown_timeout.as_secs()
                    ));
                    break;
                }
            }
        }
        control.abort.cancel();
        tasks.shutdown().await;
        state.set(PipelineState::Stopped);
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The text of a caught panic.
pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}
