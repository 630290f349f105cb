//! Sink `console`: writes each record to standard output, as text or JSON
//! lines, one write per batch. Touches stdout only.

use std::io::Write;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use sluice_core::config::{ComponentOptions, ConfigError};
use sluice_core::encode::Encoding;
use sluice_core::{BuildContext, Sink, SinkBatch, SinkError, SinkFactory};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ConsoleOptions {
    #[serde(default)]
    encoding: Encoding,
}

pub struct ConsoleFactory;

impl SinkFactory for ConsoleFactory {
    fn kind(&self) -> &'static str {
        "console"
    }

    fn options_schema(
        &self,
        generator: &mut schemars::SchemaGenerator,
    ) -> Option<schemars::Schema> {
        Some(generator.subschema_for::<ConsoleOptions>())
    }

    fn build(
        &self,
        _cx: &BuildContext,
        options: &ComponentOptions,
    ) -> Result<Box<dyn Sink>, ConfigError> {
        let opts: ConsoleOptions = options.deserialize()?;
        Ok(Box::new(Console {
            encoding: opts.encoding,
            buf: Vec::new(),
        }))
    }
}

struct Console {
    encoding: Encoding,
    buf: Vec<u8>,
}

#[async_trait]
impl Sink for Console {
    async fn write(&mut self, batch: &SinkBatch) -> Result<(), SinkError> {
        self.buf.clear();
        for (_, record) in batch.records() {
            self.encoding.encode(record, &mut self.buf);
        }
        let mut out = std::io::stdout().lock();
        match out.write_all(&self.buf).and_then(|_| out.flush()) {
            Ok(()) => Ok(()),
            // A closed pipe (`| head`) will not reopen: stop.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                Err(SinkError::Fatal(anyhow::anyhow!("stdout closed: {e}")))
            }
            Err(e) => Err(SinkError::retryable(e)),
        }
    }
}
