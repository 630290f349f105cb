//! Checkpoint state of a file source: one entry per file {path, device,
//! inode, fingerprint, offset}, where the offset advances only when the
//! batches reaching it are acknowledged (batches are released in emission
//! order, so an offset never passes a batch some sink has not accepted).
//! Entries of files no longer followed expire after `checkpoint_ttl`;
//! entries of deleted files go once their last batch is acknowledged.
//! Touches nothing but memory; the source task writes the snapshot.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::identity::{Fingerprint, Ident};
use crate::reader::Remembered;
use crate::tracked::FileId;

/// One file in the checkpoint file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SavedFile {
    pub path: String,
    pub dev: u64,
    pub inode: u64,
    pub fingerprint: Fingerprint,
    /// Every line before this byte offset was acknowledged.
    pub offset: u64,
    /// Last time the file was followed (ms since the epoch).
    pub seen_ms: i64,
}

/// The checkpoint file of a file source.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Saved {
    pub version: u32,
    pub files: Vec<SavedFile>,
}

struct Entry {
    saved: SavedFile,
    tracked: bool,
    deleted: bool,
    /// Offset of the newest batch emitted for the file.
    read: u64,
}

/// Acknowledged positions of every known file.
pub struct State {
    entries: HashMap<FileId, Entry>,
    /// Emitted, unacknowledged batches: (sequence, positions they reach).
    pending: VecDeque<(u64, Vec<(FileId, u64)>)>,
    next_seq: u64,
    ttl: Duration,
    /// Changed since the last snapshot.
    pub dirty: bool,
    /// A file was followed for the first time (or moved) since the last
    /// snapshot: its identity must be saved before any of its lines go
    /// out, or a crash followed by a rotation would leave the rest of it
    /// unknown to the next run.
    pub unsaved_identity: bool,
}

impl State {
    /// The state a checkpoint describes, the reader's view of it (by device
    /// and inode), and the first unused file id.
    pub fn load(
        saved: Option<Saved>,
        ttl: Duration,
        now_ms: i64,
    ) -> (State, HashMap<(u64, u64), Vec<Remembered>>, FileId) {
        let mut state = State {
            entries: HashMap::new(),
            pending: VecDeque::new(),
            next_seq: 0,
            ttl,
            dirty: false,
            unsaved_identity: false,
        };
        let mut remembered: HashMap<(u64, u64), Vec<Remembered>> = HashMap::new();
        let now = Instant::now();
        let mut id = 1;
        for f in saved.map(|s| s.files).unwrap_or_default() {
            let age = Duration::from_millis(now_ms.saturating_sub(f.seen_ms).max(0) as u64);
            remembered
                .entry((f.dev, f.inode))
                .or_default()
                .push(Remembered {
                    id,
                    path: f.path.clone().into(),
                    fp: f.fingerprint,
                    offset: f.offset,
                    since: now.checked_sub(age).unwrap_or(now),
                });
            state.entries.insert(
                id,
                Entry {
                    read: f.offset,
                    saved: f,
                    tracked: false,
                    deleted: false,
                },
            );
            id += 1;
        }
        (state, remembered, id)
    }

    /// A file is followed (new, or with a new identity).
    pub fn track(&mut self, id: FileId, ident: &Ident, offset: Option<u64>, now_ms: i64) {
        let mut new = false;
        let e = self.entries.entry(id).or_insert_with(|| {
            new = true;
            let o = offset.unwrap_or(0);
            Entry {
                saved: SavedFile {
                    path: String::new(),
                    dev: 0,
                    inode: 0,
                    fingerprint: Fingerprint::default(),
                    offset: o,
                    seen_ms: now_ms,
                },
                tracked: true,
                deleted: false,
                read: o,
            }
        });
        let moved =
            e.saved.path != *ident.path || e.saved.dev != ident.dev || e.saved.inode != ident.ino;
        self.unsaved_identity |= new || moved;
        e.saved.path = ident.path.to_string();
        e.saved.dev = ident.dev;
        e.saved.inode = ident.ino;
        e.saved.fingerprint = ident.fp;
        e.saved.seen_ms = now_ms;
        e.tracked = true;
        e.deleted = false;
        self.dirty = true;
    }

    /// A file is no longer followed.
    pub fn untrack(&mut self, id: FileId, deleted: bool, now_ms: i64) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.tracked = false;
            e.deleted |= deleted;
            e.saved.seen_ms = now_ms;
            self.dirty = true;
        }
    }

    /// A batch reaching `positions` was emitted; returns its sequence.
    pub fn emitted(&mut self, positions: Vec<(FileId, u64)>) -> u64 {
        for &(id, off) in &positions {
            if let Some(e) = self.entries.get_mut(&id) {
                e.read = off;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push_back((seq, positions));
        seq
    }

    /// Every batch up to `seq` was acknowledged.
    pub fn released(&mut self, seq: u64) {
        while self.pending.front().is_some_and(|(s, _)| *s <= seq) {
            let Some((_, positions)) = self.pending.pop_front() else {
                break;
            };
            for (id, off) in positions {
                if let Some(e) = self.entries.get_mut(&id) {
                    e.saved.offset = off;
                    self.dirty = true;
                }
            }
        }
    }

    /// Bytes emitted but not acknowledged.
    pub fn lag(&self) -> i64 {
        self.entries
            .values()
            .map(|e| e.read.saturating_sub(e.saved.offset) as i64)
            .sum()
    }

    /// What to write, dropping expired and finished entries.
    pub fn snapshot(&mut self, now_ms: i64) -> Saved {
        let ttl_ms = self.ttl.as_millis() as i64;
        self.entries.retain(|_, e| {
            if e.tracked {
                e.saved.seen_ms = now_ms;
                return true;
            }
            let finished = e.deleted && e.saved.offset >= e.read;
            !finished && now_ms.saturating_sub(e.saved.seen_ms) <= ttl_ms
        });
        self.dirty = false;
        self.unsaved_identity = false;
        let mut files: Vec<SavedFile> = self.entries.values().map(|e| e.saved.clone()).collect();
        files.sort_by(|a, b| a.path.cmp(&b.path).then(a.inode.cmp(&b.inode)));
        Saved { version: 1, files }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(path: &str, ino: u64) -> Ident {
        Ident {
            path: path.into(),
            dev: 1,
            ino,
            fp: Fingerprint { len: 3, hash: 7 },
        }
    }

    #[test]
    fn offsets_move_only_on_release_and_deleted_entries_go() {
        let (mut s, _, _) = State::load(None, Duration::from_secs(60), 0);
        s.track(1, &ident("/a", 10), Some(0), 0);
        let b1 = s.emitted(vec![(1, 100)]);
        let b2 = s.emitted(vec![(1, 200)]);
        assert_eq!(s.snapshot(0).files[0].offset, 0);
        assert_eq!(s.lag(), 200);
        s.released(b1);
        assert_eq!(s.snapshot(0).files[0].offset, 100);
        s.untrack(1, true, 0);
        assert_eq!(s.snapshot(0).files.len(), 1, "in flight: kept");
        s.released(b2);
        assert!(s.snapshot(0).files.is_empty());
    }

    #[test]
    fn untracked_entries_expire() {
        let (mut s, _, _) = State::load(None, Duration::from_secs(1), 0);
        s.track(1, &ident("/a", 10), Some(5), 0);
        s.untrack(1, false, 0);
        assert_eq!(s.snapshot(500).files.len(), 1);
        assert!(s.snapshot(1500).files.is_empty());
    }

    #[test]
    fn a_new_or_moved_file_asks_for_a_save_and_a_grown_fingerprint_does_not() {
        let (mut s, _, _) = State::load(None, Duration::from_secs(60), 0);
        assert!(!s.unsaved_identity);
        s.track(1, &ident("/a", 10), Some(0), 0);
        assert!(s.unsaved_identity, "new file");
        s.snapshot(0);
        assert!(!s.unsaved_identity);
        let mut grown = ident("/a", 10);
        grown.fp = Fingerprint { len: 9, hash: 8 };
        s.track(1, &grown, None, 0);
        assert!(!s.unsaved_identity, "same file, longer head");
        s.track(1, &ident("/b", 10), None, 0);
        assert!(s.unsaved_identity, "renamed");
    }
}
