//! Unit-level edge cases of the building blocks the engine relies on:
//! `AckTracker` (in-order release under any completion order, a failure
//! holds the checkpoint, `next`/`settle` never hang), `AckRef::notify`,
//! `BoundedQueue` (policy edges by events and bytes, oversized batches,
//! close and abandon, acknowledgement of what a policy drops, no lost
//! wake-ups with several producers) and `SinkBatch::retain_after`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use sluice_core::config::WhenFull;
use sluice_core::queue::{BoundedQueue, PushError};
use sluice_core::{AckRef, AckStatus, AckTracker, Batch, Record, SinkBatch};
use support::*;

fn batch(t: &mut AckTracker<u64>, ids: std::ops::RangeInclusive<u64>) -> Batch {
    let pos = *ids.end();
    let records = ids.map(|i| Record::from_value(i.to_string())).collect();
    Batch::new("s".into(), records, t.track(pos))
}

fn ids(b: &Batch) -> Vec<u64> {
    b.records.iter().map(id_of).collect()
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG, f).await.expect("hung")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Completions in any order, one optional failure: `poll` always gives
    /// the end of the longest delivered prefix, and never passes the failure.
    #[test]
    fn tracker_releases_the_delivered_prefix_only(
        order in Just((0..24usize).collect::<Vec<_>>()).prop_shuffle(),
        failed in prop::option::of(0..24usize),
    ) {
        let mut t = AckTracker::new();
        let mut refs: Vec<Option<AckRef>> = (0..24u64).map(|i| Some(t.track(i + 1))).collect();
        let mut done = [false; 24];
        let mut released = 0u64;
        for &i in &order {
            let r = refs[i].take().unwrap();
            if failed == Some(i) { r.fail() } else { r.ack() }
            done[i] = true;
            let prefix = (0..24).take_while(|&j| done[j] && failed != Some(j)).count() as u64;
            if let Some(p) = t.poll() {
                prop_assert!(p > released);
                released = p;
            }
            prop_assert_eq!(released, prefix);
        }
        prop_assert_eq!(t.is_stuck(), failed.is_some());
        prop_assert_eq!(t.outstanding() as u64, 24 - released);
    }
}

/// A tracker whose batch 2 failed after batch 1 was delivered and batch 3
/// completed: every completion is already in.
fn stuck_tracker() -> AckTracker<u64> {
    let mut t: AckTracker<u64> = AckTracker::new();
    let a = t.track(1);
    let b = t.track(2);
    let c = t.track(3);
    a.ack();
    drop(b);
    c.ack();
    t
}

#[tokio::test]
async fn settle_returns_when_stuck_or_idle() {
    let mut t: AckTracker<u64> = AckTracker::new();
    assert_eq!(within(t.settle()).await, None, "nothing outstanding");
    let mut t2 = stuck_tracker();
    assert_eq!(within(t2.settle()).await, Some(1));
    assert_eq!(within(t2.settle()).await, None);
    assert!(t2.is_stuck());
    t.track(4).ack();
    assert_eq!(within(t.settle()).await, Some(4));
}

#[tokio::test]
async fn next_returns_none_when_idle_or_already_stuck() {
    let mut t: AckTracker<u64> = AckTracker::new();
    assert_eq!(within(t.next()).await, None, "nothing outstanding");
    let mut t = stuck_tracker();
    assert_eq!(within(t.next()).await, Some(1));
    assert!(t.is_stuck());
    // Nothing can ever be released now; `next` must say so, as it does
    // when the tracker gets stuck while it waits.
    let r = tokio::time::timeout(Duration::from_secs(5), t.next()).await;
    assert_eq!(
        r.ok(),
        Some(None),
        "next() hangs on an already stuck tracker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settle_waits_for_acks_from_other_tasks() {
    let mut t: AckTracker<u64> = AckTracker::new();
    let refs: Vec<AckRef> = (1..=50).map(|i| t.track(i)).collect();
    let acker = tokio::spawn(async move {
        for r in refs.into_iter().rev() {
            tokio::task::yield_now().await;
            r.ack();
        }
    });
    assert_eq!(within(t.settle()).await, Some(50));
    assert_eq!(t.outstanding(), 0);
    acker.await.unwrap();
}

#[tokio::test]
async fn notify_fails_if_any_holder_fails_or_vanishes() {
    let (a, rx) = AckRef::notify();
    let (a2, a3) = (a.clone(), a.clone());
    a.ack();
    a2.fail();
    a3.ack();
    assert_eq!(rx.await.unwrap(), AckStatus::Failed);
    let (b, rx) = AckRef::notify();
    let b2 = b.clone();
    b.ack();
    drop(b2);
    assert_eq!(rx.await.unwrap(), AckStatus::Failed);
    // A tracker gone before its batches complete is not an error.
    let mut t: AckTracker<u64> = AckTracker::new();
    let r = t.track(1);
    drop(t);
    r.ack();
    AckRef::untracked().ack();
}

#[tokio::test]
async fn dropped_records_are_acknowledged_by_the_queue() {
    let mut t = AckTracker::new();
    let q = BoundedQueue::new(queue(4, WhenFull::DropNewest));
    q.push(batch(&mut t, 1..=4)).await.unwrap();
    q.push(batch(&mut t, 5..=6)).await.unwrap();
    assert_eq!(q.dropped(), 2);
    q.pop().await.unwrap().ack.ack();
    assert_eq!(
        t.poll(),
        Some(6),
        "the wholly dropped batch is released too"
    );
}

#[tokio::test]
async fn drop_newest_and_drop_oldest_respect_the_byte_limit() {
    // A one-digit record is 1 + 32 bytes: room for three.
    let cfg = |when_full| sluice_core::config::QueueConfig {
        max_events: 100,
        max_bytes: 3 * 33,
        when_full,
    };
    let mut t = AckTracker::new();
    let q = BoundedQueue::new(cfg(WhenFull::DropNewest));
    q.push(batch(&mut t, 1..=2)).await.unwrap();
    q.push(batch(&mut t, 3..=5)).await.unwrap();
    assert_eq!((q.dropped(), q.depth()), (2, (3, 99)));
    assert_eq!(ids(&q.pop().await.unwrap()), [1, 2]);
    assert_eq!(ids(&q.pop().await.unwrap()), [3]);

    let q = BoundedQueue::new(cfg(WhenFull::DropOldest));
    q.push(batch(&mut t, 1..=2)).await.unwrap();
    q.push(batch(&mut t, 3..=5)).await.unwrap();
    assert_eq!((q.dropped(), q.depth()), (2, (3, 99)));
    assert_eq!(ids(&q.pop().await.unwrap()), [3, 4, 5]);
}

#[tokio::test]
async fn oversized_batches_get_into_an_empty_queue_only() {
    let mut t = AckTracker::new();
    let q = BoundedQueue::new(queue(4, WhenFull::DropOldest));
    q.push(batch(&mut t, 1..=3)).await.unwrap();
    q.push(batch(&mut t, 4..=10)).await.unwrap();
    assert_eq!(q.dropped(), 3, "everything older is evicted");
    assert_eq!(ids(&q.pop().await.unwrap()), range(4, 10));

    let q = BoundedQueue::new(queue(4, WhenFull::Block));
    q.push(batch(&mut t, 1..=1)).await.unwrap();
    let q2 = q.clone();
    let big = batch(&mut t, 2..=9);
    let pusher = tokio::spawn(async move { q2.push(big).await.is_ok() });
    tokio::task::yield_now().await;
    assert_eq!(ids(&within(q.pop()).await.unwrap()), [1]);
    assert!(
        within(pusher).await.unwrap(),
        "admitted once the queue is empty"
    );
    assert_eq!(q.depth().0, 8);

    let q = BoundedQueue::new(queue(4, WhenFull::Reject));
    q.push(batch(&mut t, 1..=1)).await.unwrap();
    match q.push(batch(&mut t, 2..=9)).await {
        Err(PushError::Full(b)) => assert_eq!(ids(&b), range(2, 9), "returned intact"),
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!((q.rejected(), q.depth().0), (8, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_wakes_blocked_pushers_and_poppers() {
    let mut t = AckTracker::new();
    let q = BoundedQueue::new(queue(2, WhenFull::Block));
    let popper = {
        let q = q.clone();
        tokio::spawn(async move { q.pop().await.is_none() })
    };
    tokio::task::yield_now().await;
    q.close();
    assert!(within(popper).await.unwrap());

    let q = BoundedQueue::new(queue(2, WhenFull::Block));
    q.push(batch(&mut t, 1..=2)).await.unwrap();
    let q2 = q.clone();
    let b = batch(&mut t, 3..=4);
    let pusher = tokio::spawn(async move { matches!(q2.push(b).await, Err(PushError::Closed(_))) });
    wait_for("the pusher blocked", || q.is_saturated()).await;
    q.close();
    assert!(within(pusher).await.unwrap());
    assert!(matches!(
        q.push(batch(&mut t, 5..=5)).await,
        Err(PushError::Closed(_))
    ));
    assert_eq!(ids(&q.pop().await.unwrap()), [1, 2], "close still drains");
    assert!(q.pop().await.is_none());
}

#[tokio::test]
async fn abandon_fails_what_was_queued() {
    let mut t = AckTracker::new();
    let q = BoundedQueue::new(queue(100, WhenFull::Block));
    q.push(batch(&mut t, 1..=2)).await.unwrap();
    q.push(batch(&mut t, 3..=4)).await.unwrap();
    q.pop().await.unwrap().ack.ack();
    q.abandon();
    assert_eq!(q.depth(), (0, 0));
    assert_eq!(t.poll(), Some(2));
    assert!(t.is_stuck());
    let empty = Batch::new("s".into(), Vec::new(), t.track(9));
    q.push(empty).await.unwrap();
    assert_eq!(
        q.depth(),
        (0, 0),
        "an empty batch is acknowledged, not queued"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_blocked_producers_lose_no_wakeup() {
    let q = BoundedQueue::new(queue(8, WhenFull::Block));
    let mut producers = Vec::new();
    for p in 0..3u64 {
        let q = q.clone();
        producers.push(tokio::spawn(async move {
            for i in 0..2000u64 {
                let r = Record::from_value((p * 1_000_000 + i).to_string());
                let b = Batch::new("s".into(), vec![r], AckRef::untracked());
                q.push(b).await.unwrap();
            }
        }));
    }
    let consumer = {
        let q = q.clone();
        tokio::spawn(async move {
            let mut next = [0u64; 3];
            while let Some(b) = q.pop().await {
                for r in b.records.iter() {
                    let id = id_of(r);
                    let p = (id / 1_000_000) as usize;
                    assert_eq!(id % 1_000_000, next[p], "producer {p} out of order");
                    next[p] += 1;
                }
                b.ack.ack();
            }
            next
        })
    };
    for p in producers {
        within(p).await.unwrap();
    }
    q.close();
    assert_eq!(within(consumer).await.unwrap(), [2000; 3]);
    assert_eq!(q.dropped(), 0);
}

#[test]
fn retain_after_keeps_the_tail_and_acknowledges_the_head() {
    let mut t = AckTracker::new();
    let mut sb = SinkBatch::default();
    sb.push(batch(&mut t, 1..=3));
    sb.push(batch(&mut t, 4..=6));
    sb.push(batch(&mut t, 7..=8));
    assert_eq!(sb.get(4).map(|(_, r)| id_of(r)), Some(5));
    assert!(sb.get(8).is_none());
    sb.retain_after(4);
    let left: Vec<u64> = sb.records().map(|(_, r)| id_of(r)).collect();
    assert_eq!(left, [6, 7, 8]);
    assert_eq!(sb.events, 3);
    assert_eq!(sb.bytes, 3 * 33);
    assert_eq!(
        t.poll(),
        Some(3),
        "the first part is done, the second is still held"
    );
    sb.ack_all();
    assert_eq!(t.poll(), Some(8));
    let mut sb = SinkBatch::default();
    sb.push(batch(&mut t, 9..=10));
    sb.retain_after(1);
    assert!(sb.is_empty());
    assert_eq!(t.poll(), Some(10));
}

#[tokio::test]
async fn pop_timeout_elapses_on_an_empty_queue() {
    let q = BoundedQueue::new(queue(2, WhenFull::Block));
    assert!(q.pop_timeout(Duration::from_millis(1)).await.is_err());
    let q2: Arc<BoundedQueue> = q.clone();
    q2.close();
    assert!(matches!(q.pop_timeout(HANG).await, Ok(None)));
}
