//! Operator commands through the binary: `sluice status` (table and
//! `--json`) against a running daemon, and `sluice completions`.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{free_port, sluice_bin, Daemon};

#[test]
fn status_lists_every_component_of_a_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let mut d = Daemon::start(
        dir.path(),
        &format!(
            "data_dir: ./data\napi: {{ listen: 127.0.0.1:{api} }}\nsources:\n  demo:\n    type: generator\n    rate_per_sec: 1000\nsinks:\n  sink_a:\n    type: blackhole\n    inputs: [demo]\n"
        ),
        api,
    );
    d.wait_healthy();
    std::thread::sleep(Duration::from_millis(500));
    let url = format!("http://127.0.0.1:{api}");
    let out = Command::new(sluice_bin())
        .args(["status", "--api", &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("COMPONENT"), "{table}");
    for name in ["demo", "sink_a", "generator", "blackhole"] {
        assert!(table.contains(name), "{name} missing:\n{table}");
    }
    let out = Command::new(sluice_bin())
        .args(["status", "--json", "--api", &url])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sink = v["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "sink_a")
        .unwrap();
    assert!(sink["records_out"].as_u64().unwrap() > 0, "{sink}");
    d.sigterm();
    assert_eq!(d.wait(Duration::from_secs(30)), Some(0));
    // With the daemon gone, status fails and says so.
    let out = Command::new(sluice_bin())
        .args(["status", "--api", &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!out.stderr.is_empty());
}

#[test]
fn completions_are_generated_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(sluice_bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("sluice") && script.contains("validate"),
            "{shell}: {script}"
        );
    }
}
