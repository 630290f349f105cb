//! Pipelined sink writes (`Sink::write_pipelined`): a sink whose batches
//! become durable later than they are written (like the store's group
//! commit) gets its next batches meanwhile, and no source position is
//! released before the records up to it are durable. Durability is
//! granted one write at a time, and only while two or more are pending.

mod support;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use sluice_core::component::PendingDurability;
use sluice_core::config::WhenFull;
use sluice_core::{Control, Sink, SinkBatch, SinkError};
use support::*;

/// Shared between the sink and the test's durability clock.
#[derive(Default)]
struct Disk {
    /// Ids of each write, in write order.
    writes: Mutex<Vec<Vec<u64>>>,
    /// Writes made durable so far.
    durable_writes: AtomicUsize,
    /// Highest id made durable.
    durable_id: AtomicU64,
    /// Most writes pending durability at once.
    max_pending: AtomicUsize,
    tick: tokio::sync::Notify,
}

struct LaterSink(Arc<Disk>);

#[async_trait]
impl Sink for LaterSink {
    async fn write(&mut self, _: &SinkBatch) -> Result<(), SinkError> {
        unreachable!("the engine calls write_pipelined")
    }

    async fn write_pipelined(
        &mut self,
        batch: &SinkBatch,
    ) -> Result<Option<PendingDurability>, SinkError> {
        let ids: Vec<u64> = (0..batch.events)
            .filter_map(|i| batch.get(i))
            .map(|(_, r)| id_of(r))
            .collect();
        let disk = self.0.clone();
        let n = {
            let mut w = disk.writes.lock();
            w.push(ids);
            w.len()
        };
        let pending = n - disk.durable_writes.load(Ordering::SeqCst);
        disk.max_pending.fetch_max(pending, Ordering::SeqCst);
        Ok(Some(Box::pin(async move {
            loop {
                let woken = disk.tick.notified();
                if disk.durable_writes.load(Ordering::SeqCst) >= n {
                    return Ok(());
                }
                woken.await;
            }
        })))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_wait_for_durability_and_writes_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(Disk::default());
    let d = disk.clone();
    // A position may be released only once every id up to it is durable.
    let checker: Checker = Arc::new(move |_, pos| {
        let durable = d.durable_id.load(Ordering::SeqCst);
        match pos <= durable {
            true => Ok(()),
            false => Err(format!(
                "position {pos} released, durable only to {durable}"
            )),
        }
    });
    let (s, slog) = TestSource::with_checker(
        vec![Step::Emit {
            batches: 60,
            size: 5,
        }],
        checker,
    );
    let mut p = pipeline(dir.path());
    p.add_source("s", "test", s, queue(1000, WhenFull::Block));
    let mut ks = settings(&["s"]);
    ks.batch.max_events = 5;
    ks.batch.timeout_ms = 0;
    p.add_sink("k", "test", Box::new(LaterSink(disk.clone())), ks);
    // The durability clock: one more write durable only while at least
    // two are pending or once the source has sent everything, whatever
    // the speed of the machine. So the runner's second write always
    // happens while the first is pending: a runner that waited for each
    // write's durability would never see two pending.
    let clock = {
        let disk = disk.clone();
        let slog = slog.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
                let all_sent = slog.lock().sent.len() == 300;
                let w = disk.writes.lock();
                let done = disk.durable_writes.load(Ordering::SeqCst);
                if done < w.len() && (w.len() - done >= 2 || all_sent) {
                    let last = w[done].iter().copied().max().unwrap_or(0);
                    disk.durable_id.fetch_max(last, Ordering::SeqCst);
                    disk.durable_writes.store(done + 1, Ordering::SeqCst);
                    disk.tick.notify_waiters();
                }
            }
        })
    };
    run(p, Control::default()).await.unwrap();
    clock.abort();

    let written: Vec<u64> = disk.writes.lock().iter().flatten().copied().collect();
    assert_eq!(
        written,
        range(1, 300),
        "every record written once, in order"
    );
    let log = slog.lock();
    assert!(log.violations.is_empty(), "{:?}", log.violations);
    assert_eq!(log.final_checkpoint, Some(300));
    let max = disk.max_pending.load(Ordering::SeqCst);
    assert!(
        (2..=16).contains(&max),
        "writes should overlap pending durability, at most 16: {max}"
    );
}

/// A sink that applies in order behind its writes (like replica apply):
/// batches are committed when their pending future runs. Its third batch
/// fails retryably once, and record 151 is refused (`Rejected`) whenever
/// it is in a batch; after a failure it writes nothing pipelined until
/// `write` is called (the contract of `write_pipelined`).
#[derive(Default)]
struct Applier {
    committed: Mutex<Vec<u64>>,
    failed: std::sync::atomic::AtomicBool,
    calls: AtomicUsize,
    plain_writes: AtomicUsize,
    /// Pipelined batches refused unwritten because an earlier one failed.
    refused_unwritten: AtomicUsize,
}

impl Applier {
    /// Commits `ids` (in order) unless this write fails; `again`: it came
    /// through `write`.
    fn apply(&self, ids: &[u64], again: bool) -> Result<(), SinkError> {
        if again {
            self.failed.store(false, Ordering::SeqCst);
        } else if self.failed.load(Ordering::SeqCst) {
            self.refused_unwritten.fetch_add(1, Ordering::SeqCst);
            return Err(SinkError::retryable(anyhow::anyhow!("earlier failure")));
        }
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call == 2 {
            self.failed.store(true, Ordering::SeqCst);
            return Err(SinkError::retryable(anyhow::anyhow!("target went away")));
        }
        let mut committed = self.committed.lock();
        for (i, id) in ids.iter().enumerate() {
            if *id == 151 {
                self.failed.store(true, Ordering::SeqCst);
                return Err(SinkError::Rejected {
                    index: i,
                    error: anyhow::anyhow!("151 refused"),
                });
            }
            committed.push(*id);
        }
        Ok(())
    }
}

struct BehindSink(Arc<Applier>);

fn ids_of(batch: &SinkBatch) -> Vec<u64> {
    (0..batch.events)
        .filter_map(|i| batch.get(i))
        .map(|(_, r)| id_of(r))
        .collect()
}

#[async_trait]
impl Sink for BehindSink {
    async fn write(&mut self, batch: &SinkBatch) -> Result<(), SinkError> {
        self.0.plain_writes.fetch_add(1, Ordering::SeqCst);
        self.0.apply(&ids_of(batch), true)
    }

    async fn write_pipelined(
        &mut self,
        batch: &SinkBatch,
    ) -> Result<Option<PendingDurability>, SinkError> {
        let ids = ids_of(batch);
        let applier = self.0.clone();
        Ok(Some(Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            applier.apply(&ids, false)
        })))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_pending_write_is_written_again_with_everything_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let applier = Arc::new(Applier::default());
    let (s, slog) = TestSource::new(vec![Step::Emit {
        batches: 60,
        size: 5,
    }]);
    let mut p = pipeline(dir.path());
    p.add_source("s", "test", s, queue(1000, WhenFull::Block));
    let mut ks = settings(&["s"]);
    ks.batch.max_events = 5;
    ks.batch.timeout_ms = 0;
    ks.retry.initial_backoff_ms = 1;
    ks.on_error = sluice_core::config::OnError::Drop;
    p.add_sink("k", "test", Box::new(BehindSink(applier.clone())), ks);
    run(p, Control::default()).await.unwrap();

    let committed = applier.committed.lock().clone();
    let want: Vec<u64> = range(1, 300).into_iter().filter(|i| *i != 151).collect();
    assert_eq!(committed, want, "each record committed once, in order");
    assert!(applier.plain_writes.load(Ordering::SeqCst) >= 2);
    assert!(
        applier.refused_unwritten.load(Ordering::SeqCst) > 0,
        "later batches were pending when one failed"
    );
    let log = slog.lock();
    assert_eq!(log.final_checkpoint, Some(300));
}
