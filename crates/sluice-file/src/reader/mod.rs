//! The reader thread: the one place that touches followed files. It
//! discovers files (scans plus notify events, or stat polling), knows them
//! by identity, gives every file with new bytes a turn in fair round-robin
//! with a per-file read budget, and sends batches of records with the file
//! positions they reach to the source task over a bounded channel (that
//! channel is the back-pressure). It sends identity changes on the same
//! channel, so the source task sees them in order. Blocking file I/O never
//! runs on the async executor; there is one such thread per source, never
//! one per file. Which files are followed is decided in `follow`; this
//! module runs the loop, the rounds and the batches. Touches the followed
//! files (read-only), the watcher and the channel.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_core::record::{now_ms, LogMeta, Meta, Record};
use tokio::sync::mpsc::Sender;

use crate::config::{ReadFrom, Settings};
use crate::discovery::{self, Root};
use crate::identity::{Fingerprint, Ident};
use crate::lines::Line;
use crate::tracked::{FileId, Tracked};
use crate::watch::{Wake, Watch};

mod follow;

/// What the reader tells the source task, in order.
#[derive(Debug)]
pub enum ReaderMsg {
    /// Records, and the offset each file reached with them.
    Batch {
        records: Vec<Record>,
        positions: Vec<(FileId, u64)>,
        bytes: u64,
    },
    /// A file is followed from now on (`offset` set when first seen) or
    /// its identity changed.
    Track {
        id: FileId,
        ident: Ident,
        offset: Option<u64>,
    },
    /// A file is no longer followed; `deleted` when it is gone for good.
    Untrack { id: FileId, deleted: bool },
    /// The first scan is done.
    Ready,
    /// Notify is off: stat polling from now on.
    Polling(String),
    /// Lines longer than `max_line_bytes` were truncated or skipped.
    Oversized(u64),
}

/// A file known from a checkpoint or followed earlier in this run.
#[derive(Debug, Clone)]
pub struct Remembered {
    pub id: FileId,
    /// Where the file was followed.
    pub path: PathBuf,
    pub fp: Fingerprint,
    pub offset: u64,
    pub since: Instant,
}

/// Everything the reader thread starts with.
pub struct ReaderSetup {
    pub settings: Arc<Settings>,
    /// Checkpointed files by (device, inode).
    pub remembered: HashMap<(u64, u64), Vec<Remembered>>,
    /// `Some(mode)` when there was no checkpoint: where files present now start.
    pub first_start: Option<ReadFrom>,
    pub next_id: FileId,
    pub out: Sender<ReaderMsg>,
    pub wake_tx: std::sync::mpsc::Sender<Wake>,
    pub wake_rx: Receiver<Wake>,
    pub stop: Arc<AtomicBool>,
}

const BATCH_RECORDS: usize = 1024;
const BATCH_BYTES: usize = 1 << 20;
const TIMER_TICK: Duration = Duration::from_millis(50);
/// Under a stream of small appends, rounds run at most this often, so that
/// one batch carries many appends (an isolated append is read at once).
const COALESCE: Duration = Duration::from_millis(5);

struct Reader {
    s: Arc<Settings>,
    files: HashMap<FileId, Tracked>,
    by_ino: HashMap<(u64, u64), FileId>,
    by_path: HashMap<OsString, FileId>,
    remembered: HashMap<(u64, u64), Vec<Remembered>>,
    ready: VecDeque<FileId>,
    /// Open files no longer found under `include` (renamed away, deleted).
    unmatched: HashSet<FileId>,
    roots: Vec<Root>,
    watch: Watch,
    wake_rx: Receiver<Wake>,
    out: Sender<ReaderMsg>,
    stop: Arc<AtomicBool>,
    next_id: FileId,
    records: Vec<Record>,
    positions: Vec<(FileId, u64)>,
    bytes: u64,
    next_scan: Instant,
    next_poll: Instant,
    next_timers: Instant,
    last_round: Instant,
    /// The last round left bytes unread: no coalescing.
    busy: bool,
    /// The channel is closed: the source task is gone.
    closed: bool,
}

/// Runs the reader until `stop` or until the source task goes away.
pub fn run(setup: ReaderSetup) {
    let now = Instant::now();
    let watch = Watch::new(setup.settings.poll, setup.wake_tx);
    let mut r = Reader {
        roots: discovery::roots(&setup.settings),
        s: setup.settings,
        files: HashMap::new(),
        by_ino: HashMap::new(),
        by_path: HashMap::new(),
        remembered: setup.remembered,
        ready: VecDeque::new(),
        unmatched: HashSet::new(),
        watch,
        wake_rx: setup.wake_rx,
        out: setup.out,
        stop: setup.stop,
        next_id: setup.next_id,
        records: Vec::new(),
        positions: Vec::new(),
        bytes: 0,
        next_scan: now,
        next_poll: now,
        next_timers: now,
        last_round: now,
        busy: false,
        closed: false,
    };
    if let Some(why) = r.watch.polling.clone() {
        r.send(ReaderMsg::Polling(why));
    }
    r.scan(setup.first_start);
    r.recover_rotated();
    r.send(ReaderMsg::Ready);
    r.main_loop();
}

impl Reader {
    fn stopped(&self) -> bool {
        self.closed || self.out.is_closed() || self.stop.load(Ordering::Relaxed)
    }

    fn send(&mut self, msg: ReaderMsg) {
        if !self.closed && self.out.blocking_send(msg).is_err() {
            self.closed = true;
        }
    }

    fn main_loop(&mut self) {
        while !self.stopped() {
            let now = Instant::now();
            let mut deadline = self.next_scan.min(self.next_timers);
            if self.watch.polling.is_some() {
                deadline = deadline.min(self.next_poll);
            }
            let round_at = if self.busy {
                now
            } else {
                self.last_round + COALESCE
            };
            let wait = if self.ready.is_empty() {
                deadline.saturating_duration_since(now)
            } else {
                round_at.min(deadline).saturating_duration_since(now)
            };
            let mut rescan = false;
            let first = if !self.ready.is_empty() {
                // Coalescing: let appends pile up without waking per event.
                std::thread::sleep(wait);
                None
            } else {
                match self.wake_rx.recv_timeout(wait) {
                    Ok(w) => Some(w),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            };
            let mut wakes: Vec<Wake> = first.into_iter().collect();
            wakes.extend(self.wake_rx.try_iter());
            for wake in wakes {
                match wake {
                    Wake::Modified(paths) => {
                        for p in paths {
                            match self.by_path.get(p.as_os_str()) {
                                Some(&id) => self.queue(id),
                                None => rescan |= self.s.wants(&p),
                            }
                        }
                        self.queue_unmatched();
                    }
                    Wake::Rescan => rescan = true,
                    Wake::Failed(why) => {
                        self.watch.fall_back(why.clone());
                        self.send(ReaderMsg::Polling(why));
                    }
                    Wake::Stop => return,
                }
            }
            let now = Instant::now();
            if rescan || now >= self.next_scan {
                self.scan(None);
            }
            if self.watch.polling.is_some() && now >= self.next_poll {
                self.poll_stat();
                self.next_poll = now + self.s.poll_interval;
            }
            if now >= self.next_timers {
                self.timers(now);
                self.next_timers = now + TIMER_TICK;
            }
            if !self.ready.is_empty() && Instant::now() >= round_at {
                self.round();
                self.last_round = Instant::now();
            }
        }
    }

    fn queue(&mut self, id: FileId) {
        if let Some(t) = self.files.get_mut(&id) {
            if !t.queued {
                t.queued = true;
                self.ready.push_back(id);
            }
        }
    }

    /// Files renamed away or deleted are read on every wake-up until they
    /// are closed: their writers may still append.
    fn queue_unmatched(&mut self) {
        let ids: Vec<FileId> = self.unmatched.iter().copied().collect();
        for id in ids {
            self.queue(id);
        }
    }

    /// Partial-line and multiline timeouts, idle closing, finished files.
    fn timers(&mut self, now: Instant) {
        let ts = now_ms();
        let mut done = Vec::new();
        let (s, records, bytes) = (&self.s, &mut self.records, &mut self.bytes);
        for t in self.files.values_mut() {
            let idle = now.duration_since(t.active) >= s.idle_close;
            let closable = t.file.is_some() && t.at_eof && !t.queued && (t.deleted || idle);
            if !closable && t.lines.partial_since().is_none() && !t.holds_group() {
                continue;
            }
            let (path, host) = (t.ident.path.clone(), s.host.clone());
            let mut emit = |l: Line| push_record(records, bytes, &path, &host, ts, l);
            t.flush_due(s, now, &mut emit);
            if closable {
                if t.deleted {
                    t.flush_all(&mut emit);
                    done.push((t.id, true));
                } else if !t.matched {
                    done.push((t.id, false));
                } else {
                    t.close();
                }
            }
            let c = t.committed();
            if c != t.reported {
                t.reported = c;
                self.positions.push((t.id, c));
            }
        }
        for (id, deleted) in done {
            self.forget(id, deleted);
        }
        let ttl = self.s.checkpoint_ttl;
        self.remembered.retain(|_, list| {
            list.retain(|r| now.duration_since(r.since) < ttl);
            !list.is_empty()
        });
        self.flush_batch();
    }

    /// One round: every ready file gets one turn.
    fn round(&mut self) {
        self.busy = false;
        let n = self.ready.len();
        for _ in 0..n {
            if self.stopped() {
                return;
            }
            let Some(id) = self.ready.pop_front() else {
                break;
            };
            let more = self.turn(id);
            if let Some(t) = self.files.get_mut(&id) {
                t.queued = more;
                if more {
                    self.busy = true;
                    self.ready.push_back(id);
                }
            }
            if self.records.len() >= BATCH_RECORDS || self.bytes as usize >= BATCH_BYTES {
                self.flush_batch();
            }
        }
        self.flush_batch();
    }

    /// One file's turn; true when it has more to read.
    fn turn(&mut self, id: FileId) -> bool {
        let Some(t) = self.files.get_mut(&id) else {
            return false;
        };
        if t.file.is_none() {
            if !t.reopen() {
                self.forget(id, false);
                self.next_scan = Instant::now();
                return false;
            }
            if self.files.values().filter(|t| t.file.is_some()).count() > self.s.max_open_files {
                self.evict_one();
            }
        }
        let Some(t) = self.files.get_mut(&id) else {
            return false;
        };
        let now = Instant::now();
        let (s, records, bytes) = (&self.s, &mut self.records, &mut self.bytes);
        let (path, host) = (t.ident.path.clone(), s.host.clone());
        let ts = now_ms();
        let mut emit = |l: Line| push_record(records, bytes, &path, &host, ts, l);
        let oversized = t.lines.oversized_count;
        let result = t.turn(s, s.read_budget, now, &mut emit);
        let oversized = t.lines.oversized_count - oversized;
        if oversized > 0 {
            tracing::warn!(path = %t.path.display(), "{oversized} line(s) longer than max_line_bytes ({})", s.max_line_bytes);
        }
        let c = t.committed();
        if c != t.reported {
            t.reported = c;
            self.positions.push((id, c));
        }
        let (more, ident) = match result {
            Ok(r) => (r.more, r.ident_changed.then(|| t.ident.clone())),
            Err(e) => {
                tracing::warn!(path = %t.path.display(), "read failed: {e}");
                t.close();
                (false, None)
            }
        };
        if let Some(ident) = ident {
            self.flush_batch();
            self.send(ReaderMsg::Track {
                id,
                ident,
                offset: None,
            });
        }
        if oversized > 0 {
            self.send(ReaderMsg::Oversized(oversized));
        }
        more
    }

    fn flush_batch(&mut self) {
        if self.records.is_empty() && self.positions.is_empty() {
            return;
        }
        let msg = ReaderMsg::Batch {
            records: std::mem::take(&mut self.records),
            positions: std::mem::take(&mut self.positions),
            bytes: std::mem::take(&mut self.bytes),
        };
        self.send(msg);
    }
}

fn push_record(
    records: &mut Vec<Record>,
    bytes: &mut u64,
    path: &Arc<str>,
    host: &Arc<str>,
    ts: i64,
    l: Line,
) {
    if records.capacity() == 0 {
        records.reserve(BATCH_RECORDS);
    }
    *bytes += l.value.len() as u64;
    records.push(Record {
        key: None,
        value: l.value,
        headers: None,
        timestamp_ms: ts,
        meta: Meta::Log(LogMeta {
            path: path.clone(),
            host: host.clone(),
            offset: l.offset,
            truncated: l.truncated,
        }),
    });
}
