//! Pipeline configuration: the model ([`model`]) and its loading.
//!
//! STUB — the loader (YAML with file:line:column positions, `${ENV}`
//! interpolation, merging of several files, validation against the
//! component registry) replaces this file. The public names below are the
//! contract the engine and the components use.

pub mod model;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use model::*;

use crate::component::Registry;

/// A place in a pipeline file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One configuration error, with its place and, where one fits, a hint
/// such as the closest valid name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub location: Location,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A component's own keys (everything but the engine's common ones), kept
/// with their positions so that the component's errors name the place.
#[derive(Debug, Clone)]
pub struct ComponentOptions {
    value: serde_json::Value,
    location: Location,
}

impl ComponentOptions {
    /// Options from a JSON value (tests, programmatic pipelines).
    pub fn from_json(value: serde_json::Value) -> ComponentOptions {
        ComponentOptions {
            value,
            location: Location::default(),
        }
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Deserializes the options into the component's config type. Unknown
    /// keys are errors when `T` uses `#[serde(deny_unknown_fields)]`.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        serde_json::from_value(self.value.clone()).map_err(|e| ConfigError {
            location: self.location.clone(),
            message: e.to_string(),
            hint: None,
        })
    }
}

/// Loads, merges and validates pipeline files. Every error is returned.
pub fn load(
    paths: &[impl AsRef<Path>],
    registry: &Registry,
) -> Result<PipelineConfig, Vec<ConfigError>> {
    let _ = (paths, registry);
    Err(vec![ConfigError {
        location: Location::default(),
        message: "the pipeline loader is not built yet".into(),
        hint: None,
    }])
}
