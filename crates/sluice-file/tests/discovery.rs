//! Finding and following files through a real pipeline: 1,000 files at
//! once, globs over directories created later, event-driven delivery,
//! forced polling, compressed rotations, `max_open_files`, `ignore_older`.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_files_appended_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let glob = format!("{}/*.log", dir.path().display());
    let mut run = start(&dir.path().join("data"), opts(&glob));
    tokio::time::sleep(Duration::from_millis(200)).await;
    for f in 0..1000 {
        append(
            &dir.path().join(format!("f{f}.log")),
            seq(&format!("f{f}"), 0..100),
        );
    }
    assert!(
        wait_until(30, || run.got.len() >= 100_000).await,
        "{}",
        run.got.len()
    );
    run.stop().await.unwrap();
    let got = run.got.all();
    assert_eq!(got.len(), 100_000);
    // Every file complete and in order.
    let mut last: std::collections::HashMap<String, u64> = Default::default();
    for g in &got {
        if let Some(prev) = last.insert(g.path.clone(), g.offset) {
            assert!(g.offset > prev, "{} out of order", g.path);
        }
    }
    assert_eq!(last.len(), 1000);
    for f in [0, 499, 999] {
        assert_exactly_once(&run.got, &format!("f{f}"), 0..100);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_glob_matches_directories_created_later_without_waiting_for_a_rescan() {
    let dir = tempfile::tempdir().unwrap();
    let glob = format!("{}/**/*.log", dir.path().display());
    let mut o = opts(&glob);
    o["glob_interval_ms"] = 600_000.into();
    let mut run = start(&dir.path().join("data"), o);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let deep = dir.path().join("a/b/c");
    std::fs::create_dir_all(&deep).unwrap();
    // The rescan is 10 minutes away: arriving within the 5 s wait means the
    // new directories were found through their events.
    append(&deep.join("x.log"), seq("x", 0..10));
    assert!(wait_until(5, || run.got.len() >= 10).await);
    // Each later append is read on its own event too (latency figures are
    // the benchmark's business, not a test's).
    for i in 10..30 {
        append(&deep.join("x.log"), seq("x", i..i + 1));
        assert!(wait_until(5, || run.got.len() > i).await);
    }
    run.stop().await.unwrap();
    assert_exactly_once(&run.got, "x", 0..30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_polling_follows_files_and_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, seq("l", 0..100));
    let mut o = opts(log.to_str().unwrap());
    o["poll"] = true.into();
    o["poll_interval_ms"] = 50.into();
    let mut run = start(&dir.path().join("data"), o);
    assert!(wait_until(10, || run.got.len() >= 100).await);
    append(&log, seq("l", 100..200));
    assert!(wait_until(10, || run.got.len() >= 200).await);
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    append(&log, seq("l", 200..300));
    assert!(wait_until(10, || has_all(&run.got, "l", 0..300)).await);
    run.stop().await.unwrap();
    assert_exactly_once(&run.got, "l", 0..300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_rotations_and_excluded_files_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    append(&dir.path().join("app.log"), seq("keep", 0..10));
    append(&dir.path().join("app.log.1.gz"), seq("gz", 0..10));
    append(&dir.path().join("app.log.2.zst"), seq("zst", 0..10));
    append(&dir.path().join("debug.log"), seq("debug", 0..10));
    let glob = format!("{}/*", dir.path().display());
    let mut o = opts(&glob);
    o["exclude"] = serde_json::json!([format!("{}/debug.*", dir.path().display())]);
    let mut run = start(&dir.path().join("data"), o);
    assert!(wait_until(10, || run.got.len() >= 10).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    run.stop().await.unwrap();
    assert_eq!(run.got.len(), 10);
    assert_exactly_once(&run.got, "keep", 0..10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_files_than_max_open_files_are_all_read() {
    let dir = tempfile::tempdir().unwrap();
    for f in 0..50 {
        append(
            &dir.path().join(format!("f{f}.log")),
            seq(&format!("f{f}"), 0..20),
        );
    }
    let glob = format!("{}/*.log", dir.path().display());
    let mut o = opts(&glob);
    o["max_open_files"] = 8.into();
    o["idle_close_secs"] = 1.into();
    let mut run = start(&dir.path().join("data"), o);
    // Files beyond the limit are picked up as others close.
    assert!(
        wait_until(20, || run.got.len() >= 1000).await,
        "{}",
        run.got.len()
    );
    for f in 0..50 {
        append(
            &dir.path().join(format!("f{f}.log")),
            seq(&format!("f{f}"), 20..30),
        );
    }
    assert!(
        wait_until(20, || run.got.len() >= 1500).await,
        "{}",
        run.got.len()
    );
    run.stop().await.unwrap();
    for f in 0..50 {
        assert_exactly_once(&run.got, &format!("f{f}"), 0..30);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_older_skips_stale_files() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.log");
    append(&old, seq("old", 0..10));
    let past = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .append(true)
        .open(&old)
        .unwrap()
        .set_modified(past)
        .unwrap();
    append(&dir.path().join("new.log"), seq("new", 0..10));
    let mut o = opts(&format!("{}/*.log", dir.path().display()));
    o["ignore_older_secs"] = 60.into();
    let mut run = start(&dir.path().join("data"), o);
    assert!(wait_until(10, || run.got.len() >= 10).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    run.stop().await.unwrap();
    assert_exactly_once(&run.got, "new", 0..10);
    assert_eq!(run.got.len(), 10);
}
