//! End-to-end tests of the `sluice` binary with built-in components: HTTP
//! ingest into a file sink, kill -9 and restart of a generator pipeline,
//! peak shaving with `when_full: reject`, and SIGTERM draining under
//! `ack: durable`.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use support::{free_port, post, read_lines, wait_listening, Daemon};

fn ndjson(range: std::ops::Range<u64>) -> String {
    range.map(|i| format!("{{\"seq\":{i}}}\n")).collect()
}

/// seq → how many times it was written.
fn seq_counts(dir: &Path) -> HashMap<u64, u32> {
    let mut counts = HashMap::new();
    for line in read_lines(&dir.join("out"), ".log") {
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"));
        *counts.entry(v["seq"].as_u64().expect("seq")).or_insert(0) += 1;
    }
    counts
}

#[test]
fn http_ingest_to_file_100k_records() {
    let dir = tempfile::tempdir().unwrap();
    let (api, http) = (free_port(), free_port());
    let mut d = Daemon::start(
        dir.path(),
        &format!(
            "data_dir: ./data\napi: {{ listen: 127.0.0.1:{api} }}\nsources:\n  ingest:\n    type: http\n    listen: 127.0.0.1:{http}\nsinks:\n  out:\n    type: file\n    inputs: [ingest]\n    path: ./out/{{source}}.log\n"
        ),
        api,
    );
    d.wait_healthy();
    // Healthy means running; the HTTP source binds its port as it starts.
    wait_listening(http);
    for i in 0..100u64 {
        let (status, body) = post(http, "/", &ndjson(i * 1000..(i + 1) * 1000));
        assert_eq!(status, 200, "{body}");
    }
    d.sigterm();
    assert_eq!(d.wait(Duration::from_secs(60)), Some(0));
    let counts = seq_counts(dir.path());
    assert_eq!(counts.len(), 100_000);
    assert!(
        counts.values().all(|&c| c == 1),
        "a record was written twice"
    );
}

#[test]
fn generator_to_file_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let total = 300_000u64;
    let yaml = format!(
        "data_dir: ./data\ncheckpoint_interval_ms: 100\napi: {{ listen: 127.0.0.1:{api} }}\nsources:\n  gen:\n    type: generator\n    format: json\n    count: {total}\n    rate_per_sec: 50000\nsinks:\n  out:\n    type: file\n    inputs: [gen]\n    path: ./out/{{source}}.log\n"
    );
    let mut d = Daemon::start(dir.path(), &yaml, api);
    d.wait_healthy();
    // Let it write a while, then kill it hard.
    while read_lines(&dir.path().join("out"), ".log").len() < 60_000 {
        std::thread::sleep(Duration::from_millis(50));
        assert!(d.child.try_wait().unwrap().is_none(), "exited early");
    }
    d.kill9();
    let mut d = Daemon::start(dir.path(), &yaml, api);
    assert_eq!(
        d.wait(Duration::from_secs(120)),
        Some(0),
        "the restarted run did not finish"
    );
    let counts = seq_counts(dir.path());
    let missing: Vec<u64> = (0..total).filter(|s| !counts.contains_key(s)).collect();
    assert!(
        missing.is_empty(),
        "{} sequence numbers missing, first {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let mut dups: Vec<u64> = counts
        .iter()
        .filter(|(_, &c)| c > 1)
        .map(|(&s, _)| s)
        .collect();
    dups.sort_unstable();
    assert!(
        counts.values().all(|&c| c <= 2),
        "a record was written more than twice"
    );
    if let (Some(first), Some(last)) = (dups.first(), dups.last()) {
        // Re-delivery is only of the unacknowledged window: one contiguous
        // run, no longer than the queues plus what 100 ms of checkpoint
        // interval (and a second of slack) can hold at 50k records/s.
        assert_eq!(
            (last - first + 1) as usize,
            dups.len(),
            "re-delivered records are not one contiguous window"
        );
        assert!(dups.len() <= 20_000 + 60_000, "{} re-delivered", dups.len());
    }
}

#[test]
fn peak_shaving_rejects_with_429_and_loses_nothing_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (api, http) = (free_port(), free_port());
    // A deliberately slow sink (an fsync per record) behind small queues.
    let mut d = Daemon::start(
        dir.path(),
        &format!(
            "data_dir: ./data\napi: {{ listen: 127.0.0.1:{api} }}\nsources:\n  ingest:\n    type: http\n    listen: 127.0.0.1:{http}\n    queue: {{ max_events: 1000, when_full: reject }}\nsinks:\n  out:\n    type: file\n    inputs: [ingest]\n    path: ./out/{{source}}.log\n    fsync: true\n    batch: {{ max_events: 1 }}\n    buffer: {{ max_events: 100 }}\n"
        ),
        api,
    );
    d.wait_healthy();
    // Healthy means running; the HTTP source binds its port as it starts.
    wait_listening(http);
    let handles: Vec<_> = (0..4u64)
        .map(|c| {
            std::thread::spawn(move || {
                let (mut accepted, mut busy) = (Vec::new(), 0);
                for i in 0..50u64 {
                    let start = (c * 50 + i) * 250;
                    let (status, body) = post(http, "/", &ndjson(start..start + 250));
                    match status {
                        200 => accepted.push(start),
                        429 => busy += 1,
                        other => panic!("unexpected {other}: {body}"),
                    }
                }
                (accepted, busy)
            })
        })
        .collect();
    let mut accepted = Vec::new();
    let mut busy = 0;
    for h in handles {
        let (a, b) = h.join().unwrap();
        accepted.extend(a);
        busy += b;
    }
    assert!(busy > 0, "the burst never got a 429");
    d.sigterm();
    assert_eq!(d.wait(Duration::from_secs(120)), Some(0));
    let counts = seq_counts(dir.path());
    assert_eq!(counts.len(), accepted.len() * 250, "delivered != accepted");
    for start in accepted {
        for s in start..start + 250 {
            assert_eq!(
                counts.get(&s),
                Some(&1),
                "accepted record {s} not delivered exactly once"
            );
        }
    }
}

#[test]
fn sigterm_drains_and_loses_nothing_acknowledged_durably() {
    let dir = tempfile::tempdir().unwrap();
    let (api, http) = (free_port(), free_port());
    let mut d = Daemon::start(
        dir.path(),
        &format!(
            "data_dir: ./data\napi: {{ listen: 127.0.0.1:{api} }}\nsources:\n  ingest:\n    type: http\n    listen: 127.0.0.1:{http}\n    ack: durable\nsinks:\n  out:\n    type: file\n    inputs: [ingest]\n    path: ./out/{{source}}.log\n    fsync: true\n"
        ),
        api,
    );
    d.wait_healthy();
    // Healthy means running; the HTTP source binds its port as it starts.
    wait_listening(http);
    let client = std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        for i in 0..10_000u64 {
            let (status, _) = post(http, "/", &ndjson(i * 100..(i + 1) * 100));
            if status == 200 {
                acknowledged.push(i);
            } else if status == 0 || status == 503 {
                break;
            }
        }
        acknowledged
    });
    std::thread::sleep(Duration::from_millis(700));
    d.sigterm();
    assert_eq!(d.wait(Duration::from_secs(60)), Some(0));
    let acknowledged = client.join().unwrap();
    assert!(!acknowledged.is_empty());
    let counts = seq_counts(dir.path());
    for i in acknowledged {
        for s in i * 100..(i + 1) * 100 {
            assert!(
                counts.contains_key(&s),
                "record {s} was acknowledged but is not in the file"
            );
        }
    }
}
