//! One partition: its segment list, durability state and reads. Role: open/recover the
//! partition directory, serve reads (by offset, by time) without the writer lock, group
//! commit (`sync`), and wake waiters. Appends, retention and bounds live in `writer.rs`.
//! Touches only `<topic>/<partition>/`.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use tokio::sync::Notify;

use crate::config::TopicConfig;
use crate::error::{Result, StoreError};
use crate::frame::{self, Check};
use crate::record::StoredRecord;
use crate::segment::Segment;
use crate::writer::Writer;

/// Something recovery found and fixed or reported while opening the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryEvent {
    pub topic: String,
    pub partition: u32,
    pub path: PathBuf,
    pub kind: RecoveryKind,
}

/// Kinds of [`RecoveryEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryKind {
    /// A torn or garbage tail was cut off the segment.
    TruncatedTail { bytes: u64 },
    /// The sparse index / time index was missing or damaged and was rebuilt.
    IndexRebuilt,
    /// A bad frame inside a sealed segment; records before it are still readable.
    CorruptRecord {
        offset: u64,
        position: u64,
        reason: String,
    },
}

pub(crate) struct Partition {
    pub topic: String,
    pub id: u32,
    pub dir: PathBuf,
    pub cfg: TopicConfig,
    pub segments: RwLock<Vec<Arc<Segment>>>,
    pub writer: Mutex<Writer>,
    /// Offset after the last record written to the OS.
    pub written: AtomicU64,
    /// Offset after the last durable record; readers see records below it only.
    pub durable: AtomicU64,
    /// First retained offset (logical: drop_oldest may move it inside a segment).
    pub start: AtomicU64,
    /// Offset below which every consumer group has consumed (0 while there is no
    /// group): a bounded topic with `on_full: reject` trims below it to make room.
    pub consumed: AtomicU64,
    sync_lock: Mutex<Instant>,
    notify: Notify,
    /// Shared by all partitions of the topic: wakes "any partition" waiters.
    pub topic_notify: Arc<Notify>,
    wake_mx: Mutex<()>,
    wake_cv: Condvar,
    pub failed: Mutex<Option<String>>,
}

impl Partition {
    /// Open (or create) the partition directory, recovering every segment.
    pub fn open(
        topic: &str,
        id: u32,
        dir: PathBuf,
        cfg: TopicConfig,
        clean: bool,
        events: &mut Vec<RecoveryEvent>,
        topic_notify: Arc<Notify>,
    ) -> Result<Arc<Partition>> {
        fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let mut bases = Vec::new();
        for ent in fs::read_dir(&dir).map_err(|e| StoreError::io(&dir, e))? {
            let ent = ent.map_err(|e| StoreError::io(&dir, e))?;
            let name = ent.file_name().to_string_lossy().to_string();
            if let Some(stem) = name.strip_suffix(".log") {
                if let Ok(b) = stem.parse::<u64>() {
                    bases.push(b);
                }
            } else if name.ends_with(".tmp") {
                let _ = fs::remove_file(ent.path());
            }
        }
        bases.sort_unstable();
        remove_orphan_indexes(&dir, &bases)?;
        let persisted_start = crate::writer::load_start(&dir);
        let mut segs = Vec::with_capacity(bases.len().max(1));
        for (i, &base) in bases.iter().enumerate() {
            let last = i + 1 == bases.len();
            let verify = last || (!clean && i + 2 == bases.len());
            let (seg, rep) = Segment::open(
                &dir,
                base,
                cfg.index_interval_bytes,
                verify,
                bases.get(i + 1).copied(),
            )?;
            let mut ev = |kind| {
                events.push(RecoveryEvent {
                    topic: topic.to_string(),
                    partition: id,
                    path: seg.log_path.clone(),
                    kind,
                })
            };
            if rep.truncated_bytes > 0 {
                tracing::warn!(topic, partition = id, path = %seg.log_path.display(),
                    bytes = rep.truncated_bytes, "store recovery: truncated torn tail");
                ev(RecoveryKind::TruncatedTail {
                    bytes: rep.truncated_bytes,
                });
            }
            if rep.index_rebuilt {
                ev(RecoveryKind::IndexRebuilt);
            }
            if let Some((offset, position, reason)) = rep.corrupt {
                tracing::error!(topic, partition = id, offset, position, %reason,
                    "store recovery: corrupt record in sealed segment");
                ev(RecoveryKind::CorruptRecord {
                    offset,
                    position,
                    reason,
                });
            }
            segs.push(Arc::new(seg));
        }
        if segs.is_empty() {
            segs.push(Arc::new(Segment::create(
                &dir,
                persisted_start.unwrap_or(0),
            )?));
            crate::atomic_file::sync_dir(&dir)?;
        }
        let Some(active) = segs.last().cloned() else {
            return Err(StoreError::Invalid("partition without segment".into()));
        };
        let end = active.end();
        let first = segs[0].base;
        let start = persisted_start
            .filter(|s| *s >= first && *s <= end)
            .unwrap_or(first);
        let writer = Writer::new(&dir, &active, &cfg, &segs, start)?;
        Ok(Arc::new(Partition {
            topic: topic.to_string(),
            id,
            dir,
            cfg,
            segments: RwLock::new(segs),
            writer: Mutex::new(writer),
            written: AtomicU64::new(end),
            durable: AtomicU64::new(end),
            start: AtomicU64::new(start),
            consumed: AtomicU64::new(0),
            sync_lock: Mutex::new(Instant::now()),
            notify: Notify::new(),
            topic_notify,
            wake_mx: Mutex::new(()),
            wake_cv: Condvar::new(),
            failed: Mutex::new(None),
        }))
    }

    /// First retained offset.
    pub fn first_offset(&self) -> u64 {
        self.start.load(Ordering::Acquire)
    }

    /// Offset after the last readable (durable) record.
    pub fn end_offset(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Bytes on disk in this partition's segments.
    pub fn bytes(&self) -> u64 {
        self.segments.read().iter().map(|s| s.size()).sum()
    }

    pub(crate) fn check_failed(&self) -> Result<()> {
        match &*self.failed.lock() {
            Some(r) => Err(StoreError::Failed {
                topic: self.topic.clone(),
                partition: self.id,
                reason: r.clone(),
            }),
            None => Ok(()),
        }
    }

    pub(crate) fn fail(&self, why: String) {
        self.failed.lock().get_or_insert(why);
        self.wake();
    }

    /// Wake async and blocking waiters after `durable` advanced (or a failure).
    pub(crate) fn wake(&self) {
        self.notify.notify_waiters();
        self.topic_notify.notify_waiters();
        let _g = self.wake_mx.lock();
        self.wake_cv.notify_all();
    }

    /// Group commit: make everything written so far durable with one fsync.
    pub fn sync(&self) -> Result<()> {
        let mut last = self.sync_lock.lock();
        let target = self.written.load(Ordering::Acquire);
        if self.durable.load(Ordering::Acquire) >= target {
            return self.check_failed();
        }
        let active = self.segments.read().last().cloned();
        if let Some(seg) = active {
            if let Err(e) = seg.file.sync_data() {
                let err = StoreError::io(&seg.log_path, e);
                self.fail(err.to_string());
                return Err(err);
            }
        }
        *last = Instant::now();
        self.durable.fetch_max(target, Ordering::AcqRel);
        self.wake();
        Ok(())
    }

    /// fsync the active segment whatever the policy (clean shutdown, also under `never`).
    pub fn sync_force(&self) -> Result<()> {
        let _g = self.sync_lock.lock();
        let target = self.written.load(Ordering::Acquire);
        if let Some(seg) = self.segments.read().last().cloned() {
            seg.file
                .sync_data()
                .map_err(|e| StoreError::io(&seg.log_path, e))?;
        }
        self.durable.fetch_max(target, Ordering::AcqRel);
        self.wake();
        Ok(())
    }

    /// Time since the last completed sync (for the interval flusher).
    pub fn since_last_sync(&self) -> Duration {
        self.sync_lock.lock().elapsed()
    }

    /// Whether records are written but not yet durable.
    pub fn dirty(&self) -> bool {
        self.written.load(Ordering::Acquire) > self.durable.load(Ordering::Acquire)
    }

    /// Block until `durable > offset`, a failure, or the timeout. Returns whether it is durable.
    pub fn wait_durable_blocking(&self, offset: u64, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        let mut g = self.wake_mx.lock();
        loop {
            self.check_failed()?;
            if self.durable.load(Ordering::Acquire) > offset {
                return Ok(true);
            }
            if self.wake_cv.wait_until(&mut g, deadline).timed_out() {
                return Ok(self.durable.load(Ordering::Acquire) > offset);
            }
        }
    }

    /// Wait until a record at `offset` or later is readable (or the timeout/failure).
    pub async fn wait_for(&self, offset: u64, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            let n = self.notify.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            self.check_failed()?;
            if self.durable.load(Ordering::Acquire) > offset {
                return Ok(true);
            }
            match deadline {
                Some(d) => {
                    if tokio::time::timeout_at(d, n).await.is_err() {
                        return Ok(self.durable.load(Ordering::Acquire) > offset);
                    }
                }
                None => n.await,
            }
        }
    }

    fn segment_for(&self, offset: u64) -> Option<Arc<Segment>> {
        let segs = self.segments.read();
        let i = segs.partition_point(|s| s.base <= offset);
        segs.get(i.saturating_sub(1)).cloned()
    }

    fn next_segment(&self, base: u64) -> Option<Arc<Segment>> {
        let segs = self.segments.read();
        let i = segs.partition_point(|s| s.base <= base);
        segs.get(i).cloned()
    }

    /// Read up to `max_records` records (and about `max_bytes` of frames, at least one
    /// record) from `offset`. Empty when `offset` is at the end. Never takes the writer lock.
    pub fn read(
        &self,
        offset: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredRecord>> {
        let first = self.first_offset();
        let end = self.end_offset();
        if offset < first {
            return Err(StoreError::OffsetOutOfRange {
                topic: self.topic.clone(),
                partition: self.id,
                offset,
                first,
                end,
            });
        }
        let mut out = Vec::new();
        let mut want = offset;
        let mut bytes = 0usize;
        let Some(mut seg) = self.segment_for(offset) else {
            return Ok(out);
        };
        while want < end && out.len() < max_records && (out.is_empty() || bytes < max_bytes) {
            if want >= seg.end() {
                match self.next_segment(seg.base) {
                    Some(n) => {
                        want = want.max(n.base);
                        seg = n;
                        continue;
                    }
                    None => break,
                }
            }
            let mut pos = seg.position_for(want);
            let size = seg.size();
            while pos < size
                && want < end
                && out.len() < max_records
                && (out.is_empty() || bytes < max_bytes)
            {
                let budget =
                    max_bytes.saturating_sub(bytes) + 2 * self.cfg.index_interval_bytes as usize;
                let reach = seg.position_after(want + (max_records - out.len()) as u64);
                let chunk_len = (reach.saturating_sub(pos) as usize)
                    .min(budget)
                    .clamp(16 << 10, 8 << 20);
                let buf = seg.read_chunk(pos, chunk_len)?;
                let mut p = 0usize;
                loop {
                    match frame::check(&buf[p..], true) {
                        Check::Good { len, offset: o, .. } => {
                            if o > want {
                                return self.corrupt_or(
                                    out,
                                    &seg,
                                    want,
                                    pos + p as u64,
                                    "offset gap",
                                );
                            }
                            if o == want {
                                if o >= end {
                                    return Ok(out);
                                }
                                let Some(r) = frame::decode(&buf, p, len) else {
                                    return self.corrupt_or(
                                        out,
                                        &seg,
                                        o,
                                        pos + p as u64,
                                        "bad header name",
                                    );
                                };
                                out.push(r);
                                bytes += len;
                                want += 1;
                                if out.len() >= max_records || bytes >= max_bytes || want >= end {
                                    return Ok(out);
                                }
                            }
                            p += len;
                        }
                        Check::Short { need } => {
                            if pos + (p + need) as u64 > size {
                                if p == 0 {
                                    return self.corrupt_or(
                                        out,
                                        &seg,
                                        want,
                                        pos,
                                        "frame runs past end of segment",
                                    );
                                }
                            } else if p == 0 {
                                // A frame bigger than the chunk: read exactly it.
                                let big = seg.read_chunk(pos, need)?;
                                if let Check::Good { len, offset: o, .. } = frame::check(&big, true)
                                {
                                    if o == want {
                                        let Some(r) = frame::decode(&big, 0, len) else {
                                            return self.corrupt_or(
                                                out,
                                                &seg,
                                                o,
                                                pos,
                                                "bad header name",
                                            );
                                        };
                                        out.push(r);
                                        bytes += len;
                                        want += 1;
                                    }
                                    p = len;
                                } else {
                                    return self.corrupt_or(out, &seg, want, pos, "bad frame");
                                }
                            }
                            break;
                        }
                        Check::Bad(why) => {
                            return self.corrupt_or(out, &seg, want, pos + p as u64, why)
                        }
                    }
                    if p >= buf.len() {
                        break;
                    }
                }
                pos += p as u64;
            }
            if pos >= size && want < seg.end().min(end) {
                return self.corrupt_or(out, &seg, want, pos, "segment ends early");
            }
        }
        Ok(out)
    }

    fn corrupt_or(
        &self,
        out: Vec<StoredRecord>,
        seg: &Segment,
        offset: u64,
        position: u64,
        reason: &str,
    ) -> Result<Vec<StoredRecord>> {
        if !out.is_empty() {
            return Ok(out);
        }
        Err(StoreError::Corrupt {
            topic: self.topic.clone(),
            partition: self.id,
            offset,
            path: seg.log_path.clone(),
            position,
            reason: reason.to_string(),
            resume_at: seg
                .index_entry_after(position)
                .filter(|o| *o > offset)
                .or_else(|| self.next_segment(seg.base).map(|s| s.base)),
        })
    }

    /// First offset whose record has a timestamp ≥ `ts` (the end offset if none).
    pub fn offset_for_time(&self, ts: i64) -> Result<u64> {
        let segs: Vec<Arc<Segment>> = self.segments.read().clone();
        let Some(seg) = segs.iter().find(|s| s.max_ts() >= ts) else {
            return Ok(self.end_offset());
        };
        let mut off = seg.offset_for_time(ts).max(self.first_offset());
        loop {
            let recs = self.read(off, 1024, 1 << 20)?;
            let Some(last) = recs.last() else {
                return Ok(self.end_offset());
            };
            if let Some(r) = recs.iter().find(|r| r.timestamp_ms >= ts) {
                return Ok(r.offset);
            }
            off = last.offset + 1;
        }
    }

    /// Bytes from `seg` position `pos` read raw (for the writer's frame walk).
    pub(crate) fn read_raw(seg: &Segment, pos: u64, buf: &mut [u8]) -> Result<usize> {
        let n = (seg.size().saturating_sub(pos) as usize).min(buf.len());
        seg.file
            .read_exact_at(&mut buf[..n], pos)
            .map_err(|e| StoreError::io(&seg.log_path, e))?;
        Ok(n)
    }
}

/// Remove `.index`/`.timeindex` files whose `.log` is gone.
fn remove_orphan_indexes(dir: &Path, bases: &[u64]) -> Result<()> {
    for ent in fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        let ent = ent.map_err(|e| StoreError::io(dir, e))?;
        let name = ent.file_name().to_string_lossy().to_string();
        let stem = name
            .strip_suffix(".index")
            .or_else(|| name.strip_suffix(".timeindex"));
        if let Some(b) = stem.and_then(|s| s.parse::<u64>().ok()) {
            if bases.binary_search(&b).is_err() {
                let _ = fs::remove_file(ent.path());
            }
        }
    }
    Ok(())
}
