//! One segment: `<base>.log` plus its in-memory sparse index and time index. Role: open
//! (with recovery of a torn tail and index rebuild), positioned reads, frame scanning.
//! Touches only its own three files; the partition writer appends through it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use parking_lot::RwLock;

use crate::error::{Result, StoreError};
use crate::frame::{self, Check};
use crate::index::{self, IndexEntry, TimeEntry};

/// File names of a segment, by base offset.
pub fn paths(dir: &Path, base: u64) -> (PathBuf, PathBuf, PathBuf) {
    let stem = format!("{base:020}");
    (
        dir.join(format!("{stem}.log")),
        dir.join(format!("{stem}.index")),
        dir.join(format!("{stem}.timeindex")),
    )
}

/// Decides where index and time-index entries go; shared by the writer and recovery.
#[derive(Debug, Clone)]
pub struct IndexBuilder {
    interval: u64,
    since: u64,
    max_ts: i64,
    last_time_ts: i64,
}

impl IndexBuilder {
    pub fn new(interval: u32) -> Self {
        IndexBuilder {
            interval: interval as u64,
            since: 0,
            max_ts: i64::MIN,
            last_time_ts: i64::MIN,
        }
    }

    /// Resume after the last existing entries of a segment.
    pub fn resume(interval: u32, since: u64, max_ts: i64, last_time_ts: i64) -> Self {
        IndexBuilder {
            interval: interval as u64,
            since,
            max_ts,
            last_time_ts,
        }
    }

    pub fn max_ts(&self) -> i64 {
        self.max_ts
    }

    /// Account for one record; returns the entries to add, if any.
    pub fn on_record(
        &mut self,
        rel: u32,
        pos: u32,
        len: usize,
        ts: i64,
    ) -> (Option<IndexEntry>, Option<TimeEntry>) {
        self.max_ts = self.max_ts.max(ts);
        let mut out = (None, None);
        if rel == 0 || self.since >= self.interval {
            self.since = 0;
            out.0 = Some(IndexEntry { rel, pos });
            if self.max_ts > self.last_time_ts {
                self.last_time_ts = self.max_ts;
                out.1 = Some(TimeEntry {
                    ts: self.max_ts,
                    rel,
                });
            }
        }
        self.since += len as u64;
        out
    }
}

/// Where a frame scan stopped.
#[derive(Debug)]
pub struct ScanEnd {
    /// Byte position after the last good frame.
    pub pos: u64,
    /// Offset after the last good frame.
    pub next_offset: u64,
    /// Why it stopped early (`None`: reached the end cleanly).
    pub bad: Option<&'static str>,
}

/// Scan frames of `file` in `[pos, end)`, expecting consecutive offsets from `offset`,
/// checking CRCs; `f(offset, pos, len, ts)` sees each good frame.
pub fn scan(
    file: &File,
    path: &Path,
    mut pos: u64,
    end: u64,
    mut offset: u64,
    mut f: impl FnMut(u64, u64, usize, i64),
) -> Result<ScanEnd> {
    const CHUNK: usize = 1 << 20;
    let mut buf = vec![0u8; CHUNK];
    while pos < end {
        let want = ((end - pos) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..want], pos)
            .map_err(|e| StoreError::io(path, e))?;
        let mut p = 0usize;
        loop {
            match frame::check(&buf[p..want], true) {
                Check::Good { len, offset: o, ts } => {
                    if o != offset {
                        return Ok(ScanEnd {
                            pos: pos + p as u64,
                            next_offset: offset,
                            bad: Some("offset out of sequence"),
                        });
                    }
                    f(o, pos + p as u64, len, ts);
                    offset += 1;
                    p += len;
                }
                Check::Short { need } => {
                    if pos + (p + need) as u64 > end {
                        return Ok(ScanEnd {
                            pos: pos + p as u64,
                            next_offset: offset,
                            bad: Some("frame runs past end of file"),
                        });
                    }
                    if need > buf.len() {
                        buf.resize(need, 0);
                    }
                    break;
                }
                Check::Bad(why) => {
                    return Ok(ScanEnd {
                        pos: pos + p as u64,
                        next_offset: offset,
                        bad: Some(why),
                    })
                }
            }
            if p == want {
                break;
            }
        }
        pos += p as u64;
    }
    Ok(ScanEnd {
        pos,
        next_offset: offset,
        bad: None,
    })
}

/// A log segment. The data file is only appended by the partition writer (positioned
/// writes); readers use positioned reads and never take the writer lock.
#[derive(Debug)]
pub struct Segment {
    pub base: u64,
    pub log_path: PathBuf,
    pub file: File,
    size: AtomicU64,
    end: AtomicU64,
    max_ts: AtomicI64,
    pub index: RwLock<Vec<IndexEntry>>,
    pub times: RwLock<Vec<TimeEntry>>,
}

/// What opening an existing segment found.
#[derive(Debug, Default)]
pub struct OpenReport {
    pub truncated_bytes: u64,
    pub index_rebuilt: bool,
    /// First bad frame (offset, byte position, reason) inside a segment that was kept.
    pub corrupt: Option<(u64, u64, String)>,
}

impl Segment {
    /// Create a new, empty segment file (fails if it exists with data).
    pub fn create(dir: &Path, base: u64) -> Result<Segment> {
        let (log, idx, time) = paths(dir, base);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&log)
            .map_err(|e| StoreError::io(&log, e))?;
        index::rewrite(&idx, &[])?;
        index::rewrite(&time, &[])?;
        Ok(Segment {
            base,
            log_path: log,
            file,
            size: AtomicU64::new(0),
            end: AtomicU64::new(base),
            max_ts: AtomicI64::new(i64::MIN),
            index: RwLock::new(Vec::new()),
            times: RwLock::new(Vec::new()),
        })
    }

    /// Open an existing segment. The `active` (last) one and, after an unclean shutdown,
    /// a `verify_tail` one are scanned from their last index entry and truncated at the
    /// first bad frame; a missing or damaged index is rebuilt by a full scan.
    pub fn open(
        dir: &Path,
        base: u64,
        interval: u32,
        truncate_tail: bool,
        next_base: Option<u64>,
    ) -> Result<(Segment, OpenReport)> {
        let (log, idx_path, time_path) = paths(dir, base);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log)
            .map_err(|e| StoreError::io(&log, e))?;
        let len = file.metadata().map_err(|e| StoreError::io(&log, e))?.len();
        let mut report = OpenReport::default();
        let loaded_idx = index::load_index(&idx_path, len)?;
        let loaded_times = index::load_time_index(&time_path)?;
        let full_scan = loaded_idx.is_none() || loaded_times.is_none();
        let mut entries = loaded_idx.unwrap_or_default();
        let mut times = loaded_times.unwrap_or_default();
        if full_scan {
            entries.clear();
            times.clear();
            report.index_rebuilt = true;
        }
        // Find a trustworthy starting entry: its frame must be good and carry its offset.
        let mut head = [0u8; frame::HEADER_LEN];
        while let Some(e) = entries.last().copied() {
            let ok = e.pos as u64 + frame::HEADER_LEN as u64 <= len
                && file.read_exact_at(&mut head, e.pos as u64).is_ok()
                && frame::peek_len(&head).is_some_and(|l| l as u64 + e.pos as u64 <= len)
                && u64::from_le_bytes(head[12..20].try_into().unwrap_or_default())
                    == base + e.rel as u64;
            if ok {
                break;
            }
            entries.pop();
            report.index_rebuilt = true;
        }
        let start = entries
            .last()
            .copied()
            .unwrap_or(IndexEntry { rel: 0, pos: 0 });
        times.retain(|t| t.rel < start.rel);
        let mut b = IndexBuilder::resume(
            interval,
            interval as u64,
            times.last().map_or(i64::MIN, |t| t.ts),
            times.last().map_or(i64::MIN, |t| t.ts),
        );
        let scan_tail = truncate_tail || full_scan || next_base.is_none();
        let (size, end) = if scan_tail {
            if !entries.is_empty() {
                entries.pop(); // re-added by the builder
            }
            let s = scan(
                &file,
                &log,
                start.pos as u64,
                len,
                base + start.rel as u64,
                |o, p, l, ts| {
                    let (ie, te) = b.on_record((o - base) as u32, p as u32, l, ts);
                    entries.extend(ie);
                    times.extend(te);
                },
            )?;
            if let Some(why) = s.bad {
                if truncate_tail {
                    file.set_len(s.pos).map_err(|e| StoreError::io(&log, e))?;
                    report.truncated_bytes = len - s.pos;
                } else {
                    report.corrupt = Some((s.next_offset, s.pos, why.to_string()));
                }
            }
            // Index files are rewritten whole: they are small and may hold stale entries.
            let mut ib = Vec::with_capacity(entries.len() * index::INDEX_ENTRY);
            entries
                .iter()
                .for_each(|e| index::encode_index(&mut ib, *e));
            index::rewrite(&idx_path, &ib)?;
            let mut tb = Vec::with_capacity(times.len() * index::TIME_ENTRY);
            times.iter().for_each(|e| index::encode_time(&mut tb, *e));
            index::rewrite(&time_path, &tb)?;
            let size = if truncate_tail { s.pos } else { len };
            // A kept segment with a bad frame still spans up to the next segment, so that
            // reads past the bad frame report it instead of skipping records silently.
            let end = match (&report.corrupt, next_base) {
                (Some(_), Some(n)) => n,
                _ => s.next_offset,
            };
            (size, end)
        } else {
            (len, next_base.unwrap_or(base))
        };
        let max_ts = b.max_ts().max(times.last().map_or(i64::MIN, |t| t.ts));
        Ok((
            Segment {
                base,
                log_path: log,
                file,
                size: AtomicU64::new(size),
                end: AtomicU64::new(end),
                max_ts: AtomicI64::new(max_ts),
                index: RwLock::new(entries),
                times: RwLock::new(times),
            },
            report,
        ))
    }

    /// Bytes of readable, whole frames in the file.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// Offset after the last record written to this segment.
    pub fn end(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }

    /// Newest timestamp in the segment (`i64::MIN` if empty).
    pub fn max_ts(&self) -> i64 {
        self.max_ts.load(Ordering::Acquire)
    }

    /// Writer only: publish data appended at the old size.
    pub fn publish(&self, size: u64, end: u64, max_ts: i64) {
        self.max_ts.fetch_max(max_ts, Ordering::AcqRel);
        self.end.store(end, Ordering::Release);
        self.size.store(size, Ordering::Release);
    }

    /// Byte position from which to scan for `offset` (via the sparse index).
    pub fn position_for(&self, offset: u64) -> u64 {
        let rel = offset.saturating_sub(self.base).min(u32::MAX as u64) as u32;
        index::lookup(&self.index.read(), rel).pos as u64
    }

    /// Byte position of the first index entry past `offset`, or the size: reading up to
    /// it is enough to reach `offset`.
    pub fn position_after(&self, offset: u64) -> u64 {
        let rel = offset.saturating_sub(self.base).min(u32::MAX as u64) as u32;
        let idx = self.index.read();
        let i = idx.partition_point(|e| e.rel <= rel);
        idx.get(i).map_or_else(|| self.size(), |e| e.pos as u64)
    }

    /// Offset of the first index entry that starts after byte `pos` (where reading can
    /// resume past a bad frame), if any.
    pub fn index_entry_after(&self, pos: u64) -> Option<u64> {
        let idx = self.index.read();
        let i = idx.partition_point(|e| (e.pos as u64) <= pos);
        idx.get(i).map(|e| self.base + e.rel as u64)
    }

    /// First offset from which to scan for timestamp `ts`.
    pub fn offset_for_time(&self, ts: i64) -> u64 {
        self.base + index::time_lookup(&self.times.read(), ts) as u64
    }

    /// Read `len` bytes at `pos` (clamped to the published size) into a fresh buffer.
    pub fn read_chunk(&self, pos: u64, len: usize) -> Result<Bytes> {
        let size = self.size();
        let len = len.min(size.saturating_sub(pos) as usize);
        let mut buf = BytesMut::zeroed(len);
        self.file
            .read_exact_at(&mut buf, pos)
            .map_err(|e| StoreError::io(&self.log_path, e))?;
        Ok(buf.freeze())
    }
}
