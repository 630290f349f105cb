//! The single writer of a partition: batch encoding, one positioned write per batch,
//! index upkeep, segment roll, bounded-topic limits (reject / drop_oldest) and retention.
//! Role: everything that mutates a partition's files; runs under the partition's writer
//! lock, which readers never take. Touches only `<topic>/<partition>/`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{FsyncPolicy, OnFull, TopicConfig};
use crate::error::{Result, StoreError};
use crate::frame;
use crate::index::{self, IndexEntry, TimeEntry};
use crate::partition::Partition;
use crate::record::{now_ms, Record};
use crate::segment::{self, IndexBuilder, Segment};

const START_FILE: &str = "log_start";
/// Largest batch accepted in one append (keeps positions within u32).
const MAX_BATCH_BYTES: usize = 512 << 20;
/// Bytes of frames per write call (about half a typical L2 cache).
const WRITE_PIECE: usize = 256 << 10;

/// Offsets assigned to one appended batch; lets the caller await its durability.
#[derive(Clone)]
pub struct AppendReceipt {
    pub partition: u32,
    /// Offset of the first record of the batch.
    pub base_offset: u64,
    /// Number of records in the batch.
    pub count: u32,
    part: Arc<Partition>,
}

impl std::fmt::Debug for AppendReceipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendReceipt")
            .field("partition", &self.partition)
            .field("base_offset", &self.base_offset)
            .field("count", &self.count)
            .finish()
    }
}

impl AppendReceipt {
    /// Offset after the last record of the batch.
    pub fn end_offset(&self) -> u64 {
        self.base_offset + self.count as u64
    }

    /// Whether the covering fsync has completed (always true under `never`).
    pub fn is_durable(&self) -> bool {
        self.part.durable.load(Ordering::Acquire) >= self.end_offset()
    }

    /// Wait for the fsync that covers this batch. Errors if that fsync failed.
    pub async fn wait_durable(&self) -> Result<()> {
        if self.count == 0 {
            return Ok(());
        }
        self.part
            .wait_for(self.end_offset() - 1, None)
            .await
            .map(|_| ())
    }

    /// Blocking variant of [`AppendReceipt::wait_durable`] (not for async worker threads).
    pub fn wait_durable_blocking(&self) -> Result<()> {
        if self.count == 0 {
            return Ok(());
        }
        while !self
            .part
            .wait_durable_blocking(self.end_offset() - 1, Duration::from_secs(1))?
        {}
        Ok(())
    }
}

pub(crate) struct Writer {
    active: Arc<Segment>,
    builder: IndexBuilder,
    idx_file: File,
    time_file: File,
    idx_len: u64,
    time_len: u64,
    buf: Vec<u8>,
    ibuf: Vec<u8>,
    tbuf: Vec<u8>,
    new_idx: Vec<IndexEntry>,
    new_times: Vec<TimeEntry>,
    /// Byte position of the first retained offset inside the first segment.
    start_pos: u64,
    start_path: PathBuf,
}

/// Persisted logical start offset, if the file is present and intact.
pub(crate) fn load_start(dir: &Path) -> Option<u64> {
    let b = std::fs::read(dir.join(START_FILE)).ok()?;
    if b.len() != 12 {
        return None;
    }
    let crc = u32::from_le_bytes(b[8..12].try_into().ok()?);
    (crc32c::crc32c(&b[..8]) == crc)
        .then(|| u64::from_le_bytes(b[..8].try_into().unwrap_or_default()))
}

impl Writer {
    pub fn new(
        dir: &Path,
        active: &Arc<Segment>,
        cfg: &TopicConfig,
        segs: &[Arc<Segment>],
        start: u64,
    ) -> Result<Writer> {
        let (_, ip, tp) = segment::paths(dir, active.base);
        let (ilen, last_pos) = {
            let i = active.index.read();
            (i.len() as u64, i.last().map_or(0, |e| e.pos as u64))
        };
        let (tlen, last_ts) = {
            let t = active.times.read();
            (t.len() as u64, t.last().map_or(i64::MIN, |e| e.ts))
        };
        let since = if ilen == 0 {
            0
        } else {
            active.size() - last_pos
        };
        let mut w = Writer {
            active: active.clone(),
            builder: IndexBuilder::resume(
                cfg.index_interval_bytes,
                since,
                active.max_ts(),
                last_ts,
            ),
            idx_file: index::open_append(&ip)?,
            time_file: index::open_append(&tp)?,
            idx_len: ilen * index::INDEX_ENTRY as u64,
            time_len: tlen * index::TIME_ENTRY as u64,
            buf: Vec::new(),
            ibuf: Vec::new(),
            tbuf: Vec::new(),
            new_idx: Vec::new(),
            new_times: Vec::new(),
            start_pos: 0,
            start_path: dir.join(START_FILE),
        };
        let first = &segs[0];
        let (pos, _) = walk(first, first.position_for(start), |o, _| o < start)?;
        w.start_pos = pos;
        Ok(w)
    }

    fn persist_start(&self, start: u64) -> Result<()> {
        let mut b = start.to_le_bytes().to_vec();
        b.extend_from_slice(&crc32c::crc32c(&b).to_le_bytes());
        let f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&self.start_path)
            .map_err(|e| StoreError::io(&self.start_path, e))?;
        f.write_all_at(&b, 0)
            .map_err(|e| StoreError::io(&self.start_path, e))
    }

    fn roll(&mut self, p: &Partition, next: u64) -> Result<()> {
        let durable = p.cfg.fsync != FsyncPolicy::Never;
        if durable {
            self.active
                .file
                .sync_data()
                .map_err(|e| StoreError::io(&self.active.log_path, e))?;
        }
        let seg = Arc::new(Segment::create(&p.dir, next)?);
        if durable {
            crate::atomic_file::sync_dir(&p.dir)?;
        }
        let (_, ip, tp) = segment::paths(&p.dir, next);
        self.idx_file = index::open_append(&ip)?;
        self.time_file = index::open_append(&tp)?;
        self.idx_len = 0;
        self.time_len = 0;
        self.builder = IndexBuilder::new(p.cfg.index_interval_bytes);
        p.segments.write().push(seg.clone());
        self.active = seg;
        Ok(())
    }

    /// Append the new sparse index / time index entries of a batch to files and memory.
    fn write_indexes(&mut self, seg: &Segment) -> Result<()> {
        if !self.new_idx.is_empty() {
            self.ibuf.clear();
            self.new_idx
                .iter()
                .for_each(|e| index::encode_index(&mut self.ibuf, *e));
            self.idx_file
                .write_all_at(&self.ibuf, self.idx_len)
                .map_err(|e| StoreError::io(seg.log_path.with_extension("index"), e))?;
            self.idx_len += self.ibuf.len() as u64;
            seg.index.write().extend_from_slice(&self.new_idx);
        }
        if !self.new_times.is_empty() {
            self.tbuf.clear();
            self.new_times
                .iter()
                .for_each(|e| index::encode_time(&mut self.tbuf, *e));
            self.time_file
                .write_all_at(&self.tbuf, self.time_len)
                .map_err(|e| StoreError::io(seg.log_path.with_extension("timeindex"), e))?;
            self.time_len += self.tbuf.len() as u64;
            seg.times.write().extend_from_slice(&self.new_times);
        }
        Ok(())
    }

    fn retained_bytes(&self, p: &Partition) -> u64 {
        p.bytes().saturating_sub(self.start_pos)
    }

    /// Apply `max_messages`/`max_bytes` before appending `n` records of `bytes` bytes.
    ///
    /// The limits count retained records. With `on_full: reject`, records that every
    /// consumer group has consumed (committed by each stream group, acked or
    /// dead-lettered by each queue group: `Partition::consumed`) are trimmed first to
    /// make room, so a bounded topic frees capacity as its consumers work through it;
    /// only what is still unconsumed can make it full. With `drop_oldest` the oldest
    /// records go, consumed or not.
    fn make_room(&mut self, p: &Partition, n: u64, bytes: u64) -> Result<()> {
        let lim = p.cfg.limits;
        if lim.max_messages.is_none() && lim.max_bytes.is_none() {
            return Ok(());
        }
        let start = p.start.load(Ordering::Acquire);
        let written = p.written.load(Ordering::Acquire);
        let excess_n = lim
            .max_messages
            .map_or(0, |m| (written - start + n).saturating_sub(m));
        let excess_b = lim
            .max_bytes
            .map_or(0, |m| (self.retained_bytes(p) + bytes).saturating_sub(m));
        if excess_n == 0 && excess_b == 0 {
            return Ok(());
        }
        let full = |reason| StoreError::TopicFull {
            topic: p.topic.clone(),
            partition: p.id,
            reason,
        };
        let reason = if excess_n > 0 {
            "max_messages"
        } else {
            "max_bytes"
        };
        if lim.max_messages.is_some_and(|m| n > m) || lim.max_bytes.is_some_and(|m| bytes > m) {
            return Err(full("batch larger than the topic limit"));
        }
        let cap = if lim.on_full == OnFull::Reject {
            let consumed = p.consumed.load(Ordering::Acquire).min(written);
            if consumed <= start {
                return Err(full(reason));
            }
            consumed
        } else {
            u64::MAX
        };
        let (dn, db) = self.trim(p, excess_n, excess_b, cap)?;
        if dn < excess_n || db < excess_b {
            return Err(full(reason));
        }
        Ok(())
    }

    /// Advance the first offset past the oldest records until `excess_n` records and
    /// `excess_b` bytes are gone, never past `cap`. Returns (records, bytes) removed.
    fn trim(
        &mut self,
        p: &Partition,
        excess_n: u64,
        excess_b: u64,
        cap: u64,
    ) -> Result<(u64, u64)> {
        let start = p.start.load(Ordering::Acquire);
        let (mut dn, mut db) = (0u64, 0u64);
        let segs = p.segments.read().clone();
        let mut new_start = start;
        let mut pos = self.start_pos;
        for (i, seg) in segs.iter().enumerate() {
            let (end_pos, next) = walk(seg, pos, |o, len| {
                let go = (dn < excess_n || db < excess_b) && o < cap;
                if go {
                    dn += 1;
                    db += len as u64;
                    new_start = o + 1;
                }
                go
            })?;
            pos = end_pos;
            if next.is_some() || i + 1 == segs.len() {
                break;
            }
            // Segment exhausted: continue in the next one.
            new_start = new_start.max(segs[i + 1].base);
            pos = 0;
        }
        if new_start == start {
            return Ok((0, 0));
        }
        self.start_pos = pos;
        p.start.store(new_start, Ordering::Release);
        self.persist_start(new_start)?;
        self.delete_below(p, new_start)?;
        Ok((dn, db))
    }

    /// Delete sealed segments whose records are all below `start`.
    fn delete_below(&mut self, p: &Partition, start: u64) -> Result<()> {
        loop {
            let first = {
                let segs = p.segments.read();
                match segs.first() {
                    Some(s) if segs.len() > 1 && s.end() <= start => s.clone(),
                    _ => return Ok(()),
                }
            };
            self.delete_first(p, &first)?;
        }
    }

    fn delete_first(&mut self, p: &Partition, seg: &Arc<Segment>) -> Result<()> {
        p.segments.write().remove(0);
        let (l, i, t) = segment::paths(&p.dir, seg.base);
        for f in [l, i, t] {
            if let Err(e) = std::fs::remove_file(&f) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(StoreError::io(&f, e));
                }
            }
        }
        let next = p.segments.read().first().map(|s| s.base).unwrap_or(0);
        if p.start.load(Ordering::Acquire) < next {
            p.start.store(next, Ordering::Release);
            self.start_pos = 0;
            self.persist_start(next)?;
        }
        Ok(())
    }
}

/// Walk frame headers of `seg` from byte `pos` while `go(offset, len)` says so.
/// Returns the position of the first frame not consumed and its offset (None at the end).
fn walk(
    seg: &Segment,
    mut pos: u64,
    mut go: impl FnMut(u64, usize) -> bool,
) -> Result<(u64, Option<u64>)> {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = Partition::read_raw(seg, pos, &mut buf)?;
        if n < frame::HEADER_LEN {
            return Ok((pos, None));
        }
        let mut p = 0usize;
        while p + frame::HEADER_LEN <= n {
            let len = frame::peek_len(&buf[p..]).unwrap_or(0);
            let off = u64::from_le_bytes(buf[p + 12..p + 20].try_into().unwrap_or_default());
            if len < frame::HEADER_LEN || pos + (p + len) as u64 > seg.size() {
                return Ok((pos + p as u64, None));
            }
            if !go(off, len) {
                return Ok((pos + p as u64, Some(off)));
            }
            p += len;
        }
        pos += p as u64;
    }
}

impl Partition {
    /// Append a batch: one write for the whole batch. Under `always` the call returns after
    /// the covering fsync; otherwise await [`AppendReceipt::wait_durable`].
    pub fn append(self: &Arc<Self>, records: &[Record]) -> Result<AppendReceipt> {
        self.check_failed()?;
        let total: usize = records.iter().map(frame::encoded_len).sum();
        if total > MAX_BATCH_BYTES {
            return Err(StoreError::Invalid(format!(
                "batch larger than {MAX_BATCH_BYTES} bytes"
            )));
        }
        for r in records {
            frame::validate(r).map_err(StoreError::Invalid)?;
        }
        let mut guard = self.writer.lock();
        self.check_failed()?;
        let base_offset = self.written.load(Ordering::Acquire);
        let receipt = AppendReceipt {
            partition: self.id,
            base_offset,
            count: records.len() as u32,
            part: self.clone(),
        };
        if records.is_empty() {
            return Ok(receipt);
        }
        let w = &mut *guard;
        w.make_room(self, records.len() as u64, total as u64)?;
        let size0 = w.active.size();
        if size0 > 0 && size0 + total as u64 > self.cfg.segment_max_bytes {
            if let Err(e) = w.roll(self, base_offset) {
                // The old segment may not be durable: refuse to acknowledge anything more.
                self.fail(e.to_string());
                return Err(e);
            }
        }
        let seg = w.active.clone();
        let pos0 = seg.size();
        let now = now_ms();
        w.buf.clear();
        w.new_idx.clear();
        w.new_times.clear();
        // Frames go to the file in pieces of about WRITE_PIECE bytes, so the
        // kernel copies from cache-warm memory.
        let mut flushed = 0u64;
        for (i, r) in records.iter().enumerate() {
            let off = base_offset + i as u64;
            let ts = r.timestamp_ms.unwrap_or(now);
            let pos = pos0 + flushed + w.buf.len() as u64;
            frame::encode(&mut w.buf, r, off, ts);
            let len = (pos0 + flushed + w.buf.len() as u64 - pos) as usize;
            let (ie, te) = w
                .builder
                .on_record((off - seg.base) as u32, pos as u32, len, ts);
            w.new_idx.extend(ie);
            w.new_times.extend(te);
            let last = i + 1 == records.len();
            if w.buf.len() >= WRITE_PIECE || last {
                if let Err(e) = seg.file.write_all_at(&w.buf, pos0 + flushed) {
                    let err = StoreError::io(&seg.log_path, e);
                    self.fail(err.to_string());
                    return Err(err);
                }
                flushed += w.buf.len() as u64;
                w.buf.clear();
            }
        }
        if let Err(e) = w.write_indexes(&seg) {
            self.fail(e.to_string());
            return Err(e);
        }
        let end = base_offset + records.len() as u64;
        seg.publish(pos0 + flushed, end, w.builder.max_ts());
        self.written.store(end, Ordering::Release);
        if w.buf.capacity() > 16 << 20 {
            w.buf = Vec::new();
        }
        drop(guard);
        match self.cfg.fsync {
            FsyncPolicy::Never => {
                self.durable.fetch_max(end, Ordering::AcqRel);
                self.wake();
            }
            FsyncPolicy::Always => self.sync()?,
            FsyncPolicy::Interval { .. } => {}
        }
        Ok(receipt)
    }

    /// Delete whole sealed segments past `retention.max_bytes` / `retention.max_age_ms`
    /// (`max_bytes` keeps at most that many bytes; the active segment is never deleted).
    /// Returns how many segments were deleted.
    pub fn apply_retention(&self) -> Result<usize> {
        let ret = self.cfg.retention;
        if ret.max_bytes.is_none() && ret.max_age_ms.is_none() {
            return Ok(0);
        }
        let mut w = self.writer.lock();
        let mut n = 0;
        // An idle active segment whose records have all expired is sealed (an empty one
        // takes its place) so that age-based retention also reaches it.
        if let Some(a) = ret.max_age_ms {
            let active = w.active.clone();
            if active.size() > 0 && active.max_ts() < now_ms().saturating_sub(a as i64) {
                let next = self.written.load(Ordering::Acquire);
                if let Err(e) = w.roll(self, next) {
                    self.fail(e.to_string());
                    return Err(e);
                }
            }
        }
        loop {
            let (first, total) = {
                let segs = self.segments.read();
                if segs.len() < 2 {
                    break;
                }
                (segs[0].clone(), segs.iter().map(|s| s.size()).sum::<u64>())
            };
            let by_bytes = ret.max_bytes.is_some_and(|m| total > m);
            let by_age = ret
                .max_age_ms
                .is_some_and(|a| first.max_ts() < now_ms().saturating_sub(a as i64));
            if !(by_bytes || by_age) {
                break;
            }
            w.delete_first(self, &first)?;
            n += 1;
        }
        Ok(n)
    }
}
