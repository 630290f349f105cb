//! Replica apply of XA transactions committed after other transactions:
//! an XA transaction's rows are read at XA PREPARE but belong at XA
//! COMMIT, after everything committed in between. The apply sink skips a
//! change at or before what it already applied, so the rows must carry
//! the XA COMMIT's position: with the PREPARE's they were taken for
//! redeliveries and lost (found while making the sink skip second copies
//! within a batch). Both shapes: the XA COMMIT in a later batch than the
//! transactions committed before it, and all of it in one batch.

mod apply_common;
mod support;

use std::time::Duration;

use apply_common::*;
use mysql_async::prelude::Queryable;
use serde_json::json;
use support::MariaDb;

async fn has_row(target: &MariaDb, id: u64) -> bool {
    let mut c = target.conn().await;
    let n: Option<u64> = c
        .query_first(format!("SELECT COUNT(*) FROM shop_xa.xt WHERE id = {id}"))
        .await
        .unwrap_or(None);
    n == Some(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xa_rows_committed_after_other_transactions_are_applied() {
    let primary = primary();
    let target = target();
    let dir = tempfile::tempdir().unwrap();
    let start = master_pos(&primary).await;
    primary
        .exec("CREATE DATABASE shop; CREATE TABLE shop.xt (id INT PRIMARY KEY, v INT)")
        .await;
    let sinks = [(
        "replica",
        "mysql",
        json!({"url": target.url(), "database_map": {"shop": "shop_xa"}}),
    )];
    let (control, task) = spawn(pipeline(dir.path(), &primary, &start, &sinks));
    let mut a = primary.conn().await;
    let mut b = primary.conn().await;

    // The XA COMMIT arrives in a later batch than the transaction before it.
    a.query_drop(
        "XA START 'a'; INSERT INTO shop.xt VALUES (1, 1), (2, 2); XA END 'a'; XA PREPARE 'a'",
    )
    .await
    .unwrap();
    b.query_drop("INSERT INTO shop.xt VALUES (10, 10)")
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !has_row(&target, 10).await {
        assert!(std::time::Instant::now() < deadline, "row 10 never applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.query_drop("XA COMMIT 'a'").await.unwrap();

    // All in one batch: stop the pipeline, write, start it again.
    control.shutdown.cancel();
    task.await.unwrap().expect("pipeline ends cleanly");
    a.query_drop("XA START 'c'; INSERT INTO shop.xt VALUES (3, 3); XA END 'c'; XA PREPARE 'c'")
        .await
        .unwrap();
    b.query_drop("INSERT INTO shop.xt VALUES (11, 11)")
        .await
        .unwrap();
    a.query_drop("XA COMMIT 'c'").await.unwrap();
    b.query_drop("INSERT INTO shop.xt VALUES (12, 12)")
        .await
        .unwrap();
    let (control, task) = spawn(pipeline(dir.path(), &primary, &start, &sinks));
    let r = wait_equal(
        &verify_opts(&primary, &target.url(), "shop_xa"),
        Duration::from_secs(30),
    )
    .await;
    assert!(r.is_equal(), "{}", printed(&r));
    control.shutdown.cancel();
    task.await.unwrap().expect("pipeline ends cleanly");
}
