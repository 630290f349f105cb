//! The `type: kafka` options as the pipeline loader reads them: a valid
//! pipeline builds without touching the network; mistakes are reported
//! with their place.

use sluice_core::config::load_str;
use sluice_core::{Pipeline, Registry};

fn registry() -> Registry {
    let mut r = Registry::default();
    r.add_source(sluice_kafka::KafkaSourceFactory);
    r.add_sink(sluice_kafka::KafkaSinkFactory);
    r
}

#[test]
fn a_kafka_to_kafka_pipeline_loads_and_builds_offline() {
    std::env::set_var("SLUICE_TEST_KAFKA_PW", "hunter2");
    let yaml = r#"
sources:
  from_kafka:
    type: kafka
    brokers: ["127.0.0.1:1"]
    topics: ["in", "^cdc\\..*"]
    group: g
    start: latest
sinks:
  errors_to_kafka:
    type: kafka
    inputs: [from_kafka]
    brokers: ["127.0.0.1:1"]
    topic: "app-errors.{source}"
    key: none
    compression: zstd
    librdkafka_options: { "batch.num.messages": 5000, "enable.idempotence": true }
    sasl: { mechanism: PLAIN, username: u, password: "${SLUICE_TEST_KAFKA_PW}" }
"#;
    let config = load_str("p.yaml", yaml, &registry()).unwrap_or_else(|e| {
        panic!(
            "{}",
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2"), "a secret in Debug output");
    Pipeline::from_config(&config, &registry(), Default::default())
        .map_err(|e| format!("{e:?}"))
        .unwrap();
}

#[test]
fn mistakes_are_reported_with_their_place() {
    let yaml = r#"
sources:
  k:
    type: kafka
    brokers: ["h:1"]
    topics: ["^(unclosed"]
    group: g
sinks:
  s:
    type: kafka
    inputs: [k]
    brokers: ["h:1"]
    topic: t
    compresion: zstd
"#;
    let errors = load_str("p.yaml", yaml, &registry()).unwrap_err();
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let all = text.join("\n");
    assert!(all.contains("regex"), "{all}");
    assert!(all.contains("compresion"), "{all}");
    assert!(all.contains("p.yaml:"), "{all}");
}
