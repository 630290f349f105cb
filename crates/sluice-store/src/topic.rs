//! A topic: its partitions, routing of keyed/unkeyed records, reads, waits, stats, and
//! the registry of its consumer groups. Role: the per-topic facade of the public API.
//! Touches `<topic>/` through its partitions and groups.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::config::{validate_name, TopicConfig};
use crate::error::{Result, StoreError};
use crate::partition::Partition;
use crate::partitioner::partition_for_key;
use crate::queue_group::{QueueConfig, QueueGroup, QueueState};
use crate::record::{Record, StoredRecord};
use crate::store::StoreInner;
use crate::stream_group::{StreamGroup, StreamState};
use crate::writer::AppendReceipt;

/// A handle to a topic; cheap to clone.
#[derive(Clone)]
pub struct Topic {
    pub(crate) inner: Arc<TopicInner>,
}

pub(crate) struct TopicInner {
    pub name: String,
    pub dir: PathBuf,
    pub config: TopicConfig,
    pub partitions: Vec<Arc<Partition>>,
    rr: AtomicU32,
    pub deleted: AtomicBool,
    pub store: Weak<StoreInner>,
    pub streams: Mutex<HashMap<String, Arc<StreamState>>>,
    pub queues: Mutex<HashMap<String, Arc<QueueState>>>,
    pub notify: Arc<Notify>,
}

/// Per-partition figures of [`TopicStats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionStats {
    pub partition: u32,
    pub first_offset: u64,
    /// Offset after the last readable record.
    pub end_offset: u64,
    pub bytes: u64,
    pub segments: usize,
}

/// Lag of one consumer group: records not yet committed (stream) or acked (queue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLag {
    pub group: String,
    /// `"stream"` or `"queue"`.
    pub kind: &'static str,
    pub per_partition: Vec<u64>,
    pub total: u64,
}

/// Statistics of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicStats {
    pub name: String,
    pub partitions: Vec<PartitionStats>,
    pub bytes: u64,
    pub groups: Vec<GroupLag>,
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Topic({})", self.inner.name)
    }
}

impl Topic {
    pub(crate) fn new(
        name: String,
        dir: PathBuf,
        config: TopicConfig,
        partitions: Vec<Arc<Partition>>,
        store: Weak<StoreInner>,
        notify: Arc<Notify>,
    ) -> Topic {
        Topic {
            inner: Arc::new(TopicInner {
                name,
                dir,
                config,
                partitions,
                rr: AtomicU32::new(0),
                deleted: AtomicBool::new(false),
                store,
                streams: Mutex::new(HashMap::new()),
                queues: Mutex::new(HashMap::new()),
                notify,
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn config(&self) -> &TopicConfig {
        &self.inner.config
    }

    /// Number of partitions.
    pub fn partitions(&self) -> u32 {
        self.inner.partitions.len() as u32
    }

    pub(crate) fn part(&self, partition: u32) -> Result<&Arc<Partition>> {
        if self.inner.deleted.load(Ordering::Acquire) {
            return Err(StoreError::Closed(format!(
                "topic {} was deleted",
                self.inner.name
            )));
        }
        self.inner
            .partitions
            .get(partition as usize)
            .ok_or_else(|| StoreError::UnknownPartition {
                topic: self.inner.name.clone(),
                partition,
            })
    }

    /// Partition for a record: Kafka's murmur2 of the key, round robin without a key.
    pub fn partition_for(&self, key: Option<&[u8]>) -> u32 {
        let n = self.partitions();
        match key {
            Some(k) => partition_for_key(k, n),
            None => self.inner.rr.fetch_add(1, Ordering::Relaxed) % n,
        }
    }

    /// Append a batch to one partition with one write. Returns the assigned offsets; the
    /// batch is acknowledged once [`AppendReceipt::wait_durable`] returns.
    /// Errors with [`StoreError::TopicFull`] on a full bounded topic with `on_full: reject`.
    pub fn append(&self, partition: u32, records: &[Record]) -> Result<AppendReceipt> {
        let p = self.part(partition)?;
        if self.inner.store.strong_count() == 0 {
            return Err(StoreError::Closed("store was closed".into()));
        }
        p.append(records)
    }

    /// Append records routed by key (murmur2) or round robin: one append per partition.
    /// Not atomic across partitions: on an error (e.g. `TopicFull`) the batches of the
    /// partitions before the failing one are already appended.
    pub fn append_routed(&self, records: Vec<Record>) -> Result<Vec<AppendReceipt>> {
        let n = self.partitions() as usize;
        if n == 1 {
            return Ok(vec![self.append(0, &records)?]);
        }
        let mut by_part: Vec<Vec<Record>> = (0..n).map(|_| Vec::new()).collect();
        for r in records {
            let p = self.partition_for(r.key.as_deref());
            by_part[p as usize].push(r);
        }
        let mut out = Vec::new();
        for (p, recs) in by_part.into_iter().enumerate() {
            if !recs.is_empty() {
                out.push(self.append(p as u32, &recs)?);
            }
        }
        Ok(out)
    }

    /// Read up to `max_records` (≈ `max_bytes`, at least one record) from `offset`.
    /// Only durable records are returned. Never blocks appends.
    pub fn read(
        &self,
        partition: u32,
        offset: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredRecord>> {
        self.part(partition)?.read(offset, max_records, max_bytes)
    }

    /// First offset whose timestamp is ≥ `ts_ms` (the end offset if none), via the time index.
    pub fn offset_for_time(&self, partition: u32, ts_ms: i64) -> Result<u64> {
        self.part(partition)?.offset_for_time(ts_ms)
    }

    /// Wait until a record at `offset` or later is readable in `partition` (long polling).
    /// Returns `false` on timeout.
    pub async fn wait_for(&self, partition: u32, offset: u64, timeout: Duration) -> Result<bool> {
        let p = self.part(partition)?.clone();
        p.wait_for(offset, Some(timeout)).await
    }

    /// Wait until any partition `p` has a readable record at `offsets[p]` or later (long
    /// polling over a whole topic), or until `deadline`. Returns whether data is there.
    pub async fn wait_for_any(&self, offsets: &[u64], timeout: Duration) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let n = self.inner.notify.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            let mut any = false;
            for (i, p) in self.inner.partitions.iter().enumerate() {
                p.check_failed()?;
                any |= p.end_offset() > offsets.get(i).copied().unwrap_or(0);
            }
            if any {
                return Ok(true);
            }
            if tokio::time::timeout_at(deadline, n).await.is_err() {
                return Ok(false);
            }
        }
    }

    /// First retained offset of a partition.
    pub fn first_offset(&self, partition: u32) -> Result<u64> {
        Ok(self.part(partition)?.first_offset())
    }

    /// Offset after the last readable record of a partition.
    pub fn end_offset(&self, partition: u32) -> Result<u64> {
        Ok(self.part(partition)?.end_offset())
    }

    /// fsync every partition now.
    pub fn sync(&self) -> Result<()> {
        for p in &self.inner.partitions {
            p.sync()?;
        }
        Ok(())
    }

    /// Apply retention now (the store also does it periodically). Returns segments deleted.
    pub fn apply_retention(&self) -> Result<usize> {
        let mut n = 0;
        for p in &self.inner.partitions {
            n += p.apply_retention()?;
        }
        Ok(n)
    }

    /// A stream group (publish/subscribe: committed offset per partition), created if new.
    pub fn stream_group(&self, name: &str) -> Result<StreamGroup> {
        validate_name(name)?;
        let mut m = self.inner.streams.lock();
        let st = match m.get(name) {
            Some(s) => s.clone(),
            None => {
                let s = Arc::new(StreamState::open(self, name)?);
                m.insert(name.to_string(), s.clone());
                s
            }
        };
        Ok(StreamGroup::new(self.clone(), st))
    }

    /// A queue group (competing consumers with per-record leases), created if new.
    /// The config of an existing group is replaced by `cfg`.
    pub fn queue_group(&self, name: &str, cfg: QueueConfig) -> Result<QueueGroup> {
        validate_name(name)?;
        let mut m = self.inner.queues.lock();
        let st = match m.get(name) {
            Some(s) => {
                s.set_config(cfg);
                s.clone()
            }
            None => {
                let s = Arc::new(QueueState::open(self, name, Some(cfg))?);
                m.insert(name.to_string(), s.clone());
                s
            }
        };
        Ok(QueueGroup::new(self.clone(), st))
    }

    /// A queue group keeping its stored config (the default config if the group is new).
    pub fn open_queue_group(&self, name: &str) -> Result<QueueGroup> {
        validate_name(name)?;
        let mut m = self.inner.queues.lock();
        let st = match m.get(name) {
            Some(s) => s.clone(),
            None => {
                let s = Arc::new(QueueState::open(self, name, None)?);
                m.insert(name.to_string(), s.clone());
                s
            }
        };
        Ok(QueueGroup::new(self.clone(), st))
    }

    /// Recompute, for a bounded topic, the offset below which every group of the topic
    /// has consumed (see `Partition::consumed`); called after commits and acks.
    pub(crate) fn update_consumed(&self) {
        let lim = self.inner.config.limits;
        if lim.max_messages.is_none() && lim.max_bytes.is_none() {
            return;
        }
        let streams: Vec<Arc<StreamState>> = self.inner.streams.lock().values().cloned().collect();
        let queues: Vec<Arc<QueueState>> = self.inner.queues.lock().values().cloned().collect();
        for (i, p) in self.inner.partitions.iter().enumerate() {
            let min = streams
                .iter()
                .map(|s| s.committed_of(i))
                .chain(queues.iter().map(|q| q.floor_of(i)))
                .min()
                .unwrap_or(0);
            p.consumed.store(min, Ordering::Release);
        }
    }

    /// Load every stored group of a bounded topic, so that the slowest one bounds
    /// trimming from the start (`Store::open` calls this).
    pub(crate) fn load_groups(&self) -> Result<()> {
        let lim = self.inner.config.limits;
        if lim.max_messages.is_none() && lim.max_bytes.is_none() {
            return Ok(());
        }
        for (g, kind) in self.list_groups() {
            if kind == "stream" {
                self.stream_group(&g)?;
            } else {
                self.open_queue_group(&g)?;
            }
        }
        self.update_consumed();
        Ok(())
    }

    /// Names of the groups stored for this topic: (name, "stream" | "queue").
    pub fn list_groups(&self) -> Vec<(String, &'static str)> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.inner.dir.join("groups")) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                if let Some(g) = n.strip_suffix(".stream.json") {
                    out.push((g.to_string(), "stream"));
                } else if let Some(g) = n.strip_suffix(".queue.json") {
                    out.push((g.to_string(), "queue"));
                }
            }
        }
        out.sort();
        out
    }

    /// First/end offsets, bytes, and lag of every stored group.
    pub fn stats(&self) -> Result<TopicStats> {
        let partitions: Vec<PartitionStats> = self
            .inner
            .partitions
            .iter()
            .map(|p| PartitionStats {
                partition: p.id,
                first_offset: p.first_offset(),
                end_offset: p.end_offset(),
                bytes: p.bytes(),
                segments: p.segments.read().len(),
            })
            .collect();
        let mut groups = Vec::new();
        for (g, kind) in self.list_groups() {
            let per_partition = if kind == "stream" {
                self.stream_group(&g)?.lag()
            } else {
                let st = {
                    let mut m = self.inner.queues.lock();
                    match m.get(&g) {
                        Some(s) => s.clone(),
                        None => {
                            let s = Arc::new(QueueState::open(self, &g, None)?);
                            m.insert(g.clone(), s.clone());
                            s
                        }
                    }
                };
                QueueGroup::new(self.clone(), st).lag()
            };
            groups.push(GroupLag {
                group: g,
                kind,
                total: per_partition.iter().sum(),
                per_partition,
            });
        }
        Ok(TopicStats {
            name: self.inner.name.clone(),
            bytes: partitions.iter().map(|p| p.bytes).sum(),
            partitions,
            groups,
        })
    }

    pub(crate) fn store(&self) -> Result<crate::Store> {
        self.inner
            .store
            .upgrade()
            .map(|inner| crate::Store { inner })
            .ok_or_else(|| StoreError::Closed("store was closed".into()))
    }
}
