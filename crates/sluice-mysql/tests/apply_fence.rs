//! Two processes applying the same consumer: the one holding a stale
//! position must not apply a transaction again. Each apply transaction
//! begins by locking the worker's position row and checking it still says
//! what the process loaded; a moved row rolls back, and the retry reloads
//! the positions and skips what is applied. The keyless table makes a
//! second apply visible as a duplicate row.

mod apply_common;
mod support;

use std::sync::Arc;
use std::time::Duration;

use apply_common::*;
use mysql_async::prelude::Queryable;
use serde_json::json;
use sluice_core::ack::AckRef;
use sluice_core::component::{BuildContext, Resources, Sink, SinkBatch, SinkError, SinkFactory};
use sluice_core::config::ComponentOptions;
use sluice_core::record::{Batch, ChangeSource, Meta, Op, Record, Row, RowChange, TransactionInfo};
use sluice_mysql::apply::MysqlApplyFactory;
use support::MariaDb;

/// A one-row insert transaction into `shop.k` at binlog position `pos`.
fn insert_at(pos: u64) -> SinkBatch {
    let mut after = Row::new();
    after.insert("v".into(), json!(pos));
    let change = RowChange {
        op: Op::Create,
        before: None,
        after: Some(after),
        source: ChangeSource {
            connector: "mysql".into(),
            server_id: 1,
            gtid: None,
            file: "bin.000001".into(),
            pos,
            row: 0,
            ts_ms: 0,
            db: "shop".into(),
            table: "k".into(),
            snapshot: false,
        },
        ts_ms: 0,
        transaction: Some(TransactionInfo {
            id: format!("t{pos}"),
            total_order: 1,
            data_collection_order: 1,
            last: true,
        }),
        primary_key: Vec::new(),
        ddl: None,
    };
    let record = Record {
        meta: Meta::Row(Arc::new(change)),
        ..Record::default()
    };
    let mut b = SinkBatch::default();
    b.push(Batch::new(
        "primary".into(),
        vec![record],
        AckRef::untracked(),
    ));
    b
}

fn apply_sink(dir: &std::path::Path, target: &MariaDb) -> Box<dyn Sink> {
    let res = Resources::default();
    let cx = BuildContext {
        name: "replica",
        data_dir: dir,
        resources: &res,
    };
    let opts = json!({"url": target.url(), "consumer": "fenced"});
    MysqlApplyFactory
        .build(&cx, &ComponentOptions::from_json(opts))
        .unwrap()
}

async fn copies(target: &MariaDb, v: u64) -> u64 {
    let mut c = target.conn().await;
    c.query_first(format!("SELECT COUNT(*) FROM shop.k WHERE v = {v}"))
        .await
        .unwrap()
        .unwrap_or(0)
}

fn moved(r: Result<(), SinkError>) -> String {
    match r {
        Err(SinkError::Retryable(e)) => format!("{e:#}"),
        other => panic!("expected a retryable error about a moved position, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_writer_does_not_apply_twice() {
    let target = target();
    let dir = tempfile::tempdir().unwrap();
    target
        .exec("CREATE DATABASE shop; CREATE TABLE shop.k (v BIGINT)")
        .await;
    let mut a = apply_sink(dir.path(), &target);
    let mut b = apply_sink(dir.path(), &target);

    // Both load position 100.
    a.write(&insert_at(100)).await.unwrap();
    b.write(&insert_at(100)).await.unwrap();
    assert_eq!(copies(&target, 100).await, 1);

    // `a` moves on; `b` still believes 100.
    a.write(&insert_at(200)).await.unwrap();
    let err = moved(b.write(&insert_at(200)).await);
    assert!(err.contains("moved to bin.000001:200"), "{err}");
    // The engine retries the batch: reloaded, it is skipped.
    b.write(&insert_at(200)).await.unwrap();
    assert_eq!(copies(&target, 200).await, 1, "applied twice");

    // A writer whose transaction is still open (an aborted run whose
    // COMMIT is late): `b` waits for it, then sees its position.
    let mut late = target.conn().await;
    late.query_drop(
        "START TRANSACTION; \
         SELECT * FROM sluice.sluice_apply_position WHERE consumer = 'fenced' FOR UPDATE; \
         INSERT INTO shop.k VALUES (300); \
         UPDATE sluice.sluice_apply_position SET pos = 300 WHERE consumer = 'fenced'",
    )
    .await
    .unwrap();
    let waiting = tokio::spawn(async move {
        let first = b.write(&insert_at(300)).await;
        (b, first)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "the second writer did not wait for the open transaction on its position row"
    );
    late.query_drop("COMMIT").await.unwrap();
    let (mut b, first) = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("the second writer never went on after the COMMIT")
        .unwrap();
    let err = moved(first);
    assert!(err.contains("moved to bin.000001:300"), "{err}");
    b.write(&insert_at(300)).await.unwrap();
    assert_eq!(copies(&target, 300).await, 1, "applied twice");

    // Both go on normally from the same position.
    b.write(&insert_at(400)).await.unwrap();
    let err = moved(a.write(&insert_at(400)).await);
    assert!(err.contains("another process"), "{err}");
    a.write(&insert_at(400)).await.unwrap();
    assert_eq!(copies(&target, 400).await, 1, "applied twice");
    a.close().await.unwrap();
    b.close().await.unwrap();
}
