//! `when_full` policies with exact drop counts, at a sink's buffer and at a
//! source's internal queue. A gated sink holds the first batch inside
//! `write` so that what fills the buffer (and, behind a full `block` buffer,
//! the source queue) is deterministic; the test then checks the counters in
//! `ComponentStatus`, the records that arrive, and that records dropped by
//! policy are acknowledged (the checkpoint reaches the end); drops are
//! exported to Prometheus by reason.

mod support;

use std::sync::Arc;

use sluice_core::config::WhenFull;
use sluice_core::metrics::MetricsRegistry;
use sluice_core::Control;
use support::*;

fn depth(m: &Arc<MetricsRegistry>, name: &str, kind: &str) -> usize {
    status(m, name, kind).queue_events
}

/// Source `s` (queue of 100, block) → gated sink `k` with a buffer of 10
/// events under `policy`: batch 1 (ids 1–3) is held in `write`, then ten
/// batches of 3 (ids 4–33) meet the buffer.
async fn sink_buffer_case(policy: WhenFull) -> (Vec<u64>, u64, u64, Option<u64>) {
    sink_buffer_case_with_metrics(policy).await.0
}

async fn sink_buffer_case_with_metrics(
    policy: WhenFull,
) -> ((Vec<u64>, u64, u64, Option<u64>), String) {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let m = p.metrics();
    let gate = Gate::new();
    let (g, m2) = (gate.clone(), m.clone());
    let (src, slog) = TestSource::new(vec![
        Step::Emit {
            batches: 1,
            size: 3,
        },
        until("the sink holding batch 1", move || g.entered() >= 1),
        Step::Emit {
            batches: 10,
            size: 3,
        },
        until("every batch routed", move || {
            let s = status(&m2, "k", "sink");
            s.dropped_queue_full + s.rejected_queue_full + s.queue_events as u64 == 30
        }),
        Step::Open(gate.clone()),
    ]);
    p.add_source("s", "test", src, queue(100, WhenFull::Block));
    let (k, klog) = TestSink::new();
    let mut ks = settings(&["s"]);
    ks.buffer = queue(10, policy);
    p.add_sink("k", "test", k.gate(&gate).boxed(), ks);
    run(p, Control::default()).await.unwrap();
    let st = status(&m, "k", "sink");
    let ids = klog.lock().ids("s");
    let fin = slog.lock().final_checkpoint;
    let text = m.render_prometheus();
    (
        (ids, st.dropped_queue_full, st.rejected_queue_full, fin),
        text,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_buffer_drop_newest_cuts_the_incoming_batch() {
    let (ids, dropped, rejected, fin) = sink_buffer_case(WhenFull::DropNewest).await;
    assert_eq!(ids, range(1, 13), "batch 13–15 is cut to its first record");
    assert_eq!((dropped, rejected), (20, 0));
    assert_eq!(fin, Some(33), "dropped by policy still acknowledges");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_buffer_drop_oldest_keeps_the_newest_records() {
    let (ids, dropped, rejected, fin) = sink_buffer_case(WhenFull::DropOldest).await;
    let mut want = range(1, 3);
    want.extend(range(24, 33));
    assert_eq!(ids, want);
    assert_eq!((dropped, rejected), (20, 0));
    assert_eq!(fin, Some(33));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_buffer_reject_refuses_whole_batches() {
    let (ids, dropped, rejected, fin) = sink_buffer_case(WhenFull::Reject).await;
    assert_eq!(ids, range(1, 12));
    assert_eq!((dropped, rejected), (0, 21));
    assert_eq!(fin, Some(33));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_buffer_block_loses_nothing_and_holds_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let m = p.metrics();
    let gate = Gate::new();
    let g = gate.clone();
    let (src, slog) = TestSource::new(vec![
        Step::Emit {
            batches: 1,
            size: 3,
        },
        until("the sink holding batch 1", move || g.entered() >= 1),
        Step::Emit {
            batches: 10,
            size: 3,
        },
    ]);
    p.add_source("s", "test", src, queue(10, WhenFull::Block));
    let (k, klog) = TestSink::new();
    let mut ks = settings(&["s"]);
    ks.buffer = queue(10, WhenFull::Block);
    p.add_sink("k", "test", k.gate(&gate).boxed(), ks);
    let running = spawn_run(p, Control::default());
    // 4–12 in the buffer, 13–15 in the router's hands, 16–24 in the queue.
    wait_for("buffer and queue full", || {
        depth(&m, "k", "sink") == 9 && depth(&m, "s", "source") == 9
    })
    .await;
    assert!(
        slog.lock().sent.len() <= 24,
        "the source ran past a full pipeline"
    );
    assert!(!slog.lock().finished);
    gate.open();
    running.await.unwrap().unwrap();
    assert_eq!(klog.lock().ids("s"), range(1, 33));
    let (sk, ss) = (status(&m, "k", "sink"), status(&m, "s", "source"));
    assert_eq!(sk.dropped_queue_full + sk.rejected_queue_full, 0);
    assert_eq!(ss.dropped_queue_full + ss.rejected_queue_full, 0);
    let slog = slog.lock();
    assert_eq!(slog.final_checkpoint, Some(33));
    assert!(
        slog.max_ahead <= 3 + 10 + 3 + 10,
        "ran ahead {}",
        slog.max_ahead
    );
}

/// Source `s` (queue of 10 events under `policy`) → gated sink `k` (buffer of
/// 6, block): batch 1 is in `write`, batches 2–3 fill the buffer, batch 4
/// is in the router's hands, then ten batches (ids 13–42) meet the queue.
async fn source_queue_case(policy: WhenFull) -> (Vec<u64>, u64, u64, Vec<u64>, Option<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let m = p.metrics();
    let gate = Gate::new();
    let one = || Step::Emit {
        batches: 1,
        size: 3,
    };
    let g = gate.clone();
    let (m1, m2, m3) = (m.clone(), m.clone(), m.clone());
    let (src, slog) = TestSource::new(vec![
        one(),
        until("the sink holding batch 1", move || g.entered() >= 1),
        one(),
        until("batch 2 buffered", move || {
            depth(&m1, "s", "source") == 0 && depth(&m1, "k", "sink") == 3
        }),
        one(),
        until("batch 3 buffered", move || {
            depth(&m2, "s", "source") == 0 && depth(&m2, "k", "sink") == 6
        }),
        one(),
        until("batch 4 taken by the router", move || {
            depth(&m3, "s", "source") == 0
        }),
        Step::Emit {
            batches: 10,
            size: 3,
        },
        Step::Open(gate.clone()),
    ]);
    p.add_source("s", "test", src, queue(10, policy));
    let (k, klog) = TestSink::new();
    let mut ks = settings(&["s"]);
    ks.buffer = queue(6, WhenFull::Block);
    p.add_sink("k", "test", k.gate(&gate).boxed(), ks);
    run(p, Control::default()).await.unwrap();
    let st = status(&m, "s", "source");
    let ids = klog.lock().ids("s");
    let slog = slog.lock();
    let refused = slog.refused.clone();
    (
        ids,
        st.dropped_queue_full,
        st.rejected_queue_full,
        refused,
        slog.final_checkpoint,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_queue_drop_newest_cuts_the_incoming_batch() {
    let (ids, dropped, rejected, refused, fin) = source_queue_case(WhenFull::DropNewest).await;
    assert_eq!(ids, range(1, 22));
    assert_eq!((dropped, rejected), (20, 0));
    assert!(refused.is_empty());
    assert_eq!(fin, Some(42));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_queue_drop_oldest_keeps_the_newest_records() {
    let (ids, dropped, rejected, refused, fin) = source_queue_case(WhenFull::DropOldest).await;
    let mut want = range(1, 12);
    want.extend(range(33, 42));
    assert_eq!(ids, want);
    assert_eq!((dropped, rejected), (20, 0));
    assert!(refused.is_empty());
    assert_eq!(fin, Some(42));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_queue_reject_refuses_whole_batches_to_the_source() {
    let (ids, dropped, rejected, refused, fin) = source_queue_case(WhenFull::Reject).await;
    assert_eq!(ids, range(1, 21));
    assert_eq!((dropped, rejected), (0, 21));
    assert_eq!(refused, range(22, 42), "the source hears every refusal");
    assert_eq!(
        fin,
        Some(21),
        "a refused batch is not delivered: no checkpoint passes it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_are_exported_by_reason() {
    let (_, text) = sink_buffer_case_with_metrics(WhenFull::DropNewest).await;
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("sluice_dropped_records")
                && l.contains("component=\"k\"")
                && l.contains("reason=\"queue_full\"")
        })
        .unwrap_or_else(|| panic!("no queue_full drop series for k:\n{text}"));
    assert!(line.ends_with(" 20"), "{line}");
    let (_, text) = sink_buffer_case_with_metrics(WhenFull::Reject).await;
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("sluice_dropped_records")
                && l.contains("component=\"k\"")
                && l.contains("reason=\"rejected\"")
        })
        .unwrap_or_else(|| panic!("no rejected drop series for k:\n{text}"));
    assert!(line.ends_with(" 21"), "{line}");
}
