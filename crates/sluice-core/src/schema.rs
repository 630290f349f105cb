//! JSON Schema pieces of the pipeline file, for `sluice schema`: the
//! engine's own keys (top level, a source's `queue`, a sink's `inputs`,
//! `where`, `buffer`, `batch`, `retry`, `on_error`, `dead_letter`), written
//! here by hand to mirror `config/` (tests in the binary check the two
//! agree), and the schema types that component option structs name in
//! `#[schemars(with = …)]` for fields read by the unit helpers (durations,
//! sizes). Component options themselves come from `schemars` derives, via
//! [`crate::SourceFactory::options_schema`]. Touches nothing but memory.

use std::borrow::Cow;

pub use schemars;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

/// What `parse_duration` reads: a number, optionally with a unit.
const DURATION_PATTERN: &str =
    r"^\s*[0-9][0-9_]*(\.[0-9_]+)?\s*(ms|s|sec|secs|m|min|mins|h|d)?\s*$";
/// What `parse_size` reads: a number, optionally with a unit (any case).
const SIZE_PATTERN: &str =
    r"^\s*[0-9][0-9_]*(\.[0-9_]+)?\s*([bB]|[kKmMgGtT][bB]?|[kKmMgGtT][iI][bB])?\s*$";

fn unit_schema(pattern: &str, description: &str) -> Value {
    json!({
        "description": description,
        "anyOf": [
            {"type": "integer", "minimum": 0},
            {"type": "string", "pattern": pattern}
        ]
    })
}

/// A duration in milliseconds: a number of milliseconds or `500ms`, `10s`, …
pub struct DurationMs;
/// A duration in seconds: a number of seconds or `30s`, `2m`, …
pub struct DurationSecs;
/// A size in bytes: a number of bytes or `64MiB`, `10MB`, …
pub struct Size;

macro_rules! unit_type {
    ($t:ident, $pattern:expr, $doc:literal) => {
        impl JsonSchema for $t {
            fn schema_name() -> Cow<'static, str> {
                stringify!($t).into()
            }
            fn inline_schema() -> bool {
                true
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                Schema::try_from(unit_schema($pattern, $doc)).unwrap_or_default()
            }
        }
    };
}

unit_type!(
    DurationMs,
    DURATION_PATTERN,
    "milliseconds, or a duration with a unit (`500ms`, `10s`, `2m`, `1h`, `1d`)"
);
unit_type!(
    DurationSecs,
    DURATION_PATTERN,
    "seconds, or a duration with a unit (`30s`, `2m`, `1h`, `1d`)"
);
unit_type!(
    Size,
    SIZE_PATTERN,
    "bytes, or a size with a unit (`64MiB`, `10MB`, `1KiB`)"
);

/// For `#[schemars(transform = …)]`: `alias` is accepted as another name of
/// the property `key` (a serde `alias`, which schemars does not see).
pub fn alias(schema: &mut Schema, key: &str, alias: &str) {
    let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(p) = props.get(key).cloned() {
        props.insert(alias.to_string(), p);
    }
}

/// For `#[schemars(transform = …)]` on a unit enum: more accepted spellings.
pub fn enum_aliases(schema: &mut Schema, aliases: &[&str]) {
    if let Some(values) = schema.get_mut("enum").and_then(Value::as_array_mut) {
        values.extend(aliases.iter().map(|a| json!(a)));
    }
}

fn dur_ms() -> Value {
    unit_schema(
        DURATION_PATTERN,
        "milliseconds, or a duration with a unit (`500ms`, `10s`, `2m`)",
    )
}

fn positive() -> Value {
    json!({"type": "integer", "minimum": 1})
}

fn queue(description: &str, policies: &[&str]) -> Value {
    json!({
        "description": description,
        "type": ["object", "null"],
        "additionalProperties": false,
        "properties": {
            "max_events": positive(),
            "max_bytes": unit_schema(SIZE_PATTERN, "bytes, or a size with a unit (`64MiB`)"),
            "when_full": {"enum": policies},
        }
    })
}

/// The top-level keys the engine reads (`sources`, `sinks` and `store` are
/// added by the binary).
pub fn top_level_properties() -> Map<String, Value> {
    let props = json!({
        "data_dir": {"type": "string", "description": "checkpoints and the embedded store (default ./data)"},
        "api": {
            "description": "the HTTP API (health, metrics, components, message queue)",
            "type": ["object", "null"],
            "additionalProperties": false,
            "properties": {
                "enabled": {"type": "boolean"},
                "listen": {"type": "string", "description": "host:port (default 127.0.0.1:8686)"},
                "auth_token": {"type": "string", "description": "Bearer token; required when listening beyond loopback"},
                "tls": {
                    "type": ["object", "null"],
                    "additionalProperties": false,
                    "required": ["cert", "key"],
                    "properties": {"cert": {"type": "string"}, "key": {"type": "string"}}
                }
            }
        },
        "checkpoint_interval_ms": unit_schema(DURATION_PATTERN, "write checkpoints at most this often (default 1000 ms)"),
        "shutdown_timeout_secs": unit_schema(DURATION_PATTERN, "drain budget at shutdown, in seconds (default 30)"),
    });
    match props {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The keys every source has besides `type` and its options.
pub fn source_common_properties() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "queue".into(),
        queue(
            "the source's internal queue",
            &["block", "drop_newest", "drop_oldest", "reject"],
        ),
    );
    m
}

/// The keys every sink has besides `type` and its options.
pub fn sink_common_properties() -> Map<String, Value> {
    let props = json!({
        "inputs": {
            "description": "source names or globs (`app_*`)",
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1}
            ]
        },
        "where": {"type": "string", "description": "a condition in the `where` language; the sink receives only records for which it holds"},
        "buffer": queue("the sink's buffer", &["block", "drop_newest", "drop_oldest"]),
        "batch": {
            "type": ["object", "null"],
            "additionalProperties": false,
            "properties": {
                "max_events": positive(),
                "max_bytes": unit_schema(SIZE_PATTERN, "bytes, or a size with a unit (`1MiB`)"),
                "timeout_ms": dur_ms()
            }
        },
        "retry": {
            "type": ["object", "null"],
            "additionalProperties": false,
            "properties": {
                "initial_backoff_ms": dur_ms(),
                "max_backoff_ms": dur_ms(),
                "max_attempts": {"type": "integer", "minimum": 0}
            }
        },
        "on_error": {"enum": ["stop", "dead_letter", "drop"]},
        "dead_letter": {
            "type": "object",
            "additionalProperties": false,
            "required": ["path"],
            "properties": {"path": {"type": "string"}}
        }
    });
    match props {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A schema accepting any options (for a component that declares none).
pub fn any_options() -> Schema {
    json_schema!({"type": "object"})
}
