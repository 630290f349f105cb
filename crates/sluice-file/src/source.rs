//! The source task: loads the checkpoint (handling a damaged one per
//! `on_corrupt_checkpoint`), starts the reader thread, hands its batches to
//! the pipeline with one acknowledgement each, advances file offsets as
//! acknowledgements come back, writes the checkpoint at most every
//! `checkpoint_interval`, at shutdown, and before the first batch of a
//! newly followed file (so a crash cannot forget a file whose lines went
//! out), and keeps the metrics. On
//! shutdown it stops the reader, waits for outstanding acknowledgements
//! and writes the final checkpoint. Touches the pipeline's queue, the
//! checkpoint file and the reader thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::value::RawValue;
use sluice_core::checkpoint::Throttle;
use sluice_core::record::now_ms;
use sluice_core::{AckTracker, Source, SourceContext};
use tokio::sync::mpsc;

use crate::config::{OnCorrupt, ReadFrom, Settings};
use crate::reader::{self, ReaderMsg, ReaderSetup};
use crate::state::{Saved, State};
use crate::watch::Wake;

/// A running `type: file` source.
pub struct FileSource {
    settings: Arc<Settings>,
}

impl FileSource {
    pub fn new(settings: Settings) -> FileSource {
        FileSource {
            settings: Arc::new(settings),
        }
    }
}

/// Reads the checkpoint; `Some(mode)` in the second place when there is
/// none (first start) or it was damaged and set aside.
fn load(cx: &SourceContext, s: &Settings) -> anyhow::Result<(Option<Saved>, Option<ReadFrom>)> {
    match cx.checkpoints.load::<Saved>() {
        Ok(Some(saved)) => Ok((Some(saved), None)),
        Ok(None) => Ok((None, Some(s.read_from))),
        Err(e) => {
            cx.metrics.errors.fetch_add(1, Ordering::Relaxed);
            let mode = match s.on_corrupt {
                OnCorrupt::Stop => {
                    anyhow::bail!(
                        "{e} (on_corrupt_checkpoint: stop; move the file away to start over)"
                    )
                }
                OnCorrupt::Beginning => ReadFrom::Beginning,
                OnCorrupt::End => ReadFrom::End,
            };
            let aside = cx.checkpoints.path().with_extension("json.corrupt");
            let _ = std::fs::rename(cx.checkpoints.path(), &aside);
            tracing::error!(
                source = %cx.name,
                "{e}; kept as {} and reading every file from its {}",
                aside.display(),
                if mode == ReadFrom::End { "end" } else { "beginning" }
            );
            Ok((None, Some(mode)))
        }
    }
}

async fn save(cx: &SourceContext, state: &mut State) {
    // Serialized here in one piece: handed over as raw JSON, it reaches
    // the file in one write.
    let snapshot = serde_json::to_string(&state.snapshot(now_ms()))
        .map_err(std::io::Error::other)
        .and_then(|json| RawValue::from_string(json).map_err(std::io::Error::other));
    let result = match snapshot {
        Ok(raw) => cx.checkpoints.save(&raw).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        cx.metrics.errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(source = %cx.name, "cannot write checkpoint: {e}");
        state.dirty = true;
        state.unsaved_identity = true;
    }
}

#[async_trait]
impl Source for FileSource {
    async fn run(self: Box<Self>, cx: SourceContext) -> anyhow::Result<()> {
        let s = self.settings;
        let (saved, first_start) = load(&cx, &s)?;
        let (mut state, remembered, next_id) = State::load(saved, s.checkpoint_ttl, now_ms());
        let (tx, mut rx) = mpsc::channel(16);
        let (wake_tx, wake_rx) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let setup = ReaderSetup {
            settings: s.clone(),
            remembered,
            first_start,
            next_id,
            out: tx,
            wake_tx: wake_tx.clone(),
            wake_rx,
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("file-{}", cx.name))
            .spawn(move || reader::run(setup))?;

        let mut tracker: AckTracker<u64> = AckTracker::new();
        let mut throttle = Throttle::new(cx.checkpoint_interval);
        let mut tick =
            tokio::time::interval(cx.checkpoint_interval.min(Duration::from_millis(200)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ready = false;
        let mut failure = None;
        loop {
            tokio::select! {
                biased;
                _ = cx.shutdown.cancelled() => break,
                // A failed batch holds the checkpoint until a restart:
                // `next` would return at once, forever (a busy loop that
                // never yields, so an abort could not stop this task).
                Some(seq) = tracker.next(), if tracker.outstanding() > 0 && !tracker.is_stuck() => {
                    state.released(seq);
                }
                msg = rx.recv() => match msg {
                    None => {
                        failure = Some(anyhow::anyhow!("the reader thread of source `{}` ended", cx.name));
                        break;
                    }
                    Some(ReaderMsg::Batch { records, positions, bytes }) => {
                        if state.unsaved_identity {
                            // New files are on disk before their first line leaves.
                            save(&cx, &mut state).await;
                        }
                        let seq = state.emitted(positions);
                        let ack = tracker.track(seq);
                        if records.is_empty() {
                            ack.ack();
                        } else {
                            cx.metrics.record_in(records.len() as u64, bytes);
                            tokio::select! {
                                r = cx.output.send(records, ack) => if r.is_err() { break },
                                _ = cx.shutdown.cancelled() => break,
                            }
                        }
                    }
                    Some(ReaderMsg::Track { id, ident, offset }) => state.track(id, &ident, offset, now_ms()),
                    Some(ReaderMsg::Untrack { id, deleted }) => state.untrack(id, deleted, now_ms()),
                    Some(ReaderMsg::Ready) => ready = true,
                    Some(ReaderMsg::Oversized(n)) => {
                        cx.metrics.errors.fetch_add(n, Ordering::Relaxed);
                    }
                    Some(ReaderMsg::Polling(why)) => {
                        cx.metrics.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(source = %cx.name, "stat polling: {why}");
                    }
                },
                _ = tick.tick() => {}
            }
            if let Some(seq) = tracker.poll() {
                state.released(seq);
            }
            cx.metrics
                .checkpoint_lag
                .store(state.lag(), Ordering::Relaxed);
            if ready && state.dirty && throttle.due() {
                save(&cx, &mut state).await;
            }
        }

        // Stop reading; keep the identity changes the reader still sends,
        // drop its unsent batches (they were never emitted).
        stop.store(true, Ordering::Relaxed);
        let _ = wake_tx.send(Wake::Stop);
        let drain = async {
            while let Some(msg) = rx.recv().await {
                match msg {
                    ReaderMsg::Track { id, ident, offset } => {
                        state.track(id, &ident, offset, now_ms())
                    }
                    ReaderMsg::Untrack { id, deleted } => state.untrack(id, deleted, now_ms()),
                    ReaderMsg::Ready => ready = true,
                    _ => {}
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
        if let Some(seq) = tracker.settle().await {
            state.released(seq);
        }
        cx.metrics
            .checkpoint_lag
            .store(state.lag(), Ordering::Relaxed);
        if ready {
            save(&cx, &mut state).await;
        }
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
