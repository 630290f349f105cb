//! The change stream against a throwaway MariaDB: rows, transactions, DDL,
//! GTID positions, reconnects and binlog rotation.

mod support;

use std::time::Duration;

use serde_json::json;
use sluice_core::record::{Op, RowChange};
use sluice_mysql::{ChangeStream, Position, StreamConfig};
use support::MariaDb;

fn config(db: &MariaDb) -> StreamConfig {
    let mut cfg = StreamConfig::new(mysql_async::Opts::from_url(&db.url()).unwrap(), 4242);
    cfg.heartbeat = Duration::from_millis(500);
    cfg.reconnect_min = Duration::from_millis(50);
    cfg.max_reconnects = Some(20);
    cfg
}

/// Reads until `n` changes arrived (or fails after 20 s).
async fn read(stream: &mut ChangeStream, n: usize) -> Vec<RowChange> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while out.len() < n {
        let b = tokio::time::timeout_at(deadline, stream.next_batch())
            .await
            .unwrap_or_else(|_| panic!("timed out with {} of {n} changes: {out:#?}", out.len()))
            .expect("next batch");
        out.extend(b.changes);
    }
    out
}

#[tokio::test]
async fn streams_transactions_with_last_markers_and_ddl() {
    let db = MariaDb::start();
    db.exec("CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY, name VARCHAR(20), n BIGINT UNSIGNED)")
        .await;
    let mut s = ChangeStream::start(config(&db), None).await.unwrap();
    db.exec(
        "BEGIN; INSERT INTO shop.t VALUES (1,'a',18446744073709551615),(2,'b',0); \
         UPDATE shop.t SET name='c' WHERE id=1; COMMIT; DELETE FROM shop.t WHERE id=2; \
         ALTER TABLE shop.t ADD COLUMN x INT; INSERT INTO shop.t VALUES (3,'d',1,7)",
    )
    .await;
    let c = read(&mut s, 6).await;
    let ops: Vec<Op> = c.iter().map(|c| c.op).collect();
    assert_eq!(
        ops,
        [
            Op::Create,
            Op::Create,
            Op::Update,
            Op::Delete,
            Op::Ddl,
            Op::Create
        ]
    );
    assert_eq!(
        c[0].after.as_ref().unwrap(),
        json!({"id": 1, "name": "a", "n": 18446744073709551615u64})
            .as_object()
            .unwrap()
    );
    assert_eq!(c[2].before.as_ref().unwrap()["name"], json!("a"));
    assert_eq!(c[2].after.as_ref().unwrap()["name"], json!("c"));
    assert_eq!(c[3].before.as_ref().unwrap()["id"], json!(2));
    assert_eq!(c[0].primary_key, vec!["id".to_string()]);
    let tx: Vec<(u64, bool)> = c
        .iter()
        .map(|c| {
            let t = c.transaction.as_ref().unwrap();
            (t.total_order, t.last)
        })
        .collect();
    assert_eq!(
        tx,
        [
            (1, false),
            (2, false),
            (3, true),
            (1, true),
            (1, true),
            (1, true)
        ]
    );
    assert_eq!(
        c[0].transaction.as_ref().unwrap().id,
        c[0].source.gtid.clone().unwrap()
    );
    assert!(c[4].ddl.as_deref().unwrap().contains("ADD COLUMN x"));
    assert_eq!(
        (c[4].source.db.as_str(), c[4].source.table.as_str()),
        ("shop", "t")
    );
    assert_eq!(c[5].after.as_ref().unwrap()["x"], json!(7));
    let pos = s.position().clone();
    assert!(pos.gtid.starts_with("0-1-"), "{pos}");
    assert!(pos.file.starts_with("binlog."), "{pos}");
}

#[tokio::test]
async fn resumes_from_a_gtid_and_from_file_position() {
    let db = MariaDb::start();
    db.exec("CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY)")
        .await;
    let mut s = ChangeStream::start(config(&db), None).await.unwrap();
    db.exec("INSERT INTO d.t VALUES (1); INSERT INTO d.t VALUES (2); INSERT INTO d.t VALUES (3)")
        .await;
    let c = read(&mut s, 3).await;
    let end = s.position().clone();
    drop(s);
    // By GTID: the first GTID ends transaction 1.
    let g = c[0].source.gtid.clone().unwrap();
    let p = Position {
        gtid: g,
        ..Position::default()
    };
    let mut s = ChangeStream::start(config(&db), Some(p)).await.unwrap();
    let again = read(&mut s, 2).await;
    assert_eq!(again[0].after.as_ref().unwrap()["id"], json!(2));
    assert_eq!(again[1].after.as_ref().unwrap()["id"], json!(3));
    // By file and position (no GTID).
    let p = Position {
        gtid: String::new(),
        ..end
    };
    let mut s = ChangeStream::start(config(&db), Some(p)).await.unwrap();
    db.exec("INSERT INTO d.t VALUES (4)").await;
    let again = read(&mut s, 1).await;
    assert_eq!(again[0].after.as_ref().unwrap()["id"], json!(4));
}

#[tokio::test]
async fn prerequisites_name_the_setting_to_change() {
    let db = MariaDb::start_with(&["--binlog-format=STATEMENT", "--binlog-row-image=MINIMAL"]);
    let err = ChangeStream::start(config(&db), None)
        .await
        .err()
        .expect("must refuse");
    let msg = err.to_string();
    assert!(msg.contains("binlog_format is STATEMENT"), "{msg}");
    assert!(msg.contains("binlog_format=ROW"), "{msg}");
    assert!(msg.contains("binlog_row_image is MINIMAL"), "{msg}");
    db.exec("CREATE USER nobody@'%'; CREATE USER nobody@localhost")
        .await;
    let mut cfg = config(&db);
    cfg.opts =
        mysql_async::Opts::from_url(&format!("mysql://nobody@127.0.0.1:{}", db.port)).unwrap();
    let msg = ChangeStream::start(cfg, None)
        .await
        .err()
        .expect("must refuse")
        .to_string();
    assert!(msg.contains("REPLICATION SLAVE"), "{msg}");
}

#[tokio::test]
async fn compressed_binlog_events_and_column_filters() {
    let db = MariaDb::start_with(&["--log-bin-compress=ON", "--log-bin-compress-min-len=10"]);
    db.exec("CREATE DATABASE shop; CREATE TABLE shop.users (id INT PRIMARY KEY, name TEXT, password TEXT)")
        .await;
    let mut cfg = config(&db);
    cfg.filter =
        sluice_mysql::filter::TableFilter::new(&[], &[], &[], &["*.users.password".into()])
            .unwrap();
    let mut s = ChangeStream::start(cfg, None).await.unwrap();
    let long = "x".repeat(500);
    db.exec(&format!(
        "BEGIN; INSERT INTO shop.users VALUES (1, '{long}', 'secret'), (2, 'b', 'secret'); \
         UPDATE shop.users SET name = 'c' WHERE id = 2; DELETE FROM shop.users WHERE id = 1; COMMIT; \
         ALTER TABLE shop.users ADD COLUMN age INT DEFAULT 7 /* a comment long enough to compress */"
    ))
    .await;
    let c = read(&mut s, 5).await;
    let ops: Vec<Op> = c.iter().map(|c| c.op).collect();
    assert_eq!(
        ops,
        [Op::Create, Op::Create, Op::Update, Op::Delete, Op::Ddl]
    );
    assert_eq!(
        c[0].after.as_ref().unwrap(),
        json!({"id": 1, "name": long}).as_object().unwrap()
    );
    assert_eq!(
        c[2].after.as_ref().unwrap(),
        json!({"id": 2, "name": "c"}).as_object().unwrap()
    );
    assert!(c[3].transaction.as_ref().unwrap().last);
    assert!(c[4].ddl.as_deref().unwrap().contains("ADD COLUMN age"));
}

#[tokio::test]
async fn heartbeats_keep_an_idle_connection_alive() {
    let db = MariaDb::start();
    db.exec("CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY)")
        .await;
    let mut s = ChangeStream::start(config(&db), None).await.unwrap();
    // Idle for longer than the dead-connection limit (3 × 500 ms + 1 s).
    let idle = tokio::time::timeout(Duration::from_secs(4), s.next_batch()).await;
    if let Ok(b) = idle {
        assert!(b.unwrap().changes.is_empty());
    }
    db.exec("INSERT INTO d.t VALUES (1)").await;
    let c = read(&mut s, 1).await;
    assert_eq!(c[0].after.as_ref().unwrap()["id"], json!(1));
    assert_eq!(
        s.reconnects, 0,
        "heartbeats did not keep the connection alive"
    );
}

#[tokio::test]
async fn non_transactional_tables_each_statement_is_a_transaction() {
    let db = MariaDb::start();
    db.exec("CREATE DATABASE d; CREATE TABLE d.m (id INT PRIMARY KEY) ENGINE=MyISAM; CREATE TABLE d.a (id INT PRIMARY KEY) ENGINE=Aria")
        .await;
    let mut s = ChangeStream::start(config(&db), None).await.unwrap();
    db.exec("INSERT INTO d.m VALUES (1); INSERT INTO d.m VALUES (2), (3); INSERT INTO d.a VALUES (4); UPDATE d.m SET id = 5 WHERE id = 1")
        .await;
    let c = read(&mut s, 5).await;
    let got: Vec<(u64, bool)> = c
        .iter()
        .map(|c| {
            let t = c.transaction.as_ref().unwrap();
            (t.total_order, t.last)
        })
        .collect();
    assert_eq!(
        got,
        [(1, true), (1, false), (2, true), (1, true), (1, true)]
    );
    let end = s.position().clone();
    assert!(end.gtid.starts_with("0-1-"), "{end}");
}
