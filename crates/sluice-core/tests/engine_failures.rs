//! Components that fail: a source returning an error, a sink answering
//! `SinkError::Fatal`, and components that panic (a bug in a source or sink
//! crate). Each must stop the pipeline promptly — not after
//! `shutdown_timeout`, set to an hour here — with an error naming the
//! component, and without any checkpoint passing an undelivered record.

mod support;

use std::time::Duration;

use sluice_core::config::WhenFull;
use sluice_core::{Control, Pipeline};
use support::*;

/// Far below the hour-long drain budget, far above any honest stop.
const PROMPT: Duration = Duration::from_secs(20);

async fn run_prompt(p: Pipeline, what: &str) -> anyhow::Result<()> {
    match tokio::time::timeout(PROMPT, p.run(Control::default())).await {
        Ok(r) => r,
        Err(_) => panic!(
            "the pipeline did not stop within {PROMPT:?} after {what} \
             (it waits for shutdown_timeout instead)"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_source_stops_the_run_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let (s, _) = TestSource::new(vec![
        Step::Emit {
            batches: 5,
            size: 3,
        },
        Step::Fail,
    ]);
    p.add_source("s", "test", s, queue(100, WhenFull::Block));
    let (k, klog) = TestSink::new();
    p.add_sink("k", "test", k.boxed(), settings(&["s"]));
    let e = format!("{:#}", run_prompt(p, "a source failed").await.unwrap_err());
    assert!(e.contains("source `s`"), "{e}");
    assert_eq!(
        klog.lock().ids("s"),
        range(1, 15),
        "what it sent is drained"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_sink_error_stops_the_run_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let (s, slog) = TestSource::new(vec![Step::Emit {
        batches: 50,
        size: 3,
    }]);
    p.add_source("s", "test", s, queue(10, WhenFull::Block));
    let (k, klog) = TestSink::new();
    let mut ks = settings(&["s"]);
    ks.buffer = queue(10, WhenFull::Block);
    ks.batch.max_events = 3;
    p.add_sink("k", "test", k.fatal_on(12).boxed(), ks);
    let (ok, oklog) = TestSink::new();
    p.add_sink("ok", "test", ok.boxed(), settings(&["s"]));
    let e = format!(
        "{:#}",
        run_prompt(p, "a fatal sink error").await.unwrap_err()
    );
    assert!(e.contains("sink `k`"), "{e}");
    assert_eq!(klog.lock().ids("s"), range(1, 9));
    let slog = slog.lock();
    assert!(
        slog.checkpoints.iter().all(|c| c.0 <= 9),
        "{:?}",
        slog.checkpoints
    );
    let bad = check_checkpoints("s", &slog, "ok", &oklog.lock(), true);
    assert!(bad.is_empty(), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_sink_stops_the_run_promptly_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let (s, slog) = TestSource::new(vec![Step::Emit {
        batches: 50,
        size: 3,
    }]);
    p.add_source("s", "test", s, queue(10, WhenFull::Block));
    let (k, klog) = TestSink::new();
    let mut ks = settings(&["s"]);
    ks.buffer = queue(10, WhenFull::Block);
    ks.batch.max_events = 3;
    p.add_sink("k", "test", k.panic_on(12).boxed(), ks);
    let e = format!("{:#}", run_prompt(p, "a sink panicked").await.unwrap_err());
    assert!(
        e.contains("sink `k`"),
        "the error should name the sink: {e}"
    );
    assert_eq!(klog.lock().ids("s"), range(1, 9));
    assert!(slog.lock().checkpoints.iter().all(|c| c.0 <= 9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_source_stops_the_run_promptly_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let (s, _) = TestSource::new(vec![
        Step::Emit {
            batches: 5,
            size: 3,
        },
        Step::Panic,
    ]);
    p.add_source("s", "test", s, queue(100, WhenFull::Block));
    let (t, tlog) = TestSource::new(vec![Step::Emit {
        batches: 5,
        size: 3,
    }]);
    p.add_source("t", "test", t, queue(100, WhenFull::Block));
    let (k, klog) = TestSink::new();
    p.add_sink("k", "test", k.boxed(), settings(&["s", "t"]));
    let e = format!(
        "{:#}",
        run_prompt(p, "a source panicked").await.unwrap_err()
    );
    assert!(
        e.contains("source `s`"),
        "the error should name the source: {e}"
    );
    assert_eq!(
        klog.lock().ids("s"),
        range(1, 15),
        "what it sent is drained"
    );
    assert_eq!(klog.lock().ids("t"), range(1, 15));
    assert_eq!(tlog.lock().final_checkpoint, Some(15));
}
