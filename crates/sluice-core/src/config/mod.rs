//! Pipeline configuration: the model ([`model`]) and its loading.
//!
//! [`load`] reads one or more YAML files into a tree where every node and
//! every mapping key knows its file:line:column (`node.rs`, built from the
//! events of `saphyr-parser`), interpolates `${VAR}`, `${VAR:-default}`,
//! `${VAR:?message}` and `$$` in scalar values (`interp.rs`), merges the
//! files into one pipeline (`load.rs`), splits each component into the
//! engine's common keys and its own options (`components.rs`) and checks
//! the whole against the component registry (`check.rs`). Components read
//! their own keys through [`ComponentOptions::deserialize`], a serde
//! deserializer over the positioned tree (`de.rs`), with the helpers
//! [`duration_ms`], [`duration_secs`], [`duration`] and [`size_bytes`]
//! (`units.rs`). Every error carries file:line:column; values of keys and
//! variables named like secrets never appear in one. This module reads the
//! pipeline files and the environment; nothing else.

mod check;
mod components;
mod de;
mod interp;
mod load;
pub mod model;
mod node;
mod units;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use interp::interpolate;
pub use model::*;
pub use units::{duration, duration_ms, duration_secs, parse_duration, parse_size, size_bytes};

use crate::component::Registry;
use node::Node;

/// A place in a pipeline file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
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

impl ConfigError {
    pub fn new(location: Location, message: impl Into<String>) -> ConfigError {
        ConfigError {
            location,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> ConfigError {
        self.hint = Some(hint.into());
        self
    }
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
#[derive(Clone)]
pub struct ComponentOptions {
    node: Node,
    location: Location,
}

impl ComponentOptions {
    /// Options from a JSON value (tests, programmatic pipelines). Errors
    /// carry an empty location.
    pub fn from_json(value: serde_json::Value) -> ComponentOptions {
        let location = Location::default();
        ComponentOptions {
            node: Node::from_json(value, &location),
            location,
        }
    }

    pub(crate) fn from_node(node: Node, location: Location) -> ComponentOptions {
        ComponentOptions { node, location }
    }

    /// Where the component is defined (its name in the file).
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The option keys, in file order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.node
            .map()
            .unwrap_or(&[])
            .iter()
            .map(|(k, _)| k.name.as_str())
    }

    /// Deserializes the options into the component's config type. Errors
    /// name the offending node: an unknown key (always rejected for
    /// structs, with the closest expected key as hint), a wrong type or
    /// value, or a missing key (at the component's place). Plain scalars
    /// convert to whatever the field asks for (`"10"` or `10` into a `u64`,
    /// `10` into a `String`); use [`duration_ms`], [`size_bytes`] and co.
    /// for units. Values never appear in messages.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        T::deserialize(de::NodeDe(&self.node)).map_err(|e| e.into_config(&self.location))
    }

    /// Whether an option failed `${ENV}` interpolation (already reported).
    pub(crate) fn failed(&self) -> bool {
        self.node.failed()
    }

    /// The location of one option's value, else the component's.
    pub fn location_of(&self, key: &str) -> &Location {
        self.node.get(key).map_or(&self.location, |n| &n.loc)
    }
}

impl fmt::Debug for ComponentOptions {
    /// Lists the keys only: values may be secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComponentOptions")
            .field("keys", &self.keys().collect::<Vec<_>>())
            .field("location", &self.location)
            .finish()
    }
}

/// Whether a key names a secret whose value must never be shown.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "token",
        "secret",
        "credential",
        "private_key",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// "did you mean `x`?" for the candidate closest to `name`, or the list of
/// candidates when none is close (and there are few).
pub fn closest_hint<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    let all: Vec<&str> = candidates.collect();
    let best = all
        .iter()
        .map(|c| {
            (
                strsim::jaro_winkler(name, c),
                strsim::levenshtein(name, c),
                *c,
            )
        })
        .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
    match best {
        Some((jw, lev, c)) if jw >= 0.8 || lev <= 2 => Some(format!("did you mean `{c}`?")),
        _ if all.is_empty() => None,
        _ if all.len() <= 16 => Some(format!("expected one of: {}", all.join(", "))),
        _ => None,
    }
}

/// Loads, merges and validates pipeline files. Every error is returned,
/// sorted by file (in the order given), line and column.
pub fn load(
    paths: &[impl AsRef<Path>],
    registry: &Registry,
) -> Result<PipelineConfig, Vec<ConfigError>> {
    let paths: Vec<&Path> = paths.iter().map(AsRef::as_ref).collect();
    load::load(&paths, registry)
}

/// Loads one pipeline from YAML text (tests, embedded pipelines); `name`
/// is the file name shown in errors.
pub fn load_str(
    name: impl AsRef<Path>,
    text: &str,
    registry: &Registry,
) -> Result<PipelineConfig, Vec<ConfigError>> {
    load::load_texts(
        vec![(name.as_ref().to_path_buf(), Ok(text.to_string()))],
        registry,
    )
}
