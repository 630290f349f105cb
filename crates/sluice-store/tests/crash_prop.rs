//! Property test: random batches, then a crash simulated by damaging the files (tail cut
//! at any byte past the fsync-acknowledged data, garbage appended, a bit flipped
//! anywhere), reopen: every acknowledged record before the damage is there, in order, bit
//! for bit, and nothing corrupt is ever returned.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use proptest::prelude::*;
use sluice_store::*;

#[derive(Debug, Clone)]
enum Damage {
    /// Cut the concatenated log at `acked + frac * (total - acked)`.
    Cut(f64),
    /// Cut as above, then append garbage bytes to the last file.
    CutGarbage(f64, Vec<u8>),
    /// Flip bit `bit` of the byte at `frac * total` of the concatenated log.
    Flip(f64, u8),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (0.0..=1.0f64).prop_map(Damage::Cut),
        (0.0..=1.0f64, proptest::collection::vec(any::<u8>(), 1..200))
            .prop_map(|(f, g)| Damage::CutGarbage(f, g)),
        (0.0..1.0f64, 0u8..8).prop_map(|(f, b)| Damage::Flip(f, b)),
    ]
}

fn record() -> impl Strategy<Value = Record> {
    (
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..12)),
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(
            ("[a-z]{0,6}", proptest::collection::vec(any::<u8>(), 0..8)),
            0..3,
        ),
        0i64..1_000_000,
    )
        .prop_map(|(k, v, h, ts)| Record {
            key: k.map(Bytes::from),
            value: Bytes::from(v),
            headers: h
                .into_iter()
                .map(|(name, value)| Header {
                    name,
                    value: Bytes::from(value),
                })
                .collect(),
            timestamp_ms: Some(ts),
        })
}

fn batches() -> impl Strategy<Value = Vec<Vec<Record>>> {
    proptest::collection::vec(proptest::collection::vec(record(), 1..20), 1..12)
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

/// (offset, start, end) of every frame, in concatenated-log coordinates.
fn frames(files: &[PathBuf]) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    let mut base = 0u64;
    for f in files {
        let b = std::fs::read(f).unwrap();
        let mut p = 0usize;
        while p + 36 <= b.len() {
            let len = u32::from_le_bytes(b[p..p + 4].try_into().unwrap()) as usize + 4;
            let off = u64::from_le_bytes(b[p + 12..p + 20].try_into().unwrap());
            out.push((off, base + p as u64, base + (p + len) as u64));
            p += len;
        }
        base += b.len() as u64;
    }
    out
}

fn same(a: &StoredRecord, b: &Record) -> bool {
    a.key == b.key
        && a.value == b.value
        && a.headers == b.headers
        && Some(a.timestamp_ms) == b.timestamp_ms
}

fn run(acked: Vec<Vec<Record>>, unacked: Vec<Vec<Record>>, dmg: Damage, seg: u64, interval: u32) {
    let dir = tempfile::tempdir().unwrap();
    let pdir = dir.path().join("t/0");
    let all: Vec<Record> = acked
        .iter()
        .chain(unacked.iter())
        .flatten()
        .cloned()
        .collect();
    let n_acked: u64 = acked.iter().map(|b| b.len() as u64).sum();
    let acked_sizes: Vec<u64>;
    {
        let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let cfg = TopicConfig {
            fsync: FsyncPolicy::Interval { ms: 1000 },
            segment_max_bytes: seg,
            index_interval_bytes: interval,
            ..TopicConfig::default()
        };
        let t = s.create_topic("t", cfg).unwrap();
        let mut last = None;
        for b in &acked {
            last = Some(t.append(0, b).unwrap());
        }
        t.sync().unwrap();
        assert!(last.unwrap().is_durable());
        acked_sizes = log_files(&pdir)
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .collect();
        for b in &unacked {
            t.append(0, b).unwrap();
        }
    }
    // Crash: no clean marker.
    std::fs::remove_file(dir.path().join(".clean_shutdown")).unwrap();
    let files = log_files(&pdir);
    let before = frames(&files);
    let sizes: Vec<u64> = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .collect();
    let total: u64 = sizes.iter().sum();
    let acked_total: u64 = acked_sizes.iter().sum();
    let cut = |frac: f64| {
        let at = acked_total + ((total - acked_total) as f64 * frac) as u64;
        let mut base = 0;
        for (i, f) in files.iter().enumerate() {
            if at < base + sizes[i] || i + 1 == files.len() {
                let keep = at - base;
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(f)
                    .unwrap()
                    .set_len(keep)
                    .unwrap();
                for later in &files[i + 1..] {
                    std::fs::remove_file(later).unwrap();
                }
                return f.clone();
            }
            base += sizes[i];
        }
        unreachable!()
    };
    // Offset of the first record that may legitimately be missing.
    let mut lost_from = n_acked;
    match &dmg {
        Damage::Cut(f) => {
            cut(*f);
        }
        Damage::CutGarbage(f, g) => {
            let last = cut(*f);
            let mut b = std::fs::read(&last).unwrap();
            b.extend_from_slice(g);
            std::fs::write(&last, b).unwrap();
        }
        Damage::Flip(f, bit) => {
            let at = ((total as f64 * f) as u64).min(total - 1);
            let mut base = 0;
            for (i, file) in files.iter().enumerate() {
                if at < base + sizes[i] {
                    let mut b = std::fs::read(file).unwrap();
                    b[(at - base) as usize] ^= 1 << bit;
                    std::fs::write(file, b).unwrap();
                    break;
                }
                base += sizes[i];
            }
            let hit = before
                .iter()
                .find(|(_, s, e)| at >= *s && at < *e)
                .map(|f| f.0);
            lost_from = lost_from.min(hit.unwrap_or(u64::MAX));
        }
    }
    let s = Store::open(dir.path(), StoreOptions::default()).expect("store must open");
    let t = s.topic("t").unwrap();
    let mut off = t.first_offset(0).unwrap();
    let mut seen = Vec::new();
    loop {
        match t.read(0, off, 7, 2000) {
            Ok(v) if v.is_empty() => break,
            Ok(v) => {
                for r in v {
                    assert!(r.offset >= off, "offsets go backwards");
                    assert!(
                        same(&r, &all[r.offset as usize]),
                        "record {} differs",
                        r.offset
                    );
                    off = r.offset + 1;
                    seen.push(r.offset);
                }
            }
            Err(StoreError::Corrupt {
                resume_at: Some(n),
                offset,
                ..
            }) => {
                assert!(
                    offset >= lost_from,
                    "corrupt at {offset} before damage at {lost_from}"
                );
                off = n;
            }
            Err(StoreError::Corrupt { offset, .. }) => {
                assert!(
                    offset >= lost_from,
                    "corrupt at {offset} before damage at {lost_from}"
                );
                break;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    for o in 0..lost_from {
        assert_eq!(
            seen.get(o as usize),
            Some(&o),
            "acknowledged record {o} missing ({dmg:?})"
        );
    }
    // The store keeps working after recovery.
    let end = t.end_offset(0).unwrap();
    let r = t.append(0, &[Record::new("after")]).unwrap();
    assert_eq!(r.base_offset, end);
    t.sync().unwrap();
    assert_eq!(t.read(0, end, 1, 100).unwrap()[0].value, "after");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(96),
        ..ProptestConfig::default()
    })]

    #[test]
    fn crash_anywhere_keeps_acknowledged_records(
        acked in batches(),
        unacked in batches(),
        dmg in damage(),
        seg in 1024u64..6000,
        interval in 64u32..2048,
    ) {
        run(acked, unacked, dmg, seg, interval);
    }
}
