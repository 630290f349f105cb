//! Sink `blackhole`: counts what it receives, logs a rate summary every
//! `print_interval_secs` (0 turns it off), acknowledges everything.
//! Touches nothing but its counters and the log.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use sluice_core::config::{ComponentOptions, ConfigError};
use sluice_core::{BuildContext, Sink, SinkBatch, SinkError, SinkFactory};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct BlackholeOptions {
    #[serde(
        default = "default_interval",
        with = "sluice_core::config::duration_secs"
    )]
    #[schemars(with = "sluice_core::schema::DurationSecs")]
    print_interval_secs: u64,
}

fn default_interval() -> u64 {
    10
}

pub struct BlackholeFactory;

impl SinkFactory for BlackholeFactory {
    fn kind(&self) -> &'static str {
        "blackhole"
    }

    fn options_schema(
        &self,
        generator: &mut schemars::SchemaGenerator,
    ) -> Option<schemars::Schema> {
        Some(generator.subschema_for::<BlackholeOptions>())
    }

    fn build(
        &self,
        cx: &BuildContext,
        options: &ComponentOptions,
    ) -> Result<Box<dyn Sink>, ConfigError> {
        let opts: BlackholeOptions = options.deserialize()?;
        Ok(Box::new(Blackhole {
            name: cx.name.to_string(),
            interval: Duration::from_secs(opts.print_interval_secs),
            since: Instant::now(),
            records: 0,
            bytes: 0,
        }))
    }
}

struct Blackhole {
    name: String,
    interval: Duration,
    since: Instant,
    records: u64,
    bytes: u64,
}

#[async_trait]
impl Sink for Blackhole {
    async fn write(&mut self, batch: &SinkBatch) -> Result<(), SinkError> {
        self.records += batch.events as u64;
        self.bytes += batch.bytes as u64;
        let elapsed = self.since.elapsed();
        if !self.interval.is_zero() && elapsed >= self.interval {
            let secs = elapsed.as_secs_f64();
            tracing::info!(
                sink = %self.name,
                "{} records ({:.0}/s), {:.1} MiB/s",
                self.records,
                self.records as f64 / secs,
                self.bytes as f64 / secs / 1048576.0
            );
            self.since = Instant::now();
            self.records = 0;
            self.bytes = 0;
        }
        Ok(())
    }
}
