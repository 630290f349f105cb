//! `POST /api/v1/topics/{topic}/records`: batch produce. The whole body is
//! parsed first (a bad record → 400 naming it, nothing appended), then each
//! partition's share is appended in one write and the answer waits for the
//! covering fsync. A full bounded topic with `on_full: reject` → 429 with
//! `Retry-After`; a body above the limit → 413; a missing topic is created
//! with the defaults unless `store.auto_create_topics` is false.
//! Touches the store on the blocking pool.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use sluice_store::{validate_name, Record, StoreError, TopicConfig};

use super::error::{blocking, ApiError, ApiResult};
use super::records::parse_batch;
use super::ApiState;

/// Largest accepted request body (the store's own batch limit is larger).
pub const MAX_BODY: usize = 32 << 20;

pub async fn produce(
    State(s): State<ApiState>,
    Path(topic): Path<String>,
    body: Body,
) -> ApiResult<Json<Value>> {
    validate_name(&topic)?;
    let store = s.store()?.clone();
    let body = axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        let mut text = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            text.push_str(&s.to_string());
            src = s.source();
        }
        let too_big = text.contains("length limit");
        if too_big {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("request body above {MAX_BODY} bytes: split the batch"),
            )
        } else {
            ApiError::bad_request(format!("cannot read the body: {e}"))
        }
    })?;
    let auto_create = s.auto_create_topics;
    let (receipts, placed) = blocking(move || {
        let records = parse_batch(&body).map_err(ApiError::bad_request)?;
        if records.is_empty() {
            return Err(ApiError::bad_request("no records in the body"));
        }
        let t = match store.topic(&topic) {
            Err(StoreError::UnknownTopic(_)) if auto_create => {
                store.get_or_create_topic(&topic, TopicConfig::default())?
            }
            r => r?,
        };
        let n = t.partitions() as usize;
        let mut by_part: Vec<Vec<Record>> = (0..n).map(|_| Vec::new()).collect();
        let mut placed = Vec::with_capacity(records.len());
        for r in records {
            let p = if n == 1 {
                0
            } else {
                t.partition_for(r.key.as_deref())
            } as usize;
            placed.push((p as u32, by_part[p].len() as u64));
            by_part[p].push(r);
        }
        let mut receipts = Vec::new();
        for (p, recs) in by_part.iter().enumerate() {
            if !recs.is_empty() {
                receipts.push(t.append(p as u32, recs)?);
            }
        }
        Ok((receipts, placed))
    })
    .await?;
    let mut base = vec![0u64; receipts.iter().map(|r| r.partition + 1).max().unwrap_or(0) as usize];
    for r in &receipts {
        r.wait_durable().await?;
        base[r.partition as usize] = r.base_offset;
    }
    let offsets: Vec<Value> = placed
        .iter()
        .map(|(p, i)| json!([p, base[*p as usize] + i]))
        .collect();
    Ok(Json(json!({
        "count": placed.len(),
        "partitions": receipts.iter().map(|r| json!({
            "partition": r.partition,
            "base_offset": r.base_offset,
            "count": r.count,
        })).collect::<Vec<_>>(),
        "offsets": offsets,
    })))
}
