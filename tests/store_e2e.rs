//! End to end through the embedded store: HTTP ingest → `store` sink, and
//! `store` source (a stream group) → file sink, in one daemon that is
//! killed with -9 twice while records flow. A client that retries whatever
//! was not acknowledged ends with every record in the file.

mod support;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{free_port, read_lines, Daemon};

fn post(port: u16, body: &str) -> u16 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let req = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn seqs(dir: &Path) -> (usize, HashSet<u64>) {
    let lines = read_lines(&dir.join("out"), ".log");
    let set = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
            v["seq"].as_u64().unwrap()
        })
        .collect();
    (lines.len(), set)
}

#[test]
fn http_to_store_to_file_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (api, http) = (free_port(), free_port());
    let yaml = format!(
        "data_dir: ./data\ncheckpoint_interval_ms: 100\napi: {{ listen: 127.0.0.1:{api} }}\n\
sources:\n  ingest:\n    type: http\n    listen: 127.0.0.1:{http}\n    ack: durable\n  events_in:\n    type: store\n    topic: events\n    group: archiver\n\
sinks:\n  events:\n    type: store\n    inputs: [ingest]\n    topic: events\n    partitions: 2\n    key: seq\n  archive:\n    type: file\n    inputs: [events_in]\n    path: ./out/events.log\n"
    );
    let total = 40_000u64;
    let per_request = 500u64;
    let mut d = Daemon::start(dir.path(), &yaml, api);
    d.wait_healthy();
    let mut next_request = 0u64;
    let mut kills = 0;
    while next_request * per_request < total {
        let start = next_request * per_request;
        let body: String = (start..start + per_request)
            .map(|i| format!("{{\"seq\":{i}}}\n"))
            .collect();
        if post(http, &body) == 200 {
            next_request += 1;
        } else {
            // Not acknowledged: the daemon is down; send the same again.
            if let Some(status) = d.child.try_wait().unwrap() {
                panic!(
                    "sluice exited: {status}; see {}",
                    dir.path().join("sluice.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        if (next_request == 25 || next_request == 55) && kills < 2 {
            kills += 1;
            d.kill9();
            d = Daemon::start(dir.path(), &yaml, api);
            d.wait_healthy();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while seqs(dir.path()).1.len() < total as usize && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    d.sigterm();
    assert_eq!(d.wait(Duration::from_secs(60)), Some(0));
    let (lines, set) = seqs(dir.path());
    let missing: Vec<u64> = (0..total).filter(|s| !set.contains(s)).take(5).collect();
    assert!(
        missing.is_empty(),
        "missing sequence numbers, first {missing:?}"
    );
    assert!(lines >= total as usize);
}
