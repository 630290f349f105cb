//! The apply sink (`type: mysql`, `type: postgres`): turns each sink batch
//! into changes and hands them to the applier (`applier`), which runs on a
//! task of its own and owns the target connections. Batches are pipelined:
//! while the target executes one batch's statements, the engine gathers
//! the next and this sink converts it, so neither the target nor sluice
//! waits for the other. Each batch's acknowledgement follows its commit.
//! After a batch fails (target down, refused row) the applier writes
//! nothing more until the engine writes that batch again through `write`
//! (the contract of `Sink::write_pipelined`). Touches the target only
//! through the applier.

use std::panic::AssertUnwindSafe;

use async_trait::async_trait;
use futures::FutureExt;
use sluice_core::component::{PendingDurability, Sink, SinkBatch, SinkError};
use tokio::sync::{mpsc, oneshot};

use super::applier::Applier;
use super::change::Change;
use super::options::ApplyOptions;
use super::sql::Dialect;

pub use super::applier::skipped_total;

/// Batches handed to the applier and not yet taken by it, at most (more
/// would only hold memory: the target is the slower side).
const QUEUED_BATCHES: usize = 1;

/// One batch for the applier.
struct Job {
    changes: Vec<Change>,
    /// The record at this index (after `changes`) is not a row change:
    /// once `changes` are applied, the batch is refused there.
    refused: Option<(usize, String)>,
    /// Written through `write`: clears an earlier failure.
    again: bool,
    done: oneshot::Sender<Result<(), SinkError>>,
}

enum Order {
    Apply(Job),
    Close(oneshot::Sender<anyhow::Result<()>>),
}

/// A `type: mysql` / `type: postgres` sink.
pub struct ApplySink {
    /// Until the first batch (the task starts then, on the runtime).
    idle: Option<Applier>,
    orders: Option<mpsc::Sender<Order>>,
}

impl ApplySink {
    pub fn new(name: &str, opts: ApplyOptions, dialect: Dialect) -> ApplySink {
        ApplySink {
            idle: Some(Applier::new(name, opts, dialect)),
            orders: None,
        }
    }

    /// The applier's queue; starts its task on first use.
    fn orders(&mut self) -> Result<mpsc::Sender<Order>, SinkError> {
        if let Some(applier) = self.idle.take() {
            let (tx, rx) = mpsc::channel(QUEUED_BATCHES);
            tokio::spawn(run(applier, rx));
            self.orders = Some(tx);
        }
        self.orders.clone().ok_or_else(stopped)
    }

    /// Converts `batch` and queues it for the applier; returns the
    /// receiver of its outcome.
    async fn submit(
        &mut self,
        batch: &SinkBatch,
        again: bool,
    ) -> Result<oneshot::Receiver<Result<(), SinkError>>, SinkError> {
        let mut changes = Vec::with_capacity(batch.events);
        let mut refused = None;
        for (i, (source, record)) in batch.records().enumerate() {
            match Change::from_record(record, i) {
                Ok(c) => changes.push(c),
                Err(e) => {
                    let origin = sluice_core::record::describe_origin(source, record);
                    refused = Some((i, format!("{origin}: {e}")));
                    break;
                }
            }
        }
        let (done, outcome) = oneshot::channel();
        let job = Job {
            changes,
            refused,
            again,
            done,
        };
        self.orders()?
            .send(Order::Apply(job))
            .await
            .map_err(|_| stopped())?;
        Ok(outcome)
    }
}

fn stopped() -> SinkError {
    SinkError::Fatal(anyhow::anyhow!("the apply task stopped unexpectedly"))
}

/// The applier's task: applies batches in order; after a failure, refuses
/// (unwritten) every batch until one comes through `write`.
async fn run(mut applier: Applier, mut orders: mpsc::Receiver<Order>) {
    let mut failed = false;
    while let Some(order) = orders.recv().await {
        let job = match order {
            Order::Apply(job) => job,
            Order::Close(done) => {
                let _ = done.send(applier.close().await);
                return;
            }
        };
        if failed && !job.again {
            let e = anyhow::anyhow!("not written: an earlier batch failed");
            let _ = job.done.send(Err(SinkError::Retryable(e)));
            continue;
        }
        let write = applier.write(job.changes, job.refused.is_none());
        let mut r = match AssertUnwindSafe(write).catch_unwind().await {
            Ok(r) => r,
            Err(panic) => {
                let msg = sluice_core::engine::panic_message(&panic);
                let _ = job.done.send(Err(SinkError::Fatal(anyhow::anyhow!(
                    "the apply task panicked: {msg}"
                ))));
                return;
            }
        };
        if let (Ok(()), Some((index, why))) = (&r, job.refused) {
            r = Err(SinkError::Rejected {
                index,
                error: anyhow::anyhow!(why),
            });
        }
        failed = r.is_err();
        let _ = job.done.send(r);
    }
}

#[async_trait]
impl Sink for ApplySink {
    async fn write(&mut self, batch: &SinkBatch) -> Result<(), SinkError> {
        let outcome = self.submit(batch, true).await?;
        outcome.await.map_err(|_| stopped())?
    }

    async fn write_pipelined(
        &mut self,
        batch: &SinkBatch,
    ) -> Result<Option<PendingDurability>, SinkError> {
        let outcome = self.submit(batch, false).await?;
        Ok(Some(Box::pin(async move {
            outcome.await.map_err(|_| stopped())?
        })))
    }

    async fn close(&mut self) -> anyhow::Result<()> {
        if let Some(mut applier) = self.idle.take() {
            return applier.close().await;
        }
        let Some(orders) = self.orders.take() else {
            return Ok(());
        };
        let (done, closed) = oneshot::channel();
        if orders.send(Order::Close(done)).await.is_err() {
            return Ok(());
        }
        closed
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the apply task stopped before closing")))
    }
}
