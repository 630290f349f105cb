//! A pipeline process for the kill -9 tests (`tests/kill9.rs`), standing in
//! for the `sluice` binary until it registers the Kafka components:
//!
//! * `produce BOOTSTRAP TOPIC DATA_DIR COUNT`: numbered records
//!   (`"k-<n:08>"`) → kafka sink; the source's checkpoint (next number)
//!   advances only on acknowledgement; exits when all are acknowledged.
//! * `consume BOOTSTRAP TOPIC GROUP OUT_FILE`: kafka source → a sink that
//!   appends each record as a line to `OUT_FILE` and fsyncs before
//!   acknowledging; runs until killed.
//!
//! Touches the brokers, `DATA_DIR` and `OUT_FILE`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use sluice_core::config::{BatchConfig, ComponentOptions, QueueConfig};
use sluice_core::{
    AckTracker, BuildContext, Control, Pipeline, Record, Sink, SinkBatch, SinkError, SinkFactory,
    SinkSettings, Source, SourceContext, SourceFactory,
};

struct Numbers {
    count: u64,
}

#[async_trait]
impl Source for Numbers {
    async fn run(self: Box<Self>, cx: SourceContext) -> anyhow::Result<()> {
        let mut n: u64 = cx.checkpoints.load()?.unwrap_or(0);
        let mut tracker = AckTracker::new();
        while n < self.count && !cx.shutdown.is_cancelled() {
            let end = (n + 500).min(self.count);
            let records = (n..end)
                .map(|i| Record::from_value(format!("k-{i:08}")))
                .collect();
            cx.output.send(records, tracker.track(end)).await?;
            n = end;
            if let Some(p) = tracker.poll() {
                cx.checkpoints.save(&p).await?;
            }
        }
        while let Some(p) = tracker.next().await {
            cx.checkpoints.save(&p).await?;
        }
        Ok(())
    }
}

/// Appends records as lines, fsynced before the acknowledgement.
struct FileLines(std::fs::File);

#[async_trait]
impl Sink for FileLines {
    async fn write(&mut self, batch: &SinkBatch) -> Result<(), SinkError> {
        let mut buf = Vec::with_capacity(batch.bytes);
        for (_, r) in batch.records() {
            buf.extend_from_slice(&r.value);
            buf.push(b'\n');
        }
        self.0.write_all(&buf).map_err(SinkError::retryable)?;
        self.0.sync_data().map_err(SinkError::retryable)?;
        Ok(())
    }
}

fn settings() -> SinkSettings {
    SinkSettings {
        inputs: vec!["in".into()],
        batch: BatchConfig {
            max_events: 2000,
            max_bytes: 16 << 20,
            timeout_ms: 5,
        },
        ..SinkSettings::default()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    let resources = Default::default();
    let scratch = tempfile::tempdir()?;
    let (dir, source, sink): (PathBuf, Box<dyn Source>, Box<dyn Sink>) = match arg(1).as_str() {
        "produce" => {
            let dir = PathBuf::from(arg(4));
            let cx = BuildContext {
                name: "to_kafka",
                data_dir: &dir,
                resources: &resources,
            };
            let sink = sluice_kafka::KafkaSinkFactory.build(
                &cx,
                &ComponentOptions::from_json(serde_json::json!({
                    "brokers": [arg(2)], "topic": arg(3), "key": "none"
                })),
            )?;
            let count = arg(5).parse()?;
            (dir.clone(), Box::new(Numbers { count }), sink)
        }
        "consume" => {
            let dir = scratch.path().to_path_buf();
            let cx = BuildContext {
                name: "from_kafka",
                data_dir: &dir,
                resources: &resources,
            };
            let source = sluice_kafka::KafkaSourceFactory.build(
                &cx,
                &ComponentOptions::from_json(serde_json::json!({
                    "brokers": [arg(2)], "topics": [arg(3)], "group": arg(4),
                    "batch_size": 500, "commit_interval_ms": 200,
                    // A killed member must leave the group quickly.
                    "librdkafka_options": {"max.poll.interval.ms": 60000}
                })),
            )?;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(arg(5))?;
            (dir, source, Box::new(FileLines(file)))
        }
        other => anyhow::bail!("unknown mode `{other}` (produce | consume)"),
    };
    let mut p = Pipeline::new(&dir).with_checkpoint_interval(Duration::from_millis(100));
    let queue = QueueConfig {
        max_events: 5000,
        ..QueueConfig::default()
    };
    p.add_source("in", "test", source, queue);
    p.add_sink("out", "test", sink, settings());
    p.run(Control::default()).await
}
