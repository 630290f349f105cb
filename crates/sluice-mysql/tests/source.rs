//! The `type: mysql` source in a pipeline context: snapshot followed by the
//! stream equals the final table contents while a writer runs; checkpoints
//! advance only on acknowledgement; a restart resumes at the acknowledged
//! transaction boundary (duplicates only of unacknowledged transactions).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use serde_json::{json, Value};
use sluice_core::checkpoint::Checkpoints;
use sluice_core::component::{BuildContext, Resources, SourceContext, SourceFactory};
use sluice_core::config::{ComponentOptions, QueueConfig};
use sluice_core::metrics::ComponentMetrics;
use sluice_core::queue::{BoundedQueue, SourceOutput};
use sluice_core::record::{Op, RowChange};
use sluice_mysql::{MysqlCheckpoint, MysqlSourceFactory};
use support::MariaDb;
use tokio_util::sync::CancellationToken;

struct Running {
    queue: Arc<BoundedQueue>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

fn start(options: Value, data_dir: &Path) -> Running {
    let opts = ComponentOptions::from_json(options);
    let cx = BuildContext {
        name: "db",
        data_dir,
        resources: &Resources::default(),
    };
    let source = MysqlSourceFactory.build(&cx, &opts).expect("build");
    let queue = BoundedQueue::new(QueueConfig::default());
    let metrics = ComponentMetrics::new("db", "source", "mysql");
    let stop = CancellationToken::new();
    let scx = SourceContext {
        name: "db".into(),
        output: SourceOutput::new("db".into(), queue.clone(), metrics.clone()),
        shutdown: stop.clone(),
        checkpoints: Checkpoints::new(data_dir, "db"),
        checkpoint_interval: Duration::from_millis(50),
        metrics,
        data_dir: data_dir.to_path_buf(),
        resources: Resources::default(),
    };
    let task = tokio::spawn(source.run(scx));
    Running { queue, stop, task }
}

/// Pops batches until `until` says stop, acknowledging each when `ack`.
async fn collect(
    r: &Running,
    mut until: impl FnMut(&[RowChange]) -> bool,
    mut ack: impl FnMut(&RowChange) -> bool,
) -> Vec<RowChange> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !until(&out) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {} changes",
            out.len()
        );
        let Ok(Some(b)) = r.queue.pop_timeout(Duration::from_millis(200)).await else {
            assert!(!r.task.is_finished(), "the source stopped");
            continue;
        };
        let keep = b.records.iter().all(|rec| ack(rec.row().unwrap()));
        out.extend(b.records.iter().map(|rec| rec.row().unwrap().clone()));
        if keep {
            b.ack.ack();
        } else {
            b.ack.fail();
        }
    }
    out
}

async fn stop(r: Running) {
    r.stop.cancel();
    r.queue.abandon();
    tokio::time::timeout(Duration::from_secs(30), r.task)
        .await
        .expect("source stops")
        .unwrap()
        .unwrap();
}

fn key(c: &RowChange) -> (String, i64) {
    let img = c.after.as_ref().or(c.before.as_ref()).unwrap();
    (c.source.table.clone(), img["id"].as_i64().unwrap())
}

type Tables = BTreeMap<(String, i64), serde_json::Map<String, Value>>;

fn apply(state: &mut Tables, changes: &[RowChange]) {
    for c in changes {
        match c.op {
            Op::Read | Op::Create | Op::Update => {
                if let (Op::Update, Some(b)) = (c.op, &c.before) {
                    state.remove(&(c.source.table.clone(), b["id"].as_i64().unwrap()));
                }
                state.insert(key(c), c.after.clone().unwrap());
            }
            Op::Delete => {
                state.remove(&key(c));
            }
            Op::Ddl => {}
        }
    }
}

async fn contents(db: &MariaDb, tables: &[&str]) -> Tables {
    let mut conn = db.conn().await;
    let mut out = Tables::new();
    for t in tables {
        let rows: Vec<(i64, i64, String)> = conn
            .query(format!("SELECT id, v, s FROM d.{t}"))
            .await
            .unwrap();
        for (id, v, s) in rows {
            let row = json!({"id": id, "v": v, "s": s});
            out.insert((t.to_string(), id), row.as_object().unwrap().clone());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_of_3_tables_in_parallel_then_stream_equals_final_contents_while_writing() {
    let db = MariaDb::start();
    let tables = ["a", "b", "c"];
    db.exec("CREATE DATABASE d").await;
    for t in tables {
        db.exec(&format!(
            "CREATE TABLE d.{t} (id INT PRIMARY KEY, v INT NOT NULL, s VARCHAR(20) NOT NULL); \
             INSERT INTO d.{t} SELECT seq, seq, CONCAT('s', seq) FROM d.seq_1_to_100000"
        ))
        .await;
    }
    db.exec("CREATE TABLE d.skipped (id INT PRIMARY KEY); INSERT INTO d.skipped VALUES (1)")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let opts = json!({
        "url": db.url(), "server_id": 99, "include_tables": ["d.*"], "exclude_tables": ["d.skipped"],
        "snapshot": "initial", "snapshot_chunk_rows": 5000, "snapshot_parallelism": 3, "heartbeat_ms": 500
    });
    let r = start(opts.clone(), dir.path());
    // A writer changes every table while the snapshot runs.
    let url = db.url();
    let writer = tokio::spawn(async move {
        let mut c = mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap())
            .await
            .unwrap();
        for i in 0..300i64 {
            let t = ["a", "b", "c"][i as usize % 3];
            c.query_drop(format!(
                "INSERT INTO d.{t} VALUES ({}, 1, 'new'); UPDATE d.{t} SET v = v + 1, s = 'upd' WHERE id = {}; \
                 DELETE FROM d.{t} WHERE id = {}; UPDATE d.{t} SET id = {} WHERE id = {}",
                1_000_000 + i,
                i * 7 + 1,
                i * 11 + 2,
                2_000_000 + i,
                i * 13 + 3
            ))
            .await
            .unwrap();
            c.query_drop("INSERT INTO d.skipped VALUES (1) ON DUPLICATE KEY UPDATE id = 1")
                .await
                .unwrap();
        }
    });
    let mut state = Tables::new();
    let mut got = Vec::new();
    let want_rows = 300_000;
    got.extend(
        collect(
            &r,
            |o| o.iter().filter(|c| c.op == Op::Read).count() >= want_rows,
            |_| true,
        )
        .await,
    );
    writer.await.unwrap();
    let last_gtid = {
        let mut c = db.conn().await;
        c.query_first::<String, _>("SELECT @@gtid_binlog_pos")
            .await
            .unwrap()
            .unwrap()
    };
    got.extend(
        collect(
            &r,
            |o| {
                o.last().is_some_and(|c| {
                    c.op != Op::Read && c.source.gtid.as_deref() == Some(last_gtid.as_str())
                })
            },
            |_| true,
        )
        .await,
    );
    assert!(got.iter().all(|c| c.source.table != "skipped"));
    assert!(got.iter().any(|c| c.op == Op::Create && !c.source.snapshot));
    apply(&mut state, &got);
    assert_eq!(state, contents(&db, &tables).await);
    stop(r).await;
    let cp: MysqlCheckpoint = Checkpoints::new(dir.path(), "db").load().unwrap().unwrap();
    assert!(cp.snapshot_done);
    assert_eq!(cp.position.gtid, last_gtid);
    // A restart resumes from the checkpoint: no second snapshot.
    let r = start(opts, dir.path());
    db.exec("INSERT INTO d.a VALUES (999999, 9, 'after')").await;
    let more = collect(&r, |o| !o.is_empty(), |_| true).await;
    assert_eq!(more.len(), 1);
    assert_eq!(more[0].op, Op::Create);
    stop(r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_at_the_acknowledged_boundary() {
    let db = MariaDb::start();
    db.exec("CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v INT NOT NULL, s VARCHAR(20) NOT NULL)").await;
    let dir = tempfile::tempdir().unwrap();
    let opts = json!({"url": db.url(), "server_id": 98, "snapshot": "never", "batch_rows": 500});
    let r = start(opts.clone(), dir.path());
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Small transactions, then a large one, then small ones again.
    db.exec(
        "INSERT INTO d.t VALUES (1, 1, 'x'); INSERT INTO d.t VALUES (2, 1, 'x'); \
         INSERT INTO d.t SELECT seq, seq, 'big' FROM d.seq_10_to_5009; INSERT INTO d.t VALUES (6000, 1, 'x')",
    )
    .await;
    // Acknowledge everything up to the middle of the large transaction,
    // then fail the rest, as a crash would leave it.
    let first = collect(
        &r,
        |o| o.len() >= 5003,
        |c| c.after.as_ref().unwrap()["id"].as_i64().unwrap() < 2000,
    )
    .await;
    stop(r).await;
    let cp: MysqlCheckpoint = Checkpoints::new(dir.path(), "db").load().unwrap().unwrap();
    let r = start(opts, dir.path());
    let second = collect(&r, |o| o.last().is_some_and(|c| key(c).1 == 6000), |_| true).await;
    stop(r).await;
    // The resume starts at the large transaction: rows 1 and 2 are not
    // repeated, the large one is repeated whole, nothing is missing.
    let ids: Vec<i64> = second.iter().map(|c| key(c).1).collect();
    let mut want: Vec<i64> = (10..=5009).collect();
    want.push(6000);
    assert_eq!(ids, want, "checkpoint was {cp:?}");
    let mut union: Vec<i64> = first.iter().chain(&second).map(|c| key(c).1).collect();
    union.sort();
    union.dedup();
    assert_eq!(union.len(), 5003);
}

async fn purge_all_but_current(db: &MariaDb) {
    let mut c = db.conn().await;
    let ids: Vec<u64> = c
        .query("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'")
        .await
        .unwrap();
    for id in ids {
        let _ = c.query_drop(format!("KILL {id}")).await;
    }
    c.query_drop("FLUSH BINARY LOGS").await.unwrap();
    for _ in 0..50 {
        let row: mysql_async::Row = c.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
        let file: String = row.get(0).unwrap();
        c.query_drop(format!("PURGE BINARY LOGS TO '{file}'"))
            .await
            .unwrap();
        let left: Vec<mysql_async::Row> = c.query("SHOW BINARY LOGS").await.unwrap();
        if left.len() == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("PURGE BINARY LOGS left older files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_checkpoint_fails_or_resnapshots_when_needed() {
    let db = MariaDb::start();
    db.exec(
        "CREATE DATABASE d; CREATE TABLE d.a (id INT PRIMARY KEY, v INT NOT NULL, s VARCHAR(20) NOT NULL); \
         INSERT INTO d.a VALUES (1, 1, 'one')",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let opts = |mode: &str| json!({"url": db.url(), "server_id": 97, "snapshot": mode, "heartbeat_ms": 500});
    let r = start(opts("initial"), dir.path());
    collect(&r, |o| !o.is_empty(), |_| true).await;
    stop(r).await;
    db.exec("INSERT INTO d.a VALUES (2, 2, 'two'); INSERT INTO d.a VALUES (3, 3, 'three')")
        .await;
    purge_all_but_current(&db).await;
    // `initial`: the checkpoint's binlog is gone, the source stops and says where.
    let cp: MysqlCheckpoint = Checkpoints::new(dir.path(), "db").load().unwrap().unwrap();
    let r = start(opts("initial"), dir.path());
    let err = tokio::time::timeout(Duration::from_secs(30), r.task)
        .await
        .expect("the source stops")
        .unwrap()
        .expect_err("a purged checkpoint is an error");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("purged") && msg.contains(&cp.position.to_string()),
        "{msg}"
    );
    // `when_needed`: a new snapshot, then the stream.
    let r = start(opts("when_needed"), dir.path());
    let got = collect(&r, |o| o.len() >= 3, |_| true).await;
    assert!(got.iter().all(|c| c.op == Op::Read));
    db.exec("INSERT INTO d.a VALUES (4, 4, 'four')").await;
    let more = collect(&r, |o| !o.is_empty(), |_| true).await;
    assert_eq!((more[0].op, key(&more[0]).1), (Op::Create, 4));
    stop(r).await;
    let mut state = Tables::new();
    apply(&mut state, &got);
    apply(&mut state, &more);
    assert_eq!(state, contents(&db, &["a"]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_snapshot_continues_after_the_last_acknowledged_chunk() {
    let db = MariaDb::start();
    db.exec("CREATE DATABASE d").await;
    for t in ["a", "b"] {
        db.exec(&format!(
            "CREATE TABLE d.{t} (id INT PRIMARY KEY, v INT NOT NULL, s VARCHAR(20) NOT NULL); \
             INSERT INTO d.{t} SELECT seq, seq, 'x' FROM d.seq_1_to_20000"
        ))
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let opts = json!({"url": db.url(), "server_id": 96, "snapshot": "initial", "snapshot_chunk_rows": 1000});
    let r = start(opts.clone(), dir.path());
    // Acknowledge table a and half of b, then "crash".
    let first = collect(
        &r,
        |o| o.len() >= 30_000,
        |c| c.source.table == "a" || key(c).1 <= 10_000,
    )
    .await;
    stop(r).await;
    let cp: MysqlCheckpoint = Checkpoints::new(dir.path(), "db").load().unwrap().unwrap();
    assert!(!cp.snapshot_done);
    let progress = cp.snapshot.clone().expect("snapshot progress");
    assert_eq!(progress.done, vec!["d.a".to_string()]);
    assert_eq!(progress.in_progress.keys().collect::<Vec<_>>(), ["d.b"]);
    // Changes while the source is down.
    db.exec("UPDATE d.a SET v = -1 WHERE id = 5; DELETE FROM d.b WHERE id = 15000; INSERT INTO d.b VALUES (30000, 1, 'new')")
        .await;
    let r = start(opts, dir.path());
    let second = collect(
        &r,
        |o| o.iter().any(|c| c.op == Op::Create && key(c).1 == 30_000),
        |_| true,
    )
    .await;
    stop(r).await;
    // Nothing of table a is read again; b continues after row 10000.
    let reread: Vec<&RowChange> = second.iter().filter(|c| c.op == Op::Read).collect();
    assert!(reread
        .iter()
        .all(|c| c.source.table == "b" && key(c).1 > 10_000));
    // 10001..=20000 without the deleted 15000, plus the new 30000 (which the
    // stream from the original position then replays as an insert).
    assert_eq!(reread.len(), 10_000);
    let mut state = Tables::new();
    apply(&mut state, &first);
    apply(&mut state, &second);
    assert_eq!(state, contents(&db, &["a", "b"]).await);
    let cp: MysqlCheckpoint = Checkpoints::new(dir.path(), "db").load().unwrap().unwrap();
    assert!(cp.snapshot_done && cp.snapshot.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_filters_apply_to_snapshot_and_stream() {
    let db = MariaDb::start();
    db.exec(
        "CREATE DATABASE d; CREATE TABLE d.users (id INT PRIMARY KEY, name TEXT, password TEXT); \
         CREATE TABLE d.nokey (name TEXT, password TEXT); \
         INSERT INTO d.users VALUES (1, 'a', 'secret'); INSERT INTO d.nokey VALUES ('n', 'secret')",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let opts = json!({"url": db.url(), "server_id": 95, "exclude_columns": ["*.password"]});
    let r = start(opts, dir.path());
    let mut got = collect(&r, |o| o.len() >= 2, |_| true).await;
    db.exec("INSERT INTO d.users VALUES (2, 'b', 'secret')")
        .await;
    got.extend(collect(&r, |o| !o.is_empty(), |_| true).await);
    stop(r).await;
    assert_eq!(got.len(), 3);
    for c in &got {
        let after = c.after.as_ref().unwrap();
        assert!(after.get("password").is_none(), "{c:?}");
        assert!(after.contains_key("name"));
    }
    assert_eq!(got[2].op, Op::Create);
}
