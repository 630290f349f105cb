//! The router: takes batches off one source's queue and hands each to every
//! sink whose `inputs` name the source and whose `where` condition holds
//! (publish/subscribe fan-out). A filtered batch becomes a new batch of the
//! matching records sharing the origin's acknowledgement; records no sink
//! wants are acknowledged at once.
//!
//! A router reads its routes from a [`RouteTable`] once per batch, so a
//! reload can swap them while data flows. A sink's buffer stays open while
//! any [`Feed`] of it lives (the engine holds one, every route list holding
//! the sink holds one): when the last goes — the engine let go and no router
//! can push to it any more — the buffer closes and the sink drains and ends.
//! Touches queues and metrics only.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::condition::Condition;
use crate::metrics::ComponentMetrics;
use crate::queue::{BoundedQueue, PushError};
use crate::record::Record;

/// The right to push into one sink instance's buffer; the buffer closes
/// when the last one is dropped.
pub(crate) struct Feed {
    pub buffer: Arc<BoundedQueue>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.buffer.close();
    }
}

/// One sink a source feeds.
pub(crate) struct Route {
    pub feed: Arc<Feed>,
    pub condition: Option<Condition>,
    pub sink_metrics: Arc<ComponentMetrics>,
}

/// The routes of one router, swappable while it runs.
#[derive(Default)]
pub(crate) struct RouteTable(RwLock<Arc<[Route]>>);

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> Arc<RouteTable> {
        Arc::new(RouteTable(RwLock::new(routes.into())))
    }

    /// Batches popped from now on go to `routes`.
    pub fn swap(&self, routes: Vec<Route>) {
        let old = std::mem::replace(&mut *self.0.write(), routes.into());
        drop(old);
    }

    fn current(&self) -> Arc<[Route]> {
        self.0.read().clone()
    }
}

pub(crate) async fn route(queue: Arc<BoundedQueue>, table: Arc<RouteTable>) {
    while let Some(batch) = queue.pop().await {
        let routes = table.current();
        for r in routes.iter() {
            let sub = match &r.condition {
                None => batch.clone(),
                Some(c) => {
                    let matching: Vec<Record> = batch
                        .records
                        .iter()
                        .filter(|x| c.matches(x))
                        .cloned()
                        .collect();
                    let filtered = batch.len() - matching.len();
                    if filtered > 0 {
                        r.sink_metrics
                            .filtered
                            .fetch_add(filtered as u64, Ordering::Relaxed);
                    }
                    if matching.is_empty() {
                        continue;
                    }
                    if filtered == 0 {
                        batch.clone()
                    } else {
                        batch.with_records(matching)
                    }
                }
            };
            match r.feed.buffer.push(sub).await {
                Ok(()) => {}
                // A sink buffer that rejects drops, counted by the queue.
                Err(PushError::Full(b)) => b.ack.ack(),
                // The sink has stopped: the batch stays unacknowledged, so
                // no checkpoint passes it.
                Err(PushError::Closed(b)) => drop(b),
            }
        }
        batch.ack.ack();
    }
    // Let go of every sink this router fed.
    table.swap(Vec::new());
}
