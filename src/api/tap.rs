//! `GET /api/v1/components/{name}/tap?where=EXPR&limit=N`: a live sample of
//! the records passing a component, as NDJSON (one record a line; a blank
//! line every 15 s as keep-alive; `{"missed": N}` when the listener fell
//! behind and N batches went by unseen). A source's tap shows what it hands
//! to its queue, a sink's what it receives (after its own `where`). The
//! `where` filter (the pipeline's condition language) runs here, in the
//! daemon. The stream ends after `limit` records, when the component goes
//! away or the pipeline stops, or when the client hangs up. Touches the component's tap only.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_core::condition::Condition;
use sluice_core::encode::Encoding;
use sluice_core::engine::{PipelineState, StateCell};
use sluice_core::record::Record;
use sluice_core::tap::{TapEvent, TapSubscription};

use super::error::{ApiError, ApiResult};
use super::ApiState;

/// Idle time after which a blank line is sent, so a gone client is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often an idle stream checks whether the pipeline stopped (the API
/// server's graceful shutdown waits for open streams).
const STATE_CHECK: Duration = Duration::from_millis(250);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TapParams {
    /// A condition in the `where` language.
    #[serde(rename = "where")]
    condition: Option<String>,
    /// Stop after this many records.
    limit: Option<u64>,
}

pub async fn tap(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    q: Result<Query<TapParams>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(p) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let condition = match p.condition.as_deref().filter(|c| !c.trim().is_empty()) {
        Some(text) => Some(
            Condition::compile(text)
                .map_err(|e| ApiError::bad_request(format!("invalid `where`: {e}")))?,
        ),
        None => None,
    };
    if p.limit == Some(0) {
        return Err(ApiError::bad_request("`limit` must be at least 1"));
    }
    let metrics = s
        .metrics
        .component(&name)
        .ok_or_else(|| ApiError::not_found(format!("no component named `{name}`")))?;
    let sub = metrics.tap.subscribe();
    drop(metrics);
    let listener = Listener {
        component: name.into(),
        sub,
        condition,
        left: p.limit.unwrap_or(u64::MAX),
        done: false,
        state: s.state.clone(),
    };
    let stream = futures::stream::unfold(listener, |mut l| async move {
        let chunk = l.next_chunk().await?;
        Some((Ok::<Bytes, Infallible>(chunk), l))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

struct Listener {
    component: Arc<str>,
    sub: TapSubscription,
    condition: Option<Condition>,
    left: u64,
    done: bool,
    state: StateCell,
}

impl Listener {
    /// The next piece of the response; `None` ends it.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done || self.left == 0 {
            return None;
        }
        let mut idle = Duration::ZERO;
        loop {
            let event = match tokio::time::timeout(STATE_CHECK, self.sub.recv()).await {
                Ok(e) => e,
                Err(_) if self.state.get() == PipelineState::Stopped => return None,
                Err(_) => {
                    idle += STATE_CHECK;
                    if idle >= KEEP_ALIVE {
                        return Some(Bytes::from_static(b"\n"));
                    }
                    continue;
                }
            };
            match event {
                TapEvent::Closed => {
                    self.done = true;
                    return None;
                }
                TapEvent::Missed(n) => return Some(line(&json!({ "missed": n }))),
                TapEvent::Batch(b) => {
                    let mut out = Vec::new();
                    for r in b.records.iter() {
                        if self.left == 0 {
                            break;
                        }
                        if self.condition.as_ref().is_some_and(|c| !c.matches(r)) {
                            continue;
                        }
                        encode(&self.component, &b.source, r, &mut out);
                        self.left -= 1;
                    }
                    if !out.is_empty() {
                        return Some(out.into());
                    }
                }
            }
        }
    }
}

fn line(v: &Value) -> Bytes {
    let mut out = serde_json::to_vec(v).unwrap_or_default();
    out.push(b'\n');
    out.into()
}

/// One tapped record as a JSON line: where it was seen, its key, headers and
/// timestamp, and `record`, its JSON rendering (`encoding: json` of sinks:
/// a log line with its metadata, a row change's envelope, a message's JSON).
pub fn encode(component: &str, source: &str, r: &Record, out: &mut Vec<u8>) {
    let mut rendered = Vec::with_capacity(r.value.len() + 64);
    Encoding::Json.encode(r, &mut rendered);
    let record: Value = serde_json::from_slice(&rendered)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&rendered).trim().into()));
    let headers: serde_json::Map<String, Value> = r
        .headers
        .iter()
        .flat_map(|h| h.iter())
        .map(|(k, v)| (k.clone(), Value::String(String::from_utf8_lossy(v).into())))
        .collect();
    let mut v = json!({
        "component": component,
        "source": source,
        "timestamp_ms": r.timestamp_ms,
        "key": r.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
        "record": record,
    });
    if !headers.is_empty() {
        v["headers"] = Value::Object(headers);
    }
    let _ = serde_json::to_writer(&mut *out, &v);
    out.push(b'\n');
}
