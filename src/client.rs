//! A small Rust client of the daemon's message-queue API (reqwest, rustls):
//! produce, pull with long polling, commit / ack / nack, topic and group
//! administration. Used by the CLI and by the store source in remote mode
//! (`url:`). Touches only the network.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

pub use crate::api::records::OutRecord;

/// An error answered by the API (`{error, message}`) or met on the way.
#[derive(Debug)]
pub struct ClientError {
    /// HTTP status, 0 when the request did not get an answer.
    pub status: u16,
    pub code: String,
    pub message: String,
    /// `Retry-After` seconds of a 429.
    pub retry_after: Option<u64>,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.status == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{} ({}): {}", self.status, self.code, self.message)
        }
    }
}

impl std::error::Error for ClientError {}

impl From<reqwest::Error> for ClientError {
    fn from(e: reqwest::Error) -> Self {
        let mut message = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            message.push_str(&format!(": {s}"));
            src = s.source();
        }
        ClientError {
            status: 0,
            code: "transport".into(),
            message,
            retry_after: None,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// What a pull returns.
#[derive(Debug, Clone, Deserialize)]
pub struct Pulled {
    pub records: Vec<OutRecord>,
    /// Stream mode: the offsets to commit after these records.
    #[serde(default)]
    pub commit: Vec<Value>,
}

/// Parameters of a pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `true` for a queue group, `false` for a stream group.
    pub queue: bool,
    pub max: usize,
    pub wait_ms: u64,
    pub member: Option<String>,
    /// `latest` or `earliest` for a new stream group.
    pub from: Option<String>,
    /// Values always in base64 (exact bytes).
    pub base64: bool,
    pub lease_ms: Option<u64>,
    pub max_deliveries: Option<u32>,
    /// Stream group: resume at the committed offsets (first pull after a restart).
    pub reset: bool,
}

/// A client of one daemon.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

fn tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Client {
    /// `base` like `http://127.0.0.1:8686`; `token` sent as Bearer.
    pub fn new(base: &str, token: Option<String>) -> Result<Client> {
        tls_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, self.url(path));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r
    }

    async fn send(&self, r: reqwest::RequestBuilder) -> Result<Value> {
        let resp = r.send().await?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let bytes = resp.bytes().await?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(v);
        }
        Err(ClientError {
            status,
            code: v["error"].as_str().unwrap_or("http").to_string(),
            message: v["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned()),
            retry_after,
        })
    }

    /// Produce records (each `{key, value, headers, encoding}`); returns the answer
    /// with `offsets: [[partition, offset], …]` in input order.
    pub async fn produce(&self, topic: &str, records: &[Value]) -> Result<Value> {
        let mut body = Vec::with_capacity(records.len() * 64);
        for r in records {
            serde_json::to_writer(&mut body, r).map_err(|e| ClientError {
                status: 0,
                code: "encode".into(),
                message: e.to_string(),
                retry_after: None,
            })?;
            body.push(b'\n');
        }
        self.produce_raw(topic, body).await
    }

    /// Produce an already encoded NDJSON body.
    pub async fn produce_raw(&self, topic: &str, ndjson: Vec<u8>) -> Result<Value> {
        let r = self
            .req(
                reqwest::Method::POST,
                &format!("/api/v1/topics/{}/records", enc(topic)),
            )
            .header("content-type", "application/x-ndjson")
            .body(ndjson);
        self.send(r).await
    }

    /// Pull from a group, long polling up to `o.wait_ms`.
    pub async fn pull(&self, topic: &str, group: &str, o: &PullOptions) -> Result<Pulled> {
        let mut q: Vec<(&str, String)> = vec![
            ("group", group.to_string()),
            ("mode", if o.queue { "queue" } else { "stream" }.into()),
            ("max", o.max.max(1).to_string()),
            ("wait_ms", o.wait_ms.to_string()),
        ];
        if let Some(m) = &o.member {
            q.push(("member", m.clone()));
        }
        if let Some(f) = &o.from {
            q.push(("from", f.clone()));
        }
        if o.base64 {
            q.push(("encoding", "base64".into()));
        }
        if let Some(l) = o.lease_ms {
            q.push(("lease_ms", l.to_string()));
        }
        if let Some(d) = o.max_deliveries {
            q.push(("max_deliveries", d.to_string()));
        }
        if o.reset {
            q.push(("reset", "true".into()));
        }
        let r = self
            .req(
                reqwest::Method::GET,
                &format!("/api/v1/topics/{}/records", enc(topic)),
            )
            .query(&q)
            .timeout(Duration::from_millis(o.wait_ms + 30_000));
        let v = self.send(r).await?;
        serde_json::from_value(v).map_err(|e| ClientError {
            status: 0,
            code: "decode".into(),
            message: e.to_string(),
            retry_after: None,
        })
    }

    /// Stream group: commit `(partition, next offset)` pairs.
    pub async fn commit(
        &self,
        topic: &str,
        group: &str,
        member: Option<&str>,
        offsets: &[(u32, u64)],
    ) -> Result<()> {
        let body = json!({
            "member": member,
            "offsets": offsets.iter().map(|(p, o)| json!({"partition": p, "offset": o})).collect::<Vec<_>>(),
        });
        let path = format!("/api/v1/topics/{}/groups/{}/commit", enc(topic), enc(group));
        self.send(self.req(reqwest::Method::POST, &path).json(&body))
            .await
            .map(|_| ())
    }

    /// Queue group: ack (or nack) lease ids.
    pub async fn settle(
        &self,
        topic: &str,
        group: &str,
        leases: &[String],
        ack: bool,
    ) -> Result<()> {
        let verb = if ack { "ack" } else { "nack" };
        let path = format!("/api/v1/topics/{}/groups/{}/{verb}", enc(topic), enc(group));
        let body = json!({ "leases": leases });
        self.send(self.req(reqwest::Method::POST, &path).json(&body))
            .await
            .map(|_| ())
    }

    /// Every component's figures (`/api/v1/components`).
    pub async fn components(&self) -> Result<Value> {
        self.send(self.req(reqwest::Method::GET, "/api/v1/components"))
            .await
    }

    /// Opens a component's tap (`/api/v1/components/{name}/tap`): the
    /// response streams NDJSON lines until `limit` records were sent.
    pub async fn tap(
        &self,
        component: &str,
        condition: Option<&str>,
        limit: Option<u64>,
    ) -> Result<reqwest::Response> {
        let mut q: Vec<(&str, String)> = Vec::new();
        if let Some(c) = condition {
            q.push(("where", c.to_string()));
        }
        if let Some(l) = limit {
            q.push(("limit", l.to_string()));
        }
        let path = format!("/api/v1/components/{}/tap", enc(component));
        let resp = self
            .req(reqwest::Method::GET, &path)
            .query(&q)
            .send()
            .await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Err(ClientError {
            status,
            code: v["error"].as_str().unwrap_or("http").to_string(),
            message: v["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned()),
            retry_after: None,
        })
    }

    pub async fn list_topics(&self) -> Result<Value> {
        self.send(self.req(reqwest::Method::GET, "/api/v1/topics"))
            .await
    }

    pub async fn describe_topic(&self, topic: &str) -> Result<Value> {
        self.send(self.req(
            reqwest::Method::GET,
            &format!("/api/v1/topics/{}", enc(topic)),
        ))
        .await
    }

    /// Create a topic with settings (`TopicSettings` as JSON).
    pub async fn create_topic(&self, topic: &str, settings: &Value) -> Result<Value> {
        let r = self
            .req(
                reqwest::Method::PUT,
                &format!("/api/v1/topics/{}", enc(topic)),
            )
            .json(settings);
        self.send(r).await
    }

    pub async fn delete_topic(&self, topic: &str) -> Result<Value> {
        self.send(self.req(
            reqwest::Method::DELETE,
            &format!("/api/v1/topics/{}", enc(topic)),
        ))
        .await
    }

    pub async fn list_groups(&self, topic: &str) -> Result<Value> {
        self.send(self.req(
            reqwest::Method::GET,
            &format!("/api/v1/topics/{}/groups", enc(topic)),
        ))
        .await
    }

    pub async fn describe_group(&self, topic: &str, group: &str) -> Result<Value> {
        let path = format!("/api/v1/topics/{}/groups/{}", enc(topic), enc(group));
        self.send(self.req(reqwest::Method::GET, &path)).await
    }
}

/// Percent-encode a path segment (names are `[A-Za-z0-9._-]`; anything else is
/// encoded so that the server, not the URL parser, judges it).
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
