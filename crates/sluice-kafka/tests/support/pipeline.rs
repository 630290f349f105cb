//! Test pipelines: a source of numbered records that tracks what was
//! acknowledged, a sink that collects what it is given, and a runner.
//! Touches only memory.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use sluice_core::config::BatchConfig;
use sluice_core::{
    AckTracker, Control, Pipeline, Record, Sink, SinkBatch, SinkError, SinkSettings, Source,
    SourceContext,
};

/// Emits records `0..count` (payload `"<prefix><n:08>"` padded to `size`
/// bytes) in batches of `batch`; `acked` follows the acknowledgements.
pub struct NumberedSource {
    pub prefix: String,
    pub count: u64,
    pub batch: usize,
    pub size: usize,
    pub acked: Arc<AtomicU64>,
}

impl NumberedSource {
    pub fn new(prefix: &str, count: u64, batch: usize) -> (NumberedSource, Arc<AtomicU64>) {
        let acked = Arc::new(AtomicU64::new(0));
        (
            NumberedSource {
                prefix: prefix.into(),
                count,
                batch,
                size: 0,
                acked: acked.clone(),
            },
            acked,
        )
    }
}

pub fn payload(prefix: &str, n: u64, size: usize) -> String {
    let mut s = format!("{prefix}{n:08}");
    while s.len() < size {
        s.push('x');
    }
    s
}

/// The sequence number in a payload written by [`payload`].
pub fn number(prefix: &str, payload: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(payload).ok()?;
    let rest = s.strip_prefix(prefix)?;
    rest.get(..8)?.parse().ok()
}

#[async_trait]
impl Source for NumberedSource {
    async fn run(self: Box<Self>, cx: SourceContext) -> anyhow::Result<()> {
        let mut tracker = AckTracker::new();
        let mut n = 0;
        while n < self.count && !cx.shutdown.is_cancelled() {
            let end = (n + self.batch as u64).min(self.count);
            let records = (n..end)
                .map(|i| Record::from_value(payload(&self.prefix, i, self.size)))
                .collect();
            let ack = tracker.track(end);
            if cx.output.send(records, ack).await.is_err() {
                break;
            }
            n = end;
            if let Some(p) = tracker.poll() {
                self.acked.store(p, Ordering::Release);
            }
        }
        while tracker.outstanding() > 0 && !tracker.is_stuck() {
            if let Some(p) = tracker.next().await {
                self.acked.store(p, Ordering::Release);
            }
        }
        Ok(())
    }
}

/// Collects every record it is given; optionally slow.
#[derive(Clone, Default)]
pub struct CollectSink {
    pub records: Arc<Mutex<Vec<Record>>>,
    pub delay: Duration,
}

#[async_trait]
impl Sink for CollectSink {
    async fn write(&mut self, batch: &SinkBatch) -> Result<(), SinkError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let mut g = self.records.lock();
        g.extend(batch.records().map(|(_, r)| r.clone()));
        Ok(())
    }
}

/// Settings of a sink fed by `input`, with batches of up to `max_events`.
pub fn settings(input: &str, max_events: usize) -> SinkSettings {
    SinkSettings {
        inputs: vec![input.into()],
        batch: BatchConfig {
            max_events,
            max_bytes: 64 << 20,
            timeout_ms: 5,
        },
        buffer: sluice_core::config::QueueConfig {
            max_events: max_events.max(2000),
            ..Default::default()
        },
        ..SinkSettings::default()
    }
}

/// A running pipeline of one source and one sink.
pub struct Running {
    pub control: Control,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub dir: tempfile::TempDir,
}

pub fn start(source: Box<dyn Source>, sink: Box<dyn Sink>, settings: SinkSettings) -> Running {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pipeline::new(dir.path()).with_shutdown_timeout(Duration::from_secs(30));
    let input = settings.inputs[0].clone();
    let queue = sluice_core::config::QueueConfig {
        max_events: 2000,
        ..Default::default()
    };
    p.add_source(&input, "test", source, queue);
    p.add_sink("out", "test", sink, settings);
    let control = Control::default();
    let c = control.clone();
    let task = tokio::spawn(p.run(c));
    Running { control, task, dir }
}

/// Counts of each sequence number among `payloads`.
pub fn tally<'a>(prefix: &str, payloads: impl Iterator<Item = &'a [u8]>) -> BTreeMap<u64, u32> {
    let mut m = BTreeMap::new();
    for p in payloads {
        if let Some(n) = number(prefix, p) {
            *m.entry(n).or_insert(0) += 1;
        }
    }
    m
}

/// Asserts `0..count` are all present; returns how many were duplicated.
pub fn assert_complete(tally: &BTreeMap<u64, u32>, count: u64) -> u64 {
    let missing: Vec<u64> = (0..count)
        .filter(|n| !tally.contains_key(n))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "records lost: {} of {count} missing, first: {missing:?}",
        (0..count).filter(|n| !tally.contains_key(n)).count()
    );
    tally.values().map(|&c| (c - 1) as u64).sum()
}

/// Builds a component the way the binary does, from JSON options.
pub fn kafka_sink(name: &str, options: serde_json::Value) -> Box<dyn Sink> {
    use sluice_core::SinkFactory;
    let dir = std::env::temp_dir();
    let resources = Default::default();
    let cx = sluice_core::BuildContext {
        name,
        data_dir: &dir,
        resources: &resources,
    };
    sluice_kafka::KafkaSinkFactory
        .build(
            &cx,
            &sluice_core::config::ComponentOptions::from_json(options),
        )
        .unwrap_or_else(|e| panic!("kafka sink options: {e}"))
}

pub fn kafka_source(name: &str, options: serde_json::Value) -> Box<dyn Source> {
    use sluice_core::SourceFactory;
    let dir = std::env::temp_dir();
    let resources = Default::default();
    let cx = sluice_core::BuildContext {
        name,
        data_dir: &dir,
        resources: &resources,
    };
    sluice_kafka::KafkaSourceFactory
        .build(
            &cx,
            &sluice_core::config::ComponentOptions::from_json(options),
        )
        .unwrap_or_else(|e| panic!("kafka source options: {e}"))
}

/// Waits until `cond` holds, panicking with `what` after `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
