//! Source scenarios run against both the mock cluster and tansu.
//! Touches the brokers under test.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use sluice_core::{Record, Sink, SinkBatch, SinkError};

use super::pipeline::*;

/// Acknowledges the first `limit` writes, then takes one more and never
/// answers (the unacknowledged window).
#[derive(Clone, Default)]
pub struct GateSink {
    pub limit: usize,
    pub writes: Arc<Mutex<usize>>,
    pub acked: Arc<Mutex<Vec<Record>>>,
    pub held: Arc<Mutex<Vec<Record>>>,
}

#[async_trait]
impl Sink for GateSink {
    async fn write(&mut self, batch: &SinkBatch) -> Result<(), SinkError> {
        let n = {
            let mut w = self.writes.lock();
            *w += 1;
            *w
        };
        let records = batch.records().map(|(_, r)| r.clone());
        if n <= self.limit {
            self.acked.lock().extend(records);
            Ok(())
        } else {
            self.held.lock().extend(records);
            std::future::pending().await
        }
    }
}

fn source_options(bootstrap: &str, topic: &str, group: &str) -> serde_json::Value {
    serde_json::json!({
        "brokers": [bootstrap], "topics": [topic], "group": group,
        "batch_size": 200, "commit_interval_ms": 100
    })
}

/// Reads `count` numbered records (prefix `prefix`) from `topic` in two
/// runs: the first acknowledges a few batches, holds one, and is aborted;
/// the second must read everything the first did not acknowledge, and
/// nothing it did.
pub async fn commits_only_acknowledged(bootstrap: &str, topic: &str, prefix: &str, count: u64) {
    let group = format!("{topic}-group");
    let gate = GateSink {
        limit: 5,
        ..GateSink::default()
    };
    let run = start(
        kafka_source("kin", source_options(bootstrap, topic, &group)),
        Box::new(gate.clone()),
        settings("kin", 200),
    );
    wait_for("the held batch", Duration::from_secs(60), || {
        !gate.held.lock().is_empty()
    })
    .await;
    // Let a few commit rounds pass, then stop without acknowledging the
    // held batch.
    tokio::time::sleep(Duration::from_millis(500)).await;
    run.control.abort.cancel();
    let _ = run.task.await.unwrap();

    let first: BTreeMap<u64, u32> = tally(prefix, gate.acked.lock().iter().map(|r| &r.value[..]));
    let held = gate.held.lock().len();
    assert!(!first.is_empty() && held > 0);

    let second = CollectSink::default();
    let run = start(
        kafka_source("kin", source_options(bootstrap, topic, &group)),
        Box::new(second.clone()),
        settings("kin", 1000),
    );
    let want = count as usize - first.len();
    wait_for("the rest", Duration::from_secs(60), || {
        second.records.lock().len() >= want
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    run.control.shutdown.cancel();
    run.task.await.unwrap().unwrap();

    let again: BTreeMap<u64, u32> =
        tally(prefix, second.records.lock().iter().map(|r| &r.value[..]));
    let overlap: Vec<u64> = again
        .keys()
        .filter(|k| first.contains_key(k))
        .copied()
        .collect();
    assert!(
        overlap.is_empty(),
        "acknowledged records read again: {} (first {:?})",
        overlap.len(),
        &overlap[..overlap.len().min(5)]
    );
    let mut all = first.clone();
    for (k, v) in again {
        *all.entry(k).or_insert(0) += v;
    }
    let dups = assert_complete(&all, count);
    assert_eq!(dups, 0, "duplicates within the second run");
    eprintln!(
        "{topic}: run 1 acknowledged {} and held {held}; run 2 read {}",
        first.len(),
        second.records.lock().len()
    );
}

/// Two sources share a group; the second joins mid-stream. Together they
/// read everything.
pub async fn rebalance_loses_nothing(bootstrap: &str, topic: &str, prefix: &str, count: u64) {
    let group = format!("{topic}-group");
    let a = CollectSink {
        delay: Duration::from_millis(100),
        ..CollectSink::default()
    };
    let b = a.clone_empty();
    let run_a = start(
        kafka_source("ka", source_options(bootstrap, topic, &group)),
        Box::new(a.clone()),
        settings("ka", 200),
    );
    wait_for("a started", Duration::from_secs(60), || {
        a.records.lock().len() >= 1000
    })
    .await;
    let run_b = start(
        kafka_source("kb", source_options(bootstrap, topic, &group)),
        Box::new(b.clone()),
        settings("kb", 200),
    );
    let seen = || {
        let mut t = tally(prefix, a.records.lock().iter().map(|r| &r.value[..]));
        for (k, v) in tally(prefix, b.records.lock().iter().map(|r| &r.value[..])) {
            *t.entry(k).or_insert(0) += v;
        }
        t
    };
    wait_for("everything read", Duration::from_secs(300), || {
        seen().len() as u64 >= count
    })
    .await;
    run_a.control.shutdown.cancel();
    run_b.control.shutdown.cancel();
    run_a.task.await.unwrap().unwrap();
    run_b.task.await.unwrap().unwrap();
    let t = seen();
    let dups = assert_complete(&t, count);
    eprintln!(
        "{topic}: a read {}, b read {}, {dups} duplicates",
        a.records.lock().len(),
        b.records.lock().len()
    );
    assert!(
        !b.records.lock().is_empty(),
        "the second member got no partition"
    );
}

impl CollectSink {
    pub fn clone_empty(&self) -> CollectSink {
        CollectSink {
            records: Default::default(),
            delay: self.delay,
        }
    }
}
