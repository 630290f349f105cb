//! Push consumption: `GET /api/v1/topics/{topic}/subscribe?group=G&mode=…` as a
//! server-sent-events stream (`event: record`, `id: partition-offset`, data =
//! the record JSON of pull). Flow control: at most `max_in_flight` records are
//! unacknowledged — acked / nacked (queue, by lease) or committed (stream) with
//! the same routes as pull; an expired queue lease frees its slot too. With
//! `auto_ack=true` records count as acknowledged once written to the stream.
//! Touches the store's group state on the blocking pool.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::consume::{Group, Mode, PullParams};
use super::error::{blocking, ApiError, ApiResult};
use super::ApiState;

/// One push subscription's unacknowledged records: (partition, offset) → expiry.
#[derive(Default)]
pub struct Sub {
    inflight: Mutex<BTreeMap<(u32, u64), Option<Instant>>>,
    notify: Notify,
}

/// Registry of live subscriptions by (topic, group), so that ack / commit
/// calls free their flow-control slots.
#[derive(Clone, Default)]
pub struct Subscriptions(Arc<Mutex<HashMap<super::GroupKey, Vec<Weak<Sub>>>>>);

impl Subscriptions {
    fn register(&self, topic: &str, group: &str, sub: &Arc<Sub>) {
        let mut m = self.0.lock();
        let v = m.entry((topic.to_string(), group.to_string())).or_default();
        v.retain(|w| w.strong_count() > 0);
        v.push(Arc::downgrade(sub));
    }

    fn each(&self, topic: &str, group: &str, f: impl Fn(&Sub)) {
        let subs: Vec<Arc<Sub>> = {
            let m = self.0.lock();
            let key = (topic.to_string(), group.to_string());
            m.get(&key)
                .map(|v| v.iter().filter_map(Weak::upgrade).collect())
                .unwrap_or_default()
        };
        for s in subs {
            f(&s);
            s.notify.notify_one();
        }
    }

    /// Queue leases acked or nacked.
    pub fn settled(&self, topic: &str, group: &str, leases: &[(u32, u64)]) {
        self.each(topic, group, |s| {
            let mut m = s.inflight.lock();
            for l in leases {
                m.remove(l);
            }
        });
    }

    /// A stream group committed `next` for `partition`.
    pub fn committed(&self, topic: &str, group: &str, partition: u32, next: u64) {
        self.each(topic, group, |s| {
            s.inflight
                .lock()
                .retain(|(p, o), _| *p != partition || *o >= next);
        });
    }
}

#[derive(Debug, Deserialize)]
pub struct SubscribeParams {
    #[serde(flatten)]
    pub pull: PullParams,
    pub max_in_flight: Option<usize>,
    #[serde(default)]
    pub auto_ack: bool,
}

/// `GET /api/v1/topics/{topic}/subscribe`.
pub async fn subscribe(
    State(s): State<ApiState>,
    Path(topic): Path<String>,
    q: Result<Query<SubscribeParams>, QueryRejection>,
) -> ApiResult<impl IntoResponse> {
    let Query(p) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let t = s.topic(&topic)?;
    let pull = p.pull.clone();
    let mut group = blocking(move || Group::open(t, &pull)).await?;
    group.set_live(&s, &topic);
    let sub = Arc::new(Sub::default());
    s.subs.register(&topic, &p.pull.group, &sub);
    let (tx, mut rx) = mpsc::channel::<Event>(16);
    let cfg = PushCfg {
        max_in_flight: p.max_in_flight.unwrap_or(100).clamp(1, 100_000),
        auto_ack: p.auto_ack,
        lease: Duration::from_millis(p.pull.lease_ms.unwrap_or(30_000)),
        b64: p.pull.encoding.as_deref() == Some("base64"),
        mode: p.pull.mode,
    };
    tokio::spawn(run(group, sub, tx, cfg));
    let stream =
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(Ok::<_, Infallible>)));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

struct PushCfg {
    max_in_flight: usize,
    auto_ack: bool,
    lease: Duration,
    b64: bool,
    mode: Mode,
}

/// The subscription's loop: poll within the window, send, wait for room or data.
async fn run(group: Group, sub: Arc<Sub>, tx: mpsc::Sender<Event>, cfg: PushCfg) {
    loop {
        let room = {
            let mut m = sub.inflight.lock();
            let now = Instant::now();
            m.retain(|_, exp| exp.is_none_or(|e| e > now));
            cfg.max_in_flight.saturating_sub(m.len())
        };
        if room == 0 {
            tokio::select! {
                _ = sub.notify.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = tx.closed() => return,
            }
            continue;
        }
        let g = group.clone();
        let b64 = cfg.b64;
        let polled = blocking(move || g.poll(room.min(1000), b64)).await;
        let (recs, waits) = match polled {
            Ok(r) => r,
            Err(e) => {
                let ev = Event::default().event("error").data(e.message);
                let _ = tx.send(ev).await;
                return;
            }
        };
        if recs.is_empty() {
            tokio::select! {
                _ = group.wait(&waits, Duration::from_secs(5)) => {}
                _ = tx.closed() => return,
            }
            continue;
        }
        if !cfg.auto_ack {
            let exp = (cfg.mode == Mode::Queue).then(|| Instant::now() + cfg.lease);
            let mut m = sub.inflight.lock();
            for r in &recs {
                m.insert((r.partition, r.offset), exp);
            }
        }
        for r in &recs {
            let id = format!("{}-{}", r.partition, r.offset);
            let Ok(ev) = Event::default().event("record").id(id).json_data(r) else {
                continue;
            };
            if tx.send(ev).await.is_err() {
                return;
            }
        }
        if cfg.auto_ack {
            let g = group.clone();
            let done: Vec<(u32, u64)> = recs.iter().map(|r| (r.partition, r.offset)).collect();
            let res = blocking(move || {
                match &g {
                    Group::Queue { group, .. } => {
                        group.ack(&done)?;
                    }
                    Group::Stream { group, member, .. } => {
                        let mut next: BTreeMap<u32, u64> = BTreeMap::new();
                        for (p, o) in done {
                            let e = next.entry(p).or_default();
                            *e = (*e).max(o + 1);
                        }
                        for (p, o) in next {
                            group.commit(member, p, o)?;
                        }
                    }
                }
                Ok(())
            })
            .await;
            if let Err(e) = res {
                let _ = tx
                    .send(Event::default().event("error").data(e.message))
                    .await;
                return;
            }
        }
    }
}
