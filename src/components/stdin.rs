//! Source `stdin`: one record per line of standard input (newline and a
//! trailing `\r` removed), in batches of what is available. Ends at end of
//! input. Touches stdin only.

use async_trait::async_trait;
use bytes::BytesMut;
use schemars::JsonSchema;
use serde::Deserialize;
use sluice_core::config::{ComponentOptions, ConfigError};
use sluice_core::record::now_ms;
use sluice_core::{AckTracker, BuildContext, Record, Source, SourceContext, SourceFactory};
use tokio::io::AsyncReadExt;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct StdinOptions {
    /// Lines longer than this go out in pieces of this size (default 1 MiB).
    #[serde(
        default = "default_max_line",
        deserialize_with = "sluice_core::config::size_bytes::deserialize"
    )]
    #[schemars(with = "sluice_core::schema::Size")]
    max_line_bytes: usize,
}

fn default_max_line() -> usize {
    1 << 20
}

pub struct StdinFactory;

impl SourceFactory for StdinFactory {
    fn kind(&self) -> &'static str {
        "stdin"
    }

    fn options_schema(
        &self,
        generator: &mut schemars::SchemaGenerator,
    ) -> Option<schemars::Schema> {
        Some(generator.subschema_for::<StdinOptions>())
    }

    fn build(
        &self,
        _cx: &BuildContext,
        options: &ComponentOptions,
    ) -> Result<Box<dyn Source>, ConfigError> {
        let opts: StdinOptions = options.deserialize()?;
        Ok(Box::new(Stdin {
            max_line: opts.max_line_bytes.max(1),
        }))
    }
}

struct Stdin {
    max_line: usize,
}

#[async_trait]
impl Source for Stdin {
    async fn run(self: Box<Self>, cx: SourceContext) -> anyhow::Result<()> {
        let mut stdin = tokio::io::stdin();
        let mut buf = BytesMut::with_capacity(64 << 10);
        let mut tracker = AckTracker::<()>::new();
        let mut eof = false;
        while !eof {
            buf.reserve(64 << 10);
            let n = tokio::select! {
                n = stdin.read_buf(&mut buf) => n?,
                _ = cx.shutdown.cancelled() => break,
            };
            eof = n == 0;
            let ts = now_ms();
            let mut records = Vec::new();
            while let Some(i) = memchr::memchr(b'\n', &buf) {
                let mut line = buf.split_to(i + 1).freeze();
                line.truncate(line.len() - 1);
                if line.last() == Some(&b'\r') {
                    line.truncate(line.len() - 1);
                }
                records.push(Record {
                    value: line,
                    timestamp_ms: ts,
                    ..Record::default()
                });
            }
            if eof && !buf.is_empty() {
                let line = buf.split().freeze();
                records.push(Record {
                    value: line,
                    timestamp_ms: ts,
                    ..Record::default()
                });
            } else if buf.len() > self.max_line {
                // An over-long line goes out in pieces of `max_line_bytes`.
                let line = buf.split_to(self.max_line).freeze();
                records.push(Record {
                    value: line,
                    timestamp_ms: ts,
                    ..Record::default()
                });
                buf.clear();
            }
            if records.is_empty() {
                continue;
            }
            let bytes = records.iter().map(|r| r.value.len() as u64).sum();
            cx.metrics.record_in(records.len() as u64, bytes);
            if cx.output.send(records, tracker.track(())).await.is_err() {
                break;
            }
            tracker.poll();
        }
        tracker.settle().await;
        Ok(())
    }
}
