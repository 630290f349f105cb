//! A row the target refuses (a CHECK constraint the source lacks): the
//! default stops the pipeline with the source position and the
//! statement; `on_row_error: skip` logs and goes on; the engine's
//! `on_error: dead_letter` writes the refused change and goes on. The rows
//! before and after the refused one are applied either way.

mod apply_common;
mod support;

use std::time::Duration;

use apply_common::*;
use mysql_async::prelude::Queryable;
use serde_json::json;
use sluice_core::component::{BuildContext, Resources, SinkFactory, SourceFactory};
use sluice_core::config::{ComponentOptions, OnError, QueueConfig};
use sluice_core::{Control, Pipeline};
use sluice_mysql::apply::MysqlApplyFactory;
use sluice_mysql::MysqlSourceFactory;
use support::MariaDb;

fn build(
    dir: &std::path::Path,
    primary: &MariaDb,
    start: &(String, u64),
    sinks: &[(&str, serde_json::Value, OnError)],
) -> Pipeline {
    let mut p = Pipeline::new(dir).with_shutdown_timeout(Duration::from_secs(30));
    let res = Resources::default();
    let cx = BuildContext {
        name: "primary",
        data_dir: dir,
        resources: &res,
    };
    let opts = json!({"url": primary.url(), "server_id": 79, "include_tables": ["shop.*"],
        "snapshot": "never", "start_file": start.0, "start_pos": start.1});
    let src = MysqlSourceFactory
        .build(&cx, &ComponentOptions::from_json(opts))
        .unwrap();
    p.add_source("primary", "mysql", src, QueueConfig::default());
    for (name, opts, on_error) in sinks {
        let cx = BuildContext {
            name,
            data_dir: dir,
            resources: &res,
        };
        let sink = MysqlApplyFactory
            .build(&cx, &ComponentOptions::from_json(opts.clone()))
            .unwrap();
        let mut s = sink_settings("primary");
        s.on_error = *on_error;
        s.dead_letter_path = Some(dir.join(format!("{name}.dead.jsonl")));
        p.add_sink(name, "mysql", sink, s);
    }
    p
}

async fn ids(db: &MariaDb, table: &str) -> Vec<i32> {
    let mut c = db.conn().await;
    c.query(format!("SELECT id FROM {table} ORDER BY id"))
        .await
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_row_stops_or_skips_or_goes_to_dead_letter() {
    let primary = primary();
    let target = target();
    let dir = tempfile::tempdir().unwrap();
    for db in ["shop_stop", "shop_skip", "shop_dl"] {
        target
            .exec(&format!(
                "CREATE DATABASE {db}; CREATE TABLE {db}.t (id INT PRIMARY KEY, qty INT, CHECK (qty < 100))"
            ))
            .await;
    }
    let start = master_pos(&primary).await;
    primary
        .exec(
            "CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY, qty INT);
             INSERT INTO shop.t VALUES (1, 5); INSERT INTO shop.t VALUES (2, 500);
             INSERT INTO shop.t VALUES (3, 7)",
        )
        .await;
    let url = target.url();
    let p = build(
        dir.path(),
        &primary,
        &start,
        &[
            (
                "skip",
                json!({"url": url, "database_map": {"shop": "shop_skip"}, "on_row_error": "skip"}),
                OnError::Stop,
            ),
            (
                "dl",
                json!({"url": url, "database_map": {"shop": "shop_dl"}}),
                OnError::DeadLetter,
            ),
        ],
    );
    let control = Control::default();
    let task = tokio::spawn(p.run(control.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ids(&target, "shop_skip.t").await != vec![1, 3]
        || ids(&target, "shop_dl.t").await != vec![1, 3]
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "rows 1 and 3 not applied"
        );
        assert!(!task.is_finished(), "pipeline stopped: {:?}", task.await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    control.shutdown.cancel();
    task.await.unwrap().expect("clean end");
    let dead = std::fs::read_to_string(dir.path().join("dl.dead.jsonl")).expect("dead letter file");
    assert!(dead.contains("500"), "{dead}");

    let dir2 = tempfile::tempdir().unwrap();
    let p = build(
        dir2.path(),
        &primary,
        &start,
        &[(
            "stop",
            json!({"url": url, "database_map": {"shop": "shop_stop"}}),
            OnError::Stop,
        )],
    );
    let err = tokio::time::timeout(Duration::from_secs(30), p.run(Control::default()))
        .await
        .expect("the pipeline stops")
        .expect_err("a refused row stops the pipeline");
    let msg = format!("{err:#}");
    eprintln!("{msg}");
    assert!(
        msg.contains("shop.t at ") && msg.contains("INSERT INTO `shop_stop`.`t`"),
        "{msg}"
    );
    assert!(msg.contains("4025") || msg.contains("CONSTRAINT"), "{msg}");
    assert_eq!(ids(&target, "shop_stop.t").await, vec![1]);
}
