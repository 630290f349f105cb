//! Pull consumption through the real binary and real HTTP: long polling woken
//! by the append, empty long polls, publish/subscribe with three stream groups,
//! point-to-point with four competing queue consumers, redelivery of a dead
//! consumer's leases, dead letters after `max_deliveries`.

mod api_common;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use api_common::*;
use serde_json::json;
use sluice::client::{Client, PullOptions};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn long_poll_wakes_on_append_and_empty_poll_waits() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, c) = queue_daemon(dir.path(), "");
    rt().block_on(async {
        c.create_topic("wake", &json!({"partitions": 2}))
            .await
            .unwrap();
        // Empty long poll returns after wait_ms, with nothing.
        let t0 = Instant::now();
        let o = PullOptions {
            wait_ms: 400,
            max: 10,
            ..Default::default()
        };
        let p = c.pull("wake", "g", &o).await.unwrap();
        assert!(p.records.is_empty());
        assert!(
            t0.elapsed() >= Duration::from_millis(400),
            "{:?}",
            t0.elapsed()
        );
        for queue in [false, true] {
            let c2 = c.clone();
            let group = if queue { "q" } else { "s" };
            let waiter = tokio::spawn(async move {
                let o = PullOptions {
                    queue,
                    wait_ms: 30_000,
                    max: 10,
                    ..Default::default()
                };
                let p = c2.pull("wake", group, &o).await.unwrap();
                (p, Instant::now())
            });
            tokio::time::sleep(Duration::from_millis(300)).await;
            let sent = Instant::now();
            c.produce("wake", &[json!({"value": {"queue": queue}})])
                .await
                .unwrap();
            let (p, got) = waiter.await.unwrap();
            assert!(!p.records.is_empty(), "woken without records");
            // Woken by the append, far before the 30 s wait.
            let lat = got.duration_since(sent);
            assert!(lat < Duration::from_secs(5), "long poll took {lat:?}");
            eprintln!("queue={queue}: append → long poll answer {lat:?}");
        }
    });
}

async fn drain_stream(c: &Client, topic: &str, group: &str) -> Vec<u64> {
    let mut got = Vec::new();
    let o = PullOptions {
        wait_ms: 300,
        max: 37,
        ..Default::default()
    };
    loop {
        let p = c.pull(topic, group, &o).await.unwrap();
        if p.records.is_empty() {
            return got;
        }
        got.extend(p.records.iter().map(index_of));
        let offs: Vec<(u32, u64)> = p
            .commit
            .iter()
            .map(|v| {
                (
                    v["partition"].as_u64().unwrap() as u32,
                    v["offset"].as_u64().unwrap(),
                )
            })
            .collect();
        c.commit(topic, group, None, &offs).await.unwrap();
    }
}

#[test]
fn three_stream_groups_each_get_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, c) = queue_daemon(dir.path(), "");
    rt().block_on(async {
        c.create_topic("events", &json!({"partitions": 3}))
            .await
            .unwrap();
        for b in 0..3 {
            c.produce("events", &records(b * 100, 100)).await.unwrap();
        }
        let mut tasks = Vec::new();
        for g in ["mail", "sms", "audit"] {
            let c = c.clone();
            tasks.push(tokio::spawn(
                async move { drain_stream(&c, "events", g).await },
            ));
        }
        for t in tasks {
            let mut got = t.await.unwrap();
            got.sort();
            assert_eq!(
                got,
                (0..300).collect::<Vec<u64>>(),
                "each group sees each record once"
            );
        }
        let d = c.describe_topic("events").await.unwrap();
        for g in d["groups"].as_array().unwrap() {
            assert_eq!(g["lag"], 0, "{g}");
        }
    });
}

#[test]
fn four_queue_consumers_exactly_once_redelivery_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, c) = queue_daemon(dir.path(), "");
    rt().block_on(async {
        c.create_topic("jobs", &json!({"partitions": 4}))
            .await
            .unwrap();
        c.produce("jobs", &records(0, 1000)).await.unwrap();
        // A consumer that takes leases and dies without acking.
        let o = PullOptions {
            queue: true,
            max: 25,
            lease_ms: Some(800),
            ..Default::default()
        };
        let dead = c.pull("jobs", "workers", &o).await.unwrap();
        assert_eq!(dead.records.len(), 25);
        let dead_ids: BTreeSet<u64> = dead.records.iter().map(index_of).collect();
        let mut tasks = Vec::new();
        for w in 0..4 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                let o = PullOptions {
                    queue: true,
                    max: 20,
                    wait_ms: 1500,
                    ..Default::default()
                };
                loop {
                    let p = c.pull("jobs", "workers", &o).await.unwrap();
                    if p.records.is_empty() {
                        return got;
                    }
                    let leases: Vec<String> =
                        p.records.iter().filter_map(|r| r.lease.clone()).collect();
                    got.extend(
                        p.records
                            .iter()
                            .map(|r| (index_of(r), r.delivery.unwrap_or(0), w)),
                    );
                    c.settle("jobs", "workers", &leases, true).await.unwrap();
                }
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let mut count: HashMap<u64, u32> = HashMap::new();
        for (i, _, _) in &all {
            *count.entry(*i).or_default() += 1;
        }
        assert_eq!(count.len(), 1000, "every record consumed");
        assert!(count.values().all(|n| *n == 1), "no record consumed twice");
        // The dead consumer's leases were redelivered (second delivery) to the others.
        for (i, delivery, _) in &all {
            if dead_ids.contains(i) {
                assert_eq!(*delivery, 2, "record {i} redelivered");
            }
        }
        let workers: BTreeSet<usize> = all.iter().map(|(_, _, w)| *w).collect();
        assert!(workers.len() >= 2, "work was shared: {workers:?}");

        // Dead letters after max_deliveries: nack a record until it is moved.
        c.produce("poison", &[json!({"key": "p", "value": {"bad": true}})])
            .await
            .unwrap();
        let o = PullOptions {
            queue: true,
            max: 10,
            wait_ms: 500,
            max_deliveries: Some(3),
            ..Default::default()
        };
        let mut deliveries = 0;
        for _ in 0..6 {
            let p = c.pull("poison", "w", &o).await.unwrap();
            if p.records.is_empty() {
                break;
            }
            deliveries += 1;
            let leases: Vec<String> = p.records.iter().filter_map(|r| r.lease.clone()).collect();
            c.settle("poison", "w", &leases, false).await.unwrap();
        }
        assert_eq!(deliveries, 3);
        let o = PullOptions {
            max: 10,
            wait_ms: 2000,
            ..Default::default()
        };
        let dlq = c.pull("poison.dlq", "inspect", &o).await.unwrap();
        assert_eq!(dlq.records.len(), 1);
        assert_eq!(dlq.records[0].headers["sluice.dlq.deliveries"], "3");
    });
}

#[test]
fn stream_group_members_share_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, c) = queue_daemon(dir.path(), "");
    rt().block_on(async {
        c.create_topic("shared", &json!({"partitions": 4}))
            .await
            .unwrap();
        c.produce("shared", &records(0, 400)).await.unwrap();
        let mut got: HashMap<String, Vec<u64>> = HashMap::new();
        let mut empty = 0;
        while empty < 4 {
            empty += 1;
            for m in ["a", "b"] {
                let o = PullOptions {
                    max: 50,
                    wait_ms: 100,
                    member: Some(m.into()),
                    ..Default::default()
                };
                let p = c.pull("shared", "g", &o).await.unwrap();
                if !p.records.is_empty() {
                    empty = 0;
                }
                got.entry(m.into())
                    .or_default()
                    .extend(p.records.iter().map(index_of));
                let offs: Vec<(u32, u64)> = p
                    .commit
                    .iter()
                    .map(|v| {
                        (
                            v["partition"].as_u64().unwrap() as u32,
                            v["offset"].as_u64().unwrap(),
                        )
                    })
                    .collect();
                c.commit("shared", "g", Some(m), &offs).await.unwrap();
            }
        }
        assert!(
            !got["a"].is_empty() && !got["b"].is_empty(),
            "both members read"
        );
        let mut all: Vec<u64> = got.values().flatten().copied().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 400);
    });
}

#[test]
fn latest_group_joining_an_empty_topic_sees_every_later_record() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, c) = queue_daemon(dir.path(), "");
    rt().block_on(async {
        c.create_topic("room", &json!({"partitions": 1}))
            .await
            .unwrap();
        let o = PullOptions {
            wait_ms: 100,
            max: 10,
            from: Some("latest".into()),
            ..Default::default()
        };
        // Joins while the topic is empty.
        assert!(c.pull("room", "late", &o).await.unwrap().records.is_empty());
        let mut got = Vec::new();
        for i in 0..3 {
            c.produce("room", &records(i, 1)).await.unwrap();
            let p = c.pull("room", "late", &o).await.unwrap();
            got.extend(p.records.iter().map(index_of));
        }
        assert_eq!(got, vec![0, 1, 2], "every record after the join, once");
    });
}
