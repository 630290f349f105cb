//! Change notification: watches the include roots with `notify` (inotify on
//! Linux) and turns its events into wake-ups of the reader thread. When
//! notify cannot start, or the kernel's watch limit is reached, it falls
//! back to stat polling, says so in the log and counts it. Roots that do
//! not exist yet are watched once they appear (the reader retries on every
//! rescan). Under a stream of events its callback pauses at most once per
//! 5 ms, so the kernel queues events and notify's thread does not wake per
//! append. Touches inotify watches and the channel to the reader.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use notify::event::{EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};

use crate::discovery::Root;

/// At most one pause of notify's thread per this window.
const PAUSE_WINDOW: Duration = Duration::from_millis(5);
/// A callback this long after the previous one follows a new wake-up of
/// notify's thread (events of one read come microseconds apart).
const FRESH: Duration = Duration::from_micros(30);

/// Why the reader thread wakes up.
#[derive(Debug)]
pub enum Wake {
    /// Data was written to these paths.
    Modified(Vec<PathBuf>),
    /// Files appeared, vanished or moved: rescan.
    Rescan,
    /// The watcher broke: poll from now on.
    Failed(String),
    /// The source is stopping.
    Stop,
}

/// The directory watches, or the decision to poll.
pub struct Watch {
    watcher: Option<RecommendedWatcher>,
    /// Watched directory → its inode when watched (re-watched if replaced).
    watched: HashMap<PathBuf, u64>,
    /// Why polling is on, if it is.
    pub polling: Option<String>,
}

impl Watch {
    /// Starts the watcher (unless `force_poll`).
    pub fn new(force_poll: bool, tx: Sender<Wake>) -> Watch {
        let mut w = Watch {
            watcher: None,
            watched: HashMap::new(),
            polling: None,
        };
        if force_poll {
            w.polling = Some("`poll: true`".into());
            return w;
        }
        // Under a stream of events the callback pauses at most once per
        // window, right after notify's thread woke for a new event, so that
        // the kernel queues what follows and the thread wakes about once per
        // window instead of once per append. The first event of a window
        // passes at once: an isolated append is not delayed.
        let mut window_end = Instant::now();
        let mut paused = false;
        let mut last_call = Instant::now();
        let handler = move |res: notify::Result<notify::Event>| {
            let now = Instant::now();
            let fresh = now.duration_since(last_call) > FRESH;
            if now >= window_end {
                window_end = now + PAUSE_WINDOW;
                paused = false;
            } else if fresh && !paused {
                paused = true;
                std::thread::sleep(window_end - now);
            }
            last_call = Instant::now();
            let wake = match res {
                Ok(ev) if ev.need_rescan() => Wake::Rescan,
                Ok(ev) => match ev.kind {
                    EventKind::Modify(ModifyKind::Data(_)) | EventKind::Modify(ModifyKind::Any) => {
                        Wake::Modified(ev.paths)
                    }
                    EventKind::Access(_) => return,
                    _ => Wake::Rescan,
                },
                Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                    Wake::Failed(format!("inotify watch limit reached: {e}"))
                }
                Err(_) => Wake::Rescan,
            };
            let _ = tx.send(wake);
        };
        match notify::recommended_watcher(handler) {
            Ok(watcher) => w.watcher = Some(watcher),
            Err(e) => w.fall_back(format!("notify unavailable: {e}")),
        }
        w
    }

    /// Switches to polling for good.
    pub fn fall_back(&mut self, why: String) {
        if self.polling.is_none() {
            tracing::warn!("file source: {why}; falling back to stat polling");
            self.polling = Some(why);
        }
        self.watcher = None;
        self.watched.clear();
    }

    /// Watches every root that exists and is not watched yet.
    pub fn ensure(&mut self, roots: &[Root]) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        let mut failure = None;
        for r in roots {
            let Ok(meta) = std::fs::metadata(&r.dir) else {
                self.watched.remove(&r.dir);
                continue;
            };
            if self.watched.get(&r.dir) == Some(&meta.ino()) {
                continue;
            }
            let mode = if r.depth > 1 {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            match watcher.watch(&r.dir, mode) {
                Ok(()) => {
                    self.watched.insert(r.dir.clone(), meta.ino());
                }
                Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                    failure = Some(format!(
                        "inotify watch limit reached at {}",
                        r.dir.display()
                    ));
                    break;
                }
                Err(e) if matches!(e.kind, notify::ErrorKind::PathNotFound) => {}
                Err(e) => {
                    failure = Some(format!("cannot watch {}: {e}", r.dir.display()));
                    break;
                }
            }
        }
        if let Some(why) = failure {
            self.fall_back(why);
        }
    }
}
