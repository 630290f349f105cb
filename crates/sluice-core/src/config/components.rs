//! The parts of a source or sink definition: its `type`, the engine's
//! common keys (`queue`, `inputs`, `where`, `buffer`, `batch`, `retry`,
//! `on_error`, `dead_letter`) turned into the model, and the rest kept as
//! the component's [`ComponentOptions`]. Touches nothing but memory.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::check::{self, Names};
use super::load::deser;
use super::node::{Key, Kind, Node};
use super::units::{duration_ms, size_bytes};
use super::{BatchConfig, OnError, QueueConfig, RetryConfig, SinkConfig, SourceConfig, WhenFull};
use super::{ComponentOptions, ConfigError};
use crate::component::Registry;
use crate::condition::Condition;

#[derive(Deserialize)]
struct QueueSpec {
    max_events: Option<usize>,
    #[serde(default, deserialize_with = "size_bytes::option::deserialize")]
    max_bytes: Option<usize>,
    when_full: Option<WhenFullSpec>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum WhenFullSpec {
    Block,
    DropNewest,
    DropOldest,
    Reject,
}

fn queue(node: Option<&Node>, errors: &mut Vec<ConfigError>) -> QueueConfig {
    let d = QueueConfig::default();
    let Some(node) = node else { return d };
    let Some(spec) = deser::<QueueSpec>(node, errors) else {
        return d;
    };
    check::positive(node, "max_events", spec.max_events, errors);
    check::positive(node, "max_bytes", spec.max_bytes, errors);
    QueueConfig {
        max_events: spec.max_events.unwrap_or(d.max_events),
        max_bytes: spec.max_bytes.unwrap_or(d.max_bytes),
        when_full: match spec.when_full {
            None => d.when_full,
            Some(WhenFullSpec::Block) => WhenFull::Block,
            Some(WhenFullSpec::DropNewest) => WhenFull::DropNewest,
            Some(WhenFullSpec::DropOldest) => WhenFull::DropOldest,
            Some(WhenFullSpec::Reject) => WhenFull::Reject,
        },
    }
}

/// The component's mapping split into its `type`, its common keys and
/// the rest (its options).
struct Parts<'a> {
    kind: Option<(&'a str, &'a Node)>,
    common: Vec<(&'a str, &'a Node)>,
    options: ComponentOptions,
}

fn split<'a>(
    key: &Key,
    node: &'a Node,
    common: &[&str],
    errors: &mut Vec<ConfigError>,
) -> Option<Parts<'a>> {
    let Some(entries) = node.map() else {
        errors.push(ConfigError::new(
            node.loc.clone(),
            format!("`{}` must be a mapping with a `type:`", key.name),
        ));
        return None;
    };
    let mut kind = None;
    let mut found = Vec::new();
    let mut rest = Vec::new();
    for (k, v) in entries {
        if k.name == "type" {
            match v.scalar() {
                Some(t) => kind = Some((t, v)),
                None => errors.push(ConfigError::new(v.loc.clone(), "`type` must be a string")),
            }
        } else if common.contains(&k.name.as_str()) {
            found.push((k.name.as_str(), v));
        } else {
            rest.push((k.clone(), v.clone()));
        }
    }
    if kind.is_none() && node.get("type").is_none() {
        errors.push(ConfigError::new(
            key.loc.clone(),
            format!("`{}` has no `type:`", key.name),
        ));
    }
    let options =
        ComponentOptions::from_node(Node::new(key.loc.clone(), Kind::Map(rest)), key.loc.clone());
    Some(Parts {
        kind,
        common: found,
        options,
    })
}

fn get<'a>(parts: &Parts<'a>, name: &str) -> Option<&'a Node> {
    parts
        .common
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| *v)
}

pub(crate) fn source(
    key: &Key,
    node: &Node,
    registry: &Registry,
    data_dir: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<SourceConfig> {
    let parts = split(key, node, &["queue"], errors)?;
    let queue_node = get(&parts, "queue");
    let queue = queue(queue_node, errors);
    let (kind, kind_node) = parts.kind?;
    check::source_component(
        key,
        kind_node,
        &parts.options,
        queue_node,
        registry,
        data_dir,
        errors,
    );
    Some(SourceConfig {
        name: key.name.clone(),
        kind: kind.to_string(),
        queue,
        options: parts.options,
        location: key.loc.clone(),
    })
}

#[derive(Deserialize)]
struct BatchSpec {
    max_events: Option<usize>,
    #[serde(default, deserialize_with = "size_bytes::option::deserialize")]
    max_bytes: Option<usize>,
    #[serde(default, deserialize_with = "duration_ms::option::deserialize")]
    timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
struct RetrySpec {
    #[serde(default, deserialize_with = "duration_ms::option::deserialize")]
    initial_backoff_ms: Option<u64>,
    #[serde(default, deserialize_with = "duration_ms::option::deserialize")]
    max_backoff_ms: Option<u64>,
    max_attempts: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum OnErrorSpec {
    Stop,
    DeadLetter,
    Drop,
}

#[derive(Deserialize)]
struct DeadLetterSpec {
    path: PathBuf,
}

const SINK_KEYS: &[&str] = &[
    "inputs",
    "where",
    "buffer",
    "batch",
    "retry",
    "on_error",
    "dead_letter",
];

pub(crate) fn sink(
    key: &Key,
    node: &Node,
    registry: &Registry,
    data_dir: &Path,
    names: &Names,
    errors: &mut Vec<ConfigError>,
) -> Option<SinkConfig> {
    let parts = split(key, node, SINK_KEYS, errors)?;
    let inputs = check::inputs(key, get(&parts, "inputs"), names, errors);
    let condition = get(&parts, "where").and_then(|n| condition(n, errors));
    let buffer_node = get(&parts, "buffer");
    let buffer = queue(buffer_node, errors);
    if let Some(n) = buffer_node.and_then(|b| b.get("when_full")) {
        if buffer.when_full == WhenFull::Reject {
            errors.push(
                ConfigError::new(n.loc.clone(), "`reject` is not a policy for a sink buffer")
                    .with_hint("use block, drop_newest or drop_oldest"),
            );
        }
    }
    let d = BatchConfig::default();
    let batch = get(&parts, "batch")
        .and_then(|n| {
            let s = deser::<BatchSpec>(n, errors)?;
            check::positive(n, "max_events", s.max_events, errors);
            check::positive(n, "max_bytes", s.max_bytes, errors);
            Some(BatchConfig {
                max_events: s.max_events.unwrap_or(d.max_events),
                max_bytes: s.max_bytes.unwrap_or(d.max_bytes),
                timeout_ms: s.timeout_ms.unwrap_or(d.timeout_ms),
            })
        })
        .unwrap_or(d);
    let d = RetryConfig::default();
    let retry = get(&parts, "retry")
        .and_then(|n| {
            let s = deser::<RetrySpec>(n, errors)?;
            let r = RetryConfig {
                initial_backoff_ms: s.initial_backoff_ms.unwrap_or(d.initial_backoff_ms),
                max_backoff_ms: s.max_backoff_ms.unwrap_or(d.max_backoff_ms),
                max_attempts: s.max_attempts,
            };
            if r.initial_backoff_ms > r.max_backoff_ms {
                errors.push(ConfigError::new(
                    n.loc.clone(),
                    "`initial_backoff_ms` is larger than `max_backoff_ms`",
                ));
            }
            Some(r)
        })
        .unwrap_or(d);
    let on_error = match get(&parts, "on_error").and_then(|n| deser::<OnErrorSpec>(n, errors)) {
        None | Some(OnErrorSpec::Stop) => OnError::Stop,
        Some(OnErrorSpec::DeadLetter) => OnError::DeadLetter,
        Some(OnErrorSpec::Drop) => OnError::Drop,
    };
    let dead_letter = get(&parts, "dead_letter").and_then(|n| deser::<DeadLetterSpec>(n, errors));
    let dead_letter_path = match (dead_letter, on_error) {
        (Some(d), _) => Some(d.path),
        (None, OnError::DeadLetter) => Some(
            data_dir
                .join("dead_letter")
                .join(format!("{}.ndjson", key.name)),
        ),
        (None, _) => None,
    };
    let (kind, kind_node) = parts.kind?;
    check::sink_component(key, kind_node, &parts.options, registry, data_dir, errors);
    Some(SinkConfig {
        name: key.name.clone(),
        kind: kind.to_string(),
        inputs,
        condition,
        buffer,
        batch,
        retry,
        on_error,
        dead_letter_path,
        options: parts.options,
        location: key.loc.clone(),
    })
}

fn condition(node: &Node, errors: &mut Vec<ConfigError>) -> Option<Condition> {
    if node.failed() {
        return None;
    }
    let Some(text) = node.scalar() else {
        errors.push(ConfigError::new(
            node.loc.clone(),
            "`where` must be a string",
        ));
        return None;
    };
    match Condition::compile(text) {
        Ok(c) => Some(c),
        Err(e) => {
            errors.push(ConfigError::new(
                node.loc_at(e.offset),
                format!("invalid `where`: {}", e.message),
            ));
            None
        }
    }
}
