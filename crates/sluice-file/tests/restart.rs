//! Restarts through a real pipeline: a clean stop re-sends nothing, a hard
//! stop mid-stream loses nothing, the checkpoint holds only acknowledged
//! offsets, a damaged checkpoint follows `on_corrupt_checkpoint`, and
//! `read_from: end` applies to the very first start only.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_and_restart_resends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("app.log");
    append(&log, seq("l", 0..1000));
    std::fs::write(dir.path().join("partial.log"), b"whole\nhalf").unwrap();
    let glob = format!("{}/*.log", dir.path().display());
    let mut o = opts(&glob);
    o["partial_line_timeout_ms"] = 60_000.into();
    let mut run = start(&data, o.clone());
    assert!(wait_until(10, || run.got.len() >= 1001).await);
    // Metrics: records in, and nothing read but unacknowledged once idle.
    let source = |run: &Running| {
        run.metrics
            .statuses()
            .into_iter()
            .find(|s| s.kind == "source")
            .unwrap()
    };
    assert!(wait_until(10, || source(&run).checkpoint_lag == 0).await);
    assert_eq!(source(&run).records_in, 1001);
    run.stop().await.unwrap();
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("checkpoints/logs.json")).unwrap())
            .unwrap();
    let files = saved["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    for f in files {
        for k in ["path", "dev", "inode", "fingerprint", "offset"] {
            assert!(f.get(k).is_some(), "{k} in {f}");
        }
    }

    let mut run = start(&data, o.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(run.got.len(), 0, "re-sent {:?}", run.got.texts().first());
    append(&log, seq("l", 1000..1500));
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("partial.log"))
        .unwrap()
        .write_all(b"-done\n")
        .unwrap();
    assert!(wait_until(10, || run.got.len() >= 501).await);
    run.stop().await.unwrap();
    assert_exactly_once(&run.got, "l", 1000..1500);
    assert!(run.got.texts().contains(&"half-done".to_string()));
    assert_eq!(run.got.len(), 501);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_stops_mid_stream_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("app.log");
    let done = Arc::new(AtomicBool::new(false));
    let total = 200_000;
    let writer = {
        let (log, done) = (log.clone(), done.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::File::create(&log).unwrap();
            for chunk in 0..total / 500 {
                let mut buf = String::new();
                for i in chunk * 500..(chunk + 1) * 500 {
                    buf.push_str(&format!("s-{i}\n"));
                }
                f.write_all(buf.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let got = Collected::default();
    let o = opts(log.to_str().unwrap());
    for _ in 0..4 {
        let mut run = start_into(&data, o.clone(), got.clone());
        tokio::time::sleep(Duration::from_millis(400)).await;
        run.abort().await;
    }
    let mut run = start_into(&data, o, got.clone());
    writer.join().unwrap();
    assert!(done.load(Ordering::SeqCst));
    assert!(wait_until(30, || has_all(&got, "s", 0..total)).await);
    run.stop().await.unwrap();
    assert_at_least_once(&got, "s", 0..total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_holds_what_no_sink_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("app.log");
    append(&log, seq("l", 0..100));
    let o = opts(log.to_str().unwrap());
    let mut run = start(&data, o.clone());
    assert!(wait_until(10, || run.got.len() >= 100).await);
    let offset = |data: &std::path::Path| -> Option<u64> {
        let saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(data.join("checkpoints/logs.json")).ok()?)
                .ok()?;
        saved["files"][0]["offset"].as_u64()
    };
    let size = std::fs::metadata(&log).unwrap().len();
    assert!(
        wait_until(10, || offset(&data) == Some(size)).await,
        "acknowledged, so saved"
    );
    // The sink accepts nothing more: the offset stays where it was.
    run.got.hold(true);
    append(&log, seq("l", 100..200));
    tokio::time::sleep(Duration::from_millis(600)).await;
    run.abort().await;
    assert_eq!(offset(&data), Some(size));
    let mut run = start(&data, o);
    assert!(wait_until(10, || run.got.len() >= 100).await);
    run.stop().await.unwrap();
    assert_exactly_once(&run.got, "l", 100..200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_checkpoint_follows_on_corrupt_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, seq("l", 0..100));
    for (mode, expect) in [("beginning", Some(100)), ("end", Some(0)), ("stop", None)] {
        let data = dir.path().join(format!("data-{mode}"));
        std::fs::create_dir_all(data.join("checkpoints")).unwrap();
        std::fs::write(data.join("checkpoints/logs.json"), b"{\"files\": [tr").unwrap();
        let mut o = opts(log.to_str().unwrap());
        o["on_corrupt_checkpoint"] = mode.into();
        let mut run = start(&data, o);
        match expect {
            Some(n) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                append(&log, seq(mode, 0..1));
                assert!(wait_until(10, || run.got.len() > n).await, "{mode}");
                run.stop().await.unwrap();
                assert_eq!(run.got.len(), n + 1, "{mode}");
                assert!(data.join("checkpoints/logs.json.corrupt").exists());
            }
            None => {
                let r = tokio::time::timeout(Duration::from_secs(10), &mut run.handle).await;
                let e = r.expect("stops by itself").unwrap().unwrap_err();
                assert!(format!("{e:#}").contains("damaged"), "{e:#}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_from_end_applies_to_the_first_start_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let a = dir.path().join("a.log");
    append(&a, seq("old", 0..100));
    let mut o = opts(&format!("{}/*.log", dir.path().display()));
    o["read_from"] = "end".into();
    let mut run = start(&data, o.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    append(&a, seq("new", 0..10));
    assert!(wait_until(10, || run.got.len() >= 10).await);
    run.stop().await.unwrap();
    assert_exactly_once(&run.got, "new", 0..10);
    assert_eq!(run.got.len(), 10);
    // A file that appears while the source is down is read from its start.
    append(&dir.path().join("b.log"), seq("b", 0..10));
    let mut run = start(&data, o);
    assert!(wait_until(10, || run.got.len() >= 10).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    run.stop().await.unwrap();
    assert_exactly_once(&run.got, "b", 0..10);
    assert_eq!(run.got.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_rotated_away_while_stopped_is_read_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("app.log");
    append(&log, seq("l", 0..100));
    let o = opts(log.to_str().unwrap());
    let mut run = start(&data, o.clone());
    assert!(wait_until(10, || run.got.len() >= 100).await);
    run.stop().await.unwrap();
    // While stopped: more lines, then rename rotation.
    append(&log, seq("l", 100..200));
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    append(&log, seq("l", 200..300));
    let mut run = start(&data, o);
    assert!(wait_until(10, || has_all(&run.got, "l", 100..300)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    run.stop().await.unwrap();
    assert_exactly_once(&run.got, "l", 100..300);
    assert_eq!(run.got.len(), 200);
}
