//! Source `generator`: synthetic log lines (`apache_common`, `json`,
//! `syslog`) with a sequence number in each, optionally rate-limited and
//! bounded by `count`. Its checkpoint is the next sequence number, advanced
//! on acknowledgement, so a restart continues where delivery stopped.
//! Used by the quickstart, tests and benchmarks. Touches only its checkpoint.

use std::io::Write;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{BufMut, BytesMut};
use schemars::JsonSchema;
use serde::Deserialize;
use sluice_core::checkpoint::Throttle;
use sluice_core::config::{ComponentOptions, ConfigError};
use sluice_core::record::now_ms;
use sluice_core::{AckTracker, BuildContext, Record, Source, SourceContext, SourceFactory};

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    ApacheCommon,
    Json,
    Syslog,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeneratorOptions {
    #[serde(default)]
    pub format: Format,
    /// Total records to generate (across restarts); unbounded when absent.
    pub count: Option<u64>,
    /// Records per second; as fast as the pipeline takes them when absent.
    pub rate_per_sec: Option<u64>,
    /// Records per batch (default 1000, or fewer to honour the rate).
    pub batch_size: Option<usize>,
}

pub struct GeneratorFactory;

impl SourceFactory for GeneratorFactory {
    fn kind(&self) -> &'static str {
        "generator"
    }

    fn options_schema(
        &self,
        generator: &mut schemars::SchemaGenerator,
    ) -> Option<schemars::Schema> {
        Some(generator.subschema_for::<GeneratorOptions>())
    }

    fn build(
        &self,
        _cx: &BuildContext,
        options: &ComponentOptions,
    ) -> Result<Box<dyn Source>, ConfigError> {
        let opts: GeneratorOptions = options.deserialize()?;
        if opts.rate_per_sec == Some(0) || opts.batch_size == Some(0) {
            return Err(ConfigError {
                location: options.location().clone(),
                message: "`rate_per_sec` and `batch_size` must be at least 1".into(),
                hint: None,
            });
        }
        Ok(Box::new(Generator { opts }))
    }
}

pub struct Generator {
    opts: GeneratorOptions,
}

const PATHS: [&str; 4] = ["/api/items", "/api/orders", "/static/app.js", "/login"];
const LEVELS: [&str; 4] = ["INFO", "INFO", "WARN", "ERROR"];

/// Appends line `seq` (without newline) to `buf`. `stamp` is the batch's
/// preformatted time.
fn write_line(format: Format, seq: u64, stamp: &str, buf: &mut BytesMut) {
    let mut w = buf.writer();
    let i = (seq % 4) as usize;
    let _ = match format {
        Format::ApacheCommon => write!(
            w,
            "10.{}.{}.{} - user{} [{stamp}] \"GET {}/{seq}?ref=generator&session=a81f3c0d9e HTTP/1.1\" {} {} \"https://example.com/\" \"Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101\"",
            seq % 256, (seq >> 8) % 256, (seq >> 16) % 256, seq % 1000, PATHS[i],
            if i == 3 { 302 } else { 200 }, 512 + seq % 4096
        ),
        Format::Json => write!(
            w,
            "{{\"seq\":{seq},\"timestamp\":\"{stamp}\",\"level\":\"{}\",\"path\":\"{}\",\"status\":200,\"duration_ms\":{},\"message\":\"request served by generator\"}}",
            LEVELS[i], PATHS[i], seq % 997
        ),
        Format::Syslog => write!(
            w,
            "<13>1 {stamp} host-{} app {} - - {} request {} served seq={seq}",
            seq % 16, 1000 + seq % 64, LEVELS[i], PATHS[i]
        ),
    };
}

#[async_trait]
impl Source for Generator {
    async fn run(self: Box<Self>, cx: SourceContext) -> anyhow::Result<()> {
        let mut next: u64 = cx.checkpoints.load::<u64>()?.unwrap_or(0);
        let count = self.opts.count.unwrap_or(u64::MAX);
        let batch_size = match self.opts.rate_per_sec {
            Some(rate) => self
                .opts
                .batch_size
                .unwrap_or(1000)
                .min((rate / 10).max(1) as usize),
            None => self.opts.batch_size.unwrap_or(1000),
        } as u64;
        let mut pace = self.opts.rate_per_sec.map(|rate| {
            let mut i =
                tokio::time::interval(Duration::from_secs_f64(batch_size as f64 / rate as f64));
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        let mut tracker = AckTracker::<u64>::new();
        let mut throttle = Throttle::new(cx.checkpoint_interval);
        let mut acked = next;
        let mut buf = BytesMut::with_capacity(256 * batch_size as usize);
        while next < count && !cx.shutdown.is_cancelled() {
            if let Some(p) = pace.as_mut() {
                tokio::select! {
                    _ = p.tick() => {}
                    _ = cx.shutdown.cancelled() => break,
                }
            }
            let n = batch_size.min(count - next);
            let ts = now_ms();
            let stamp = sluice_core::encode::rfc3339_ms(ts);
            buf.reserve(256 * n as usize);
            let mut ends = Vec::with_capacity(n as usize);
            for seq in next..next + n {
                write_line(self.opts.format, seq, &stamp, &mut buf);
                ends.push(buf.len());
            }
            let all = buf.split().freeze();
            let mut start = 0;
            let records: Vec<Record> = ends
                .into_iter()
                .map(|end| {
                    let r = Record {
                        value: all.slice(start..end),
                        timestamp_ms: ts,
                        ..Record::default()
                    };
                    start = end;
                    r
                })
                .collect();
            next += n;
            cx.metrics.record_in(n, all.len() as u64);
            let ack = tracker.track(next);
            tokio::select! {
                sent = cx.output.send(records, ack) => if sent.is_err() { break },
                _ = cx.shutdown.cancelled() => break,
            }
            if let Some(p) = tracker.poll() {
                acked = p;
            }
            cx.metrics
                .checkpoint_lag
                .store((next - acked) as i64, std::sync::atomic::Ordering::Relaxed);
            if throttle.due() {
                cx.checkpoints.save(&acked).await?;
            }
        }
        if let Some(p) = tracker.settle().await {
            acked = p;
        }
        cx.checkpoints.save(&acked).await?;
        Ok(())
    }
}
