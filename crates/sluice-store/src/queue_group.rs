//! Queue consumer groups (point-to-point): each record is leased to one consumer; ack
//! completes it, nack or lease expiry redelivers it, and after `max_deliveries` it goes
//! to the dead-letter topic. Role: group state and its file
//! `<topic>/groups/<group>.queue.json` (written atomically on every ack/nack/redelivery);
//! reads go through the topic, dead letters through the store. Order is not promised.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::atomic_file::{read_optional, write_atomic};
use crate::config::TopicConfig;
use crate::error::{Result, StoreError};
use crate::record::{Header, Record, StoredRecord};
use crate::topic::Topic;

/// Settings of a queue group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueConfig {
    /// Visibility timeout: a leased record not acked within it is redelivered.
    pub lease_ms: u64,
    /// Deliveries after which a record goes to the dead-letter topic instead.
    pub max_deliveries: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            lease_ms: 30_000,
            max_deliveries: 5,
        }
    }
}

/// A record leased to a consumer; ack or nack it by `(partition, record.offset)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedRecord {
    pub partition: u32,
    /// 1 for the first delivery, 2 for the first redelivery, ...
    pub delivery: u32,
    pub record: StoredRecord,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PartFile {
    floor: u64,
    next: u64,
    done: Vec<u64>,
    deliveries: BTreeMap<u64, u32>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct QueueFile {
    config: QueueConfig,
    partitions: Vec<PartFile>,
}

struct Lease {
    deadline: Instant,
    deliveries: u32,
}

#[derive(Default)]
struct QPart {
    /// Every offset below is acked or dead-lettered.
    floor: u64,
    /// Next offset never delivered.
    next: u64,
    done: BTreeSet<u64>,
    inflight: BTreeMap<u64, Lease>,
    /// offset → deliveries so far, waiting for redelivery.
    redeliver: BTreeMap<u64, u32>,
}

pub(crate) struct QueueState {
    name: String,
    path: PathBuf,
    cfg: Mutex<QueueConfig>,
    parts: Mutex<Vec<QPart>>,
    rr: AtomicU32,
    /// Sequence of state snapshots (taken under `parts`) and the last one written:
    /// files are written outside `parts`, newest wins, so polls never wait for an
    /// ack's fsync and an older snapshot never overwrites a newer one.
    seq: AtomicU64,
    written: Mutex<u64>,
}

impl QueueState {
    pub fn open(topic: &Topic, name: &str, cfg: Option<QueueConfig>) -> Result<QueueState> {
        let dir = topic.inner.dir.join("groups");
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let path = dir.join(format!("{name}.queue.json"));
        let file: QueueFile = match read_optional(&path)? {
            Some(b) => serde_json::from_slice(&b).map_err(|e| StoreError::BadMetadata {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            None => QueueFile::default(),
        };
        let mut parts: Vec<QPart> = Vec::new();
        for p in 0..topic.partitions() {
            let first = topic.first_offset(p)?;
            let mut q = QPart {
                floor: first,
                next: first,
                ..Default::default()
            };
            if let Some(f) = file.partitions.get(p as usize) {
                q.floor = f.floor.max(first);
                q.next = f.next.max(q.floor);
                q.done = f.done.iter().copied().filter(|o| *o >= q.floor).collect();
                for o in q.floor..q.next {
                    if !q.done.contains(&o) {
                        q.redeliver
                            .insert(o, f.deliveries.get(&o).copied().unwrap_or(1));
                    }
                }
            }
            parts.push(q);
        }
        let st = QueueState {
            name: name.to_string(),
            path,
            cfg: Mutex::new(cfg.unwrap_or(file.config)),
            parts: Mutex::new(parts),
            rr: AtomicU32::new(0),
            seq: AtomicU64::new(0),
            written: Mutex::new(0),
        };
        if !st.path.exists() || cfg.is_some() {
            st.persist(&st.parts.lock())?;
        }
        Ok(st)
    }

    /// Every offset of partition `i` below this is acked or dead-lettered.
    pub(crate) fn floor_of(&self, i: usize) -> u64 {
        self.parts.lock().get(i).map_or(0, |q| q.floor)
    }

    pub fn set_config(&self, cfg: QueueConfig) {
        *self.cfg.lock() = cfg;
    }

    fn persist(&self, parts: &[QPart]) -> Result<()> {
        let snap = self.snapshot(parts)?;
        self.write(snap)
    }

    /// Write a snapshot unless a newer one is already on disk.
    fn write(&self, (seq, bytes): (u64, Vec<u8>)) -> Result<()> {
        let mut w = self.written.lock();
        if *w >= seq {
            return Ok(());
        }
        write_atomic(&self.path, &bytes)?;
        *w = seq;
        Ok(())
    }

    /// Encode the state; call with the `parts` lock held.
    fn snapshot(&self, parts: &[QPart]) -> Result<(u64, Vec<u8>)> {
        let f = QueueFile {
            config: *self.cfg.lock(),
            partitions: parts
                .iter()
                .map(|q| PartFile {
                    floor: q.floor,
                    next: q.next,
                    done: q.done.iter().copied().collect(),
                    deliveries: q
                        .inflight
                        .iter()
                        .map(|(o, l)| (*o, l.deliveries))
                        .chain(q.redeliver.iter().map(|(o, d)| (*o, *d)))
                        .collect(),
                })
                .collect(),
        };
        let b = serde_json::to_vec(&f).map_err(|e| StoreError::Invalid(e.to_string()))?;
        Ok((self.seq.fetch_add(1, Ordering::AcqRel) + 1, b))
    }
}

impl QPart {
    fn complete(&mut self, off: u64) -> bool {
        if off < self.floor || off >= self.next || self.done.contains(&off) {
            return false;
        }
        self.inflight.remove(&off);
        self.redeliver.remove(&off);
        self.done.insert(off);
        while self.done.remove(&self.floor) {
            self.floor += 1;
        }
        true
    }

    /// Forget everything below `first` (removed by retention or drop_oldest).
    fn clamp(&mut self, first: u64) {
        if self.floor < first {
            self.floor = first;
            self.next = self.next.max(first);
            self.done = self.done.split_off(&first);
            self.inflight = self.inflight.split_off(&first);
            self.redeliver = self.redeliver.split_off(&first);
            while self.done.remove(&self.floor) {
                self.floor += 1;
            }
        }
    }
}

/// A queue group handle: competing consumers, each record leased to one of them.
/// Calls do blocking file I/O: from async code use `spawn_blocking`.
#[derive(Clone)]
pub struct QueueGroup {
    topic: Topic,
    st: Arc<QueueState>,
}

impl QueueGroup {
    pub(crate) fn new(topic: Topic, st: Arc<QueueState>) -> Self {
        QueueGroup { topic, st }
    }

    pub fn name(&self) -> &str {
        &self.st.name
    }

    /// Lease up to `max_records` records to `consumer`: due redeliveries first, then new
    /// records across partitions. Records past `max_deliveries` go to the dead-letter topic.
    pub fn poll(&self, consumer: &str, max_records: usize) -> Result<Vec<LeasedRecord>> {
        let _ = consumer; // leases are per record; the consumer name is informational
        let cfg = *self.st.cfg.lock();
        let lease = Duration::from_millis(cfg.lease_ms);
        let mut parts = self.st.parts.lock();
        let now = Instant::now();
        let n = parts.len();
        let mut out = Vec::new();
        let mut dirty = false;
        for (p, q) in parts.iter_mut().enumerate() {
            q.clamp(self.topic.first_offset(p as u32)?);
            let expired: Vec<u64> = q
                .inflight
                .iter()
                .filter(|(_, l)| l.deadline <= now)
                .map(|(o, _)| *o)
                .collect();
            for o in expired {
                if let Some(l) = q.inflight.remove(&o) {
                    q.redeliver.insert(o, l.deliveries);
                }
            }
        }
        for (p, q) in parts.iter_mut().enumerate() {
            while out.len() < max_records {
                let Some((off, d)) = q.redeliver.pop_first() else {
                    break;
                };
                dirty = true;
                let rec = match self.topic.read(p as u32, off, 1, 1) {
                    Ok(mut v) if v.first().is_some_and(|r| r.offset == off) => v.remove(0),
                    Ok(_) | Err(StoreError::OffsetOutOfRange { .. }) => {
                        q.complete(off);
                        continue;
                    }
                    Err(e) => {
                        q.redeliver.insert(off, d);
                        return Err(e);
                    }
                };
                if d >= cfg.max_deliveries {
                    self.dead_letter(p as u32, &rec, d)?;
                    q.complete(off);
                    continue;
                }
                q.inflight.insert(
                    off,
                    Lease {
                        deadline: now + lease,
                        deliveries: d + 1,
                    },
                );
                out.push(LeasedRecord {
                    partition: p as u32,
                    delivery: d + 1,
                    record: rec,
                });
            }
        }
        let start = self.st.rr.fetch_add(1, Ordering::Relaxed) as usize;
        for k in 0..n {
            if out.len() >= max_records {
                break;
            }
            let p = (start + k) % n;
            let q = &mut parts[p];
            let recs = match self
                .topic
                .read(p as u32, q.next, max_records - out.len(), 4 << 20)
            {
                Err(StoreError::Corrupt {
                    resume_at: Some(n),
                    offset,
                    ..
                }) => {
                    // Unreadable records cannot be delivered: skip to the next segment.
                    tracing::error!(topic = self.topic.name(), partition = p, offset, resume_at = n,
                        group = %self.st.name, "queue group skips corrupt records");
                    for o in q.next..n {
                        q.done.insert(o);
                    }
                    q.next = n;
                    while q.done.remove(&q.floor) {
                        q.floor += 1;
                    }
                    dirty = true;
                    continue;
                }
                r => r?,
            };
            for r in recs {
                q.next = r.offset + 1;
                if q.done.contains(&r.offset) {
                    continue;
                }
                q.inflight.insert(
                    r.offset,
                    Lease {
                        deadline: now + lease,
                        deliveries: 1,
                    },
                );
                out.push(LeasedRecord {
                    partition: p as u32,
                    delivery: 1,
                    record: r,
                });
            }
        }
        if dirty {
            let snap = self.st.snapshot(&parts)?;
            drop(parts);
            self.st.write(snap)?;
            self.topic.update_consumed();
        }
        Ok(out)
    }

    /// Wait until a poll may return something: records past those already delivered, a
    /// pending redelivery, or a lease that expires. Returns `false` on timeout.
    pub async fn wait(&self, timeout: Duration) -> Result<bool> {
        let (nexts, pending, earliest) = {
            let parts = self.st.parts.lock();
            (
                parts.iter().map(|q| q.next).collect::<Vec<u64>>(),
                parts.iter().any(|q| !q.redeliver.is_empty()),
                parts
                    .iter()
                    .flat_map(|q| q.inflight.values().map(|l| l.deadline))
                    .min(),
            )
        };
        if pending {
            return Ok(true);
        }
        let now = Instant::now();
        let t = earliest.map_or(timeout, |d| timeout.min(d.saturating_duration_since(now)));
        let got = self.topic.wait_for_any(&nexts, t).await?;
        Ok(got || earliest.is_some_and(|d| d <= Instant::now()))
    }

    /// Acknowledge records `(partition, offset)`; durable when this returns.
    /// Returns how many were newly completed.
    pub fn ack(&self, records: &[(u32, u64)]) -> Result<usize> {
        let mut parts = self.st.parts.lock();
        let mut n = 0;
        for &(p, o) in records {
            if let Some(q) = parts.get_mut(p as usize) {
                n += q.complete(o) as usize;
            }
        }
        let snap = self.st.snapshot(&parts)?;
        drop(parts);
        self.st.write(snap)?;
        self.topic.update_consumed();
        Ok(n)
    }

    /// Give records back for redelivery now (they count as delivered).
    pub fn nack(&self, records: &[(u32, u64)]) -> Result<()> {
        let mut parts = self.st.parts.lock();
        for &(p, o) in records {
            if let Some(q) = parts.get_mut(p as usize) {
                if let Some(l) = q.inflight.remove(&o) {
                    q.redeliver.insert(o, l.deliveries);
                }
            }
        }
        let snap = self.st.snapshot(&parts)?;
        drop(parts);
        self.st.write(snap)
    }

    /// Records not yet acked, per partition.
    pub fn lag(&self) -> Vec<u64> {
        let parts = self.st.parts.lock();
        parts
            .iter()
            .enumerate()
            .map(|(p, q)| {
                let end = self.topic.end_offset(p as u32).unwrap_or(0);
                end.saturating_sub(q.floor)
                    .saturating_sub(q.done.len() as u64)
            })
            .collect()
    }

    /// Name of the dead-letter topic of this group's topic.
    pub fn dead_letter_topic(&self) -> String {
        self.topic
            .config()
            .dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", self.topic.name()))
    }

    fn dead_letter(&self, partition: u32, rec: &StoredRecord, deliveries: u32) -> Result<()> {
        let name = self.dead_letter_topic();
        let dlq = self
            .topic
            .store()?
            .get_or_create_topic(&name, TopicConfig::default())?;
        let mut headers = rec.headers.clone();
        for (k, v) in [
            ("sluice.dlq.topic", self.topic.name().to_string()),
            ("sluice.dlq.partition", partition.to_string()),
            ("sluice.dlq.offset", rec.offset.to_string()),
            ("sluice.dlq.group", self.st.name.clone()),
            ("sluice.dlq.deliveries", deliveries.to_string()),
        ] {
            headers.push(Header {
                name: k.to_string(),
                value: Bytes::from(v),
            });
        }
        let r = Record {
            key: rec.key.clone(),
            value: rec.value.clone(),
            headers,
            timestamp_ms: Some(rec.timestamp_ms),
        };
        let p = dlq.partition_for(r.key.as_deref());
        dlq.append(p, &[r])?;
        dlq.sync()
    }
}
