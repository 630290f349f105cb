//! `sluice schema`: the JSON Schema (draft-07) of pipeline files, for
//! editors (e.g. `# yaml-language-server: $schema=sluice.schema.json`).
//!
//! Assembled from the engine's keys (`sluice_core::schema`), the `store:`
//! section the daemon reads, and each registered component's options
//! (`options_schema` of its factory, derived with `schemars` from the very
//! structs the factory deserializes). Sources and sinks are matched on
//! `type` with `if`/`then`, so an editor reports the keys of the right
//! component. The loader is more lenient than YAML typing, so the schema
//! is too: a scalar anywhere may be a `${VAR}` reference, integers may be
//! written as digit strings, strings may be written as numbers or booleans.
//! Touches stdout only.

use std::process::ExitCode;

use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};
use sluice_core::schema as core_schema;
use sluice_core::Registry;

/// A string holding a `${VAR}` reference (resolved when the file loads).
const INTERPOLATED: &str = r"\$\{";

/// The schema of pipeline files for `registry`'s component types.
pub fn pipeline_schema(registry: &Registry) -> Value {
    let mut generator = SchemaSettings::draft07()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let mut defs = Map::new();
    let mut source_types = Vec::new();
    let mut source_rules = Vec::new();
    for kind in registry.source_kinds() {
        let options = registry
            .source(kind)
            .and_then(|f| f.options_schema(&mut generator));
        let def = component_def(
            kind,
            options.map(Value::from),
            core_schema::source_common_properties(),
        );
        push_rule(&mut defs, &mut source_rules, "source", kind, def);
        source_types.push(kind);
    }
    let mut sink_types = Vec::new();
    let mut sink_rules = Vec::new();
    for kind in registry.sink_kinds() {
        let options = registry
            .sink(kind)
            .and_then(|f| f.options_schema(&mut generator));
        let def = component_def(
            kind,
            options.map(Value::from),
            core_schema::sink_common_properties(),
        );
        push_rule(&mut defs, &mut sink_rules, "sink", kind, def);
        sink_types.push(kind);
    }
    defs.insert(
        "source".into(),
        json!({
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"enum": source_types, "description": "the source's component type"}},
            "allOf": source_rules,
        }),
    );
    defs.insert(
        "sink".into(),
        json!({
            "type": "object",
            "required": ["type", "inputs"],
            "properties": {"type": {"enum": sink_types, "description": "the sink's component type"}},
            "allOf": sink_rules,
        }),
    );
    let mut props = core_schema::top_level_properties();
    props.insert(
        "store".into(),
        json!({
            "description": "settings of the embedded store",
            "type": ["object", "null"],
            "additionalProperties": false,
            "properties": {
                "auto_create_topics": {"type": "boolean", "description": "producing to a missing topic creates it (default true)"}
            }
        }),
    );
    props.insert(
        "sources".into(),
        json!({"type": ["object", "null"], "additionalProperties": {"$ref": "#/definitions/source"}}),
    );
    props.insert(
        "sinks".into(),
        json!({"type": ["object", "null"], "additionalProperties": {"$ref": "#/definitions/sink"}}),
    );
    let mut doc = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "sluice pipeline",
        "description": "A sluice pipeline file: sources, sinks, and the daemon's settings.",
        "type": ["object", "null"],
        "additionalProperties": false,
        "properties": props,
        "definitions": defs,
    });
    lenient(&mut doc);
    doc
}

/// `{type: const, …common keys, …options}`, closed to other keys.
fn component_def(kind: &str, options: Option<Value>, common: Map<String, Value>) -> Value {
    let mut def = match options {
        Some(Value::Object(m)) => m,
        // A component without declared options accepts any keys.
        _ => match Value::from(core_schema::any_options()) {
            Value::Object(m) => m,
            _ => Map::new(),
        },
    };
    def.remove("$schema");
    def.remove("title");
    def.insert("type".into(), json!("object"));
    let props = def
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut all = Map::new();
    all.insert("type".into(), json!({"const": kind}));
    all.extend(common);
    all.extend(props);
    def.insert("properties".into(), Value::Object(all));
    Value::Object(def)
}

fn push_rule(
    defs: &mut Map<String, Value>,
    rules: &mut Vec<Value>,
    what: &str,
    kind: &str,
    def: Value,
) {
    let name = format!("{what}.{kind}");
    rules.push(json!({
        "if": {"properties": {"type": {"const": kind}}, "required": ["type"]},
        "then": {"$ref": format!("#/definitions/{name}")},
    }));
    defs.insert(name, def);
}

fn interpolated() -> Value {
    json!({"type": "string", "pattern": INTERPOLATED})
}

/// Widens scalar schemas to what the loader accepts (see the module doc).
fn lenient(v: &mut Value) {
    let Value::Object(m) = v else {
        if let Value::Array(items) = v {
            items.iter_mut().for_each(lenient);
        }
        return;
    };
    for (k, child) in m.iter_mut() {
        // `properties`, `definitions` hold names → schemas; `if` only selects.
        if k == "if" || k == "const" || k == "enum" || k == "pattern" {
            continue;
        }
        if k == "properties" || k == "definitions" {
            if let Value::Object(named) = child {
                named.values_mut().for_each(lenient);
            }
            continue;
        }
        lenient(child);
    }
    let types: Vec<String> = match m.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    };
    let is = |t: &str| types.iter().any(|x| x == t);
    if m.contains_key("const") {
        return; // one alternative of an enum: the enum as a whole is widened
    }
    let all_consts = |items: &Vec<Value>| items.iter().all(|i| i.get("const").is_some());
    if let Some(Value::Array(items)) = m.get_mut("oneOf") {
        if !items.is_empty() && all_consts(items) {
            items.push(interpolated());
        }
        return;
    }
    if m.contains_key("enum") && !m.contains_key("type") {
        let original = Value::Object(std::mem::take(m));
        m.insert("anyOf".into(), json!([original, interpolated()]));
        return;
    }
    if is("integer") || is("number") || is("boolean") {
        let original = Value::Object(std::mem::take(m));
        let mut alternatives = vec![original, interpolated()];
        if is("integer") || is("number") {
            alternatives
                .push(json!({"type": "string", "pattern": r"^\s*-?[0-9][0-9_]*(\.[0-9_]+)?\s*$"}));
        }
        if is("boolean") {
            alternatives.push(json!({"enum": ["true", "false", "True", "False", "TRUE", "FALSE"]}));
        }
        m.insert("anyOf".into(), Value::Array(alternatives));
        return;
    }
    if is("string")
        && !m.contains_key("pattern")
        && !m.contains_key("enum")
        && !m.contains_key("format")
    {
        let mut t = vec![json!("string"), json!("number"), json!("boolean")];
        if is("null") {
            t.push(json!("null"));
        }
        m.insert("type".into(), Value::Array(t));
    } else if is("string") && (m.contains_key("enum") || m.contains_key("pattern")) {
        let original = Value::Object(std::mem::take(m));
        m.insert("anyOf".into(), json!([original, interpolated()]));
    }
}

/// `sluice schema`.
pub fn print() -> ExitCode {
    let doc = pipeline_schema(&crate::components::registry());
    match serde_json::to_string_pretty(&doc) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(4)
        }
    }
}
