//! Sparse offset index (`.index`: relative offset → byte position) and time index
//! (`.timeindex`: max timestamp so far → relative offset) of one segment. Role: in-memory
//! entry lists, their lookups and their file encoding; touches only the index files it is given.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Result, StoreError};

/// `.index` entry: record at `base + rel` starts at byte `pos` of the log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub rel: u32,
    pub pos: u32,
}

/// `.timeindex` entry: records up to `base + rel` have timestamps ≤ `ts` (max so far).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub ts: i64,
    pub rel: u32,
}

pub const INDEX_ENTRY: usize = 8;
pub const TIME_ENTRY: usize = 12;

pub fn encode_index(out: &mut Vec<u8>, e: IndexEntry) {
    out.extend_from_slice(&e.rel.to_le_bytes());
    out.extend_from_slice(&e.pos.to_le_bytes());
}

pub fn encode_time(out: &mut Vec<u8>, e: TimeEntry) {
    out.extend_from_slice(&e.ts.to_le_bytes());
    out.extend_from_slice(&e.rel.to_le_bytes());
}

/// Load an offset index. `None` if missing or structurally invalid (not increasing,
/// or pointing past `log_len`); the caller rebuilds it then.
pub fn load_index(path: &Path, log_len: u64) -> Result<Option<Vec<IndexEntry>>> {
    let Some(b) = crate::atomic_file::read_optional(path)? else {
        return Ok(None);
    };
    let mut v: Vec<IndexEntry> = Vec::with_capacity(b.len() / INDEX_ENTRY);
    for c in b.chunks_exact(INDEX_ENTRY) {
        let e = IndexEntry {
            rel: u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            pos: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        };
        if let Some(p) = v.last() {
            if e.rel <= p.rel || e.pos <= p.pos {
                return Ok(None);
            }
        } else if e.rel != 0 || e.pos != 0 {
            return Ok(None);
        }
        if e.pos as u64 >= log_len {
            // Entries past the data (index flushed before the data it points to): drop them.
            break;
        }
        v.push(e);
    }
    Ok(Some(v))
}

/// Load a time index; `None` if missing or not monotonic.
pub fn load_time_index(path: &Path) -> Result<Option<Vec<TimeEntry>>> {
    let Some(b) = crate::atomic_file::read_optional(path)? else {
        return Ok(None);
    };
    let mut v: Vec<TimeEntry> = Vec::with_capacity(b.len() / TIME_ENTRY);
    for c in b.chunks_exact(TIME_ENTRY) {
        let mut t = [0u8; 8];
        t.copy_from_slice(&c[..8]);
        let e = TimeEntry {
            ts: i64::from_le_bytes(t),
            rel: u32::from_le_bytes([c[8], c[9], c[10], c[11]]),
        };
        if let Some(p) = v.last() {
            if e.rel <= p.rel || e.ts <= p.ts {
                return Ok(None);
            }
        }
        v.push(e);
    }
    Ok(Some(v))
}

/// Largest entry with `rel <= target` (entries are sorted; the first has rel 0).
pub fn lookup(entries: &[IndexEntry], rel: u32) -> IndexEntry {
    let i = entries.partition_point(|e| e.rel <= rel);
    if i == 0 {
        IndexEntry { rel: 0, pos: 0 }
    } else {
        entries[i - 1]
    }
}

/// Relative offset from which to scan for the first record with timestamp ≥ `ts`.
pub fn time_lookup(entries: &[TimeEntry], ts: i64) -> u32 {
    let i = entries.partition_point(|e| e.ts < ts);
    if i == 0 {
        0
    } else {
        entries[i - 1].rel
    }
}

/// Replace a whole index file with `data` (used after a rebuild or truncation).
pub fn rewrite(path: &Path, data: &[u8]) -> Result<File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| StoreError::io(path, e))?;
    f.write_all_at(data, 0)
        .map_err(|e| StoreError::io(path, e))?;
    Ok(f)
}

/// Open an index file for appending without changing it.
pub fn open_append(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(path)
        .map_err(|e| StoreError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let e = [
            IndexEntry { rel: 0, pos: 0 },
            IndexEntry { rel: 10, pos: 100 },
            IndexEntry { rel: 20, pos: 200 },
        ];
        assert_eq!(lookup(&e, 0).pos, 0);
        assert_eq!(lookup(&e, 15).pos, 100);
        assert_eq!(lookup(&e, 99).pos, 200);
        let t = [TimeEntry { ts: 5, rel: 3 }, TimeEntry { ts: 9, rel: 8 }];
        assert_eq!(time_lookup(&t, 1), 0);
        assert_eq!(time_lookup(&t, 6), 3);
        assert_eq!(time_lookup(&t, 10), 8);
    }
}
