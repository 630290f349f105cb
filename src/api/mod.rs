//! The daemon's HTTP API on `api.listen`: `/health`, `/metrics`
//! (Prometheus text) and `/api/v1/components` (JSON). Other parts (the
//! store's message-queue API) merge their routes into [`router`].
//! Touches only the pipeline's metrics and state.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sluice_core::engine::{PipelineState, StateCell};
use sluice_core::metrics::MetricsRegistry;

#[derive(Clone)]
pub struct ApiState {
    pub metrics: Arc<MetricsRegistry>,
    pub state: StateCell,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/v1/components", get(components))
        .with_state(state)
}

async fn health(State(s): State<ApiState>) -> impl IntoResponse {
    let (code, status) = match s.state.get() {
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
