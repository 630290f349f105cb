//! Replica apply through Kafka with the real `sluice` binary and a real
//! Kafka-protocol broker (tansu): one daemon runs a `type: mysql` source →
//! `type: kafka` sink (the JSON envelopes of the row changes, one
//! partition) and a `type: kafka` source → `type: mysql` apply sink into a
//! throwaway target. A workload runs on a throwaway MariaDB primary while
//! the daemon is stopped (SIGTERM) and restarted three times. At the end
//! `sluice verify` passes and the insert-only ledger holds every source
//! transaction exactly once: the position kept in the target is the source
//! binlog position carried in each envelope, so redelivered messages are
//! skipped. The second test does the same with kill -9 five times; its
//! Kafka source reads its partition by static assignment (`partitions:
//! [0]`): with tansu 0.6 a group member restarted after a kill -9 is never
//! assigned the partition again, so a group-managed consumer cannot be
//! tested that way here.

mod support;

#[allow(dead_code)]
#[path = "../crates/sluice-kafka/tests/support/tansu.rs"]
mod tansu;

use std::process::Command;
use std::time::{Duration, Instant};

use support::mariadb::{MariaDb, SHOP, WORKLOAD};
use support::{free_port, Daemon};

const TXNS: u64 = 3000;

#[test]
fn binlog_to_kafka_to_replica_exactly_once_across_restarts() {
    through_kafka(Stop::Graceful);
}

#[test]
fn binlog_to_kafka_to_replica_exactly_once_across_kill_9() {
    through_kafka(Stop::Kill9);
}

#[derive(Clone, Copy, PartialEq)]
enum Stop {
    Graceful,
    Kill9,
}

fn through_kafka(stop: Stop) {
    let broker = tansu::Tansu::start();
    broker.create_topic("binlog", 1);
    let primary = MariaDb::primary();
    let target = MariaDb::target();
    let start = primary.master_pos();
    primary.query(SHOP);
    primary.query(WORKLOAD);
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let yaml = format!(
        "data_dir: ./data
checkpoint_interval_ms: 100
api: {{ listen: 127.0.0.1:{api} }}
sources:
  primary:
    type: mysql
    url: \"{}\"
    server_id: 78
    include_tables: [\"shop.*\"]
    snapshot: never
    start_file: \"{}\"
    start_pos: {}
  from_kafka:
    type: kafka
    brokers: [\"{b}\"]
    topics: [binlog]
    group: replica
{assignment}sinks:
  to_kafka:
    type: kafka
    inputs: [primary]
    brokers: [\"{b}\"]
    topic: binlog
  replica:
    type: mysql
    inputs: [from_kafka]
    url: \"{}\"
    database_map: {{ shop: shop_r }}
",
        primary.url(),
        start.0,
        start.1,
        target.url(),
        b = broker.bootstrap(),
        assignment = match stop {
            Stop::Graceful => "",
            Stop::Kill9 => "    partitions: [0]\n",
        }
    );
    let mut d = Daemon::start(dir.path(), &yaml, api);
    d.wait_healthy();
    let mut work = primary.spawn_query(&format!("CALL shop.work({TXNS})"));
    let stops = if stop == Stop::Kill9 { 5 } else { 3 };
    for i in 0..stops {
        std::thread::sleep(Duration::from_millis(900 + 300 * (i % 3)));
        if let Some(status) = d.child.try_wait().unwrap() {
            panic!(
                "sluice exited by itself: {status}\n{}",
                std::fs::read_to_string(dir.path().join("sluice.log")).unwrap_or_default()
            );
        }
        if stop == Stop::Kill9 {
            d.kill9();
        } else {
            d.sigterm();
            assert!(
                d.wait(Duration::from_secs(60)).is_some(),
                "sluice did not stop on SIGTERM"
            );
        }
        d = Daemon::start(dir.path(), &yaml, api);
        d.wait_healthy();
    }
    assert!(work.wait().unwrap().success(), "workload failed");
    let count = || {
        target
            .try_query("SELECT COUNT(*) FROM shop_r.ledger")
            .ok()
            .and_then(|r| r.first().and_then(|v| v.parse::<u64>().ok()))
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    while count() < TXNS {
        assert!(
            Instant::now() < deadline,
            "target did not catch up: {} of {TXNS} ledger rows\n{}",
            count(),
            std::fs::read_to_string(dir.path().join("sluice.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = Command::new(support::sluice_bin())
        .args([
            "verify",
            "--source",
            &primary.url(),
            "--target",
            &target.url(),
        ])
        .args(["--tables", "shop.*", "--database-map", "shop=shop_r"])
        .output()
        .expect("run sluice verify");
    d.sigterm();
    assert_eq!(d.wait(Duration::from_secs(60)), Some(0));
    assert_eq!(
        out.status.code(),
        Some(0),
        "verify:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = target.query("SELECT COUNT(*), COUNT(DISTINCT seq) FROM shop_r.ledger");
    assert_eq!(rows, vec![format!("{TXNS}\t{TXNS}")], "ledger");
}
