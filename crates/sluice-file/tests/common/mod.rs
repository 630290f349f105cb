//! Test support: runs a `type: file` source through a real
//! `sluice_core::Pipeline` into a collecting sink, and helpers to write,
//! rotate and wait. Touches only temporary directories.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sluice_core::config::{BatchConfig, ComponentOptions};
use sluice_core::record::Meta;
use sluice_core::{
    BuildContext, Control, Pipeline, Resources, Sink, SinkBatch, SinkError, SinkSettings,
    SourceFactory,
};
use sluice_file::FileSourceFactory;
use std::sync::Mutex;
use tokio::task::JoinHandle;

/// One delivered record.
#[derive(Debug, Clone)]
pub struct Got {
    pub path: String,
    pub offset: u64,
    pub value: Vec<u8>,
    pub truncated: bool,
    pub host: String,
}

impl Got {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.value).into_owned()
    }
}

/// What the collecting sink received, shared across restarts.
#[derive(Clone, Default)]
pub struct Collected(Arc<Mutex<Vec<Got>>>, Arc<std::sync::atomic::AtomicBool>);

impl Collected {
    /// While held, the sink refuses every write (retryable): nothing is
    /// acknowledged.
    pub fn hold(&self, on: bool) {
        self.1.store(on, std::sync::atomic::Ordering::SeqCst)
    }
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    pub fn all(&self) -> Vec<Got> {
        self.0.lock().unwrap().clone()
    }
    pub fn texts(&self) -> Vec<String> {
        self.all().iter().map(Got::text).collect()
    }
    pub fn extend(&self, more: Vec<Got>) {
        self.0.lock().unwrap().extend(more)
    }
    pub fn clear(&self) {
        self.0.lock().unwrap().clear()
    }
    /// How often each text was received.
    pub fn counts(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for g in self.0.lock().unwrap().iter() {
            *m.entry(g.text()).or_insert(0) += 1;
        }
        m
    }
}

struct CollectSink {
    out: Collected,
}

#[async_trait]
impl Sink for CollectSink {
    async fn write(&mut self, batch: &SinkBatch) -> Result<(), SinkError> {
        if self.out.1.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(SinkError::retryable(anyhow::anyhow!("held")));
        }
        let mut g = self.out.0.lock().unwrap();
        for (_, r) in batch.records() {
            let (path, offset, truncated, host) = match &r.meta {
                Meta::Log(m) => (
                    m.path.to_string(),
                    m.offset,
                    m.truncated,
                    m.host.to_string(),
                ),
                _ => (String::new(), 0, false, String::new()),
            };
            g.push(Got {
                path,
                offset,
                value: r.value.to_vec(),
                truncated,
                host,
            });
        }
        Ok(())
    }
}

/// A running pipeline: file source `logs` → collecting sink.
pub struct Running {
    pub control: Control,
    pub metrics: Arc<sluice_core::metrics::MetricsRegistry>,
    pub handle: JoinHandle<anyhow::Result<()>>,
    pub got: Collected,
}

impl Running {
    /// Graceful stop: drain, acknowledge, final checkpoint.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.control.shutdown.cancel();
        (&mut self.handle).await.expect("pipeline task")
    }

    /// Hard stop: everything in flight is dropped unacknowledged.
    pub async fn abort(&mut self) {
        self.control.abort.cancel();
        let _ = (&mut self.handle).await;
    }
}

/// Starts a pipeline whose file source has `opts` (JSON).
pub fn start(data: &Path, opts: serde_json::Value) -> Running {
    start_into(data, opts, Collected::default())
}

/// Same, appending to an existing collection.
pub fn start_into(data: &Path, opts: serde_json::Value, got: Collected) -> Running {
    let resources = Resources::default();
    let cx = BuildContext {
        name: "logs",
        data_dir: data,
        resources: &resources,
    };
    let source = FileSourceFactory
        .build(&cx, &ComponentOptions::from_json(opts))
        .expect("valid options");
    let mut p = Pipeline::new(data)
        .with_checkpoint_interval(Duration::from_millis(100))
        .with_shutdown_timeout(Duration::from_secs(20));
    p.add_source("logs", "file", source, Default::default());
    p.add_sink(
        "collect",
        "collect",
        Box::new(CollectSink { out: got.clone() }),
        SinkSettings {
            inputs: vec!["logs".into()],
            batch: BatchConfig {
                max_events: 10_000,
                max_bytes: 8 << 20,
                timeout_ms: 0,
            },
            ..Default::default()
        },
    );
    let control = Control::default();
    let c2 = control.clone();
    let metrics = p.metrics();
    let handle = tokio::spawn(async move { p.run(c2).await });
    Running {
        control,
        metrics,
        handle,
        got,
    }
}

/// Polls `f` until it holds or `secs` pass.
pub async fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

/// Appends `lines` (each gets a newline).
pub fn append(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut buf = Vec::new();
    for l in lines {
        buf.extend_from_slice(l.as_bytes());
        buf.push(b'\n');
    }
    f.write_all(&buf).unwrap();
}

/// `prefix-i` for i in range.
pub fn seq(prefix: &str, r: std::ops::Range<usize>) -> impl Iterator<Item = String> + '_ {
    r.map(move |i| format!("{prefix}-{i}"))
}

/// Asserts every `prefix-i` arrived exactly once.
pub fn assert_exactly_once(got: &Collected, prefix: &str, r: std::ops::Range<usize>) {
    let counts = got.counts();
    for i in r {
        let k = format!("{prefix}-{i}");
        assert_eq!(counts.get(&k).copied().unwrap_or(0), 1, "{k} count");
    }
}

/// Asserts every `prefix-i` arrived at least once.
pub fn assert_at_least_once(got: &Collected, prefix: &str, r: std::ops::Range<usize>) {
    let counts = got.counts();
    let missing: Vec<usize> = r
        .filter(|i| !counts.contains_key(&format!("{prefix}-{i}")))
        .collect();
    assert!(
        missing.is_empty(),
        "{} missing, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

pub fn has_all(got: &Collected, prefix: &str, r: std::ops::Range<usize>) -> bool {
    let counts = got.counts();
    r.into_iter()
        .all(|i| counts.contains_key(&format!("{prefix}-{i}")))
}

/// The options most tests use: one glob, short timers.
pub fn opts(include: &str) -> serde_json::Value {
    serde_json::json!({ "include": [include], "glob_interval_ms": 200 })
}
