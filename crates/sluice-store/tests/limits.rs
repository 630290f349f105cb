//! Retention (bytes, age) and bounded topics (reject / drop_oldest) with exact counts.

use bytes::Bytes;
use sluice_store::*;

fn val(i: u64) -> Record {
    Record::new(Bytes::from(format!("{i:08}")))
}

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, StoreOptions::default()).unwrap()
}

#[test]
fn reject_counts_exactly_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TopicConfig {
        fsync: FsyncPolicy::Never,
        limits: Limits {
            max_messages: Some(100),
            max_bytes: None,
            on_full: OnFull::Reject,
        },
        ..TopicConfig::default()
    };
    {
        let s = open(dir.path());
        let t = s.create_topic("q", cfg).unwrap();
        let (mut ok, mut full) = (0, 0);
        for i in 0..150 {
            match t.append(0, &[val(i)]) {
                Ok(_) => ok += 1,
                Err(StoreError::TopicFull { .. }) => full += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((ok, full), (100, 50));
        // A batch that does not fit is refused whole.
        assert!(matches!(
            t.append(0, &[val(1)]),
            Err(StoreError::TopicFull { .. })
        ));
    }
    let s = open(dir.path());
    let t = s.topic("q").unwrap();
    assert!(matches!(
        t.append(0, &[val(1)]),
        Err(StoreError::TopicFull { .. })
    ));
    assert_eq!(t.end_offset(0).unwrap(), 100);
}

#[test]
fn reject_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    // Each frame is 36 + 8 = 44 bytes.
    let t = s
        .create_topic(
            "q",
            TopicConfig {
                fsync: FsyncPolicy::Never,
                limits: Limits {
                    max_messages: None,
                    max_bytes: Some(44 * 10),
                    on_full: OnFull::Reject,
                },
                ..TopicConfig::default()
            },
        )
        .unwrap();
    let ok = (0..20).filter(|i| t.append(0, &[val(*i)]).is_ok()).count();
    assert_eq!(ok, 10);
}

#[test]
fn drop_oldest_keeps_the_newest_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TopicConfig {
        fsync: FsyncPolicy::Never,
        segment_max_bytes: 1024,
        index_interval_bytes: 100,
        limits: Limits {
            max_messages: Some(100),
            max_bytes: None,
            on_full: OnFull::DropOldest,
        },
        ..TopicConfig::default()
    };
    {
        let s = open(dir.path());
        let t = s.create_topic("q", cfg).unwrap();
        for i in 0..250 {
            t.append(0, &[val(i)]).unwrap();
        }
        for b in 0..5u64 {
            let batch: Vec<Record> = (250 + b * 10..260 + b * 10).map(val).collect();
            t.append(0, &batch).unwrap();
        }
        assert_eq!(t.first_offset(0).unwrap(), 200);
        assert!(matches!(
            t.read(0, 10, 1, 100),
            Err(StoreError::OffsetOutOfRange { first: 200, .. })
        ));
        let v = t.read(0, 200, 1000, 1 << 20).unwrap();
        assert_eq!(v.len(), 100);
        assert_eq!(v[0].value, format!("{:08}", 200));
        // Whole segments below the first offset are deleted.
        let st = t.stats().unwrap();
        assert!(st.partitions[0].bytes < 44 * 100 + 1024 * 2, "{st:?}");
    }
    let s = open(dir.path());
    let t = s.topic("q").unwrap();
    assert_eq!(t.first_offset(0).unwrap(), 200);
    t.append(0, &[val(300)]).unwrap();
    assert_eq!(t.first_offset(0).unwrap(), 201);
    assert_eq!(t.read(0, 201, 1000, 1 << 20).unwrap().len(), 100);
}

#[test]
fn drop_oldest_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let t = s
        .create_topic(
            "q",
            TopicConfig {
                fsync: FsyncPolicy::Never,
                segment_max_bytes: 1024,
                limits: Limits {
                    max_messages: None,
                    max_bytes: Some(44 * 30),
                    on_full: OnFull::DropOldest,
                },
                ..TopicConfig::default()
            },
        )
        .unwrap();
    for i in 0..100 {
        t.append(0, &[val(i)]).unwrap();
    }
    assert_eq!(t.first_offset(0).unwrap(), 70);
    assert_eq!(t.read(0, 70, 1000, 1 << 20).unwrap().len(), 30);
}

#[test]
fn retention_by_bytes_and_age_deletes_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let t = s
        .create_topic(
            "r",
            TopicConfig {
                fsync: FsyncPolicy::Never,
                segment_max_bytes: 44 * 10,
                retention: Retention {
                    max_bytes: Some(44 * 35),
                    max_age_ms: None,
                },
                ..TopicConfig::default()
            },
        )
        .unwrap();
    for i in 0..100 {
        t.append(0, &[val(i)]).unwrap();
    }
    assert_eq!(t.apply_retention().unwrap(), 7);
    assert_eq!(t.first_offset(0).unwrap(), 70);
    assert_eq!(t.read(0, 70, 1, 100).unwrap()[0].offset, 70);
    assert!(t.read(0, 69, 1, 100).is_err());
    assert_eq!(t.stats().unwrap().partitions[0].segments, 3);

    let old = now_ms() - 10_000_000;
    let a = s
        .create_topic(
            "a",
            TopicConfig {
                fsync: FsyncPolicy::Never,
                segment_max_bytes: 44 * 10,
                retention: Retention {
                    max_bytes: None,
                    max_age_ms: Some(60_000),
                },
                ..TopicConfig::default()
            },
        )
        .unwrap();
    for i in 0..30 {
        let mut r = val(i);
        r.timestamp_ms = Some(old);
        a.append(0, &[r]).unwrap();
    }
    for i in 30..45 {
        a.append(0, &[val(i)]).unwrap();
    }
    assert_eq!(a.apply_retention().unwrap(), 3);
    assert_eq!(a.first_offset(0).unwrap(), 30);

    // An idle topic whose only (active) segment expired is emptied too; offsets go on.
    let idle = s
        .create_topic(
            "idle",
            TopicConfig {
                fsync: FsyncPolicy::Never,
                retention: Retention {
                    max_bytes: None,
                    max_age_ms: Some(60_000),
                },
                ..TopicConfig::default()
            },
        )
        .unwrap();
    let mut r = val(0);
    r.timestamp_ms = Some(old);
    idle.append(0, &[r.clone(), r]).unwrap();
    assert_eq!(idle.apply_retention().unwrap(), 1);
    assert_eq!(idle.first_offset(0).unwrap(), 2);
    assert_eq!(idle.append(0, &[val(2)]).unwrap().base_offset, 2);
}

/// A bounded `reject` topic frees capacity as its groups consume: records acked by
/// every queue group / committed by every stream group are trimmed to make room;
/// the slowest group bounds it, also after a reopen.
#[test]
fn reject_frees_capacity_as_groups_consume() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TopicConfig {
        fsync: FsyncPolicy::Never,
        segment_max_bytes: 1024,
        limits: Limits {
            max_messages: Some(10),
            max_bytes: None,
            on_full: OnFull::Reject,
        },
        ..TopicConfig::default()
    };
    let append = |t: &Topic, n: u64| -> u64 {
        let mut ok = 0;
        for i in 0..n {
            match t.append(0, &[val(i)]) {
                Ok(_) => ok += 1,
                Err(StoreError::TopicFull { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        ok
    };
    {
        let s = open(dir.path());
        let t = s.create_topic("b", cfg).unwrap();
        let q = t.queue_group("workers", QueueConfig::default()).unwrap();
        let st = t.stream_group("audit").unwrap();
        assert_eq!(append(&t, 15), 10);
        // The queue group acks 4: the stream group has consumed nothing, still full.
        let leased = q.poll("w", 4).unwrap();
        let ids: Vec<(u32, u64)> = leased.iter().map(|l| (0, l.record.offset)).collect();
        assert_eq!(q.ack(&ids).unwrap(), 4);
        assert_eq!(append(&t, 1), 0);
        // The stream group commits 6: the slowest (queue, 4) bounds the room.
        st.commit("m", 0, 6).unwrap();
        assert_eq!(append(&t, 10), 4);
        assert_eq!(t.first_offset(0).unwrap(), 4);
        // Leased but unacked records are not consumed.
        let more = q.poll("w", 3).unwrap();
        assert_eq!(more.len(), 3);
        assert_eq!(append(&t, 1), 0);
        let ids: Vec<(u32, u64)> = more.iter().map(|l| (0, l.record.offset)).collect();
        q.ack(&ids).unwrap();
        assert_eq!(append(&t, 10), 2); // stream group at 6 is now the slowest
    }
    // After a reopen the stored groups still bound the room.
    let s = open(dir.path());
    let t = s.topic("b").unwrap();
    assert_eq!(t.end_offset(0).unwrap() - t.first_offset(0).unwrap(), 10);
    assert_eq!(append(&t, 1), 0);
    t.stream_group("audit").unwrap().commit("m", 0, 16).unwrap();
    assert_eq!(append(&t, 5), 1); // the queue group has acked up to 7
}
