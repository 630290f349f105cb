//! The sink's contract with the engine, on librdkafka's mock cluster:
//! records the broker can never accept are `Rejected` at their index (so
//! `on_error` applies), an unreachable cluster fails the healthcheck with
//! the brokers named, row changes are keyed by primary key and carry their
//! metadata as headers.

mod support;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use sluice_core::record::{ChangeSource, Meta, Op, RowChange};
use sluice_core::{AckRef, Batch, Record, SinkBatch, SinkError};
use support::kafka::read_all;
use support::pipeline::*;

fn batch(records: Vec<Record>) -> SinkBatch {
    let mut b = SinkBatch::default();
    b.push(Batch::new("src".into(), records, AckRef::untracked()));
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_too_large_is_rejected_at_its_index() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("big", 1, 1).unwrap();
    let mut sink = kafka_sink(
        "k",
        serde_json::json!({
            "brokers": [cluster.bootstrap_servers()], "topic": "big",
            "librdkafka_options": {"message.max.bytes": 2000}
        }),
    );
    let records = vec![
        Record::from_value("small-0"),
        Record::from_value("x".repeat(5000)),
        Record::from_value("small-2"),
    ];
    match sink.write(&batch(records)).await {
        Err(SinkError::Rejected { index, error }) => {
            assert_eq!(index, 1);
            assert!(format!("{error:#}").contains("too large"), "{error:#}");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    // What comes after is written normally.
    sink.write(&batch(vec![Record::from_value("small-2")]))
        .await
        .unwrap();
    sink.close().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let got =
        tokio::task::spawn_blocking(move || read_all(&bootstrap, "big", 2, Duration::from_secs(5)))
            .await
            .unwrap();
    let values: Vec<&[u8]> = got.iter().map(|g| &g.value[..]).collect();
    assert_eq!(values, vec![&b"small-0"[..], &b"small-2"[..]]);
}

#[tokio::test]
async fn an_unreachable_cluster_fails_the_healthcheck_naming_the_brokers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let broker = format!("127.0.0.1:{port}");
    let mut sink = kafka_sink("k", serde_json::json!({"brokers": [broker], "topic": "t"}));
    match sink.write(&batch(vec![Record::from_value("a")])).await {
        Err(SinkError::Retryable(e)) => {
            let text = format!("{e:#}");
            assert!(text.contains(&broker), "{text}");
            assert!(text.contains("healthcheck"), "{text}");
            assert!(text.contains("kafka sink `k`"), "{text}");
        }
        other => panic!("expected a retryable healthcheck error, got {other:?}"),
    }
}

fn row(id: i64, op: Op) -> Record {
    let image = serde_json::json!({"id": id, "name": format!("n{id}")})
        .as_object()
        .cloned();
    Record {
        meta: Meta::Row(Arc::new(RowChange {
            op,
            before: (op == Op::Delete).then(|| image.clone()).flatten(),
            after: (op != Op::Delete).then(|| image.clone()).flatten(),
            source: ChangeSource {
                db: "shop".into(),
                table: "orders".into(),
                ..ChangeSource::default()
            },
            ts_ms: 1,
            transaction: None,
            primary_key: vec!["id".into()],
            ddl: None,
        })),
        timestamp_ms: 1_700_000_000_000,
        ..Record::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_changes_are_keyed_by_primary_key_with_metadata_headers() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("cdc.shop.orders", 3, 1).unwrap();
    let mut sink = kafka_sink(
        "k",
        serde_json::json!({
            "brokers": [cluster.bootstrap_servers()], "topic": "cdc.{database}.{table}",
            "compression": "zstd"
        }),
    );
    let records = vec![
        row(1, Op::Create),
        row(2, Op::Create),
        row(1, Op::Update),
        row(1, Op::Delete),
    ];
    sink.write(&batch(records)).await.unwrap();
    sink.close().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let got = tokio::task::spawn_blocking(move || {
        read_all(&bootstrap, "cdc.shop.orders", 4, Duration::from_secs(5))
    })
    .await
    .unwrap();
    assert_eq!(got.len(), 4);
    let ones: Vec<_> = got
        .iter()
        .filter(|g| g.key.as_deref() == Some(&br#"{"id":1}"#[..]))
        .collect();
    assert_eq!(ones.len(), 3, "one row's changes share a key");
    assert!(ones.iter().all(|g| g.partition == ones[0].partition));
    let ops: Vec<String> = ones
        .iter()
        .map(|g| {
            let v: serde_json::Value = serde_json::from_slice(&g.value).unwrap();
            v["op"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ops, ["c", "u", "d"], "in order within the partition");
    let h: Vec<(String, String)> = ones[0]
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into()))
        .collect();
    assert!(h.contains(&("database".into(), "shop".into())), "{h:?}");
    assert!(h.contains(&("table".into(), "orders".into())));
    assert!(h.contains(&("op".into(), "c".into())));
}
