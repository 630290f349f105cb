//! Replica apply through the real `sluice` binary, killed -9 twenty times
//! while a workload runs on a throwaway MariaDB primary: a `type: mysql`
//! source → `type: mysql` apply sink (parallelism 2) into a throwaway
//! target, directly and through a store topic. At the end `sluice verify`
//! passes, the insert-only ledger holds every source transaction exactly
//! once, and a target-side trigger
//! counter (incremented by every committed ledger insert, never
//! decremented) equals the number of source transactions: no transaction
//! was applied twice, not even transiently.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::mariadb::{MariaDb, SHOP, WORKLOAD};
use support::{free_port, Daemon};

const TXNS: u64 = 6000;
const KILLS: u32 = 20;

/// The direct path (`mysql` source → apply sink), or through a store topic
/// (the shape of `pipelines/binlog-sync.yaml`): there a kill -9 leaves the
/// source's re-sent transactions in the topic after their first copies.
fn yaml(
    api: u16,
    primary: &MariaDb,
    start: &(String, u64),
    target: &MariaDb,
    through_store: bool,
) -> String {
    let (store_source, store_sink, input) = if through_store {
        (
            "  cdc:
    type: store
    topic: cdc.shop
    group: replica
",
            "  to_store:
    type: store
    inputs: [primary]
    topic: \"cdc.{database}\"
    partitions: 1
",
            "cdc",
        )
    } else {
        ("", "", "primary")
    };
    format!(
        "data_dir: ./data
checkpoint_interval_ms: 100
api: {{ listen: 127.0.0.1:{api} }}
sources:
  primary:
    type: mysql
    url: \"{}\"
    server_id: 77
    include_tables: [\"shop.*\"]
    snapshot: never
    start_file: \"{}\"
    start_pos: {}
    heartbeat_ms: 500
    reconnect_max_ms: 500
{store_source}sinks:
{store_sink}  replica:
    type: mysql
    inputs: [{input}]
    url: \"{}\"
    database_map: {{ shop: shop_r }}
    parallelism: 2
    batch: {{ max_events: 2000, timeout_ms: 20 }}
",
        primary.url(),
        start.0,
        start.1,
        target.url()
    )
}

fn verify(primary: &MariaDb, target: &MariaDb) -> (Option<i32>, String) {
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
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn apply_survives_20_kill_9_exactly_once() {
    survives_kills(false);
}

#[test]
fn apply_through_a_store_topic_survives_20_kill_9_exactly_once() {
    survives_kills(true);
}

fn survives_kills(through_store: bool) {
    let primary = MariaDb::primary();
    let target = MariaDb::target();
    let start = primary.master_pos();
    primary.query(SHOP);
    primary.query(WORKLOAD);
    // The target's tables come from DDL replay; the counter and its
    // trigger are target-only (sluice never writes them).
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let yaml = yaml(api, &primary, &start, &target, through_store);
    let mut d = Daemon::start(dir.path(), &yaml, api);
    d.wait_healthy();
    let deadline = Instant::now() + Duration::from_secs(60);
    while target
        .try_query("SELECT 1 FROM shop_r.ledger LIMIT 1")
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "DDL never replayed on the target"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    target.query(
        "CREATE TABLE shop_r.applied (id INT PRIMARY KEY, n BIGINT NOT NULL);
         INSERT INTO shop_r.applied VALUES (1, 0);
         CREATE TRIGGER shop_r.count_applied AFTER INSERT ON shop_r.ledger FOR EACH ROW
           UPDATE shop_r.applied SET n = n + 1 WHERE id = 1",
    );
    let mut work = primary.spawn_query(&format!("CALL shop.work({TXNS})"));

    // Kill -9 at varied moments, while the workload runs and after.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut seen = Vec::new();
    for k in 0..KILLS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(150 + seed % 700));
        seen.push(target.number("SELECT COUNT(*) FROM shop_r.ledger"));
        if let Some(status) = d.child.try_wait().unwrap() {
            panic!(
                "sluice exited by itself before kill {k}: {status}\n{}",
                std::fs::read_to_string(dir.path().join("sluice.log")).unwrap_or_default()
            );
        }
        d.kill9();
        d = Daemon::start(dir.path(), &yaml, api);
        d.wait_healthy();
    }
    eprintln!("target ledger rows at the kills: {seen:?}");
    let status = work.wait().unwrap();
    assert!(status.success(), "workload failed");
    let deadline = Instant::now() + Duration::from_secs(120);
    while target.number("SELECT COUNT(*) FROM shop_r.ledger") < TXNS {
        assert!(
            Instant::now() < deadline,
            "target did not catch up: {} of {TXNS} ledger rows",
            target.number("SELECT COUNT(*) FROM shop_r.ledger")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, report) = verify(&primary, &target);
    d.sigterm();
    assert_eq!(d.wait(Duration::from_secs(60)), Some(0));
    assert_eq!(code, Some(0), "verify:\n{report}");
    let rows = target.query("SELECT COUNT(*), COUNT(DISTINCT seq) FROM shop_r.ledger");
    assert_eq!(rows, vec![format!("{TXNS}\t{TXNS}")], "ledger");
    let applied = target.number("SELECT n FROM shop_r.applied WHERE id = 1");
    assert_eq!(
        applied, TXNS,
        "ledger inserts committed on the target (a transaction applied twice?)"
    );
    // The kills landed while rows were being applied.
    assert!(
        seen.iter().any(|&n| n > 0 && n < TXNS),
        "no kill happened mid-apply: ledger counts at the kills {seen:?}"
    );
}
