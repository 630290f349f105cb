//! Connection loss and binlog housekeeping: KILL of the replica connection
//! in the middle of a large transaction, server restart, FLUSH BINARY LOGS,
//! a purged binlog, a lagging reader crossing DDL.

mod support;

use std::time::Duration;

use mysql_async::prelude::Queryable;
use serde_json::json;
use sluice_core::record::{Op, RowChange};
use sluice_mysql::{ChangeStream, Position, StreamConfig};
use support::MariaDb;

fn config(db: &MariaDb) -> StreamConfig {
    let mut cfg = StreamConfig::new(mysql_async::Opts::from_url(&db.url()).unwrap(), 4243);
    cfg.heartbeat = Duration::from_millis(500);
    cfg.reconnect_min = Duration::from_millis(50);
    cfg.reconnect_max = Duration::from_millis(500);
    cfg.max_reconnects = Some(100);
    cfg.max_batch_rows = 100;
    cfg
}

async fn read(stream: &mut ChangeStream, n: usize) -> Vec<RowChange> {
    let mut out = Vec::new();
    while out.len() < n {
        let b = tokio::time::timeout(Duration::from_secs(30), stream.next_batch())
            .await
            .unwrap_or_else(|_| panic!("timed out with {} of {n}", out.len()))
            .expect("batch");
        out.extend(b.changes);
    }
    out
}

async fn kill_binlog_dumps(db: &MariaDb) -> usize {
    let mut c = db.conn().await;
    let ids: Vec<u64> = c
        .query("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'")
        .await
        .unwrap();
    for id in &ids {
        let _ = c.query_drop(format!("KILL {id}")).await;
    }
    ids.len()
}

fn ids(c: &[RowChange]) -> Vec<i64> {
    c.iter()
        .map(|c| c.after.as_ref().unwrap()["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn kill_mid_transaction_resumes_without_loss_or_duplicates() {
    let db = MariaDb::start();
    db.exec("CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, pad VARCHAR(100))")
        .await;
    let mut s = ChangeStream::start(config(&db), None).await.unwrap();
    db.exec("INSERT INTO d.t SELECT seq, REPEAT('p', 100) FROM d.seq_1_to_20000")
        .await;
    let mut got = read(&mut s, 300).await;
    assert!(kill_binlog_dumps(&db).await >= 1);
    got.extend(read(&mut s, 20_000 - got.len()).await);
    assert!(s.reconnects >= 1, "the stream did not notice the KILL");
    assert_eq!(ids(&got), (1..=20_000).collect::<Vec<i64>>());
    let orders: Vec<u64> = got
        .iter()
        .map(|c| c.transaction.as_ref().unwrap().total_order)
        .collect();
    assert_eq!(orders, (1..=20_000).collect::<Vec<u64>>());
    let lasts: Vec<usize> = got
        .iter()
        .enumerate()
        .filter(|(_, c)| c.transaction.as_ref().unwrap().last)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(lasts, vec![19_999]);
}

#[tokio::test]
async fn server_restart_and_flush_binary_logs() {
    let mut db = MariaDb::start();
    db.exec("CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY)")
        .await;
    let mut s = ChangeStream::start(config(&db), None).await.unwrap();
    db.exec("INSERT INTO d.t VALUES (1); FLUSH BINARY LOGS; INSERT INTO d.t VALUES (2)")
        .await;
    let c = read(&mut s, 2).await;
    assert_eq!(ids(&c), [1, 2]);
    assert_ne!(
        c[0].source.file, c[1].source.file,
        "FLUSH BINARY LOGS rotates"
    );
    db.restart();
    db.exec("INSERT INTO d.t VALUES (3)").await;
    let c = read(&mut s, 1).await;
    assert_eq!(ids(&c), [3]);
    assert!(s.reconnects >= 1);
}

#[tokio::test]
async fn purged_binlog_is_an_error_naming_the_position() {
    let db = MariaDb::start();
    db.exec("CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY)")
        .await;
    let mut s = ChangeStream::start(config(&db), None).await.unwrap();
    db.exec("INSERT INTO d.t VALUES (1)").await;
    read(&mut s, 1).await;
    let old = s.position().clone();
    drop(s);
    kill_binlog_dumps(&db).await;
    db.exec("INSERT INTO d.t VALUES (2); FLUSH BINARY LOGS; INSERT INTO d.t VALUES (3)")
        .await;
    let mut c = db.conn().await;
    // MariaDB keeps a binlog until its binlog checkpoint passed it: retry.
    let mut purged = false;
    for _ in 0..50 {
        let row: mysql_async::Row = c.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
        let file: String = row.get(0).unwrap();
        c.query_drop(format!("PURGE BINARY LOGS TO '{file}'"))
            .await
            .unwrap();
        let left: Vec<mysql_async::Row> = c.query("SHOW BINARY LOGS").await.unwrap();
        if left.len() == 1 {
            purged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(purged, "PURGE BINARY LOGS left older files");
    for start in [
        old.clone(),
        Position {
            gtid: String::new(),
            ..old.clone()
        },
    ] {
        let shown = start.to_string();
        let err = match ChangeStream::start(config(&db), Some(start)).await {
            Ok(mut s) => loop {
                match tokio::time::timeout(Duration::from_secs(10), s.next_batch()).await {
                    Ok(Ok(b)) => assert!(b.changes.is_empty(), "read {b:?} from a purged binlog"),
                    Ok(Err(e)) => break e,
                    Err(_) => panic!("reading a purged binlog must fail"),
                }
            },
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(msg.contains(&shown), "error does not name {shown}: {msg}");
        assert!(msg.contains("purged"), "{msg}");
    }
}

#[tokio::test]
async fn lagging_reader_crosses_ddl_with_the_old_column_names() {
    let db = MariaDb::start();
    db.exec("CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, a INT, b INT)")
        .await;
    let start = {
        let s = ChangeStream::start(config(&db), None).await.unwrap();
        s.position().clone()
    };
    db.exec(
        "INSERT INTO d.t VALUES (1, 10, 20); ALTER TABLE d.t ADD COLUMN c INT; \
         INSERT INTO d.t VALUES (2, 11, 21, 31); ALTER TABLE d.t DROP COLUMN a; \
         INSERT INTO d.t VALUES (3, 22, 32); ALTER TABLE d.t RENAME COLUMN b TO bb; \
         INSERT INTO d.t VALUES (4, 23, 33)",
    )
    .await;
    // The reader starts only now, behind all of that DDL.
    let mut s = ChangeStream::start(config(&db), Some(start)).await.unwrap();
    let c = read(&mut s, 7).await;
    let ops: Vec<Op> = c.iter().map(|c| c.op).collect();
    assert_eq!(
        ops,
        [
            Op::Create,
            Op::Ddl,
            Op::Create,
            Op::Ddl,
            Op::Create,
            Op::Ddl,
            Op::Create
        ]
    );
    assert_eq!(
        c[0].after.as_ref().unwrap(),
        json!({"id": 1, "a": 10, "b": 20}).as_object().unwrap()
    );
    assert_eq!(
        c[2].after.as_ref().unwrap(),
        json!({"id": 2, "a": 11, "b": 21, "c": 31})
            .as_object()
            .unwrap()
    );
    assert_eq!(
        c[4].after.as_ref().unwrap(),
        json!({"id": 3, "b": 22, "c": 32}).as_object().unwrap()
    );
    assert_eq!(
        c[6].after.as_ref().unwrap(),
        json!({"id": 4, "bb": 23, "c": 33}).as_object().unwrap()
    );
}

#[tokio::test]
async fn without_full_metadata_ddl_rereads_the_schema_or_stops_loudly() {
    let db = MariaDb::start_with(&["--binlog-row-metadata=MINIMAL"]);
    db.exec("CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, a INT)")
        .await;
    let mut live = ChangeStream::start(config(&db), None).await.unwrap();
    let start = live.position().clone();
    db.exec("INSERT INTO d.t VALUES (1, 10)").await;
    let c = read(&mut live, 1).await;
    assert_eq!(
        c[0].after.as_ref().unwrap(),
        json!({"id": 1, "a": 10}).as_object().unwrap()
    );
    // A reader that keeps up re-reads information_schema after the DDL.
    db.exec("ALTER TABLE d.t ADD COLUMN b VARCHAR(5); INSERT INTO d.t VALUES (2, 20, 'x')")
        .await;
    let c = read(&mut live, 2).await;
    assert_eq!(c[0].op, Op::Ddl);
    assert_eq!(
        c[1].after.as_ref().unwrap(),
        json!({"id": 2, "a": 20, "b": "x"}).as_object().unwrap()
    );
    // A reader behind the DDL cannot trust today's schema for old rows.
    let mut lagging = ChangeStream::start(config(&db), Some(start)).await.unwrap();
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(20), lagging.next_batch())
            .await
            .unwrap()
        {
            Ok(b) => assert!(b.changes.is_empty(), "mislabelled: {:?}", b.changes),
            Err(e) => break e,
        }
    };
    let msg = err.to_string();
    assert!(
        msg.contains("`d`.`t`") && msg.contains("2 columns but information_schema has 3"),
        "{msg}"
    );
}
