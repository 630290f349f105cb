//! Which files the reader follows: scans that find new files (matched
//! against remembered identities to resume at their offsets), notice
//! renames and disappearances, keep `max_open_files`, forget files that
//! are gone, and stat polling when notify is off. Touches the followed
//! files' metadata and heads, and the reader's maps.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use super::{Reader, ReaderMsg, Remembered};
use crate::config::ReadFrom;
use crate::discovery;
use crate::identity::{read_head, Fingerprint, Ident};
use crate::tracked::{FileId, Tracked};

impl Reader {
    /// Finds files, follows new ones, notices renames and disappearances.
    pub(super) fn scan(&mut self, first_start: Option<ReadFrom>) {
        self.next_scan = Instant::now() + self.s.glob_interval;
        self.watch.ensure(&self.roots);
        let found = discovery::scan(&self.s, &self.roots);
        let mut seen = HashSet::new();
        for (path, meta) in found {
            let key = (meta.dev(), meta.ino());
            if let Some(&id) = self.by_ino.get(&key) {
                seen.insert(id);
                self.refresh(id, path, meta.len());
                continue;
            }
            if let Some(id) = self.follow(path, &meta, first_start) {
                seen.insert(id);
            }
        }
        let lost: Vec<FileId> = self
            .files
            .keys()
            .copied()
            .filter(|id| !seen.contains(id))
            .collect();
        for id in lost {
            let Some(t) = self.files.get_mut(&id) else {
                continue;
            };
            t.matched = false;
            self.unmatched.insert(id);
            if self.by_path.get(t.path.as_os_str()) == Some(&id) {
                self.by_path.remove(t.path.as_os_str());
            }
            // A closed file may have been appended to, then renamed away.
            if t.file.is_some() || t.reopen() {
                self.queue(id);
            } else {
                self.forget(id, false);
            }
        }
    }

    /// A known file found again: follow renames, queue if it changed.
    pub(super) fn refresh(&mut self, id: FileId, path: PathBuf, size: u64) {
        let Some(t) = self.files.get_mut(&id) else {
            return;
        };
        t.matched = true;
        if t.path != path {
            if self.by_path.get(t.path.as_os_str()) == Some(&id) {
                self.by_path.remove(t.path.as_os_str());
            }
            t.path = path.clone();
            t.ident.path = path.to_string_lossy().into();
            let msg = ReaderMsg::Track {
                id,
                ident: t.ident.clone(),
                offset: None,
            };
            self.send(msg);
        }
        self.by_path.insert(path.into_os_string(), id);
        let t = &self.files[&id];
        if size != t.size || size != t.lines.read_pos() {
            self.queue(id);
        }
    }

    /// Starts following a file found for the first time.
    pub(super) fn follow(
        &mut self,
        path: PathBuf,
        meta: &std::fs::Metadata,
        first_start: Option<ReadFrom>,
    ) -> Option<FileId> {
        if let (Some(limit), Ok(mtime)) = (self.s.ignore_older, meta.modified()) {
            let age = SystemTime::now().duration_since(mtime).unwrap_or_default();
            if age > limit {
                return None;
            }
        }
        if self.open_count() >= self.s.max_open_files && !self.evict_one() {
            return None;
        }
        let file = match crate::tracked::open(&path) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(path = %path.display(), "cannot open: {e}");
                return None;
            }
        };
        let meta = file.metadata().ok()?;
        let key = (meta.dev(), meta.ino());
        let size = meta.len();
        let head = read_head(&file, (self.s.fingerprint_bytes as u64).min(size) as usize).ok()?;
        let (id, offset) = self.resume(key, &head, size, first_start);
        let ident = Ident {
            path: path.to_string_lossy().into(),
            dev: key.0,
            ino: key.1,
            fp: Fingerprint::of(&head),
        };
        // Resuming after a partial line that was emitted by timeout: its
        // newline, if it comes, ends it rather than making an empty line.
        let mut before = [0u8; 1];
        let mid_line = offset > 0
            && std::os::unix::fs::FileExt::read_exact_at(&file, &mut before, offset - 1).is_ok()
            && before[0] != b'\n';
        let mut t = Tracked::new(id, ident.clone(), path.clone(), file, offset, &self.s);
        if mid_line {
            t.lines.skip_next_newline();
        }
        self.files.insert(id, t);
        self.by_ino.insert(key, id);
        self.by_path.insert(path.into_os_string(), id);
        self.send(ReaderMsg::Track {
            id,
            ident,
            offset: Some(offset),
        });
        self.queue(id);
        Some(id)
    }

    /// Where a newly found file starts, and under which id.
    pub(super) fn resume(
        &mut self,
        key: (u64, u64),
        head: &[u8],
        size: u64,
        first_start: Option<ReadFrom>,
    ) -> (FileId, u64) {
        if let Some(list) = self.remembered.remove(&key) {
            let mut found = None;
            for r in list {
                if found.is_none() && r.fp.matches(head) {
                    found = Some(r);
                } else {
                    // Same inode, other content: a different file now.
                    self.send(ReaderMsg::Untrack {
                        id: r.id,
                        deleted: true,
                    });
                }
            }
            if let Some(r) = found {
                let offset = if r.offset > size { 0 } else { r.offset };
                return (r.id, offset);
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let offset = match first_start {
            Some(ReadFrom::End) => size,
            _ => 0,
        };
        (id, offset)
    }

    pub(super) fn open_count(&self) -> usize {
        self.files.values().filter(|t| t.file.is_some()).count()
    }

    /// Closes the least recently active idle file to make room.
    pub(super) fn evict_one(&mut self) -> bool {
        let victim = self
            .files
            .values()
            .filter(|t| t.file.is_some() && t.matched && t.at_eof && !t.queued)
            .min_by_key(|t| t.active)
            .map(|t| t.id);
        match victim.and_then(|id| self.files.get_mut(&id)) {
            Some(t) => {
                t.close();
                true
            }
            None => false,
        }
    }

    /// Stops following a file: remembered for a later return unless deleted.
    pub(super) fn forget(&mut self, id: FileId, deleted: bool) {
        self.flush_batch();
        let Some(t) = self.files.remove(&id) else {
            return;
        };
        let key = (t.ident.dev, t.ident.ino);
        if self.by_ino.get(&key) == Some(&id) {
            self.by_ino.remove(&key);
        }
        if self.by_path.get(t.path.as_os_str()) == Some(&id) {
            self.by_path.remove(t.path.as_os_str());
        }
        if !deleted {
            self.remembered.entry(key).or_default().push(Remembered {
                id,
                path: t.path.clone(),
                fp: t.ident.fp,
                offset: t.committed(),
                since: Instant::now(),
            });
        }
        self.send(ReaderMsg::Untrack { id, deleted });
    }

    /// Polling mode: stat every followed file.
    pub(super) fn poll_stat(&mut self) {
        let mut changed = Vec::new();
        for t in self.files.values() {
            let meta = match &t.file {
                Some(f) => f.metadata(),
                None => std::fs::metadata(&t.path),
            };
            if let Ok(m) = meta {
                if m.len() != t.lines.read_pos() || (t.file.is_some() && m.nlink() == 0) {
                    changed.push(t.id);
                }
            }
        }
        for id in changed {
            self.queue(id);
        }
    }

    /// Files checkpointed earlier and not found under `include` now may
    /// have been rotated away (renamed within their directory) while the
    /// source was down: find them among their old siblings by device, inode
    /// and fingerprint, and read what is left of them.
    pub(super) fn recover_rotated(&mut self) {
        use std::os::unix::fs::DirEntryExt;
        let mut dirs: HashMap<PathBuf, HashSet<u64>> = HashMap::new();
        for (&(_, ino), list) in &self.remembered {
            for r in list {
                if let Some(d) = r.path.parent() {
                    dirs.entry(d.to_path_buf()).or_default().insert(ino);
                }
            }
        }
        for (dir, inos) in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if !inos.contains(&e.ino()) {
                    continue;
                }
                let path = e.path();
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                let key = (meta.dev(), meta.ino());
                if !meta.is_file() || self.by_ino.contains_key(&key) {
                    continue;
                }
                let Some(list) = self.remembered.get(&key) else {
                    continue;
                };
                let Ok(file) = crate::tracked::open(&path) else {
                    continue;
                };
                let want = (self.s.fingerprint_bytes as u64).min(meta.len()) as usize;
                let Ok(head) = read_head(&file, want) else {
                    continue;
                };
                if !list
                    .iter()
                    .any(|r| r.fp.matches(&head) && r.offset < meta.len())
                {
                    continue;
                }
                if let Some(id) = self.follow(path.clone(), &meta, None) {
                    tracing::info!(path = %path.display(), "rotated while stopped: reading what is left");
                    if let Some(t) = self.files.get_mut(&id) {
                        t.matched = false;
                    }
                    self.unmatched.insert(id);
                }
            }
        }
    }
}
