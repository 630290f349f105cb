//! Pull consumption: `GET /api/v1/topics/{topic}/records` in a stream group
//! (publish/subscribe, explicit `commit` of offsets) or a queue group
//! (competing consumers; `ack` / `nack` by lease id). Long polling up to
//! `wait_ms` (≤ 60 s) is woken by the append itself (`Topic::wait_for_any`,
//! `QueueGroup::wait`), not by a polling loop. Touches the store's group state
//! on the blocking pool.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_store::{
    validate_name, QueueConfig, QueueGroup, StreamGroup, Topic, DEFAULT_STREAM_LEASE,
};
use tokio::time::Instant;

use super::error::{blocking, ApiError, ApiResult};
use super::records::OutRecord;
use super::ApiState;

/// Longest accepted `wait_ms`.
pub const MAX_WAIT_MS: u64 = 60_000;
/// Largest accepted `max`.
pub const MAX_RECORDS: usize = 10_000;

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Stream,
    Queue,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PullParams {
    pub group: String,
    #[serde(default)]
    pub mode: Mode,
    pub max: Option<usize>,
    #[serde(default)]
    pub wait_ms: u64,
    /// Member name within a stream group (partitions are balanced among members).
    pub member: Option<String>,
    /// `base64`: every value in base64.
    pub encoding: Option<String>,
    /// New stream group without a commit: `earliest` (default) or `latest`.
    pub from: Option<String>,
    /// Queue group settings (kept by the group when given).
    pub lease_ms: Option<u64>,
    pub max_deliveries: Option<u32>,
    /// Stream group: drop this member's in-memory positions first, so reading
    /// resumes at the committed offsets (a consumer that restarted).
    #[serde(default)]
    pub reset: bool,
}

/// A consumer's group handle, in either mode.
#[derive(Clone)]
pub enum Group {
    Stream {
        topic: Topic,
        group: StreamGroup,
        member: String,
        latest: bool,
        /// Live members of the group: this one keeps at most its fair share.
        live: usize,
    },
    Queue {
        topic: Topic,
        group: QueueGroup,
    },
}

impl Group {
    /// Open the group named by the parameters (blocking: reads group files).
    pub fn open(topic: Topic, p: &PullParams) -> ApiResult<Group> {
        validate_name(&p.group)?;
        let latest = match p.from.as_deref() {
            None | Some("earliest") => false,
            Some("latest") => true,
            Some(o) => {
                return Err(ApiError::bad_request(format!(
                    "from must be earliest or latest, not {o:?}"
                )))
            }
        };
        let g = match p.mode {
            Mode::Stream => Group::Stream {
                group: topic.stream_group(&p.group)?,
                topic,
                member: p.member.clone().unwrap_or_else(|| "default".into()),
                latest,
                live: 1,
            },
            Mode::Queue => {
                let group = if p.lease_ms.is_some() || p.max_deliveries.is_some() {
                    let d = QueueConfig::default();
                    topic.queue_group(
                        &p.group,
                        QueueConfig {
                            lease_ms: p.lease_ms.unwrap_or(d.lease_ms).max(1),
                            max_deliveries: p.max_deliveries.unwrap_or(d.max_deliveries).max(1),
                        },
                    )?
                } else {
                    topic.open_queue_group(&p.group)?
                };
                Group::Queue { topic, group }
            }
        };
        if let Group::Stream {
            topic,
            group,
            member,
            ..
        } = &g
        {
            if p.reset {
                for part in 0..topic.partitions() {
                    group.release(member, part);
                }
            }
        }
        Ok(g)
    }

    /// Count this stream member as live in `s` and learn how many are.
    pub fn set_live(&mut self, s: &ApiState, topic_name: &str) {
        if let Group::Stream {
            group,
            member,
            live,
            ..
        } = self
        {
            *live = s.live_members(topic_name, group.name(), member);
        }
    }

    /// Take up to `max` records now (blocking). Also returns, for stream groups,
    /// the offsets to wait on (`u64::MAX` for partitions held by other members).
    pub fn poll(&self, max: usize, b64: bool) -> ApiResult<(Vec<OutRecord>, Vec<u64>)> {
        let mut out = Vec::new();
        match self {
            Group::Stream {
                topic,
                group,
                member,
                latest,
                live,
            } => {
                let mut parts = group.claim(member, DEFAULT_STREAM_LEASE);
                let share = (topic.partitions() as usize).div_ceil((*live).max(1));
                while parts.len() > share {
                    // Hand partitions beyond the fair share back to the others.
                    if let Some(p) = parts.pop() {
                        group.release(member, p);
                    }
                }
                let mut waits = vec![u64::MAX; topic.partitions() as usize];
                for p in parts {
                    if *latest
                        && group.committed(p).is_none()
                        && group.position(p)? == topic.first_offset(p)?
                    {
                        // Join at the end, and commit it: otherwise an empty
                        // partition (position == first == end) would seek to
                        // the end again on the next poll and skip what was
                        // appended in between.
                        let end = topic.end_offset(p)?;
                        group.seek(p, end)?;
                        group.commit(member, p, end)?;
                    }
                    if out.len() < max {
                        let recs = group.poll(member, p, max - out.len(), 8 << 20)?;
                        out.extend(recs.iter().map(|r| OutRecord::from_stored(p, r, b64)));
                    }
                    waits[p as usize] = group.position(p)?;
                }
                Ok((out, waits))
            }
            Group::Queue { group, .. } => {
                for l in group.poll("api", max)? {
                    let mut o = OutRecord::from_stored(l.partition, &l.record, b64);
                    o.lease = Some(format!("{}-{}", l.partition, l.record.offset));
                    o.delivery = Some(l.delivery);
                    out.push(o);
                }
                Ok((out, Vec::new()))
            }
        }
    }

    /// Wait (async) until a poll may return something, or `timeout`.
    pub async fn wait(&self, waits: &[u64], timeout: Duration) -> ApiResult<bool> {
        Ok(match self {
            Group::Stream { topic, .. } => topic.wait_for_any(waits, timeout).await?,
            Group::Queue { group, .. } => group.wait(timeout).await?,
        })
    }
}

/// Next offsets to commit after these records, per partition.
pub fn next_offsets(recs: &[OutRecord]) -> Vec<Value> {
    let mut m = std::collections::BTreeMap::new();
    for r in recs {
        let e = m.entry(r.partition).or_insert(0u64);
        *e = (*e).max(r.offset + 1);
    }
    m.into_iter()
        .map(|(p, o)| json!({"partition": p, "offset": o}))
        .collect()
}

/// `GET /api/v1/topics/{topic}/records?group=G&mode=stream|queue&max=500&wait_ms=…`.
pub async fn pull(
    State(s): State<ApiState>,
    Path(topic): Path<String>,
    q: Result<Query<PullParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(p) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let t = s.topic(&topic)?;
    let max = p.max.unwrap_or(500).clamp(1, MAX_RECORDS);
    let wait = Duration::from_millis(p.wait_ms.min(MAX_WAIT_MS));
    let b64 = p.encoding.as_deref() == Some("base64");
    let deadline = Instant::now() + wait;
    let pp = p.clone();
    let mut group = blocking(move || Group::open(t, &pp)).await?;
    group.set_live(&s, &topic);
    loop {
        let g = group.clone();
        let (recs, waits) = blocking(move || g.poll(max, b64)).await?;
        let now = Instant::now();
        if !recs.is_empty() || now >= deadline {
            return Ok(Json(json!({
                "records": recs,
                "commit": if p.mode == Mode::Stream { next_offsets(&recs) } else { Vec::new() },
            })));
        }
        group.wait(&waits, deadline - now).await?;
    }
}

#[derive(Debug, Deserialize)]
pub struct CommitBody {
    pub member: Option<String>,
    pub offsets: Vec<PartitionOffset>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct PartitionOffset {
    pub partition: u32,
    /// The next offset to consume.
    pub offset: u64,
}

/// `POST .../groups/{group}/commit` with `{member?, offsets: [{partition, offset}]}`.
pub async fn commit(
    State(s): State<ApiState>,
    Path((topic, group)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    validate_name(&group)?;
    let b: CommitBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{offsets: [{{partition, offset}}]}}: {e}"
        ))
    })?;
    let t = s.topic(&topic)?;
    let (tn, gn) = (topic.clone(), group.clone());
    let offsets = b.offsets.clone();
    blocking(move || {
        let g = t.stream_group(&group)?;
        let member = b.member.unwrap_or_else(|| "default".into());
        for o in &b.offsets {
            g.commit(&member, o.partition, o.offset)?;
        }
        Ok(())
    })
    .await?;
    for o in &offsets {
        s.subs.committed(&tn, &gn, o.partition, o.offset);
    }
    Ok(Json(json!({ "committed": offsets.len() })))
}

#[derive(Debug, Deserialize)]
pub struct LeaseBody {
    pub leases: Vec<String>,
}

fn parse_leases(body: &[u8]) -> ApiResult<Vec<(u32, u64)>> {
    let b: LeaseBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("expected {{leases: [\"p-o\", …]}}: {e}")))?;
    b.leases
        .iter()
        .map(|l| {
            l.split_once('-')
                .and_then(|(p, o)| Some((p.parse().ok()?, o.parse().ok()?)))
                .ok_or_else(|| ApiError::bad_request(format!("bad lease id {l:?}")))
        })
        .collect()
}

async fn settle(
    s: ApiState,
    topic: String,
    group: String,
    body: &[u8],
    ack: bool,
) -> ApiResult<Json<Value>> {
    validate_name(&group)?;
    let leases = parse_leases(body)?;
    let t = s.topic(&topic)?;
    let l2 = leases.clone();
    let g2 = group.clone();
    let n = blocking(move || {
        let g = t.open_queue_group(&g2)?;
        if ack {
            Ok(g.ack(&l2)?)
        } else {
            g.nack(&l2)?;
            Ok(l2.len())
        }
    })
    .await?;
    s.subs.settled(&topic, &group, &leases);
    Ok(Json(json!({ if ack { "acked" } else { "nacked" }: n })))
}

/// `POST .../groups/{group}/ack` with `{leases: ["p-o", …]}`.
pub async fn ack(
    State(s): State<ApiState>,
    Path((topic, group)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    settle(s, topic, group, &body, true).await
}

/// `POST .../groups/{group}/nack` with `{leases: ["p-o", …]}`: redeliver now.
pub async fn nack(
    State(s): State<ApiState>,
    Path((topic, group)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    settle(s, topic, group, &body, false).await
}
