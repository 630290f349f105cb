//! Rotation through a real pipeline: rename, copytruncate, delete and
//! recreate, truncation while reading.

mod common;

use std::io::Write;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_rotation_reads_the_old_file_to_its_end_and_the_new_one_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, seq("l", 0..1000));
    let mut run = start(&dir.path().join("data"), opts(log.to_str().unwrap()));
    assert!(wait_until(10, || run.got.len() >= 1000).await);
    // The writer keeps its handle across the rename and writes a little more.
    let mut old = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    append(&log, seq("l", 1100..2000));
    for l in seq("l", 1000..1100) {
        writeln!(old, "{l}").unwrap();
    }
    drop(old);
    assert!(wait_until(10, || has_all(&run.got, "l", 0..2000)).await);
    run.stop().await.unwrap();
    assert_exactly_once(&run.got, "l", 0..2000);
    let paths: std::collections::HashSet<_> = run.got.all().into_iter().map(|g| g.path).collect();
    assert_eq!(
        paths.len(),
        1,
        "records name the path the file was followed at"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_delivers_every_line_at_least_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, seq("l", 0..1000));
    let glob = format!("{}*", log.display());
    let mut run = start(&dir.path().join("data"), opts(&glob));
    assert!(wait_until(10, || run.got.len() >= 1000).await);
    append(&log, seq("l", 1000..1500));
    std::fs::copy(&log, dir.path().join("app.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, seq("l", 1500..2000));
    assert!(wait_until(10, || has_all(&run.got, "l", 0..2000)).await);
    run.stop().await.unwrap();
    assert_at_least_once(&run.got, "l", 0..2000);
    assert_exactly_once(&run.got, "l", 1500..2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_while_reading_starts_over_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, seq("l", 0..1000));
    let mut run = start(&dir.path().join("data"), opts(log.to_str().unwrap()));
    assert!(wait_until(10, || run.got.len() >= 1000).await);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, seq("t", 0..100));
    assert!(wait_until(10, || has_all(&run.got, "t", 0..100)).await);
    // Truncated and regrown past the old offset before the next look.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, seq("u", 0..3000));
    assert!(wait_until(10, || has_all(&run.got, "u", 0..3000)).await);
    run.stop().await.unwrap();
    assert_exactly_once(&run.got, "l", 0..1000);
    assert_exactly_once(&run.got, "t", 0..100);
    assert_exactly_once(&run.got, "u", 0..3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_then_recreate_at_the_same_path() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, seq("a", 0..500));
    let mut run = start(&dir.path().join("data"), opts(log.to_str().unwrap()));
    assert!(wait_until(10, || run.got.len() >= 500).await);
    std::fs::remove_file(&log).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    append(&log, seq("b", 0..500));
    assert!(wait_until(10, || has_all(&run.got, "b", 0..500)).await);
    run.stop().await.unwrap();
    assert_exactly_once(&run.got, "a", 0..500);
    assert_exactly_once(&run.got, "b", 0..500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_closed_as_idle_then_appended_and_renamed_is_read_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, seq("l", 0..100));
    let mut o = opts(log.to_str().unwrap());
    o["idle_close_secs"] = 1.into();
    let mut run = start(&dir.path().join("data"), o);
    assert!(wait_until(10, || run.got.len() >= 100).await);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    // Closed as idle by now: a last append and a rotation back to back.
    append(&log, seq("l", 100..200));
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    append(&log, seq("l", 200..300));
    assert!(wait_until(10, || has_all(&run.got, "l", 0..300)).await);
    run.stop().await.unwrap();
    assert_exactly_once(&run.got, "l", 0..300);
}
