//! Records a sink can never accept (`SinkError::Rejected { index }`):
//! `on_error: stop` fails the run with an error naming the record's source
//! and keeps the checkpoint before it; `drop` counts and acknowledges;
//! `dead_letter` appends the record to the dead-letter file (an unwritable
//! one stops the run). Records before `index` count as written; `index`
//! spans the parts of a write gathered from several sources.

mod support;

use sluice_core::config::{OnError, WhenFull};
use sluice_core::metrics::ComponentStatus;
use sluice_core::{Control, SinkSettings};
use support::*;

struct Outcome {
    result: anyhow::Result<()>,
    ids: Vec<u64>,
    rejections: usize,
    status: ComponentStatus,
    fin: Option<u64>,
    checkpoint_violations: Vec<String>,
    _dir: tempfile::TempDir,
}

/// Source `orders`: 10 batches of 5 (ids 1–50) → sink `k` rejecting `bad`.
async fn rejecting(bad: &[u64], tweak: impl FnOnce(&mut SinkSettings)) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let m = p.metrics();
    let (s, slog) = TestSource::new(vec![Step::Emit {
        batches: 10,
        size: 5,
    }]);
    p.add_source("orders", "test", s, queue(1000, WhenFull::Block));
    let (k, klog) = TestSink::new();
    let mut ks = settings(&["orders"]);
    ks.batch.max_events = 5;
    tweak(&mut ks);
    p.add_sink("k", "test", k.reject(bad.iter().copied()).boxed(), ks);
    let result = run(p, Control::default()).await;
    let klog = klog.lock();
    let slog = slog.lock();
    Outcome {
        result,
        ids: klog.ids("orders"),
        rejections: klog.rejections,
        status: status(&m, "k", "sink"),
        fin: slog.final_checkpoint,
        checkpoint_violations: check_checkpoints("orders", &slog, "k", &klog, false),
        _dir: dir,
    }
}

fn all_but(bad: &[u64]) -> Vec<u64> {
    range(1, 50)
        .into_iter()
        .filter(|i| !bad.contains(i))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_with_stop_fails_the_run_naming_the_source() {
    let o = rejecting(&[8], |s| s.on_error = OnError::Stop).await;
    let e = format!("{:#}", o.result.unwrap_err());
    assert!(e.contains("source `orders`"), "{e}");
    assert!(e.contains("sink `k`"), "{e}");
    assert_eq!(
        o.ids,
        range(1, 7),
        "records before the rejected one were accepted"
    );
    assert_eq!(o.rejections, 1);
    assert_eq!(
        o.fin,
        Some(5),
        "the checkpoint stays before the rejected batch"
    );
    assert!(
        o.checkpoint_violations.is_empty(),
        "{:?}",
        o.checkpoint_violations
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_with_drop_is_counted_and_acknowledged() {
    let bad = [8, 23, 24, 50];
    let o = rejecting(&bad, |s| s.on_error = OnError::Drop).await;
    o.result.unwrap();
    assert_eq!(o.ids, all_but(&bad));
    assert_eq!(o.rejections, 4);
    assert_eq!(o.status.dropped_on_error, 4);
    assert_eq!(o.status.dead_lettered, 0);
    assert_eq!(o.fin, Some(50));
    assert!(
        o.checkpoint_violations.is_empty(),
        "{:?}",
        o.checkpoint_violations
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_with_dead_letter_writes_the_record() {
    let dl = tempfile::tempdir().unwrap();
    let path = dl.path().join("nested/dead.ndjson");
    let p2 = path.clone();
    let bad = [8, 23];
    let o = rejecting(&bad, move |s| {
        s.on_error = OnError::DeadLetter;
        s.dead_letter_path = Some(p2);
    })
    .await;
    o.result.unwrap();
    assert_eq!(o.ids, all_but(&bad));
    assert_eq!(o.status.dead_lettered, 2);
    assert_eq!(o.status.dropped_on_error, 0);
    let text = std::fs::read_to_string(&path).unwrap();
    let entries: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 2, "{text}");
    for (e, id) in entries.iter().zip(bad) {
        assert_eq!(e["sink"], "k");
        assert_eq!(e["record"]["message"], id.to_string());
        assert!(e["origin"].as_str().unwrap().contains("source `orders`"));
        assert!(e["error"].as_str().unwrap().contains("never be accepted"));
    }
    assert_eq!(o.fin, Some(50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_batch_prefix_counts_as_written() {
    // Record 8 sits at index 2 of the write [6..10]: 6 and 7 are accepted
    // by that write, 9 and 10 by the next one.
    let o = rejecting(&[8], |s| s.on_error = OnError::Drop).await;
    o.result.unwrap();
    assert_eq!(o.ids.len(), 49);
    assert_eq!(
        o.status.records_out, 49,
        "records_out must count every record the sink durably accepted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_dead_letter_file_stops_the_run_without_acknowledging() {
    let dl = tempfile::tempdir().unwrap();
    // A directory where the file should be: appending fails.
    let path = dl.path().to_path_buf();
    let o = rejecting(&[8], move |s| {
        s.on_error = OnError::DeadLetter;
        s.dead_letter_path = Some(path);
    })
    .await;
    let e = format!("{:#}", o.result.unwrap_err());
    assert!(e.contains("dead letter"), "{e}");
    assert_eq!(o.status.dead_lettered, 0);
    assert_eq!(
        o.fin,
        Some(5),
        "the record is neither written nor acknowledged"
    );
    assert!(
        o.checkpoint_violations.is_empty(),
        "{:?}",
        o.checkpoint_violations
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_in_a_write_gathered_from_two_sources() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let m = p.metrics();
    let gate = Gate::new();
    let mut logs = Vec::new();
    for name in ["a", "b"] {
        let (s, log) = TestSource::new(vec![Step::Emit {
            batches: 10,
            size: 5,
        }]);
        p.add_source(name, "test", s, queue(1000, WhenFull::Block));
        logs.push(log);
    }
    let (k, klog) = TestSink::new();
    let k = k.gate(&gate).reject([8, 9, 31]);
    p.add_sink("k", "test", k.boxed(), {
        let mut ks = settings(&["a", "b"]);
        ks.on_error = OnError::Drop;
        ks
    });
    let running = spawn_run(p, Control::default());
    // Everything waits in the buffer, so writes gather parts of both sources.
    wait_for("both sources emitted", || {
        logs.iter().all(|l| l.lock().sent.len() == 50)
    })
    .await;
    gate.open();
    running.await.unwrap().unwrap();
    let all_but = |bad: &[u64]| -> Vec<u64> {
        range(1, 50)
            .into_iter()
            .filter(|i| !bad.contains(i))
            .collect()
    };
    let klog = klog.lock();
    assert_eq!(klog.ids("a"), all_but(&[8, 9, 31]));
    assert_eq!(klog.ids("b"), all_but(&[8, 9, 31]));
    assert_eq!(status(&m, "k", "sink").dropped_on_error, 6);
    for log in &logs {
        assert_eq!(log.lock().final_checkpoint, Some(50));
    }
}
