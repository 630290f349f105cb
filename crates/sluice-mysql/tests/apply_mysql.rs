//! Replica apply into a real MariaDB target, straight from the mysql
//! source in one pipeline: a random workload (inserts, updates including
//! primary-key changes, deletes, DDL) with a serial and a 4-worker sink,
//! `verify` passes; 20 aborts during apply lose nothing and apply nothing
//! twice (an insert-only ledger); the target going down and coming back.

mod apply_common;
mod support;

use std::time::Duration;

use apply_common::*;
use mysql_async::prelude::Queryable;
use serde_json::json;
use support::MariaDb;

fn sinks(target: &MariaDb) -> Vec<(&'static str, &'static str, serde_json::Value)> {
    vec![
        (
            "replica",
            "mysql",
            json!({"url": target.url(), "database_map": {"shop": "shop_replica"}}),
        ),
        (
            "replica4",
            "mysql",
            json!({"url": target.url(), "database_map": {"shop": "shop_par"},
                   "parallelism": 4, "max_transactions": 50}),
        ),
    ]
}

async fn check_equal(primary: &MariaDb, target: &MariaDb, n: u64) {
    for db in ["shop_replica", "shop_par"] {
        let r = wait_equal(
            &verify_opts(primary, &target.url(), db),
            Duration::from_secs(120),
        )
        .await;
        eprintln!("{}", printed(&r));
        assert!(r.is_equal(), "{db}:\n{}", printed(&r));
        assert_eq!(
            ledger(target, db).await,
            (n, n),
            "{db}: ledger rows / distinct"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_workload_with_ddl_serial_and_parallel() {
    let primary = primary();
    let target = target();
    let dir = tempfile::tempdir().unwrap();
    let start = master_pos(&primary).await;
    primary.exec(SCHEMA).await;
    let (control, task) = spawn(pipeline(dir.path(), &primary, &start, &sinks(&target)));
    workload(&primary, 7, 0, 600, Duration::ZERO).await;
    check_equal(&primary, &target, 600).await;
    // Columns and renamed tables followed the DDL.
    let mut c = target.conn().await;
    let n: Option<u64> = c
        .query_first("SELECT COUNT(*) FROM shop_par.extra2 WHERE id = 5")
        .await
        .unwrap();
    assert_eq!(n, Some(1));
    control.shutdown.cancel();
    task.await.unwrap().expect("pipeline ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_twenty_times_applies_every_transaction_once() {
    let primary = primary();
    let target = target();
    let dir = tempfile::tempdir().unwrap();
    let start = master_pos(&primary).await;
    primary.exec(SCHEMA).await;
    let total = 800;
    let load = tokio::spawn({
        let p = MariaDbRef(primary.port);
        async move { p.workload(total).await }
    });
    let mut rng = Rng(99);
    for round in 0..20 {
        let (control, task) = spawn(pipeline(dir.path(), &primary, &start, &sinks(&target)));
        tokio::time::sleep(Duration::from_millis(150 + rng.below(450))).await;
        control.abort.cancel();
        let r = task.await.unwrap();
        eprintln!("round {round}: {:?}", r.err().map(|e| e.to_string()));
    }
    load.await.unwrap();
    let (control, task) = spawn(pipeline(dir.path(), &primary, &start, &sinks(&target)));
    check_equal(&primary, &target, total).await;
    let skipped = sluice_mysql::apply::sink::skipped_total();
    eprintln!("changes redelivered and skipped as already applied: {skipped}");
    assert!(
        skipped > 0,
        "no abort caused a redelivery: the test proved nothing"
    );
    control.shutdown.cancel();
    task.await.unwrap().expect("pipeline ends cleanly");
}

/// The primary seen from another task (the server stays owned by the test).
struct MariaDbRef(u16);

impl MariaDbRef {
    async fn workload(&self, n: u64) {
        let url = format!("mysql://root@127.0.0.1:{}", self.0);
        let mut c = mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap())
            .await
            .unwrap();
        let mut rng = Rng(5);
        for i in 0..n {
            if let Some(ddl) = ddl_at(i) {
                c.query_drop(ddl).await.unwrap();
            }
            if random_txn(&mut c, &mut rng, i).await.is_err() {
                c.query_drop("ROLLBACK").await.ok();
                c.query_drop(format!("INSERT INTO shop.ledger VALUES ({i}, 'tx')"))
                    .await
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_down_for_a_while_then_back_resumes() {
    let primary = primary();
    let mut target = target();
    let dir = tempfile::tempdir().unwrap();
    let start = master_pos(&primary).await;
    primary.exec(SCHEMA).await;
    let (control, task) = spawn(pipeline(dir.path(), &primary, &start, &sinks(&target)));
    workload(&primary, 3, 0, 100, Duration::ZERO).await;
    let mut c = target.conn().await;
    let _ = c.query_drop("SHUTDOWN").await;
    drop(c);
    workload(&primary, 4, 100, 100, Duration::ZERO).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !task.is_finished(),
        "the pipeline gave up while the target was down"
    );
    target.restart();
    check_equal(&primary, &target, 200).await;
    control.shutdown.cancel();
    task.await.unwrap().expect("pipeline ends cleanly");
}
