//! Topic configuration, store options and name validation. Role: plain data with serde
//! (the topic metadata file is this struct as JSON); touches nothing.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};

/// When appended data is forced to disk. Appends are acknowledged after the covering fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// Every append is fsynced before it is acknowledged (concurrent appends share one fsync).
    Always,
    /// Group commit: a background flusher fsyncs dirty partitions every `ms` milliseconds.
    Interval { ms: u64 },
    /// Never fsync; acknowledged once written to the OS.
    Never,
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        FsyncPolicy::Interval { ms: 20 }
    }
}

/// What a bounded topic does when an append would exceed its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// Refuse the whole batch with [`StoreError::TopicFull`] (→ HTTP 429).
    #[default]
    Reject,
    /// Advance the first offset past the oldest records to make room.
    DropOldest,
}

/// Time/size based retention, applied to whole sealed segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Retention {
    /// Keep at most this many bytes per partition (oldest whole segments deleted first).
    pub max_bytes: Option<u64>,
    /// Delete sealed segments whose newest record is older than this (milliseconds).
    pub max_age_ms: Option<u64>,
}

/// Limits of a bounded topic, per partition, counted in retained records and frame bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    pub max_messages: Option<u64>,
    pub max_bytes: Option<u64>,
    pub on_full: OnFull,
}

/// Configuration of one topic, stored as `<topic>/topic.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TopicConfig {
    pub partitions: u32,
    pub fsync: FsyncPolicy,
    /// A segment is rolled once it would grow past this (max 1 GiB).
    pub segment_max_bytes: u64,
    /// One sparse index entry per this many bytes of log.
    pub index_interval_bytes: u32,
    pub retention: Retention,
    pub limits: Limits,
    /// Where queue groups send records past `max_deliveries`; default `<topic>.dlq`.
    pub dead_letter_topic: Option<String>,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            partitions: 1,
            fsync: FsyncPolicy::default(),
            segment_max_bytes: 128 << 20,
            index_interval_bytes: 4096,
            retention: Retention::default(),
            limits: Limits::default(),
            dead_letter_topic: None,
        }
    }
}

impl TopicConfig {
    /// Default config with `n` partitions.
    pub fn with_partitions(n: u32) -> Self {
        TopicConfig {
            partitions: n,
            ..Default::default()
        }
    }

    /// Reject impossible settings.
    pub fn validate(&self) -> Result<()> {
        if self.partitions == 0 || self.partitions > 10_000 {
            return Err(StoreError::Invalid("partitions must be 1..=10000".into()));
        }
        if self.segment_max_bytes < 256 || self.segment_max_bytes > 1 << 30 {
            return Err(StoreError::Invalid(
                "segment_max_bytes must be between 256 bytes and 1 GiB".into(),
            ));
        }
        if self.index_interval_bytes == 0 {
            return Err(StoreError::Invalid(
                "index_interval_bytes must be > 0".into(),
            ));
        }
        if let FsyncPolicy::Interval { ms: 0 } = self.fsync {
            return Err(StoreError::Invalid("fsync interval must be > 0 ms".into()));
        }
        if let Some(d) = &self.dead_letter_topic {
            validate_name(d)?;
        }
        Ok(())
    }
}

/// Options for [`crate::Store::open`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How often the background thread applies retention.
    pub retention_check_interval: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            retention_check_interval: Duration::from_secs(5),
        }
    }
}

/// Validate a topic or group name: `[A-Za-z0-9._-]{1,249}`, not `.` or `..`.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "cdc.shop.orders", "A-b_c.9", &"x".repeat(249)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "ü", &"x".repeat(250), "a\0"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_name("...").is_ok());
    }
}
