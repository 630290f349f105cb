//! Replica apply into PostgreSQL (127.0.0.1:5432): tables created from the
//! source schema through the documented type mapping, a random workload
//! (inserts, updates including primary-key changes, deletes, a table
//! without primary key) with a serial and a 2-worker sink, then `verify`
//! against PostgreSQL passes and the ledger holds every transaction once.

mod apply_common;
mod support;

use std::time::Duration;

use apply_common::*;
use serde_json::json;

async fn pg_ledger(url: &str, schema: &str) -> (i64, i64) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let row = client
        .query_one(
            &format!("SELECT COUNT(*), COUNT(DISTINCT seq) FROM {schema}.ledger"),
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_workload_into_postgres_then_verify() {
    let primary = primary();
    let url = pg_database("apply").await;
    let dir = tempfile::tempdir().unwrap();
    let start = master_pos(&primary).await;
    primary.exec(SCHEMA).await;
    let sinks = vec![
        (
            "pg",
            "postgres",
            json!({"url": url, "create_tables": true, "source_url": primary.url()}),
        ),
        (
            "pg2",
            "postgres",
            json!({"url": url, "create_tables": true, "source_url": primary.url(),
                   "database_map": {"shop": "shop2"}, "parallelism": 2}),
        ),
    ];
    let (control, task) = spawn(pipeline(dir.path(), &primary, &start, &sinks));
    // Steps 0..140 hold no DDL (PostgreSQL replays TRUNCATE / DROP only).
    workload(&primary, 11, 0, 140, Duration::ZERO).await;
    for schema in ["shop", "shop2"] {
        let r = wait_equal(
            &verify_opts(&primary, &url, schema),
            Duration::from_secs(120),
        )
        .await;
        eprintln!("{}", printed(&r));
        if !r.is_equal() && task.is_finished() {
            panic!("the pipeline stopped: {:?}", task.await);
        }
        assert!(r.is_equal(), "{schema}:\n{}", printed(&r));
        assert_eq!(pg_ledger(&url, schema).await, (140, 140));
    }
    control.shutdown.cancel();
    task.await.unwrap().expect("pipeline ends cleanly");
}
