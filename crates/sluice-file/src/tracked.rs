//! One followed file: its identity, open handle (or none while idle),
//! line splitting and multiline state, and one read turn: read up to the
//! turn's budget, notice truncation or rewrite (the bytes just before the
//! read position changed, the size fell below it, or the head no longer
//! matches the fingerprint) and start over at 0, grow the fingerprint of a
//! short file, cut lines. Touches the file through its handle and the path
//! it was found at (or, renamed while closed, its siblings).

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Instant;

use crate::config::Settings;
use crate::identity::{read_head, Fingerprint, Ident};
use crate::lines::{Fill, Line, Splitter};
use crate::multiline::Aggregator;

/// A followed file's number within one run (checkpoint entries too).
pub type FileId = u64;

/// What a turn found.
#[derive(Debug, Default, Clone, Copy)]
pub struct TurnResult {
    /// More bytes are there: give the file another turn.
    pub more: bool,
    /// The file was truncated or rewritten: reading started over at 0.
    pub restarted: bool,
    /// The fingerprint changed (grew, or the file was rewritten).
    pub ident_changed: bool,
}

pub struct Tracked {
    pub id: FileId,
    pub ident: Ident,
    /// Where the file was last found.
    pub path: PathBuf,
    pub file: Option<File>,
    pub lines: Splitter,
    pub multiline: Option<Aggregator>,
    /// Found by the latest scan under `include`.
    pub matched: bool,
    /// Last time bytes were read (or the file was opened).
    pub active: Instant,
    /// Size at the last look.
    pub size: u64,
    /// Seen with no link left while at its end.
    pub deleted: bool,
    /// The last turn reached the end of the file.
    pub at_eof: bool,
    /// In the reader's ready queue.
    pub queued: bool,
    /// Offset last reported to the source task.
    pub reported: u64,
    /// Last comparison of the head with the fingerprint.
    head_checked: Instant,
    /// Bytes of the last read (the next read asks for twice as many).
    last_read: usize,
    /// The file's first bytes (up to `HEAD_PREFIX`), for the cheap check.
    head_prefix: Vec<u8>,
}

/// Bytes compared by the cheap rewrite check.
const HEAD_PREFIX: usize = 128;

/// How often an idle-then-growing file's head is also compared with its
/// fingerprint. (Every read re-reads the bytes just before the read
/// position, which notices a truncation followed by regrowth past it.)
const HEAD_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Tracked {
    pub fn new(
        id: FileId,
        ident: Ident,
        path: PathBuf,
        file: File,
        offset: u64,
        s: &Settings,
    ) -> Tracked {
        Tracked {
            id,
            ident,
            path,
            file: Some(file),
            lines: Splitter::new(s.max_line_bytes, s.oversized, offset),
            multiline: s
                .multiline
                .clone()
                .map(|m| Aggregator::new(m, s.max_line_bytes)),
            matched: true,
            active: Instant::now(),
            size: 0,
            deleted: false,
            at_eof: false,
            queued: false,
            reported: offset,
            head_checked: Instant::now(),
            last_read: 0,
            head_prefix: Vec::new(),
        }
    }

    /// The offset a checkpoint may hold for this file: everything before it
    /// has been emitted.
    pub fn committed(&self) -> u64 {
        self.multiline
            .as_ref()
            .and_then(Aggregator::pending_offset)
            .unwrap_or_else(|| self.lines.consumed())
    }

    /// A multiline group is pending.
    pub fn holds_group(&self) -> bool {
        self.multiline
            .as_ref()
            .is_some_and(|a| a.pending_offset().is_some())
    }

    /// Emits whatever is held (the file will not grow any more).
    pub fn flush_all(&mut self, emit: &mut impl FnMut(Line)) {
        let ml = &mut self.multiline;
        let mut through = |l: Line| match ml {
            Some(a) => a.push(l, Instant::now(), emit),
            None => emit(l),
        };
        self.lines.flush_partial(&mut through);
        if let Some(a) = &mut self.multiline {
            a.flush(emit);
        }
    }

    /// Emits what timed out: a held partial line, a multiline group.
    pub fn flush_due(&mut self, s: &Settings, now: Instant, emit: &mut impl FnMut(Line)) {
        if self.at_eof
            && self
                .lines
                .partial_since()
                .is_some_and(|t| now.duration_since(t) >= s.partial_timeout)
        {
            let ml = &mut self.multiline;
            self.lines.flush_partial(&mut |l: Line| match ml {
                Some(a) => a.push(l, now, emit),
                None => emit(l),
            });
        }
        if let Some(a) = &mut self.multiline {
            a.flush_if_due(now, emit);
        }
    }

    /// Starts over at 0 (truncated or rewritten), with a new fingerprint.
    fn restart(
        &mut self,
        why: &str,
        file: &File,
        s: &Settings,
        r: &mut TurnResult,
    ) -> std::io::Result<()> {
        tracing::info!(path = %self.ident.path, "{why}: reading again from the start");
        self.lines.reset(0);
        if let Some(a) = &mut self.multiline {
            a.reset();
        }
        r.restarted = true;
        let head = read_head(file, s.fingerprint_bytes)?;
        self.set_head(&head, r);
        Ok(())
    }

    fn set_head(&mut self, head: &[u8], r: &mut TurnResult) {
        let fp = Fingerprint::of(head);
        if fp != self.ident.fp {
            self.ident.fp = fp;
            r.ident_changed = true;
        }
        self.head_prefix = head[..head.len().min(HEAD_PREFIX)].to_vec();
    }

    /// Compares the head with the fingerprint, grows the fingerprint, and
    /// starts over when the head changed.
    fn check_head(&mut self, file: &File, s: &Settings, r: &mut TurnResult) -> std::io::Result<()> {
        let head = read_head(file, s.fingerprint_bytes)?;
        if self.ident.fp.matches(&head) {
            self.set_head(&head, r);
            Ok(())
        } else {
            self.restart("file rewritten", file, s, r)
        }
    }

    /// One read turn of at most `budget` bytes.
    pub fn turn(
        &mut self,
        s: &Settings,
        budget: usize,
        now: Instant,
        emit: &mut impl FnMut(Line),
    ) -> std::io::Result<TurnResult> {
        let Some(file) = self.file.take() else {
            return Ok(TurnResult::default());
        };
        let result = self.turn_with(&file, s, budget, now, emit);
        self.file = Some(file);
        result
    }

    fn turn_with(
        &mut self,
        file: &File,
        s: &Settings,
        budget: usize,
        now: Instant,
        emit: &mut impl FnMut(Line),
    ) -> std::io::Result<TurnResult> {
        let mut r = TurnResult::default();
        let fp_len = self.ident.fp.len as usize;
        if self.at_eof && fp_len > 0 && now.duration_since(self.head_checked) >= HEAD_CHECK_EVERY {
            self.head_checked = now;
            if !self.head_prefix_matches(file) {
                self.check_head(file, s, &mut r)?;
            }
        }
        let want = self
            .last_read
            .saturating_mul(2)
            .clamp(4096, budget.max(4096));
        // Re-reading the bytes before the read position (one vectored read)
        // is only needed after a pause: while behind, the size tells.
        let got = match self.lines.fill(file, want, self.at_eof)? {
            Fill::Read(n) => n,
            Fill::Changed => {
                self.restart("file truncated or rewritten", file, s, &mut r)?;
                r.more = true;
                return Ok(r);
            }
        };
        if got == 0 {
            let meta = file.metadata()?;
            self.size = meta.len();
            if meta.len() < self.lines.read_pos() {
                self.restart("file truncated", file, s, &mut r)?;
                r.more = true;
                return Ok(r);
            }
            self.at_eof = true;
            self.deleted = meta.nlink() == 0;
            return Ok(r);
        }
        self.active = now;
        self.last_read = got;
        if fp_len < s.fingerprint_bytes && self.lines.read_pos() > fp_len as u64 {
            self.check_head(file, s, &mut r)?;
            if r.restarted {
                r.more = true;
                return Ok(r);
            }
        }
        let ml = &mut self.multiline;
        self.lines.split(now, &mut |l: Line| match ml {
            Some(a) => a.push(l, now, emit),
            None => emit(l),
        });
        self.at_eof = got < want;
        self.size = self.lines.read_pos();
        r.more = !self.at_eof;
        Ok(r)
    }

    /// Whether the file still starts with the remembered first bytes (false
    /// when none are remembered yet).
    fn head_prefix_matches(&self, file: &File) -> bool {
        let k = self.head_prefix.len();
        let mut buf = [0u8; HEAD_PREFIX];
        k > 0
            && std::os::unix::fs::FileExt::read_exact_at(file, &mut buf[..k], 0).is_ok()
            && buf[..k] == self.head_prefix[..]
    }

    /// Closes the handle; the file is reopened by path when it changes.
    pub fn close(&mut self) {
        self.file = None;
        self.lines.shrink();
    }

    /// Reopens by path or, when the path now holds another file, among the
    /// path's siblings (renamed away while closed); false when it is gone.
    pub fn reopen(&mut self) -> bool {
        let same = |f: &File| {
            f.metadata()
                .is_ok_and(|m| m.dev() == self.ident.dev && m.ino() == self.ident.ino)
        };
        let found = match open(&self.path) {
            Ok(f) if same(&f) => Some(f),
            _ => self.find_renamed().filter(|(f, _)| same(f)).map(|(f, p)| {
                tracing::info!(path = %self.ident.path, now = %p.display(), "renamed while closed");
                self.path = p;
                f
            }),
        };
        let Some(f) = found else { return false };
        // Closed for a while: the inode may have been reused.
        match read_head(&f, self.ident.fp.len as usize) {
            Ok(head) if self.ident.fp.matches(&head) => {
                self.file = Some(f);
                self.active = Instant::now();
                true
            }
            _ => false,
        }
    }

    /// This file (by inode) among the siblings of its last path.
    fn find_renamed(&self) -> Option<(File, PathBuf)> {
        use std::os::unix::fs::DirEntryExt;
        let dir = self.path.parent()?;
        let entry = std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .find(|e| e.ino() == self.ident.ino)?;
        let path = entry.path();
        Some((open(&path).ok()?, path))
    }
}

/// Opens a file for reading without updating its access time when the
/// kernel allows it (only for files we own), plainly otherwise.
pub fn open(path: &std::path::Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(path)
        .or_else(|_| File::open(path))
}
