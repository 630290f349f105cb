//! API security through the real binary: a non-loopback listener without a
//! token refuses to start; with a token every route but /health needs it
//! (wrong or missing → 401); a topic name like `../x` → 400 touching no file;
//! TLS from cert/key files.

mod api_common;

use std::time::Duration;

use api_common::support::{free_port, sluice_bin, Daemon};
use serde_json::json;
use sluice::client::Client;

#[test]
fn non_loopback_without_token_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = format!("data_dir: ./data\napi:\n  listen: 0.0.0.0:{port}\n");
    let mut d = Daemon::start(dir.path(), &yaml, port);
    let code = d.wait(Duration::from_secs(30));
    assert!(matches!(code, Some(1) | Some(4)), "exit code {code:?}");
    let log = std::fs::read_to_string(dir.path().join("sluice.log")).unwrap();
    assert!(log.contains("auth_token"), "says why: {log}");
}

#[test]
fn token_required_everywhere_but_health_and_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let secret = "s3cr3t-token-value";
    let yaml =
        format!("data_dir: ./data\napi:\n  listen: 0.0.0.0:{port}\n  auth_token: {secret}\n");
    let mut d = Daemon::start(dir.path(), &yaml, port);
    d.wait_healthy();
    let base = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        for path in [
            "/metrics",
            "/api/v1/topics",
            "/api/v1/openapi.json",
            "/api/v1/topics/t/records?group=g",
        ] {
            let r = http.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(r.status(), 401, "{path} without token");
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["error"], "unauthorized");
            let r = http
                .get(format!("{base}{path}"))
                .bearer_auth("wrong")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{path} with a wrong token");
        }
        let r = http
            .post(format!("{base}/api/v1/topics/t/records"))
            .body(r#"{"value":1}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = http.get(format!("{base}/health")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let good = Client::new(&base, Some(secret.into())).unwrap();
        good.produce("t", &[json!({"value": 1})]).await.unwrap();
        assert_eq!(good.list_topics().await.unwrap()["topics"][0]["name"], "t");
        let bad = Client::new(&base, Some("nope".into())).unwrap();
        assert_eq!(bad.list_topics().await.unwrap_err().status, 401);
    });
    // validate never echoes the token.
    let out = std::process::Command::new(sluice_bin())
        .args(["validate"])
        .arg(dir.path().join("pipeline.yaml"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains(secret), "{text}");
    d.sigterm();
    d.wait(Duration::from_secs(30));
    let log = std::fs::read_to_string(dir.path().join("sluice.log")).unwrap();
    assert!(!log.contains(secret), "token in the log");
}

#[test]
fn path_traversal_topic_names_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, c) = api_common::queue_daemon(dir.path(), "");
    let base = c.base().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        for name in [
            "%2E%2E%2Fx",
            "..%2Fx",
            "a%2Fb",
            "a%20b",
            "%2E%2E%2F%2E%2E%2Fetc",
        ] {
            let r = http
                .post(format!("{base}/api/v1/topics/{name}/records"))
                .body(r#"{"value":1}"#)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "{name}");
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["error"], "invalid_name", "{v}");
            let r = http
                .put(format!("{base}/api/v1/topics/{name}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "create {name}");
        }
        let e = c.produce("../x", &[json!({"value": 1})]).await.unwrap_err();
        assert_eq!(e.status, 400);
    });
    // Nothing was created beside or inside the store.
    assert!(!dir.path().join("data/x").exists());
    assert!(!dir.path().join("x").exists());
    let store: Vec<_> = std::fs::read_dir(dir.path().join("data/store"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert!(store.is_empty(), "{store:?}");
}

#[test]
fn errors_are_json_with_fitting_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, c) = api_common::queue_daemon(dir.path(), "store:\n  auto_create_topics: false\n");
    let base = c.base().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // auto_create_topics: false → producing to a missing topic is 404.
        let e = c
            .produce("missing", &[json!({"value": 1})])
            .await
            .unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (404, "unknown_topic"));
        c.create_topic("t", &json!({})).await.unwrap();
        let e = c.create_topic("t", &json!({})).await.unwrap_err();
        assert_eq!(e.status, 409);
        // A bad record is named and nothing is appended.
        let e = c
            .produce_raw("t", b"{\"value\":1}\n{\"value\":2}\nnot json\n".to_vec())
            .await
            .unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("record 2"), "{}", e.message);
        assert_eq!(c.describe_topic("t").await.unwrap()["records"], 0);
        // Above the size limit: 413.
        let big = vec![b' '; sluice::api::produce::MAX_BODY + 10];
        let e = c.produce_raw("t", big).await.unwrap_err();
        assert_eq!(e.status, 413, "{e}");
        let http = reqwest::Client::new();
        let r = http
            .get(format!("{base}/api/v1/nope"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"], "not_found");
        let r = http
            .get(format!("{base}/api/v1/topics/t/records"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "missing group");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"], "bad_request", "{v}");
        let r = http
            .get(format!(
                "{base}/api/v1/topics/t/subscribe?group=g&mode=nope"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.json::<serde_json::Value>().await.unwrap()["message"].is_string());
    });
}

#[test]
fn tls_from_cert_and_key_files() {
    let dir = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let port = free_port();
    let yaml = format!("data_dir: ./data\napi:\n  listen: 127.0.0.1:{port}\n  tls:\n    cert: ./cert.pem\n    key: ./key.pem\n");
    let _d = Daemon::start(dir.path(), &yaml, port);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = reqwest::Certificate::from_pem(&std::fs::read(dir.path().join("cert.pem")).unwrap())
        .unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([cert])
        .build()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = format!("https://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match http.get(format!("{url}/health")).send().await {
                Ok(r) if r.status() == 200 => break,
                _ if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                other => panic!("no TLS health: {other:?}"),
            }
        }
        let r = http
            .post(format!("{url}/api/v1/topics/sec/records"))
            .body(r#"{"value":"x"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // Plain HTTP on the TLS port gets no answer.
        let plain = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/health"))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
    });
}
