//! Reloading a running pipeline (`PipelineHandle::reload`) built from YAML
//! through a registry of counting test components: a changed sink hands
//! over without losing or repeating a record, a changed source resumes from
//! its checkpoint, added and removed components start and stop, unchanged
//! ones are not touched, a changed `where` only re-routes, a stuck replaced
//! sink is given up safely, and a refused reload leaves everything running.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::Deserialize;
use sluice_core::checkpoint::Throttle;
use sluice_core::config::{self, ComponentOptions, ConfigError};
use sluice_core::{
    AckTracker, BuildContext, Control, Pipeline, PipelineHandle, Record, Registry, ReloadReport,
    Resources, Sink, SinkBatch, SinkError, SinkFactory, Source, SourceContext, SourceFactory,
};
use support::{id_of, saved_checkpoint, wait_for, HANG};

/// What every test component did, by name.
#[derive(Default)]
struct World {
    /// Source name → the checkpoint each run started from.
    starts: Mutex<HashMap<String, Vec<u64>>>,
    /// Source name → last id handed to the pipeline.
    sent: Mutex<HashMap<String, u64>>,
    /// Bucket → (source, id) of every record written there.
    got: Mutex<HashMap<String, Vec<(String, u64)>>>,
    /// Bucket → the clock at each write.
    writes: Mutex<HashMap<String, Vec<u64>>>,
    /// Bucket → the clock at each close of a sink instance.
    closes: Mutex<HashMap<String, Vec<u64>>>,
    /// Buckets whose writes fail (retryable) while listed.
    broken: Mutex<Vec<String>>,
    /// Writes that failed because their bucket was broken.
    failures: std::sync::atomic::AtomicUsize,
}

impl World {
    fn ids(&self, bucket: &str, source: &str) -> Vec<u64> {
        self.got
            .lock()
            .get(bucket)
            .map(|v| {
                v.iter()
                    .filter(|(s, _)| s == source)
                    .map(|(_, i)| *i)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn count(&self, bucket: &str) -> usize {
        self.got.lock().get(bucket).map_or(0, Vec::len)
    }

    fn closed(&self, bucket: &str) -> usize {
        self.closes.lock().get(bucket).map_or(0, Vec::len)
    }

    fn write_stamps(&self, bucket: &str) -> Vec<u64> {
        self.writes.lock().get(bucket).cloned().unwrap_or_default()
    }

    fn close_stamps(&self, bucket: &str) -> Vec<u64> {
        self.closes.lock().get(bucket).cloned().unwrap_or_default()
    }

    fn starts(&self, source: &str) -> Vec<u64> {
        self.starts.lock().get(source).cloned().unwrap_or_default()
    }

    fn sent(&self, source: &str) -> u64 {
        self.sent.lock().get(source).copied().unwrap_or(0)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CounterOptions {
    size: u64,
    /// Only there to make a change.
    #[serde(default)]
    #[allow(dead_code)]
    tag: Option<String>,
}

/// Emits ids 1, 2, … in batches of `size` until stopped, resuming after
/// its checkpoint (the last id delivered everywhere).
struct Counter {
    size: u64,
    world: Arc<World>,
}

#[async_trait]
impl Source for Counter {
    async fn run(self: Box<Self>, cx: SourceContext) -> anyhow::Result<()> {
        let name = cx.name.to_string();
        let start = cx.checkpoints.load::<u64>()?.unwrap_or(0);
        self.world
            .starts
            .lock()
            .entry(name.clone())
            .or_default()
            .push(start);
        let mut tracker = AckTracker::<u64>::new();
        let mut throttle = Throttle::new(cx.checkpoint_interval);
        let (mut next, mut acked) = (start + 1, start);
        while !cx.shutdown.is_cancelled() {
            let ids = next..next + self.size;
            next += self.size;
            let records = ids.map(|i| Record::from_value(i.to_string())).collect();
            let ack = tracker.track(next - 1);
            tokio::select! {
                sent = cx.output.send(records, ack) => if sent.is_err() { break },
                _ = cx.shutdown.cancelled() => break,
            }
            self.world.sent.lock().insert(name.clone(), next - 1);
            while let Some(p) = tracker.poll() {
                acked = p;
            }
            if throttle.due() {
                cx.checkpoints.save(&acked).await?;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if let Some(p) = tracker.settle().await {
            acked = p;
        }
        cx.checkpoints.save(&acked).await?;
        Ok(())
    }
}

struct CounterFactory(Arc<World>);

impl SourceFactory for CounterFactory {
    fn kind(&self) -> &'static str {
        "counter"
    }

    fn build(
        &self,
        _cx: &BuildContext,
        options: &ComponentOptions,
    ) -> Result<Box<dyn Source>, ConfigError> {
        let o: CounterOptions = options.deserialize()?;
        Ok(Box::new(Counter {
            size: o.size,
            world: self.0.clone(),
        }))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CollectOptions {
    bucket: String,
    /// Each write takes this long.
    #[serde(default)]
    delay_ms: u64,
}

/// Writes records into its bucket of the world.
struct Collect {
    bucket: String,
    delay: Duration,
    world: Arc<World>,
}

#[async_trait]
impl Sink for Collect {
    async fn write(&mut self, batch: &SinkBatch) -> Result<(), SinkError> {
        if self.world.broken.lock().contains(&self.bucket) {
            self.world
                .failures
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Err(SinkError::retryable(anyhow::anyhow!(
                "bucket {} is broken",
                self.bucket
            )));
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let mut got = self.world.got.lock();
        let v = got.entry(self.bucket.clone()).or_default();
        v.extend(batch.records().map(|(s, r)| (s.to_string(), id_of(r))));
        let mut writes = self.world.writes.lock();
        writes
            .entry(self.bucket.clone())
            .or_default()
            .push(support::stamp());
        Ok(())
    }

    async fn close(&mut self) -> anyhow::Result<()> {
        self.world
            .closes
            .lock()
            .entry(self.bucket.clone())
            .or_default()
            .push(support::stamp());
        Ok(())
    }
}

struct CollectFactory(Arc<World>);

impl SinkFactory for CollectFactory {
    fn kind(&self) -> &'static str {
        "collect"
    }

    fn build(
        &self,
        _cx: &BuildContext,
        options: &ComponentOptions,
    ) -> Result<Box<dyn Sink>, ConfigError> {
        let o: CollectOptions = options.deserialize()?;
        Ok(Box::new(Collect {
            bucket: o.bucket,
            delay: Duration::from_millis(o.delay_ms),
            world: self.0.clone(),
        }))
    }
}

struct Rig {
    dir: tempfile::TempDir,
    world: Arc<World>,
    registry: Registry,
}

impl Rig {
    fn new() -> Rig {
        let world = Arc::new(World::default());
        let mut registry = Registry::default();
        registry.add_source(CounterFactory(world.clone()));
        registry.add_sink(CollectFactory(world.clone()));
        Rig {
            dir: tempfile::tempdir().unwrap(),
            world,
            registry,
        }
    }

    /// Builds the pipeline of `body` (sources and sinks) in the rig's
    /// data directory.
    fn build(&self, body: &str) -> Pipeline {
        let yaml = format!(
            "data_dir: {}\ncheckpoint_interval_ms: 10\nshutdown_timeout_secs: 3600\n{body}",
            self.dir.path().display()
        );
        let cfg = config::load_str("pipeline.yaml", &yaml, &self.registry)
            .unwrap_or_else(|e| panic!("{e:?}"));
        Pipeline::from_config(&cfg, &self.registry, Resources::default())
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn start(&self, body: &str) -> Running {
        let p = self.build(body);
        let handle = p.handle();
        let metrics = p.metrics();
        let control = Control::default();
        let task = tokio::spawn(tokio::time::timeout(HANG, p.run(control.clone())));
        Running {
            handle,
            control,
            metrics,
            task,
        }
    }
}

struct Running {
    handle: PipelineHandle,
    control: Control,
    metrics: Arc<sluice_core::metrics::MetricsRegistry>,
    task: tokio::task::JoinHandle<Result<anyhow::Result<()>, tokio::time::error::Elapsed>>,
}

impl Running {
    async fn reload(&self, rig: &Rig, body: &str) -> anyhow::Result<ReloadReport> {
        self.handle.reload(rig.build(body)).await
    }

    async fn stop(self) {
        self.control.shutdown.cancel();
        self.task
            .await
            .unwrap()
            .expect("the pipeline hung")
            .unwrap();
    }

    fn components(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self
            .metrics
            .statuses()
            .into_iter()
            .map(|s| (s.kind, s.name))
            .collect();
        v.sort();
        v
    }
}

/// Asserts `parts` together hold 1..=last exactly once.
fn assert_exactly_once(parts: &[&[u64]], last: u64) {
    let mut all: Vec<u64> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "some record was written twice");
    assert_eq!(
        all,
        (1..=last).collect::<Vec<_>>(),
        "some record is missing"
    );
}

const ONE_TO_A: &str = "
sources:
  s: { type: counter, size: 10 }
sinks:
  out: { type: collect, inputs: [s], bucket: a }
";

const ONE_TO_B: &str = "
sources:
  s: { type: counter, size: 10 }
sinks:
  out: { type: collect, inputs: [s], bucket: b }
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_sink_takes_over_without_losing_or_repeating_a_record() {
    let rig = Rig::new();
    let w = rig.world.clone();
    // A slow old sink still has a backlog when it is replaced.
    let run = rig.start(&ONE_TO_A.replace("bucket: a }", "bucket: a, delay_ms: 50 }"));
    wait_for("records in a", || w.count("a") >= 200).await;

    // The new one writes at once, not waiting for a batch to fill.
    let eager_b = ONE_TO_B.replace("bucket: b }", "bucket: b, batch: { timeout_ms: 0 } }");
    let report = run.reload(&rig, &eager_b).await.unwrap();
    assert_eq!(report.rebuilt, vec!["sink `out`"]);
    assert_eq!(report.unchanged, 1, "{report}");
    wait_for("the old sink closed", || w.closed("a") == 1).await;
    wait_for("records in b", || w.count("b") >= 200).await;
    assert_eq!(w.closed("b"), 0, "the new sink runs");
    run.stop().await;

    let (a, b) = (w.ids("a", "s"), w.ids("b", "s"));
    assert_exactly_once(&[&a, &b], w.sent("s"));
    assert!(
        a.iter().max() < b.iter().min(),
        "the new sink only writes what came after the old one's part"
    );
    let closed_a = w.close_stamps("a")[0];
    assert!(
        w.write_stamps("b").iter().all(|&t| t > closed_a),
        "the new sink wrote before the old one had finished"
    );
    assert_eq!(w.starts("s"), vec![0], "the source never restarted");
    assert_eq!(saved_checkpoint(rig.dir.path(), "s"), Some(w.sent("s")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_source_resumes_from_its_checkpoint() {
    let rig = Rig::new();
    let w = rig.world.clone();
    let run = rig.start(ONE_TO_A);
    wait_for("records in a", || w.count("a") >= 200).await;

    let changed = ONE_TO_A.replace("size: 10 }", "size: 7, tag: v2 }");
    let report = run.reload(&rig, &changed).await.unwrap();
    assert_eq!(report.rebuilt, vec!["source `s`"]);
    assert_eq!(report.unchanged, 1);
    wait_for("the source restarted", || w.starts("s").len() == 2).await;
    let resumed_at = w.starts("s")[1];
    wait_for("records after the restart", || {
        w.count("a") as u64 >= resumed_at + 100
    })
    .await;
    assert_eq!(w.closed("a"), 0, "the unchanged sink kept running");
    run.stop().await;

    assert!(resumed_at >= 200, "resumed at {resumed_at}, not from zero");
    assert_exactly_once(&[&w.ids("a", "s")], w.sent("s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_and_sources_are_added_and_removed() {
    let rig = Rig::new();
    let w = rig.world.clone();
    let run = rig.start(ONE_TO_A);
    wait_for("records in a", || w.count("a") >= 100).await;

    let both = "
sources:
  s: { type: counter, size: 10 }
  t: { type: counter, size: 5 }
sinks:
  out: { type: collect, inputs: [s], bucket: a }
  all: { type: collect, inputs: ['*'], bucket: c }
";
    let report = run.reload(&rig, both).await.unwrap();
    assert_eq!(report.added, vec!["sink `all`", "source `t`"]);
    assert_eq!(report.unchanged, 2);
    wait_for("t and s in c", || {
        w.ids("c", "t").len() >= 100 && w.ids("c", "s").len() >= 100
    })
    .await;
    assert_eq!(
        run.components(),
        vec![
            ("sink".into(), "all".into()),
            ("sink".into(), "out".into()),
            ("source".into(), "s".into()),
            ("source".into(), "t".into())
        ]
    );

    let only_all = "
sources:
  s: { type: counter, size: 10 }
sinks:
  all: { type: collect, inputs: ['*'], bucket: c }
";
    let report = run.reload(&rig, only_all).await.unwrap();
    assert_eq!(report.removed, vec!["sink `out`", "source `t`"]);
    wait_for("out closed", || w.closed("a") == 1).await;
    let t_final = {
        wait_for("t's final checkpoint", || {
            saved_checkpoint(rig.dir.path(), "t") == Some(w.sent("t"))
        })
        .await;
        w.sent("t")
    };
    let a_then = w.count("a");
    let c_then = w.ids("c", "s").len();
    wait_for("s keeps flowing into c", || {
        w.ids("c", "s").len() >= c_then + 100
    })
    .await;
    assert_eq!(w.count("a"), a_then, "a removed sink gets nothing more");
    assert_eq!(
        run.components(),
        vec![("sink".into(), "all".into()), ("source".into(), "s".into())]
    );
    run.stop().await;

    assert_exactly_once(&[&w.ids("c", "t")], t_final);
    assert_eq!(w.starts("t"), vec![0]);
    assert_eq!(w.starts("s"), vec![0]);
    // `out` had every record of s up to its removal, `all` every one since
    // it was added.
    let (a, c) = (w.ids("a", "s"), w.ids("c", "s"));
    assert_eq!(a, (1..=a.len() as u64).collect::<Vec<_>>());
    let first_c = c[0];
    assert_eq!(c, (first_c..=w.sent("s")).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_reload_touches_nothing_and_where_only_reroutes() {
    let rig = Rig::new();
    let w = rig.world.clone();
    let run = rig.start(ONE_TO_A);
    wait_for("records in a", || w.count("a") >= 100).await;

    let report = run.reload(&rig, ONE_TO_A).await.unwrap();
    assert!(report.is_empty(), "{report}");
    assert_eq!(report.unchanged, 2);

    // Only even ids from now on: the same sink instance, new routes.
    let even = ONE_TO_A.replace(
        "bucket: a }",
        "bucket: a, where: 'message =~ \"[02468]$\"' }",
    );
    let report = run.reload(&rig, &even).await.unwrap();
    assert_eq!(report.rerouted, vec!["sink `out`"]);
    assert_eq!(report.unchanged, 1);
    let sent_at_reload = w.sent("s");
    wait_for("more records in a", || {
        w.ids("a", "s").iter().any(|&i| i > sent_at_reload + 100)
    })
    .await;
    run.stop().await;

    assert_eq!(w.closed("a"), 1, "one sink instance, closed at the stop");
    assert_eq!(w.starts("s"), vec![0]);
    let a = w.ids("a", "s");
    assert!(a.iter().any(|i| i % 2 == 1), "odd ids before the reroute");
    let tail: Vec<_> = a.iter().filter(|&&i| i > sent_at_reload + 10).collect();
    assert!(!tail.is_empty() && tail.iter().all(|&&i| i % 2 == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_another_data_dir_is_refused_and_the_pipeline_runs_on() {
    let rig = Rig::new();
    let w = rig.world.clone();
    let run = rig.start(ONE_TO_A);
    wait_for("records in a", || w.count("a") >= 100).await;

    let other = tempfile::tempdir().unwrap();
    let yaml = format!("data_dir: {}\n{ONE_TO_B}", other.path().display());
    let cfg = config::load_str("pipeline.yaml", &yaml, &rig.registry).unwrap();
    let next = Pipeline::from_config(&cfg, &rig.registry, Resources::default()).unwrap();
    let err = run.handle.reload(next).await.unwrap_err().to_string();
    assert!(err.contains("data_dir cannot change"), "{err}");

    let then = w.count("a");
    wait_for("a keeps getting records", || w.count("a") >= then + 100).await;
    assert_eq!(w.count("b"), 0);
    run.stop().await;
    assert_exactly_once(&[&w.ids("a", "s")], w.sent("s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_replaced_sink_is_given_up_without_passing_its_records() {
    let rig = Rig::new();
    let w = rig.world.clone();
    // A short shutdown_timeout bounds how long a replaced sink may stall.
    let body = |bucket: &str| {
        format!(
            "
sources:
  s: {{ type: counter, size: 10 }}
sinks:
  out: {{ type: collect, inputs: [s], bucket: {bucket}, retry: {{ initial_backoff_ms: 1, max_backoff_ms: 5 }} }}
"
        )
    };
    let build = |bucket: &str| {
        let yaml = format!(
            "data_dir: {}\ncheckpoint_interval_ms: 10\nshutdown_timeout_secs: 1\n{}",
            rig.dir.path().display(),
            body(bucket)
        );
        let cfg = config::load_str("pipeline.yaml", &yaml, &rig.registry).unwrap();
        Pipeline::from_config(&cfg, &rig.registry, Resources::default()).unwrap()
    };
    let p = build("a");
    let handle = p.handle();
    let control = Control::default();
    let task = tokio::spawn(tokio::time::timeout(HANG, p.run(control.clone())));
    wait_for("records in a", || w.count("a") >= 100).await;
    w.broken.lock().push("a".into());
    wait_for("a failing", || {
        w.failures.load(std::sync::atomic::Ordering::SeqCst) >= 3
    })
    .await;

    let report = handle.reload(build("b")).await.unwrap();
    assert_eq!(report.rebuilt, vec!["sink `out`"]);
    wait_for("b takes over after a was given up", || w.count("b") >= 100).await;
    control.shutdown.cancel();
    task.await.unwrap().expect("hung").unwrap();
    assert_eq!(w.starts("s"), vec![0]);
    let saved = saved_checkpoint(rig.dir.path(), "s").unwrap();
    let (a, b) = (w.ids("a", "s"), w.ids("b", "s"));
    assert!(
        (1..=saved).all(|i| a.contains(&i) || b.contains(&i)),
        "the final checkpoint {saved} passes a record no sink wrote"
    );
    assert!(
        saved < w.sent("s"),
        "records a held when it was given up are not checkpointed"
    );
}
