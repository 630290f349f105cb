//! The pipeline configuration model: what a loaded, interpolated, validated
//! set of pipeline files means. Loading (YAML with positions, `${ENV}`,
//! merging, validation) lives beside it in `config/`; components read their
//! own options through [`ComponentOptions`]. Touches nothing but memory.

use std::net::SocketAddr;
use std::path::PathBuf;

use indexmap::IndexMap;

use crate::condition::Condition;
use crate::config::{ComponentOptions, Location};

/// A whole pipeline: one or more files merged.
#[derive(Debug)]
pub struct PipelineConfig {
    /// Checkpoints and the embedded store live here. Default `./data`.
    pub data_dir: PathBuf,
    pub api: ApiConfig,
    /// Write checkpoints at most this often. Default 1000 ms.
    pub checkpoint_interval_ms: u64,
    /// Drain budget at shutdown. Default 30 s.
    pub shutdown_timeout_secs: u64,
    /// Settings of the embedded store (`store:` key), read by the store.
    pub store: Option<ComponentOptions>,
    pub sources: IndexMap<String, SourceConfig>,
    pub sinks: IndexMap<String, SinkConfig>,
}

#[derive(Clone)]
pub struct ApiConfig {
    /// Default true.
    pub enabled: bool,
    /// Default 127.0.0.1:8686.
    pub listen: SocketAddr,
    /// Bearer token; required when `listen` is not loopback.
    pub auth_token: Option<String>,
    pub tls: Option<TlsFiles>,
}

impl std::fmt::Debug for ApiConfig {
    /// Never shows the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("enabled", &self.enabled)
            .field("listen", &self.listen)
            .field("auth_token", &self.auth_token.as_ref().map(|_| "<hidden>"))
            .field("tls", &self.tls)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug)]
pub struct SourceConfig {
    pub name: String,
    /// The `type:` value.
    pub kind: String,
    /// `queue:` settings of the source's internal queue.
    pub queue: QueueConfig,
    /// Every other key, for the component to deserialize.
    pub options: ComponentOptions,
    /// Where the component's definition starts.
    pub location: Location,
}

#[derive(Debug)]
pub struct SinkConfig {
    pub name: String,
    pub kind: String,
    /// Source names or globs (`app_*`), as written.
    pub inputs: Vec<String>,
    /// Compiled `where:` condition.
    pub condition: Option<Condition>,
    /// `buffer:` settings of the per-sink buffer.
    pub buffer: QueueConfig,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
    pub on_error: OnError,
    /// For `on_error: dead_letter`: the file records go to. Default
    /// `<data_dir>/dead_letter/<sink>.ndjson`.
    pub dead_letter_path: Option<PathBuf>,
    pub options: ComponentOptions,
    pub location: Location,
}

/// A bounded queue: a source's internal queue or a sink's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Default 10,000.
    pub max_events: usize,
    /// Default 32 MiB. Accepts sizes like `64MiB`.
    pub max_bytes: usize,
    pub when_full: WhenFull,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_events: 10_000,
            max_bytes: 32 << 20,
            when_full: WhenFull::Block,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenFull {
    #[default]
    Block,
    DropNewest,
    DropOldest,
    /// Only for sources that answer a client (validated).
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Default 1,000.
    pub max_events: usize,
    /// Default 1 MiB.
    pub max_bytes: usize,
    /// Default 100 ms (accepts `100ms`, `1s`).
    pub timeout_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: 1_000,
            max_bytes: 1 << 20,
            timeout_ms: 100,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    /// Default 100 ms.
    pub initial_backoff_ms: u64,
    /// Default 30 s.
    pub max_backoff_ms: u64,
    /// `None` (the default) retries forever.
    pub max_attempts: Option<u32>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff_ms: 100,
            max_backoff_ms: 30_000,
            max_attempts: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    #[default]
    Stop,
    DeadLetter,
    Drop,
}
