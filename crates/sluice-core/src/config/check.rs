//! Checks that need the whole pipeline or the component registry: known
//! component types (with the closest registered kind as hint), each
//! component's own options (by building it, which touches nothing outside),
//! `when_full: reject` only on sources that answer a client, and sink
//! `inputs` that name existing sources (names or globs), never sinks.
//! Touches nothing but memory.

use std::path::Path;

use globset::Glob;

use super::node::{Key, Kind, Node};
use super::{closest_hint, ComponentOptions, ConfigError};
use crate::component::{BuildContext, Registry, Resources};

/// The names of every source and sink of the merged pipeline.
pub(crate) struct Names {
    sources: Vec<String>,
    sinks: Vec<String>,
}

impl Names {
    pub fn new(sources: &[(Key, Node)], sinks: &[(Key, Node)]) -> Names {
        Names {
            sources: sources.iter().map(|(k, _)| k.name.clone()).collect(),
            sinks: sinks.iter().map(|(k, _)| k.name.clone()).collect(),
        }
    }
}

/// A count or size that must be at least 1.
pub(crate) fn positive(
    node: &Node,
    key: &str,
    value: Option<usize>,
    errors: &mut Vec<ConfigError>,
) {
    if value == Some(0) {
        let loc = node.get(key).map_or(&node.loc, |n| &n.loc);
        errors.push(ConfigError::new(
            loc.clone(),
            format!("`{key}` must be at least 1"),
        ));
    }
}

fn unknown_kind(
    what: &str,
    kind: &str,
    node: &Node,
    kinds: impl Iterator<Item = &'static str>,
) -> ConfigError {
    let mut e = ConfigError::new(node.loc.clone(), format!("unknown {what} type `{kind}`"));
    e.hint = closest_hint(kind, kinds);
    e
}

pub(crate) fn source_component(
    key: &Key,
    kind_node: &Node,
    options: &ComponentOptions,
    queue: Option<&Node>,
    registry: &Registry,
    data_dir: &Path,
    errors: &mut Vec<ConfigError>,
) {
    let kind = kind_node.scalar().unwrap_or_default();
    if kind_node.failed() {
        return;
    }
    let Some(factory) = registry.source(kind) else {
        errors.push(unknown_kind(
            "source",
            kind,
            kind_node,
            registry.source_kinds(),
        ));
        return;
    };
    let reject = queue
        .and_then(|q| q.get("when_full"))
        .filter(|n| n.scalar() == Some("reject"));
    if let Some(n) = reject {
        if !factory.answers_clients() {
            errors.push(
                ConfigError::new(
                    n.loc.clone(),
                    format!("`when_full: reject` needs a source that answers its clients; a `{kind}` source cannot"),
                )
                .with_hint("use block, drop_newest or drop_oldest"),
            );
        }
    }
    let resources = Resources::default();
    let cx = BuildContext {
        name: &key.name,
        data_dir,
        resources: &resources,
    };
    if options.failed() {
        return; // its interpolation error is reported; the rest would be noise
    }
    if let Err(e) = factory.build(&cx, options) {
        errors.push(e);
    }
}

pub(crate) fn sink_component(
    key: &Key,
    kind_node: &Node,
    options: &ComponentOptions,
    registry: &Registry,
    data_dir: &Path,
    errors: &mut Vec<ConfigError>,
) {
    let kind = kind_node.scalar().unwrap_or_default();
    if kind_node.failed() {
        return;
    }
    let Some(factory) = registry.sink(kind) else {
        errors.push(unknown_kind("sink", kind, kind_node, registry.sink_kinds()));
        return;
    };
    let resources = Resources::default();
    let cx = BuildContext {
        name: &key.name,
        data_dir,
        resources: &resources,
    };
    if options.failed() {
        return; // its interpolation error is reported; the rest would be noise
    }
    if let Err(e) = factory.build(&cx, options) {
        errors.push(e);
    }
}

/// Checks a sink's `inputs` (a list, or one string) and returns them.
pub(crate) fn inputs(
    sink: &Key,
    node: Option<&Node>,
    names: &Names,
    errors: &mut Vec<ConfigError>,
) -> Vec<String> {
    let Some(node) = node else {
        errors.push(
            ConfigError::new(
                sink.loc.clone(),
                format!("sink `{}` has no `inputs`", sink.name),
            )
            .with_hint("add `inputs: [source_name]`"),
        );
        return Vec::new();
    };
    let items: Vec<&Node> = match &node.kind {
        Kind::Scalar(_) => vec![node],
        Kind::Seq(items) => items.iter().collect(),
        _ => Vec::new(),
    };
    if items.is_empty() {
        errors.push(ConfigError::new(
            node.loc.clone(),
            format!(
                "sink `{}` has no `inputs`: list one or more source names",
                sink.name
            ),
        ));
        return Vec::new();
    }
    let mut out = Vec::new();
    for item in items {
        let Some(name) = item.scalar() else {
            errors.push(ConfigError::new(
                item.loc.clone(),
                "an input is a source name or glob",
            ));
            continue;
        };
        out.push(name.to_string());
        if item.failed() {
            continue;
        }
        if let Some(e) = check_input(sink, name, item, names) {
            errors.push(e);
        }
    }
    out
}

fn check_input(sink: &Key, name: &str, item: &Node, names: &Names) -> Option<ConfigError> {
    let loc = item.loc.clone();
    if name == sink.name {
        return Some(ConfigError::new(
            loc,
            format!("sink `{name}` lists itself in `inputs`"),
        ));
    }
    if names.sinks.iter().any(|s| s == name) {
        return Some(ConfigError::new(
            loc,
            format!("`{name}` is a sink: `inputs` name sources"),
        ));
    }
    let is_glob = name.contains(['*', '?', '[', '{']);
    let matched = if is_glob {
        match Glob::new(name) {
            Ok(g) => {
                let m = g.compile_matcher();
                names.sources.iter().any(|s| m.is_match(s))
            }
            Err(e) => {
                return Some(ConfigError::new(
                    loc,
                    format!("invalid glob in `inputs`: {}", e.kind()),
                ));
            }
        }
    } else {
        names.sources.iter().any(|s| s == name)
    };
    if matched {
        return None;
    }
    let what = if is_glob {
        "matches no source"
    } else {
        "is not a source"
    };
    let mut e = ConfigError::new(loc, format!("input `{name}` {what}"));
    e.hint = closest_hint(name, names.sources.iter().map(String::as_str));
    Some(e)
}
