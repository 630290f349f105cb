//! Loading: reads the pipeline files, parses and interpolates them, merges
//! them into one pipeline (a name or setting defined twice is an error
//! naming both places), and turns the merged tree into the model, with the
//! checks of `check.rs`. Reads the pipeline files and the environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use serde::Deserialize;

use super::check::Names;
use super::components::{sink, source};
use super::de::NodeDe;
use super::node::{self, Key, Kind, Node};
use super::units::{duration_ms, duration_secs};
use super::{closest_hint, interp, ComponentOptions, ConfigError, Location};
use super::{ApiConfig, PipelineConfig, TlsFiles};
use crate::component::Registry;

const TOP_KEYS: &[&str] = &[
    "data_dir",
    "api",
    "checkpoint_interval_ms",
    "shutdown_timeout_secs",
    "store",
    "sources",
    "sinks",
];

pub(crate) fn load(
    paths: &[&Path],
    registry: &Registry,
) -> Result<PipelineConfig, Vec<ConfigError>> {
    let files = paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|e| e.to_string());
            (p.to_path_buf(), text)
        })
        .collect();
    load_texts(files, registry)
}

pub(crate) fn load_texts(
    files: Vec<(PathBuf, Result<String, String>)>,
    registry: &Registry,
) -> Result<PipelineConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let order: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    let mut merged = Merged::default();
    let mut secrets = Vec::new();
    if files.is_empty() {
        errors.push(ConfigError::new(
            Location::default(),
            "no pipeline file given",
        ));
    }
    for (path, text) in files {
        let first = Location {
            file: path.clone(),
            line: 1,
            column: 1,
        };
        merged.first.get_or_insert(first.clone());
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                errors.push(ConfigError::new(
                    first,
                    format!("cannot read pipeline file: {e}"),
                ));
                merged.failed = true;
                continue;
            }
        };
        let file: Arc<Path> = path.into();
        match node::parse(&text, &file, &mut errors) {
            Ok(mut root) => {
                interp::interpolate_tree(&mut root, &mut errors, &mut secrets);
                merged.add(root, &mut errors);
            }
            Err(e) => {
                errors.push(e);
                merged.failed = true;
            }
        }
    }
    let config = build(merged, registry, &mut errors);
    if errors.is_empty() {
        return Ok(config);
    }
    interp::scrub(&mut errors, &mut secrets);
    let rank = |l: &Location| {
        order
            .iter()
            .position(|p| *p == l.file)
            .unwrap_or(usize::MAX)
    };
    errors.sort_by_key(|e| (rank(&e.location), e.location.line, e.location.column));
    Err(errors)
}

/// Every file's top-level entries, merged.
#[derive(Default)]
struct Merged {
    first: Option<Location>,
    settings: Vec<(Key, Node)>,
    sources: Vec<(Key, Node)>,
    sinks: Vec<(Key, Node)>,
    /// A file could not be read or parsed: an empty pipeline is no news.
    failed: bool,
    /// Components seen, duplicates included.
    seen_sources: usize,
    seen_sinks: usize,
}

impl Merged {
    fn add(&mut self, root: Node, errors: &mut Vec<ConfigError>) {
        let entries = match root.kind {
            Kind::Map(entries) => entries,
            Kind::Null => return,
            _ => {
                errors.push(ConfigError::new(
                    root.loc,
                    "a pipeline file is a mapping with `sources:` and `sinks:`",
                ));
                return;
            }
        };
        for (key, value) in entries {
            match key.name.as_str() {
                "sources" | "sinks" => self.add_components(key, value, errors),
                name if TOP_KEYS.contains(&name) => {
                    if let Some((first, _)) = self.settings.iter().find(|(k, _)| k.name == name) {
                        errors.push(ConfigError::new(
                            key.loc.clone(),
                            format!("`{name}` is set twice (first at {})", first.loc),
                        ));
                    } else {
                        self.settings.push((key, value));
                    }
                }
                name => {
                    let mut e = ConfigError::new(key.loc.clone(), format!("unknown key `{name}`"));
                    e.hint = closest_hint(name, TOP_KEYS.iter().copied());
                    errors.push(e);
                }
            }
        }
    }

    fn add_components(&mut self, section: Key, value: Node, errors: &mut Vec<ConfigError>) {
        let is_source = section.name == "sources";
        let entries = match value.kind {
            Kind::Map(entries) => entries,
            Kind::Null => return,
            _ => {
                errors.push(ConfigError::new(
                    value.loc,
                    format!("`{}` is a mapping from names to components", section.name),
                ));
                return;
            }
        };
        for (key, node) in entries {
            if is_source {
                self.seen_sources += 1;
            } else {
                self.seen_sinks += 1;
            }
            let in_sources = self.sources.iter().find(|(k, _)| k.name == key.name);
            let in_sinks = self.sinks.iter().find(|(k, _)| k.name == key.name);
            let this = if is_source { "source" } else { "sink" };
            let clash = match (in_sources, in_sinks) {
                (Some((k, _)), _) => Some(("a source", k)),
                (_, Some((k, _))) => Some(("a sink", k)),
                _ => None,
            };
            if let Some((what, first)) = clash {
                errors.push(ConfigError::new(
                    key.loc.clone(),
                    format!(
                        "{this} `{}` is defined twice: {what} of that name is defined at {}",
                        key.name, first.loc
                    ),
                ));
                continue;
            }
            if is_source {
                self.sources.push((key, node));
            } else {
                self.sinks.push((key, node));
            }
        }
    }
}

#[derive(Deserialize)]
struct Top {
    data_dir: Option<PathBuf>,
    api: Option<ApiSpec>,
    #[serde(default, deserialize_with = "duration_ms::option::deserialize")]
    checkpoint_interval_ms: Option<u64>,
    #[serde(default, deserialize_with = "duration_secs::option::deserialize")]
    shutdown_timeout_secs: Option<u64>,
    #[serde(rename = "store")]
    _store: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct ApiSpec {
    enabled: Option<bool>,
    listen: Option<SocketAddr>,
    auth_token: Option<String>,
    tls: Option<TlsSpec>,
}

#[derive(Deserialize)]
struct TlsSpec {
    cert: PathBuf,
    key: PathBuf,
}

fn build(merged: Merged, registry: &Registry, errors: &mut Vec<ConfigError>) -> PipelineConfig {
    let first = merged.first.clone().unwrap_or_default();
    let settings = Node::new(first.clone(), Kind::Map(merged.settings));
    let top: Option<Top> = deser(&settings, errors);
    let top = top.unwrap_or(Top {
        data_dir: None,
        api: None,
        checkpoint_interval_ms: None,
        shutdown_timeout_secs: None,
        _store: None,
    });
    let data_dir = top.data_dir.unwrap_or_else(|| PathBuf::from("./data"));
    let data_dir = if data_dir.is_relative() {
        std::env::current_dir()
            .map(|d| d.join(&data_dir))
            .unwrap_or(data_dir)
    } else {
        data_dir
    };
    let api = api_config(top.api, settings.get("api"), errors);
    let store = settings
        .map()
        .and_then(|m| m.iter().find(|(k, _)| k.name == "store"));
    let store = store.map(|(k, n)| ComponentOptions::from_node(n.clone(), k.loc.clone()));

    let names = Names::new(&merged.sources, &merged.sinks);
    let mut sources = IndexMap::new();
    for (key, node) in &merged.sources {
        if let Some(s) = source(key, node, registry, &data_dir, errors) {
            sources.insert(s.name.clone(), s);
        }
    }
    let mut sinks = IndexMap::new();
    for (key, node) in &merged.sinks {
        if let Some(s) = sink(key, node, registry, &data_dir, &names, errors) {
            sinks.insert(s.name.clone(), s);
        }
    }
    // Neither sources nor sinks is a daemon that only serves the store and
    // its API; one without the other is a mistake.
    if merged.seen_sources == 0 && merged.seen_sinks > 0 && !merged.failed {
        errors.push(ConfigError::new(
            first.clone(),
            "the pipeline defines no source (`sources:`)",
        ));
    }
    if merged.seen_sinks == 0 && merged.seen_sources > 0 && !merged.failed {
        errors.push(ConfigError::new(
            first,
            "the pipeline defines no sink (`sinks:`)",
        ));
    }
    PipelineConfig {
        data_dir,
        api,
        checkpoint_interval_ms: top.checkpoint_interval_ms.unwrap_or(1_000),
        shutdown_timeout_secs: top.shutdown_timeout_secs.unwrap_or(30),
        store,
        sources,
        sinks,
    }
}

/// Deserializes a node, recording the error.
pub(crate) fn deser<T: serde::de::DeserializeOwned>(
    node: &Node,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    match T::deserialize(NodeDe(node)) {
        Ok(v) => Some(v),
        Err(e) => {
            if !e.silent {
                errors.push(e.into_config(&node.loc));
            }
            None
        }
    }
}

fn api_config(
    spec: Option<ApiSpec>,
    node: Option<&Node>,
    errors: &mut Vec<ConfigError>,
) -> ApiConfig {
    let spec = spec.unwrap_or(ApiSpec {
        enabled: None,
        listen: None,
        auth_token: None,
        tls: None,
    });
    let listen = spec
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8686)));
    let enabled = spec.enabled.unwrap_or(true);
    // `${TOKEN:-}` with TOKEN unset is an empty string: no token, not a
    // token nobody can send.
    let auth_token = spec.auth_token.filter(|t| !t.trim().is_empty());
    if enabled && !listen.ip().is_loopback() && auth_token.is_none() {
        if let Some(n) = node.and_then(|n| n.get("listen")) {
            errors.push(
                ConfigError::new(
                    n.loc.clone(),
                    "the API listens beyond loopback without `auth_token`",
                )
                .with_hint(
                    "set `api.auth_token` (e.g. `${SLUICE_API_TOKEN}`) or listen on 127.0.0.1",
                ),
            );
        }
    }
    ApiConfig {
        enabled,
        listen,
        auth_token,
        tls: spec.tls.map(|t| TlsFiles {
            cert: t.cert,
            key: t.key,
        }),
    }
}
