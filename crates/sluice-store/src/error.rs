//! Error type of the store. Role: one enum every public call returns, so callers can
//! map cases (e.g. `TopicFull` → HTTP 429) without string matching. Touches nothing.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An OS-level I/O error, with the file it concerned.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A topic or group name that does not match `[A-Za-z0-9._-]{1,249}` (or is `.`/`..`).
    #[error("invalid name {0:?}: must match [A-Za-z0-9._-]{{1,249}} and not be '.' or '..'")]
    InvalidName(String),
    /// The topic does not exist.
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    /// `create_topic` on a name that already exists.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// Partition number out of range for the topic.
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition { topic: String, partition: u32 },
    /// A bounded topic with `on_full: reject` is full; nothing of the batch was written.
    /// Push sources map this to HTTP 429.
    #[error("topic {topic:?} partition {partition} is full ({reason})")]
    TopicFull {
        topic: String,
        partition: u32,
        reason: &'static str,
    },
    /// The requested offset is below the first retained offset (retention or drop_oldest).
    #[error("offset {offset} out of range for {topic}/{partition}: retained [{first}, {end})")]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        offset: u64,
        first: u64,
        end: u64,
    },
    /// A record on disk failed its checksum or framing check. Reads before it succeed;
    /// `resume_at` is the next offset readable past it (next index entry or next segment),
    /// if there is one: the records in between are lost.
    #[error("corrupt record in {topic}/{partition} at offset {offset} ({path}, byte {position}): {reason}")]
    Corrupt {
        topic: String,
        partition: u32,
        offset: u64,
        path: PathBuf,
        position: u64,
        reason: String,
        resume_at: Option<u64>,
    },
    /// Invalid configuration or argument.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A metadata file (topic config, group state) could not be parsed.
    #[error("bad metadata in {path}: {reason}")]
    BadMetadata { path: PathBuf, reason: String },
    /// An earlier fsync or write failed; the partition refuses further appends until reopened.
    #[error("partition {topic}/{partition} failed earlier and is read-only: {reason}")]
    Failed {
        topic: String,
        partition: u32,
        reason: String,
    },
    /// Another process holds the store directory.
    #[error("store directory {0} is locked by another process")]
    Locked(PathBuf),
    /// Stream group: the partition is leased to another member.
    #[error("partition {partition} of group {group:?} is held by member {holder:?}")]
    LeaseHeld {
        group: String,
        partition: u32,
        holder: String,
    },
    /// The store or topic was closed or deleted.
    #[error("closed: {0}")]
    Closed(String),
}

impl StoreError {
    /// Wrap an I/O error with the path it concerned.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}
