//! Stopping a pipeline. Graceful (`Control.shutdown`): sources stop, queues
//! drain, every emitted record reaches every sink, sinks are closed once,
//! the final checkpoint is the last record. Hard (`Control.abort`, a second
//! signal, or a drain past `shutdown_timeout`): the run returns at once and
//! no checkpoint ever released or saved passes an undelivered record.

mod support;

use std::time::Duration;

use sluice_core::config::WhenFull;
use sluice_core::{Control, PipelineState};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_every_emitted_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let (s, slog) = TestSource::new(vec![Step::Forever { size: 4 }]);
    p.add_source("s", "test", s, queue(50, WhenFull::Block));
    let (x, xlog) = TestSink::new();
    let x = x.delays(vec![Duration::ZERO, Duration::from_millis(1)]);
    let mut xs = settings(&["s"]);
    xs.buffer = queue(40, WhenFull::Block);
    p.add_sink("x", "test", x.boxed(), xs);
    let (y, ylog) = TestSink::new();
    let mut ys = settings(&["s"]);
    ys.batch.max_events = 8;
    ys.batch.timeout_ms = 5;
    p.add_sink("y", "test", y.fail_calls([3, 10, 11]).boxed(), ys);
    let state = p.state();
    let control = Control::default();
    let running = spawn_run(p, control.clone());

    wait_for("400 records through x", || {
        xlog.lock().accepted.len() >= 400
    })
    .await;
    assert_eq!(state.get(), PipelineState::Running);
    control.shutdown.cancel();
    running.await.unwrap().unwrap();

    assert_eq!(state.get(), PipelineState::Stopped);
    let slog = slog.lock();
    let last = *slog.sent.last().unwrap();
    assert_eq!(slog.sent, range(1, last));
    assert!(slog.refused.is_empty());
    for (name, log) in [("x", &xlog), ("y", &ylog)] {
        let log = log.lock();
        assert_eq!(log.ids("s"), slog.sent, "sink {name} got every record once");
        assert_eq!(log.closed, 1, "sink {name} closed once");
        let bad = check_checkpoints("s", &slog, name, &log, true);
        assert!(bad.is_empty(), "{bad:?}");
    }
    assert_eq!(slog.final_checkpoint, Some(last));
    assert_eq!(saved_checkpoint(dir.path(), "s"), Some(last));
}

/// Every checkpoint `s` released, and the one on disk, is covered by both
/// sinks' acceptances.
fn assert_at_least_once(dir: &std::path::Path, slog: &SourceLog, sinks: &[(&str, &SinkLog)]) {
    for (name, log) in sinks {
        let bad = check_checkpoints("s", slog, name, log, true);
        assert!(bad.is_empty(), "{bad:?}");
    }
    let top = slog.checkpoints.iter().map(|c| c.0).max().unwrap_or(0);
    let saved = saved_checkpoint(dir, "s").unwrap_or(0);
    assert!(saved <= top, "saved {saved} was never released (top {top})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_mid_stream_never_checkpoints_past_an_undelivered_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let (s, slog) = TestSource::new(vec![Step::Forever { size: 3 }]);
    p.add_source("s", "test", s, queue(30, WhenFull::Block));
    let (x, xlog) = TestSink::new();
    let ms = Duration::from_millis;
    let x = x.delays(vec![ms(0), ms(1), ms(0), ms(2)]);
    let mut xs = settings(&["s"]);
    xs.buffer = queue(30, WhenFull::Block);
    p.add_sink("x", "test", x.boxed(), xs);
    let (y, ylog) = TestSink::new();
    let mut ys = settings(&["s"]);
    ys.batch.max_events = 6;
    p.add_sink("y", "test", y.fail_calls([2, 5, 9]).boxed(), ys);
    let state = p.state();
    let control = Control::default();
    let running = spawn_run(p, control.clone());

    wait_for("300 records through x", || {
        xlog.lock().accepted.len() >= 300
    })
    .await;
    control.abort.cancel();
    let _ = running.await.unwrap();
    assert_eq!(state.get(), PipelineState::Stopped);
    let slog = slog.lock();
    assert!(!slog.checkpoints.is_empty());
    assert_at_least_once(
        dir.path(),
        &slog,
        &[("x", &xlog.lock()), ("y", &ylog.lock())],
    );
}

/// `k` can never write record 41; `ok` can. Shutdown starts a drain that
/// cannot finish.
fn stuck_pipeline(
    dir: &std::path::Path,
    timeout: Duration,
) -> (sluice_core::Pipeline, SourceLogRef, SinkLogRef, SinkLogRef) {
    let mut p = pipeline(dir).with_shutdown_timeout(timeout);
    let (s, slog) = TestSource::new(vec![Step::Forever { size: 4 }]);
    p.add_source("s", "test", s, queue(20, WhenFull::Block));
    let (k, klog) = TestSink::new();
    let mut ks = settings(&["s"]);
    ks.buffer = queue(20, WhenFull::Block);
    p.add_sink("k", "test", k.fail_while_contains([41]).boxed(), ks);
    let (ok, oklog) = TestSink::new();
    p.add_sink("ok", "test", ok.boxed(), settings(&["s"]));
    (p, slog, klog, oklog)
}

type SourceLogRef = std::sync::Arc<parking_lot::Mutex<SourceLog>>;
type SinkLogRef = std::sync::Arc<parking_lot::Mutex<SinkLog>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_during_a_stuck_drain_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (p, slog, klog, oklog) = stuck_pipeline(dir.path(), Duration::from_secs(3600));
    let state = p.state();
    let control = Control::default();
    let running = spawn_run(p, control.clone());

    wait_for("k failing", || klog.lock().failures >= 3).await;
    control.shutdown.cancel();
    wait_for("draining while k still fails", || {
        let f = klog.lock().failures;
        state.get() == PipelineState::Draining && f >= 6
    })
    .await;
    assert!(
        !running.is_finished(),
        "the drain cannot finish while k fails"
    );
    control.abort.cancel();
    let _ = running.await.unwrap();
    assert_eq!(state.get(), PipelineState::Stopped);
    let slog = slog.lock();
    assert!(slog.checkpoints.iter().all(|c| c.0 <= 40));
    assert_at_least_once(
        dir.path(),
        &slog,
        &[("k", &klog.lock()), ("ok", &oklog.lock())],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_past_shutdown_timeout_is_abandoned_safely() {
    let dir = tempfile::tempdir().unwrap();
    let (p, slog, klog, oklog) = stuck_pipeline(dir.path(), Duration::from_millis(300));
    let state = p.state();
    let control = Control::default();
    let running = spawn_run(p, control.clone());

    wait_for("k failing", || klog.lock().failures >= 3).await;
    control.shutdown.cancel();
    let _ = running.await.unwrap();
    assert_eq!(state.get(), PipelineState::Stopped);
    let slog = slog.lock();
    assert!(slog.checkpoints.iter().all(|c| c.0 <= 40));
    assert_at_least_once(
        dir.path(),
        &slog,
        &[("k", &klog.lock()), ("ok", &oklog.lock())],
    );
}
