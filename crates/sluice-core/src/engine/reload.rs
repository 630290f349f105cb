//! Reloading a running pipeline: the [`PipelineHandle`] that hands it a
//! newly built [`Pipeline`], the rule that decides each component's fate
//! (compare fingerprints by name), how the supervisor applies it, and the
//! [`ReloadReport`] of what changed. Starting, replacing and retiring the
//! instances themselves is the supervisor's (`supervisor.rs`). Touches
//! nothing but memory and the channel to the running pipeline.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::supervisor::{matchers, LiveSink, Retiring, Supervisor};
use super::{Fingerprint, Pipeline, SinkEntry, SourceEntry};
use crate::condition::Condition;

/// A new pipeline for the running one, and where to send the outcome.
pub(crate) struct Request {
    pub next: Pipeline,
    pub reply: oneshot::Sender<anyhow::Result<ReloadReport>>,
}

/// Sends new configurations to a running pipeline.
#[derive(Clone)]
pub struct PipelineHandle {
    tx: mpsc::UnboundedSender<Request>,
}

impl PipelineHandle {
    pub(crate) fn new(tx: mpsc::UnboundedSender<Request>) -> PipelineHandle {
        PipelineHandle { tx }
    }

    /// Changes the running pipeline into `next`: components whose settings
    /// changed are replaced (a sink after its predecessor drained, a source
    /// after its predecessor wrote its final checkpoint, so it resumes from
    /// there), added ones start, removed ones stop, the others keep running
    /// untouched. Refused (with the running pipeline unchanged) when `next`
    /// has another `data_dir`, or the pipeline is stopping. `next`'s
    /// resources are not used: every component runs with the running
    /// pipeline's. Components added with `add_source`/`add_sink` have no
    /// fingerprint and are always rebuilt; those of `from_config` are kept
    /// when their type, options and engine keys are unchanged.
    pub async fn reload(&self, next: Pipeline) -> anyhow::Result<ReloadReport> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request { next, reply })
            .map_err(|_| anyhow::anyhow!("the pipeline is not running"))?;
        answer.await.map_err(|_| {
            anyhow::anyhow!("the pipeline stopped before applying the new configuration")
        })?
    }
}

/// What a reload did, by component (`source x`, `sink y`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Replaced by a new instance built from the new settings.
    pub rebuilt: Vec<String>,
    /// Sinks whose `inputs` or `where` changed: only their routes were
    /// swapped.
    pub rerouted: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Components left running as they were.
    pub unchanged: usize,
}

impl ReloadReport {
    /// Whether the reload changed nothing.
    pub fn is_empty(&self) -> bool {
        self.rebuilt.is_empty()
            && self.rerouted.is_empty()
            && self.added.is_empty()
            && self.removed.is_empty()
    }
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        write!(
            f,
            "rebuilt: {}; rerouted: {}; added: {}; removed: {}; unchanged: {}",
            list(&self.rebuilt),
            list(&self.rerouted),
            list(&self.added),
            list(&self.removed),
            self.unchanged
        )
    }
}

/// What happens to a component that exists before and after a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    Rebuild,
}

/// Equal fingerprints keep the running component; anything else (or a
/// component added by hand, without one) rebuilds it.
fn fate(old: &Fingerprint, new: &Fingerprint) -> Fate {
    match (old, new) {
        (Some(a), Some(b)) if a == b => Fate::Keep,
        _ => Fate::Rebuild,
    }
}

impl Supervisor {
    /// Moves a replaced or removed sink instance to the retiring list.
    fn retire(&mut self, name: &Arc<str>, old: LiveSink) {
        if !old.done.is_cancelled() {
            self.retiring.push(Retiring {
                id: old.id,
                name: name.clone(),
                abort: old.abort.clone(),
                written: old.metrics.records_out.load(Ordering::Relaxed),
                metrics: old.metrics.clone(),
                check_at: Some(Instant::now() + self.shutdown_timeout),
            });
        }
        // `old.feed` goes here: once no router holds the sink either, its
        // buffer closes and the old instance drains and ends.
    }

    /// Applies a reload (see [`super::PipelineHandle::reload`]).
    pub(super) fn reload(&mut self, next: Pipeline) -> anyhow::Result<ReloadReport> {
        if self.deadline.is_some() || self.released {
            anyhow::bail!("the pipeline is stopping; the new configuration was not applied");
        }
        if next.data_dir != self.data_dir {
            anyhow::bail!(
                "data_dir cannot change while sluice runs (it is {}, the new configuration says {}): restart sluice to use another data directory",
                self.data_dir.display(),
                next.data_dir.display()
            );
        }
        let Pipeline {
            checkpoint_interval,
            shutdown_timeout,
            idle,
            sources,
            sinks,
            ..
        } = next;
        self.checkpoint_interval = checkpoint_interval;
        self.shutdown_timeout = shutdown_timeout;
        self.idle = idle;
        let mut report = ReloadReport::default();
        self.reload_sinks(sinks, &mut report);
        self.reload_sources(sources, &mut report);
        self.reroute_all();
        self.release_if_done();
        Ok(report)
    }

    fn reload_sinks(&mut self, sinks: Vec<SinkEntry>, report: &mut ReloadReport) {
        let keep: HashSet<Arc<str>> = sinks.iter().map(|s| s.name.clone()).collect();
        let gone: Vec<Arc<str>> = self
            .sinks
            .keys()
            .filter(|n| !keep.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(old) = self.sinks.shift_remove(&name) {
                self.metrics.unregister(&name, "sink");
                self.retire(&name, old);
                report.removed.push(format!("sink `{name}`"));
            }
        }
        for mut e in sinks {
            let label = format!("sink `{}`", e.name);
            let Some(old) = self.sinks.get_mut(&e.name) else {
                self.metrics
                    .register(e.metrics.clone(), Some(e.buffer.clone()));
                self.start_sink(e, None);
                report.added.push(label);
                continue;
            };
            if fate(&old.fingerprint, &e.fingerprint) == Fate::Keep {
                let where_of = |c: &Option<Condition>| c.as_ref().map(|c| c.source().to_string());
                if old.inputs != e.settings.inputs
                    || where_of(&old.condition) != where_of(&e.settings.condition)
                {
                    old.matchers = matchers(&e.settings.inputs);
                    old.inputs = e.settings.inputs;
                    old.condition = e.settings.condition;
                    report.rerouted.push(label);
                } else {
                    report.unchanged += 1;
                }
                continue;
            }
            if old.kind == e.kind {
                // Same component type: its counters carry on.
                e.metrics = old.metrics.clone();
            }
            let pred = old.done.clone();
            self.metrics
                .register(e.metrics.clone(), Some(e.buffer.clone()));
            let name = e.name.clone();
            if let Some(old) = self.sinks.shift_remove(&name) {
                self.retire(&name, old);
            }
            self.start_sink(e, Some(pred));
            report.rebuilt.push(label);
        }
    }

    fn reload_sources(&mut self, sources: Vec<SourceEntry>, report: &mut ReloadReport) {
        let keep: HashSet<Arc<str>> = sources.iter().map(|s| s.name.clone()).collect();
        let gone: Vec<Arc<str>> = self
            .sources
            .keys()
            .filter(|n| !keep.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(old) = self.sources.shift_remove(&name) {
                old.stop.cancel();
                self.metrics.unregister(&name, "source");
                report.removed.push(format!("source `{name}`"));
            }
        }
        for mut e in sources {
            let label = format!("source `{}`", e.name);
            let Some(old) = self.sources.get(&e.name) else {
                self.metrics
                    .register(e.metrics.clone(), Some(e.queue.clone()));
                self.start_source(e, None);
                report.added.push(label);
                continue;
            };
            if fate(&old.fingerprint, &e.fingerprint) == Fate::Keep {
                report.unchanged += 1;
                continue;
            }
            // The old instance settles and checkpoints; the new one starts
            // from that checkpoint once it is done.
            old.stop.cancel();
            if old.kind == e.kind {
                e.metrics = old.metrics.clone();
            }
            let pred = old.done.clone();
            self.metrics
                .register(e.metrics.clone(), Some(e.queue.clone()));
            self.start_source(e, Some(pred));
            report.rebuilt.push(label);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_equal_fingerprints_keep() {
        let a = Some(json!({"type": "file", "options": {"path": "a", "fsync": true}}));
        let same = Some(json!({"options": {"fsync": true, "path": "a"}, "type": "file"}));
        let other = Some(json!({"type": "file", "options": {"path": "b", "fsync": true}}));
        assert_eq!(fate(&a, &same), Fate::Keep, "key order does not matter");
        assert_eq!(fate(&a, &other), Fate::Rebuild);
        assert_eq!(fate(&None, &None), Fate::Rebuild);
        assert_eq!(fate(&a, &None), Fate::Rebuild);
    }

    #[test]
    fn report_lists_every_change() {
        let r = ReloadReport {
            rebuilt: vec!["sink `out`".into()],
            added: vec!["source `b`".into()],
            unchanged: 2,
            ..ReloadReport::default()
        };
        assert_eq!(
            r.to_string(),
            "rebuilt: sink `out`; rerouted: none; added: source `b`; removed: none; unchanged: 2"
        );
        assert!(!r.is_empty());
        assert!(ReloadReport::default().is_empty());
    }
}
