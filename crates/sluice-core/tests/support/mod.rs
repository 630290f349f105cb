//! Shared test support for the engine tests: a scriptable [`TestSource`]
//! that emits numbered records in batches through an `AckTracker` and logs
//! every checkpoint position it would save, a [`TestSink`] with gates,
//! delays, retryable failures and permanent rejections that logs every
//! record it durably accepted, and small helpers to build and run pipelines.
//!
//! Record ids start at 1 and are the record's value in decimal; a batch's
//! checkpoint position is its last id, so position 0 means "nothing yet".
//! Every event (an acceptance, a released checkpoint) is stamped from one
//! global clock so tests can check "accepted before checkpointed".
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use sluice_core::checkpoint::{Checkpoints, Throttle};
use sluice_core::config::{BatchConfig, QueueConfig, RetryConfig, WhenFull};
use sluice_core::metrics::{ComponentStatus, MetricsRegistry};
use sluice_core::{
    AckTracker, Control, Pipeline, Record, Sink, SinkBatch, SinkError, SinkSettings, Source,
    SourceContext,
};
use tokio::sync::Notify;

/// Generous limit that only exists so a broken engine fails instead of hanging.
pub const HANG: Duration = Duration::from_secs(60);

/// One clock for every stamped event.
pub static CLOCK: AtomicU64 = AtomicU64::new(1);

pub fn stamp() -> u64 {
    CLOCK.fetch_add(1, Ordering::SeqCst)
}

/// A gate a sink waits on inside `write`; counts the writes that reached it.
#[derive(Default)]
pub struct Gate {
    open: AtomicBool,
    notify: Notify,
    pub entered: AtomicUsize,
}

impl Gate {
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate::default())
    }

    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn entered(&self) -> usize {
        self.entered.load(Ordering::SeqCst)
    }

    async fn pass(&self) {
        self.entered.fetch_add(1, Ordering::SeqCst);
        loop {
            let n = self.notify.notified();
            if self.open.load(Ordering::SeqCst) {
                return;
            }
            n.await;
        }
    }
}

/// What a source did, for assertions.
#[derive(Default, Debug)]
pub struct SourceLog {
    /// Ids handed to the pipeline (`send` returned Ok).
    pub sent: Vec<u64>,
    /// Ids whose `send` failed (reject, closed).
    pub refused: Vec<u64>,
    /// Every position the tracker released, with its stamp.
    pub checkpoints: Vec<(u64, u64)>,
    /// Position written at the end of `run`, if it got there.
    pub final_checkpoint: Option<u64>,
    /// Most records sent and not yet released, right after a send.
    pub max_ahead: u64,
    /// Violations found by the online checker.
    pub violations: Vec<String>,
    pub finished: bool,
}

pub type Checker = Arc<dyn Fn(&str, u64) -> Result<(), String> + Send + Sync>;

/// One step of a source's script.
pub enum Step {
    /// `batches` batches of `size` records each.
    Emit { batches: usize, size: usize },
    /// Waits (polling, releasing acks meanwhile) until the condition holds.
    Until(&'static str, Box<dyn Fn() -> bool + Send>),
    /// Opens a gate.
    Open(Arc<Gate>),
    /// Emits batches of `size` until shutdown.
    Forever { size: usize },
    /// Panics, like a source with a bug.
    Panic,
    /// Returns an error from `run`.
    Fail,
}

pub fn until(label: &'static str, f: impl Fn() -> bool + Send + 'static) -> Step {
    Step::Until(label, Box::new(f))
}

pub struct TestSource {
    pub script: Vec<Step>,
    pub log: Arc<Mutex<SourceLog>>,
    pub checker: Option<Checker>,
}

impl TestSource {
    pub fn new(script: Vec<Step>) -> (Box<TestSource>, Arc<Mutex<SourceLog>>) {
        let log = Arc::new(Mutex::new(SourceLog::default()));
        let s = TestSource {
            script,
            log: log.clone(),
            checker: None,
        };
        (Box::new(s), log)
    }

    pub fn with_checker(
        script: Vec<Step>,
        checker: Checker,
    ) -> (Box<TestSource>, Arc<Mutex<SourceLog>>) {
        let (mut s, log) = TestSource::new(script);
        s.checker = Some(checker);
        (s, log)
    }

    fn released(&self, name: &str, pos: u64, last: &mut u64) {
        let st = stamp();
        *last = pos;
        let verdict = self.checker.as_ref().map(|c| c(name, pos));
        let mut log = self.log.lock();
        log.checkpoints.push((pos, st));
        if let Some(Err(e)) = verdict {
            log.violations.push(e);
        }
    }

    fn drain(&self, name: &str, tracker: &mut AckTracker<u64>, last: &mut u64) {
        while let Some(p) = tracker.poll() {
            self.released(name, p, last);
        }
    }
}

#[async_trait]
impl Source for TestSource {
    async fn run(self: Box<Self>, cx: SourceContext) -> anyhow::Result<()> {
        let name = cx.name.to_string();
        let mut tracker: AckTracker<u64> = AckTracker::new();
        let mut next_id = 1u64;
        let mut last = 0u64;
        let mut saved = 0u64;
        let mut throttle = Throttle::new(cx.checkpoint_interval);
        let mut this = self;
        let steps: Vec<Step> = std::mem::take(&mut this.script);
        let this = this;
        'script: for step in steps {
            match step {
                Step::Emit { .. } | Step::Forever { .. } => {
                    let (batches, size) = match step {
                        Step::Emit { batches, size } => (batches, size),
                        Step::Forever { size } => (usize::MAX, size),
                        _ => unreachable!(),
                    };
                    for _ in 0..batches {
                        if cx.shutdown.is_cancelled() {
                            break 'script;
                        }
                        let ids: Vec<u64> = (next_id..next_id + size as u64).collect();
                        next_id += size as u64;
                        let records = ids.iter().map(|i| Record::from_value(i.to_string()));
                        let ack = tracker.track(*ids.last().unwrap());
                        let ok = cx.output.send(records.collect(), ack).await.is_ok();
                        this.drain(&name, &mut tracker, &mut last);
                        if last > saved && throttle.due() {
                            cx.checkpoints.save(&last).await?;
                            saved = last;
                        }
                        {
                            let mut log = this.log.lock();
                            if ok {
                                log.sent.extend(&ids);
                            } else {
                                log.refused.extend(&ids);
                            }
                            let ahead = ids.last().unwrap() - last;
                            log.max_ahead = log.max_ahead.max(ahead);
                        }
                        tokio::task::yield_now().await;
                    }
                }
                Step::Until(label, cond) => {
                    let deadline = tokio::time::Instant::now() + HANG;
                    while !cond() {
                        this.drain(&name, &mut tracker, &mut last);
                        if tokio::time::Instant::now() > deadline {
                            anyhow::bail!("test source `{name}`: timed out waiting for {label}");
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                Step::Open(g) => g.open(),
                Step::Panic => panic!("test source `{name}` told to panic"),
                Step::Fail => anyhow::bail!("test source `{name}` told to fail"),
            }
        }
        if let Some(p) = tracker.settle().await {
            this.released(&name, p, &mut last);
        }
        if last > 0 {
            cx.checkpoints.save(&last).await?;
        }
        let mut log = this.log.lock();
        log.final_checkpoint = Some(last);
        log.finished = true;
        Ok(())
    }
}

/// What a sink did, for assertions.
#[derive(Default, Debug)]
pub struct SinkLog {
    /// (source, id, stamp) of every record durably accepted, in order.
    pub accepted: Vec<(String, u64, u64)>,
    pub writes: usize,
    /// Writes answered with `SinkError::Retryable`.
    pub failures: usize,
    /// Writes answered with `SinkError::Rejected`.
    pub rejections: usize,
    pub closed: usize,
}

impl SinkLog {
    /// Accepted ids of one source, in acceptance order.
    pub fn ids(&self, source: &str) -> Vec<u64> {
        self.accepted
            .iter()
            .filter(|(s, _, _)| s == source)
            .map(|(_, id, _)| *id)
            .collect()
    }

    pub fn count(&self, source: &str) -> usize {
        self.accepted.iter().filter(|(s, _, _)| s == source).count()
    }
}

/// A sink whose behaviour is set per test.
#[derive(Default)]
pub struct TestSink {
    log: Arc<Mutex<SinkLog>>,
    calls: usize,
    gate: Option<Arc<Gate>>,
    delays: Vec<Duration>,
    fail_first: usize,
    fail_calls: HashSet<usize>,
    fail_while_contains: HashSet<u64>,
    reject: HashSet<u64>,
    panic_on: Option<u64>,
    fatal_on: Option<u64>,
    partial: HashSet<usize>,
    /// Ids of every record in a write that failed with `Retryable`.
    pub retried: Arc<Mutex<Vec<u64>>>,
}

impl TestSink {
    pub fn new() -> (TestSink, Arc<Mutex<SinkLog>>) {
        let s = TestSink::default();
        let log = s.log.clone();
        (s, log)
    }

    /// Every write waits for the gate first.
    pub fn gate(mut self, g: &Arc<Gate>) -> Self {
        self.gate = Some(g.clone());
        self
    }

    /// Write `i` sleeps `delays[i % len]`.
    pub fn delays(mut self, d: Vec<Duration>) -> Self {
        self.delays = d;
        self
    }

    /// The first `n` writes fail with `Retryable`.
    pub fn fail_first(mut self, n: usize) -> Self {
        self.fail_first = n;
        self
    }

    /// These write calls (0-based) fail with `Retryable`.
    pub fn fail_calls(mut self, calls: impl IntoIterator<Item = usize>) -> Self {
        self.fail_calls = calls.into_iter().collect();
        self
    }

    /// Any write holding one of these ids fails with `Retryable`, always.
    pub fn fail_while_contains(mut self, ids: impl IntoIterator<Item = u64>) -> Self {
        self.fail_while_contains = ids.into_iter().collect();
        self
    }

    /// These ids can never be accepted: `Rejected { index }`.
    pub fn reject(mut self, ids: impl IntoIterator<Item = u64>) -> Self {
        self.reject = ids.into_iter().collect();
        self
    }

    /// Panics when a write holds this id.
    pub fn panic_on(mut self, id: u64) -> Self {
        self.panic_on = Some(id);
        self
    }

    /// These write calls accept their first two records, then fail with
    /// `Retryable` (a connection lost mid-write).
    pub fn partial_fail_calls(mut self, calls: impl IntoIterator<Item = usize>) -> Self {
        self.partial = calls.into_iter().collect();
        self
    }

    /// Fails with `SinkError::Fatal` when a write holds this id.
    pub fn fatal_on(mut self, id: u64) -> Self {
        self.fatal_on = Some(id);
        self
    }

    pub fn boxed(self) -> Box<dyn Sink> {
        Box::new(self)
    }
}

pub fn id_of(r: &Record) -> u64 {
    std::str::from_utf8(&r.value).unwrap().parse().unwrap()
}

#[async_trait]
impl Sink for TestSink {
    async fn write(&mut self, batch: &SinkBatch) -> Result<(), SinkError> {
        let call = self.calls;
        self.calls += 1;
        self.log.lock().writes += 1;
        if let Some(g) = &self.gate {
            g.pass().await;
        }
        if !self.delays.is_empty() {
            let d = self.delays[call % self.delays.len()];
            if !d.is_zero() {
                tokio::time::sleep(d).await;
            }
        }
        let ids: Vec<u64> = batch.records().map(|(_, r)| id_of(r)).collect();
        if let Some(p) = self.panic_on {
            assert!(!ids.contains(&p), "test sink told to panic on record {p}");
        }
        if let Some(f) = self.fatal_on.filter(|f| ids.contains(f)) {
            return Err(SinkError::Fatal(anyhow::anyhow!(
                "test sink: fatal on record {f}"
            )));
        }
        if call < self.fail_first
            || self.fail_calls.contains(&call)
            || ids.iter().any(|i| self.fail_while_contains.contains(i))
        {
            self.log.lock().failures += 1;
            self.retried.lock().extend(&ids);
            return Err(SinkError::retryable(anyhow::anyhow!(
                "test sink: transient failure on call {call}"
            )));
        }
        let mut log = self.log.lock();
        if self.partial.contains(&call) {
            for (src, r) in batch.records().take(2) {
                log.accepted.push((src.to_string(), id_of(r), stamp()));
            }
            log.failures += 1;
            self.retried.lock().extend(&ids);
            return Err(SinkError::retryable(anyhow::anyhow!(
                "test sink: connection lost mid-write on call {call}"
            )));
        }
        for (index, (src, r)) in batch.records().enumerate() {
            let id = id_of(r);
            if self.reject.contains(&id) {
                log.rejections += 1;
                return Err(SinkError::Rejected {
                    index,
                    error: anyhow::anyhow!("test sink: record {id} can never be accepted"),
                });
            }
            log.accepted.push((src.to_string(), id, stamp()));
        }
        Ok(())
    }

    async fn close(&mut self) -> anyhow::Result<()> {
        self.log.lock().closed += 1;
        Ok(())
    }
}

/// A queue of `max_events` (bytes unbounded) with a policy.
pub fn queue(max_events: usize, when_full: WhenFull) -> QueueConfig {
    QueueConfig {
        max_events,
        max_bytes: usize::MAX >> 1,
        when_full,
    }
}

/// Sink settings for tests: big block buffer, no batch wait, 1–5 ms backoff.
pub fn settings(inputs: &[&str]) -> SinkSettings {
    SinkSettings {
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        buffer: queue(10_000, WhenFull::Block),
        batch: BatchConfig {
            max_events: 1_000,
            max_bytes: 1 << 20,
            timeout_ms: 0,
        },
        retry: RetryConfig {
            initial_backoff_ms: 1,
            max_backoff_ms: 5,
            max_attempts: None,
        },
        ..SinkSettings::default()
    }
}

/// A pipeline whose drain never times out on its own (a hang fails the
/// test through [`HANG`] instead of being papered over by an abort).
pub fn pipeline(dir: &Path) -> Pipeline {
    Pipeline::new(dir)
        .with_checkpoint_interval(Duration::from_millis(10))
        .with_shutdown_timeout(Duration::from_secs(3600))
}

/// Runs a pipeline to its end; panics if it hangs.
pub async fn run(p: Pipeline, control: Control) -> anyhow::Result<()> {
    tokio::time::timeout(HANG, p.run(control))
        .await
        .expect("the pipeline hung")
}

pub fn spawn_run(p: Pipeline, control: Control) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(run(p, control))
}

/// Polls until `cond` holds; panics after [`HANG`].
pub async fn wait_for(label: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + HANG;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {label}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

pub fn status(m: &MetricsRegistry, name: &str, kind: &str) -> ComponentStatus {
    m.statuses()
        .into_iter()
        .find(|s| s.name == name && s.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} `{name}` in metrics"))
}

pub fn range(a: u64, b: u64) -> Vec<u64> {
    (a..=b).collect()
}

/// The checkpoint file a source wrote, if any.
pub fn saved_checkpoint(dir: &Path, source: &str) -> Option<u64> {
    Checkpoints::new(dir, source).load::<u64>().unwrap()
}

/// Checks every checkpoint `source` released against what `sink` accepted:
/// each accepted record at or before the position was accepted before the
/// position was released; with `complete`, every id up to the position was.
pub fn check_checkpoints(
    source: &str,
    slog: &SourceLog,
    sink_name: &str,
    sink: &SinkLog,
    complete: bool,
) -> Vec<String> {
    let mut first: HashMap<u64, u64> = HashMap::new();
    for (s, id, st) in &sink.accepted {
        if s == source {
            first.entry(*id).or_insert(*st);
        }
    }
    let top = slog.checkpoints.iter().map(|c| c.0).max().unwrap_or(0);
    // prefix[i] = (latest first-acceptance stamp of ids <= i, all of 1..=i accepted)
    let mut prefix = vec![(0u64, true); top as usize + 1];
    for i in 1..=top {
        let (m, all) = prefix[i as usize - 1];
        prefix[i as usize] = match first.get(&i) {
            Some(st) => (m.max(*st), all),
            None => (m, false),
        };
    }
    let mut bad = Vec::new();
    for &(pos, st) in &slog.checkpoints {
        let (m, all) = prefix[pos as usize];
        if m > st {
            bad.push(format!(
                "`{source}` checkpoint {pos} released before sink `{sink_name}` accepted a record at or before it"
            ));
        }
        if complete && !all {
            bad.push(format!(
                "`{source}` checkpoint {pos} passes a record sink `{sink_name}` never accepted"
            ));
        }
    }
    bad.truncate(5);
    bad
}

/// A multi-thread runtime for tests that build their own (proptest).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
