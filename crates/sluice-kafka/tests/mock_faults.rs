//! Fault injection with librdkafka's mock cluster: a broker down for a
//! while, request timeouts and errors, leader changes. Nothing may be lost;
//! the idempotent producer must not duplicate either.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use support::kafka::read_all;
use support::pipeline::*;

fn outage_secs() -> u64 {
    std::env::var("SLUICE_KAFKA_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_broker_down_for_a_minute_loses_and_duplicates_nothing() {
    let cluster = MockCluster::new(3).unwrap();
    cluster.create_topic("outage", 3, 3).unwrap();
    for p in 0..3 {
        cluster.partition_leader("outage", p, Some(1)).unwrap();
    }
    let count = 30_000;
    let (source, acked) = NumberedSource::new("o-", count, 500);
    let sink = kafka_sink(
        "k",
        serde_json::json!({"brokers": [cluster.bootstrap_servers()], "topic": "outage", "key": "none"}),
    );
    let run = start(Box::new(source), sink, settings("numbers", 2000));
    wait_for("first acknowledgements", Duration::from_secs(60), || {
        acked.load(Ordering::Acquire) >= 5_000
    })
    .await;
    cluster.broker_down(1).unwrap();
    let at_down = acked.load(Ordering::Acquire);
    tokio::time::sleep(Duration::from_secs(outage_secs())).await;
    let during = acked.load(Ordering::Acquire);
    // Only batches whose reports were already on the way may complete.
    assert!(
        during - at_down <= 2_000,
        "records acknowledged while the leader was down: {at_down} -> {during}"
    );
    assert!(during < count, "everything acknowledged during the outage");
    cluster.broker_up(1).unwrap();
    wait_for(
        "all acknowledged after the outage",
        Duration::from_secs(120),
        || acked.load(Ordering::Acquire) == count,
    )
    .await;
    run.control.shutdown.cancel();
    run.task.await.unwrap().unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let got = tokio::task::spawn_blocking(move || {
        read_all(
            &bootstrap,
            "outage",
            count as usize + 10,
            Duration::from_secs(10),
        )
    })
    .await
    .unwrap();
    let t = tally("o-", got.iter().map(|g| &g.value[..]));
    let dups = assert_complete(&t, count);
    assert_eq!(dups, 0, "the idempotent producer duplicated records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_request_timeouts_errors_and_leader_changes_lose_nothing() {
    let cluster = MockCluster::new(3).unwrap();
    cluster.create_topic("churn", 4, 3).unwrap();
    let count = 40_000;
    let (source, acked) = NumberedSource::new("c-", count, 250);
    let sink = kafka_sink(
        "k",
        serde_json::json!({
            "brokers": [cluster.bootstrap_servers()], "topic": "churn", "key": "none",
            "librdkafka_options": {"request.timeout.ms": 1500, "retry.backoff.ms": 50}
        }),
    );
    let run = start(Box::new(source), sink, settings("numbers", 1000));
    let mut round = 0;
    while acked.load(Ordering::Acquire) < count && round < 400 {
        round += 1;
        match round % 4 {
            0 => {
                // Leaders move around.
                for p in 0..4 {
                    let leader = 1 + (p + round) % 3;
                    cluster.partition_leader("churn", p, Some(leader)).unwrap();
                }
            }
            1 => cluster.request_errors(
                RDKafkaApiKey::Produce,
                &[
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT,
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                ],
            ),
            2 => {
                // Requests outlive request.timeout.ms for a while.
                let b = 1 + round % 3;
                cluster
                    .broker_round_trip_time(b, Duration::from_millis(2_500))
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(1_000)).await;
                cluster.broker_round_trip_time(b, Duration::ZERO).unwrap();
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_for("all acknowledged", Duration::from_secs(120), || {
        acked.load(Ordering::Acquire) == count
    })
    .await;
    run.control.shutdown.cancel();
    run.task.await.unwrap().unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let got = tokio::task::spawn_blocking(move || {
        read_all(
            &bootstrap,
            "churn",
            count as usize + 1000,
            Duration::from_secs(10),
        )
    })
    .await
    .unwrap();
    let t = tally("c-", got.iter().map(|g| &g.value[..]));
    let dups = assert_complete(&t, count);
    eprintln!("churn: {} messages read, {dups} duplicates", got.len());
    assert!(dups <= 1_000, "{dups} duplicates exceed one write's window");
}
