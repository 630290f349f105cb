//! Back-pressure across the engine: a slow sink under `block` holds its
//! source back (it can never run ahead of queue + router + buffer + one
//! write), without stalling an unrelated source; a sink whose buffer is
//! `drop_newest` never stalls its source or the sibling sinks it shares.

mod support;

use std::time::Duration;

use sluice_core::config::WhenFull;
use sluice_core::Control;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_block_sink_holds_back_its_source_but_not_others() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let m = p.metrics();
    let gate = Gate::new();
    let (s1, log1) = TestSource::new(vec![Step::Emit {
        batches: 200,
        size: 5,
    }]);
    let (s2, log2) = TestSource::new(vec![Step::Emit {
        batches: 50,
        size: 4,
    }]);
    p.add_source("s1", "test", s1, queue(20, WhenFull::Block));
    p.add_source("s2", "test", s2, queue(20, WhenFull::Block));
    let (slow, slow_log) = TestSink::new();
    let slow = slow
        .gate(&gate)
        .delays(vec![Duration::from_millis(1), Duration::ZERO]);
    let mut ss = settings(&["s1"]);
    ss.buffer = queue(20, WhenFull::Block);
    ss.batch.max_events = 5;
    p.add_sink("slow", "test", slow.boxed(), ss);
    let (other, other_log) = TestSink::new();
    p.add_sink("other", "test", other.boxed(), settings(&["s2"]));
    let running = spawn_run(p, Control::default());

    wait_for("s2 fully delivered and s1 saturated", || {
        log2.lock().finished
            && status(&m, "s1", "source").queue_events == 20
            && status(&m, "slow", "sink").queue_events == 20
    })
    .await;
    assert_eq!(other_log.lock().ids("s2"), range(1, 200));
    // In `write` 5, buffer 20, router 5, queue 20: 50 at most.
    assert!(
        log1.lock().sent.len() <= 50,
        "s1 ran past the full pipeline"
    );
    assert!(!log1.lock().finished);
    gate.open();
    running.await.unwrap().unwrap();

    assert_eq!(slow_log.lock().ids("s1"), range(1, 1000));
    let log1 = log1.lock();
    assert_eq!(log1.final_checkpoint, Some(1000));
    assert!(
        log1.max_ahead <= 50,
        "s1 ran {} records ahead",
        log1.max_ahead
    );
    assert!(log1.max_ahead >= 45, "the test never filled the pipeline");
    let st = status(&m, "slow", "sink");
    assert_eq!(st.dropped_queue_full + st.rejected_queue_full, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_newest_sink_does_not_stall_its_source_or_siblings() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let m = p.metrics();
    let gate = Gate::new();
    let g = gate.clone();
    let (s, slog) = TestSource::new(vec![
        Step::Emit {
            batches: 1,
            size: 3,
        },
        until("lossy holding batch 1", move || g.entered() >= 1),
        Step::Emit {
            batches: 100,
            size: 3,
        },
    ]);
    p.add_source("s", "test", s, queue(20, WhenFull::Block));
    let (lossy, lossy_log) = TestSink::new();
    let mut ls = settings(&["s"]);
    ls.buffer = queue(10, WhenFull::DropNewest);
    p.add_sink("lossy", "test", lossy.gate(&gate).boxed(), ls);
    let (fast, fast_log) = TestSink::new();
    let mut fs = settings(&["s"]);
    fs.buffer = queue(10, WhenFull::Block);
    p.add_sink("fast", "test", fast.boxed(), fs);
    let running = spawn_run(p, Control::default());

    wait_for("everything emitted and delivered to `fast`", || {
        slog.lock().sent.len() == 303 && fast_log.lock().accepted.len() == 303
    })
    .await;
    assert_eq!(lossy_log.lock().accepted.len(), 0, "lossy is still gated");
    gate.open();
    running.await.unwrap().unwrap();

    assert_eq!(fast_log.lock().ids("s"), range(1, 303));
    assert_eq!(lossy_log.lock().ids("s"), range(1, 13));
    assert_eq!(status(&m, "lossy", "sink").dropped_queue_full, 290);
    assert_eq!(status(&m, "fast", "sink").dropped_queue_full, 0);
    assert_eq!(slog.lock().final_checkpoint, Some(303));
}
