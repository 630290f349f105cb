//! Recovery specifics: torn tail truncated and reported, CRC mismatch inside a sealed
//! segment reported with topic/partition/offset while earlier reads succeed, and the
//! clean-shutdown marker.

use bytes::Bytes;
use sluice_store::*;

fn cfg() -> TopicConfig {
    TopicConfig {
        fsync: FsyncPolicy::Never,
        segment_max_bytes: 1024,
        index_interval_bytes: 128,
        ..TopicConfig::default()
    }
}

fn fill(dir: &std::path::Path, n: u64) -> Vec<std::path::PathBuf> {
    let s = Store::open(dir, StoreOptions::default()).unwrap();
    let t = s.create_topic("t", cfg()).unwrap();
    for i in 0..n {
        t.append(0, &[Record::new(Bytes::from(format!("{i:060}")))])
            .unwrap();
    }
    let mut logs: Vec<_> = std::fs::read_dir(dir.join("t/0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

#[test]
fn torn_tail_is_truncated_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let logs = fill(dir.path(), 40);
    let last = logs.last().unwrap();
    let mut b = std::fs::read(last).unwrap();
    let len = b.len();
    b.truncate(len - 30);
    b.extend_from_slice(b"\xff\xff\xff\x7fgarbage");
    std::fs::write(last, b).unwrap();
    std::fs::remove_file(dir.path().join(".clean_shutdown")).unwrap();
    let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert!(!s.was_clean_shutdown());
    let ev = s.recovery_events();
    assert!(
        ev.iter().any(|e| e.topic == "t"
            && e.partition == 0
            && matches!(e.kind, RecoveryKind::TruncatedTail { bytes } if bytes == 96 - 30 + 11)),
        "{ev:?}"
    );
    let t = s.topic("t").unwrap();
    assert_eq!(t.end_offset(0).unwrap(), 39);
}

#[test]
fn corrupt_sealed_segment_is_reported_and_earlier_reads_work() {
    let dir = tempfile::tempdir().unwrap();
    let logs = fill(dir.path(), 40);
    assert!(logs.len() >= 3);
    // Flip a value byte of the 3rd record of the first (sealed) segment: frame = 96 bytes.
    let mut b = std::fs::read(&logs[0]).unwrap();
    b[2 * 96 + 50] ^= 0x01;
    std::fs::write(&logs[0], b).unwrap();
    // Also drop its index so that opening rescans it and reports the bad frame.
    std::fs::remove_file(logs[0].with_extension("index")).unwrap();
    let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert!(s.was_clean_shutdown());
    assert!(s
        .recovery_events()
        .iter()
        .any(|e| matches!(&e.kind, RecoveryKind::CorruptRecord { offset: 2, .. })));
    let t = s.topic("t").unwrap();
    let v = t.read(0, 0, 100, 1 << 20).unwrap();
    assert_eq!(v.len(), 2);
    match t.read(0, 2, 100, 1 << 20) {
        Err(StoreError::Corrupt {
            topic,
            partition,
            offset,
            resume_at: Some(next),
            ..
        }) => {
            assert_eq!((topic.as_str(), partition, offset), ("t", 0, 2));
            let v = t.read(0, next, 100, 1 << 20).unwrap();
            assert_eq!(v[0].offset, next);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    // Appends still work.
    t.append(0, &[Record::new("more")]).unwrap();
}
