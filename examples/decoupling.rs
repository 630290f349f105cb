//! Scenario 2, decoupling: an order service publishes every order to the
//! `orders` topic; an inventory worker (queue group `inventory`) applies
//! them. The worker is killed mid-run: orders keep being accepted. It is
//! started again: it catches up (leases the dead worker held come back after
//! `lease_ms`) and no order is lost.
//!
//! `cargo run --release --example decoupling [-- --orders 300 --url URL]`

#[path = "common/mod.rs"]
mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use common::{ctx, field, Queue, QueueArgs};
use parking_lot::Mutex;
use serde_json::json;
use sluice::client::{Client, PullOptions};

#[derive(Debug, Clone, Parser)]
#[command(about = "Scenario 2: decoupling an order service from its inventory worker")]
struct Args {
    #[command(flatten)]
    queue: QueueArgs,
    /// Orders placed in each phase: worker up, worker down, worker back.
    #[arg(long, default_value_t = 300)]
    orders: u64,
    /// Pause between two orders.
    #[arg(long, default_value_t = 2)]
    order_every_ms: u64,
    /// How long a delivered order stays leased to a worker that does not ack it.
    #[arg(long, default_value_t = 2000)]
    lease_ms: u64,
}

/// The inventory: stock per SKU, decremented once per order (idempotent by
/// order id, since a record whose ack was lost is delivered again).
#[derive(Default)]
struct Inventory {
    applied: BTreeSet<u64>,
    stock: HashMap<u64, i64>,
    redelivered: u64,
}

const SKUS: u64 = 7;

/// The inventory worker: pulls orders, applies them, acks. Runs until aborted.
async fn inventory_worker(
    c: Client,
    topic: String,
    inv: Arc<Mutex<Inventory>>,
    lease_ms: u64,
) -> anyhow::Result<()> {
    let o = PullOptions {
        queue: true,
        max: 50,
        wait_ms: 200,
        lease_ms: Some(lease_ms),
        ..Default::default()
    };
    loop {
        let p = ctx(c.pull(&topic, "inventory", &o).await, "pull orders")?;
        let mut leases = Vec::new();
        for r in &p.records {
            let (order, sku) = (field(r, "order")?, field(r, "sku")?);
            // Some work per order, so that the kill can land mid-batch.
            tokio::time::sleep(Duration::from_micros(300)).await;
            let mut inv = inv.lock();
            if inv.applied.insert(order) {
                *inv.stock.entry(sku).or_insert(1_000) -= 1;
            } else {
                inv.redelivered += 1;
            }
            leases.extend(r.lease.clone());
        }
        if !leases.is_empty() {
            ctx(c.settle(&topic, "inventory", &leases, true).await, "ack")?;
        }
    }
}

/// Place orders `ids`; returns those the queue accepted (durably). A
/// refused order is an error: the service must never depend on the worker.
async fn place_orders(
    c: &Client,
    topic: &str,
    ids: std::ops::Range<u64>,
    pause: Duration,
) -> anyhow::Result<Vec<u64>> {
    let mut accepted = Vec::new();
    for id in ids {
        let order = json!({"key": format!("order-{id}"), "value": {"order": id, "sku": id % SKUS}});
        ctx(c.produce(topic, &[order]).await, "place order")?;
        accepted.push(id);
        tokio::time::sleep(pause).await;
    }
    Ok(accepted)
}

/// Orders published but not yet acked by the inventory group.
async fn lag(c: &Client, topic: &str) -> anyhow::Result<u64> {
    let g = ctx(c.describe_group(topic, "inventory").await, "describe group")?;
    g["lag"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no lag in {g}"))
}

struct Report {
    accepted: Vec<u64>,
    applied: Vec<u64>,
    accepted_while_down: u64,
    lag_while_down: u64,
    lag_at_end: u64,
    stock_total: i64,
}

impl Report {
    /// The story's checks: nothing lost, nothing applied twice, the queue
    /// held the orders while the worker was down and is empty at the end.
    fn check(&self) -> anyhow::Result<()> {
        if self.applied != self.accepted {
            bail!(
                "orders lost: {} accepted, {} applied",
                self.accepted.len(),
                self.applied.len()
            );
        }
        let sold = SKUS as i64 * 1_000 - self.stock_total;
        if sold != self.accepted.len() as i64 {
            bail!(
                "stock went down by {sold} for {} orders",
                self.accepted.len()
            );
        }
        if self.lag_while_down < self.accepted_while_down {
            bail!(
                "the group's lag was {} while {} orders waited",
                self.lag_while_down,
                self.accepted_while_down
            );
        }
        if self.lag_at_end != 0 {
            bail!("{} orders still unacknowledged at the end", self.lag_at_end);
        }
        Ok(())
    }
}

async fn scenario(q: &Queue, args: &Args) -> anyhow::Result<Report> {
    let c = &q.client;
    let topic = q.topic("orders");
    let n = args.orders;
    let pause = Duration::from_millis(args.order_every_ms);
    println!("queue: {}", q.describe());
    ctx(
        c.create_topic(&topic, &json!({"partitions": 2})).await,
        "create topic",
    )?;
    let inv = Arc::new(Mutex::new(Inventory::default()));
    let start = |inv: &Arc<Mutex<Inventory>>| {
        tokio::spawn(inventory_worker(
            c.clone(),
            topic.clone(),
            inv.clone(),
            args.lease_ms,
        ))
    };

    let worker = start(&inv);
    let mut accepted = place_orders(c, &topic, 0..n, pause).await?;
    let applied_before = inv.lock().applied.len();
    println!("phase 1, worker up:   {n} orders accepted, {applied_before} applied so far");

    worker.abort();
    let _ = worker.await;
    let applied_at_kill = inv.lock().applied.len();
    let while_down = place_orders(c, &topic, n..2 * n, pause).await?;
    let accepted_while_down = while_down.len() as u64;
    accepted.extend(while_down);
    let lag_while_down = lag(c, &topic).await?;
    let applied_while_down = inv.lock().applied.len() - applied_at_kill;
    println!(
        "phase 2, worker KILLED: {accepted_while_down} more orders accepted (none refused), {applied_while_down} \
         applied meanwhile; group inventory lag {lag_while_down}"
    );

    let restarted = Instant::now();
    let worker = start(&inv);
    accepted.extend(place_orders(c, &topic, 2 * n..3 * n, pause).await?);
    let total = accepted.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while (inv.lock().applied.len() as u64) < total {
        if worker.is_finished() {
            worker.await??;
            bail!("the inventory worker ended");
        }
        if Instant::now() > deadline {
            bail!("the inventory worker did not catch up within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let caught_up = restarted.elapsed();
    // Give a pending ack a moment to land before reading the lag.
    let mut lag_at_end = lag(c, &topic).await?;
    while lag_at_end > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        lag_at_end = lag(c, &topic).await?;
    }
    worker.abort();
    let _ = worker.await;

    let inv = inv.lock();
    let stock_total: i64 = inv.stock.values().sum();
    println!(
        "phase 3, worker back: {n} more orders; caught up {:.1} s after the restart; \
         {} orders applied of {total} accepted ({} deliveries again after the kill, \
         skipped as duplicates); lag {lag_at_end}; stock sold {}",
        caught_up.as_secs_f64(),
        inv.applied.len(),
        inv.redelivered,
        SKUS as i64 * 1_000 - stock_total,
    );
    Ok(Report {
        accepted,
        applied: inv.applied.iter().copied().collect(),
        accepted_while_down,
        lag_while_down,
        lag_at_end,
        stock_total,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let q = Queue::start(&args.queue).await?;
    let r = scenario(&q, &args).await;
    q.stop().await?;
    r?.check()?;
    println!("nothing lost: every accepted order was applied exactly once to the stock");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn orders_survive_the_worker_being_killed() {
        let args = Args::parse_from([
            "test",
            "--orders",
            "60",
            "--order-every-ms",
            "1",
            "--lease-ms",
            "1000",
        ]);
        let q = Queue::start(&args.queue).await.unwrap();
        let r = scenario(&q, &args).await.unwrap();
        q.stop().await.unwrap();
        assert_eq!(r.accepted.len(), 180);
        // Nothing lost across the stop/start: every accepted order applied, once.
        assert_eq!(r.applied, r.accepted);
        assert_eq!(r.stock_total, SKUS as i64 * 1_000 - 180);
        // While the worker was down the orders waited in the queue.
        assert!(
            r.lag_while_down >= r.accepted_while_down,
            "lag {}",
            r.lag_while_down
        );
        assert_eq!(r.lag_at_end, 0);
        r.check().unwrap();
    }
}
