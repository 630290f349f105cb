//! Shared helpers of the API tests: a queue-only daemon on a free port and a
//! client of it. Uses `tests/support` for the process handling.

#![allow(dead_code)]

#[path = "../support/mod.rs"]
pub mod support;

use std::path::Path;

use serde_json::{json, Value};
use sluice::client::Client;
pub use support::{free_port, Daemon};

/// A daemon with only `data_dir` and `api` (plus `extra` YAML), healthy.
pub fn queue_daemon(dir: &Path, extra: &str) -> (Daemon, Client) {
    let port = free_port();
    let yaml = format!("data_dir: ./data\napi:\n  listen: 127.0.0.1:{port}\n{extra}");
    let mut d = Daemon::start(dir, &yaml, port);
    d.wait_healthy();
    let c = Client::new(&format!("http://127.0.0.1:{port}"), None).unwrap();
    (d, c)
}

/// `n` records `{key: "k{i}", value: {"i": i}}`.
pub fn records(from: usize, n: usize) -> Vec<Value> {
    (from..from + n)
        .map(|i| json!({"key": format!("k{i}"), "value": {"i": i}}))
        .collect()
}

/// The `i` of a record produced by [`records`].
pub fn index_of(r: &sluice::client::OutRecord) -> u64 {
    r.value["i"].as_u64().expect("record with i")
}
