//! The router: takes batches off one source's queue and hands each to every
//! sink whose `inputs` name the source and whose `where` condition holds
//! (publish/subscribe fan-out). A filtered batch becomes a new batch of the
//! matching records sharing the origin's acknowledgement; records no sink
//! wants are acknowledged at once. Touches queues and metrics only.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::condition::Condition;
use crate::metrics::ComponentMetrics;
use crate::queue::{BoundedQueue, PushError};
use crate::record::Record;

/// One sink a source feeds.
pub(crate) struct Route {
    pub buffer: Arc<BoundedQueue>,
    pub condition: Option<Condition>,
    pub sink_metrics: Arc<ComponentMetrics>,
    /// Routers still feeding this sink; the last one to finish closes the
    /// sink's buffer.
    pub feeders: Arc<AtomicUsize>,
}

pub(crate) async fn route(queue: Arc<BoundedQueue>, routes: Vec<Route>) {
    while let Some(batch) = queue.pop().await {
        for r in &routes {
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
            match r.buffer.push(sub).await {
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
    for r in &routes {
        if r.feeders.fetch_sub(1, Ordering::AcqRel) == 1 {
            r.buffer.close();
        }
    }
}
