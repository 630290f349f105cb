//! End-to-end acknowledgements.
//!
//! Every batch a source emits carries an [`AckRef`]. Fan-out clones it: each
//! holder (a sink buffer, a sink's pending write) owns one reference and
//! either acknowledges it ([`AckRef::ack`]: durably accepted, or dropped by an
//! explicit policy) or lets it go unacknowledged (dropped, failed, aborted),
//! which marks the whole batch failed. When the last reference is gone the
//! origin hears the outcome once: through an [`AckTracker`] (sources with
//! replayable positions) or a oneshot channel (HTTP `ack: durable`).
//!
//! The tracker releases positions strictly in emission order, so a
//! checkpoint never passes a batch that some sink has not accepted; a failed
//! batch holds the checkpoint where it is until restart replays it.
//! This module touches nothing but memory and channels.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

/// Outcome of a batch once every holder released it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckStatus {
    /// Every holder acknowledged.
    Delivered,
    /// At least one holder dropped the batch without acknowledging it.
    Failed,
}

enum Completion {
    None,
    Tracker {
        tx: mpsc::UnboundedSender<(u64, AckStatus)>,
        seq: u64,
    },
    Oneshot(Mutex<Option<oneshot::Sender<AckStatus>>>),
}

struct AckInner {
    failed: AtomicBool,
    completion: Completion,
}

impl Drop for AckInner {
    fn drop(&mut self) {
        let status = if self.failed.load(Ordering::Acquire) {
            AckStatus::Failed
        } else {
            AckStatus::Delivered
        };
        match &self.completion {
            Completion::None => {}
            Completion::Tracker { tx, seq } => {
                let _ = tx.send((*seq, status));
            }
            Completion::Oneshot(slot) => {
                if let Some(tx) = slot.lock().take() {
                    let _ = tx.send(status);
                }
            }
        }
    }
}

/// One holder's reference to a batch's acknowledgement.
///
/// Dropping it without calling [`AckRef::ack`] marks the batch failed.
pub struct AckRef {
    inner: Arc<AckInner>,
    done: bool,
}

impl AckRef {
    fn with(completion: Completion) -> AckRef {
        AckRef {
            inner: Arc::new(AckInner {
                failed: AtomicBool::new(false),
                completion,
            }),
            done: false,
        }
    }

    /// A reference nobody listens to (records with no replayable origin).
    pub fn untracked() -> AckRef {
        AckRef::with(Completion::None)
    }

    /// A reference whose outcome arrives on the returned receiver.
    pub fn notify() -> (AckRef, oneshot::Receiver<AckStatus>) {
        let (tx, rx) = oneshot::channel();
        (AckRef::with(Completion::Oneshot(Mutex::new(Some(tx)))), rx)
    }

    /// This holder durably accepted the batch (or dropped it by policy).
    pub fn ack(mut self) {
        self.done = true;
    }

    /// This holder could not accept the batch.
    pub fn fail(mut self) {
        self.inner.failed.store(true, Ordering::Release);
        self.done = true;
    }
}

impl Clone for AckRef {
    fn clone(&self) -> AckRef {
        AckRef {
            inner: self.inner.clone(),
            done: false,
        }
    }
}

impl Drop for AckRef {
    fn drop(&mut self) {
        if !self.done {
            self.inner.failed.store(true, Ordering::Release);
        }
    }
}

impl std::fmt::Debug for AckRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AckRef")
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Delivered,
    Failed,
}

/// Releases source positions in emission order as their batches complete.
pub struct AckTracker<P> {
    tx: mpsc::UnboundedSender<(u64, AckStatus)>,
    rx: mpsc::UnboundedReceiver<(u64, AckStatus)>,
    next_seq: u64,
    front_seq: u64,
    pending: VecDeque<(P, State)>,
}

impl<P> Default for AckTracker<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P> AckTracker<P> {
    pub fn new() -> AckTracker<P> {
        let (tx, rx) = mpsc::unbounded_channel();
        AckTracker {
            tx,
            rx,
            next_seq: 0,
            front_seq: 0,
            pending: VecDeque::new(),
        }
    }

    /// Registers a batch that, once complete, lets the checkpoint reach `pos`.
    pub fn track(&mut self, pos: P) -> AckRef {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push_back((pos, State::Pending));
        AckRef::with(Completion::Tracker {
            tx: self.tx.clone(),
            seq,
        })
    }

    /// Batches emitted and not yet released.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// A failed batch holds the checkpoint: nothing after it is released.
    pub fn is_stuck(&self) -> bool {
        matches!(self.pending.front(), Some((_, State::Failed)))
    }

    fn record(&mut self, seq: u64, status: AckStatus) {
        if let Some(slot) = seq
            .checked_sub(self.front_seq)
            .and_then(|i| self.pending.get_mut(i as usize))
        {
            slot.1 = match status {
                AckStatus::Delivered => State::Delivered,
                AckStatus::Failed => State::Failed,
            };
        }
    }

    fn release(&mut self) -> Option<P> {
        let mut newest = None;
        while matches!(self.pending.front(), Some((_, State::Delivered))) {
            newest = self.pending.pop_front().map(|(p, _)| p);
            self.front_seq += 1;
        }
        newest
    }

    /// Takes in every completion so far; returns the newest position whose
    /// batch and all earlier ones were delivered, if it moved.
    pub fn poll(&mut self) -> Option<P> {
        while let Ok((seq, status)) = self.rx.try_recv() {
            self.record(seq, status);
        }
        self.release()
    }

    /// Waits until the released position moves and returns it. Returns
    /// `None` at once when nothing is outstanding or a failed batch holds
    /// the checkpoint (it can then never move): a `select!` loop must not
    /// poll it then (check `is_stuck`), or it spins without yielding.
    pub async fn next(&mut self) -> Option<P> {
        if let Some(p) = self.poll() {
            return Some(p);
        }
        loop {
            if self.pending.is_empty() || self.is_stuck() {
                return None;
            }
            let (seq, status) = self.rx.recv().await?;
            self.record(seq, status);
            if let Some(p) = self.poll() {
                return Some(p);
            }
            if self.is_stuck() {
                return None;
            }
        }
    }
}

impl<P> AckTracker<P> {
    /// Waits until every emitted batch completed (or one failed); returns
    /// the newest position released meanwhile. Used at shutdown before the
    /// final checkpoint.
    pub async fn settle(&mut self) -> Option<P> {
        let mut newest = self.poll();
        while self.outstanding() > 0 && !self.is_stuck() {
            match self.next().await {
                Some(p) => newest = Some(p),
                None if self.is_stuck() || self.outstanding() == 0 => break,
                None => {}
            }
        }
        newest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_in_order_only() {
        let mut t = AckTracker::new();
        let a = t.track(1);
        let b = t.track(2);
        let c = t.track(3);
        c.ack();
        assert_eq!(t.poll(), None);
        a.ack();
        assert_eq!(t.poll(), Some(1));
        b.ack();
        assert_eq!(t.poll(), Some(3));
        assert_eq!(t.outstanding(), 0);
    }

    #[test]
    fn every_clone_must_ack() {
        let mut t = AckTracker::new();
        let a = t.track(1);
        let a2 = a.clone();
        a.ack();
        assert_eq!(t.poll(), None);
        a2.ack();
        assert_eq!(t.poll(), Some(1));
    }

    #[test]
    fn an_unacked_drop_fails_and_holds_the_checkpoint() {
        let mut t = AckTracker::new();
        let a = t.track(1);
        let a2 = a.clone();
        let b = t.track(2);
        a.ack();
        drop(a2);
        b.ack();
        assert_eq!(t.poll(), None);
        assert!(t.is_stuck());
    }

    #[tokio::test]
    async fn notify_reports_outcome() {
        let (a, rx) = AckRef::notify();
        let a2 = a.clone();
        a.ack();
        a2.ack();
        assert_eq!(rx.await.unwrap(), AckStatus::Delivered);
    }
}
