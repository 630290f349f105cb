//! XA transactions against a throwaway MariaDB: rows of a prepared XA
//! transaction are emitted at its XA COMMIT (in commit order, with the
//! commit's GTID), never after XA ROLLBACK; XA COMMIT ONE PHASE is an
//! ordinary transaction; a restart while one is prepared reads its rows
//! again and does not repeat what was delivered. A prepared transaction
//! larger than `xa_memory_rows` spills to a temporary file, is released in
//! batches of at most `max_batch_rows` (also across a KILL of the binlog
//! connection, and across a decoder rewind in the middle of the release)
//! and leaves no file behind at XA ROLLBACK.

mod support;

use std::time::Duration;

use mysql_async::prelude::Queryable;
use sluice_core::record::RowChange;
use sluice_mysql::{ChangeBatch, ChangeStream, StreamConfig};
use support::MariaDb;

fn config(db: &MariaDb) -> StreamConfig {
    let mut cfg = StreamConfig::new(mysql_async::Opts::from_url(&db.url()).unwrap(), 4343);
    cfg.heartbeat = Duration::from_millis(500);
    cfg.max_reconnects = Some(5);
    cfg
}

fn id(c: &RowChange) -> i64 {
    c.after.as_ref().unwrap()["id"].as_i64().unwrap()
}

/// Reads batches until one holds a change with id `until`; returns the
/// changes and the last batch.
async fn read_until(s: &mut ChangeStream, until: i64) -> (Vec<RowChange>, ChangeBatch) {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let b = tokio::time::timeout_at(deadline, s.next_batch())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for id {until}: {out:#?}"))
            .unwrap();
        out.extend(b.changes.iter().cloned());
        if b.changes.iter().any(|c| id(c) == until) {
            return (out, b);
        }
    }
}

#[tokio::test]
async fn prepared_xa_rows_are_emitted_at_commit_and_dropped_at_rollback() {
    let db = MariaDb::start();
    db.exec("CREATE DATABASE x; CREATE TABLE x.t (id INT PRIMARY KEY, v INT)")
        .await;
    let mut s = ChangeStream::start(config(&db), None).await.unwrap();
    let mut a = db.conn().await;
    let mut other = db.conn().await;
    a.query_drop("XA START 'a'; INSERT INTO x.t VALUES (1, 1), (2, 2); XA END 'a'; XA PREPARE 'a'")
        .await
        .unwrap();
    // Committed while 'a' is prepared: comes first.
    other
        .query_drop("INSERT INTO x.t VALUES (3, 3)")
        .await
        .unwrap();
    a.query_drop("XA COMMIT 'a'").await.unwrap();
    a.query_drop("XA START 'b'; INSERT INTO x.t VALUES (4, 4); XA END 'b'; XA PREPARE 'b'")
        .await
        .unwrap();
    a.query_drop("XA ROLLBACK 'b'").await.unwrap();
    a.query_drop(
        "XA START 'c'; INSERT INTO x.t VALUES (5, 5); XA END 'c'; XA COMMIT 'c' ONE PHASE",
    )
    .await
    .unwrap();
    // Rolled back without PREPARE: never in the binlog.
    a.query_drop("XA START 'd'; INSERT INTO x.t VALUES (6, 6); XA END 'd'; XA ROLLBACK 'd'")
        .await
        .unwrap();
    other
        .query_drop("INSERT INTO x.t VALUES (9, 9)")
        .await
        .unwrap();
    let (c, _) = read_until(&mut s, 9).await;
    let ids: Vec<i64> = c.iter().map(id).collect();
    assert_eq!(ids, [3, 1, 2, 5, 9], "{c:#?}");
    let rows: Vec<(i64, i64)> = other
        .query("SELECT id, v FROM x.t ORDER BY id")
        .await
        .unwrap();
    let mut emitted: Vec<i64> = ids.clone();
    emitted.sort();
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), emitted);
    // 'a' is one transaction, the commit's: its GTID, id, last marker.
    let commit_gtid = c[1].source.gtid.clone().unwrap();
    for x in &c[1..3] {
        let t = x.transaction.as_ref().unwrap();
        assert_eq!(t.id, commit_gtid);
        assert_eq!(x.source.gtid.as_deref(), Some(commit_gtid.as_str()));
    }
    let seq = |g: &str| g.rsplit('-').next().unwrap().parse::<u64>().unwrap();
    assert!(seq(&commit_gtid) > seq(c[0].source.gtid.as_deref().unwrap()));
    let last: Vec<bool> = c
        .iter()
        .map(|x| x.transaction.as_ref().unwrap().last)
        .collect();
    assert_eq!(last, [true, false, true, true, true]);
    assert_eq!(c[1].transaction.as_ref().unwrap().total_order, 1);
    assert_eq!(c[2].transaction.as_ref().unwrap().total_order, 2);
}

#[tokio::test]
async fn restart_while_xa_prepared_rereads_it_without_repeating_delivered_rows() {
    let db = MariaDb::start();
    db.exec("CREATE DATABASE x; CREATE TABLE x.t (id INT PRIMARY KEY, v INT)")
        .await;
    let mut s = ChangeStream::start(config(&db), None).await.unwrap();
    let mut a = db.conn().await;
    let mut other = db.conn().await;
    other
        .query_drop("INSERT INTO x.t VALUES (1, 1)")
        .await
        .unwrap();
    a.query_drop("XA START 'p'; INSERT INTO x.t VALUES (10, 10); XA END 'p'; XA PREPARE 'p'")
        .await
        .unwrap();
    other
        .query_drop("INSERT INTO x.t VALUES (11, 11)")
        .await
        .unwrap();
    let (c, b) = read_until(&mut s, 11).await;
    assert_eq!(c.iter().map(id).collect::<Vec<_>>(), [1, 11]);
    // The checkpoint: before 'p''s PREPARE, with everything up to 11
    // delivered.
    let replay = b.replay_to.clone().expect("replay_to while 'p' is held");
    assert!(b.position.gtid != replay.gtid, "{b:?}");
    drop(s);
    a.query_drop("XA COMMIT 'p'").await.unwrap();
    other
        .query_drop("INSERT INTO x.t VALUES (12, 12)")
        .await
        .unwrap();
    let mut s = ChangeStream::start_replaying(config(&db), Some(b.position), Some(replay))
        .await
        .unwrap();
    let (c, b) = read_until(&mut s, 12).await;
    assert_eq!(c.iter().map(id).collect::<Vec<_>>(), [10, 12], "{c:#?}");
    assert_eq!(b.replay_to, None);
    // After the replay the position is an ordinary boundary.
    let mut s = ChangeStream::start(config(&db), Some(s.position().clone()))
        .await
        .unwrap();
    other
        .query_drop("INSERT INTO x.t VALUES (13, 13)")
        .await
        .unwrap();
    let (c, _) = read_until(&mut s, 13).await;
    assert_eq!(c.iter().map(id).collect::<Vec<_>>(), [13]);
}

#[tokio::test]
async fn xa_commit_whose_prepare_was_not_read_stops_the_stream() {
    let db = MariaDb::start();
    db.exec("CREATE DATABASE x; CREATE TABLE x.t (id INT PRIMARY KEY, v INT)")
        .await;
    let mut a = db.conn().await;
    a.query_drop("XA START 'q'; INSERT INTO x.t VALUES (20, 20); XA END 'q'; XA PREPARE 'q'")
        .await
        .unwrap();
    // The stream starts after the PREPARE: the rows are behind it.
    let mut s = ChangeStream::start(config(&db), None).await.unwrap();
    a.query_drop("XA COMMIT 'q'").await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Err(e) = s.next_batch().await {
                return e;
            }
        }
    })
    .await
    .expect("the stream stops");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("XA COMMIT X'71',X'',1") && msg.contains("before the position"),
        "{msg}"
    );
}

#[tokio::test]
async fn reconnect_while_xa_prepared_neither_loses_nor_repeats() {
    let db = MariaDb::start();
    db.exec("CREATE DATABASE x; CREATE TABLE x.t (id INT PRIMARY KEY, v INT)")
        .await;
    let mut cfg = config(&db);
    cfg.reconnect_min = Duration::from_millis(50);
    let mut s = ChangeStream::start(cfg, None).await.unwrap();
    let mut a = db.conn().await;
    let mut other = db.conn().await;
    a.query_drop(
        "XA START 'r'; INSERT INTO x.t VALUES (30, 30), (31, 31); XA END 'r'; XA PREPARE 'r'",
    )
    .await
    .unwrap();
    other
        .query_drop("INSERT INTO x.t VALUES (32, 32)")
        .await
        .unwrap();
    let (c, _) = read_until(&mut s, 32).await;
    assert_eq!(c.iter().map(id).collect::<Vec<_>>(), [32]);
    // The server drops the replica connection while 'r' is held.
    let dumps: Vec<u64> = other
        .query("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'")
        .await
        .unwrap();
    assert!(!dumps.is_empty());
    for d in dumps {
        let _ = other.query_drop(format!("KILL {d}")).await;
    }
    other
        .query_drop("INSERT INTO x.t VALUES (33, 33)")
        .await
        .unwrap();
    a.query_drop("XA COMMIT 'r'").await.unwrap();
    other
        .query_drop("INSERT INTO x.t VALUES (34, 34)")
        .await
        .unwrap();
    let (c, b) = read_until(&mut s, 34).await;
    assert!(s.reconnects >= 1, "the stream did not notice the KILL");
    assert_eq!(
        c.iter().map(id).collect::<Vec<_>>(),
        [33, 30, 31, 34],
        "{c:#?}"
    );
    assert_eq!(b.replay_to, None);
}

/// Open files of this process inside `dir` (unnamed spill files included).
fn open_files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.starts_with(dir))
        .count()
}

fn spill_config(db: &MariaDb, dir: &tempfile::TempDir) -> StreamConfig {
    let mut cfg = config(db);
    cfg.reconnect_min = Duration::from_millis(50);
    cfg.xa_memory_rows = 50;
    cfg.xa_spill_dir = Some(dir.path().to_path_buf());
    cfg.max_batch_rows = 500;
    cfg
}

/// Prepares XA `xid` with rows `1..=n` (one multi-row INSERT per 1000).
async fn prepare_big(a: &mut mysql_async::Conn, xid: &str, n: i64) {
    a.query_drop(format!("XA START '{xid}'")).await.unwrap();
    for chunk in (1..=n).collect::<Vec<_>>().chunks(1000) {
        let values: Vec<String> = chunk.iter().map(|i| format!("({i}, {i})")).collect();
        a.query_drop(format!("INSERT INTO x.t VALUES {}", values.join(",")))
            .await
            .unwrap();
    }
    a.query_drop(format!("XA END '{xid}'; XA PREPARE '{xid}'"))
        .await
        .unwrap();
}

/// Reads until id `until`, checking every batch against the spill limits;
/// returns the changes.
async fn read_checked(s: &mut ChangeStream, until: i64, held_at: &str) -> Vec<RowChange> {
    let mut out: Vec<RowChange> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let b = tokio::time::timeout_at(deadline, s.next_batch())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for id {until}"))
            .unwrap();
        assert!(b.changes.len() <= 500, "batch of {}", b.changes.len());
        assert!(
            s.held_xa_records() <= 50,
            "{} in memory",
            s.held_xa_records()
        );
        let releasing = b
            .changes
            .last()
            .is_some_and(|c| (1..=5000).contains(&id(c)) && !c.transaction.as_ref().unwrap().last);
        if releasing {
            // Mid-release: not a boundary, the checkpoint before the PREPARE.
            assert!(!b.at_boundary);
            assert_eq!(b.position.gtid, held_at);
            assert!(b.replay_to.is_some());
        }
        out.extend(b.changes);
        if out.last().is_some_and(|c| id(c) == until) {
            return out;
        }
    }
}

fn check_big_release(c: &[RowChange], n: i64) {
    let big: Vec<&RowChange> = c.iter().filter(|x| (1..=n).contains(&id(x))).collect();
    assert_eq!(
        big.iter().map(|x| id(x)).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );
    let gtid = big[0].source.gtid.clone().unwrap();
    for (i, x) in big.iter().enumerate() {
        let t = x.transaction.as_ref().unwrap();
        assert_eq!(
            (t.id.as_str(), t.total_order),
            (gtid.as_str(), i as u64 + 1)
        );
        assert_eq!(t.last, i as i64 + 1 == n, "row {}", i + 1);
        assert_eq!(x.source.gtid.as_deref(), Some(gtid.as_str()));
    }
}

#[tokio::test]
async fn prepared_xa_larger_than_memory_spills_and_is_released_in_batches() {
    let db = MariaDb::start();
    db.exec("CREATE DATABASE x; CREATE TABLE x.t (id INT PRIMARY KEY, v INT)")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = ChangeStream::start(spill_config(&db, &dir), None)
        .await
        .unwrap();
    let held_at = s.position().gtid.clone();
    let mut a = db.conn().await;
    let mut other = db.conn().await;
    prepare_big(&mut a, "big", 5000).await;
    other
        .query_drop("INSERT INTO x.t VALUES (9001, 0)")
        .await
        .unwrap();
    let (c, _) = read_until(&mut s, 9001).await;
    assert_eq!(c.iter().map(id).collect::<Vec<_>>(), [9001]);
    assert_eq!((s.held_xa_records(), s.spilled_xa_records()), (50, 4950));
    assert_eq!(open_files_in(dir.path()), 1);
    a.query_drop("XA COMMIT 'big'").await.unwrap();
    other
        .query_drop("INSERT INTO x.t VALUES (9002, 0)")
        .await
        .unwrap();
    let c = read_checked(&mut s, 9002, &held_at).await;
    assert_eq!(c.len(), 5001);
    check_big_release(&c, 5000);
    assert_eq!((s.held_xa_records(), s.spilled_xa_records()), (0, 0));
    assert_eq!(open_files_in(dir.path()), 0);
}

#[tokio::test]
async fn kill_in_the_middle_of_a_spilled_release_neither_loses_nor_repeats() {
    let db = MariaDb::start();
    db.exec("CREATE DATABASE x; CREATE TABLE x.t (id INT PRIMARY KEY, v INT)")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = ChangeStream::start(spill_config(&db, &dir), None)
        .await
        .unwrap();
    let held_at = s.position().gtid.clone();
    let mut a = db.conn().await;
    let mut other = db.conn().await;
    prepare_big(&mut a, "big", 5000).await;
    a.query_drop("XA COMMIT 'big'").await.unwrap();
    other
        .query_drop("INSERT INTO x.t VALUES (9001, 0)")
        .await
        .unwrap();
    // The first part of the release.
    let mut c: Vec<RowChange> = Vec::new();
    while c.len() < 1000 {
        let b = s.next_batch().await.unwrap();
        assert!(b.changes.len() <= 500);
        c.extend(b.changes);
    }
    assert!(!c.last().unwrap().transaction.as_ref().unwrap().last);
    let dumps: Vec<u64> = other
        .query("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'")
        .await
        .unwrap();
    assert!(!dumps.is_empty());
    for d in dumps {
        let _ = other.query_drop(format!("KILL {d}")).await;
    }
    other
        .query_drop("INSERT INTO x.t VALUES (9002, 0)")
        .await
        .unwrap();
    // The connection is not read during the release: the stream hands out
    // the rest, then notices the KILL at the boundary and reconnects (a
    // rewind inside the release is the next test).
    c.extend(read_checked(&mut s, 9002, &held_at).await);
    assert!(s.reconnects >= 1, "the stream did not notice the KILL");
    assert_eq!(c.len(), 5002, "every row exactly once");
    check_big_release(&c, 5000);
    assert_eq!(id(&c[5000]), 9001);
    assert_eq!(open_files_in(dir.path()), 0);
}

#[tokio::test]
async fn rewind_in_the_middle_of_a_spilled_release_neither_loses_nor_repeats() {
    use sluice_mysql::decoder::Decoder;
    use sluice_mysql::spill::SpillConfig;
    let db = MariaDb::start();
    db.exec("CREATE DATABASE x; CREATE TABLE x.t (id INT PRIMARY KEY, v INT)")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let opts = mysql_async::Opts::from_url(&db.url()).unwrap();
    let mut a = db.conn().await;
    let start = sluice_mysql::connect::current_position(&mut a, true)
        .await
        .unwrap();
    let mut d = Decoder::new(
        "mysql",
        Default::default(),
        sluice_mysql::infoschema::InfoSchema::new(opts.clone()),
        start,
    )
    .unwrap();
    d.set_spill(SpillConfig {
        memory_rows: 50,
        dir: Some(dir.path().to_path_buf()),
    });
    prepare_big(&mut a, "k", 2000).await;
    db.exec("INSERT INTO x.t VALUES (9001, 0)").await;
    a.query_drop("XA COMMIT 'k'").await.unwrap();
    db.exec("INSERT INTO x.t VALUES (9002, 0)").await;
    let mut out: Vec<RowChange> = Vec::new();
    // Twice 300 rows of the release, then a rewind and a new connection.
    for round in 0..2 {
        let mut binlog = sluice_mysql::connect::binlog_stream(
            &opts,
            4343,
            Duration::from_millis(500),
            d.committed(),
            true,
        )
        .await
        .unwrap();
        let mut chunks = 0;
        loop {
            if d.releasing() {
                if round == 0 && chunks == 2 {
                    break;
                }
                d.release_more(300).unwrap();
                chunks += 1;
                assert!(d.held_xa_records() <= 50);
                let got = d.take();
                assert!(got.len() <= 300);
                out.extend(got);
                continue;
            }
            if out.last().is_some_and(|c| id(c) == 9002) {
                break;
            }
            let ev = tokio::time::timeout(
                Duration::from_secs(20),
                futures::StreamExt::next(&mut binlog),
            )
            .await
            .expect("an event")
            .expect("the stream goes on")
            .unwrap();
            d.handle(&ev).await.unwrap();
            assert!(d.held_xa_records() <= 50);
            out.extend(d.take());
        }
        if round == 0 {
            assert_eq!(out.len(), 1 + 600);
            d.rewind();
            // The held rows are read again from the PREPARE.
            assert_eq!((d.held_xa_records(), d.spilled_xa_records()), (0, 0));
        }
    }
    assert_eq!(id(&out[0]), 9001);
    assert_eq!(id(out.last().unwrap()), 9002);
    assert_eq!(out.len(), 2002, "every row exactly once");
    check_big_release(&out, 2000);
    assert_eq!(open_files_in(dir.path()), 0);
}

#[tokio::test]
async fn rollback_of_a_spilled_xa_leaves_nothing() {
    let db = MariaDb::start();
    db.exec("CREATE DATABASE x; CREATE TABLE x.t (id INT PRIMARY KEY, v INT)")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = ChangeStream::start(spill_config(&db, &dir), None)
        .await
        .unwrap();
    let mut a = db.conn().await;
    let mut other = db.conn().await;
    prepare_big(&mut a, "rb", 500).await;
    other
        .query_drop("INSERT INTO x.t VALUES (9001, 0)")
        .await
        .unwrap();
    read_until(&mut s, 9001).await;
    assert_eq!((s.held_xa_records(), s.spilled_xa_records()), (50, 450));
    assert_eq!(open_files_in(dir.path()), 1);
    a.query_drop("XA ROLLBACK 'rb'").await.unwrap();
    other
        .query_drop("INSERT INTO x.t VALUES (9002, 0)")
        .await
        .unwrap();
    let (c, b) = read_until(&mut s, 9002).await;
    assert_eq!(c.iter().map(id).collect::<Vec<_>>(), [9002]);
    assert_eq!(b.replay_to, None);
    assert_eq!((s.held_xa_records(), s.spilled_xa_records()), (0, 0));
    assert_eq!(open_files_in(dir.path()), 0);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
