//! Scenario 3, peak shaving: a flash sale sends a burst of purchase requests
//! to a bounded topic (`limits: {max_messages, on_full: reject}`). The topic
//! accepts its capacity plus whatever the fulfilment worker freed meanwhile,
//! and answers the rest 429 at once; the worker processes the accepted
//! orders at its own pace, each exactly once.
//!
//! `cargo run --release --example peak_shaving [-- --requests 100000 --capacity 1000 --url URL]`

#[path = "common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use clap::Parser;
use common::{ctx, field, latency, Queue, QueueArgs};
use futures::StreamExt;
use serde_json::json;
use sluice::client::{Client, PullOptions};

#[derive(Debug, Clone, Parser)]
#[command(about = "Scenario 3: peak shaving a flash sale with a bounded topic")]
struct Args {
    #[command(flatten)]
    queue: QueueArgs,
    /// Purchase requests in the burst (one record each).
    #[arg(long, default_value_t = 100_000)]
    requests: u64,
    /// The topic's `max_messages` (one partition).
    #[arg(long, default_value_t = 1_000)]
    capacity: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// The worker's pace: orders per pull …
    #[arg(long, default_value_t = 50)]
    worker_batch: usize,
    /// … and its pause after each pull (so 50 per 50 ms ≈ 1,000 orders/s).
    #[arg(long, default_value_t = 50)]
    worker_pause_ms: u64,
}

/// What the burst and the worker saw.
struct Report {
    requests: u64,
    capacity: u64,
    accepted: Vec<u64>,
    rejected: u64,
    /// Orders the worker had acked when the burst ended (read just after it).
    drained_during_burst: u64,
    /// The topic's first and end offsets when the burst ended: records below
    /// `first` were trimmed (consumed) to make room.
    first_offset: u64,
    end_offset: u64,
    /// How many times the worker processed each order.
    processed: HashMap<u64, u32>,
}

/// The fulfilment worker (queue group `fulfilment`): at its own pace, until
/// `stop` is set and nothing is left.
async fn worker(
    c: Client,
    topic: String,
    args: Args,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<HashMap<u64, u32>> {
    let o = PullOptions {
        queue: true,
        max: args.worker_batch,
        wait_ms: 200,
        ..Default::default()
    };
    let mut processed: HashMap<u64, u32> = HashMap::new();
    loop {
        let p = ctx(c.pull(&topic, "fulfilment", &o).await, "pull")?;
        if p.records.is_empty() && stop.load(Ordering::SeqCst) {
            return Ok(processed);
        }
        let mut leases = Vec::new();
        for r in &p.records {
            *processed.entry(field(r, "order")?).or_default() += 1;
            leases.extend(r.lease.clone());
        }
        if !leases.is_empty() {
            ctx(c.settle(&topic, "fulfilment", &leases, true).await, "ack")?;
        }
        tokio::time::sleep(Duration::from_millis(args.worker_pause_ms)).await;
    }
}

enum Outcome {
    Accepted(u64, Duration),
    Busy(Duration),
}

async fn purchase(c: &Client, topic: &str, id: u64) -> anyhow::Result<Outcome> {
    let t = Instant::now();
    let order = json!({"value": {"order": id, "item": "limited-edition"}});
    match c.produce(topic, &[order]).await {
        Ok(_) => Ok(Outcome::Accepted(id, t.elapsed())),
        Err(e) if e.status == 429 => match e.retry_after {
            Some(_) => Ok(Outcome::Busy(t.elapsed())),
            None => Err(anyhow!("429 without Retry-After")),
        },
        Err(e) => Err(anyhow!("purchase {id}: {e}")),
    }
}

async fn scenario(q: &Queue, args: &Args) -> anyhow::Result<Report> {
    let c = &q.client;
    let topic = q.topic("flash_sale");
    println!("queue: {}", q.describe());
    let settings =
        json!({"partitions": 1, "limits": {"max_messages": args.capacity, "on_full": "reject"}});
    ctx(c.create_topic(&topic, &settings).await, "create topic")?;
    // Open the group before the burst, so consumed records can be trimmed.
    let o = PullOptions {
        queue: true,
        max: 1,
        ..Default::default()
    };
    ctx(c.pull(&topic, "fulfilment", &o).await, "open group")?;

    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(worker(c.clone(), topic.clone(), args.clone(), stop.clone()));

    let t = Instant::now();
    let mut outcomes = futures::stream::iter(0..args.requests)
        .map(|id| purchase(c, &topic, id))
        .buffer_unordered(args.concurrency);
    let (mut accepted, mut ok_lat, mut busy_lat) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(o) = outcomes.next().await {
        match o? {
            Outcome::Accepted(id, d) => {
                accepted.push(id);
                ok_lat.push(d);
            }
            Outcome::Busy(d) => busy_lat.push(d),
        }
    }
    let burst = t.elapsed();
    let d = ctx(c.describe_topic(&topic).await, "describe topic")?;
    let part = &d["partitions"][0];
    let (first_offset, end_offset) =
        match (part["first_offset"].as_u64(), part["end_offset"].as_u64()) {
            (Some(f), Some(e)) => (f, e),
            _ => bail!("unexpected topic description {d}"),
        };
    // Acked by the group (server side, read after the burst, so it covers
    // every ack that made room during it).
    let g = ctx(
        c.describe_group(&topic, "fulfilment").await,
        "describe group",
    )?;
    let lag = g["lag"].as_u64().ok_or_else(|| anyhow!("no lag in {g}"))?;
    let drained_during_burst = end_offset.saturating_sub(lag);
    let rejected = busy_lat.len() as u64;
    println!(
        "burst: {} requests in {:.2} s ({:.0} requests/s, {} at a time)",
        args.requests,
        burst.as_secs_f64(),
        args.requests as f64 / burst.as_secs_f64(),
        args.concurrency
    );
    println!(
        "accepted {} = {} queued (capacity {}) + {} the worker consumed during the burst, \
         trimmed to make room (it had acked {drained_during_burst} by the end of the burst)",
        accepted.len(),
        end_offset - first_offset,
        args.capacity,
        first_offset,
    );
    println!("rejected with 429 + Retry-After: {rejected}");
    println!(
        "latency accepted (waits for the fsync): {}",
        latency(&ok_lat)
    );
    println!(
        "latency 429 (answered at once):         {}",
        latency(&busy_lat)
    );

    stop.store(true, Ordering::SeqCst);
    let processed = w.await??;
    println!(
        "the worker processed {} orders in {:.1} s at its own pace, each once: {}",
        processed.len(),
        t.elapsed().as_secs_f64(),
        processed.values().all(|n| *n == 1)
    );
    Ok(Report {
        requests: args.requests,
        capacity: args.capacity,
        accepted,
        rejected,
        drained_during_burst,
        first_offset,
        end_offset,
        processed,
    })
}

impl Report {
    /// The story's arithmetic; an error says which part does not add up.
    fn check(&self) -> anyhow::Result<()> {
        let accepted = self.accepted.len() as u64;
        if accepted + self.rejected != self.requests {
            bail!(
                "{accepted} accepted + {} rejected != {} requests",
                self.rejected,
                self.requests
            );
        }
        if accepted != self.end_offset {
            bail!(
                "{accepted} accepted but the topic holds offsets up to {}",
                self.end_offset
            );
        }
        if self.end_offset - self.first_offset > self.capacity {
            bail!("more retained than the capacity");
        }
        if self.first_offset > self.drained_during_burst {
            bail!("more trimmed than the worker had consumed");
        }
        let mut ids: Vec<u64> = self.processed.keys().copied().collect();
        ids.sort();
        let mut acc = self.accepted.clone();
        acc.sort();
        if ids != acc || self.processed.values().any(|n| *n != 1) {
            bail!("the worker did not process every accepted order exactly once");
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let q = Queue::start(&args.queue).await?;
    let r = scenario(&q, &args).await;
    q.stop().await?;
    r?.check()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn burst_is_capacity_plus_drained_and_the_rest_gets_429() {
        let args = Args::parse_from([
            "test",
            "--requests",
            "3000",
            "--capacity",
            "100",
            "--concurrency",
            "16",
            "--worker-batch",
            "20",
            "--worker-pause-ms",
            "50",
        ]);
        let q = Queue::start(&args.queue).await.unwrap();
        let r = scenario(&q, &args).await.unwrap();
        q.stop().await.unwrap();
        let accepted = r.accepted.len() as u64;
        assert!(r.rejected > 0, "the burst met 429s");
        assert_eq!(accepted + r.rejected, 3000);
        // Accepted = what the topic retained (≤ capacity) + what the worker freed.
        assert_eq!(accepted, r.end_offset, "every 200 is a record in the topic");
        assert!(r.end_offset - r.first_offset <= 100);
        assert!(accepted >= 100, "the capacity was used");
        assert!(
            accepted <= 100 + r.drained_during_burst,
            "never more than capacity + drained"
        );
        r.check().unwrap();
    }
}
