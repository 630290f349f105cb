//! The source's offset book: which offsets the pipeline acknowledged, which
//! were committed, which partitions the group gave us; and the consumer
//! context that keeps it right across rebalances.
//!
//! Every emitted batch is tracked with a snapshot of the next offset of
//! every partition read so far; the [`AckTracker`] releases snapshots in
//! emission order, so a released offset means every record before it, in
//! every batch before it, was acknowledged. Only such offsets are ever
//! committed, and only for partitions we own. On a revoke the context waits
//! (bounded) for in-flight batches, then commits what was acknowledged
//! synchronously before librdkafka hands the partitions over.
//! Touches memory and, through the consumer it is given, the group
//! coordinator.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::{Offset, TopicPartitionList};
use sluice_core::{AckRef, AckTracker};

use crate::client::ClientCx;

/// A topic partition.
pub type Tp = (Arc<str>, i32);

/// Next offset to read, per partition, as of one emitted batch.
pub type Snapshot = Vec<(Tp, i64)>;

#[derive(Default)]
struct Inner {
    tracker: AckTracker<Snapshot>,
    acked: HashMap<Tp, i64>,
    committed: HashMap<Tp, i64>,
    assigned: HashSet<Tp>,
    epoch: u64,
}

impl Inner {
    /// Takes in acknowledgements.
    fn absorb(&mut self) {
        if let Some(snapshot) = self.tracker.poll() {
            for (tp, next) in snapshot {
                let e = self.acked.entry(tp).or_insert(next);
                *e = (*e).max(next);
            }
        }
    }

    /// Acknowledged offsets not committed yet, of owned partitions in
    /// `only` (all owned when `None`); marked committed.
    fn due(&mut self, only: Option<&HashSet<Tp>>) -> Option<TopicPartitionList> {
        self.absorb();
        let mut tpl = TopicPartitionList::new();
        for (tp, &next) in &self.acked {
            let wanted = only.map_or(self.assigned.contains(tp), |o| o.contains(tp));
            if wanted && self.committed.get(tp).is_none_or(|&c| c < next) {
                let _ = tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(next));
                self.committed.insert(tp.clone(), next);
            }
        }
        (tpl.count() > 0).then_some(tpl)
    }
}

/// Shared between the source task and the consumer context.
pub struct OffsetBook {
    inner: Mutex<Inner>,
    drain: Duration,
    component: Arc<str>,
}

impl OffsetBook {
    pub fn new(component: &str, drain: Duration) -> Arc<OffsetBook> {
        Arc::new(OffsetBook {
            inner: Mutex::new(Inner::default()),
            drain,
            component: component.into(),
        })
    }

    /// Registers an emitted batch.
    pub fn track(&self, snapshot: Snapshot) -> AckRef {
        self.inner.lock().tracker.track(snapshot)
    }

    /// Changes on every assignment change.
    pub fn epoch(&self) -> u64 {
        self.inner.lock().epoch
    }

    pub fn is_assigned(&self, tp: &Tp) -> bool {
        self.inner.lock().assigned.contains(tp)
    }

    /// Batches emitted and not yet released; whether a failed one holds
    /// the commits.
    pub fn outstanding(&self) -> (usize, bool) {
        let mut g = self.inner.lock();
        g.absorb();
        (g.tracker.outstanding(), g.tracker.is_stuck())
    }

    /// Acknowledged offsets (of owned partitions) that wait to be committed.
    pub fn due(&self) -> Option<TopicPartitionList> {
        self.inner.lock().due(None)
    }

    /// The acknowledged offset of a partition, for tests and diagnostics.
    pub fn acked(&self, topic: &str, partition: i32) -> Option<i64> {
        let mut g = self.inner.lock();
        g.absorb();
        g.acked.get(&(Arc::from(topic), partition)).copied()
    }

    /// Forgets that `tpl` was committed, so the next round commits it again.
    fn commit_failed(&self, tpl: &TopicPartitionList) {
        let mut g = self.inner.lock();
        for e in tpl.elements() {
            g.committed.remove(&(Arc::from(e.topic()), e.partition()));
        }
    }

    /// Commits what is due; asynchronously unless `sync`.
    pub fn commit<C: ConsumerContext>(&self, consumer: &impl Consumer<C>, sync: bool) {
        if let Some(tpl) = self.due() {
            let mode = if sync {
                CommitMode::Sync
            } else {
                CommitMode::Async
            };
            if let Err(e) = consumer.commit(&tpl, mode) {
                tracing::warn!(source = %self.component, "kafka offset commit failed (will retry): {e}");
                self.commit_failed(&tpl);
            }
        }
    }

    /// Waits up to the drain budget for every emitted batch to complete.
    fn drain_blocking(&self) {
        let deadline = Instant::now() + self.drain;
        loop {
            let (outstanding, stuck) = self.outstanding();
            if outstanding == 0 || stuck || Instant::now() >= deadline {
                if outstanding > 0 {
                    tracing::info!(source = %self.component, "rebalance: {outstanding} batches still unacknowledged; they will be read again by the next owner");
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Commits what is acknowledged of `revoked`, synchronously.
    fn commit_revoked<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        revoked: &HashSet<Tp>,
    ) {
        let due = self.inner.lock().due(Some(revoked));
        if let Some(due) = due {
            if let Err(e) = consumer.commit(&due, CommitMode::Sync) {
                tracing::warn!(source = %self.component, "kafka commit on revoke failed: {e} (the next owner re-reads from the previous commit)");
                self.commit_failed(&due);
            }
        }
    }

    fn revoke<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, tpl: &TopicPartitionList) {
        let revoked: HashSet<Tp> = tpl
            .elements()
            .iter()
            .map(|e| (Arc::from(e.topic()), e.partition()))
            .collect();
        // What is acknowledged already goes first, in case the wait below
        // outlasts the group's patience.
        self.commit_revoked(consumer, &revoked);
        // Blocking here stalls this worker thread only; the sinks run on
        // the others. A current-thread runtime cannot make progress while
        // we wait, so there we commit only what is acknowledged already.
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi && !self.drain.is_zero() {
            tokio::task::block_in_place(|| self.drain_blocking());
            self.commit_revoked(consumer, &revoked);
        }
        let mut g = self.inner.lock();
        for tp in &revoked {
            g.assigned.remove(tp);
            g.committed.remove(tp);
        }
        g.epoch += 1;
        tracing::info!(source = %self.component, "kafka partitions revoked: {}", list(&revoked));
    }

    /// Partitions now owned (after a rebalance, or given by the source's
    /// `partitions` option).
    pub fn assign(&self, tpl: &TopicPartitionList) {
        let mut g = self.inner.lock();
        let added: HashSet<Tp> = tpl
            .elements()
            .iter()
            .map(|e| (Arc::from(e.topic()), e.partition()))
            .collect();
        g.assigned.extend(added.iter().cloned());
        g.epoch += 1;
        tracing::info!(source = %self.component, "kafka partitions assigned: {}", list(&added));
    }
}

fn list(tps: &HashSet<Tp>) -> String {
    let mut v: Vec<String> = tps.iter().map(|(t, p)| format!("{t}/{p}")).collect();
    v.sort();
    v.join(", ")
}

/// The consumer's client context: logging, rebalances, commit results.
pub struct ConsumerCx {
    pub client: ClientCx,
    pub book: Arc<OffsetBook>,
}

impl ClientContext for ConsumerCx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.client.log(level, fac, message)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.client.error(error, reason)
    }
}

impl ConsumerContext for ConsumerCx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => self.book.revoke(consumer, tpl),
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => {
                tracing::warn!(source = %self.book.component, "kafka rebalance error: {e}")
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.book.assign(tpl);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(source = %self.book.component, "kafka offset commit failed (will retry): {e}");
            self.book.commit_failed(offsets);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> Tp {
        (Arc::from("t"), p)
    }

    #[test]
    fn commits_only_released_offsets_of_owned_partitions() {
        let book = OffsetBook::new("s", Duration::ZERO);
        book.inner.lock().assigned.extend([tp(0), tp(1)]);
        let a = book.track(vec![(tp(0), 10)]);
        let b = book.track(vec![(tp(0), 10), (tp(1), 5)]);
        let c = book.track(vec![(tp(0), 20), (tp(1), 5), (tp(2), 7)]);
        b.ack();
        c.ack();
        assert!(book.due().is_none(), "a is not acknowledged yet");
        a.ack();
        let due = book.due().unwrap();
        let mut got: Vec<(i32, Offset)> = due
            .elements()
            .iter()
            .map(|e| (e.partition(), e.offset()))
            .collect();
        got.sort_by_key(|g| g.0);
        // Partition 2 is not ours: never committed.
        assert_eq!(got, vec![(0, Offset::Offset(20)), (1, Offset::Offset(5))]);
        assert!(book.due().is_none());
        book.commit_failed(&due);
        assert_eq!(book.due().unwrap().count(), 2);
    }

    #[test]
    fn a_failed_batch_holds_every_later_offset() {
        let book = OffsetBook::new("s", Duration::ZERO);
        book.inner.lock().assigned.insert(tp(0));
        let a = book.track(vec![(tp(0), 10)]);
        let b = book.track(vec![(tp(0), 20)]);
        drop(a);
        b.ack();
        assert!(book.due().is_none());
        assert_eq!(book.outstanding(), (2, true));
    }
}
