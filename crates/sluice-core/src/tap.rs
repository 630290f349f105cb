//! Taps: a live sample of the records passing a component, for
//! `sluice tap` and `GET /api/v1/components/{name}/tap`.
//!
//! Every component's metrics hold one [`Tap`]. While nobody listens, the hot
//! path pays one relaxed atomic load per batch ([`Tap::active`]). While a
//! [`TapSubscription`] exists, each batch's record slice (an `Arc`, never a
//! copy of the records, never the batch's acknowledgement) goes into a small
//! broadcast channel; a subscriber that falls behind misses batches rather
//! than slowing the pipeline. Touches nothing but memory.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::record::Record;

/// Batches a subscriber may fall behind before it misses some.
const CAPACITY: usize = 64;

/// Records seen by a tap: one batch's records and the source they came from.
#[derive(Clone, Debug)]
pub struct TapBatch {
    pub source: Arc<str>,
    pub records: Arc<[Record]>,
}

/// A component's tap point.
pub struct Tap {
    subscribers: Arc<AtomicUsize>,
    tx: broadcast::Sender<TapBatch>,
}

impl Default for Tap {
    fn default() -> Self {
        Tap {
            subscribers: Arc::new(AtomicUsize::new(0)),
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl fmt::Debug for Tap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tap")
            .field("subscribers", &self.subscribers.load(Ordering::Relaxed))
            .finish()
    }
}

impl Tap {
    /// Whether anyone listens: the only cost on the hot path when nobody does.
    #[inline]
    pub fn active(&self) -> bool {
        self.subscribers.load(Ordering::Relaxed) != 0
    }

    /// Offers a batch's records to the subscribers (if any).
    #[inline]
    pub fn publish(&self, source: &Arc<str>, records: &Arc<[Record]>) {
        if self.active() && !records.is_empty() {
            let _ = self.tx.send(TapBatch {
                source: source.clone(),
                records: records.clone(),
            });
        }
    }

    /// Starts listening; the tap is active until the subscription is dropped.
    pub fn subscribe(&self) -> TapSubscription {
        let rx = self.tx.subscribe();
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        TapSubscription {
            rx,
            subscribers: self.subscribers.clone(),
        }
    }

    /// Listeners now.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::Relaxed)
    }
}

/// What a listener receives next.
#[derive(Debug)]
pub enum TapEvent {
    Batch(TapBatch),
    /// The listener fell behind and missed this many batches.
    Missed(u64),
    /// The component is gone (pipeline stopped or reloaded).
    Closed,
}

/// One listener of a tap. It does not keep the component alive: when the
/// component's metrics are dropped, [`TapSubscription::recv`] returns
/// [`TapEvent::Closed`].
pub struct TapSubscription {
    rx: broadcast::Receiver<TapBatch>,
    subscribers: Arc<AtomicUsize>,
}

impl TapSubscription {
    pub async fn recv(&mut self) -> TapEvent {
        match self.rx.recv().await {
            Ok(b) => TapEvent::Batch(b),
            Err(broadcast::error::RecvError::Lagged(n)) => TapEvent::Missed(n),
            Err(broadcast::error::RecvError::Closed) => TapEvent::Closed,
        }
    }
}

impl Drop for TapSubscription {
    fn drop(&mut self) {
        self.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: usize) -> Arc<[Record]> {
        (0..n)
            .map(|i| Record::from_value(format!("r{i}")))
            .collect::<Vec<_>>()
            .into()
    }

    #[tokio::test]
    async fn inactive_until_subscribed_and_after_drop() {
        let tap = Tap::default();
        let src: Arc<str> = "s".into();
        assert!(!tap.active());
        tap.publish(&src, &records(3));
        let mut sub = tap.subscribe();
        assert!(tap.active());
        tap.publish(&src, &records(2));
        match sub.recv().await {
            TapEvent::Batch(b) => {
                assert_eq!(b.records.len(), 2);
                assert_eq!(&*b.source, "s");
            }
            e => panic!("expected a batch, got {e:?}"),
        }
        drop(sub);
        assert!(!tap.active());
    }

    #[tokio::test]
    async fn a_slow_listener_misses_batches_and_never_blocks() {
        let tap = Tap::default();
        let src: Arc<str> = "s".into();
        let mut sub = tap.subscribe();
        for _ in 0..CAPACITY + 10 {
            tap.publish(&src, &records(1));
        }
        assert!(matches!(sub.recv().await, TapEvent::Missed(10)));
        assert!(matches!(sub.recv().await, TapEvent::Batch(_)));
    }

    #[tokio::test]
    async fn closes_when_the_component_is_gone() {
        let tap = Tap::default();
        let mut sub = tap.subscribe();
        drop(tap);
        assert!(matches!(sub.recv().await, TapEvent::Closed));
    }
}
