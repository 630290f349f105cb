//! sluice-file: the `type: file` source. It follows log files matched by
//! globs through rotation (rename, copytruncate, delete, recreate), inode
//! reuse, restarts and crashes, and checkpoints per-file offsets only once
//! every sink acknowledged the lines before them.
//!
//! Modules, one concern each: [`config`] (options), [`discovery`] (globs
//! and scans), [`watch`] (notify, polling fallback), [`identity`]
//! (fingerprints), [`lines`] and [`multiline`] (cutting records),
//! [`tracked`] (one file's reading), [`reader`] (the reader thread),
//! [`state`] (checkpoint entries), [`source`] (the pipeline side).
//! This file only wires the factory.

pub mod config;
pub mod discovery;
pub mod identity;
pub mod lines;
pub mod multiline;
pub mod reader;
pub mod source;
pub mod state;
pub mod tracked;
pub mod watch;

use sluice_core::config::{ComponentOptions, ConfigError};
use sluice_core::{BuildContext, Source, SourceFactory};

pub use config::FileOptions;
pub use source::FileSource;

/// Builds `type: file` sources.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileSourceFactory;

impl SourceFactory for FileSourceFactory {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn options_schema(
        &self,
        generator: &mut schemars::SchemaGenerator,
    ) -> Option<schemars::Schema> {
        Some(generator.subschema_for::<FileOptions>())
    }

    fn build(
        &self,
        _cx: &BuildContext,
        options: &ComponentOptions,
    ) -> Result<Box<dyn Source>, ConfigError> {
        let opts: FileOptions = options.deserialize()?;
        let settings = opts.settings().map_err(|message| ConfigError {
            location: options.location().clone(),
            message,
            hint: None,
        })?;
        Ok(Box::new(FileSource::new(settings)))
    }
}
