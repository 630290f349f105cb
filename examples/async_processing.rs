//! Scenario 1, asynchronous processing: a registration service writes the
//! user, publishes `user_registered` to the queue and answers; a mail worker
//! and an SMS worker (two stream groups) each receive every event and do
//! the slow work afterwards. Prints the registration latency with the queue
//! next to the latency of sending the mail and the SMS inline.
//!
//! `cargo run --release --example async_processing [-- --users 50 --url URL]`

#[path = "common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use common::{ctx, field, latency, pull_stream, Queue, QueueArgs};
use parking_lot::Mutex;
use serde_json::json;
use sluice::client::Client;

#[derive(Debug, Clone, Parser)]
#[command(about = "Scenario 1: asynchronous processing of a user registration")]
struct Args {
    #[command(flatten)]
    queue: QueueArgs,
    /// Users registered in each of the two runs (inline, then queued).
    #[arg(long, default_value_t = 50)]
    users: u64,
    /// Simulated latency of the mail provider, per mail.
    #[arg(long, default_value_t = 40)]
    mail_ms: u64,
    /// Simulated latency of the SMS gateway, per SMS.
    #[arg(long, default_value_t = 25)]
    sms_ms: u64,
}

/// The user table (in memory: both runs write it the same way).
#[derive(Default)]
struct UserDb(Mutex<HashMap<u64, String>>);

impl UserDb {
    fn insert(&self, id: u64, email: String) {
        self.0.lock().insert(id, email);
    }
}

/// A slow external service (mail provider, SMS gateway): each call takes
/// `latency` and is recorded, in order, in `sent`.
struct Provider {
    latency: Duration,
    sent: Mutex<Vec<u64>>,
}

impl Provider {
    fn new(ms: u64) -> Arc<Provider> {
        Arc::new(Provider {
            latency: Duration::from_millis(ms),
            sent: Mutex::new(Vec::new()),
        })
    }

    async fn send(&self, user: u64) {
        tokio::time::sleep(self.latency).await;
        self.sent.lock().push(user);
    }

    fn count(&self) -> usize {
        self.sent.lock().len()
    }
}

/// What the scenario observed.
struct Report {
    registered: Vec<u64>,
    inline: Vec<Duration>,
    queued: Vec<Duration>,
    /// User ids in the order each worker sent them (queued run).
    mails: Vec<u64>,
    sms: Vec<u64>,
}

impl Report {
    /// The story's check: each group got every registration once, in order.
    fn check(&self) -> anyhow::Result<()> {
        let runs = [self.inline.len(), self.queued.len()];
        if runs != [self.registered.len(); 2] {
            bail!("a registration was not measured");
        }
        for (group, sent) in [("mail", &self.mails), ("sms", &self.sms)] {
            if sent != &self.registered {
                bail!(
                    "group {group} sent {} for {} registrations, not each once in order",
                    sent.len(),
                    self.registered.len()
                );
            }
        }
        Ok(())
    }
}

/// Registration doing everything before answering.
async fn register_inline(db: &UserDb, mail: &Provider, sms: &Provider, id: u64) {
    db.insert(id, format!("user{id}@example.com"));
    mail.send(id).await;
    sms.send(id).await;
}

/// Registration that publishes the event and answers.
async fn register_queued(db: &UserDb, c: &Client, topic: &str, id: u64) -> anyhow::Result<()> {
    let email = format!("user{id}@example.com");
    db.insert(id, email.clone());
    let event = json!({"key": format!("user-{id}"), "value": {"user": id, "email": email}});
    ctx(c.produce(topic, &[event]).await, "publish user_registered")?;
    Ok(())
}

/// A worker of stream group `group`: every event, sent through `provider`,
/// until `stop` is set and nothing is left.
async fn worker(
    c: Client,
    topic: String,
    group: &'static str,
    provider: Arc<Provider>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    loop {
        let mut users = Vec::new();
        let n = pull_stream(&c, &topic, group, 200, |r| users.push(field(r, "user"))).await?;
        for u in users {
            provider.send(u?).await;
        }
        if n == 0 && stop.load(Ordering::SeqCst) {
            return Ok(());
        }
    }
}

async fn scenario(q: &Queue, args: &Args) -> anyhow::Result<Report> {
    let c = &q.client;
    let topic = q.topic("user_registered");
    println!("queue: {}", q.describe());

    // Run 1: the mail and the SMS are sent inside the request.
    let db = UserDb::default();
    let (mail, sms) = (Provider::new(args.mail_ms), Provider::new(args.sms_ms));
    let mut inline = Vec::new();
    for id in 0..args.users {
        let t = Instant::now();
        register_inline(&db, &mail, &sms, id).await;
        inline.push(t.elapsed());
    }

    // Run 2: publish `user_registered`; the workers send afterwards.
    ctx(c.create_topic(&topic, &json!({})).await, "create topic")?;
    let (mail, sms) = (Provider::new(args.mail_ms), Provider::new(args.sms_ms));
    let stop = Arc::new(AtomicBool::new(false));
    let workers = [("mail", &mail), ("sms", &sms)].map(|(group, p)| {
        let fut = worker(c.clone(), topic.clone(), group, p.clone(), stop.clone());
        tokio::spawn(fut)
    });
    let mut queued = Vec::new();
    let first = args.users;
    let registered: Vec<u64> = (first..first + args.users).collect();
    for &id in &registered {
        let t = Instant::now();
        register_queued(&db, c, &topic, id).await?;
        queued.push(t.elapsed());
    }
    let mails_at_last_answer = mail.count();
    stop.store(true, Ordering::SeqCst);
    let caught_up = Instant::now();
    for w in workers {
        w.await??;
    }
    println!(
        "registered {} users with the queue; when the last registration returned the mail \
         worker had sent {mails_at_last_answer} mails; both workers were done {:.0} ms later",
        args.users,
        caught_up.elapsed().as_secs_f64() * 1000.0
    );
    println!(
        "registration latency, mail + SMS inline: {} (mail {} ms + SMS {} ms)",
        latency(&inline),
        args.mail_ms,
        args.sms_ms
    );
    println!(
        "registration latency, with the queue:    {} (the answer waits for the durable append)",
        latency(&queued)
    );
    let (mails, sms) = (mail.sent.lock().clone(), sms.sent.lock().clone());
    println!(
        "group mail sent {} mails, group sms sent {} SMS, for {} registrations",
        mails.len(),
        sms.len(),
        registered.len()
    );
    Ok(Report {
        registered,
        inline,
        queued,
        mails,
        sms,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let q = Queue::start(&args.queue).await?;
    let r = scenario(&q, &args).await;
    q.stop().await?;
    r?.check()?;
    println!("each group got every registration once, in order");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn every_group_gets_every_registration_once_in_order() {
        let args = Args::parse_from(["test", "--users", "20", "--mail-ms", "20", "--sms-ms", "10"]);
        let q = Queue::start(&args.queue).await.unwrap();
        let r = scenario(&q, &args).await.unwrap();
        q.stop().await.unwrap();
        assert_eq!(r.registered.len(), 20);
        assert_eq!(r.inline.len(), 20);
        assert_eq!(r.queued.len(), 20);
        // Two stream groups: each sees every event, once, in publish order.
        assert_eq!(r.mails, r.registered, "mail group");
        assert_eq!(r.sms, r.registered, "sms group");
        r.check().unwrap();
    }
}
