//! Kafka through the real `sluice` binary against a real Kafka-protocol
//! broker (tansu): HTTP ingest → kafka sink with the daemon killed -9 twice
//! while a client retries what was not acknowledged; then a kafka source →
//! file sink pipeline reads the topic back. An independent client
//! (confluent-kafka) confirms what is in the topic.

mod support;

#[allow(dead_code)]
#[path = "../crates/sluice-kafka/tests/support/python.rs"]
mod python;
#[allow(dead_code)]
#[path = "../crates/sluice-kafka/tests/support/tansu.rs"]
mod tansu;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use support::{free_port, read_lines, Daemon};

#[test]
fn http_to_kafka_survives_kill_9_and_reads_back_through_a_kafka_source() {
    let broker = tansu::Tansu::start();
    broker.create_topic("events", 2);
    let dir = tempfile::tempdir().unwrap();
    let (api, http) = (free_port(), free_port());
    let yaml = format!(
        "data_dir: ./data\napi: {{ listen: 127.0.0.1:{api} }}\n\
sources:\n  ingest:\n    type: http\n    listen: 127.0.0.1:{http}\n    ack: durable\n\
sinks:\n  to_kafka:\n    type: kafka\n    inputs: [ingest]\n    brokers: [\"{}\"]\n    topic: events\n    key: seq\n",
        broker.bootstrap()
    );
    let total = 20_000u64;
    let per = 500u64;
    let mut d = Daemon::start(dir.path(), &yaml, api);
    d.wait_healthy();
    let mut next = 0u64;
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while next * per < total {
        assert!(Instant::now() < deadline, "ingest did not finish");
        let body: String = (next * per..(next + 1) * per)
            .map(|i| format!("{{\"seq\":{i}}}\n"))
            .collect();
        if support::post(http, "/", &body).0 == 200 {
            next += 1;
        } else {
            if let Some(status) = d.child.try_wait().unwrap() {
                panic!(
                    "sluice exited: {status}; see {}",
                    dir.path().join("sluice.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        if (next == 10 || next == 25) && kills < 2 {
            kills += 1;
            d.kill9();
            d = Daemon::start(dir.path(), &yaml, api);
            d.wait_healthy();
        }
    }
    d.sigterm();
    assert_eq!(d.wait(Duration::from_secs(60)), Some(0));

    // An independent client sees every record.
    let got = python::consume(&broker.bootstrap(), "events", "checker", total as usize, 15);
    let seqs: HashSet<u64> = got
        .iter()
        .filter_map(|m| {
            serde_json::from_str::<serde_json::Value>(m["value"].as_str()?).ok()?["seq"].as_u64()
        })
        .collect();
    let missing: Vec<u64> = (0..total).filter(|s| !seqs.contains(s)).take(5).collect();
    assert!(missing.is_empty(), "confluent-kafka misses {missing:?}");

    // And a kafka source in sluice reads it back into a file.
    let dir2 = tempfile::tempdir().unwrap();
    let api2 = free_port();
    let yaml2 = format!(
        "data_dir: ./data\napi: {{ listen: 127.0.0.1:{api2} }}\n\
sources:\n  from_kafka:\n    type: kafka\n    brokers: [\"{}\"]\n    topics: [events]\n    group: archiver\n\
sinks:\n  out:\n    type: file\n    inputs: [from_kafka]\n    path: ./out/events.log\n",
        broker.bootstrap()
    );
    let mut d2 = Daemon::start(dir2.path(), &yaml2, api2);
    d2.wait_healthy();
    let read = |dir: &std::path::Path| -> HashSet<u64> {
        read_lines(&dir.join("out"), ".log")
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["seq"].as_u64())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while read(dir2.path()).len() < total as usize && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    d2.sigterm();
    assert_eq!(d2.wait(Duration::from_secs(60)), Some(0));
    assert_eq!(read(dir2.path()).len(), total as usize);
}
