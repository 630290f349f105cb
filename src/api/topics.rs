//! Topic and group administration: list (partitions, first/end offsets, bytes,
//! per-group lag), describe, create with `TopicSettings` (PUT), delete, and the
//! groups of a topic. Touches the store (topic directories) on the blocking pool.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use sluice_store::{validate_name, Topic, TopicStats};

use super::error::{blocking, ApiError, ApiResult};
use super::ApiState;
use crate::components::TopicSettings;

pub(crate) fn stats_json(t: &Topic, s: &TopicStats) -> Value {
    let cfg = t.config();
    json!({
        "name": s.name,
        "partitions": s.partitions.iter().map(|p| json!({
            "partition": p.partition,
            "first_offset": p.first_offset,
            "end_offset": p.end_offset,
            "records": p.end_offset - p.first_offset,
            "bytes": p.bytes,
            "segments": p.segments,
        })).collect::<Vec<_>>(),
        "records": s.partitions.iter().map(|p| p.end_offset - p.first_offset).sum::<u64>(),
        "bytes": s.bytes,
        "groups": s.groups.iter().map(|g| json!({
            "group": g.group,
            "mode": g.kind,
            "lag": g.total,
            "lag_per_partition": g.per_partition,
        })).collect::<Vec<_>>(),
        "config": {
            "partitions": cfg.partitions,
            "fsync": format!("{:?}", cfg.fsync),
            "segment_max_bytes": cfg.segment_max_bytes,
            "retention": { "max_bytes": cfg.retention.max_bytes, "max_age_ms": cfg.retention.max_age_ms },
            "limits": {
                "max_messages": cfg.limits.max_messages,
                "max_bytes": cfg.limits.max_bytes,
                "on_full": format!("{:?}", cfg.limits.on_full).to_lowercase(),
            },
            "dead_letter_topic": cfg.dead_letter_topic,
        },
    })
}

/// `GET /api/v1/topics`.
pub async fn list(State(s): State<ApiState>) -> ApiResult<Json<Value>> {
    let store = s.store()?.clone();
    blocking(move || {
        let mut out = Vec::new();
        for name in store.list_topics() {
            let Ok(t) = store.topic(&name) else { continue };
            let st = t.stats()?;
            out.push(stats_json(&t, &st));
        }
        Ok(Json(json!({ "topics": out })))
    })
    .await
}

/// `GET /api/v1/topics/{topic}`.
pub async fn describe(
    State(s): State<ApiState>,
    Path(topic): Path<String>,
) -> ApiResult<Json<Value>> {
    let t = s.topic(&topic)?;
    blocking(move || {
        let st = t.stats()?;
        Ok(Json(stats_json(&t, &st)))
    })
    .await
}

/// `PUT /api/v1/topics/{topic}` with `TopicSettings` as JSON (empty body: defaults).
pub async fn create(
    State(s): State<ApiState>,
    Path(topic): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    validate_name(&topic)?;
    let settings: TopicSettings = if body.iter().all(|b| b.is_ascii_whitespace()) {
        TopicSettings::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("bad topic settings: {e}")))?
    };
    let store = s.store()?.clone();
    blocking(move || {
        let t = store.create_topic(&topic, settings.to_config())?;
        let st = t.stats()?;
        Ok((StatusCode::CREATED, Json(stats_json(&t, &st))))
    })
    .await
}

/// `DELETE /api/v1/topics/{topic}`.
pub async fn delete(
    State(s): State<ApiState>,
    Path(topic): Path<String>,
) -> ApiResult<Json<Value>> {
    let store = s.store()?.clone();
    blocking(move || {
        store.delete_topic(&topic)?;
        Ok(Json(json!({ "deleted": topic })))
    })
    .await
}

/// `GET /api/v1/topics/{topic}/groups`.
pub async fn list_groups(
    State(s): State<ApiState>,
    Path(topic): Path<String>,
) -> ApiResult<Json<Value>> {
    let t = s.topic(&topic)?;
    blocking(move || {
        let st = t.stats()?;
        Ok(Json(
            json!({ "topic": st.name, "groups": stats_json(&t, &st)["groups"] }),
        ))
    })
    .await
}

/// `GET /api/v1/topics/{topic}/groups/{group}`: mode, lag, committed offsets.
pub async fn describe_group(
    State(s): State<ApiState>,
    Path((topic, group)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    validate_name(&group)?;
    let t = s.topic(&topic)?;
    blocking(move || {
        let st = t.stats()?;
        let Some(g) = st.groups.iter().find(|g| g.group == group) else {
            return Err(ApiError::not_found(format!(
                "topic {topic:?} has no group {group:?}"
            )));
        };
        let committed: Vec<Option<u64>> = if g.kind == "stream" {
            let sg = t.stream_group(&group)?;
            (0..t.partitions()).map(|p| sg.committed(p)).collect()
        } else {
            Vec::new()
        };
        Ok(Json(json!({
            "topic": topic,
            "group": g.group,
            "mode": g.kind,
            "lag": g.total,
            "lag_per_partition": g.per_partition,
            "committed": committed,
        })))
    })
    .await
}
