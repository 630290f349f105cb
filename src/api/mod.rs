//! The daemon's HTTP API on `api.listen`: `/health`, `/metrics` (Prometheus
//! text), `/api/v1/components` (JSON), `/api/v1/components/{name}/tap` (a live
//! sample of a component's records, `tap.rs`), and the message-queue API of the
//! embedded store under `/api/v1/topics` (see `topics.rs`, `produce.rs`,
//! `consume.rs`, `push.rs`, and `openapi.json`). Every route but `/health`
//! requires the Bearer token when `api.auth_token` is set (`auth.rs`).
//! Touches the pipeline's metrics and state and the store handle.

pub mod auth;
pub mod consume;
pub mod error;
pub mod produce;
pub mod push;
pub mod records;
pub mod tap;
pub mod tls;
pub mod topics;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use sluice_core::engine::{PipelineState, StateCell};
use sluice_core::metrics::MetricsRegistry;
use sluice_store::{Store, Topic};

use error::{ApiError, ApiResult};

/// (topic, group).
pub type GroupKey = (String, String);

/// A stream group member not seen for this long no longer counts as live.
const MEMBER_TTL: Duration = Duration::from_secs(30);

/// The OpenAPI document of this API, served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

#[derive(Clone)]
pub struct ApiState {
    pub metrics: Arc<MetricsRegistry>,
    pub state: StateCell,
    /// The embedded store; `None` serves only health, metrics and components.
    pub store: Option<Arc<Store>>,
    /// Required Bearer token, if any. Never logged.
    pub auth_token: Option<Arc<str>>,
    /// Producing to a missing topic creates it (`store.auto_create_topics`).
    pub auto_create_topics: bool,
    /// Push subscriptions, for their flow control.
    pub subs: push::Subscriptions,
    /// Set by the daemon while it serves only the store (no pipeline):
    /// `/health` then answers `running`.
    pub queue_only: Arc<std::sync::atomic::AtomicBool>,
    /// Stream group members seen recently, by (topic, group): partitions are
    /// shared fairly among the live ones.
    pub members: Arc<parking_lot::Mutex<HashMap<GroupKey, HashMap<String, Instant>>>>,
}

impl ApiState {
    /// State without the store API (tests of the health routes).
    pub fn new(metrics: Arc<MetricsRegistry>, state: StateCell) -> Self {
        ApiState {
            metrics,
            state,
            store: None,
            auth_token: None,
            auto_create_topics: true,
            subs: push::Subscriptions::default(),
            queue_only: Default::default(),
            members: Default::default(),
        }
    }

    pub(crate) fn store(&self) -> ApiResult<&Arc<Store>> {
        self.store.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_store",
                "this daemon has no store",
            )
        })
    }

    /// Note that `member` of a stream group is alive; returns how many are.
    pub(crate) fn live_members(&self, topic: &str, group: &str, member: &str) -> usize {
        let mut m = self.members.lock();
        let g = m.entry((topic.to_string(), group.to_string())).or_default();
        let now = Instant::now();
        g.insert(member.to_string(), now);
        g.retain(|_, seen| now.duration_since(*seen) < MEMBER_TTL);
        g.len()
    }

    pub(crate) fn topic(&self, name: &str) -> ApiResult<Topic> {
        Ok(self.store()?.topic(name)?)
    }
}

pub fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/api/v1/components", get(components))
        .route("/api/v1/components/{name}/tap", get(tap::tap))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/topics", get(topics::list))
        .route(
            "/api/v1/topics/{topic}",
            get(topics::describe)
                .put(topics::create)
                .delete(topics::delete),
        )
        .route(
            "/api/v1/topics/{topic}/records",
            post(produce::produce).get(consume::pull),
        )
        .route("/api/v1/topics/{topic}/subscribe", get(push::subscribe))
        .route("/api/v1/topics/{topic}/groups", get(topics::list_groups))
        .route(
            "/api/v1/topics/{topic}/groups/{group}",
            get(topics::describe_group),
        )
        .route(
            "/api/v1/topics/{topic}/groups/{group}/commit",
            post(consume::commit),
        )
        .route(
            "/api/v1/topics/{topic}/groups/{group}/ack",
            post(consume::ack),
        )
        .route(
            "/api/v1/topics/{topic}/groups/{group}/nack",
            post(consume::nack),
        )
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(axum::extract::DefaultBodyLimit::disable());
    Router::new()
        .route("/health", get(health))
        .merge(v1)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn health(State(s): State<ApiState>) -> impl IntoResponse {
    let queue_only = s.queue_only.load(std::sync::atomic::Ordering::Relaxed);
    let (code, status) = match s.state.get() {
        PipelineState::Stopped | PipelineState::Starting if queue_only => {
            (StatusCode::OK, "running")
        }
        PipelineState::Running => (StatusCode::OK, "running"),
        PipelineState::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
        PipelineState::Draining => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
        PipelineState::Stopped => (StatusCode::SERVICE_UNAVAILABLE, "stopped"),
    };
    (code, Json(json!({ "status": status })))
}

async fn metrics(State(s): State<ApiState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render_prometheus(),
    )
}

async fn components(State(s): State<ApiState>) -> impl IntoResponse {
    Json(json!({ "components": s.metrics.statuses() }))
}
