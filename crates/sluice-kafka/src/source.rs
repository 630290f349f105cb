//! Source `type: kafka`: consumes `topics` (names, or regexes starting with
//! `^`) in consumer group `group`, or the listed `partitions` of them by
//! static assignment, and hands batches to the pipeline.
//!
//! Auto-commit is off: offsets are committed (every `commit_interval_ms`,
//! on a rebalance before partitions are given up, and at shutdown) only up
//! to what the pipeline acknowledged — see [`crate::offsets`]. A record is
//! therefore delivered at least once; after a crash only the
//! unacknowledged window is read again. Payloads and keys of a batch are
//! copied into one buffer and sliced (no allocation per record).
//! Touches the Kafka brokers and the group coordinator.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use sluice_core::config::{ComponentOptions, ConfigError};
use sluice_core::record::now_ms;
use sluice_core::{BuildContext, Record, Source, SourceContext, SourceFactory};

use crate::client::{base_config, healthcheck, redacted, ClientCx};
use crate::offsets::{ConsumerCx, OffsetBook, Snapshot, Tp};
use crate::options::{check_connection, SourceOptions, Start};

const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Factory of the source `type: kafka`.
pub struct KafkaSourceFactory;

impl SourceFactory for KafkaSourceFactory {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    fn options_schema(
        &self,
        generator: &mut schemars::SchemaGenerator,
    ) -> Option<schemars::Schema> {
        Some(generator.subschema_for::<SourceOptions>())
    }

    fn build(
        &self,
        cx: &BuildContext,
        options: &ComponentOptions,
    ) -> Result<Box<dyn Source>, ConfigError> {
        let opts: SourceOptions = options.deserialize()?;
        Ok(Box::new(KafkaSource::new(cx.name, opts, options)?))
    }
}

/// The Kafka source.
pub struct KafkaSource {
    name: Arc<str>,
    opts: SourceOptions,
    config: ClientConfig,
}

impl KafkaSource {
    /// Builds the source from its options without touching the network.
    pub fn new(
        name: &str,
        opts: SourceOptions,
        options: &ComponentOptions,
    ) -> Result<KafkaSource, ConfigError> {
        opts.check(options)?;
        let conn = check_connection(options, opts.connection())?;
        let mut config = base_config(&conn, name).map_err(|message| ConfigError {
            location: options.location().clone(),
            message,
            hint: None,
        })?;
        let reset = match opts.start {
            Start::Earliest => "earliest",
            Start::Latest => "latest",
        };
        config
            .set("group.id", &opts.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        if config.get("auto.offset.reset").is_none() {
            config.set("auto.offset.reset", reset);
        }
        Ok(KafkaSource {
            name: name.into(),
            opts,
            config,
        })
    }
}

/// Records being gathered into one batch.
#[derive(Default)]
struct Gather {
    buf: BytesMut,
    /// (key range, value range, headers, timestamp, partition)
    items: Vec<Item>,
}

struct Item {
    key: Option<(usize, usize)>,
    value: (usize, usize),
    headers: sluice_core::record::Headers,
    timestamp_ms: i64,
    tp: Tp,
    offset: i64,
}

impl Gather {
    fn push(&mut self, m: &BorrowedMessage<'_>, topic: Arc<str>) {
        let mut span = |bytes: &[u8]| {
            let start = self.buf.len();
            self.buf.extend_from_slice(bytes);
            (start, self.buf.len())
        };
        let key = m.key().map(&mut span);
        let value = span(m.payload().unwrap_or_default());
        let headers = m.headers().map(|h| {
            Arc::new(
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            Bytes::copy_from_slice(h.value.unwrap_or_default()),
                        )
                    })
                    .collect(),
            )
        });
        self.items.push(Item {
            key,
            value,
            headers,
            timestamp_ms: m.timestamp().to_millis().unwrap_or_else(now_ms),
            tp: (topic, m.partition()),
            offset: m.offset(),
        });
    }

    /// The records, advancing `emitted` to the next offset of each
    /// partition they come from.
    fn finish(self, emitted: &mut HashMap<Tp, i64>) -> Vec<Record> {
        let buf = self.buf.freeze();
        self.items
            .into_iter()
            .map(|it| {
                emitted.insert(it.tp, it.offset + 1);
                Record {
                    key: it.key.map(|(a, b)| buf.slice(a..b)),
                    value: buf.slice(it.value.0..it.value.1),
                    headers: it.headers,
                    timestamp_ms: it.timestamp_ms,
                    meta: Default::default(),
                }
            })
            .collect()
    }
}

/// What to do with a consumer error.
fn check_error(source: &str, e: KafkaError) -> anyhow::Result<()> {
    match e {
        KafkaError::MessageConsumptionFatal(code) => {
            anyhow::bail!("kafka source `{source}`: fatal consumer error: {code}")
        }
        other => {
            tracing::warn!(source = %source, "kafka consumer error: {other}");
            Ok(())
        }
    }
}

#[async_trait]
impl Source for KafkaSource {
    async fn run(self: Box<Self>, cx: SourceContext) -> anyhow::Result<()> {
        let name = self.name.clone();
        let book = OffsetBook::new(&name, Duration::from_millis(self.opts.rebalance_drain_ms));
        tracing::debug!(source = %name, "kafka consumer config: {}", redacted(&self.config));
        let consumer: Arc<StreamConsumer<ConsumerCx>> = Arc::new(
            self.config
                .create_with_context(ConsumerCx {
                    client: ClientCx::new(&name),
                    book: book.clone(),
                })
                .map_err(|e| anyhow::anyhow!("kafka source `{name}`: {e}"))?,
        );
        if self.opts.healthcheck {
            loop {
                let c = consumer.clone();
                let c2 = consumer.clone();
                let r = healthcheck(
                    move |t, timeout| c.fetch_metadata(t, timeout),
                    &self.opts.brokers,
                    None,
                    HEALTHCHECK_TIMEOUT,
                    move || c2.context().client.last_error(),
                )
                .await;
                match r {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(source = %name, "kafka source `{name}`: {e:#}; retrying in 5s");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                            _ = cx.shutdown.cancelled() => return Ok(()),
                        }
                    }
                }
            }
        }
        let topics: Vec<&str> = self.opts.topics.iter().map(String::as_str).collect();
        match &self.opts.partitions {
            None => {
                consumer.subscribe(&topics).map_err(|e| {
                    anyhow::anyhow!("kafka source `{name}`: subscribe to {topics:?}: {e}")
                })?;
                tracing::info!(source = %name, group = %self.opts.group, "kafka source subscribed to {topics:?}");
            }
            Some(parts) => {
                // Static assignment: each partition starts at the group's
                // committed offset (or `start` when there is none).
                let mut tpl = rdkafka::TopicPartitionList::new();
                for t in &topics {
                    for &p in parts {
                        tpl.add_partition_offset(t, p, rdkafka::Offset::Stored)
                            .map_err(|e| anyhow::anyhow!("kafka source `{name}`: {t}/{p}: {e}"))?;
                    }
                }
                consumer.assign(&tpl).map_err(|e| {
                    anyhow::anyhow!(
                        "kafka source `{name}`: assign {topics:?} partitions {parts:?}: {e}"
                    )
                })?;
                book.assign(&tpl);
            }
        }

        let interval = Duration::from_millis(
            self.opts
                .commit_interval_ms
                .unwrap_or(cx.checkpoint_interval.as_millis() as u64)
                .max(10),
        );
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut topic_names: HashMap<String, Arc<str>> = HashMap::new();
        let mut intern = |t: &str| -> Arc<str> {
            if let Some(a) = topic_names.get(t) {
                return a.clone();
            }
            let a: Arc<str> = t.into();
            topic_names.insert(t.to_string(), a.clone());
            a
        };
        let mut emitted: HashMap<Tp, i64> = HashMap::new();
        loop {
            let first = tokio::select! {
                biased;
                _ = cx.shutdown.cancelled() => break,
                _ = tick.tick() => {
                    book.commit(consumer.as_ref(), false);
                    continue;
                }
                m = consumer.recv() => m,
            };
            let epoch = book.epoch();
            let mut gather = Gather::default();
            match first {
                Ok(m) => gather.push(&m, intern(m.topic())),
                Err(e) => check_error(&name, e)?,
            }
            while gather.items.len() < self.opts.batch_size {
                match consumer.recv().now_or_never() {
                    Some(Ok(m)) => gather.push(&m, intern(m.topic())),
                    Some(Err(e)) => check_error(&name, e)?,
                    None => break,
                }
            }
            if book.epoch() != epoch {
                // A rebalance happened while gathering: records of
                // partitions we no longer own belong to their next owner.
                gather.items.retain(|it| book.is_assigned(&it.tp));
                emitted.retain(|tp, _| book.is_assigned(tp));
            }
            if gather.items.is_empty() {
                continue;
            }
            let records = gather.finish(&mut emitted);
            let snapshot: Snapshot = emitted.iter().map(|(tp, &o)| (tp.clone(), o)).collect();
            let ack = book.track(snapshot);
            if cx.output.send(records, ack).await.is_err() {
                break;
            }
        }

        // Shutdown: wait (the engine bounds this) for what is in flight,
        // then commit what was acknowledged.
        loop {
            let (outstanding, stuck) = book.outstanding();
            if outstanding == 0 || stuck {
                break;
            }
            book.commit(consumer.as_ref(), false);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let static_assignment = self.opts.partitions.is_some();
        // Closing the consumer leaves the group (blocking): off the workers.
        tokio::task::spawn_blocking(move || {
            book.commit(consumer.as_ref(), true);
            match static_assignment {
                true => drop(consumer.unassign()),
                false => consumer.unsubscribe(),
            }
            drop(consumer);
        })
        .await
        .map_err(|e| anyhow::anyhow!("kafka source `{name}`: final commit task: {e}"))?;
        tracing::info!(source = %name, "kafka source stopped");
        Ok(())
    }
}
