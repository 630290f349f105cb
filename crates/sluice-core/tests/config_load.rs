//! Loading valid pipelines: the DESIGN.md contract examples, defaults,
//! durations and sizes, `${ENV}` interpolation, merging several files, and
//! components reading their own options.

#[path = "config_support.rs"]
mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use sluice_core::config::{self, ComponentOptions, OnError, QueueConfig, WhenFull};
use sluice_core::Record;
use support::{load, registry, GeneratorOptions, MysqlOptions};

const CONTRACT: &str = r#"data_dir: ./data              # checkpoints and the embedded store
api:
  listen: 127.0.0.1:8686      # health, metrics, store API

sources:
  app_logs:
    type: file
    include: ["/var/log/app/*.log"]
    read_from: beginning
  orders_db:
    type: mysql
    url: "mysql://repl:${MYSQL_PASSWORD}@127.0.0.1:3306"
    server_id: 4242
    include_tables: ["shop.*"]
    snapshot: initial
  signups:
    type: http
    listen: 127.0.0.1:8080
    queue: { max_events: 10000, when_full: reject }

sinks:
  cdc_store:
    type: store
    inputs: [orders_db]
    topic: "cdc.{database}.{table}"
  errors_to_kafka:
    type: kafka
    inputs: [app_logs]
    where: 'message =~ "ERROR"'
    brokers: ["127.0.0.1:9092"]
    topic: app-errors
  signup_queue:
    type: store
    inputs: [signups]
    topic: signups
"#;

const CONSUMER: &str = r#"sources:
  cdc:
    type: store
    topic: "cdc.shop.*"
    group: replica-1
sinks:
  replica:
    type: mysql
    inputs: [cdc]
    url: "mysql://root@127.0.0.1:3307/"
"#;

#[test]
fn the_contract_pipeline_loads() {
    std::env::set_var("MYSQL_PASSWORD", "s3cret");
    let cfg = load(CONTRACT).unwrap_or_else(|e| panic!("{e:#?}"));
    assert!(cfg.data_dir.is_absolute() && cfg.data_dir.ends_with("data"));
    assert_eq!(
        cfg.api.listen,
        "127.0.0.1:8686".parse::<SocketAddr>().unwrap()
    );
    assert!(cfg.api.enabled);
    let names: Vec<&str> = cfg.sources.keys().map(String::as_str).collect();
    assert_eq!(names, ["app_logs", "orders_db", "signups"]);
    let db = &cfg.sources["orders_db"];
    assert_eq!(db.kind, "mysql");
    assert_eq!((db.location.line, db.location.column), (10, 3));
    let opts: MysqlOptions = db.options.deserialize().unwrap();
    assert_eq!(opts.url, "mysql://repl:s3cret@127.0.0.1:3306");
    assert_eq!(opts.server_id, 4242);
    assert_eq!(db.queue, QueueConfig::default());
    let signups = &cfg.sources["signups"];
    assert_eq!(signups.queue.when_full, WhenFull::Reject);
    assert_eq!(signups.queue.max_events, 10_000);
    let kafka = &cfg.sinks["errors_to_kafka"];
    assert_eq!(kafka.inputs, ["app_logs"]);
    let cond = kafka.condition.as_ref().unwrap();
    assert!(cond.matches(&Record::from_value("boom ERROR x")));
    assert!(!cond.matches(&Record::from_value("all fine")));
    assert!(cfg.sinks["cdc_store"].condition.is_none());
    assert_eq!(cfg.sinks["cdc_store"].on_error, OnError::Stop);

    let consumer = load(CONSUMER).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(consumer.sinks["replica"].kind, "mysql");
}

#[test]
fn defaults() {
    let cfg = load("sources:\n  g: {type: generator}\nsinks:\n  c: {type: console, inputs: [g]}\n")
        .unwrap();
    assert_eq!(cfg.checkpoint_interval_ms, 1_000);
    assert_eq!(cfg.shutdown_timeout_secs, 30);
    assert_eq!(
        cfg.api.listen,
        "127.0.0.1:8686".parse::<SocketAddr>().unwrap()
    );
    assert!(cfg.api.auth_token.is_none() && cfg.store.is_none());
    let c = &cfg.sinks["c"];
    assert_eq!(c.buffer, QueueConfig::default());
    assert_eq!(c.batch, Default::default());
    assert_eq!(c.retry, Default::default());
    assert_eq!(c.retry.max_attempts, None);
    assert!(c.dead_letter_path.is_none());
}

#[test]
fn durations_and_sizes() {
    let text = r#"checkpoint_interval_ms: 2s
shutdown_timeout_secs: 1m
sources:
  g:
    type: generator
    interval_ms: 250ms
    run_secs: "2m"
    line_bytes: 1KiB
    queue: {max_events: 10_000, max_bytes: 64MiB, when_full: drop_oldest}
sinks:
  c:
    type: console
    inputs: [g]
    buffer: {max_bytes: 10MB, when_full: drop_newest}
    batch: {max_events: 500, max_bytes: 4096, timeout_ms: 1.5s}
    retry: {initial_backoff_ms: 50, max_backoff_ms: 1m, max_attempts: 5}
    on_error: dead_letter
"#;
    let cfg = load(text).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(cfg.checkpoint_interval_ms, 2_000);
    assert_eq!(cfg.shutdown_timeout_secs, 60);
    let g = &cfg.sources["g"];
    assert_eq!(g.queue.max_bytes, 64 << 20);
    assert_eq!(g.queue.max_events, 10_000);
    assert_eq!(g.queue.when_full, WhenFull::DropOldest);
    let opts: GeneratorOptions = g.options.deserialize().unwrap();
    assert_eq!(opts.interval_ms, Some(250));
    assert_eq!(opts.run_secs, Some(120));
    assert_eq!(opts.line_bytes, Some(1024));
    let c = &cfg.sinks["c"];
    assert_eq!(c.buffer.max_bytes, 10_000_000);
    assert_eq!(c.buffer.when_full, WhenFull::DropNewest);
    assert_eq!(
        (c.batch.max_events, c.batch.max_bytes, c.batch.timeout_ms),
        (500, 4096, 1_500)
    );
    assert_eq!(c.retry.initial_backoff_ms, 50);
    assert_eq!(c.retry.max_backoff_ms, 60_000);
    assert_eq!(c.retry.max_attempts, Some(5));
    assert_eq!(c.on_error, OnError::DeadLetter);
    assert_eq!(
        c.dead_letter_path,
        Some(cfg.data_dir.join("dead_letter/c.ndjson"))
    );
}

#[test]
fn interpolation_forms() {
    std::env::set_var("SLUICE_T_SID", "77");
    std::env::set_var("SLUICE_T_HOST", "db.local");
    let text = r#"sources:
  db:
    type: mysql
    url: "mysql://${SLUICE_T_HOST}:${SLUICE_T_PORT:-3306}/?p=$$x&q=${SLUICE_T_HOST:?needed}"
    server_id: ${SLUICE_T_SID}
    include_tables: ["${SLUICE_T_DB:-shop}.*"]
    password: $5 and $$
sinks:
  c: {type: console, inputs: [db]}
"#;
    let cfg = load(text).unwrap_or_else(|e| panic!("{e:#?}"));
    let o: MysqlOptions = cfg.sources["db"].options.deserialize().unwrap();
    assert_eq!(o.url, "mysql://db.local:3306/?p=$x&q=db.local");
    assert_eq!(o.server_id, 77);
    assert_eq!(o.include_tables, ["shop.*"]);
    assert_eq!(o.password.as_deref(), Some("$5 and $"));
}

fn temp_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn several_files_merge_into_one_pipeline() {
    let a = temp_file("data_dir: /tmp/sluice-a\nsources:\n  g: {type: generator}\n");
    let b =
        temp_file("sources:\n  s: {type: stdin}\nsinks:\n  c: {type: console, inputs: [g, s]}\n");
    let cfg = config::load(&[a.path(), b.path()], &registry()).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(cfg.data_dir, PathBuf::from("/tmp/sluice-a"));
    assert_eq!(cfg.sources.keys().collect::<Vec<_>>(), ["g", "s"]);
    assert_eq!(cfg.sinks["c"].inputs, ["g", "s"]);
    assert_eq!(cfg.sources["s"].location.file, b.path());
}

#[test]
fn a_name_defined_in_two_files_names_both_places() {
    let a = temp_file("data_dir: /tmp/x\nsources:\n  g: {type: generator}\n");
    let b = temp_file("data_dir: /tmp/y\nsources:\n\n  g: {type: stdin}\nsinks:\n  c: {type: console, inputs: [g]}\n");
    let errors = config::load(&[a.path(), b.path()], &registry()).unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    let (d, g) = (&errors[0], &errors[1]);
    assert_eq!(
        (
            d.location.file.as_path(),
            d.location.line,
            d.location.column
        ),
        (b.path(), 1, 1)
    );
    assert!(
        d.message.contains(&format!(
            "`data_dir` is set twice (first at {}:1:1)",
            a.path().display()
        )),
        "{d}"
    );
    assert_eq!(
        (
            g.location.file.as_path(),
            g.location.line,
            g.location.column
        ),
        (b.path(), 4, 3)
    );
    assert!(
        g.message.contains(&format!(
            "source `g` is defined twice: a source of that name is defined at {}:3:3",
            a.path().display()
        )),
        "{g}"
    );
}

#[test]
fn an_unreadable_file_is_an_error_at_its_name() {
    let errors = config::load(&["/nonexistent/sluice.yaml"], &registry()).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(
        errors[0].location.file,
        PathBuf::from("/nonexistent/sluice.yaml")
    );
    assert!(errors[0].message.contains("cannot read"));
    let none: &[&str] = &[];
    assert!(config::load(none, &registry()).is_err());
}

#[test]
fn api_store_and_aliases() {
    let text = r#"api:
  enabled: false
  listen: 0.0.0.0:9000
  auth_token: tok-1234
  tls: {cert: /c.pem, key: /k.pem}
store:
  fsync: every_100ms
  retention: {max_bytes: 1GiB}
sources:
  a: &gen {type: generator, count: 5}
  b: *gen
sinks:
  c: {type: console, inputs: ["*"]}
"#;
    let cfg = load(text).unwrap_or_else(|e| panic!("{e:#?}"));
    assert!(!cfg.api.enabled);
    assert_eq!(cfg.api.auth_token.as_deref(), Some("tok-1234"));
    assert_eq!(cfg.api.tls.as_ref().unwrap().key, PathBuf::from("/k.pem"));
    assert!(!format!("{:?}", cfg).contains("tok-1234"));
    let store = cfg.store.as_ref().unwrap();
    assert_eq!((store.location().line, store.location().column), (6, 1));
    assert_eq!(store.keys().collect::<Vec<_>>(), ["fsync", "retention"]);
    let b: GeneratorOptions = cfg.sources["b"].options.deserialize().unwrap();
    assert_eq!(b.count, Some(5));
}

#[test]
fn a_secret_quoted_by_a_visitor_is_hidden() {
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    enum Mode {
        Plain,
    }
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Opts {
        token_mode: Mode,
    }
    let o = ComponentOptions::from_json(serde_json::json!({"token_mode": "letmein-42"}));
    let e = o.deserialize::<Opts>().unwrap_err();
    assert_eq!(e.message, "unknown value `<hidden>`");
}

#[test]
fn component_options_from_json() {
    #[derive(serde::Deserialize, Debug)]
    struct Opts {
        #[serde(deserialize_with = "config::duration_ms::deserialize")]
        flush_ms: u64,
        #[serde(with = "config::size_bytes")]
        max: usize,
        #[serde(default, deserialize_with = "config::duration::deserialize")]
        wait: std::time::Duration,
        name: String,
    }
    let o = ComponentOptions::from_json(serde_json::json!({
        "flush_ms": "2s", "max": "1KiB", "wait": 250, "name": 5
    }));
    let v: Opts = o.deserialize().unwrap();
    assert_eq!(
        (v.flush_ms, v.max, v.wait.as_millis(), v.name.as_str()),
        (2_000, 1024, 250, "5")
    );
    let bad = ComponentOptions::from_json(serde_json::json!({"flush_ms": 1, "max": 1, "nam": "x"}));
    let e = bad.deserialize::<Opts>().unwrap_err();
    assert_eq!(e.message, "unknown key `nam`");
    assert_eq!(e.hint.as_deref(), Some("did you mean `name`?"));
    assert_eq!(bad.location(), &config::Location::default());
}

mod never_panics {
    use proptest::prelude::*;

    use super::{load, CONTRACT};

    proptest! {
        #[test]
        fn on_arbitrary_text(text in any::<String>()) {
            let _ = load(&text);
        }

        #[test]
        fn on_a_damaged_pipeline(cut in 0..CONTRACT.len(), junk in "[ \t\n:{}\\[\\]\"'&*!|>#$-]{0,6}") {
            let mut text = CONTRACT.to_string();
            if text.is_char_boundary(cut) {
                text.insert_str(cut, &junk);
            }
            let _ = load(&text);
        }
    }
}

#[test]
fn a_file_with_only_data_dir_and_api_is_a_queue_only_daemon() {
    let cfg = load("data_dir: ./q\napi:\n  listen: 127.0.0.1:8686\n").unwrap();
    assert!(cfg.sources.is_empty() && cfg.sinks.is_empty());
}
