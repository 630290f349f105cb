//! Sink `store`: appends records to topics of the embedded store. The topic
//! is a template (`cdc.{database}.{table}`, `{source}`); a missing topic is
//! created with the sink's settings unless `create: false`. Records are
//! keyed (`key: primary_key | <field> | none`) so one key stays on one
//! partition, and acknowledged only after the fsync that covers them
//! (group commit). A full bounded topic that rejects is retried, so the
//! back-pressure reaches the source (an HTTP source under `reject` answers
//! 429). Touches the store through its handle, on the blocking pool.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use sluice_core::component::PendingDurability;
use sluice_core::config::{ComponentOptions, ConfigError};
use sluice_core::encode::Encoding;
use sluice_core::key::KeyMode;
use sluice_core::record::Meta;
use sluice_core::template::Template;
use sluice_core::{BuildContext, Sink, SinkBatch, SinkError, SinkFactory};
use sluice_store::{AppendReceipt, Header, Store, StoreError, Topic};

use super::store_settings::TopicSettings;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct StoreSinkOptions {
    topic: String,
    /// `primary_key` (the default: a row's key columns, else the record's
    /// key), `none`, or a field name.
    #[serde(default = "default_key")]
    key: String,
    /// `text` (the payload as it is; row changes as their envelope, the
    /// default) or `json` (log lines with their metadata).
    #[serde(default)]
    encoding: Encoding,
    #[serde(default = "default_true")]
    create: bool,
    #[serde(flatten)]
    settings: TopicSettings,
}

fn default_key() -> String {
    "primary_key".into()
}

fn default_true() -> bool {
    true
}

pub struct StoreSinkFactory;

impl SinkFactory for StoreSinkFactory {
    fn kind(&self) -> &'static str {
        "store"
    }

    fn options_schema(
        &self,
        generator: &mut schemars::SchemaGenerator,
    ) -> Option<schemars::Schema> {
        Some(generator.subschema_for::<StoreSinkOptions>())
    }

    fn build(
        &self,
        cx: &BuildContext,
        options: &ComponentOptions,
    ) -> Result<Box<dyn Sink>, ConfigError> {
        let opts: StoreSinkOptions = options.deserialize()?;
        let err = |message: String| ConfigError::new(options.location().clone(), message);
        let topic = Template::parse(&opts.topic).map_err(|m| err(format!("topic: {m}")))?;
        if topic.is_static() {
            sluice_store::validate_name(&opts.topic).map_err(|e| err(format!("topic: {e}")))?;
        }
        let config = opts.settings.to_config();
        config.validate().map_err(|e| err(e.to_string()))?;
        let store = cx.resources.get::<Store>();
        Ok(Box::new(StoreSink {
            name: cx.name.to_string(),
            store,
            topic,
            key: KeyMode::parse(&opts.key),
            encoding: opts.encoding,
            create: opts.create,
            config,
            topics: HashMap::new(),
            name_buf: String::new(),
            bytes_per_record: 256,
        }))
    }
}

/// Records bound for one topic.
type TopicRecords = (Topic, Vec<sluice_store::Record>);

struct StoreSink {
    name: String,
    store: Option<Arc<Store>>,
    topic: Template,
    key: KeyMode,
    encoding: Encoding,
    create: bool,
    config: sluice_store::TopicConfig,
    topics: HashMap<String, Topic>,
    name_buf: String,
    /// Encoded bytes per record in the last batch (sizes the next buffer).
    bytes_per_record: usize,
}

impl StoreSink {
    /// The topic handle for `name`, created when missing and allowed.
    fn topic(&mut self, name: &str) -> Result<Topic, StoreError> {
        if let Some(t) = self.topics.get(name) {
            return Ok(t.clone());
        }
        let store = self.store.as_ref().ok_or_else(|| {
            StoreError::Invalid("the embedded store is not open in this process".into())
        })?;
        let t = if self.create {
            store.get_or_create_topic(name, self.config.clone())?
        } else {
            store.topic(name)?
        };
        self.topics.insert(name.to_string(), t.clone());
        Ok(t)
    }

    /// Converts the batch, grouped by topic, stopping before the first
    /// record whose topic can never be written. Returns the groups and, if
    /// a record was refused, its index and why. Encoded payloads and keys
    /// go into one buffer per batch, each record holding a slice of it.
    fn prepare(&mut self, batch: &SinkBatch) -> (Vec<TopicRecords>, Option<(usize, String)>) {
        let mut groups: Vec<TopicRecords> = Vec::new();
        let mut index_of: HashMap<String, usize> = HashMap::new();
        let mut key_buf = Vec::new();
        let mut buf = Vec::with_capacity(self.bytes_per_record * (batch.events + 1));
        // Per record, in order: (group, value range or the record's own
        // value, key range).
        let mut parts = Vec::with_capacity(batch.events);
        let mut refused = None;
        for (i, (source, record)) in batch.records().enumerate() {
            let mut name = std::mem::take(&mut self.name_buf);
            self.topic.render_into(source, record, &mut name);
            let slot = match index_of.get(&name) {
                Some(&slot) => slot,
                None => match self.topic(&name) {
                    Ok(t) => {
                        groups.push((t, Vec::new()));
                        index_of.insert(name.clone(), groups.len() - 1);
                        groups.len() - 1
                    }
                    Err(e) => {
                        self.name_buf = name;
                        refused = Some((i, e.to_string()));
                        break;
                    }
                },
            };
            self.name_buf = name;
            let value = match (&record.meta, self.encoding) {
                (Meta::Row(_), _) | (_, Encoding::Json) => {
                    let start = buf.len();
                    self.encoding.encode(record, &mut buf);
                    buf.pop(); // the newline
                    Some(start..buf.len())
                }
                _ => None,
            };
            let key = self.key.key(record, &mut key_buf).map(|k| {
                let start = buf.len();
                buf.extend_from_slice(k);
                start..buf.len()
            });
            parts.push((slot, value, key));
        }
        if !parts.is_empty() {
            self.bytes_per_record = buf.len() / parts.len() + 16;
        }
        let buf = bytes::Bytes::from(buf);
        for ((slot, value, key), (_, record)) in parts.into_iter().zip(batch.records()) {
            let headers = record
                .headers
                .as_ref()
                .map(|h| {
                    h.iter()
                        .map(|(name, value)| Header {
                            name: name.clone(),
                            value: value.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            groups[slot].1.push(sluice_store::Record {
                key: key.map(|k| buf.slice(k)),
                value: value.map_or_else(|| record.value.clone(), |v| buf.slice(v)),
                headers,
                timestamp_ms: Some(record.timestamp_ms),
            });
        }
        (groups, refused)
    }
}

fn is_retryable(e: &StoreError) -> bool {
    matches!(e, StoreError::TopicFull { .. } | StoreError::Io { .. })
}

#[async_trait]
impl Sink for StoreSink {
    async fn write(&mut self, batch: &SinkBatch) -> Result<(), SinkError> {
        match self.write_pipelined(batch).await? {
            Some(durable) => durable.await,
            None => Ok(()),
        }
    }

    /// Appends and returns at once; the batch's durability (the covering
    /// group-commit fsync) resolves later, so the engine can append the
    /// next batches meanwhile instead of waiting out each fsync.
    async fn write_pipelined(
        &mut self,
        batch: &SinkBatch,
    ) -> Result<Option<PendingDurability>, SinkError> {
        let (groups, refused) = self.prepare(batch);
        let appended = tokio::task::spawn_blocking(move || {
            let mut receipts: Vec<AppendReceipt> = Vec::new();
            for (topic, records) in groups {
                receipts.extend(topic.append_routed(records)?);
            }
            Ok::<_, StoreError>(receipts)
        })
        .await
        .map_err(|e| SinkError::Fatal(anyhow::anyhow!("store append panicked: {e}")))?;
        let receipts = match appended {
            Ok(r) => r,
            Err(e) if is_retryable(&e) => return Err(SinkError::retryable(e)),
            Err(e) => {
                return Err(SinkError::Fatal(anyhow::anyhow!(
                    "sink `{}`: {e}",
                    self.name
                )))
            }
        };
        if let Some((index, why)) = refused {
            // The records before `index` count as written: durable first.
            for r in receipts {
                r.wait_durable()
                    .await
                    .map_err(|e| SinkError::Fatal(e.into()))?;
            }
            return Err(SinkError::Rejected {
                index,
                error: anyhow::anyhow!("cannot write to the store: {why}"),
            });
        }
        Ok(Some(Box::pin(async move {
            for r in receipts {
                r.wait_durable()
                    .await
                    .map_err(|e| SinkError::Fatal(e.into()))?;
            }
            Ok(())
        })))
    }
}
