//! Sink `type: kafka`: produces every record of a batch and returns only
//! when the broker acknowledged each one, so the engine acknowledges a
//! record to its source only after its delivery report.
//!
//! Producer defaults: `acks=all`, idempotence on, `message.timeout.ms=0`
//! (librdkafka retries for ever: an outage back-pressures, never drops),
//! `linger.ms` small; `librdkafka_options` override them. The producer is
//! created and the brokers are checked (metadata request) at the first
//! write, never in `build`. A record the broker can never accept (too
//! large, unknown topic) is reported as `Rejected` so `on_error` applies;
//! anything else is retried. Throughput comes from large engine batches
//! (`batch.max_events`), since each write waits for its deliveries.
//! Touches the Kafka brokers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use sluice_core::config::{ComponentOptions, ConfigError};
use sluice_core::encode::Encoding;
use sluice_core::key::KeyMode;
use sluice_core::record::Meta;
use sluice_core::template::Template;
use sluice_core::{BuildContext, Sink, SinkBatch, SinkError, SinkFactory};

use crate::client::{base_config, healthcheck, redacted, ClientCx};
use crate::delivery::{classify, Class, Inflight, ProducerCx};
use crate::headers::headers_of;
use crate::options::{check_connection, EncodingOption, SinkOptions};

/// Warn this often while a write waits for the brokers.
const STALL_WARNING: Duration = Duration::from_secs(30);
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Factory of the sink `type: kafka`.
pub struct KafkaSinkFactory;

impl SinkFactory for KafkaSinkFactory {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    fn options_schema(
        &self,
        generator: &mut schemars::SchemaGenerator,
    ) -> Option<schemars::Schema> {
        Some(generator.subschema_for::<SinkOptions>())
    }

    fn build(
        &self,
        cx: &BuildContext,
        options: &ComponentOptions,
    ) -> Result<Box<dyn Sink>, ConfigError> {
        let opts: SinkOptions = options.deserialize()?;
        Ok(Box::new(KafkaSink::new(cx.name, &opts, options)?))
    }
}

/// The Kafka sink.
pub struct KafkaSink {
    name: Arc<str>,
    brokers: Vec<String>,
    config: ClientConfig,
    topic: Template,
    key: KeyMode,
    encoding: Option<Encoding>,
    metadata_headers: bool,
    healthcheck: bool,
    producer: Option<ThreadedProducer<ProducerCx>>,
    inflight: Arc<Inflight>,
    topic_buf: String,
    key_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

impl KafkaSink {
    /// Builds the sink from its options without touching the network.
    pub fn new(
        name: &str,
        opts: &SinkOptions,
        options: &ComponentOptions,
    ) -> Result<KafkaSink, ConfigError> {
        let err = |message: String| ConfigError {
            location: options.location().clone(),
            message,
            hint: None,
        };
        let conn = check_connection(options, opts.connection())?;
        let topic = Template::parse(&opts.topic).map_err(|e| err(format!("topic: {e}")))?;
        let mut config = base_config(&conn, name).map_err(err)?;
        // Our defaults go first so that `librdkafka_options` win.
        let mut defaults = ClientConfig::new();
        defaults
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "0")
            .set("linger.ms", opts.linger_ms.to_string())
            .set("compression.codec", opts.compression.as_str())
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576");
        for (k, v) in defaults.config_map() {
            if config.get(k).is_none() {
                config.set(k, v);
            }
        }
        Ok(KafkaSink {
            name: name.into(),
            brokers: conn.brokers,
            config,
            topic,
            key: KeyMode::parse(&opts.key),
            encoding: match opts.encoding {
                EncodingOption::Raw => None,
                EncodingOption::Json => Some(Encoding::Json),
            },
            metadata_headers: opts.metadata_headers,
            healthcheck: opts.healthcheck,
            producer: None,
            inflight: Arc::new(Inflight::default()),
            topic_buf: String::new(),
            key_buf: Vec::new(),
            value_buf: Vec::new(),
        })
    }

    /// Records delivered since the sink started.
    pub fn delivered(&self) -> u64 {
        self.inflight.delivered_total()
    }

    /// The producer, created (and the brokers checked) on first use.
    async fn producer(&mut self) -> Result<ThreadedProducer<ProducerCx>, SinkError> {
        if let Some(p) = &self.producer {
            return Ok(p.clone());
        }
        tracing::debug!(sink = %self.name, "kafka producer config: {}", redacted(&self.config));
        let cx = ProducerCx {
            client: ClientCx::new(&self.name),
            inflight: self.inflight.clone(),
        };
        let producer: ThreadedProducer<ProducerCx> = self
            .config
            .create_with_context(cx)
            .map_err(|e| SinkError::Fatal(anyhow::anyhow!("kafka sink `{}`: {e}", self.name)))?;
        if self.healthcheck {
            let p = producer.clone();
            let topic = self
                .topic
                .is_static()
                .then(|| self.topic.render("", &Default::default()));
            let ctx = producer.clone();
            healthcheck(
                move |t, timeout| p.client().fetch_metadata(t, timeout),
                &self.brokers,
                topic,
                HEALTHCHECK_TIMEOUT,
                move || ctx.context().client.last_error(),
            )
            .await
            .map_err(|e| SinkError::Retryable(e.context(format!("kafka sink `{}`", self.name))))?;
            tracing::info!(sink = %self.name, brokers = ?self.brokers, "kafka brokers reachable");
        }
        self.producer = Some(producer.clone());
        Ok(producer)
    }

    /// Waits until every message of the current write has its report,
    /// warning while the brokers do not answer.
    async fn wait_deliveries(&self, producer: &ThreadedProducer<ProducerCx>) {
        let started = Instant::now();
        let mut next_warning = started + STALL_WARNING;
        while self.inflight.pending() > 0 {
            let _ =
                tokio::time::timeout(Duration::from_secs(1), self.inflight.wait_progress()).await;
            if self.inflight.pending() > 0 && Instant::now() >= next_warning {
                next_warning += STALL_WARNING;
                tracing::warn!(
                    sink = %self.name,
                    brokers = ?self.brokers,
                    "{} records waiting {}s for the broker's acknowledgement (retrying without limit); last client error: {}",
                    self.inflight.pending(),
                    started.elapsed().as_secs(),
                    producer.context().client.last_error().unwrap_or_else(|| "none".into())
                );
            }
        }
    }
}

/// Why producing stopped before the end of the batch.
struct Stopped {
    index: usize,
    error: KafkaError,
}

#[async_trait]
impl Sink for KafkaSink {
    async fn write(&mut self, batch: &SinkBatch) -> Result<(), SinkError> {
        let producer = self.producer().await?;
        let generation = self.inflight.begin();
        let static_topic = self.topic.is_static();
        if static_topic {
            self.topic
                .render_into("", &Default::default(), &mut self.topic_buf);
        }
        let mut stopped: Option<Stopped> = None;
        for (index, (source, record)) in batch.records().enumerate() {
            if !static_topic {
                self.topic.render_into(source, record, &mut self.topic_buf);
            }
            let payload: &[u8] = match (self.encoding, &record.meta) {
                (None, Meta::None | Meta::Log(_)) => &record.value,
                (encoding, _) => {
                    self.value_buf.clear();
                    encoding
                        .unwrap_or(Encoding::Text)
                        .encode(record, &mut self.value_buf);
                    self.value_buf.pop(); // the encoder's newline
                    &self.value_buf
                }
            };
            let key = self.key.key(record, &mut self.key_buf);
            let mut message = BaseRecord::<[u8], [u8], usize>::with_opaque_to(
                &self.topic_buf,
                Inflight::opaque(generation, index),
            )
            .payload(payload)
            .timestamp(record.timestamp_ms);
            if let Some(k) = key {
                message = message.key(k);
            }
            if let Some(h) = headers_of(record, self.metadata_headers) {
                message = message.headers(h);
            }
            self.inflight.sent();
            loop {
                match producer.send(message) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), m)) => {
                        // The local queue is full: let deliveries drain it.
                        message = m;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err((error, _)) => {
                        stopped = Some(Stopped { index, error });
                        break;
                    }
                }
            }
            if stopped.is_some() {
                // This one was never queued: take it off the count.
                self.inflight.unsent();
                break;
            }
        }
        self.wait_deliveries(&producer).await;

        let mut failures = self.inflight.take_failures();
        if let Some(s) = stopped {
            failures.push((s.index, s.error));
        }
        let Some((index, error)) = failures.into_iter().min_by_key(|(i, _)| *i) else {
            return Ok(());
        };
        let what = format!(
            "kafka sink `{}`: record {index} of the batch: {error}",
            self.name
        );
        match classify(&error) {
            Class::Permanent => Err(SinkError::Rejected {
                index,
                error: anyhow::anyhow!(what),
            }),
            Class::Transient => Err(SinkError::Retryable(anyhow::anyhow!(what))),
            Class::Fatal => {
                let detail = producer
                    .client()
                    .fatal_error()
                    .map(|(code, reason)| format!("{code}: {reason}"))
                    .unwrap_or_default();
                tracing::error!(sink = %self.name, "kafka producer failed fatally ({detail}); creating a new one");
                self.producer = None;
                Err(SinkError::Retryable(anyhow::anyhow!("{what} ({detail})")))
            }
        }
    }

    async fn close(&mut self) -> anyhow::Result<()> {
        if let Some(p) = self.producer.take() {
            tokio::task::spawn_blocking(move || p.flush(Duration::from_secs(10)))
                .await
                .map_err(|e| anyhow::anyhow!("kafka sink flush task: {e}"))??;
        }
        Ok(())
    }
}
