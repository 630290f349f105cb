//! Against a real Kafka-protocol broker (tansu, sqlite engine): interop
//! both ways with an independent client (confluent-kafka), the broker
//! stopped under load and restarted, the source committing only what was
//! acknowledged, rebalances, topics that do not exist.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sluice_core::{AckRef, Batch, Record, SinkBatch, SinkError};
use support::kafka::read_all;
use support::pipeline::*;
use support::python;
use support::scenarios;
use support::tansu::Tansu;

fn outage_secs() -> u64 {
    std::env::var("SLUICE_KAFKA_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

fn batch(records: Vec<Record>) -> SinkBatch {
    let mut b = SinkBatch::default();
    b.push(Batch::new("src".into(), records, AckRef::untracked()));
    b
}

/// Writes `count` numbered records into `topic` through the sink.
async fn fill(bootstrap: &str, topic: &str, prefix: &str, count: u64) {
    let (source, acked) = NumberedSource::new(prefix, count, 500);
    let sink = kafka_sink(
        "fill",
        serde_json::json!({
            "brokers": [bootstrap], "topic": topic, "key": "none",
            "librdkafka_options": {"sticky.partitioning.linger.ms": 0}
        }),
    );
    let run = start(Box::new(source), sink, settings("numbers", 5000));
    wait_for("topic filled", Duration::from_secs(120), || {
        acked.load(Ordering::Acquire) == count
    })
    .await;
    run.control.shutdown.cancel();
    run.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_interop_sluice_writes_confluent_kafka_reads() {
    let broker = Tansu::start();
    broker.create_topic("to-python", 3);
    let mut sink = kafka_sink(
        "k",
        serde_json::json!({
            "brokers": [broker.bootstrap()], "topic": "to-python", "key": "user",
            "compression": "lz4"
        }),
    );
    let count = 3000u64;
    for chunk in (0..count).collect::<Vec<_>>().chunks(1000) {
        let records = chunk
            .iter()
            .map(|i| {
                let mut r = Record::from_value(format!(r#"{{"n":{i},"user":"u{}"}}"#, i % 5));
                r.headers = Some(Arc::new(vec![("trace".into(), format!("t{i}").into())]));
                r
            })
            .collect();
        sink.write(&batch(records)).await.unwrap();
    }
    sink.close().await.unwrap();
    let bootstrap = broker.bootstrap();
    let got = tokio::task::spawn_blocking(move || {
        python::consume(&bootstrap, "to-python", "py-reader", count as usize, 20)
    })
    .await
    .unwrap();
    assert_eq!(got.len(), count as usize, "confluent-kafka read everything");
    let mut seen = std::collections::BTreeSet::new();
    for m in &got {
        let v: serde_json::Value = serde_json::from_str(m["value"].as_str().unwrap()).unwrap();
        let n = v["n"].as_u64().unwrap();
        assert_eq!(m["key"], serde_json::json!(format!("u{}", n % 5)));
        assert_eq!(m["headers"]["trace"], serde_json::json!(format!("t{n}")));
        seen.insert(n);
    }
    assert_eq!(seen.len(), count as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_interop_confluent_kafka_writes_sluice_reads() {
    let broker = Tansu::start();
    broker.create_topic("from-python", 3);
    let count = 3000u64;
    let bootstrap = broker.bootstrap();
    tokio::task::spawn_blocking(move || python::produce(&bootstrap, "from-python", "p-", count))
        .await
        .unwrap();
    let sink = CollectSink::default();
    let run = start(
        kafka_source(
            "kin",
            serde_json::json!({
                "brokers": [broker.bootstrap()], "topics": ["^from-py.*"], "group": "g1"
            }),
        ),
        Box::new(sink.clone()),
        settings("kin", 1000),
    );
    wait_for("everything consumed", Duration::from_secs(60), || {
        sink.records.lock().len() >= count as usize
    })
    .await;
    run.control.shutdown.cancel();
    run.task.await.unwrap().unwrap();
    let records = sink.records.lock();
    let t = tally("p-", records.iter().map(|r| &r.value[..]));
    assert_eq!(assert_complete(&t, count), 0);
    for r in records.iter() {
        let n = number("p-", &r.value).unwrap();
        assert_eq!(r.key.as_deref(), Some((n % 7).to_string().as_bytes()));
        assert_eq!(r.header("origin").map(|v| &v[..]), Some(&b"python"[..]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_stopped_under_load_and_restarted_loses_nothing() {
    let mut broker = Tansu::start();
    broker.create_topic("load", 2);
    let count = 100_000;
    let (source, acked) = NumberedSource::new("l-", count, 1000);
    let sink = kafka_sink(
        "k",
        serde_json::json!({"brokers": [broker.bootstrap()], "topic": "load", "key": "none"}),
    );
    let run = start(Box::new(source), sink, settings("numbers", 5000));
    wait_for("load under way", Duration::from_secs(120), || {
        acked.load(Ordering::Acquire) >= 20_000
    })
    .await;
    broker.kill();
    let at_kill = acked.load(Ordering::Acquire);
    tokio::time::sleep(Duration::from_secs(outage_secs())).await;
    let during = acked.load(Ordering::Acquire);
    assert!(
        during - at_kill <= 5_000,
        "acknowledged while the broker was down: {at_kill} -> {during}"
    );
    broker.restart();
    wait_for(
        "all acknowledged after the restart",
        Duration::from_secs(300),
        || acked.load(Ordering::Acquire) == count,
    )
    .await;
    run.control.shutdown.cancel();
    run.task.await.unwrap().unwrap();
    let bootstrap = broker.bootstrap();
    let got = tokio::task::spawn_blocking(move || {
        read_all(
            &bootstrap,
            "load",
            count as usize + 10_000,
            Duration::from_secs(15),
        )
    })
    .await
    .unwrap();
    let t = tally("l-", got.iter().map(|g| &g.value[..]));
    let dups = assert_complete(&t, count);
    eprintln!(
        "load: {} read back, {dups} duplicates (killed at {at_kill})",
        got.len()
    );
    assert!(
        dups <= 5_000,
        "{dups} duplicates exceed the in-flight window"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_source_commits_only_acknowledged_offsets() {
    let broker = Tansu::start();
    broker.create_topic("acks", 2);
    fill(&broker.bootstrap(), "acks", "a-", 5_000).await;
    scenarios::commits_only_acknowledged(&broker.bootstrap(), "acks", "a-", 5_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_rebalance_loses_nothing() {
    let broker = Tansu::start();
    broker.create_topic("rebal", 4);
    fill(&broker.bootstrap(), "rebal", "r-", 20_000).await;
    scenarios::rebalance_loses_nothing(&broker.bootstrap(), "rebal", "r-", 20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_unknown_topic_is_rejected() {
    let broker = Tansu::start();
    let mut sink = kafka_sink(
        "k",
        serde_json::json!({
            "brokers": [broker.bootstrap()], "topic": "no-such-topic",
            "librdkafka_options": {"topic.metadata.propagation.max.ms": 2000}
        }),
    );
    match tokio::time::timeout(
        Duration::from_secs(60),
        sink.write(&batch(vec![Record::from_value("x")])),
    )
    .await
    {
        Ok(Err(SinkError::Rejected { index: 0, error })) => {
            assert!(
                format!("{error:#}").to_lowercase().contains("unknown"),
                "{error:#}"
            )
        }
        other => panic!("expected Rejected at 0, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_sasl_scram_with_a_secret_from_the_environment() {
    let mut broker = Tansu::start();
    broker.create_topic("secure", 1);
    broker.create_user("sluice", "s3cret-pw");
    broker.extra = vec!["--authentication".into()];
    broker.restart();
    std::env::set_var("SLUICE_TEST_SCRAM_PW", "s3cret-pw");
    let options = |password: &str| {
        serde_json::json!({
            "brokers": [broker.bootstrap()], "topic": "secure",
            "sasl": {"mechanism": "SCRAM-SHA-512", "username": "sluice", "password": password}
        })
    };
    let mut sink = kafka_sink("k", options("${SLUICE_TEST_SCRAM_PW}"));
    sink.write(&batch(vec![Record::from_value("authenticated")]))
        .await
        .unwrap();
    sink.close().await.unwrap();
    let mut wrong = kafka_sink("k", options("wrong-password"));
    match wrong.write(&batch(vec![Record::from_value("x")])).await {
        Err(SinkError::Retryable(e)) => {
            let text = format!("{e:#}");
            assert!(text.contains(&broker.bootstrap()), "{text}");
            assert!(
                !text.contains("wrong-password"),
                "secret in an error: {text}"
            );
        }
        other => panic!("expected a healthcheck failure, got {other:?}"),
    }
}
