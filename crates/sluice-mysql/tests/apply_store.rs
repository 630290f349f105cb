//! Replica apply through a store topic: the binlog's changes are written
//! to an embedded-store topic as JSON envelopes (what the `store` sink
//! writes), then a pipeline reads the topic back (records without
//! `Meta::Row`, as the `store` and Kafka sources deliver them) into the
//! apply sink. The topic is replayed from offset 0 after an abort and
//! again after a full run: the position table skips what is applied, the
//! ledger holds every transaction once and `verify` passes.

mod apply_common;
mod support;

use std::time::Duration;

use apply_common::*;
use async_trait::async_trait;
use serde_json::json;
use sluice_core::component::{BuildContext, Resources, SinkFactory, Source, SourceContext};
use sluice_core::config::{ComponentOptions, QueueConfig};
use sluice_core::record::Op;
use sluice_core::{AckRef, Control, Pipeline, Record};
use sluice_mysql::apply::MysqlApplyFactory;
use sluice_mysql::{ChangeStream, Position, StreamConfig};
use sluice_store::{Store, StoreOptions, TopicConfig};
use support::MariaDb;

/// Reads partition 0 of a topic from offset 0 to its end, then finishes.
struct TopicReplay(sluice_store::Topic);

#[async_trait]
impl Source for TopicReplay {
    async fn run(self: Box<Self>, cx: SourceContext) -> anyhow::Result<()> {
        let end = self.0.end_offset(0)?;
        let mut off = 0;
        while off < end {
            let recs = self.0.read(0, off, 300, 4 << 20)?;
            let Some(last) = recs.last() else { break };
            off = last.offset + 1;
            let out = recs
                .into_iter()
                .map(|r| Record {
                    value: r.value,
                    timestamp_ms: r.timestamp_ms,
                    ..Record::default()
                })
                .collect();
            if cx.output.send(out, AckRef::untracked()).await.is_err() {
                break;
            }
        }
        Ok(())
    }
}

fn replay(dir: &std::path::Path, topic: &sluice_store::Topic, target_url: &str) -> Pipeline {
    replay_into(dir, topic, target_url, "shop_store", 2000)
}

fn replay_into(
    dir: &std::path::Path,
    topic: &sluice_store::Topic,
    target_url: &str,
    db: &str,
    batch_events: usize,
) -> Pipeline {
    replay_with(dir, topic, target_url, db, batch_events, |_| {})
}

fn replay_with(
    dir: &std::path::Path,
    topic: &sluice_store::Topic,
    target_url: &str,
    db: &str,
    batch_events: usize,
    tune: impl FnOnce(&mut sluice_core::SinkSettings),
) -> Pipeline {
    let mut p = Pipeline::new(dir).with_shutdown_timeout(Duration::from_secs(60));
    p.add_source(
        "cdc",
        "store",
        Box::new(TopicReplay(topic.clone())),
        QueueConfig::default(),
    );
    let res = Resources::default();
    let cx = BuildContext {
        name: "replica",
        data_dir: dir,
        resources: &res,
    };
    let opts = json!({"url": target_url, "database_map": {"shop": db}, "parallelism": 2,
        "consumer": db});
    let sink = MysqlApplyFactory
        .build(&cx, &ComponentOptions::from_json(opts))
        .unwrap();
    let mut settings = sink_settings("cdc");
    settings.batch.max_events = batch_events;
    settings.batch.max_bytes = 64 << 20;
    settings.batch.timeout_ms = 100;
    tune(&mut settings);
    p.add_sink("replica", "mysql", sink, settings);
    p
}

/// The primary's `shop.*` changes from `start`.
async fn shop_stream(primary: &MariaDb, start: &(String, u64), server_id: u32) -> ChangeStream {
    let mut cfg = StreamConfig::new(
        mysql_async::Opts::from_url(&primary.url()).unwrap(),
        server_id,
    );
    cfg.filter =
        sluice_mysql::filter::TableFilter::new(&["shop.*".to_string()], &[], &[], &[]).unwrap();
    let pos = Position {
        file: start.0.clone(),
        pos: start.1,
        gtid: String::new(),
    };
    ChangeStream::start(cfg, Some(pos)).await.unwrap()
}

/// The primary's `shop.*` changes from `start` until the ledger holds `n`
/// inserted rows.
async fn shop_changes(
    primary: &MariaDb,
    start: &(String, u64),
    server_id: u32,
    n: u64,
) -> Vec<sluice_core::record::RowChange> {
    let mut stream = shop_stream(primary, start, server_id).await;
    let mut changes: Vec<sluice_core::record::RowChange> = Vec::new();
    let ledger_rows = |cs: &[sluice_core::record::RowChange]| {
        cs.iter()
            .filter(|c| c.op == Op::Create && c.source.table == "ledger")
            .count() as u64
    };
    while ledger_rows(&changes) < n {
        let b = tokio::time::timeout(Duration::from_secs(30), stream.next_batch())
            .await
            .expect("binlog read")
            .unwrap();
        changes.extend(b.changes.iter().cloned());
    }
    changes
}

/// `db` on the target equals the primary's `shop` (`verify`), and its
/// ledger holds `n` rows, all distinct (each transaction applied once).
async fn assert_replicated(primary: &MariaDb, target: &MariaDb, db: &str, n: u64) {
    let r = wait_equal(
        &verify_opts(primary, &target.url(), db),
        Duration::from_secs(30),
    )
    .await;
    assert!(r.is_equal(), "{}", printed(&r));
    assert_eq!(ledger(target, db).await, (n, n), "(rows, distinct)");
}

/// A store topic `cdc` under `dir` holding `recs` in partition 0.
async fn topic_of(dir: &std::path::Path, recs: &[sluice_store::Record]) -> sluice_store::Topic {
    let store = Store::open(dir.join("store"), StoreOptions::default()).unwrap();
    let topic = store
        .get_or_create_topic("cdc", TopicConfig::default())
        .unwrap();
    topic.append(0, recs).unwrap().wait_durable().await.unwrap();
    topic
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_store_topic_replayed_twice() {
    let primary = primary();
    let target = target();
    let dir = tempfile::tempdir().unwrap();
    let start = master_pos(&primary).await;
    primary.exec(SCHEMA).await;
    let n = 500;
    workload(&primary, 21, 0, n, Duration::ZERO).await;
    // Binlog → topic, as JSON envelopes.
    let store = Store::open(dir.path().join("store"), StoreOptions::default()).unwrap();
    let topic = store
        .get_or_create_topic("cdc", TopicConfig::default())
        .unwrap();
    let mut stream = shop_stream(&primary, &start, 78).await;
    let mut ledger_rows = 0;
    while ledger_rows < n {
        let b = tokio::time::timeout(Duration::from_secs(30), stream.next_batch())
            .await
            .expect("binlog read")
            .unwrap();
        let recs: Vec<sluice_store::Record> = b
            .changes
            .iter()
            .map(|c| sluice_store::Record::new(serde_json::to_vec(c).unwrap()))
            .collect();
        ledger_rows += b
            .changes
            .iter()
            .filter(|c| c.op == Op::Create && c.source.table == "ledger")
            .count() as u64;
        topic
            .append(0, &recs)
            .unwrap()
            .wait_durable()
            .await
            .unwrap();
    }
    // Aborted mid-way, then run to the end twice.
    let control = Control::default();
    let task = tokio::spawn(replay(dir.path(), &topic, &target.url()).run(control.clone()));
    tokio::time::sleep(Duration::from_millis(150)).await;
    control.abort.cancel();
    let _ = task.await.unwrap();
    for _ in 0..2 {
        replay(dir.path(), &topic, &target.url())
            .run(Control::default())
            .await
            .expect("replay runs to its end");
    }
    assert_replicated(&primary, &target, "shop_store", n).await;
    // The second full replay skipped every row change of the topic.
    let skipped = sluice_mysql::apply::sink::skipped_total();
    assert!(skipped >= n, "only {skipped} changes skipped on replay");
}

/// After a crash the source sends again what its checkpoint had not
/// passed; through a topic both copies can reach one sink batch, where the
/// stored position (older than both) cannot tell them apart. The topic
/// here holds transactions 1..k, then k/2..k again, then the rest, and
/// one sink batch takes it all: each transaction must be applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_stretch_in_the_same_batch_is_applied_once() {
    let primary = primary();
    let target = target();
    let dir = tempfile::tempdir().unwrap();
    let start = master_pos(&primary).await;
    primary.exec(SCHEMA).await;
    let n = 300;
    workload(&primary, 33, 0, n, Duration::ZERO).await;
    let changes = shop_changes(&primary, &start, 79, n).await;
    // Transaction boundaries: the index after each transaction's last change.
    let ends: Vec<usize> = changes
        .iter()
        .enumerate()
        .filter(|(_, c)| c.transaction.as_ref().is_none_or(|t| t.last))
        .map(|(i, _)| i + 1)
        .collect();
    let (from, to) = (ends[ends.len() / 4], ends[ends.len() / 2]);
    let order = (0..to).chain(from..to).chain(to..changes.len());
    let recs: Vec<sluice_store::Record> = order
        .map(|i| sluice_store::Record::new(serde_json::to_vec(&changes[i]).unwrap()))
        .collect();
    let topic = topic_of(dir.path(), &recs).await;
    let before = sluice_mysql::apply::sink::skipped_total();
    replay_into(dir.path(), &topic, &target.url(), "shop_dup", 100_000)
        .run(Control::default())
        .await
        .expect("replay runs to its end");
    assert_replicated(&primary, &target, "shop_dup", n).await;
    let skipped = sluice_mysql::apply::sink::skipped_total() - before;
    assert!(
        skipped >= (to - from) as u64,
        "{skipped} changes skipped, {} re-sent",
        to - from
    );
}

/// A record in the topic that is not a row change, in the middle of a
/// sink batch: it goes to the dead-letter file, and every change before
/// and after it in the same batch is applied (the ones before it were
/// once acknowledged without being applied).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_is_not_a_row_change_is_dead_lettered_and_the_rest_applied() {
    let primary = primary();
    let target = target();
    let dir = tempfile::tempdir().unwrap();
    let start = master_pos(&primary).await;
    primary.exec(SCHEMA).await;
    let n = 200;
    workload(&primary, 35, 0, n, Duration::ZERO).await;
    let changes = shop_changes(&primary, &start, 81, n).await;
    let mut recs: Vec<sluice_store::Record> = changes
        .iter()
        .map(|c| sluice_store::Record::new(serde_json::to_vec(c).unwrap()))
        .collect();
    // At a transaction boundary half-way.
    let half = changes
        .iter()
        .enumerate()
        .filter(|(i, c)| *i >= changes.len() / 2 && c.transaction.as_ref().is_none_or(|t| t.last))
        .map(|(i, _)| i + 1)
        .next()
        .unwrap();
    recs.insert(
        half,
        sluice_store::Record::new(b"{not a row change".to_vec()),
    );
    let topic = topic_of(dir.path(), &recs).await;
    let dead = dir.path().join("dead.jsonl");
    replay_with(
        dir.path(),
        &topic,
        &target.url(),
        "shop_bad",
        100_000,
        |s| {
            s.on_error = sluice_core::config::OnError::DeadLetter;
            s.dead_letter_path = Some(dead.clone());
        },
    )
    .run(Control::default())
    .await
    .expect("replay runs to its end");
    assert_replicated(&primary, &target, "shop_bad", n).await;
    let letters = std::fs::read_to_string(&dead).expect("dead-letter file");
    assert_eq!(letters.lines().count(), 1, "{letters}");
    assert!(letters.contains("not a row change"), "{letters}");
}
