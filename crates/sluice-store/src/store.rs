//! The store: a directory of topics, its lock, the clean-shutdown marker, and the
//! background thread that runs interval group commits and retention. Role: the entry
//! point of the public API. Touches everything under the store directory.

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::atomic_file::{read_optional, sync_dir, write_atomic};
use crate::config::{validate_name, FsyncPolicy, StoreOptions, TopicConfig};
use crate::error::{Result, StoreError};
use crate::partition::{Partition, RecoveryEvent};
use crate::topic::Topic;

const CLEAN_MARKER: &str = ".clean_shutdown";
const LOCK_FILE: &str = ".lock";
const TOPIC_FILE: &str = "topic.json";
const TICK: Duration = Duration::from_millis(5);

/// The embedded log store. Cheap to clone; the last handle dropped (or [`Store::close`])
/// fsyncs everything and writes the clean-shutdown marker.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<StoreInner>,
}

pub(crate) struct StoreInner {
    dir: PathBuf,
    topics: Arc<RwLock<HashMap<String, Topic>>>,
    events: Vec<RecoveryEvent>,
    clean: bool,
    stop: Arc<(Mutex<bool>, Condvar)>,
    _lock: File,
    /// Opening failed half way: do not mark the directory clean on drop.
    failed_open: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.inner.dir.display())
    }
}

impl Store {
    /// Open (creating if needed) the store in `dir`, recovering every topic.
    pub fn open(dir: impl AsRef<Path>, opts: StoreOptions) -> Result<Store> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::create(&lock_path).map_err(|e| StoreError::io(&lock_path, e))?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(StoreError::Locked(dir));
        }
        let marker = dir.join(CLEAN_MARKER);
        let clean = marker.exists();
        if clean {
            fs::remove_file(&marker).map_err(|e| StoreError::io(&marker, e))?;
            sync_dir(&dir)?;
        }
        let mut events = Vec::new();
        let mut found = Vec::new();
        for ent in fs::read_dir(&dir).map_err(|e| StoreError::io(&dir, e))? {
            let ent = ent.map_err(|e| StoreError::io(&dir, e))?;
            let name = ent.file_name().to_string_lossy().to_string();
            if name.contains('~') {
                // A topic deletion that was interrupted: finish it.
                let _ = fs::remove_dir_all(ent.path());
                continue;
            }
            if ent.path().join(TOPIC_FILE).is_file() && validate_name(&name).is_ok() {
                found.push(name);
            }
        }
        let mut open_err = None;
        let inner = Arc::new_cyclic(|weak: &Weak<StoreInner>| {
            let mut topics = HashMap::new();
            let mut err = None;
            for name in found {
                match open_topic(&dir, &name, clean, &mut events, weak.clone()) {
                    Ok(t) => {
                        topics.insert(name, t);
                    }
                    Err(e) => {
                        err.get_or_insert(e);
                    }
                }
            }
            let failed = err.is_some();
            open_err = err;
            StoreInner {
                dir: dir.clone(),
                topics: Arc::new(RwLock::new(topics)),
                events: std::mem::take(&mut events),
                clean,
                stop: Arc::new((Mutex::new(false), Condvar::new())),
                _lock: lock,
                failed_open: failed,
            }
        });
        if let Some(e) = open_err {
            return Err(e);
        }
        let (topics, stop) = (inner.topics.clone(), inner.stop.clone());
        let retention_every = opts.retention_check_interval;
        std::thread::Builder::new()
            .name("sluice-store-flush".into())
            .spawn(move || background(topics, stop, retention_every))
            .map_err(|e| StoreError::io(&dir, e))?;
        Ok(Store { inner })
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Whether the previous run closed the store cleanly.
    pub fn was_clean_shutdown(&self) -> bool {
        self.inner.clean
    }

    /// What recovery truncated, rebuilt or found corrupt while opening.
    pub fn recovery_events(&self) -> &[RecoveryEvent] {
        &self.inner.events
    }

    /// Create a topic; errors if it exists.
    pub fn create_topic(&self, name: &str, cfg: TopicConfig) -> Result<Topic> {
        validate_name(name)?;
        cfg.validate()?;
        let mut topics = self.inner.topics.write();
        if topics.contains_key(name) {
            return Err(StoreError::TopicExists(name.to_string()));
        }
        let tdir = self.inner.dir.join(name);
        fs::create_dir_all(&tdir).map_err(|e| StoreError::io(&tdir, e))?;
        let json =
            serde_json::to_vec_pretty(&cfg).map_err(|e| StoreError::Invalid(e.to_string()))?;
        write_atomic(&tdir.join(TOPIC_FILE), &json)?;
        sync_dir(&self.inner.dir)?;
        let mut ev = Vec::new();
        let t = open_topic(
            &self.inner.dir,
            name,
            true,
            &mut ev,
            Arc::downgrade(&self.inner),
        )?;
        topics.insert(name.to_string(), t.clone());
        Ok(t)
    }

    /// The topic if it exists, else create it with `cfg`.
    pub fn get_or_create_topic(&self, name: &str, cfg: TopicConfig) -> Result<Topic> {
        match self.topic(name) {
            Ok(t) => Ok(t),
            Err(StoreError::UnknownTopic(_)) => match self.create_topic(name, cfg) {
                Err(StoreError::TopicExists(_)) => self.topic(name),
                r => r,
            },
            Err(e) => Err(e),
        }
    }

    /// An existing topic.
    pub fn topic(&self, name: &str) -> Result<Topic> {
        validate_name(name)?;
        self.inner
            .topics
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::UnknownTopic(name.to_string()))
    }

    /// Names of all topics, sorted.
    pub fn list_topics(&self) -> Vec<String> {
        let mut v: Vec<String> = self.inner.topics.read().keys().cloned().collect();
        v.sort();
        v
    }

    /// Delete a topic and all its data and groups. Existing handles start failing.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        let t = self
            .inner
            .topics
            .write()
            .remove(name)
            .ok_or_else(|| StoreError::UnknownTopic(name.to_string()))?;
        t.inner.deleted.store(true, Ordering::Release);
        let from = self.inner.dir.join(name);
        let to = self.inner.dir.join(format!("{name}~deleted"));
        fs::rename(&from, &to).map_err(|e| StoreError::io(&from, e))?;
        sync_dir(&self.inner.dir)?;
        fs::remove_dir_all(&to).map_err(|e| StoreError::io(&to, e))
    }

    /// fsync every partition of every topic now.
    pub fn sync_all(&self) -> Result<()> {
        let topics: Vec<Topic> = self.inner.topics.read().values().cloned().collect();
        for t in topics {
            t.sync()?;
        }
        Ok(())
    }

    /// Flush everything and drop this handle. When the last handle is dropped the store
    /// writes its clean-shutdown marker and releases the directory lock.
    pub fn close(self) -> Result<()> {
        self.sync_all()
    }
}

impl Drop for StoreInner {
    fn drop(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        let mut ok = !self.failed_open;
        for t in self.topics.read().values() {
            if let Err(e) = t.inner.partitions.iter().try_for_each(|p| p.sync_force()) {
                tracing::error!(error = %e, "store: final sync failed");
                ok = false;
            }
        }
        if ok {
            if let Err(e) = write_atomic(&self.dir.join(CLEAN_MARKER), b"clean\n") {
                tracing::error!(error = %e, "store: could not write clean-shutdown marker");
            }
        }
    }
}

fn open_topic(
    dir: &Path,
    name: &str,
    clean: bool,
    events: &mut Vec<RecoveryEvent>,
    store: Weak<StoreInner>,
) -> Result<Topic> {
    let tdir = dir.join(name);
    let path = tdir.join(TOPIC_FILE);
    let bytes = read_optional(&path)?.ok_or_else(|| StoreError::UnknownTopic(name.to_string()))?;
    let cfg: TopicConfig = serde_json::from_slice(&bytes).map_err(|e| StoreError::BadMetadata {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    cfg.validate()?;
    let mut parts = Vec::with_capacity(cfg.partitions as usize);
    let notify = Arc::new(tokio::sync::Notify::new());
    for p in 0..cfg.partitions {
        parts.push(Partition::open(
            name,
            p,
            tdir.join(p.to_string()),
            cfg.clone(),
            clean,
            events,
            notify.clone(),
        )?);
    }
    let t = Topic::new(name.to_string(), tdir, cfg, parts, store, notify);
    t.load_groups()?;
    Ok(t)
}

/// Background thread: interval group commit and periodic retention, until the store drops.
/// It holds the topic map and the stop signal, never the store itself, so dropping the
/// last `Store` handle releases the directory lock at once.
fn background(
    topics: Arc<RwLock<HashMap<String, Topic>>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    retention_every: Duration,
) {
    let mut last_retention = Instant::now();
    loop {
        {
            let mut s = stop.0.lock();
            if *s {
                return;
            }
            stop.1.wait_for(&mut s, TICK);
            if *s {
                return;
            }
        }
        let topics: Vec<Topic> = topics.read().values().cloned().collect();
        let retention = last_retention.elapsed() >= retention_every;
        for t in &topics {
            if let FsyncPolicy::Interval { ms } = t.config().fsync {
                for p in &t.inner.partitions {
                    if p.dirty() && p.since_last_sync() >= Duration::from_millis(ms) {
                        if let Err(e) = p.sync() {
                            tracing::error!(error = %e, "store: group commit failed");
                        }
                    }
                }
            }
            if retention {
                if let Err(e) = t.apply_retention() {
                    tracing::error!(error = %e, topic = t.name(), "store: retention failed");
                }
            }
        }
        if retention {
            last_retention = Instant::now();
        }
    }
}
