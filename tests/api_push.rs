//! Push consumption (server-sent events) and peak shaving through the real
//! binary: N chat-room subscribers each see every message in order per
//! partition; `max_in_flight` holds back records until they are acked; a
//! bounded `on_full: reject` topic under a burst answers 429 and every
//! accepted record is consumed exactly once.

mod api_common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use api_common::*;
use futures::StreamExt;
use serde_json::json;
use sluice::client::{OutRecord, PullOptions};

/// Reads SSE `record` events from `url` until `n` arrived (or `limit`).
async fn sse_records(url: String, n: usize, limit: Duration) -> Vec<OutRecord> {
    let resp = reqwest::Client::new().get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while out.len() < n {
        let chunk = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(c))) => c,
            _ => break,
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let ev: String = buf.drain(..end + 2).collect();
            let mut kind = "";
            let mut data = String::new();
            for line in ev.lines() {
                if let Some(k) = line.strip_prefix("event:") {
                    kind = k.trim();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            if kind == "record" {
                out.push(serde_json::from_str(&data).unwrap());
            }
        }
    }
    out
}

#[test]
fn chat_room_subscribers_see_every_message_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, c) = queue_daemon(dir.path(), "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        c.create_topic("room", &json!({"partitions": 2}))
            .await
            .unwrap();
        let members = 5;
        let msgs = 200;
        let mut subs = Vec::new();
        for m in 0..members {
            let url = format!(
                "{}/api/v1/topics/room/subscribe?group=member-{m}&auto_ack=true&from=earliest",
                c.base()
            );
            subs.push(tokio::spawn(sse_records(
                url,
                msgs,
                Duration::from_secs(30),
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        for i in 0..msgs {
            // Two speakers (keys) → two partitions; order matters per speaker.
            let r = json!({"key": format!("speaker-{}", i % 2), "value": {"i": i}});
            c.produce("room", &[r]).await.unwrap();
        }
        for s in subs {
            let got = s.await.unwrap();
            assert_eq!(got.len(), msgs, "every member sees every message");
            let mut per_part: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
            for r in &got {
                per_part.entry(r.partition).or_default().push(index_of(r));
            }
            for (p, v) in per_part {
                let mut sorted = v.clone();
                sorted.sort();
                assert_eq!(v, sorted, "in order in partition {p}");
            }
        }
    });
}

#[test]
fn push_flow_control_waits_for_acks() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, c) = queue_daemon(dir.path(), "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        c.produce("fc", &records(0, 50)).await.unwrap();
        let url = format!(
            "{}/api/v1/topics/fc/subscribe?group=w&mode=queue&max_in_flight=10",
            c.base()
        );
        let first = sse_records(url.clone(), 50, Duration::from_millis(1500)).await;
        assert_eq!(first.len(), 10, "no more than max_in_flight unacknowledged");
        // Ack them in a second subscription's group view: the new subscription gets
        // its window, and acked records are never redelivered.
        let leases: Vec<String> = first.iter().filter_map(|r| r.lease.clone()).collect();
        c.settle("fc", "w", &leases, true).await.unwrap();
        let c2 = c.clone();
        let sub = tokio::spawn(sse_records(url, 20, Duration::from_secs(10)));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = c2;
        let second = sub.await.unwrap();
        assert_eq!(second.len(), 10);
        for r in &second {
            assert!(!first
                .iter()
                .any(|f| f.offset == r.offset && f.partition == r.partition));
        }
    });
}

#[test]
fn bounded_topic_burst_gets_429_and_every_accepted_record_is_consumed_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, c) = queue_daemon(dir.path(), "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cap = 300u64;
        c.create_topic(
            "sale",
            &json!({"partitions": 1, "limits": {"max_messages": cap, "on_full": "reject"}}),
        )
        .await
        .unwrap();
        let drained = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // The worker drains at its own pace.
        let worker = {
            let (c, drained, stop) = (c.clone(), drained.clone(), stop.clone());
            tokio::spawn(async move {
                let mut seen: HashMap<u64, u32> = HashMap::new();
                let o = PullOptions {
                    queue: true,
                    max: 20,
                    wait_ms: 300,
                    ..Default::default()
                };
                loop {
                    let p = c.pull("sale", "orders", &o).await.unwrap();
                    if p.records.is_empty() && stop.load(Ordering::SeqCst) {
                        return seen;
                    }
                    for r in &p.records {
                        *seen.entry(index_of(r)).or_default() += 1;
                    }
                    let leases: Vec<String> =
                        p.records.iter().filter_map(|r| r.lease.clone()).collect();
                    if !leases.is_empty() {
                        c.settle("sale", "orders", &leases, true).await.unwrap();
                        drained.fetch_add(leases.len() as u64, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let mut producers = Vec::new();
        for w in 0..8usize {
            let c = c.clone();
            producers.push(tokio::spawn(async move {
                let (mut ok, mut busy) = (Vec::new(), 0u64);
                for b in 0..50usize {
                    let ids: Vec<u64> = (0..10)
                        .map(|i| (w * 1_000_000 + b * 10 + i) as u64)
                        .collect();
                    let batch: Vec<_> = ids.iter().map(|id| json!({"value": {"i": id}})).collect();
                    match c.produce("sale", &batch).await {
                        Ok(_) => ok.extend(ids),
                        Err(e) if e.status == 429 => {
                            assert!(e.retry_after.is_some(), "Retry-After");
                            busy += 1
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                (ok, busy)
            }));
        }
        let (mut accepted, mut busy) = (Vec::new(), 0);
        for p in producers {
            let (ok, b) = p.await.unwrap();
            accepted.extend(ok);
            busy += b;
        }
        let drained_during = drained.load(Ordering::SeqCst);
        stop.store(true, Ordering::SeqCst);
        let seen = worker.await.unwrap();
        eprintln!(
            "accepted {} busy {busy} drained during burst {drained_during}",
            accepted.len()
        );
        assert!(busy > 0, "the burst met 429s");
        assert_eq!(accepted.len() as u64 + busy * 10, 4000);
        assert!(
            accepted.len() as u64 <= cap + drained_during,
            "never more than capacity + drained"
        );
        assert!(accepted.len() as u64 >= cap, "capacity was used");
        accepted.sort();
        let mut consumed: Vec<u64> = seen.keys().copied().collect();
        consumed.sort();
        assert_eq!(consumed, accepted, "every accepted record consumed");
        assert!(seen.values().all(|n| *n == 1), "once");
    });
}
