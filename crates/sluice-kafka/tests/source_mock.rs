//! The source on librdkafka's mock cluster: only acknowledged offsets are
//! committed, and a rebalance loses nothing.

mod support;

use std::time::Duration;

use rdkafka::mocking::MockCluster;
use support::pipeline::*;
use support::scenarios;

async fn fill(
    cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
    topic: &str,
    prefix: &str,
    count: u64,
) {
    let (source, acked) = NumberedSource::new(prefix, count, 500);
    let sink = kafka_sink(
        "fill",
        serde_json::json!({
            "brokers": [cluster.bootstrap_servers()], "topic": topic, "key": "none",
            "librdkafka_options": {"sticky.partitioning.linger.ms": 0}
        }),
    );
    let run = start(Box::new(source), sink, settings("numbers", 5000));
    wait_for("topic filled", Duration::from_secs(60), || {
        acked.load(std::sync::atomic::Ordering::Acquire) == count
    })
    .await;
    run.control.shutdown.cancel();
    run.task.await.unwrap().unwrap();
    let (b, t) = (cluster.bootstrap_servers(), topic.to_string());
    let got = tokio::task::spawn_blocking(move || {
        support::kafka::read_all(&b, &t, count as usize, Duration::from_secs(5))
    })
    .await
    .unwrap();
    let mut per = std::collections::BTreeMap::new();
    for g in &got {
        *per.entry(g.partition).or_insert(0) += 1;
    }
    eprintln!("{topic}: records per partition {per:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_source_commits_only_acknowledged_offsets() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("acks", 2, 1).unwrap();
    fill(&cluster, "acks", "a-", 5_000).await;
    scenarios::commits_only_acknowledged(&cluster.bootstrap_servers(), "acks", "a-", 5_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_rebalance_loses_nothing() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("rebal", 4, 1).unwrap();
    fill(&cluster, "rebal", "r-", 20_000).await;
    scenarios::rebalance_loses_nothing(&cluster.bootstrap_servers(), "rebal", "r-", 20_000).await;
}
