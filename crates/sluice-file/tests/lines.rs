//! Line handling through a real pipeline: a 10 MiB line, invalid UTF-8,
//! `\r\n`, a partial last line, multiline groups, record metadata.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_mib_line_is_truncated_by_default_and_whole_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let big: Vec<u8> = (0..10 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    let mut content = b"before\n".to_vec();
    content.extend_from_slice(&big);
    content.extend_from_slice(b"\nafter\n");
    std::fs::write(&log, &content).unwrap();

    let mut run = start(&dir.path().join("d1"), opts(log.to_str().unwrap()));
    assert!(wait_until(10, || run.got.len() >= 3).await);
    run.stop().await.unwrap();
    let got = run.got.all();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].value, b"before");
    assert_eq!(got[1].value.len(), 1 << 20);
    assert!(got[1].truncated);
    assert_eq!(&got[1].value[..], &big[..1 << 20]);
    assert_eq!(got[1].offset, 7);
    assert_eq!(got[2].value, b"after");
    assert!(!got[2].truncated);

    let mut o = opts(log.to_str().unwrap());
    o["max_line_bytes"] = (16 << 20).into();
    let mut run = start(&dir.path().join("d2"), o);
    assert!(wait_until(10, || run.got.len() >= 3).await);
    run.stop().await.unwrap();
    let got = run.got.all();
    assert_eq!(got[1].value, big);
    assert!(!got[1].truncated);

    let mut o = opts(log.to_str().unwrap());
    o["oversized_lines"] = "skip".into();
    let mut run = start(&dir.path().join("d3"), o);
    assert!(wait_until(10, || run.got.len() >= 2).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    run.stop().await.unwrap();
    assert_eq!(run.got.texts(), vec!["before", "after"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_and_crlf_pass_through_as_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(&log, b"ok\r\n\xff\xfe bad \xc3\x28\nlast\n").unwrap();
    let mut run = start(&dir.path().join("data"), opts(log.to_str().unwrap()));
    assert!(wait_until(10, || run.got.len() >= 3).await);
    run.stop().await.unwrap();
    let got = run.got.all();
    assert_eq!(got[0].value, b"ok");
    assert_eq!(got[1].value, b"\xff\xfe bad \xc3\x28");
    assert_eq!(got[1].offset, 4);
    assert_eq!(got[2].value, b"last");
    assert_eq!(got[0].path, log.to_str().unwrap());
    assert!(!got[0].host.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_last_line_waits_for_its_newline() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(&log, b"a\nb").unwrap();
    let mut o = opts(log.to_str().unwrap());
    o["partial_line_timeout_ms"] = 60_000.into();
    let mut run = start(&dir.path().join("data"), o);
    assert!(wait_until(10, || run.got.len() >= 1).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(run.got.texts(), vec!["a"]);
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(b"c\n").unwrap();
    assert!(wait_until(10, || run.got.len() >= 2).await);
    run.stop().await.unwrap();
    assert_eq!(run.got.texts(), vec!["a", "bc"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_last_line_is_emitted_after_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(&log, b"a\nb").unwrap();
    let mut o = opts(log.to_str().unwrap());
    o["partial_line_timeout_ms"] = 200.into();
    let mut run = start(&dir.path().join("data"), o);
    assert!(wait_until(10, || run.got.len() >= 2).await);
    assert_eq!(run.got.texts(), vec!["a", "b"]);
    // Its newline arrives later: no empty line.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(b"\nc\n").unwrap();
    assert!(wait_until(10, || run.got.len() >= 3).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    run.stop().await.unwrap();
    assert_eq!(run.got.texts(), vec!["a", "b", "c"]);
    // The same across a restart: emitted by timeout, newline after restart.
    f.write_all(b"d").unwrap();
    let data = dir.path().join("data");
    let got = run.got.clone();
    let mut o = opts(log.to_str().unwrap());
    o["partial_line_timeout_ms"] = 200.into();
    let mut run = start_into(&data, o.clone(), got.clone());
    assert!(wait_until(10, || got.len() >= 4).await);
    run.stop().await.unwrap();
    f.write_all(b"\ne\n").unwrap();
    let mut run = start_into(&data, o, got.clone());
    assert!(wait_until(10, || got.len() >= 5).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    run.stop().await.unwrap();
    assert_eq!(got.texts(), vec!["a", "b", "c", "d", "e"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiline_joins_stack_traces() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(
        &log,
        b"INFO start\nERROR boom\n  at a.b(C.java:1)\n  at d.e(F.java:2)\nINFO next\n",
    )
    .unwrap();
    let mut o = opts(log.to_str().unwrap());
    o["multiline"] = serde_json::json!({
        "start_pattern": "^[A-Z]",
        "condition_pattern": "^\\s",
        "mode": "continue_through",
        "timeout_ms": 200
    });
    let mut run = start(&dir.path().join("data"), o);
    assert!(wait_until(10, || run.got.len() >= 3).await);
    run.stop().await.unwrap();
    assert_eq!(
        run.got.texts(),
        vec![
            "INFO start",
            "ERROR boom\n  at a.b(C.java:1)\n  at d.e(F.java:2)",
            "INFO next"
        ]
    );
    assert_eq!(run.got.all()[1].offset, 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_options_are_refused() {
    use sluice_core::config::ComponentOptions;
    use sluice_core::{BuildContext, Resources, SourceFactory};
    let resources = Resources::default();
    let cx = BuildContext {
        name: "logs",
        data_dir: std::path::Path::new("/tmp"),
        resources: &resources,
    };
    let bad = serde_json::json!({"include": ["/tmp/*.log"], "inclde": 1});
    let e = sluice_file::FileSourceFactory
        .build(&cx, &ComponentOptions::from_json(bad))
        .err()
        .unwrap();
    assert!(e.message.contains("inclde"), "{e}");
    let rel = serde_json::json!({"include": ["logs/*.log"]});
    assert!(sluice_file::FileSourceFactory
        .build(&cx, &ComponentOptions::from_json(rel))
        .is_err());
}
