//! The OpenAPI document at `/api/v1/openapi.json` against the real routes:
//! every documented operation is served (never "no such route" or 405), a
//! method it does not document is refused, and errors are `{error, message}`.

mod api_common;

use serde_json::Value;

#[test]
fn openapi_document_matches_the_routes() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, c) = api_common::queue_daemon(dir.path(), "");
    let base = c.base().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let doc: Value = http
            .get(format!("{base}/api/v1/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["openapi"], "3.0.3");
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.len() >= 12);
        // A topic and group to address.
        c.produce("t", &[serde_json::json!({"value": 1})])
            .await
            .unwrap();
        let mut checked = 0;
        for (path, ops) in paths {
            for (method, op) in ops.as_object().unwrap() {
                assert!(
                    op["responses"].get("default").is_some() || path == "/health",
                    "{method} {path}"
                );
                let url = format!(
                    "{base}{}",
                    path.replace("{topic}", "t").replace("{group}", "g")
                );
                let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let mut req = http.request(m.clone(), &url);
                if path.ends_with("/records") && method == "get" {
                    req = req.query(&[("group", "g")]);
                }
                if path.ends_with("/subscribe") {
                    req = req
                        .query(&[("group", "g")])
                        .timeout(std::time::Duration::from_millis(500));
                }
                if path == "/api/v1/topics/{topic}" && method == "put" {
                    req = http.request(m, format!("{base}/api/v1/topics/t2"));
                }
                let r = match req.send().await {
                    Ok(r) => r,
                    Err(e) => panic!("{method} {path}: {e}"),
                };
                let status = r.status().as_u16();
                assert_ne!(status, 405, "{method} {path}");
                let ct = r
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                if status == 404 {
                    let v: Value = r.json().await.unwrap();
                    assert_ne!(
                        v["message"], "no such route",
                        "{method} {path} is not served"
                    );
                } else if status >= 400 {
                    assert!(
                        ct.starts_with("application/json"),
                        "{method} {path}: {status} {ct}"
                    );
                    let v: Value = r.json().await.unwrap();
                    assert!(
                        v["error"].is_string() && v["message"].is_string(),
                        "{method} {path}: {v}"
                    );
                }
                checked += 1;
            }
        }
        assert!(checked >= 15, "{checked} operations");
        // Undocumented methods are refused.
        let r = http
            .patch(format!("{base}/api/v1/topics/t"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405);
    });
}
