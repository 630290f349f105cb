//! Scenario 4, messaging: (a) point-to-point chat — Alice and Bob each read
//! their own inbox topic as a queue group and write into the other's; (b) a
//! chat room — N members subscribed by push (server-sent events), each in
//! its own stream group, each seeing every message of the room in the same
//! order while several members speak at once.
//!
//! `cargo run --release --example messaging [-- --members 5 --messages 20 --url URL]`

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use clap::Parser;
use common::{ctx, field, latency, Queue, QueueArgs};
use futures::StreamExt;
use serde_json::json;
use sluice::client::{Client, OutRecord, PullOptions};

#[derive(Debug, Clone, Parser)]
#[command(about = "Scenario 4: point-to-point chat and a chat room over the queue")]
struct Args {
    #[command(flatten)]
    queue: QueueArgs,
    /// Messages Alice sends Bob (each answered).
    #[arg(long, default_value_t = 20)]
    chat: u64,
    /// Members of the chat room (each subscribed by push).
    #[arg(long, default_value_t = 5)]
    members: usize,
    /// Members who speak in the room, at the same time.
    #[arg(long, default_value_t = 3)]
    speakers: usize,
    /// Messages each speaker posts.
    #[arg(long, default_value_t = 20)]
    messages: u64,
}

const NAMES: [&str; 8] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
];

/// A chat message as the receiver sees it.
#[derive(Debug, Clone, PartialEq)]
struct Msg {
    offset: u64,
    from: String,
    seq: u64,
    text: String,
}

impl Msg {
    fn of(r: &OutRecord) -> anyhow::Result<Msg> {
        Ok(Msg {
            offset: r.offset,
            from: r.value["from"].as_str().unwrap_or_default().to_string(),
            seq: field(r, "seq")?,
            text: r.value["text"].as_str().unwrap_or_default().to_string(),
        })
    }
}

/// One side of a point-to-point chat: reads its inbox (queue group named
/// after itself), writes into the peer's.
struct Peer {
    name: &'static str,
    inbox: String,
    c: Client,
}

impl Peer {
    async fn send(&self, to: &str, seq: u64, text: &str) -> anyhow::Result<()> {
        let m = json!({"key": self.name, "value": {"from": self.name, "seq": seq, "text": text}});
        ctx(self.c.produce(to, &[m]).await, "send")?;
        Ok(())
    }

    /// Messages waiting in the inbox (long polling), acknowledged once read.
    async fn receive(&self) -> anyhow::Result<Vec<Msg>> {
        let o = PullOptions {
            queue: true,
            max: 100,
            wait_ms: 1000,
            ..Default::default()
        };
        let p = ctx(self.c.pull(&self.inbox, self.name, &o).await, "receive")?;
        let leases: Vec<String> = p.records.iter().filter_map(|r| r.lease.clone()).collect();
        if !leases.is_empty() {
            ctx(
                self.c.settle(&self.inbox, self.name, &leases, true).await,
                "ack",
            )?;
        }
        p.records.iter().map(Msg::of).collect()
    }
}

struct Report {
    /// What Bob received from Alice, and Alice's replies from Bob, in order.
    bob_got: Vec<Msg>,
    alice_got: Vec<Msg>,
    /// Per room member: the messages it was pushed, in order.
    room: Vec<(String, Vec<Msg>)>,
    /// (speaker, messages posted).
    spoken: Vec<(String, u64)>,
}

/// (a) Alice sends `n` messages; Bob answers each as it arrives.
async fn point_to_point(q: &Queue, n: u64) -> anyhow::Result<(Vec<Msg>, Vec<Msg>)> {
    let peer = |name| Peer {
        name,
        inbox: q.topic(&format!("inbox.{name}")),
        c: q.client.clone(),
    };
    let (alice, bob) = (peer("alice"), peer("bob"));
    for p in [&alice, &bob] {
        ctx(
            q.client.create_topic(&p.inbox, &json!({})).await,
            "create inbox",
        )?;
    }
    let (alice_inbox, bob_inbox) = (alice.inbox.clone(), bob.inbox.clone());
    let bob_task = tokio::spawn(async move {
        let mut got = Vec::new();
        while (got.len() as u64) < n {
            for m in bob.receive().await? {
                bob.send(&alice_inbox, m.seq, &format!("re: {}", m.text))
                    .await?;
                got.push(m);
            }
        }
        anyhow::Ok(got)
    });
    let mut round_trips = Vec::new();
    let mut alice_got = Vec::new();
    for seq in 0..n {
        let t = Instant::now();
        alice
            .send(&bob_inbox, seq, &format!("message {seq} from alice"))
            .await?;
        // Wait for Bob's answer to this one.
        while !alice_got.iter().any(|m: &Msg| m.seq == seq) {
            alice_got.extend(alice.receive().await?);
        }
        round_trips.push(t.elapsed());
    }
    let bob_got = bob_task.await??;
    for (a, b) in bob_got.iter().zip(&alice_got).take(2) {
        println!(
            "  bob   <- {}: {}\n  alice <- {}: {}",
            a.from, a.text, b.from, b.text
        );
    }
    println!(
        "chat: alice sent {n}, bob received {} and answered each; alice received {} answers; \
         round trip {}",
        bob_got.len(),
        alice_got.len(),
        latency(&round_trips)
    );
    Ok((bob_got, alice_got))
}

/// A room member: subscribes by push (its own stream group, from the
/// room's beginning, `auto_ack`), says it is ready once the subscription is
/// open, and collects `expect` messages (or fails after 60 s).
async fn member(
    req: reqwest::RequestBuilder,
    name: String,
    expect: usize,
    ready: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<(String, Vec<Msg>)> {
    let resp = req.send().await?;
    if resp.status() != 200 {
        bail!("{name}: subscribe answered {}", resp.status());
    }
    let _ = ready.send(());
    let mut body = resp.bytes_stream();
    let (mut buf, mut got) = (String::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.len() < expect {
        let chunk = match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(c)) => c?,
            Ok(None) => bail!("{name}: the stream ended after {} messages", got.len()),
            Err(_) => bail!(
                "{name}: only {} of {expect} messages within 60 s",
                got.len()
            ),
        };
        buf.push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
        // Server-sent events: `event:` / `data:` lines, a blank line ends one.
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let (mut kind, mut data) = ("", String::new());
            for line in event.lines() {
                if let Some(k) = line.strip_prefix("event:") {
                    kind = k.trim();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.strip_prefix(' ').unwrap_or(d));
                }
            }
            match kind {
                "record" => got.push(Msg::of(&serde_json::from_str::<OutRecord>(&data)?)?),
                "error" => bail!("{name}: the subscription failed: {data}"),
                _ => {}
            }
        }
    }
    Ok((name, got))
}

/// (b) The room: every member subscribed, several speak at once.
async fn chat_room(
    q: &Queue,
    args: &Args,
) -> anyhow::Result<(Vec<(String, Vec<Msg>)>, Vec<(String, u64)>)> {
    let room = q.topic("room.general");
    ctx(
        q.client
            .create_topic(&room, &json!({"partitions": 1}))
            .await,
        "create room",
    )?;
    let expect = args.speakers * args.messages as usize;
    let http = reqwest::Client::new();
    let mut members = Vec::new();
    for name in NAMES.iter().take(args.members) {
        let path = format!(
            "/api/v1/topics/{}/subscribe?group=member-{name}&from=earliest&auto_ack=true",
            sluice::client::enc(&room)
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        members.push(tokio::spawn(member(
            q.get(&http, &path),
            name.to_string(),
            expect,
            tx,
        )));
        rx.await
            .map_err(|_| anyhow!("{name} could not subscribe"))?;
    }
    let t = Instant::now();
    let speakers: Vec<_> = NAMES
        .iter()
        .take(args.speakers)
        .map(|name| {
            let (c, room, n) = (q.client.clone(), room.clone(), args.messages);
            tokio::spawn(async move {
                for seq in 0..n {
                    let text = format!("{name} says #{seq}");
                    let m = json!({"key": name, "value": {"from": name, "seq": seq, "text": text}});
                    ctx(c.produce(&room, &[m]).await, "post")?;
                }
                anyhow::Ok((name.to_string(), n))
            })
        })
        .collect();
    let mut spoken = Vec::new();
    for s in speakers {
        spoken.push(s.await??);
    }
    let mut seen = Vec::new();
    for m in members {
        seen.push(m.await??);
    }
    println!(
        "room: {} members subscribed by push; {} speakers posted {} messages each at the same \
         time; every member received {} messages within {:.0} ms",
        args.members,
        args.speakers,
        args.messages,
        seen.iter().map(|(_, v)| v.len()).min().unwrap_or(0),
        t.elapsed().as_secs_f64() * 1000.0
    );
    if let Some((name, msgs)) = seen.first() {
        let head: Vec<&str> = msgs.iter().take(6).map(|m| m.text.as_str()).collect();
        println!("  {name} saw: {} …", head.join(" | "));
    }
    Ok((seen, spoken))
}

impl Report {
    /// The story's checks; an error names the first that fails.
    fn check(&self) -> anyhow::Result<()> {
        let seqs = |v: &[Msg]| v.iter().map(|m| m.seq).collect::<Vec<_>>();
        let n = self.bob_got.len() as u64;
        if seqs(&self.bob_got) != (0..n).collect::<Vec<_>>()
            || self.bob_got.iter().any(|m| m.from != "alice")
        {
            bail!("bob did not get alice's messages once each, in order");
        }
        if seqs(&self.alice_got) != seqs(&self.bob_got)
            || self.alice_got.iter().any(|m| m.from != "bob")
        {
            bail!("alice did not get bob's answers once each, in order");
        }
        let Some((_, first)) = self.room.first() else {
            bail!("no room member");
        };
        let total: u64 = self.spoken.iter().map(|(_, n)| n).sum();
        if first.iter().map(|m| m.offset).collect::<Vec<_>>() != (0..total).collect::<Vec<_>>() {
            bail!("a member did not see every room message once, in the room's order");
        }
        for (name, msgs) in &self.room {
            if msgs != first {
                bail!(
                    "{name} saw the room in another order than {}",
                    self.room[0].0
                );
            }
        }
        for (speaker, n) in &self.spoken {
            let own: Vec<u64> = first
                .iter()
                .filter(|m| &m.from == speaker)
                .map(|m| m.seq)
                .collect();
            if own != (0..*n).collect::<Vec<_>>() {
                bail!("{speaker}'s messages are not in the order {speaker} posted them");
            }
        }
        Ok(())
    }
}

async fn scenario(q: &Queue, args: &Args) -> anyhow::Result<Report> {
    println!("queue: {}", q.describe());
    if args.members > NAMES.len() || args.speakers > args.members {
        bail!(
            "at most {} members, and no more speakers than members",
            NAMES.len()
        );
    }
    let (bob_got, alice_got) = point_to_point(q, args.chat).await?;
    let (room, spoken) = chat_room(q, args).await?;
    Ok(Report {
        bob_got,
        alice_got,
        room,
        spoken,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let q = Queue::start(&args.queue).await?;
    let r = scenario(&q, &args).await;
    q.stop().await?;
    r?.check()?;
    println!("every message arrived once, in order, for every reader");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn chat_and_room_deliver_every_message_in_order() {
        let args = Args::parse_from([
            "test",
            "--chat",
            "10",
            "--members",
            "4",
            "--speakers",
            "3",
            "--messages",
            "15",
        ]);
        let q = Queue::start(&args.queue).await.unwrap();
        let r = scenario(&q, &args).await.unwrap();
        q.stop().await.unwrap();
        assert_eq!(r.bob_got.len(), 10);
        assert_eq!(r.alice_got.len(), 10);
        assert_eq!(r.room.len(), 4, "every member");
        for (name, msgs) in &r.room {
            assert_eq!(msgs.len(), 45, "{name} saw every message");
        }
        r.check().unwrap();
    }
}
