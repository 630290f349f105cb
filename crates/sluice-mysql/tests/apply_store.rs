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
    let opts = json!({"url": target_url, "database_map": {"shop": "shop_store"}, "parallelism": 2});
    let sink = MysqlApplyFactory
        .build(&cx, &ComponentOptions::from_json(opts))
        .unwrap();
    p.add_sink("replica", "mysql", sink, sink_settings("cdc"));
    p
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
    let mut cfg = StreamConfig::new(mysql_async::Opts::from_url(&primary.url()).unwrap(), 78);
    cfg.filter =
        sluice_mysql::filter::TableFilter::new(&["shop.*".to_string()], &[], &[], &[]).unwrap();
    let pos = Position {
        file: start.0.clone(),
        pos: start.1,
        gtid: String::new(),
    };
    let mut stream = ChangeStream::start(cfg, Some(pos)).await.unwrap();
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
    let r = wait_equal(
        &verify_opts(&primary, &target.url(), "shop_store"),
        Duration::from_secs(30),
    )
    .await;
    eprintln!("{}", printed(&r));
    assert!(r.is_equal(), "{}", printed(&r));
    assert_eq!(ledger(&target, "shop_store").await, (n, n));
    // The second full replay skipped every row change of the topic.
    let skipped = sluice_mysql::apply::sink::skipped_total();
    assert!(skipped >= n, "only {skipped} changes skipped on replay");
}
