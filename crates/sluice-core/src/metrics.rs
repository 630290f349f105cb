//! Metrics: per-component counters and gauges, rendered as Prometheus text
//! (every series named `sluice_…`) and as JSON for `/api/v1/components`.
//!
//! Components bump counters once per batch, never per record. Queue depth,
//! capacity and process figures are read at scrape time. Touches memory and,
//! at scrape time, `/proc/self`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry as PromRegistry;
use serde::Serialize;

use crate::queue::BoundedQueue;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabels {
    component: String,
    kind: String,
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    component: String,
    reason: String,
}

/// Counters of one source or sink.
#[derive(Debug, Default)]
pub struct ComponentMetrics {
    pub name: String,
    /// `source` or `sink`.
    pub kind: String,
    /// The component's `type:`.
    pub component_type: String,
    pub records_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub records_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub errors: AtomicU64,
    pub retries: AtomicU64,
    /// Records dropped by `where` (sinks) — filtered, not lost.
    pub filtered: AtomicU64,
    /// Records dropped by `on_error: drop` / sent to dead letters.
    pub dropped_on_error: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Source-specific distance behind the newest data (bytes, seconds, …)
    /// that is not yet checkpointed.
    pub checkpoint_lag: AtomicI64,
    /// Records emitted and not yet acknowledged.
    pub unacked: AtomicI64,
    /// Initial snapshot (database sources): rows read so far.
    pub snapshot_rows_done: AtomicU64,
    /// Initial snapshot: rows estimated in all, 0 when no snapshot ran.
    pub snapshot_rows_estimated: AtomicU64,
    /// Initial snapshot: start time (ms since the epoch), 0 when none ran.
    pub snapshot_started_ms: AtomicI64,
    /// Initial snapshot: end time (ms since the epoch), 0 while running.
    pub snapshot_finished_ms: AtomicI64,
    /// Live sample of the records passing this component (`sluice tap`).
    pub tap: crate::tap::Tap,
}

/// Progress of a source's snapshot, as served by `/api/v1/components`.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotStatus {
    pub rows_done: u64,
    pub rows_estimated: u64,
    pub rows_per_sec: u64,
    /// Seconds left at the current rate; `None` once finished.
    pub eta_secs: Option<u64>,
    pub finished: bool,
}

impl ComponentMetrics {
    /// The snapshot's progress, if this source took one.
    pub fn snapshot_status(&self) -> Option<SnapshotStatus> {
        let started = self.snapshot_started_ms.load(Ordering::Relaxed);
        if started == 0 {
            return None;
        }
        let finished = self.snapshot_finished_ms.load(Ordering::Relaxed);
        let done = self.snapshot_rows_done.load(Ordering::Relaxed);
        let estimated = self.snapshot_rows_estimated.load(Ordering::Relaxed);
        let end = if finished > 0 {
            finished
        } else {
            crate::record::now_ms()
        };
        let secs = ((end - started).max(1) as f64) / 1000.0;
        let rate = done as f64 / secs;
        Some(SnapshotStatus {
            rows_done: done,
            rows_estimated: estimated,
            rows_per_sec: rate as u64,
            eta_secs: (finished == 0)
                .then(|| (estimated.saturating_sub(done) as f64 / rate.max(1.0)) as u64),
            finished: finished > 0,
        })
    }
}

impl ComponentMetrics {
    pub fn new(name: &str, kind: &str, component_type: &str) -> Arc<ComponentMetrics> {
        Arc::new(ComponentMetrics {
            name: name.to_string(),
            kind: kind.to_string(),
            component_type: component_type.to_string(),
            ..Default::default()
        })
    }

    pub fn record_in(&self, records: u64, bytes: u64) {
        self.records_in.fetch_add(records, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn record_out(&self, records: u64, bytes: u64) {
        self.records_out.fetch_add(records, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// A component's figures as served by `/api/v1/components`.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentStatus {
    pub name: String,
    pub kind: String,
    pub r#type: String,
    pub records_in: u64,
    pub bytes_in: u64,
    pub records_out: u64,
    pub bytes_out: u64,
    pub errors: u64,
    pub retries: u64,
    pub filtered: u64,
    pub dropped_queue_full: u64,
    pub rejected_queue_full: u64,
    pub dropped_on_error: u64,
    pub dead_lettered: u64,
    pub queue_events: usize,
    pub queue_bytes: usize,
    pub queue_max_events: usize,
    pub queue_max_bytes: usize,
    pub checkpoint_lag: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotStatus>,
}

struct Entry {
    metrics: Arc<ComponentMetrics>,
    queue: Option<Arc<BoundedQueue>>,
}

/// Every component's metrics, for the API.
#[derive(Default)]
pub struct MetricsRegistry {
    entries: Mutex<Vec<Entry>>,
}

impl MetricsRegistry {
    pub fn new() -> Arc<MetricsRegistry> {
        Arc::new(MetricsRegistry::default())
    }

    /// Adds a component; `queue` is its source queue or sink buffer.
    pub fn register(&self, metrics: Arc<ComponentMetrics>, queue: Option<Arc<BoundedQueue>>) {
        let mut entries = self.entries.lock();
        entries.retain(|e| e.metrics.name != metrics.name || e.metrics.kind != metrics.kind);
        entries.push(Entry { metrics, queue });
    }

    /// Removes a component (a reload removed it).
    pub fn unregister(&self, name: &str, kind: &str) {
        self.entries
            .lock()
            .retain(|e| e.metrics.name != name || e.metrics.kind != kind);
    }

    /// The metrics (and tap) of the component named `name`, if registered.
    pub fn component(&self, name: &str) -> Option<Arc<ComponentMetrics>> {
        self.entries
            .lock()
            .iter()
            .find(|e| e.metrics.name == name)
            .map(|e| e.metrics.clone())
    }

    pub fn statuses(&self) -> Vec<ComponentStatus> {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.entries
            .lock()
            .iter()
            .map(|e| {
                let m = &e.metrics;
                let (qe, qb) = e.queue.as_ref().map_or((0, 0), |q| q.depth());
                let cfg = e.queue.as_ref().map(|q| *q.config());
                ComponentStatus {
                    name: m.name.clone(),
                    kind: m.kind.clone(),
                    r#type: m.component_type.clone(),
                    records_in: load(&m.records_in),
                    bytes_in: load(&m.bytes_in),
                    records_out: load(&m.records_out),
                    bytes_out: load(&m.bytes_out),
                    errors: load(&m.errors),
                    retries: load(&m.retries),
                    filtered: load(&m.filtered),
                    dropped_queue_full: e.queue.as_ref().map_or(0, |q| q.dropped()),
                    rejected_queue_full: e.queue.as_ref().map_or(0, |q| q.rejected()),
                    dropped_on_error: load(&m.dropped_on_error),
                    dead_lettered: load(&m.dead_lettered),
                    queue_events: qe,
                    queue_bytes: qb,
                    queue_max_events: cfg.map_or(0, |c| c.max_events),
                    queue_max_bytes: cfg.map_or(0, |c| c.max_bytes),
                    checkpoint_lag: m.checkpoint_lag.load(Ordering::Relaxed),
                    snapshot: m.snapshot_status(),
                }
            })
            .collect()
    }

    /// Prometheus text exposition of every component and the process.
    pub fn render_prometheus(&self) -> String {
        let mut reg = PromRegistry::with_prefix("sluice");
        let counter = |reg: &mut PromRegistry, name: &str, help: &str| {
            let f = Family::<ComponentLabels, Counter>::default();
            reg.register(name, help, f.clone());
            f
        };
        let gauge = |reg: &mut PromRegistry, name: &str, help: &str| {
            let f = Family::<ComponentLabels, Gauge>::default();
            reg.register(name, help, f.clone());
            f
        };
        let records_in = counter(&mut reg, "component_received_records", "Records received");
        let bytes_in = counter(&mut reg, "component_received_bytes", "Bytes received");
        let records_out = counter(
            &mut reg,
            "component_sent_records",
            "Records sent on or durably written",
        );
        let bytes_out = counter(
            &mut reg,
            "component_sent_bytes",
            "Bytes sent on or durably written",
        );
        let errors = counter(&mut reg, "component_errors", "Errors");
        let retries = counter(&mut reg, "component_retries", "Write retries");
        let q_events = gauge(&mut reg, "queue_events", "Records queued");
        let q_bytes = gauge(&mut reg, "queue_bytes", "Bytes queued");
        let q_cap = gauge(
            &mut reg,
            "queue_capacity_events",
            "Queue capacity in records",
        );
        let q_cap_bytes = gauge(&mut reg, "queue_capacity_bytes", "Queue capacity in bytes");
        let lag = gauge(
            &mut reg,
            "checkpoint_lag",
            "Distance not yet checkpointed (source-specific unit)",
        );
        let snap_done = gauge(
            &mut reg,
            "snapshot_rows_done",
            "Rows read by the initial snapshot",
        );
        let snap_est = gauge(
            &mut reg,
            "snapshot_rows_estimated",
            "Rows the initial snapshot expects to read",
        );
        let drops = Family::<DropLabels, Counter>::default();
        reg.register(
            "dropped_records",
            "Records dropped, by reason",
            drops.clone(),
        );
        for s in self.statuses() {
            let l = ComponentLabels {
                component: s.name.clone(),
                kind: s.kind.clone(),
                r#type: s.r#type.clone(),
            };
            records_in.get_or_create(&l).inc_by(s.records_in);
            bytes_in.get_or_create(&l).inc_by(s.bytes_in);
            records_out.get_or_create(&l).inc_by(s.records_out);
            bytes_out.get_or_create(&l).inc_by(s.bytes_out);
            errors.get_or_create(&l).inc_by(s.errors);
            retries.get_or_create(&l).inc_by(s.retries);
            q_events.get_or_create(&l).set(s.queue_events as i64);
            q_bytes.get_or_create(&l).set(s.queue_bytes as i64);
            q_cap.get_or_create(&l).set(s.queue_max_events as i64);
            q_cap_bytes
                .get_or_create(&l)
                .set(s.queue_max_bytes.min(i64::MAX as usize) as i64);
            lag.get_or_create(&l).set(s.checkpoint_lag);
            if let Some(snap) = &s.snapshot {
                snap_done.get_or_create(&l).set(snap.rows_done as i64);
                snap_est.get_or_create(&l).set(snap.rows_estimated as i64);
            }
            for (reason, n) in [
                ("queue_full", s.dropped_queue_full),
                ("rejected", s.rejected_queue_full),
                ("on_error", s.dropped_on_error),
                ("dead_letter", s.dead_lettered),
            ] {
                drops
                    .get_or_create(&DropLabels {
                        component: s.name.clone(),
                        reason: reason.into(),
                    })
                    .inc_by(n);
            }
        }
        let process = crate::process::ProcessStats::read();
        let rss = Gauge::<i64>::default();
        rss.set(process.rss_bytes as i64);
        reg.register("process_resident_memory_bytes", "Resident set size", rss);
        let cpu = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        cpu.set(process.cpu_seconds);
        reg.register("process_cpu_seconds", "User and system CPU time", cpu);
        let mut out = String::new();
        let _ = encode(&mut out, &reg);
        out
    }
}
