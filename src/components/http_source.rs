//! Source `http`: ingest over HTTP. A POST of NDJSON or of a JSON array
//! becomes one batch, all or nothing: 200 once it is in the queue (or, with
//! `ack: durable`, once every sink accepted it), 400 naming the first bad
//! line with nothing enqueued, 413 above `max_body_bytes`, and 429 with
//! Retry-After when the queue is full under `when_full: reject` (peak
//! shaving). Touches its listening socket only.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use sluice_core::config::{ComponentOptions, ConfigError};
use sluice_core::queue::{SendError, SourceOutput};
use sluice_core::record::now_ms;
use sluice_core::{AckRef, AckStatus, BuildContext, Record, Source, SourceContext, SourceFactory};

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum AckMode {
    /// Answer once the records are in the queue.
    #[default]
    Accepted,
    /// Answer once every sink durably accepted them.
    Durable,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct HttpOptions {
    listen: SocketAddr,
    #[serde(default = "default_path")]
    path: String,
    #[serde(
        default = "default_max_body",
        deserialize_with = "sluice_core::config::size_bytes::deserialize"
    )]
    #[schemars(with = "sluice_core::schema::Size")]
    max_body_bytes: usize,
    #[serde(default)]
    ack: AckMode,
    /// Seconds a 429 asks the client to wait.
    #[serde(
        default = "default_retry_after",
        with = "sluice_core::config::duration_secs"
    )]
    #[schemars(with = "sluice_core::schema::DurationSecs")]
    retry_after_secs: u64,
}

fn default_path() -> String {
    "/".into()
}
fn default_max_body() -> usize {
    10 << 20
}
fn default_retry_after() -> u64 {
    1
}

pub struct HttpSourceFactory;

impl SourceFactory for HttpSourceFactory {
    fn kind(&self) -> &'static str {
        "http"
    }

    fn options_schema(
        &self,
        generator: &mut schemars::SchemaGenerator,
    ) -> Option<schemars::Schema> {
        Some(generator.subschema_for::<HttpOptions>())
    }

    fn answers_clients(&self) -> bool {
        true
    }

    fn build(
        &self,
        _cx: &BuildContext,
        options: &ComponentOptions,
    ) -> Result<Box<dyn Source>, ConfigError> {
        let opts: HttpOptions = options.deserialize()?;
        if !opts.path.starts_with('/') {
            return Err(ConfigError {
                location: options.location().clone(),
                message: format!("path `{}` must start with `/`", opts.path),
                hint: None,
            });
        }
        Ok(Box::new(HttpSource { opts }))
    }
}

struct HttpSource {
    opts: HttpOptions,
}

#[derive(Clone)]
struct Ingest {
    output: SourceOutput,
    ack: AckMode,
    retry_after: u64,
    metrics: std::sync::Arc<sluice_core::metrics::ComponentMetrics>,
}

#[async_trait]
impl Source for HttpSource {
    async fn run(self: Box<Self>, cx: SourceContext) -> anyhow::Result<()> {
        let state = Ingest {
            output: cx.output.clone(),
            ack: self.opts.ack,
            retry_after: self.opts.retry_after_secs,
            metrics: cx.metrics.clone(),
        };
        let app = axum::Router::new()
            .route(&self.opts.path, axum::routing::post(ingest))
            .layer(DefaultBodyLimit::max(self.opts.max_body_bytes))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind(self.opts.listen)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "source `{}`: cannot listen on {}: {e}",
                    cx.name,
                    self.opts.listen
                )
            })?;
        tracing::info!(source = %cx.name, "accepting records on http://{}{}", self.opts.listen, self.opts.path);
        let shutdown = cx.shutdown.clone();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await?;
        Ok(())
    }
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (status, Json(json!({ "error": code, "message": message }))).into_response()
}

/// Splits a body into records: a JSON array's elements, or NDJSON lines.
/// Each value is a slice of the body. The error names the first bad line.
pub fn parse_body(body: &Bytes) -> Result<Vec<Record>, String> {
    let ts = now_ms();
    let trimmed = body.iter().position(|b| !b.is_ascii_whitespace());
    let record = |value: Bytes| Record {
        value,
        timestamp_ms: ts,
        ..Record::default()
    };
    if trimmed.is_some_and(|i| body[i] == b'[') {
        let items: Vec<&serde_json::value::RawValue> =
            serde_json::from_slice(body).map_err(|e| format!("invalid JSON array: {e}"))?;
        let base = body.as_ptr() as usize;
        return Ok(items
            .into_iter()
            .map(|raw| {
                let start = raw.get().as_ptr() as usize - base;
                record(body.slice(start..start + raw.get().len()))
            })
            .collect());
    }
    let mut records = Vec::new();
    let mut start = 0;
    let mut line_no = 0;
    while start < body.len() {
        line_no += 1;
        let end = memchr::memchr(b'\n', &body[start..]).map_or(body.len(), |i| start + i);
        let mut line_end = end;
        if line_end > start && body[line_end - 1] == b'\r' {
            line_end -= 1;
        }
        let line = &body[start..line_end];
        if !line.iter().all(u8::is_ascii_whitespace) {
            serde_json::from_slice::<serde::de::IgnoredAny>(line)
                .map_err(|e| format!("line {line_no}: {e}"))?;
            records.push(record(body.slice(start..line_end)));
        }
        start = end + 1;
    }
    Ok(records)
}

async fn ingest(State(state): State<Ingest>, body: Bytes) -> Response {
    let records = match parse_body(&body) {
        Ok(r) => r,
        Err(message) => return error(StatusCode::BAD_REQUEST, "invalid_body", message),
    };
    let n = records.len();
    state.metrics.record_in(n as u64, body.len() as u64);
    let (ack, done) = match state.ack {
        AckMode::Durable => {
            let (ack, rx) = AckRef::notify();
            (ack, Some(rx))
        }
        AckMode::Accepted => (AckRef::untracked(), None),
    };
    match state.output.send(records, ack).await {
        Ok(()) => {}
        Err(SendError::Full) => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "busy",
                "the queue is full; retry later".into(),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, state.retry_after.into());
            return r;
        }
        Err(SendError::Closed) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "sluice is shutting down".into(),
            )
        }
    }
    if let Some(rx) = done {
        match tokio::time::timeout(Duration::from_secs(3600), rx).await {
            Ok(Ok(AckStatus::Delivered)) => {}
            _ => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_delivered",
                    "the records were not durably accepted by every sink; send them again".into(),
                )
            }
        }
    }
    (StatusCode::OK, Json(json!({ "accepted": n }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ndjson_and_arrays_and_names_the_bad_line() {
        let r = parse_body(&Bytes::from_static(b"{\"a\":1}\r\n\n{\"b\":2}")).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(&r[1].value[..], b"{\"b\":2}");
        let r = parse_body(&Bytes::from_static(b" [ {\"a\":1}, 2 ]")).unwrap();
        assert_eq!(&r[0].value[..], b"{\"a\":1}");
        assert_eq!(&r[1].value[..], b"2");
        let e = parse_body(&Bytes::from_static(b"{}\n{oops\n")).unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
    }
}
