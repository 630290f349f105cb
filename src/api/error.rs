//! JSON errors of the HTTP API: every failure is `{ "error": code, "message": … }`
//! with a fitting status; store errors map onto codes here (e.g. `TopicFull` → 429
//! with `Retry-After`). Touches nothing but the response.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use sluice_store::StoreError;

/// An API error: status, machine-readable code, human message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for `Retry-After` (429, 503).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let (status, code) = match &e {
            StoreError::InvalidName(_) => (StatusCode::BAD_REQUEST, "invalid_name"),
            StoreError::UnknownTopic(_) => (StatusCode::NOT_FOUND, "unknown_topic"),
            StoreError::TopicExists(_) => (StatusCode::CONFLICT, "topic_exists"),
            StoreError::UnknownPartition { .. } => (StatusCode::BAD_REQUEST, "unknown_partition"),
            StoreError::TopicFull { .. } => (StatusCode::TOO_MANY_REQUESTS, "topic_full"),
            StoreError::OffsetOutOfRange { .. } => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "offset_out_of_range")
            }
            StoreError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_argument"),
            StoreError::LeaseHeld { .. } => (StatusCode::CONFLICT, "lease_held"),
            StoreError::Closed(_) => (StatusCode::SERVICE_UNAVAILABLE, "closed"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "store_error"),
        };
        let mut err = ApiError::new(status, code, e.to_string());
        if status == StatusCode::TOO_MANY_REQUESTS {
            err.retry_after = Some(1);
        }
        err
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(json!({ "error": self.code, "message": self.message })),
        )
            .into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

/// Result of an API handler.
pub type ApiResult<T> = Result<T, ApiError>;

/// Runs blocking store work on the blocking pool, mapping a panic or a store
/// error into an [`ApiError`].
pub async fn blocking<T, F>(f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(ApiError::internal(format!("worker failed: {e}"))),
    }
}
