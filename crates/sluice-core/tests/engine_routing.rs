//! Engine routing: publish/subscribe fan-out to several sinks (every record
//! exactly once, in order per source) and `inputs` globs (only matching
//! sources are routed; overlapping globs deliver once; a source no sink
//! wants is still acknowledged and checkpointed to its end). Fan-out also
//! runs on a current-thread runtime.

mod support;

use std::time::Duration;

use sluice_core::config::WhenFull;
use sluice_core::Control;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_to_three_sinks_delivers_every_record_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let (a, alog) = TestSource::new(vec![Step::Emit {
        batches: 60,
        size: 7,
    }]);
    let (b, blog) = TestSource::new(vec![Step::Emit {
        batches: 40,
        size: 5,
    }]);
    p.add_source("a", "test", a, queue(20, WhenFull::Block));
    p.add_source("b", "test", b, queue(20, WhenFull::Block));
    let (x, xlog) = TestSink::new();
    let (y, ylog) = TestSink::new();
    let (z, zlog) = TestSink::new();
    let y = y.delays(vec![Duration::ZERO, Duration::from_millis(1)]);
    let z = z.fail_first(3);
    let mut zs = settings(&["a", "b"]);
    zs.buffer = queue(10, WhenFull::Block);
    zs.batch.max_events = 4;
    p.add_sink("x", "test", x.boxed(), settings(&["a", "b"]));
    p.add_sink("y", "test", y.boxed(), settings(&["b", "a"]));
    p.add_sink("z", "test", z.boxed(), zs);
    let metrics = p.metrics();
    run(p, Control::default()).await.unwrap();

    for (name, log) in [("x", &xlog), ("y", &ylog), ("z", &zlog)] {
        let log = log.lock();
        assert_eq!(log.ids("a"), range(1, 420), "sink {name}, source a");
        assert_eq!(log.ids("b"), range(1, 200), "sink {name}, source b");
        assert_eq!(log.closed, 1, "sink {name} closed once");
        assert_eq!(status(&metrics, name, "sink").records_out, 620);
    }
    assert_eq!(zlog.lock().failures, 3);
    assert_eq!(alog.lock().final_checkpoint, Some(420));
    assert_eq!(blog.lock().final_checkpoint, Some(200));
    assert_eq!(saved_checkpoint(dir.path(), "a"), Some(420));
    assert_eq!(saved_checkpoint(dir.path(), "b"), Some(200));
    for (s, log) in [("a", &alog), ("b", &blog)] {
        for (k, sink) in [("x", &xlog), ("y", &ylog), ("z", &zlog)] {
            let bad = check_checkpoints(s, &log.lock(), k, &sink.lock(), true);
            assert!(bad.is_empty(), "{bad:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_globs_route_only_matching_sources() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let mut logs = Vec::new();
    for (name, batches) in [("app_web", 10), ("app_api", 12), ("db", 8), ("orphan", 9)] {
        let (s, log) = TestSource::new(vec![Step::Emit { batches, size: 3 }]);
        p.add_source(name, "test", s, queue(100, WhenFull::Block));
        logs.push((name, log));
    }
    let (apps, apps_log) = TestSink::new();
    let (web, web_log) = TestSink::new();
    let (overlap, overlap_log) = TestSink::new();
    let (dbs, dbs_log) = TestSink::new();
    let (nobody, nobody_log) = TestSink::new();
    p.add_sink("apps", "test", apps.boxed(), settings(&["app_*"]));
    p.add_sink("web", "test", web.boxed(), settings(&["app_web"]));
    p.add_sink(
        "overlap",
        "test",
        overlap.boxed(),
        settings(&["app_*", "app_web", "*_web"]),
    );
    p.add_sink("dbs", "test", dbs.boxed(), settings(&["d?"]));
    p.add_sink("nobody", "test", nobody.boxed(), settings(&["nothing_*"]));
    run(p, Control::default()).await.unwrap();

    let apps = apps_log.lock();
    assert_eq!(apps.ids("app_web"), range(1, 30));
    assert_eq!(apps.ids("app_api"), range(1, 36));
    assert_eq!(apps.count("db") + apps.count("orphan"), 0);
    let web = web_log.lock();
    assert_eq!(web.ids("app_web"), range(1, 30));
    assert_eq!(web.accepted.len(), 30, "only app_web reaches `web`");
    let overlap = overlap_log.lock();
    assert_eq!(
        overlap.ids("app_web"),
        range(1, 30),
        "one delivery per sink"
    );
    assert_eq!(overlap.ids("app_api"), range(1, 36));
    assert_eq!(overlap.accepted.len(), 66);
    let dbs = dbs_log.lock();
    assert_eq!(dbs.ids("db"), range(1, 24));
    assert_eq!(dbs.accepted.len(), 24);
    let nobody = nobody_log.lock();
    assert_eq!((nobody.writes, nobody.closed), (0, 1));

    for (name, log) in &logs {
        let total = log.lock().sent.len() as u64;
        assert_eq!(log.lock().final_checkpoint, Some(total), "source {name}");
        assert_eq!(saved_checkpoint(dir.path(), name), Some(total), "{name}");
    }
}

#[tokio::test]
async fn fan_out_runs_on_a_current_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let (a, alog) = TestSource::new(vec![Step::Emit {
        batches: 30,
        size: 4,
    }]);
    p.add_source("a", "test", a, queue(8, WhenFull::Block));
    let mut logs = Vec::new();
    for name in ["x", "y"] {
        let (k, log) = TestSink::new();
        let mut ks = settings(&["a"]);
        ks.buffer = queue(8, WhenFull::Block);
        ks.batch.timeout_ms = 2;
        p.add_sink(name, "test", k.fail_first(2).boxed(), ks);
        logs.push(log);
    }
    run(p, Control::default()).await.unwrap();
    for log in logs {
        assert_eq!(log.lock().ids("a"), range(1, 120));
    }
    assert_eq!(alog.lock().final_checkpoint, Some(120));
}
