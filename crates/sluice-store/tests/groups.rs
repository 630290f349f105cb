//! Consumer groups: stream groups (every group sees everything, resume at committed
//! offsets after reopen, one member per partition), queue groups (each record to one
//! consumer, redelivery after lease expiry or nack, dead letters after max_deliveries).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bytes::Bytes;
use sluice_store::*;

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, StoreOptions::default()).unwrap()
}

fn fill(t: &Topic, from: u64, n: u64) {
    let recs: Vec<Record> = (from..from + n)
        .map(|i| Record::with_key(Bytes::from(format!("k{i}")), Bytes::from(format!("v{i}"))))
        .collect();
    for r in t.append_routed(recs).unwrap() {
        r.wait_durable_blocking().unwrap();
    }
}

fn drain(g: &StreamGroup, t: &Topic, member: &str, commit_every: usize) -> Vec<String> {
    let mut out = Vec::new();
    for p in 0..t.partitions() {
        loop {
            let v = g.poll(member, p, commit_every, 1 << 20).unwrap();
            let Some(last) = v.last() else { break };
            g.commit(member, p, last.offset + 1).unwrap();
            out.extend(
                v.iter()
                    .map(|r| String::from_utf8(r.value.to_vec()).unwrap()),
            );
        }
    }
    out
}

#[test]
fn two_stream_groups_see_everything_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        let t = s
            .create_topic("t", TopicConfig::with_partitions(3))
            .unwrap();
        fill(&t, 0, 300);
        let a = t.stream_group("a").unwrap();
        let b = t.stream_group("b").unwrap();
        let va = drain(&a, &t, "m1", 17);
        assert_eq!(va.len(), 300);
        // b reads only part of partition 0 and commits it.
        let part = b.poll("m1", 0, 10, 1 << 20).unwrap();
        b.commit("m1", 0, part.last().unwrap().offset + 1).unwrap();
        // Not committed: must be read again after restart.
        b.poll("m1", 0, 10, 1 << 20).unwrap();
        let st = t.stats().unwrap();
        let lag: HashMap<String, u64> = st
            .groups
            .iter()
            .map(|g| (g.group.clone(), g.total))
            .collect();
        assert_eq!(lag["a"], 0);
        assert_eq!(lag["b"], 290);
    }
    let s = open(dir.path());
    let t = s.topic("t").unwrap();
    fill(&t, 300, 30);
    let a = t.stream_group("a").unwrap();
    let b = t.stream_group("b").unwrap();
    assert_eq!(drain(&a, &t, "m2", 50).len(), 30);
    let vb = drain(&b, &t, "m2", 50);
    assert_eq!(vb.len(), 320);
    let set: BTreeSet<&String> = vb.iter().collect();
    assert_eq!(set.len(), 320);
}

#[test]
fn one_member_per_partition_by_expiring_lease() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let t = s.create_topic("t", TopicConfig::default()).unwrap();
    let g = t.stream_group("g").unwrap();
    g.acquire("m1", 0, Duration::from_millis(100)).unwrap();
    assert!(matches!(
        g.acquire("m2", 0, Duration::from_secs(1)),
        Err(StoreError::LeaseHeld { .. })
    ));
    assert!(g.commit("m2", 0, 5).is_err());
    std::thread::sleep(Duration::from_millis(120));
    g.acquire("m2", 0, Duration::from_secs(1)).unwrap();
    assert_eq!(g.holder(0).as_deref(), Some("m2"));
    assert!(g.poll("m1", 0, 1, 100).is_err());
}

#[test]
fn four_queue_consumers_share_records_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let t = s
        .create_topic("jobs", TopicConfig::with_partitions(2))
        .unwrap();
    fill(&t, 0, 400);
    let q = t.queue_group("workers", QueueConfig::default()).unwrap();
    let mut per: HashMap<String, usize> = HashMap::new();
    let mut seen = BTreeSet::new();
    loop {
        let mut got = 0;
        for c in ["c1", "c2", "c3", "c4"] {
            let v = q.poll(c, 25).unwrap();
            got += v.len();
            *per.entry(c.to_string()).or_default() += v.len();
            let ids: Vec<(u32, u64)> = v.iter().map(|r| (r.partition, r.record.offset)).collect();
            for r in &v {
                assert_eq!(r.delivery, 1);
                assert!(
                    seen.insert((r.partition, r.record.offset)),
                    "delivered twice"
                );
            }
            q.ack(&ids).unwrap();
        }
        if got == 0 {
            break;
        }
    }
    assert_eq!(seen.len(), 400);
    assert!(per.values().all(|n| *n >= 75), "{per:?}");
    assert_eq!(q.lag(), vec![0, 0]);
}

#[test]
fn lease_expiry_redelivers_and_dead_letters_after_max() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        let t = s.create_topic("jobs", TopicConfig::default()).unwrap();
        fill(&t, 0, 3);
        let q = t
            .queue_group(
                "w",
                QueueConfig {
                    lease_ms: 50,
                    max_deliveries: 3,
                },
            )
            .unwrap();
        let v = q.poll("c1", 10).unwrap();
        assert_eq!(v.len(), 3);
        q.ack(&[(0, 0)]).unwrap();
        // Record 1 is nacked; record 2's lease runs out.
        q.nack(&[(0, 1)]).unwrap();
        let v = q.poll("c2", 10).unwrap();
        assert_eq!(
            v.iter()
                .map(|r| (r.record.offset, r.delivery))
                .collect::<Vec<_>>(),
            vec![(1, 2)]
        );
        std::thread::sleep(Duration::from_millis(60));
        let v = q.poll("c2", 10).unwrap();
        let got: BTreeSet<(u64, u32)> = v.iter().map(|r| (r.record.offset, r.delivery)).collect();
        assert_eq!(got, BTreeSet::from([(1, 3), (2, 2)]));
        q.nack(&[(0, 1), (0, 2)]).unwrap();
    }
    // Delivery counts survive a restart.
    let s = open(dir.path());
    let t = s.topic("jobs").unwrap();
    let q = t
        .queue_group(
            "w",
            QueueConfig {
                lease_ms: 50,
                max_deliveries: 3,
            },
        )
        .unwrap();
    let v = q.poll("c3", 10).unwrap();
    assert_eq!(
        v.iter()
            .map(|r| (r.record.offset, r.delivery))
            .collect::<Vec<_>>(),
        vec![(2, 3)]
    );
    q.nack(&[(0, 2)]).unwrap();
    assert!(q.poll("c3", 10).unwrap().is_empty());
    let dlq = s.topic("jobs.dlq").unwrap();
    let dead = dlq.read(0, 0, 10, 1 << 20).unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].value, "v1");
    assert!(dead[0]
        .headers
        .iter()
        .any(|h| h.name == "sluice.dlq.offset" && h.value == "1"));
    assert_eq!(q.lag(), vec![0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_wait_wakes_on_new_records_and_lease_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let t = s
        .create_topic("jobs", TopicConfig::with_partitions(2))
        .unwrap();
    let q = t
        .queue_group(
            "w",
            QueueConfig {
                lease_ms: 80,
                max_deliveries: 5,
            },
        )
        .unwrap();
    assert!(!q.wait(Duration::from_millis(20)).await.unwrap());
    let t2 = t.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        t2.append(1, &[Record::new("job")]).unwrap();
    });
    assert!(q.wait(Duration::from_secs(10)).await.unwrap());
    let v = q.poll("c", 10).unwrap();
    assert_eq!(v.len(), 1);
    // Not acked: the wait ends when the lease runs out, and the record comes back.
    let t0 = std::time::Instant::now();
    assert!(q.wait(Duration::from_secs(10)).await.unwrap());
    assert!(t0.elapsed() >= Duration::from_millis(60));
    let v = q.poll("c", 10).unwrap();
    assert_eq!((v.len(), v[0].delivery), (1, 2));
}

#[test]
fn claim_spreads_partitions_over_members() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let t = s
        .create_topic("t", TopicConfig::with_partitions(4))
        .unwrap();
    let g = t.stream_group("g").unwrap();
    let ttl = Duration::from_secs(5);
    assert_eq!(g.claim("m1", ttl), vec![0, 1, 2, 3]);
    g.release("m1", 2);
    g.release("m1", 3);
    assert_eq!(g.claim("m2", ttl), vec![2, 3]);
    assert_eq!(g.claim("m1", ttl), vec![0, 1]);
}
