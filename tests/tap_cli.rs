//! `sluice tap` through the binary against a running daemon: a source's and
//! a sink's records, the `where` filter applied by the daemon, `--limit`,
//! clear errors for an unknown component or a bad condition, and a listener
//! that never reads does not slow the pipeline (it only misses samples).

mod support;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{free_port, sluice_bin, Daemon};

fn tap(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(sluice_bin())
        .arg("tap")
        .args(args)
        .args(["--api", url])
        .output()
        .unwrap()
}

fn lines(out: &std::process::Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "tap failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn tap_prints_a_filtered_live_sample_of_a_source_and_a_sink() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let mut d = Daemon::start(
        dir.path(),
        &format!(
            "data_dir: ./data\napi: {{ listen: 127.0.0.1:{api} }}\nsources:\n  gen:\n    type: generator\n    rate_per_sec: 2000\nsinks:\n  orders:\n    type: blackhole\n    inputs: [gen]\n    where: 'message =~ \"/orders/\"'\n"
        ),
        api,
    );
    d.wait_healthy();
    let url = format!("http://127.0.0.1:{api}");

    // A source: every record it emits, filtered by the daemon.
    let got = lines(&tap(
        &url,
        &["gen", "--where", "message =~ \"/login/\"", "--limit", "7"],
    ));
    assert_eq!(got.len(), 7);
    let mut seqs = Vec::new();
    for r in &got {
        assert_eq!(r["component"], "gen", "{r}");
        assert_eq!(r["source"], "gen", "{r}");
        let msg = r["record"]["message"].as_str().unwrap();
        assert!(msg.contains("GET /login/"), "{msg}");
        assert!(r["timestamp_ms"].as_i64().unwrap() > 0);
        let seq = msg
            .split("GET /login/")
            .nth(1)
            .unwrap()
            .split('?')
            .next()
            .unwrap();
        seqs.push(seq.to_string());
    }
    seqs.dedup();
    assert_eq!(seqs.len(), 7, "records repeat: {seqs:?}");

    // Without a filter, the source shows every kind of line.
    let all = lines(&tap(&url, &["gen", "--limit", "40"]));
    assert_eq!(all.len(), 40);
    assert!(all
        .iter()
        .any(|r| r["record"]["message"].as_str().unwrap().contains("/login/")));
    assert!(all
        .iter()
        .any(|r| r["record"]["message"].as_str().unwrap().contains("/items/")));

    // A sink: what it receives, after its own `where`.
    let got = lines(&tap(&url, &["orders", "--limit", "5"]));
    assert_eq!(got.len(), 5);
    for r in &got {
        assert_eq!(r["component"], "orders");
        assert_eq!(r["source"], "gen");
        assert!(
            r["record"]["message"]
                .as_str()
                .unwrap()
                .contains("/orders/"),
            "{r}"
        );
    }

    // Clear errors.
    let out = tap(&url, &["nope", "--limit", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no component named `nope`"), "{err}");
    let out = tap(&url, &["gen", "--where", "message =~", "--limit", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid `where`"), "{err}");
    let out = tap(&url, &["gen", "--limit", "0"]);
    assert_eq!(out.status.code(), Some(2));

    d.sigterm();
    assert_eq!(d.wait(Duration::from_secs(30)), Some(0));
}

fn component(api: u16, name: &str) -> Value {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", api)).unwrap();
    write!(
        s,
        "GET /api/v1/components HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("");
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    v["components"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn a_listener_that_never_reads_does_not_hold_the_pipeline_back() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let total = 200_000u64;
    // The idle HTTP source keeps the daemon up once the generator is done.
    let idle = free_port();
    let mut d = Daemon::start(
        dir.path(),
        &format!(
            "data_dir: ./data\napi: {{ listen: 127.0.0.1:{api} }}\nsources:\n  gen:\n    type: generator\n    count: {total}\n    rate_per_sec: 50000\n  idle:\n    type: http\n    listen: 127.0.0.1:{idle}\nsinks:\n  hole:\n    type: blackhole\n    inputs: [gen]\n  idle_out:\n    type: blackhole\n    inputs: [idle]\n"
        ),
        api,
    );
    d.wait_healthy();
    // Two taps whose client never reads a byte: once the socket buffers
    // are full the daemon's writers are stuck, and the taps fall behind.
    let mut stuck = Vec::new();
    for name in ["gen", "hole"] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", api)).unwrap();
        write!(
            s,
            "GET /api/v1/components/{name}/tap HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .unwrap();
        stuck.push(s);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = component(api, "hole")["records_out"].as_u64().unwrap_or(0);
        if out == total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sink wrote {out} of {total} records while a tap listener was stuck"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Hung-up listeners end their streams; the daemon stops cleanly.
    drop(stuck);
    d.sigterm();
    assert_eq!(d.wait(Duration::from_secs(60)), Some(0));
}
