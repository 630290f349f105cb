//! Stream consumer groups (publish/subscribe): a durable committed offset per partition,
//! an in-memory read position, and one active member per partition held by an expiring
//! lease. Role: group state and its file `<topic>/groups/<group>.stream.json` (written
//! atomically); reads go through the topic.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::atomic_file::{read_optional, write_atomic};
use crate::error::{Result, StoreError};
use crate::record::StoredRecord;
use crate::topic::Topic;

/// Default lease of a member on a partition.
pub const DEFAULT_STREAM_LEASE: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Serialize, Deserialize)]
struct StreamFile {
    /// partition → next offset to consume
    committed: BTreeMap<u32, u64>,
}

pub(crate) struct StreamState {
    name: String,
    path: PathBuf,
    inner: Mutex<StreamInner>,
    /// Serializes commit file writes (in commit order) without holding `inner`
    /// during their fsyncs, so polls never wait for a commit's disk write.
    write: Mutex<()>,
}

struct StreamInner {
    committed: Vec<Option<u64>>,
    position: Vec<Option<u64>>,
    leases: Vec<Option<(String, Instant)>>,
}

impl StreamState {
    /// Committed offset of partition `i` (0 when none).
    pub(crate) fn committed_of(&self, i: usize) -> u64 {
        self.inner
            .lock()
            .committed
            .get(i)
            .copied()
            .flatten()
            .unwrap_or(0)
    }

    pub fn open(topic: &Topic, name: &str) -> Result<StreamState> {
        let dir = topic.inner.dir.join("groups");
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let path = dir.join(format!("{name}.stream.json"));
        let file: StreamFile = match read_optional(&path)? {
            Some(b) => serde_json::from_slice(&b).map_err(|e| StoreError::BadMetadata {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            None => StreamFile::default(),
        };
        let n = topic.partitions() as usize;
        let mut committed = vec![None; n];
        for (p, o) in file.committed {
            if let Some(c) = committed.get_mut(p as usize) {
                *c = Some(o);
            }
        }
        let st = StreamState {
            name: name.to_string(),
            path,
            write: Mutex::new(()),
            inner: Mutex::new(StreamInner {
                committed,
                position: vec![None; n],
                leases: vec![None; n],
            }),
        };
        if !st.path.exists() {
            st.persist(&st.inner.lock())?;
        }
        Ok(st)
    }

    fn persist(&self, g: &StreamInner) -> Result<()> {
        write_atomic(&self.path, &Self::encode(g)?)
    }

    fn encode(g: &StreamInner) -> Result<Vec<u8>> {
        let f = StreamFile {
            committed: g
                .committed
                .iter()
                .enumerate()
                .filter_map(|(p, o)| o.map(|o| (p as u32, o)))
                .collect(),
        };
        serde_json::to_vec(&f).map_err(|e| StoreError::Invalid(e.to_string()))
    }
}

/// A stream group handle: every group sees every record, in order per partition.
#[derive(Clone)]
pub struct StreamGroup {
    topic: Topic,
    st: Arc<StreamState>,
}

impl StreamGroup {
    pub(crate) fn new(topic: Topic, st: Arc<StreamState>) -> Self {
        StreamGroup { topic, st }
    }

    pub fn name(&self) -> &str {
        &self.st.name
    }

    fn check_partition(&self, partition: u32) -> Result<usize> {
        self.topic.part(partition)?;
        Ok(partition as usize)
    }

    /// Take or renew `member`'s lease on `partition` for `ttl`. Fails with
    /// [`StoreError::LeaseHeld`] while another member's lease is unexpired. A new holder
    /// starts from the committed offset.
    pub fn acquire(&self, member: &str, partition: u32, ttl: Duration) -> Result<()> {
        let i = self.check_partition(partition)?;
        let mut g = self.st.inner.lock();
        let now = Instant::now();
        match &g.leases[i] {
            Some((m, exp)) if m != member && *exp > now => {
                return Err(StoreError::LeaseHeld {
                    group: self.st.name.clone(),
                    partition,
                    holder: m.clone(),
                })
            }
            Some((m, exp)) if m == member && *exp > now => {}
            _ => g.position[i] = None,
        }
        g.leases[i] = Some((member.to_string(), now + ttl));
        Ok(())
    }

    /// Balance partitions among live members: renew `member`'s leases and take free or
    /// expired partitions up to a fair share (`ceil(partitions / live members)`).
    /// Returns the partitions `member` holds afterwards, sorted.
    pub fn claim(&self, member: &str, ttl: Duration) -> Vec<u32> {
        let mut g = self.st.inner.lock();
        let now = Instant::now();
        let mut live: Vec<&str> = g
            .leases
            .iter()
            .flatten()
            .filter(|(_, exp)| *exp > now)
            .map(|(m, _)| m.as_str())
            .collect();
        live.push(member);
        live.sort_unstable();
        live.dedup();
        let n = g.leases.len();
        let share = n.div_ceil(live.len());
        let mut held = 0;
        for l in g.leases.iter_mut().flatten() {
            if l.0 == member && l.1 > now {
                l.1 = now + ttl;
                held += 1;
            }
        }
        for i in 0..n {
            if held >= share {
                break;
            }
            let free = g.leases[i].as_ref().is_none_or(|(_, exp)| *exp <= now);
            if free {
                g.leases[i] = Some((member.to_string(), now + ttl));
                g.position[i] = None;
                held += 1;
            }
        }
        (0..n as u32)
            .filter(|p| {
                g.leases[*p as usize]
                    .as_ref()
                    .is_some_and(|(m, _)| m == member)
            })
            .collect()
    }

    /// Give up a lease (no-op if `member` does not hold it).
    pub fn release(&self, member: &str, partition: u32) {
        let mut g = self.st.inner.lock();
        if let Some(l) = g.leases.get_mut(partition as usize) {
            if l.as_ref().is_some_and(|(m, _)| m == member) {
                *l = None;
            }
        }
    }

    /// Current holder of a partition's lease, if unexpired.
    pub fn holder(&self, partition: u32) -> Option<String> {
        let g = self.st.inner.lock();
        match g.leases.get(partition as usize)? {
            Some((m, exp)) if *exp > Instant::now() => Some(m.clone()),
            _ => None,
        }
    }

    /// Committed offset (next to consume) of a partition, if any.
    pub fn committed(&self, partition: u32) -> Option<u64> {
        self.st
            .inner
            .lock()
            .committed
            .get(partition as usize)
            .copied()
            .flatten()
    }

    /// Where the next [`StreamGroup::poll`] reads: the position, else the committed
    /// offset, else the first retained offset.
    pub fn position(&self, partition: u32) -> Result<u64> {
        let i = self.check_partition(partition)?;
        let g = self.st.inner.lock();
        match g.position[i].or(g.committed[i]) {
            Some(o) => Ok(o),
            None => self.topic.first_offset(partition),
        }
    }

    /// Move the read position (e.g. `start: latest` or a time via `Topic::offset_for_time`).
    pub fn seek(&self, partition: u32, offset: u64) -> Result<()> {
        let i = self.check_partition(partition)?;
        self.st.inner.lock().position[i] = Some(offset);
        Ok(())
    }

    /// Read the next records of `partition` for `member`, taking/renewing its lease
    /// (`DEFAULT_STREAM_LEASE`), and advance the in-memory position (not the commit).
    /// If retention removed the position, it restarts from the first retained offset;
    /// unreadable (corrupt) records are skipped and logged.
    pub fn poll(
        &self,
        member: &str,
        partition: u32,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredRecord>> {
        self.acquire(member, partition, DEFAULT_STREAM_LEASE)?;
        let mut pos = self.position(partition)?;
        let recs = loop {
            match self.topic.read(partition, pos, max_records, max_bytes) {
                Err(StoreError::OffsetOutOfRange { first, .. }) => pos = first,
                Err(StoreError::Corrupt {
                    resume_at: Some(n),
                    offset,
                    ..
                }) if n > pos => {
                    tracing::error!(topic = self.topic.name(), partition, offset, resume_at = n,
                        group = %self.st.name, "stream group skips corrupt records");
                    pos = n;
                }
                r => break r?,
            }
        };
        let next = recs.last().map_or(pos, |r| r.offset + 1);
        self.st.inner.lock().position[partition as usize] = Some(next);
        Ok(recs)
    }

    /// Durably commit `next_offset` (the next record to consume) for `partition`.
    /// Only the lease holder (or anyone while the partition is unleased) may commit.
    pub fn commit(&self, member: &str, partition: u32, next_offset: u64) -> Result<()> {
        let i = self.check_partition(partition)?;
        let writing = self.st.write.lock();
        let bytes = {
            let mut g = self.st.inner.lock();
            if let Some((m, exp)) = &g.leases[i] {
                if m != member && *exp > Instant::now() {
                    return Err(StoreError::LeaseHeld {
                        group: self.st.name.clone(),
                        partition,
                        holder: m.clone(),
                    });
                }
            }
            g.committed[i] = Some(next_offset);
            StreamState::encode(&g)?
        };
        let r = write_atomic(&self.st.path, &bytes);
        drop(writing);
        self.topic.update_consumed();
        r
    }

    /// Records not yet committed, per partition.
    pub fn lag(&self) -> Vec<u64> {
        let g = self.st.inner.lock();
        (0..self.topic.partitions())
            .map(|p| {
                let end = self.topic.end_offset(p).unwrap_or(0);
                let first = self.topic.first_offset(p).unwrap_or(0);
                end.saturating_sub(g.committed[p as usize].unwrap_or(first).max(first))
            })
            .collect()
    }
}
