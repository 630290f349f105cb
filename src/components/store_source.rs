//! Source `store`: consumes topics of the embedded store in a consumer
//! group. `mode: stream` (publish/subscribe: every group sees every record,
//! in order per partition; offsets committed only once downstream sinks
//! acknowledged) or `mode: queue` (point-to-point: each record leased to one
//! consumer, acked when delivered, nacked for redelivery when not).
//! `topic` may be a glob (`cdc.shop.*`); topics created later are picked up.
//! With `url:` (and `auth_token:`) it consumes another daemon's store over
//! its API instead (`store_source/remote.rs`).
//! Touches the store through its handle, on the blocking pool.

mod remote;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use globset::{Glob, GlobMatcher};
use schemars::JsonSchema;
use serde::Deserialize;
use sluice_core::checkpoint::Throttle;
use sluice_core::config::{ComponentOptions, ConfigError};
use sluice_core::{
    AckRef, AckStatus, AckTracker, BuildContext, Record, Source, SourceContext, SourceFactory,
};
use sluice_store::{QueueConfig, QueueGroup, Store, StoredRecord, StreamGroup, Topic};

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Stream,
    Queue,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreSourceOptions {
    /// A topic name or a glob of names.
    pub topic: String,
    pub group: String,
    #[serde(default)]
    pub mode: Mode,
    /// Where a stream group without a committed offset starts:
    /// `earliest` (default), `latest`, or an RFC 3339 time.
    #[serde(default = "default_start")]
    pub start: String,
    /// Records per batch (default 1000).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// This consumer's name in the group (default: the source name).
    pub member: Option<String>,
    /// Queue mode: a record not acknowledged within this is redelivered.
    #[serde(default = "default_lease", with = "sluice_core::config::duration_ms")]
    #[schemars(with = "sluice_core::schema::DurationMs")]
    pub lease_ms: u64,
    /// Queue mode: deliveries before a record goes to the dead-letter topic.
    #[serde(default = "default_max_deliveries")]
    pub max_deliveries: u32,
    /// Consume another daemon's store over its API (`http://host:8686`).
    pub url: Option<String>,
    /// Bearer token for `url`.
    pub auth_token: Option<String>,
}

fn default_start() -> String {
    "earliest".into()
}
fn default_max_batch() -> usize {
    1000
}
fn default_lease() -> u64 {
    30_000
}
fn default_max_deliveries() -> u32 {
    5
}

/// Where a new stream group starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Earliest,
    Latest,
    Time(i64),
}

pub fn parse_start(text: &str) -> Result<Start, String> {
    match text {
        "earliest" => Ok(Start::Earliest),
        "latest" => Ok(Start::Latest),
        t => humantime::parse_rfc3339_weak(t)
            .map(|st| {
                Start::Time(
                    st.duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64),
                )
            })
            .map_err(|_| {
                format!("start must be `earliest`, `latest` or an RFC 3339 time, not `{t}`")
            }),
    }
}

pub struct StoreSourceFactory;

impl SourceFactory for StoreSourceFactory {
    fn kind(&self) -> &'static str {
        "store"
    }

    fn options_schema(
        &self,
        generator: &mut schemars::SchemaGenerator,
    ) -> Option<schemars::Schema> {
        Some(generator.subschema_for::<StoreSourceOptions>())
    }

    fn build(
        &self,
        cx: &BuildContext,
        options: &ComponentOptions,
    ) -> Result<Box<dyn Source>, ConfigError> {
        let opts: StoreSourceOptions = options.deserialize()?;
        let err = |key: &str, m: String| ConfigError::new(options.location_of(key).clone(), m);
        let start = parse_start(&opts.start).map_err(|m| err("start", m))?;
        let matcher = Glob::new(&opts.topic)
            .map_err(|e| err("topic", format!("invalid topic glob: {e}")))?
            .compile_matcher();
        sluice_store::validate_name(&opts.group)
            .map_err(|e| err("group", format!("group: {e}")))?;
        if let Some(u) = &opts.url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(err(
                    "url",
                    format!("url must start with http:// or https://, not `{u}`"),
                ));
            }
            if matches!(start, Start::Time(_)) {
                return Err(err(
                    "start",
                    "a remote store source starts at `earliest` or `latest`".into(),
                ));
            }
        }
        if opts.max_batch == 0 {
            return Err(err("max_batch", "max_batch must be at least 1".into()));
        }
        Ok(Box::new(StoreSource {
            member: opts.member.clone().unwrap_or_else(|| cx.name.to_string()),
            store: cx.resources.get::<Store>(),
            matcher,
            start,
            opts,
        }))
    }
}

pub struct StoreSource {
    opts: StoreSourceOptions,
    member: String,
    store: Option<Arc<Store>>,
    matcher: GlobMatcher,
    start: Start,
}

fn to_record(r: StoredRecord) -> Record {
    let headers = (!r.headers.is_empty())
        .then(|| Arc::new(r.headers.into_iter().map(|h| (h.name, h.value)).collect()));
    Record {
        key: r.key,
        value: r.value,
        headers,
        timestamp_ms: r.timestamp_ms,
        ..Record::default()
    }
}

/// One partition a stream group member reads.
struct Partition {
    topic: Topic,
    group: StreamGroup,
    partition: u32,
    tracker: AckTracker<u64>,
    /// Released (acknowledged) but not yet committed.
    to_commit: Option<u64>,
}

impl StoreSource {
    fn matching_topics(&self, store: &Store) -> Vec<String> {
        store
            .list_topics()
            .into_iter()
            .filter(|t| self.matcher.is_match(t))
            .collect()
    }

    async fn run_stream(&self, store: Arc<Store>, cx: &SourceContext) -> anyhow::Result<()> {
        let mut parts: HashMap<(String, u32), Partition> = HashMap::new();
        let mut groups: HashMap<String, (Topic, StreamGroup)> = HashMap::new();
        let mut commit_throttle = Throttle::new(cx.checkpoint_interval);
        let mut refresh = Throttle::new(Duration::from_secs(1));
        let mut first = true;
        while !cx.shutdown.is_cancelled() {
            if first || refresh.due() {
                first = false;
                self.refresh_stream(&store, &mut groups, &mut parts)?;
            }
            let mut read_any = false;
            for ((tname, p), part) in parts.iter_mut() {
                let (group, member, p2, max) = (
                    part.group.clone(),
                    self.member.clone(),
                    *p,
                    self.opts.max_batch,
                );
                let polled =
                    tokio::task::spawn_blocking(move || group.poll(&member, p2, max, 8 << 20))
                        .await?;
                let records = match polled {
                    Ok(r) => r,
                    Err(sluice_store::StoreError::LeaseHeld { .. }) => continue,
                    Err(e) => return Err(anyhow::anyhow!("reading {tname}/{p}: {e}")),
                };
                let Some(last) = records.last().map(|r| r.offset) else {
                    continue;
                };
                read_any = true;
                let records: Vec<Record> = records.into_iter().map(to_record).collect();
                let bytes = records.iter().map(|r| r.value.len() as u64).sum();
                cx.metrics.record_in(records.len() as u64, bytes);
                let ack = part.tracker.track(last + 1);
                tokio::select! {
                    sent = cx.output.send(records, ack) => if sent.is_err() { break },
                    _ = cx.shutdown.cancelled() => break,
                }
            }
            for part in parts.values_mut() {
                if let Some(next) = part.tracker.poll() {
                    part.to_commit = Some(next);
                }
            }
            if commit_throttle.due() {
                self.commit(&mut parts).await?;
            }
            if !read_any {
                let waits: Vec<_> = groups
                    .values()
                    .map(|(topic, group)| {
                        let offsets: Vec<u64> = (0..topic.partitions())
                            .map(|p| group.position(p).unwrap_or(0))
                            .collect();
                        let topic = topic.clone();
                        Box::pin(async move {
                            topic
                                .wait_for_any(&offsets, Duration::from_millis(500))
                                .await
                        })
                    })
                    .collect();
                idle_wait(waits, &cx.shutdown).await;
            }
        }
        for part in parts.values_mut() {
            if let Some(next) = part.tracker.settle().await {
                part.to_commit = Some(next);
            }
        }
        self.commit(&mut parts).await
    }

    /// Picks up new matching topics and claims this member's partitions.
    fn refresh_stream(
        &self,
        store: &Store,
        groups: &mut HashMap<String, (Topic, StreamGroup)>,
        parts: &mut HashMap<(String, u32), Partition>,
    ) -> anyhow::Result<()> {
        for name in self.matching_topics(store) {
            if groups.contains_key(&name) {
                continue;
            }
            let topic = store.topic(&name)?;
            let group = topic.stream_group(&self.opts.group)?;
            for p in 0..topic.partitions() {
                if group.committed(p).is_none() {
                    let at = match self.start {
                        Start::Earliest => None,
                        Start::Latest => Some(topic.end_offset(p)?),
                        Start::Time(ms) => Some(topic.offset_for_time(p, ms)?),
                    };
                    if let Some(at) = at {
                        group.seek(p, at)?;
                    }
                }
            }
            tracing::info!(topic = %name, group = %self.opts.group, "consuming");
            groups.insert(name, (topic, group));
        }
        for (name, (topic, group)) in groups.iter() {
            for p in group.claim(&self.member, sluice_store::DEFAULT_STREAM_LEASE) {
                parts.entry((name.clone(), p)).or_insert_with(|| Partition {
                    topic: topic.clone(),
                    group: group.clone(),
                    partition: p,
                    tracker: AckTracker::new(),
                    to_commit: None,
                });
            }
        }
        Ok(())
    }

    async fn commit(&self, parts: &mut HashMap<(String, u32), Partition>) -> anyhow::Result<()> {
        let due: Vec<(StreamGroup, u32, u64, String)> = parts
            .values_mut()
            .filter_map(|p| {
                p.to_commit
                    .take()
                    .map(|o| (p.group.clone(), p.partition, o, p.topic.name().to_string()))
            })
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let member = self.member.clone();
        tokio::task::spawn_blocking(move || {
            for (group, p, offset, topic) in due {
                group
                    .commit(&member, p, offset)
                    .map_err(|e| anyhow::anyhow!("committing {topic}/{p} at {offset}: {e}"))?;
            }
            Ok::<_, anyhow::Error>(())
        })
        .await?
    }

    async fn run_queue(&self, store: Arc<Store>, cx: &SourceContext) -> anyhow::Result<()> {
        let cfg = QueueConfig {
            lease_ms: self.opts.lease_ms,
            max_deliveries: self.opts.max_deliveries,
        };
        let mut groups: HashMap<String, QueueGroup> = HashMap::new();
        let mut refresh = Throttle::new(Duration::from_secs(1));
        let mut first = true;
        let mut in_flight = tokio::task::JoinSet::new();
        while !cx.shutdown.is_cancelled() {
            if first || refresh.due() {
                first = false;
                for name in self.matching_topics(&store) {
                    if let std::collections::hash_map::Entry::Vacant(slot) = groups.entry(name) {
                        let g = store
                            .topic(slot.key())?
                            .queue_group(&self.opts.group, cfg)?;
                        tracing::info!(topic = %slot.key(), group = %self.opts.group, "consuming as a queue");
                        slot.insert(g);
                    }
                }
            }
            let mut read_any = false;
            for (name, group) in &groups {
                let (g, member, max) = (group.clone(), self.member.clone(), self.opts.max_batch);
                let leased = tokio::task::spawn_blocking(move || g.poll(&member, max))
                    .await?
                    .map_err(|e| anyhow::anyhow!("reading {name}: {e}"))?;
                if leased.is_empty() {
                    continue;
                }
                read_any = true;
                let ids: Vec<(u32, u64)> = leased
                    .iter()
                    .map(|l| (l.partition, l.record.offset))
                    .collect();
                let records: Vec<Record> =
                    leased.into_iter().map(|l| to_record(l.record)).collect();
                let bytes = records.iter().map(|r| r.value.len() as u64).sum();
                cx.metrics.record_in(records.len() as u64, bytes);
                let (ack, done) = AckRef::notify();
                if cx.output.send(records, ack).await.is_err() {
                    break;
                }
                let g = group.clone();
                in_flight.spawn(async move {
                    let delivered = matches!(done.await, Ok(AckStatus::Delivered));
                    let _ = tokio::task::spawn_blocking(move || {
                        if delivered {
                            g.ack(&ids).map(|_| ())
                        } else {
                            g.nack(&ids)
                        }
                    })
                    .await;
                });
            }
            while in_flight.try_join_next().is_some() {}
            if !read_any {
                let waits: Vec<_> = groups
                    .values()
                    .map(|g| {
                        let g = g.clone();
                        Box::pin(async move { g.wait(Duration::from_millis(500)).await })
                    })
                    .collect();
                idle_wait(waits, &cx.shutdown).await;
            }
        }
        while in_flight.join_next().await.is_some() {}
        Ok(())
    }
}

/// Waits until one of `waits` (new data in a topic) finishes, half a
/// second passes, or shutdown.
async fn idle_wait<F: std::future::Future + Unpin>(
    waits: Vec<F>,
    shutdown: &tokio_util::sync::CancellationToken,
) {
    let any = async {
        if waits.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        } else {
            futures::future::select_all(waits).await;
        }
    };
    tokio::select! {
        _ = any => {}
        _ = shutdown.cancelled() => {}
    }
}

#[async_trait]
impl Source for StoreSource {
    async fn run(self: Box<Self>, cx: SourceContext) -> anyhow::Result<()> {
        if let Some(url) = self.opts.url.clone() {
            return self.run_remote(&url, &cx).await;
        }
        let store = self
            .store
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the embedded store is not open in this process"))?;
        match self.opts.mode {
            Mode::Stream => self.run_stream(store, &cx).await,
            Mode::Queue => self.run_queue(store, &cx).await,
        }
    }
}
