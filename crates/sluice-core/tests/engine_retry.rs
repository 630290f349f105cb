//! Sink retries: a sink failing with `SinkError::Retryable` for a while is
//! retried until it recovers, losing and duplicating nothing (a failed write
//! accepts nothing; a write cut off midway duplicates only records of the
//! batch retried); `retry.max_attempts` hands a batch that keeps failing
//! to `on_error` (drop: counted and acknowledged; stop: the run fails naming
//! the source; dead_letter: the records are in the dead-letter file).

mod support;

use sluice_core::config::{OnError, WhenFull};
use sluice_core::{Control, SinkSettings};
use support::*;

/// Source `s`: 20 batches of 5 (ids 1–100); sink `k` writes one source
/// batch per write.
fn one_batch_per_write() -> SinkSettings {
    let mut ks = settings(&["s"]);
    ks.batch.max_events = 5;
    ks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_failures_are_retried_until_the_sink_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let m = p.metrics();
    let (s, slog) = TestSource::new(vec![Step::Emit {
        batches: 20,
        size: 5,
    }]);
    p.add_source("s", "test", s, queue(1000, WhenFull::Block));
    let (k, klog) = TestSink::new();
    let k = k.fail_first(6).fail_calls([9, 12, 13]);
    p.add_sink("k", "test", k.boxed(), one_batch_per_write());
    run(p, Control::default()).await.unwrap();

    let klog = klog.lock();
    assert_eq!(
        klog.ids("s"),
        range(1, 100),
        "nothing lost, nothing duplicated"
    );
    assert_eq!(klog.failures, 9);
    let st = status(&m, "k", "sink");
    assert_eq!((st.retries, st.dropped_on_error), (9, 0));
    let slog = slog.lock();
    assert_eq!(slog.final_checkpoint, Some(100));
    let bad = check_checkpoints("s", &slog, "k", &klog, true);
    assert!(bad.is_empty(), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_writes_duplicate_only_records_of_retried_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let (s, slog) = TestSource::new(vec![Step::Emit {
        batches: 20,
        size: 5,
    }]);
    p.add_source("s", "test", s, queue(1000, WhenFull::Block));
    let (k, klog) = TestSink::new();
    let k = k.partial_fail_calls([1, 2, 7]).fail_calls([4]);
    let retried = k.retried.clone();
    p.add_sink("k", "test", k.boxed(), one_batch_per_write());
    run(p, Control::default()).await.unwrap();

    let ids = klog.lock().ids("s");
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique, range(1, 100), "nothing lost");
    let retried = retried.lock().clone();
    let mut seen = std::collections::HashSet::new();
    for id in &ids {
        if !seen.insert(*id) {
            assert!(retried.contains(id), "{id} duplicated but never retried");
        }
    }
    assert_eq!(
        ids.len(),
        100 + 2 * 3,
        "two records per partial write again"
    );
    assert_eq!(slog.lock().final_checkpoint, Some(100));
}

async fn poisoned(max_attempts: u32, on_error: OnError) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let m = p.metrics();
    let (s, slog) = TestSource::new(vec![Step::Emit {
        batches: 20,
        size: 5,
    }]);
    p.add_source("s", "test", s, queue(1000, WhenFull::Block));
    let (k, klog) = TestSink::new();
    let mut ks = one_batch_per_write();
    ks.retry.max_attempts = Some(max_attempts);
    ks.on_error = on_error;
    p.add_sink("k", "test", k.fail_while_contains([27]).boxed(), ks);
    let result = run(p, Control::default()).await;
    let st = status(&m, "k", "sink");
    let dead = std::fs::read_to_string(dir.path().join("dead_letter/k.ndjson")).ok();
    let ids = klog.lock().ids("s");
    let failures = klog.lock().failures;
    let fin = slog.lock().final_checkpoint;
    Harness {
        result,
        ids,
        failures,
        retries: st.retries,
        dropped_on_error: st.dropped_on_error,
        dead_lettered: st.dead_lettered,
        dead,
        fin,
    }
}

struct Harness {
    result: anyhow::Result<()>,
    ids: Vec<u64>,
    failures: usize,
    retries: u64,
    dropped_on_error: u64,
    dead_lettered: u64,
    dead: Option<String>,
    fin: Option<u64>,
}

fn all_but_26_to_30() -> Vec<u64> {
    range(1, 100)
        .into_iter()
        .filter(|i| !(26..=30).contains(i))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_attempts_then_drop_counts_and_acknowledges() {
    let h = poisoned(3, OnError::Drop).await;
    h.result.unwrap();
    assert_eq!(
        h.failures, 3,
        "exactly max_attempts writes of the poisoned batch"
    );
    assert!(
        (2..=3).contains(&h.retries),
        "retries counted: {}",
        h.retries
    );
    assert_eq!(h.ids, all_but_26_to_30());
    assert_eq!(h.dropped_on_error, 5);
    assert_eq!(h.fin, Some(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_attempts_then_stop_fails_the_run_naming_the_source() {
    let h = poisoned(2, OnError::Stop).await;
    let e = format!("{:#}", h.result.unwrap_err());
    assert!(e.contains("source `s`"), "{e}");
    assert!(e.contains("2 attempts"), "{e}");
    assert_eq!(h.failures, 2);
    assert_eq!(h.ids, range(1, 25));
    assert_eq!(
        h.fin,
        Some(25),
        "the checkpoint stops before the failed batch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_attempts_then_dead_letter_writes_the_batch() {
    let h = poisoned(2, OnError::DeadLetter).await;
    h.result.unwrap();
    assert_eq!(h.ids, all_but_26_to_30());
    assert_eq!(h.dead_lettered, 5);
    let dead = h
        .dead
        .expect("default dead-letter file data_dir/dead_letter/k.ndjson");
    let msgs: Vec<String> = dead
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["sink"], "k");
            assert!(v["origin"].as_str().unwrap().contains("source `s`"), "{v}");
            v["record"]["message"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(msgs, ["26", "27", "28", "29", "30"]);
    assert_eq!(h.fin, Some(100));
}
