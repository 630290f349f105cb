//! A remote store source (`type: store, url: …`) in one daemon pulls a topic
//! glob from another daemon's API into a file; kill -9 of the consumer daemon
//! and then of the serving daemon loses nothing (duplicates are allowed).

mod api_common;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use api_common::support::{free_port, read_lines, Daemon};
use serde_json::json;
use sluice::client::Client;

fn seqs(dir: &Path) -> (usize, HashSet<u64>) {
    let lines = read_lines(&dir.join("out"), ".log");
    let set = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["seq"].as_u64())
        .collect();
    (lines.len(), set)
}

#[test]
fn remote_store_source_survives_kill_9_of_either_side() {
    let server_dir = tempfile::tempdir().unwrap();
    let consumer_dir = tempfile::tempdir().unwrap();
    let (sp, cp) = (free_port(), free_port());
    let server_yaml = format!("data_dir: ./data\napi:\n  listen: 127.0.0.1:{sp}\n");
    let consumer_yaml = format!(
        "data_dir: ./data\ncheckpoint_interval_ms: 100\napi: {{ listen: 127.0.0.1:{cp} }}\n\
sources:\n  remote:\n    type: store\n    url: http://127.0.0.1:{sp}\n    topic: \"orders.*\"\n    group: archiver\n    max_batch: 300\n\
sinks:\n  archive:\n    type: file\n    inputs: [remote]\n    path: ./out/events.log\n"
    );
    let mut server = Daemon::start(server_dir.path(), &server_yaml, sp);
    server.wait_healthy();
    let mut consumer = Daemon::start(consumer_dir.path(), &consumer_yaml, cp);
    consumer.wait_healthy();
    let client = Client::new(&format!("http://127.0.0.1:{sp}"), None).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let total = 20_000u64;
    let per = 500u64;
    rt.block_on(async {
        client
            .create_topic("orders.eu", &json!({"partitions": 2}))
            .await
            .unwrap();
    });
    let mut batch = 0u64;
    while batch * per < total {
        // The second topic appears later: the glob picks it up.
        let topic = if batch.is_multiple_of(2) {
            "orders.eu"
        } else {
            "orders.us"
        };
        let recs: Vec<_> = (batch * per..(batch + 1) * per)
            .map(|i| json!({"key": i.to_string(), "value": {"seq": i}}))
            .collect();
        match rt.block_on(client.produce(topic, &recs)) {
            Ok(_) => batch += 1,
            Err(e) => {
                assert!(
                    server.child.try_wait().unwrap().is_none(),
                    "server exited: {e}"
                );
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        }
        if batch == 12 {
            consumer.kill9();
            consumer = Daemon::start(consumer_dir.path(), &consumer_yaml, cp);
            consumer.wait_healthy();
        }
        if batch == 26 {
            server.kill9();
            server = Daemon::start(server_dir.path(), &server_yaml, sp);
            server.wait_healthy();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (lines, set) = seqs(consumer_dir.path());
        if set.len() as u64 == total {
            eprintln!("{lines} lines for {total} records");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {total} arrived; see {}",
            set.len(),
            consumer_dir.path().join("sluice.log").display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    consumer.sigterm();
    assert_eq!(consumer.wait(Duration::from_secs(30)), Some(0));
}
