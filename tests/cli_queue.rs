//! The client subcommands against a real daemon: `sluice topics`, `produce`
//! (one record per stdin line), `consume` (exits at the end without
//! `--follow`; `--json`, `--max`, `--mode queue`, `--from latest`), `groups`.

mod api_common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use api_common::support::sluice_bin;

fn sluice(api: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(sluice_bin())
        .args(args)
        .env("SLUICE_API", api)
        .env_remove("SLUICE_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sluice {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn topics_produce_consume_groups() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, c) = api_common::queue_daemon(dir.path(), "");
    let api = c.base().to_string();
    sluice(
        &api,
        &["topics", "create", "orders", "--partitions", "2"],
        None,
    );
    let lines: String = (0..2500).map(|i| format!("order {i}\n")).collect();
    sluice(
        &api,
        &["produce", "orders", "--key", "k", "--header", "src=cli"],
        Some(&lines),
    );
    let list = text(&sluice(&api, &["topics", "list"], None));
    assert!(list.contains("orders") && list.contains("2500"), "{list}");
    let d: serde_json::Value = serde_json::from_str(&text(&sluice(
        &api,
        &["topics", "describe", "orders"],
        None,
    )))
    .unwrap();
    assert_eq!(d["records"], 2500);

    // Stream group: reads everything, exits at the end, commits.
    let out = text(&sluice(&api, &["consume", "orders", "--group", "g1"], None));
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), 2500);
    assert_eq!(got[0], "order 0");
    assert_eq!(got[2499], "order 2499", "one key: one partition, in order");
    // Committed: a second run reads nothing.
    assert_eq!(
        text(&sluice(&api, &["consume", "orders", "--group", "g1"], None)),
        ""
    );
    // --max and --json.
    let out = text(&sluice(
        &api,
        &["consume", "orders", "--group", "g2", "--max", "3", "--json"],
        None,
    ));
    let recs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0]["value"], "order 0");
    assert_eq!(recs[0]["key"], "k");
    assert_eq!(recs[0]["headers"]["src"], "cli");
    // --from latest: a new group sees only what comes after.
    assert_eq!(
        text(&sluice(
            &api,
            &["consume", "orders", "--group", "g3", "--from", "latest"],
            None
        )),
        ""
    );
    sluice(&api, &["produce", "orders", "--key", "k"], Some("late\n"));
    assert_eq!(
        text(&sluice(&api, &["consume", "orders", "--group", "g3"], None)),
        "late\n"
    );
    // Queue mode: two consumers together read each record once.
    let a = text(&sluice(
        &api,
        &[
            "consume", "orders", "--group", "q", "--mode", "queue", "--max", "1000",
        ],
        None,
    ));
    let b = text(&sluice(
        &api,
        &["consume", "orders", "--group", "q", "--mode", "queue"],
        None,
    ));
    assert_eq!(a.lines().count() + b.lines().count(), 2501);
    let groups = text(&sluice(&api, &["groups", "list", "orders"], None));
    for g in ["g1", "g2", "g3", "q"] {
        assert!(groups.contains(g), "{groups}");
    }
    let q: serde_json::Value = serde_json::from_str(&text(&sluice(
        &api,
        &["groups", "describe", "orders", "q"],
        None,
    )))
    .unwrap();
    assert_eq!(q["mode"], "queue");
    assert_eq!(q["lag"], 0);
    sluice(&api, &["topics", "delete", "orders"], None);
    assert!(!text(&sluice(&api, &["topics"], None)).contains("orders"));
}

#[test]
fn wrong_api_or_token_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = api_common::free_port();
    let yaml = format!("data_dir: ./data\napi:\n  listen: 127.0.0.1:{port}\n  auth_token: tok\n");
    let mut d = api_common::Daemon::start(dir.path(), &yaml, port);
    d.wait_healthy();
    let api = format!("http://127.0.0.1:{port}");
    let out = Command::new(sluice_bin())
        .args(["topics", "list", "--api", &api])
        .env_remove("SLUICE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    let out = Command::new(sluice_bin())
        .args(["topics", "list", "--api", &api])
        .env("SLUICE_TOKEN", "tok")
        .output()
        .unwrap();
    assert!(out.status.success());
}
