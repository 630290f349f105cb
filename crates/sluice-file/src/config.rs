//! The `type: file` source's options as written in a pipeline, their
//! defaults, and their validation into a ready-to-use [`Settings`] (compiled
//! globs and patterns). Touches nothing but memory.

use std::sync::Arc;
use std::time::Duration;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use regex::bytes::Regex;
use schemars::JsonSchema;
use serde::Deserialize;

/// Where to start in files present at the very first start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    #[default]
    Beginning,
    End,
}

/// What to do with a line longer than `max_line_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Oversized {
    /// Keep the first `max_line_bytes`, flagged `truncated`.
    #[default]
    Truncate,
    /// Drop the line.
    Skip,
}

/// What to do when the checkpoint file cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnCorrupt {
    /// Read every file from its beginning (duplicates, never loss).
    #[default]
    Beginning,
    /// Start at the end of every file present now.
    End,
    /// Refuse to start the source.
    Stop,
}

/// How lines are joined into one multiline record (Vector's modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MultilineMode {
    /// Following lines matching `condition_pattern` belong to the group.
    ContinueThrough,
    /// Following lines matching `condition_pattern`, plus one more.
    ContinuePast,
    /// Following lines up to (not including) one matching `condition_pattern`.
    HaltBefore,
    /// Following lines up to and including one matching `condition_pattern`.
    HaltWith,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MultilineOptions {
    pub start_pattern: String,
    pub condition_pattern: String,
    pub mode: MultilineMode,
    /// A group with no new line for this long is emitted. Default 1000.
    #[serde(default = "d_ml_timeout")]
    pub timeout_ms: u64,
}

/// The options of a `type: file` source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileOptions {
    /// Globs of files to follow (`*` stays in one directory, `**` crosses).
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Files present at the very first start: `beginning` (default) or `end`.
    #[serde(default)]
    pub read_from: ReadFrom,
    /// Rescan the globs this often, besides notify events. Default 1000.
    #[serde(default = "d_glob_interval")]
    pub glob_interval_ms: u64,
    /// Ignore files not modified for this long.
    #[serde(default)]
    pub ignore_older_secs: Option<u64>,
    /// Identity: hash of this many leading bytes, with device and inode.
    #[serde(default = "d_fingerprint")]
    pub fingerprint_bytes: usize,
    /// Default 1 MiB.
    #[serde(default = "d_max_line")]
    pub max_line_bytes: usize,
    #[serde(default)]
    pub oversized_lines: Oversized,
    /// A last line without newline is emitted after this long. Default 1000.
    #[serde(default = "d_partial")]
    pub partial_line_timeout_ms: u64,
    #[serde(default)]
    pub multiline: Option<MultilineOptions>,
    /// Default 1024.
    #[serde(default = "d_max_open")]
    pub max_open_files: usize,
    /// Files unchanged this long are closed (reopened on change). Default 60.
    #[serde(default = "d_idle_close")]
    pub idle_close_secs: u64,
    /// Checkpoint entries of files gone this long are forgotten. Default 7 days.
    #[serde(default = "d_ttl")]
    pub checkpoint_ttl_secs: u64,
    #[serde(default)]
    pub on_corrupt_checkpoint: OnCorrupt,
    /// Force stat polling instead of notify events.
    #[serde(default)]
    pub poll: bool,
    /// Stat interval in polling mode. Default 250.
    #[serde(default = "d_poll_interval")]
    pub poll_interval_ms: u64,
    /// Bytes read from one file before the next file's turn. Default 256 KiB.
    #[serde(default = "d_budget")]
    pub read_budget_bytes: usize,
    /// `host` of every record. Default: this machine's host name.
    #[serde(default)]
    pub host: Option<String>,
    /// Skip `*.gz`, `*.zip`, `*.bz2`, `*.xz`, `*.zst` rotations. Default true.
    #[serde(default = "d_true")]
    pub exclude_compressed: bool,
}

fn d_ml_timeout() -> u64 {
    1000
}
fn d_glob_interval() -> u64 {
    1000
}
fn d_fingerprint() -> usize {
    1024
}
fn d_max_line() -> usize {
    1 << 20
}
fn d_partial() -> u64 {
    1000
}
fn d_max_open() -> usize {
    1024
}
fn d_idle_close() -> u64 {
    60
}
fn d_ttl() -> u64 {
    7 * 86400
}
fn d_poll_interval() -> u64 {
    250
}
fn d_budget() -> usize {
    256 << 10
}
fn d_true() -> bool {
    true
}

/// Compressed rotations, excluded unless `exclude_compressed: false`.
const COMPRESSED: &[&str] = &["**/*.gz", "**/*.zip", "**/*.bz2", "**/*.xz", "**/*.zst"];

/// Multiline patterns, compiled.
#[derive(Debug, Clone)]
pub struct Multiline {
    pub start: Regex,
    pub condition: Regex,
    pub mode: MultilineMode,
    pub timeout: Duration,
}

/// Validated options, ready for the reader.
#[derive(Debug, Clone)]
pub struct Settings {
    pub include: Vec<String>,
    pub include_set: GlobSet,
    pub exclude_set: GlobSet,
    pub read_from: ReadFrom,
    pub glob_interval: Duration,
    pub ignore_older: Option<Duration>,
    pub fingerprint_bytes: usize,
    pub max_line_bytes: usize,
    pub oversized: Oversized,
    pub partial_timeout: Duration,
    pub multiline: Option<Multiline>,
    pub max_open_files: usize,
    pub idle_close: Duration,
    pub checkpoint_ttl: Duration,
    pub on_corrupt: OnCorrupt,
    pub poll: bool,
    pub poll_interval: Duration,
    pub read_budget: usize,
    pub host: Arc<str>,
}

fn glob(pattern: &str) -> Result<Glob, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("bad glob `{pattern}`: {e}"))
}

impl FileOptions {
    /// Checks and compiles the options; the error names the bad option.
    pub fn settings(&self) -> Result<Settings, String> {
        if self.include.is_empty() {
            return Err("`include` needs at least one glob".into());
        }
        let mut inc = GlobSetBuilder::new();
        for p in &self.include {
            if !p.starts_with('/') {
                return Err(format!("`include` glob `{p}` must be an absolute path"));
            }
            inc.add(glob(p)?);
        }
        let mut exc = GlobSetBuilder::new();
        for p in &self.exclude {
            exc.add(glob(p)?);
        }
        if self.exclude_compressed {
            for p in COMPRESSED {
                exc.add(glob(p)?);
            }
        }
        let multiline = match &self.multiline {
            None => None,
            Some(m) => {
                let re = |name: &str, p: &str| {
                    Regex::new(p).map_err(|e| format!("`multiline.{name}`: {e}"))
                };
                Some(Multiline {
                    start: re("start_pattern", &m.start_pattern)?,
                    condition: re("condition_pattern", &m.condition_pattern)?,
                    mode: m.mode,
                    timeout: Duration::from_millis(m.timeout_ms.max(1)),
                })
            }
        };
        if self.max_line_bytes == 0 {
            return Err("`max_line_bytes` must be positive".into());
        }
        Ok(Settings {
            include: self.include.clone(),
            include_set: inc.build().map_err(|e| e.to_string())?,
            exclude_set: exc.build().map_err(|e| e.to_string())?,
            read_from: self.read_from,
            glob_interval: Duration::from_millis(self.glob_interval_ms.max(10)),
            ignore_older: self.ignore_older_secs.map(Duration::from_secs),
            fingerprint_bytes: self.fingerprint_bytes.clamp(1, 1 << 20),
            max_line_bytes: self.max_line_bytes,
            oversized: self.oversized_lines,
            partial_timeout: Duration::from_millis(self.partial_line_timeout_ms),
            multiline,
            max_open_files: self.max_open_files.max(1),
            idle_close: Duration::from_secs(self.idle_close_secs.max(1)),
            checkpoint_ttl: Duration::from_secs(self.checkpoint_ttl_secs),
            on_corrupt: self.on_corrupt_checkpoint,
            poll: self.poll,
            poll_interval: Duration::from_millis(self.poll_interval_ms.max(10)),
            read_budget: self.read_budget_bytes.clamp(4096, 64 << 20),
            host: self.host.clone().unwrap_or_else(hostname).into(),
        })
    }
}

impl Settings {
    /// Whether `path` is one of the files to follow.
    pub fn wants(&self, path: &std::path::Path) -> bool {
        self.include_set.is_match(path) && !self.exclude_set.is_match(path)
    }
}

/// This machine's host name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
