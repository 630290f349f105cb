//! `sluice schema` through the binary: the output is a valid JSON Schema
//! (draft-07), every shipped pipeline (and every pipeline in the READMEs that
//! the loader accepts) validates against it, every registered component type
//! has its options in it, and it refuses what the loader refuses (an unknown
//! key at the top, in a component or in an engine setting; an unknown type;
//! a value outside an enum).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value};

fn schema_from_binary() -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("schema")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("sluice schema prints JSON")
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::draft7::new(schema).expect("the schema compiles")
}

/// YAML (1.2 core schema, as editors read it) → JSON.
fn yaml_to_json(text: &str) -> Value {
    use saphyr::{LoadableYamlNode, Scalar, Yaml};
    fn conv(y: &Yaml) -> Value {
        match y {
            Yaml::Value(Scalar::Null) => Value::Null,
            Yaml::Value(Scalar::Boolean(b)) => Value::Bool(*b),
            Yaml::Value(Scalar::Integer(i)) => Value::from(*i),
            Yaml::Value(Scalar::FloatingPoint(f)) => Value::from(f.into_inner()),
            Yaml::Value(Scalar::String(s)) => Value::String(s.to_string()),
            Yaml::Sequence(items) => Value::Array(items.iter().map(conv).collect()),
            Yaml::Mapping(m) => {
                let mut out = Map::new();
                for (k, v) in m.iter() {
                    let key = match conv(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    out.insert(key, conv(v));
                }
                Value::Object(out)
            }
            other => panic!("unexpected YAML node {other:?}"),
        }
    }
    let docs = Yaml::load_from_str(text).expect("YAML parses");
    docs.first().map(conv).unwrap_or(Value::Null)
}

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn loader_accepts(text: &str) -> Result<(), String> {
    let registry = sluice::components::registry();
    sluice_core::config::load_str("test.yaml", text, &registry)
        .map(|_| ())
        .map_err(|errs| {
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_schema_is_valid_and_accepts_every_shipped_pipeline() {
    let schema = schema_from_binary();
    assert!(
        jsonschema::draft7::meta::is_valid(&schema),
        "not a valid draft-07 schema"
    );
    let v = validator(&schema);
    let mut n = 0;
    for entry in std::fs::read_dir(repo().join("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let doc = yaml_to_json(&std::fs::read_to_string(&path).unwrap());
        let errs = errors(&v, &doc);
        assert!(errs.is_empty(), "{}: {errs:#?}", path.display());
        n += 1;
    }
    assert!(n >= 3, "only {n} pipelines found");
}

/// Every ```yaml block of the READMEs that defines a pipeline.
fn readme_pipelines() -> Vec<(PathBuf, String)> {
    let mut files = vec![repo().join("README.md")];
    for c in std::fs::read_dir(repo().join("crates")).unwrap() {
        let dir = c.unwrap().path();
        for name in ["README.md", "APPLY.md"] {
            if dir.join(name).exists() {
                files.push(dir.join(name));
            }
        }
    }
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("```yaml\n") {
            let body = &rest[start + 8..];
            let end = body.find("```").unwrap_or(body.len());
            let block = &body[..end];
            if block.contains("sources:") || block.contains("sinks:") {
                out.push((f.clone(), block.to_string()));
            }
            rest = &body[end..];
        }
    }
    out
}

#[test]
fn whatever_the_loader_accepts_the_schema_accepts() {
    let v = validator(&schema_from_binary());
    let mut samples: Vec<(PathBuf, String)> = readme_pipelines();
    samples.push((Path::new("kitchen-sink").into(), KITCHEN_SINK.to_string()));
    set_referenced_variables(&samples);
    let mut accepted = 0;
    for (file, text) in &samples {
        let doc = complete(yaml_to_json(text));
        // JSON is YAML: the loader reads the completed document as it is.
        let completed = serde_json::to_string(&doc).unwrap();
        if let Err(e) = loader_accepts(&completed) {
            eprintln!("{}: not loadable: {e}", file.display());
            continue;
        }
        accepted += 1;
        let errs = errors(&v, &doc);
        assert!(errs.is_empty(), "{}:\n{text}\n{errs:#?}", file.display());
    }
    assert!(accepted >= 6, "only {accepted} samples were loadable");
    loader_accepts(KITCHEN_SINK).expect("the kitchen sink loads");
}

/// Sets every `${NAME}` (without a default) that the samples use and the
/// environment lacks, so that README fragments load.
fn set_referenced_variables(samples: &[(PathBuf, String)]) {
    for (_, text) in samples {
        for part in text.split("${").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let no_default = part[name.len()..].starts_with('}');
            if !name.is_empty() && no_default && std::env::var_os(&name).is_none() {
                std::env::set_var(&name, "x");
            }
        }
    }
}

/// A README fragment made a whole pipeline: a generator for every input a
/// sink names that is not defined, a blackhole when there is no sink.
fn complete(mut doc: Value) -> Value {
    let Some(m) = doc.as_object_mut() else {
        return doc;
    };
    let mut wanted = Vec::new();
    for sink in m
        .get("sinks")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|s| s.values())
    {
        match &sink["inputs"] {
            Value::String(s) => wanted.push(s.clone()),
            Value::Array(a) => wanted.extend(a.iter().filter_map(|i| i.as_str().map(String::from))),
            _ => {}
        }
    }
    let sources = m
        .entry("sources")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(sources) = sources.as_object_mut() {
        for name in wanted.iter().filter(|n| !n.contains(['*', '?', '['])) {
            sources
                .entry(name.clone())
                .or_insert_with(|| serde_json::json!({"type": "generator"}));
        }
        if sources.is_empty() {
            sources.insert("stub".into(), serde_json::json!({"type": "generator"}));
        }
    }
    let sinks = m
        .entry("sinks")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(sinks) = sinks.as_object_mut() {
        if sinks.is_empty() {
            sinks.insert(
                "stub_sink".into(),
                serde_json::json!({"type": "blackhole", "inputs": ["*"]}),
            );
        }
    }
    doc
}

/// Engine keys and many component options, in the spellings the loader takes.
const KITCHEN_SINK: &str = r#"
data_dir: ./data
api: { enabled: true, listen: "127.0.0.1:8686", auth_token: "${NOT_SET_ANYWHERE:-tok}" }
checkpoint_interval_ms: 2s
shutdown_timeout_secs: "1m"
store: { auto_create_topics: false }
sources:
  gen:
    type: generator
    format: json
    count: "1_000"
    rate_per_sec: ${RATE:-100}
    queue: { max_events: 500, max_bytes: 4MiB, when_full: drop_oldest }
  logs:
    type: file
    include: ["/tmp/*.log"]
    exclude: []
    read_from: end
    multiline: { start_pattern: '^\d', condition_pattern: '^\s', mode: continue_through, timeout_ms: 500 }
    poll: true
  db:
    type: mysql
    url: "mysql://root@127.0.0.1:3306"
    server_id: 77
    snapshot: never
    heartbeat: 1000
  push:
    type: http
    listen: 127.0.0.1:9999
    max_body_bytes: 1MiB
    retry_after_secs: 2s
    ack: durable
    queue: { when_full: reject }
  topic_in:
    type: store
    topic: "a.*"
    group: g1
    mode: queue
    lease_ms: 30s
sinks:
  out:
    type: file
    inputs: gen
    path: ./out/{source}.log
    encoding: json
    idle_close_secs: 1m
    buffer: { max_events: 100, when_full: drop_newest }
    batch: { max_events: 10, max_bytes: 64KiB, timeout_ms: 50ms }
    retry: { initial_backoff_ms: 10ms, max_backoff_ms: 1s, max_attempts: 3 }
    on_error: dead_letter
    dead_letter: { path: ./dl.ndjson }
  topic_out:
    type: store
    inputs: [logs, push, topic_in]
    where: 'message =~ "x" and not key == null'
    topic: "t.{source}"
    key: none
    partitions: 2
    fsync: 20ms
    retention: { max_bytes: 1GiB, max_age: 7d }
    limits: { max_messages: 1000, on_full: drop_oldest }
  replica:
    type: mysql
    inputs: [db]
    url: "mysql://root@127.0.0.1:3307/"
    database_map: { shop: shop_copy }
    on_row_error: skip
  pg:
    type: postgres
    inputs: [db]
    url: "postgres://postgres@127.0.0.1:5432/x"
  k:
    type: kafka
    inputs: [gen]
    brokers: ["127.0.0.1:9092"]
    topic: t
    compression: zstd
    sasl: { mechanism: plain, username: u, password: p }
    librdkafka_options: { "queue.buffering.max.kbytes": 1024, "enable.idempotence": true }
  screen:
    type: console
    inputs: [gen]
  hole:
    type: blackhole
    inputs: ["*"]
    print_interval_secs: 10
"#;

fn both_reject(text: &str, what: &str) {
    let v = validator(&schema_from_binary());
    assert!(loader_accepts(text).is_err(), "the loader accepts {what}");
    let errs = errors(&v, &yaml_to_json(text));
    assert!(!errs.is_empty(), "the schema accepts {what}");
}

const BASE: &str = "sources:\n  gen:\n    type: generator\nsinks:\n  hole:\n    type: blackhole\n    inputs: [gen]\n";

#[test]
fn the_schema_refuses_what_the_loader_refuses() {
    loader_accepts(BASE).unwrap();
    assert!(errors(&validator(&schema_from_binary()), &yaml_to_json(BASE)).is_empty());
    both_reject(
        &format!("sourcez: {{}}\n{BASE}"),
        "an unknown top-level key",
    );
    both_reject(
        &BASE.replace("type: generator", "type: generator\n    formt: json"),
        "an unknown generator option",
    );
    both_reject(
        &BASE.replace("type: generator", "type: nosuchthing"),
        "an unknown source type",
    );
    both_reject(
        &BASE.replace(
            "type: generator",
            "type: generator\n    queue: { when_full: sometimes }",
        ),
        "an unknown when_full policy",
    );
    both_reject(
        &BASE.replace(
            "inputs: [gen]",
            "inputs: [gen]\n    batch: { max_event: 3 }",
        ),
        "an unknown batch key",
    );
    both_reject(
        &BASE.replace("type: blackhole", "type: console\n    encoding: yaml"),
        "an unknown encoding",
    );
    both_reject(
        &format!("api: {{ listen: 127.0.0.1:1, tls: {{ cert: a }} }}\n{BASE}"),
        "TLS without a key",
    );
}

#[test]
fn every_registered_component_type_has_its_options_in_the_schema() {
    let registry = sluice::components::registry();
    let doc = sluice::schema::pipeline_schema(&registry);
    let defs = doc["definitions"].as_object().unwrap();
    let mut generator = schemars::SchemaGenerator::default();
    let kinds: Vec<(&str, &str)> = registry
        .source_kinds()
        .map(|k| ("source", k))
        .chain(registry.sink_kinds().map(|k| ("sink", k)))
        .collect();
    assert!(kinds.len() >= 14, "{kinds:?}");
    for (what, kind) in kinds {
        let has = match what {
            "source" => registry
                .source(kind)
                .unwrap()
                .options_schema(&mut generator),
            _ => registry.sink(kind).unwrap().options_schema(&mut generator),
        };
        assert!(has.is_some(), "{what} `{kind}` declares no options schema");
        let def = &defs[&format!("{what}.{kind}")];
        let props = def["properties"].as_object().unwrap();
        assert_eq!(props["type"]["const"], kind);
        assert_eq!(def["additionalProperties"], false, "{what} {kind}");
        let common = if what == "source" { 1 } else { 7 };
        assert!(
            props.len() > common + 1,
            "{what} `{kind}` lists no options of its own: {props:?}"
        );
        let types = doc["definitions"][what]["properties"]["type"].to_string();
        assert!(
            types.contains(&format!("\"{kind}\"")),
            "{kind} not in {types}"
        );
    }
}
