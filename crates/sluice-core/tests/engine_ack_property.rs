//! The acknowledgement property, by proptest: random sources (batch counts
//! and sizes), 1–3 sinks with random buffers and policies, batching, write
//! delays, retryable failures and give-ups dropped by `on_error`. Whenever a
//! source's tracker releases a checkpoint position, every record at or
//! before it that a sink durably accepted was accepted before the release,
//! and sinks that may not lose anything (`block`, retry forever) have
//! accepted every such record. At the end: per sink, records arrive in order
//! without duplicates, and accepted + dropped (counted) = emitted. Source
//! queues are mostly `block`; a dropping one relaxes "has every record" to
//! "has every record the source queue kept".

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use proptest::prelude::*;
use sluice_core::config::{OnError, WhenFull};
use sluice_core::Control;
use support::*;

#[derive(Debug, Clone)]
struct SinkPlan {
    policy: WhenFull,
    buffer: usize,
    batch_max: usize,
    timeout_ms: u64,
    delays_ms: Vec<u64>,
    fail_calls: Vec<usize>,
    /// `retry.max_attempts`, with `on_error: drop`.
    give_up: Option<u32>,
    /// With `give_up`: a record whose writes always fail.
    poison: u64,
}

impl SinkPlan {
    /// A sink that must end up with every record.
    fn lossless(&self) -> bool {
        self.policy == WhenFull::Block && self.give_up.is_none()
    }
}

#[derive(Debug, Clone)]
struct Case {
    sources: Vec<Vec<usize>>,
    source_queue: usize,
    /// Mostly `block`; a dropping source queue loses records before routing.
    source_policy: WhenFull,
    sinks: Vec<SinkPlan>,
}

fn sink_plan() -> impl Strategy<Value = SinkPlan> {
    (
        prop_oneof![
            2 => Just(WhenFull::Block),
            1 => Just(WhenFull::DropNewest),
            1 => Just(WhenFull::DropOldest)
        ],
        4usize..40,
        1usize..20,
        prop_oneof![Just(0u64), 1u64..3],
        prop::collection::vec(prop_oneof![3 => Just(0u64), 1 => 1u64..3], 1..5),
        prop::collection::vec(0usize..30, 0..6),
        prop::option::of(1u32..4),
        1u64..80,
    )
        .prop_map(
            |(policy, buffer, batch_max, timeout_ms, delays_ms, fail_calls, give_up, poison)| {
                SinkPlan {
                    policy,
                    buffer,
                    batch_max,
                    timeout_ms,
                    delays_ms,
                    fail_calls,
                    give_up,
                    poison,
                }
            },
        )
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(prop::collection::vec(1usize..12, 1..30), 1..3),
        4usize..40,
        prop_oneof![
            3 => Just(WhenFull::Block),
            1 => Just(WhenFull::DropNewest),
            1 => Just(WhenFull::DropOldest)
        ],
        prop::collection::vec(sink_plan(), 1..=3),
    )
        .prop_map(|(sources, source_queue, source_policy, sinks)| Case {
            sources,
            source_queue,
            source_policy,
            sinks,
        })
}

/// At a release of `(source, pos)`: every lossless sink holds 1..=pos.
fn checker(lossless: Vec<(String, Arc<Mutex<SinkLog>>)>) -> Checker {
    Arc::new(move |source: &str, pos: u64| {
        for (name, log) in &lossless {
            let log = log.lock();
            let have: HashSet<u64> = log
                .accepted
                .iter()
                .filter(|(s, id, _)| s == source && *id <= pos)
                .map(|(_, id, _)| *id)
                .collect();
            if have.len() as u64 != pos {
                return Err(format!(
                    "`{source}` released {pos} while sink `{name}` had accepted only {} of those records",
                    have.len()
                ));
            }
        }
        Ok(())
    })
}

async fn run_case(case: Case) {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path());
    let m = p.metrics();
    let mut sinks = Vec::new();
    for (i, plan) in case.sinks.iter().enumerate() {
        let name = format!("k{i}");
        let (mut sink, log) = TestSink::new();
        sink = sink
            .delays(
                plan.delays_ms
                    .iter()
                    .map(|d| Duration::from_millis(*d))
                    .collect(),
            )
            .fail_calls(plan.fail_calls.iter().copied());
        let mut st = settings(&["*"]);
        st.buffer = queue(plan.buffer, plan.policy);
        st.batch.max_events = plan.batch_max;
        st.batch.timeout_ms = plan.timeout_ms;
        if let Some(n) = plan.give_up {
            sink = sink.fail_while_contains([plan.poison]);
            st.retry.max_attempts = Some(n);
            st.on_error = OnError::Drop;
        }
        p.add_sink(&name, "test", sink.boxed(), st);
        sinks.push((name, log, plan.clone()));
    }
    // Records a source queue drops reach no sink: the online check needs a
    // lossless source queue.
    let source_lossless = case.source_policy == WhenFull::Block;
    let lossless: Vec<_> = sinks
        .iter()
        .filter(|(_, _, plan)| plan.lossless() && source_lossless)
        .map(|(n, l, _)| (n.clone(), l.clone()))
        .collect();
    let mut sources = Vec::new();
    for (i, sizes) in case.sources.iter().enumerate() {
        let name = format!("s{i}");
        let script = sizes
            .iter()
            .map(|&size| Step::Emit { batches: 1, size })
            .collect();
        let (src, log) = TestSource::with_checker(script, checker(lossless.clone()));
        p.add_source(
            &name,
            "test",
            src,
            queue(case.source_queue, case.source_policy),
        );
        let total: u64 = sizes.iter().map(|s| *s as u64).sum();
        sources.push((name, log, total));
    }
    run(p, Control::default()).await.unwrap();

    let mut emitted = 0;
    for (src, slog, total) in &sources {
        let lost_at_source = status(&m, src, "source").dropped_queue_full;
        emitted += total - lost_at_source;
        let slog = slog.lock();
        assert!(slog.violations.is_empty(), "{:?}", slog.violations);
        assert_eq!(slog.final_checkpoint, Some(*total), "source {src}");
        for (name, klog, plan) in &sinks {
            let klog = klog.lock();
            let complete = plan.lossless() && source_lossless;
            let bad = check_checkpoints(src, &slog, name, &klog, complete);
            assert!(bad.is_empty(), "{bad:?}");
            let ids = klog.ids(src);
            assert!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "sink {name}: `{src}` out of order or duplicated: {ids:?}"
            );
            if complete {
                assert_eq!(ids, range(1, *total), "sink {name} lost records of {src}");
            } else if plan.lossless() {
                let n = ids.len() as u64;
                assert_eq!(
                    n,
                    total - lost_at_source,
                    "sink {name} lost records of {src}"
                );
            }
        }
    }
    for (name, klog, _) in &sinks {
        let st = status(&m, name, "sink");
        let accepted = klog.lock().accepted.len() as u64;
        assert_eq!(
            accepted + st.dropped_queue_full + st.dropped_on_error,
            emitted,
            "sink {name}: accepted + counted drops = emitted"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        max_shrink_iters: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_checkpoint_never_passes_an_unaccepted_record(case in case()) {
        runtime().block_on(run_case(case));
    }
}
