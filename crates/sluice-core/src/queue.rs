//! Bounded batch queues: a source's internal queue and each sink's buffer.
//!
//! Bounded by events and bytes, with the `when_full` policy deciding what a
//! full queue does: wait (`block`), cut the incoming batch (`drop_newest`),
//! evict from the front (`drop_oldest`) or refuse the whole batch
//! (`reject`). Dropped records are acknowledged (dropped by explicit policy)
//! and counted. One lock per batch, never per record. Touches only memory.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::ack::AckRef;
use crate::config::{QueueConfig, WhenFull};
use crate::record::{Batch, Record};

#[derive(Default)]
struct Inner {
    batches: VecDeque<Batch>,
    events: usize,
    bytes: usize,
    closed: bool,
}

/// A bounded, multi-producer, multi-consumer queue of batches.
pub struct BoundedQueue {
    config: QueueConfig,
    inner: Mutex<Inner>,
    /// Signalled when something was pushed or the queue closed.
    readable: Notify,
    /// Signalled when something was popped or the queue closed.
    writable: Notify,
    dropped: AtomicU64,
    rejected: AtomicU64,
    saturated: AtomicBool,
}

/// Why a push did not enqueue everything.
#[derive(Debug)]
pub enum PushError {
    /// `reject` policy and the batch does not fit; nothing was enqueued.
    Full(Batch),
    /// The queue is closed; nothing was enqueued.
    Closed(Batch),
}

impl BoundedQueue {
    pub fn new(config: QueueConfig) -> Arc<BoundedQueue> {
        Arc::new(BoundedQueue {
            config,
            inner: Mutex::new(Inner::default()),
            readable: Notify::new(),
            writable: Notify::new(),
            dropped: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            saturated: AtomicBool::new(false),
        })
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// (events, bytes) queued now.
    pub fn depth(&self) -> (usize, usize) {
        let g = self.inner.lock();
        (g.events, g.bytes)
    }

    /// Records dropped by `drop_newest` / `drop_oldest` so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records refused by `reject` so far.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Whether a `block` push is waiting for room (back-pressure on).
    pub fn is_saturated(&self) -> bool {
        self.saturated.load(Ordering::Relaxed)
    }

    fn fits(&self, g: &Inner, events: usize, bytes: usize) -> bool {
        // An oversized batch is admitted into an empty queue, or it would
        // never get in.
        g.events == 0
            || (g.events + events <= self.config.max_events
                && g.bytes + bytes <= self.config.max_bytes)
    }

    /// Enqueues a batch according to the queue's `when_full` policy.
    pub async fn push(&self, batch: Batch) -> Result<(), PushError> {
        if batch.is_empty() {
            batch.ack.ack();
            return Ok(());
        }
        loop {
            let notified = self.writable.notified();
            {
                let mut g = self.inner.lock();
                if g.closed {
                    return Err(PushError::Closed(batch));
                }
                if self.fits(&g, batch.len(), batch.bytes) {
                    self.enqueue(&mut g, batch);
                    return Ok(());
                }
                match self.config.when_full {
                    WhenFull::Block => {}
                    WhenFull::Reject => {
                        self.rejected
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        return Err(PushError::Full(batch));
                    }
                    WhenFull::DropNewest => {
                        let keep = self.room_for(&g, &batch.records);
                        let dropped = batch.len() - keep;
                        self.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
                        if keep > 0 {
                            let kept = batch.with_records(batch.records[..keep].to_vec());
                            self.enqueue(&mut g, kept);
                        }
                        batch.ack.ack();
                        return Ok(());
                    }
                    WhenFull::DropOldest => {
                        self.evict_for(&mut g, batch.len(), batch.bytes);
                        self.enqueue(&mut g, batch);
                        return Ok(());
                    }
                }
            }
            self.saturated.store(true, Ordering::Relaxed);
            notified.await;
            self.saturated.store(false, Ordering::Relaxed);
        }
    }

    fn enqueue(&self, g: &mut Inner, batch: Batch) {
        g.events += batch.len();
        g.bytes += batch.bytes;
        g.batches.push_back(batch);
        self.readable.notify_one();
    }

    /// How many leading records of `records` fit now.
    fn room_for(&self, g: &Inner, records: &[Record]) -> usize {
        let room = self.config.max_events.saturating_sub(g.events);
        let mut bytes = g.bytes;
        records
            .iter()
            .take(room)
            .take_while(|r| {
                bytes += r.size();
                bytes <= self.config.max_bytes
            })
            .count()
    }

    /// Drops records from the front until `events`/`bytes` more fit (or the
    /// queue is empty).
    fn evict_for(&self, g: &mut Inner, events: usize, bytes: usize) {
        while g.events > 0
            && (g.events + events > self.config.max_events
                || g.bytes + bytes > self.config.max_bytes)
        {
            let Some(front) = g.batches.pop_front() else {
                break;
            };
            g.events -= front.len();
            g.bytes -= front.bytes;
            // Cut as few leading records as make room.
            let (mut ev, mut by) = (g.events + front.len(), g.bytes + front.bytes);
            let mut cut = 0;
            while cut < front.len()
                && (ev + events > self.config.max_events || by + bytes > self.config.max_bytes)
            {
                ev -= 1;
                by -= front.records[cut].size();
                cut += 1;
            }
            self.dropped.fetch_add(cut as u64, Ordering::Relaxed);
            if cut < front.len() {
                let rest = front.with_records(front.records[cut..].to_vec());
                g.events += rest.len();
                g.bytes += rest.bytes;
                g.batches.push_front(rest);
            }
            front.ack.ack();
        }
        self.writable.notify_waiters();
    }

    /// Takes the next batch; `None` once closed and empty.
    pub async fn pop(&self) -> Option<Batch> {
        loop {
            let notified = self.readable.notified();
            {
                let mut g = self.inner.lock();
                if let Some(b) = g.batches.pop_front() {
                    g.events -= b.len();
                    g.bytes -= b.bytes;
                    if !g.batches.is_empty() {
                        self.readable.notify_one();
                    }
                    drop(g);
                    self.writable.notify_waiters();
                    return Some(b);
                }
                if g.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Takes the next batch if one is queued now.
    pub fn try_pop(&self) -> Option<Batch> {
        let mut g = self.inner.lock();
        let b = g.batches.pop_front()?;
        g.events -= b.len();
        g.bytes -= b.bytes;
        drop(g);
        self.writable.notify_waiters();
        Some(b)
    }

    /// Takes the next batch if one comes within `wait`.
    pub async fn pop_timeout(&self, wait: Duration) -> Result<Option<Batch>, Elapsed> {
        tokio::time::timeout(wait, self.pop())
            .await
            .map_err(|_| Elapsed)
    }

    /// No more pushes; pops drain what is left, then return `None`.
    pub fn close(&self) {
        self.inner.lock().closed = true;
        self.readable.notify_waiters();
        self.readable.notify_one();
        self.writable.notify_waiters();
    }

    /// Drops everything queued without acknowledging it (abort path).
    pub fn abandon(&self) {
        let mut g = self.inner.lock();
        g.batches.clear();
        g.events = 0;
        g.bytes = 0;
    }
}

/// A `pop_timeout` that ran out.
#[derive(Debug)]
pub struct Elapsed;

/// Failure to hand a batch to the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the queue is full")]
    Full,
    #[error("the pipeline is shutting down")]
    Closed,
}

/// A source's handle on its internal queue.
#[derive(Clone)]
pub struct SourceOutput {
    name: Arc<str>,
    queue: Arc<BoundedQueue>,
    metrics: Arc<crate::metrics::ComponentMetrics>,
}

impl SourceOutput {
    pub fn new(
        name: Arc<str>,
        queue: Arc<BoundedQueue>,
        metrics: Arc<crate::metrics::ComponentMetrics>,
    ) -> SourceOutput {
        SourceOutput {
            name,
            queue,
            metrics,
        }
    }

    /// Hands records to the pipeline; `ack` hears when every sink is done.
    pub async fn send(&self, records: Vec<Record>, ack: AckRef) -> Result<(), SendError> {
        let batch = Batch::new(self.name.clone(), records, ack);
        let (events, bytes) = (batch.len() as u64, batch.bytes as u64);
        let tapped = self.metrics.tap.active().then(|| batch.records.clone());
        match self.queue.push(batch).await {
            Ok(()) => {
                self.metrics.record_out(events, bytes);
                if let Some(records) = tapped {
                    self.metrics.tap.publish(&self.name, &records);
                }
                Ok(())
            }
            Err(PushError::Full(_)) => Err(SendError::Full),
            Err(PushError::Closed(_)) => Err(SendError::Closed),
        }
    }

    pub fn queue(&self) -> &Arc<BoundedQueue> {
        &self.queue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::AckTracker;

    fn cfg(max_events: usize, when_full: WhenFull) -> QueueConfig {
        QueueConfig {
            max_events,
            max_bytes: usize::MAX,
            when_full,
        }
    }

    fn batch(t: &mut AckTracker<u32>, n: usize, tag: u32) -> Batch {
        let records = (0..n)
            .map(|i| Record::from_value(format!("{tag}-{i}")))
            .collect();
        Batch::new("s".into(), records, t.track(tag))
    }

    #[tokio::test]
    async fn drop_newest_cuts_the_incoming_batch_and_acks_it() {
        let mut t = AckTracker::new();
        let q = BoundedQueue::new(cfg(10, WhenFull::DropNewest));
        q.push(batch(&mut t, 7, 1)).await.unwrap();
        q.push(batch(&mut t, 7, 2)).await.unwrap();
        assert_eq!(q.depth().0, 10);
        assert_eq!(q.dropped(), 4);
        let a = q.pop().await.unwrap();
        let b = q.pop().await.unwrap();
        assert_eq!(&b.records[2].value[..], b"2-2");
        a.ack.ack();
        b.ack.ack();
        assert_eq!(t.poll(), Some(2));
    }

    #[tokio::test]
    async fn drop_oldest_evicts_from_the_front() {
        let mut t = AckTracker::new();
        let q = BoundedQueue::new(cfg(10, WhenFull::DropOldest));
        q.push(batch(&mut t, 7, 1)).await.unwrap();
        q.push(batch(&mut t, 7, 2)).await.unwrap();
        assert_eq!(q.dropped(), 4);
        let a = q.pop().await.unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(&a.records[0].value[..], b"1-4");
    }

    #[tokio::test]
    async fn reject_refuses_whole_batches() {
        let mut t = AckTracker::new();
        let q = BoundedQueue::new(cfg(10, WhenFull::Reject));
        q.push(batch(&mut t, 7, 1)).await.unwrap();
        assert!(matches!(
            q.push(batch(&mut t, 4, 2)).await,
            Err(PushError::Full(_))
        ));
        assert_eq!(q.rejected(), 4);
        q.push(batch(&mut t, 3, 3)).await.unwrap();
        assert_eq!(q.depth().0, 10);
    }

    #[tokio::test]
    async fn block_waits_for_room() {
        let mut t = AckTracker::new();
        let q = BoundedQueue::new(cfg(10, WhenFull::Block));
        q.push(batch(&mut t, 7, 1)).await.unwrap();
        let b2 = batch(&mut t, 7, 2);
        let q2 = q.clone();
        let pusher = tokio::spawn(async move { q2.push(b2).await.is_ok() });
        tokio::task::yield_now().await;
        assert!(!pusher.is_finished());
        q.pop().await.unwrap().ack.ack();
        assert!(pusher.await.unwrap());
        assert_eq!(q.dropped(), 0);
    }

    #[tokio::test]
    async fn close_drains_then_ends() {
        let mut t = AckTracker::new();
        let q = BoundedQueue::new(cfg(10, WhenFull::Block));
        q.push(batch(&mut t, 2, 1)).await.unwrap();
        q.close();
        assert!(q.pop().await.is_some());
        assert!(q.pop().await.is_none());
    }
}
