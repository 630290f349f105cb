//! The supervisor: runs a pipeline's tasks (a source, its router, a sink
//! runner per sink), watches them end, drains or aborts on request, and
//! applies reloads while data flows.
//!
//! Every component instance is a set of tasks with a `done` token. A reload
//! replaces an instance by starting its successor behind that token: a new
//! sink writes only after the old one drained what it was handed (so two
//! writers never share a target), a new source reads only after the old one
//! settled its acknowledgements and wrote its final checkpoint (so it
//! resumes there). Routers pick up new route lists at their next batch. The
//! engine holds one [`Feed`] per current sink; it lets go of them when the
//! pipeline drains, or when no router is left (unless idle), so buffers
//! close and sinks finish. Touches only the components it runs.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use globset::{Glob, GlobMatcher};
use indexmap::IndexMap;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::reload::Request;
use super::router::{self, Feed, Route, RouteTable};
use super::sink_runner::SinkRunner;
use super::{
    panic_message, Control, Fingerprint, Pipeline, PipelineState, SinkEntry, SourceEntry, StateCell,
};
use crate::checkpoint::Checkpoints;
use crate::component::{Resources, SourceContext};
use crate::condition::Condition;
use crate::metrics::{ComponentMetrics, MetricsRegistry};
use crate::queue::SourceOutput;

enum TaskEnd {
    Source(Arc<str>, anyhow::Result<()>),
    /// A router ended; with an error when it panicked.
    Router(u64, Option<anyhow::Error>),
    Sink(u64, Arc<str>, anyhow::Result<()>),
}

/// Fires `done` when the last of `n` tasks arrived.
#[derive(Clone)]
struct Latch {
    left: Arc<AtomicUsize>,
    done: CancellationToken,
}

impl Latch {
    fn new(n: usize) -> Latch {
        Latch {
            left: Arc::new(AtomicUsize::new(n)),
            done: CancellationToken::new(),
        }
    }

    fn arrive(&self) {
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.cancel();
        }
    }
}

pub(super) struct LiveSource {
    pub(super) kind: String,
    pub(super) fingerprint: Fingerprint,
    pub(super) metrics: Arc<ComponentMetrics>,
    pub(super) stop: CancellationToken,
    /// The source task and its router have ended.
    pub(super) done: CancellationToken,
}

pub(super) struct LiveSink {
    pub(super) id: u64,
    pub(super) kind: String,
    pub(super) fingerprint: Fingerprint,
    pub(super) inputs: Vec<String>,
    pub(super) matchers: Vec<GlobMatcher>,
    pub(super) condition: Option<Condition>,
    pub(super) metrics: Arc<ComponentMetrics>,
    /// The engine's hold on the buffer; `None` once it let go.
    pub(super) feed: Option<Arc<Feed>>,
    pub(super) done: CancellationToken,
    pub(super) abort: CancellationToken,
}

/// A sink instance a reload replaced or removed, still draining.
pub(super) struct Retiring {
    pub(super) id: u64,
    pub(super) name: Arc<str>,
    pub(super) abort: CancellationToken,
    pub(super) metrics: Arc<ComponentMetrics>,
    /// `records_out` at the last check, to tell slow from stuck.
    pub(super) written: u64,
    pub(super) check_at: Option<Instant>,
}

pub(super) struct Supervisor {
    pub(super) data_dir: PathBuf,
    pub(super) checkpoint_interval: Duration,
    pub(super) shutdown_timeout: Duration,
    resources: Resources,
    pub(super) metrics: Arc<MetricsRegistry>,
    state: StateCell,
    pub(super) idle: bool,
    control: Control,
    stop_sources: CancellationToken,
    tasks: JoinSet<TaskEnd>,
    next_id: u64,
    pub(super) sources: IndexMap<Arc<str>, LiveSource>,
    pub(super) sinks: IndexMap<Arc<str>, LiveSink>,
    /// Every running router: its source's name and its routes.
    routers: HashMap<u64, (Arc<str>, Arc<RouteTable>)>,
    pub(super) retiring: Vec<Retiring>,
    /// The engine let go of every sink: the pipeline is ending.
    pub(super) released: bool,
    /// When a drain in progress gives up.
    pub(super) deadline: Option<Instant>,
    first_error: Option<anyhow::Error>,
}

pub(super) async fn run(p: Pipeline, control: Control) -> anyhow::Result<()> {
    let Pipeline {
        data_dir,
        checkpoint_interval,
        shutdown_timeout,
        resources,
        metrics,
        state,
        idle,
        sources,
        sinks,
        reload_tx,
        reload_rx,
    } = p;
    drop(reload_tx);
    let mut sv = Supervisor {
        data_dir,
        checkpoint_interval,
        shutdown_timeout,
        resources,
        metrics,
        state,
        idle,
        control: control.clone(),
        stop_sources: CancellationToken::new(),
        tasks: JoinSet::new(),
        next_id: 0,
        sources: IndexMap::new(),
        sinks: IndexMap::new(),
        routers: HashMap::new(),
        retiring: Vec::new(),
        released: false,
        deadline: None,
        first_error: None,
    };
    for sink in sinks {
        sv.start_sink(sink, None);
    }
    for source in sources {
        sv.start_source(source, None);
    }
    sv.state.set(PipelineState::Running);
    sv.release_if_done();

    let mut requests = Some(reload_rx);
    loop {
        if sv.tasks.is_empty() && (sv.released || !sv.idle) {
            break;
        }
        let wake = sv.next_timer();
        tokio::select! {
            end = sv.tasks.join_next(), if !sv.tasks.is_empty() => match end {
                Some(Ok(end)) => sv.task_ended(end),
                Some(Err(e)) => {
                    // Tasks catch their own panics; this is a cancelled task.
                    sv.first_error.get_or_insert(anyhow::anyhow!("a pipeline task ended unexpectedly: {e}"));
                    break;
                }
                None => {}
            },
            request = next_request(&mut requests) => match request {
                Some(Request { next, reply }) => {
                    let outcome = sv.reload(next);
                    let _ = reply.send(outcome);
                }
                None => requests = None,
            },
            _ = control.shutdown.cancelled(), if sv.deadline.is_none() => {
                tracing::info!("shutting down: draining queues (up to {}s)", sv.shutdown_timeout.as_secs());
                sv.begin_drain();
            }
            _ = control.abort.cancelled() => {
                tracing::warn!("hard stop: abandoning what is in flight (it will be re-delivered)");
                break;
            }
            _ = tokio::time::sleep_until(wake) => {
                if sv.timer_fired() {
                    break;
                }
            }
        }
    }
    control.abort.cancel();
    sv.tasks.shutdown().await;
    sv.state.set(PipelineState::Stopped);
    match sv.first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn next_request(rx: &mut Option<mpsc::UnboundedReceiver<Request>>) -> Option<Request> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

pub(super) fn matchers(inputs: &[String]) -> Vec<GlobMatcher> {
    inputs
        .iter()
        .filter_map(|i| Glob::new(i).ok().map(|g| g.compile_matcher()))
        .collect()
}

impl Supervisor {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The routes of a router of source `name`: every current sink whose
    /// `inputs` match it.
    fn routes_for(&self, name: &str) -> Vec<Route> {
        self.sinks
            .values()
            .filter_map(|s| {
                let feed = s.feed.as_ref()?;
                s.matchers.iter().any(|m| m.is_match(name)).then(|| Route {
                    feed: feed.clone(),
                    condition: s.condition.clone(),
                    sink_metrics: s.metrics.clone(),
                })
            })
            .collect()
    }

    /// Gives every router the routes of the current sinks.
    pub(super) fn reroute_all(&self) {
        for (name, table) in self.routers.values() {
            table.swap(self.routes_for(name));
        }
    }

    /// Starts a sink instance; with `after`, it writes only once that
    /// (its predecessor's `done`) fired.
    pub(super) fn start_sink(&mut self, e: SinkEntry, after: Option<CancellationToken>) {
        let id = self.id();
        let done = CancellationToken::new();
        let abort = self.control.abort.child_token();
        let dead_letter_path = e.settings.dead_letter_path.clone().unwrap_or_else(|| {
            self.data_dir
                .join("dead_letter")
                .join(format!("{}.ndjson", e.name))
        });
        let runner = SinkRunner {
            name: e.name.clone(),
            sink: e.sink,
            buffer: e.buffer.clone(),
            batch: e.settings.batch,
            retry: e.settings.retry,
            on_error: e.settings.on_error,
            dead_letter_path,
            metrics: e.metrics.clone(),
            abort: abort.clone(),
        };
        let (name, finished, stop) = (e.name.clone(), done.clone(), abort.clone());
        self.tasks.spawn(async move {
            if let Some(pred) = after {
                tokio::select! {
                    _ = pred.cancelled() => {}
                    _ = stop.cancelled() => {
                        finished.cancel();
                        return TaskEnd::Sink(id, name, Ok(()));
                    }
                }
            }
            let result = runner.run().await;
            finished.cancel();
            TaskEnd::Sink(id, name, result)
        });
        let live = LiveSink {
            id,
            kind: e.kind,
            fingerprint: e.fingerprint,
            matchers: matchers(&e.settings.inputs),
            inputs: e.settings.inputs,
            condition: e.settings.condition,
            metrics: e.metrics,
            feed: Some(Arc::new(Feed { buffer: e.buffer })),
            done,
            abort,
        };
        self.sinks.insert(e.name, live);
    }

    /// Starts a source instance and its router; with `after`, the source
    /// reads only once its predecessor ended, and not at all if it is
    /// stopped before that.
    pub(super) fn start_source(&mut self, e: SourceEntry, after: Option<CancellationToken>) {
        let id = self.id();
        let latch = Latch::new(2);
        let stop = self.stop_sources.child_token();
        let table = RouteTable::new(self.routes_for(&e.name));
        self.routers.insert(id, (e.name.clone(), table.clone()));

        let (queue, name, arrived) = (e.queue.clone(), e.name.clone(), latch.clone());
        self.tasks.spawn(async move {
            let routed = AssertUnwindSafe(router::route(queue.clone(), table.clone()))
                .catch_unwind()
                .await;
            let error = routed.err().map(|panic| {
                // Nothing more leaves this source's queue.
                queue.close();
                queue.abandon();
                table.swap(Vec::new());
                anyhow::anyhow!(
                    "the router of source `{name}` panicked: {}",
                    panic_message(&panic)
                )
            });
            arrived.arrive();
            TaskEnd::Router(id, error)
        });

        let cx = SourceContext {
            name: e.name.clone(),
            output: SourceOutput::new(e.name.clone(), e.queue.clone(), e.metrics.clone()),
            shutdown: stop.clone(),
            checkpoints: Checkpoints::new(&self.data_dir, &e.name),
            checkpoint_interval: self.checkpoint_interval,
            metrics: e.metrics.clone(),
            data_dir: self.data_dir.clone(),
            resources: self.resources.clone(),
        };
        let (name, queue, source, stopped) = (e.name.clone(), e.queue, e.source, stop.clone());
        let arrived = latch.clone();
        self.tasks.spawn(async move {
            let start = match after {
                None => true,
                Some(pred) => tokio::select! {
                    biased;
                    _ = stopped.cancelled() => false,
                    _ = pred.cancelled() => !stopped.is_cancelled(),
                },
            };
            let result = if start {
                match AssertUnwindSafe(source.run(cx)).catch_unwind().await {
                    Ok(r) => r,
                    Err(panic) => Err(anyhow::anyhow!("panicked: {}", panic_message(&panic))),
                }
            } else {
                Ok(())
            };
            queue.close();
            arrived.arrive();
            TaskEnd::Source(name, result)
        });
        let live = LiveSource {
            kind: e.kind,
            fingerprint: e.fingerprint,
            metrics: e.metrics,
            stop,
            done: latch.done,
        };
        self.sources.insert(e.name, live);
    }

    fn task_ended(&mut self, end: TaskEnd) {
        match end {
            TaskEnd::Source(name, Err(e)) => {
                tracing::error!(source = %name, "source failed: {e:#}");
                self.fail(e.context(format!("source `{name}` failed")));
            }
            TaskEnd::Source(_, Ok(())) => {}
            TaskEnd::Router(id, error) => {
                self.routers.remove(&id);
                if let Some(e) = error {
                    tracing::error!("{e:#}");
                    self.fail(e);
                }
                self.release_if_done();
            }
            TaskEnd::Sink(id, name, result) => {
                if let Some(i) = self.retiring.iter().position(|r| r.id == id) {
                    self.retiring.swap_remove(i);
                    if let Err(e) = result {
                        tracing::warn!(sink = %name, "the replaced instance of sink `{name}` ended with an error: {e:#}; what it had not written is delivered again after a restart (the checkpoints of its sources stay before it)");
                    }
                } else if let Err(e) = result {
                    tracing::error!(sink = %name, "sink failed: {e:#}");
                    self.fail(e);
                }
            }
        }
    }

    fn fail(&mut self, e: anyhow::Error) {
        self.first_error.get_or_insert(e);
        self.begin_drain();
    }

    fn begin_drain(&mut self) {
        if self.deadline.is_none() {
            self.state.set(PipelineState::Draining);
            self.stop_sources.cancel();
            self.deadline = Some(Instant::now() + self.shutdown_timeout);
            self.release();
        }
    }

    /// Lets go of every sink: each buffer closes once no router feeds it.
    fn release(&mut self) {
        self.released = true;
        for s in self.sinks.values_mut() {
            s.feed = None;
        }
    }

    /// With no router left, the pipeline ends (unless it idles).
    pub(super) fn release_if_done(&mut self) {
        if self.routers.is_empty() && !self.idle && !self.released {
            self.release();
        }
    }

    /// The earliest of the drain deadline and the retiring sinks' checks.
    fn next_timer(&self) -> Instant {
        self.retiring
            .iter()
            .filter_map(|r| r.check_at)
            .chain(self.deadline)
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86400 * 365))
    }

    /// Handles what is due; `true` when the drain ran out of time.
    fn timer_fired(&mut self) -> bool {
        let now = Instant::now();
        if self.deadline.is_some_and(|d| d <= now) {
            self.first_error.get_or_insert(anyhow::anyhow!(
                "the drain did not finish within {}s (shutdown_timeout_secs): what was in flight was abandoned and will be re-delivered on restart",
                self.shutdown_timeout.as_secs()
            ));
            return true;
        }
        let every = self.shutdown_timeout;
        for r in &mut self.retiring {
            if r.check_at.is_some_and(|t| t <= now) {
                let written = r.metrics.records_out.load(Ordering::Relaxed);
                if written != r.written {
                    // Slow, not stuck: give it another round.
                    r.written = written;
                    r.check_at = Some(now + every);
                } else {
                    tracing::warn!(sink = %r.name, "the replaced instance of sink `{}` wrote nothing for {}s (shutdown_timeout_secs): abandoning what it holds so its successor can start; those records are delivered again after a restart", r.name, every.as_secs());
                    r.abort.cancel();
                    r.check_at = None;
                }
            }
        }
        false
    }
}
