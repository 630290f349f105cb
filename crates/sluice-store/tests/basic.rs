//! Appends, reads by offset and time, durability policies, reopen, index rebuild,
//! routing, long-poll waits, topic management.

use std::time::Duration;

use bytes::Bytes;
use sluice_store::*;

fn rec(i: u64) -> Record {
    Record {
        key: matches!(i % 3, 0).then(|| Bytes::from(format!("k{i}"))),
        value: Bytes::from(format!("value-{i}-{}", "x".repeat((i % 50) as usize))),
        headers: if matches!(i % 5, 0) {
            vec![Header {
                name: "h".into(),
                value: Bytes::from(i.to_string()),
            }]
        } else {
            vec![]
        },
        timestamp_ms: Some(1_000_000 + i as i64 * 10),
    }
}

fn cfg(fsync: FsyncPolicy) -> TopicConfig {
    TopicConfig {
        fsync,
        segment_max_bytes: 4096,
        index_interval_bytes: 256,
        ..TopicConfig::default()
    }
}

fn read_all(t: &Topic, p: u32) -> Vec<StoredRecord> {
    let mut out = Vec::new();
    let mut off = t.first_offset(p).unwrap();
    loop {
        let v = t.read(p, off, 37, 1000).unwrap();
        let Some(l) = v.last() else { break };
        off = l.offset + 1;
        out.extend(v);
    }
    out
}

fn check(r: &StoredRecord, i: u64) {
    let e = rec(i);
    assert_eq!(r.offset, i);
    assert_eq!(r.key, e.key);
    assert_eq!(r.value, e.value);
    assert_eq!(r.headers, e.headers);
    assert_eq!(Some(r.timestamp_ms), e.timestamp_ms);
}

#[test]
fn append_read_reopen_all_policies() {
    for fsync in [
        FsyncPolicy::Always,
        FsyncPolicy::Interval { ms: 5 },
        FsyncPolicy::Never,
    ] {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
            let t = s.create_topic("t", cfg(fsync)).unwrap();
            let mut last = None;
            for b in 0..20u64 {
                let batch: Vec<Record> = (b * 10..b * 10 + 10).map(rec).collect();
                let r = t.append(0, &batch).unwrap();
                assert_eq!(r.base_offset, b * 10);
                last = Some(r);
            }
            last.unwrap().wait_durable_blocking().unwrap();
            let all = read_all(&t, 0);
            assert_eq!(all.len(), 200);
            all.iter().enumerate().for_each(|(i, r)| check(r, i as u64));
            // Random access through the sparse index.
            for o in [0u64, 1, 57, 123, 199] {
                check(&t.read(0, o, 1, 1).unwrap()[0], o);
            }
            assert!(t.read(0, 200, 10, 100).unwrap().is_empty());
            assert!(t.stats().unwrap().partitions[0].segments > 1);
        }
        let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert!(s.was_clean_shutdown());
        assert!(s.recovery_events().is_empty(), "{:?}", s.recovery_events());
        let t = s.topic("t").unwrap();
        let all = read_all(&t, 0);
        assert_eq!(all.len(), 200);
        all.iter().enumerate().for_each(|(i, r)| check(r, i as u64));
        assert_eq!(t.append(0, &[rec(200)]).unwrap().base_offset, 200);
    }
}

#[test]
fn index_files_rebuilt_when_missing_or_damaged() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let t = s.create_topic("t", cfg(FsyncPolicy::Never)).unwrap();
        t.append(0, &(0..300).map(rec).collect::<Vec<_>>()).unwrap();
    }
    let pdir = dir.path().join("t/0");
    let mut n = 0;
    for e in std::fs::read_dir(&pdir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".index") {
            if n % 2 == 0 {
                std::fs::remove_file(&p).unwrap();
            } else {
                std::fs::write(&p, b"garbage-garbage-garbage").unwrap();
            }
            n += 1;
        }
    }
    let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert!(s
        .recovery_events()
        .iter()
        .any(|e| e.kind == RecoveryKind::IndexRebuilt));
    let t = s.topic("t").unwrap();
    let all = read_all(&t, 0);
    assert_eq!(all.len(), 300);
    for o in [0u64, 150, 299] {
        check(&t.read(0, o, 1, 1).unwrap()[0], o);
    }
}

#[test]
fn read_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let t = s.create_topic("t", cfg(FsyncPolicy::Never)).unwrap();
    t.append(0, &(0..500).map(rec).collect::<Vec<_>>()).unwrap();
    assert_eq!(t.offset_for_time(0, 0).unwrap(), 0);
    assert_eq!(t.offset_for_time(0, 1_000_000 + 2_345).unwrap(), 235);
    assert_eq!(t.offset_for_time(0, 1_000_000 + 2_340).unwrap(), 234);
    assert_eq!(t.offset_for_time(0, i64::MAX).unwrap(), 500);
}

#[test]
fn routing_matches_kafka_and_round_robins() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let t = s
        .create_topic("t", TopicConfig::with_partitions(4))
        .unwrap();
    let expected = partitioner::partition_for_key(b"foobar", 4);
    assert_eq!(t.partition_for(Some(b"foobar")), expected);
    let receipts = t
        .append_routed((0..8).map(|i| Record::new(format!("v{i}"))).collect())
        .unwrap();
    assert_eq!(receipts.len(), 4);
    assert!(receipts.iter().all(|r| r.count == 2));
    let r = t
        .append_routed(vec![Record::with_key("foobar", "x")])
        .unwrap();
    assert_eq!(r[0].partition, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_wakes_on_durable_append() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let t = s.create_topic("t", TopicConfig::default()).unwrap();
    assert!(!t.wait_for(0, 0, Duration::from_millis(30)).await.unwrap());
    let t2 = t.clone();
    let h = tokio::spawn(async move { t2.wait_for(0, 0, Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let r = t.append(0, &[Record::new("hello")]).unwrap();
    r.wait_durable().await.unwrap();
    assert!(r.is_durable());
    assert!(h.await.unwrap().unwrap());
    assert_eq!(t.read(0, 0, 10, 100).unwrap()[0].value, "hello");
}

#[test]
fn topic_management_and_names() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert!(matches!(
        s.create_topic("a/b", TopicConfig::default()),
        Err(StoreError::InvalidName(_))
    ));
    assert!(matches!(s.topic(".."), Err(StoreError::InvalidName(_))));
    s.create_topic("a", TopicConfig::default()).unwrap();
    s.create_topic("b.c", TopicConfig::default()).unwrap();
    assert!(matches!(
        s.create_topic("a", TopicConfig::default()),
        Err(StoreError::TopicExists(_))
    ));
    assert_eq!(s.list_topics(), vec!["a", "b.c"]);
    let a = s.topic("a").unwrap();
    s.delete_topic("a").unwrap();
    assert!(a.append(0, &[Record::new("x")]).is_err());
    assert_eq!(s.list_topics(), vec!["b.c"]);
    assert!(!dir.path().join("a").exists());
    assert!(matches!(
        Store::open(dir.path(), StoreOptions::default()),
        Err(StoreError::Locked(_))
    ));
}

#[test]
fn concurrent_appenders_and_readers() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let t = s
        .create_topic(
            "t",
            TopicConfig {
                fsync: FsyncPolicy::Always,
                segment_max_bytes: 64 << 10,
                ..TopicConfig::default()
            },
        )
        .unwrap();
    std::thread::scope(|sc| {
        for w in 0..2u8 {
            let t = t.clone();
            sc.spawn(move || {
                for i in 0..200u32 {
                    let batch: Vec<Record> = (0..10)
                        .map(|j| Record::new(Bytes::from(format!("{w}-{i}-{j}"))))
                        .collect();
                    t.append(0, &batch).unwrap();
                }
            });
        }
        let t = t.clone();
        sc.spawn(move || {
            let mut off = 0u64;
            while off < 4000 {
                for r in t.read(0, off, 100, 1 << 20).unwrap() {
                    assert_eq!(r.offset, off);
                    off += 1;
                }
            }
        });
    });
    let stats = t.stats().unwrap();
    assert_eq!(stats.partitions[0].end_offset, 4000);
    assert!(stats.partitions[0].segments > 1);
}

/// One append of about 1.5 MiB: its frames reach the file in several
/// write calls, and every record reads back by offset, through the sparse
/// index, and after a reopen.
#[test]
fn a_batch_larger_than_one_write_piece() {
    let dir = tempfile::tempdir().unwrap();
    let big = |i: u64| Record {
        key: Some(Bytes::from(format!("k{i}"))),
        value: Bytes::from(format!("{i}:{}", "v".repeat(300 + (i % 700) as usize))),
        headers: vec![],
        timestamp_ms: Some(5_000 + i as i64),
    };
    let n = 2_500u64;
    {
        let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let t = s
            .create_topic(
                "big",
                TopicConfig {
                    fsync: FsyncPolicy::Always,
                    ..TopicConfig::default()
                },
            )
            .unwrap();
        let batch: Vec<Record> = (0..n).map(big).collect();
        let bytes: usize = batch.iter().map(|r| r.value.len()).sum();
        assert!(bytes > 1 << 20, "the batch must span several pieces");
        t.append(0, &batch)
            .unwrap()
            .wait_durable_blocking()
            .unwrap();
        t.append(0, &[big(n)])
            .unwrap()
            .wait_durable_blocking()
            .unwrap();
        for o in [0, 1, 700, 1_337, n - 1, n] {
            let r = &t.read(0, o, 1, 1).unwrap()[0];
            assert_eq!(r.offset, o);
            assert_eq!(r.value, big(o).value);
            assert_eq!(r.key, big(o).key);
        }
    }
    let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert!(s.recovery_events().is_empty(), "{:?}", s.recovery_events());
    let t = s.topic("big").unwrap();
    let all = read_all(&t, 0);
    assert_eq!(all.len() as u64, n + 1);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.value, big(i as u64).value, "offset {i}");
    }
    assert_eq!(t.offset_for_time(0, 5_000 + 2_000).unwrap(), 2_000);
}
