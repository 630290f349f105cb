//! Remote mode of the `store` source (`url: http://host:8686`): consumes a
//! topic (or glob; matching topics created later are picked up every second)
//! of another daemon through its API with the client module. One long-polling
//! task per topic feeds the source loop; stream offsets are committed only
//! once downstream sinks acknowledged, queue leases are acked (or nacked) the
//! same way, so a kill -9 on either side loses nothing (the first pull after
//! a start resumes at the committed offsets). Touches only the network.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_core::checkpoint::Throttle;
use sluice_core::{AckRef, AckStatus, AckTracker, Record, SourceContext};
use tokio::sync::mpsc;

use super::{Mode, Start, StoreSource};
use crate::client::{Client, OutRecord, PullOptions, Pulled};

fn to_record(r: &OutRecord) -> Record {
    let headers = (!r.headers.is_empty()).then(|| {
        Arc::new(
            r.headers
                .iter()
                .map(|(k, v)| {
                    let b = match v {
                        serde_json::Value::String(s) => Bytes::from(s.clone()),
                        other => Bytes::from(other.to_string()),
                    };
                    (k.clone(), b)
                })
                .collect(),
        )
    });
    Record {
        key: r.key.clone().map(Bytes::from),
        value: Bytes::from(r.value_bytes()),
        headers,
        timestamp_ms: r.timestamp_ms,
        ..Record::default()
    }
}

/// Long-polls one topic and hands what it pulled to the source loop.
async fn poll_topic(
    client: Client,
    topic: String,
    group: String,
    o: PullOptions,
    tx: mpsc::Sender<(String, Pulled)>,
) {
    let mut o = o;
    let mut backoff = Duration::from_millis(100);
    loop {
        match client.pull(&topic, &group, &o).await {
            Ok(p) => {
                backoff = Duration::from_millis(100);
                o.reset = false;
                if !p.records.is_empty() && tx.send((topic.clone(), p)).await.is_err() {
                    return;
                }
            }
            Err(e) if e.status == 404 => {
                tracing::info!(%topic, "remote topic gone");
                return;
            }
            Err(e) => {
                tracing::warn!(%topic, error = %e, "remote pull failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

impl StoreSource {
    pub(super) async fn run_remote(&self, url: &str, cx: &SourceContext) -> anyhow::Result<()> {
        let client = Client::new(url, self.opts.auth_token.clone())
            .map_err(|e| anyhow::anyhow!("store source client for {url}: {e}"))?;
        let queue = self.opts.mode == Mode::Queue;
        let base = PullOptions {
            queue,
            max: self.opts.max_batch,
            wait_ms: 5_000,
            member: Some(self.member.clone()),
            from: Some(
                if self.start == Start::Latest {
                    "latest"
                } else {
                    "earliest"
                }
                .into(),
            ),
            base64: true,
            lease_ms: queue.then_some(self.opts.lease_ms),
            max_deliveries: queue.then_some(self.opts.max_deliveries),
            reset: true,
        };
        let (tx, mut rx) = mpsc::channel::<(String, Pulled)>(4);
        let mut pollers: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
        let mut trackers: HashMap<(String, u32), AckTracker<u64>> = HashMap::new();
        let mut to_commit: HashMap<(String, u32), u64> = HashMap::new();
        let mut commit_throttle = Throttle::new(cx.checkpoint_interval);
        let mut refresh = Throttle::new(Duration::from_secs(1));
        let mut settles = tokio::task::JoinSet::new();
        let mut first = true;
        while !cx.shutdown.is_cancelled() {
            if first || refresh.due() {
                first = false;
                match client.list_topics().await {
                    Ok(v) => {
                        pollers.retain(|_, h| !h.is_finished());
                        for t in v["topics"].as_array().into_iter().flatten() {
                            let Some(name) = t["name"].as_str() else {
                                continue;
                            };
                            if self.matcher.is_match(name) && !pollers.contains_key(name) {
                                tracing::info!(topic = name, group = %self.opts.group, %url, "consuming remotely");
                                let h = tokio::spawn(poll_topic(
                                    client.clone(),
                                    name.to_string(),
                                    self.opts.group.clone(),
                                    base.clone(),
                                    tx.clone(),
                                ));
                                pollers.insert(name.to_string(), h);
                            }
                        }
                    }
                    Err(e) => tracing::warn!(%url, error = %e, "cannot list remote topics"),
                }
            }
            let got = tokio::select! {
                g = rx.recv() => g,
                _ = tokio::time::sleep(Duration::from_millis(200)) => None,
                _ = cx.shutdown.cancelled() => None,
            };
            if let Some((topic, pulled)) = got {
                let bytes: u64 = pulled
                    .records
                    .iter()
                    .map(|r| r.value_bytes().len() as u64)
                    .sum();
                cx.metrics.record_in(pulled.records.len() as u64, bytes);
                if queue {
                    let leases: Vec<String> = pulled
                        .records
                        .iter()
                        .filter_map(|r| r.lease.clone())
                        .collect();
                    let records: Vec<Record> = pulled.records.iter().map(to_record).collect();
                    let (ack, done) = AckRef::notify();
                    if cx.output.send(records, ack).await.is_err() {
                        break;
                    }
                    let (c, g) = (client.clone(), self.opts.group.clone());
                    settles.spawn(async move {
                        let delivered = matches!(done.await, Ok(AckStatus::Delivered));
                        // A failed ack or nack leaves the lease to expire: redelivered.
                        let _ = c.settle(&topic, &g, &leases, delivered).await;
                    });
                } else {
                    let mut by_part: HashMap<u32, Vec<&OutRecord>> = HashMap::new();
                    for r in &pulled.records {
                        by_part.entry(r.partition).or_default().push(r);
                    }
                    for (p, recs) in by_part {
                        let last = recs.iter().map(|r| r.offset).max().unwrap_or(0);
                        let records: Vec<Record> = recs.into_iter().map(to_record).collect();
                        let ack = trackers
                            .entry((topic.clone(), p))
                            .or_default()
                            .track(last + 1);
                        if cx.output.send(records, ack).await.is_err() {
                            break;
                        }
                    }
                }
            }
            while settles.try_join_next().is_some() {}
            for (k, t) in trackers.iter_mut() {
                if let Some(next) = t.poll() {
                    to_commit.insert(k.clone(), next);
                }
            }
            if commit_throttle.due() {
                self.commit_remote(&client, &mut to_commit).await;
            }
        }
        for h in pollers.values() {
            h.abort();
        }
        for (k, t) in trackers.iter_mut() {
            if let Some(next) = t.settle().await {
                to_commit.insert(k.clone(), next);
            }
        }
        self.commit_remote(&client, &mut to_commit).await;
        while settles.join_next().await.is_some() {}
        Ok(())
    }

    /// Commits acknowledged offsets; failures keep them for the next round.
    async fn commit_remote(&self, client: &Client, to_commit: &mut HashMap<(String, u32), u64>) {
        let due: Vec<((String, u32), u64)> = to_commit.drain().collect();
        for ((topic, p), off) in due {
            if let Err(e) = client
                .commit(&topic, &self.opts.group, Some(&self.member), &[(p, off)])
                .await
            {
                tracing::warn!(%topic, partition = p, error = %e, "remote commit failed; will retry");
                to_commit.entry((topic, p)).or_insert(off);
            }
        }
    }
}
