//! Snapshot + crash: a `type: mysql` source taking its initial snapshot
//! (small chunks, two readers) into the apply sink (two workers) is
//! aborted mid-snapshot up to three times (the source's checkpoint lags:
//! redelivery is certain), then run to the end with changes streaming on
//! top. `verify` passes, and target-side trigger counters (every committed
//! insert or update of a row, never decremented) show that no snapshot row
//! of a table with an integer or DECIMAL key, or without a key, was
//! applied twice (text keys are re-applied as upserts, documented).

mod apply_common;
mod support;

use std::time::Duration;

use apply_common::*;
use mysql_async::prelude::Queryable;
use serde_json::json;

const ITEMS: u64 = 30_000;
const PRICES: u64 = 5_000;
const NOPK: u64 = 5_000;
const NAMES: u64 = 2_000;

const TABLES: &str = "
CREATE TABLE {db}.items (id INT PRIMARY KEY, v VARCHAR(40));
CREATE TABLE {db}.prices (p DECIMAL(10,2) PRIMARY KEY, n INT);
CREATE TABLE {db}.nopk (msg VARCHAR(20), n INT);
CREATE TABLE {db}.names (name VARCHAR(20) PRIMARY KEY, n INT)";

async fn count(db: &support::MariaDb, sql: &str) -> u64 {
    let mut c = db.conn().await;
    let n: Option<u64> = c.query_first(sql).await.unwrap();
    c.disconnect().await.ok();
    n.unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_snapshot_resumes_without_reapplying() {
    let primary = primary();
    let target = target();
    primary
        .exec(&format!(
            "CREATE DATABASE shop; {};
             INSERT INTO shop.items SELECT seq, CONCAT('item-', seq) FROM shop.seq_1_to_{ITEMS};
             INSERT INTO shop.prices SELECT seq / 100, seq FROM shop.seq_1_to_{PRICES};
             INSERT INTO shop.nopk SELECT CONCAT('m', seq % 7), seq % 3 FROM shop.seq_1_to_{NOPK};
             INSERT INTO shop.names SELECT CONCAT('Name-', seq), seq FROM shop.seq_1_to_{NAMES}",
            TABLES.replace("{db}", "shop")
        ))
        .await;
    // The target's tables, each with a counter of committed inserts and
    // updates (ON DUPLICATE KEY UPDATE fires the update triggers).
    let mut ddl = format!(
        "CREATE DATABASE snap; {};
         CREATE DATABASE cnt; CREATE TABLE cnt.c (t VARCHAR(20) PRIMARY KEY, n BIGINT NOT NULL);",
        TABLES.replace("{db}", "snap")
    );
    for t in ["items", "prices", "nopk", "names"] {
        for ev in ["INSERT", "UPDATE"] {
            ddl.push_str(&format!(
                "CREATE TRIGGER snap.{t}_{ev} AFTER {ev} ON snap.{t} FOR EACH ROW \
                 INSERT INTO cnt.c VALUES ('{t}', 1) ON DUPLICATE KEY UPDATE n = n + 1;"
            ));
        }
    }
    target.exec(&ddl).await;
    let source = json!({
        "url": primary.url(), "server_id": 79, "include_tables": ["shop.*"],
        "snapshot": "initial", "snapshot_chunk_rows": 500, "snapshot_parallelism": 2,
        "heartbeat_ms": 500, "reconnect_max_ms": 500
    });
    let sinks = [(
        "replica",
        "mysql",
        json!({"url": target.url(), "database_map": {"shop": "snap"}, "parallelism": 2}),
    )];
    let dir = tempfile::tempdir().unwrap();
    let total = ITEMS + PRICES + NOPK + NAMES;
    let applied = || async { count(&target, "SELECT COALESCE(SUM(n), 0) FROM cnt.c").await };
    let mut aborted_mid_snapshot = 0;
    for round in 1..=3u64 {
        // Checkpoints every 100 ms: the source resumes its snapshot (a
        // crash before its first checkpoint would start a new snapshot,
        // which empties the tables the old one wrote: not this test). The
        // short interval lets the abort come early, so it lands inside the
        // snapshot however fast the machine is.
        let p = pipeline_with(
            dir.path(),
            source.clone(),
            &sinks,
            Duration::from_millis(100),
        );
        let (control, task) = spawn(p);
        let before = applied().await;
        let t0 = tokio::time::Instant::now();
        let deadline = t0 + Duration::from_secs(120);
        // Abort once a few more chunks are in (and a checkpoint was due).
        while (applied().await < before + 4_000 * round
            || t0.elapsed() < Duration::from_millis(300))
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        control.abort.cancel();
        let r = task.await.unwrap();
        let now = applied().await;
        eprintln!(
            "round {round}: aborted at {now} applied rows: {:?}",
            r.err().map(|e| e.to_string())
        );
        if count(&target, "SELECT COUNT(*) FROM snap.items").await < ITEMS {
            aborted_mid_snapshot += 1;
        }
    }
    assert!(
        aborted_mid_snapshot > 0,
        "no abort landed inside the snapshot"
    );
    let skipped_before = sluice_mysql::apply::sink::skipped_total();
    // The last run: to the end, with changes streaming after the snapshot.
    let p = pipeline_with(
        dir.path(),
        source.clone(),
        &sinks,
        Duration::from_millis(50),
    );
    let (control, task) = spawn(p);
    let mut c = primary.conn().await;
    for i in 0..50 {
        c.query_drop(format!(
            "UPDATE shop.names SET n = n + 1 WHERE name = 'Name-{}'",
            i + 1
        ))
        .await
        .unwrap();
    }
    c.disconnect().await.ok();
    let mut opts = verify_opts(&primary, &target.url(), "snap");
    opts.chunk_rows = 5_000;
    let report = wait_equal(&opts, Duration::from_secs(240)).await;
    assert!(report.is_equal(), "{}", printed(&report));
    control.shutdown.cancel();
    task.await.unwrap().expect("pipeline ends cleanly");
    let skipped = sluice_mysql::apply::sink::skipped_total();
    let per = |t: &'static str| {
        let target = &target;
        async move { count(target, &format!("SELECT n FROM cnt.c WHERE t = '{t}'")).await }
    };
    let (items, prices, nopk, names) = (
        per("items").await,
        per("prices").await,
        per("nopk").await,
        per("names").await,
    );
    eprintln!(
        "applied: items {items}, prices {prices}, nopk {nopk}, names {names} (of {total} rows); \
         skipped as already applied: {skipped} ({} in the last run)",
        skipped - skipped_before
    );
    assert!(
        skipped > 0,
        "no snapshot row was redelivered: the test proved nothing"
    );
    assert_eq!(
        items, ITEMS,
        "items: integer-key snapshot rows applied twice"
    );
    assert_eq!(
        prices, PRICES,
        "prices: DECIMAL-key snapshot rows applied twice"
    );
    assert_eq!(nopk, NOPK, "nopk: keyless snapshot rows applied twice");
    // Text keys: re-applied upserts allowed; the 50 updates streamed.
    assert!(names >= NAMES + 50, "names: {names}");
}
