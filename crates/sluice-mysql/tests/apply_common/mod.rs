//! Shared by the apply / verify tests and the apply benchmark: a primary
//! MariaDB with binlog and a target MariaDB without (both from
//! `support`), a pipeline `type: mysql` source → apply sink(s) built
//! in-process, a seeded random workload (inserts, updates including
//! primary-key changes, deletes, DDL, an insert-only ledger that proves
//! exactly-once), and a wait-until-verify-passes helper. Touches only the
//! servers it starts (and PostgreSQL databases it creates).
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use serde_json::{json, Value};
use sluice_core::component::{BuildContext, Resources, SinkFactory, SourceFactory};
use sluice_core::config::{BatchConfig, ComponentOptions, QueueConfig, RetryConfig};
use sluice_core::{Control, Pipeline, SinkSettings};
use sluice_mysql::apply::{MysqlApplyFactory, PostgresApplyFactory};
use sluice_mysql::verify::{self, VerifyOptions, VerifyReport};
use sluice_mysql::MysqlSourceFactory;

use crate::support::MariaDb;

/// The binlog coordinates of the primary now.
pub async fn master_pos(db: &MariaDb) -> (String, u64) {
    let mut c = db.conn().await;
    let r: Option<(String, u64)> = c
        .query_first("SELECT File, Position FROM (SHOW MASTER STATUS) x")
        .await
        .ok()
        .flatten();
    let r = match r {
        Some(r) => r,
        None => {
            let row: mysql_async::Row = c.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
            (row.get(0).unwrap(), row.get(1).unwrap())
        }
    };
    c.disconnect().await.ok();
    r
}

static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A primary MariaDB with binlog (servers start one at a time:
/// concurrent `mariadb-install-db` runs collide in /tmp).
pub fn primary() -> MariaDb {
    let _g = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    MariaDb::start()
}

/// A target MariaDB (no binlog).
pub fn target() -> MariaDb {
    let _g = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    MariaDb::start_with(&["--skip-log-bin", "--server-id=2"])
}

pub fn sink_settings(input: &str) -> SinkSettings {
    SinkSettings {
        inputs: vec![input.to_string()],
        batch: BatchConfig {
            max_events: 2000,
            max_bytes: 8 << 20,
            timeout_ms: 20,
        },
        retry: RetryConfig {
            initial_backoff_ms: 20,
            max_backoff_ms: 300,
            max_attempts: None,
        },
        ..SinkSettings::default()
    }
}

/// A pipeline: the primary's binlog from `start` → every sink in `sinks`
/// (name, kind `mysql`/`postgres`, options).
pub fn pipeline(
    dir: &Path,
    primary: &MariaDb,
    start: &(String, u64),
    sinks: &[(&str, &str, Value)],
) -> Pipeline {
    let source = json!({
        "url": primary.url(), "server_id": 77, "include_tables": ["shop.*"],
        "snapshot": "never", "start_file": start.0, "start_pos": start.1,
        "heartbeat_ms": 500, "reconnect_max_ms": 500, "batch_rows": 2000
    });
    pipeline_with(dir, source, sinks, Duration::from_millis(50))
}

/// A pipeline: a `type: mysql` source with `source` options → every sink
/// in `sinks`, checkpointing every `checkpoint`.
pub fn pipeline_with(
    dir: &Path,
    source: Value,
    sinks: &[(&str, &str, Value)],
    checkpoint: Duration,
) -> Pipeline {
    let mut p = Pipeline::new(dir)
        .with_checkpoint_interval(checkpoint)
        .with_shutdown_timeout(Duration::from_secs(60));
    let res = Resources::default();
    let cx = BuildContext {
        name: "primary",
        data_dir: dir,
        resources: &res,
    };
    let src = MysqlSourceFactory
        .build(&cx, &ComponentOptions::from_json(source))
        .expect("source");
    p.add_source("primary", "mysql", src, QueueConfig::default());
    for (name, kind, opts) in sinks {
        let cx = BuildContext {
            name,
            data_dir: dir,
            resources: &res,
        };
        let o = ComponentOptions::from_json(opts.clone());
        let sink = match *kind {
            "postgres" => PostgresApplyFactory.build(&cx, &o),
            _ => MysqlApplyFactory.build(&cx, &o),
        }
        .expect("sink");
        p.add_sink(name, kind, sink, sink_settings("primary"));
    }
    p
}

/// A tiny seeded generator (xorshift).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub const SCHEMA: &str = "CREATE DATABASE shop;
CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(40) CHARACTER SET utf8mb4,
  qty INT NOT NULL, price DECIMAL(10,2), at DATETIME(6), ts TIMESTAMP(3) NULL,
  data VARBINARY(16), f DOUBLE, d DATE, t TIME(2));
CREATE TABLE shop.pairs (a INT, b VARCHAR(10), v INT, PRIMARY KEY (a, b));
CREATE TABLE shop.nopk (msg VARCHAR(20), n INT);
CREATE TABLE shop.ledger (seq BIGINT NOT NULL, note VARCHAR(20))";

/// One random transaction (`seq` numbers it in the ledger).
pub async fn random_txn(
    c: &mut mysql_async::Conn,
    rng: &mut Rng,
    seq: u64,
) -> mysql_async::Result<()> {
    let mut sql = String::from("START TRANSACTION;");
    for _ in 0..1 + rng.below(4) {
        let id = 1 + rng.below(300);
        let s = match rng.below(10) {
            0..=2 => format!(
                "INSERT INTO shop.items (id, name, qty, price, at, ts, data, f, d, t) VALUES \
                 ({id}, 'n{}''é', {}, {}.{:02}, '2024-01-0{} 10:00:00.{:06}', '2024-02-03 04:05:06.{:03}', \
                 X'{:08x}', {}.25, '2023-12-31', '-01:02:03.{:02}') \
                 ON DUPLICATE KEY UPDATE qty = qty + 1, name = VALUES(name)",
                rng.below(1000), rng.below(100), rng.below(10000), rng.below(100),
                1 + rng.below(9), rng.below(1_000_000), rng.below(1000), rng.next() as u32,
                rng.below(1000), rng.below(100)
            ),
            3 => format!("UPDATE shop.items SET qty = qty + 1, data = NULL WHERE id = {id}"),
            4 => format!(
                "UPDATE IGNORE shop.items SET id = {} WHERE id = {id}",
                300 + rng.below(300)
            ),
            5 => format!("DELETE FROM shop.items WHERE id = {id}"),
            6 => format!(
                "INSERT INTO shop.pairs VALUES ({}, 'k{}', {}) ON DUPLICATE KEY UPDATE v = v + 1",
                rng.below(20), rng.below(5), rng.below(100)
            ),
            7 => format!("DELETE FROM shop.pairs WHERE a = {}", rng.below(20)),
            8 => format!("INSERT INTO shop.nopk VALUES ('m{}', {})", rng.below(5), rng.below(3)),
            _ => format!("DELETE FROM shop.nopk WHERE msg = 'm{}' LIMIT 1", rng.below(5)),
        };
        sql.push_str(&s);
        sql.push(';');
    }
    sql.push_str(&format!(
        "INSERT INTO shop.ledger VALUES ({seq}, 'tx'); COMMIT"
    ));
    c.query_drop(sql).await
}

/// DDL mixed into the workload at step `i` (None: no DDL at this step).
pub fn ddl_at(i: u64) -> Option<&'static str> {
    match i {
        150 => Some("ALTER TABLE shop.items ADD COLUMN note VARCHAR(20) DEFAULT 'x'"),
        300 => Some("CREATE TABLE shop.extra (id INT PRIMARY KEY, v VARCHAR(10))"),
        310 => Some("INSERT INTO shop.extra VALUES (1, 'a'), (2, 'b'), (3, 'c')"),
        350 => Some("RENAME TABLE shop.extra TO shop.extra2"),
        360 => Some("INSERT INTO shop.extra2 VALUES (4, 'd')"),
        400 => Some("TRUNCATE TABLE shop.extra2"),
        410 => Some("INSERT INTO shop.extra2 VALUES (5, 'e')"),
        450 => Some("ALTER TABLE shop.pairs DROP COLUMN v"),
        _ => None,
    }
}

/// Runs `n` random transactions (with the DDL of [`ddl_at`]) from `from`.
pub async fn workload(db: &MariaDb, seed: u64, from: u64, n: u64, pause: Duration) {
    let mut c = db.conn().await;
    let mut rng = Rng(seed.max(1));
    let mut dropped_v = false;
    for i in from..from + n {
        if let Some(ddl) = ddl_at(i) {
            c.query_drop(ddl)
                .await
                .unwrap_or_else(|e| panic!("{ddl}: {e}"));
            dropped_v |= i == 450;
        }
        let r = random_txn(&mut c, &mut rng, i).await;
        if let Err(e) = r {
            // After DROP COLUMN v the pairs statements may fail; retry plain.
            assert!(dropped_v, "workload step {i}: {e}");
            c.query_drop("ROLLBACK").await.ok();
            c.query_drop(format!("INSERT INTO shop.ledger VALUES ({i}, 'tx')"))
                .await
                .unwrap();
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    c.disconnect().await.ok();
}

pub fn verify_opts(src: &MariaDb, target_url: &str, to_db: &str) -> VerifyOptions {
    let mut o = VerifyOptions::new(src.url(), target_url);
    o.tables = vec!["shop.*".into()];
    o.database_map.insert("shop".into(), to_db.into());
    o.chunk_rows = 100;
    o
}

/// Polls `verify` until it passes; returns the last report.
pub async fn wait_equal(opts: &VerifyOptions, timeout: Duration) -> VerifyReport {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let r = verify::run(opts.clone()).await.expect("verify runs");
        if r.is_equal() || tokio::time::Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub fn printed(r: &VerifyReport) -> String {
    let mut out = Vec::new();
    r.print(&mut out, 20).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Ledger rows in `db` on a MySQL-protocol server: (rows, distinct seqs).
pub async fn ledger(db: &MariaDb, name: &str) -> (u64, u64) {
    let mut c = db.conn().await;
    let r: (u64, u64) = c
        .query_first(format!(
            "SELECT COUNT(*), COUNT(DISTINCT seq) FROM {name}.ledger"
        ))
        .await
        .unwrap()
        .unwrap();
    c.disconnect().await.ok();
    r
}

/// Runs a pipeline until `stop` fires, then shuts it down gracefully.
pub fn spawn(p: Pipeline) -> (Control, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let control = Control::default();
    let task = tokio::spawn(p.run(control.clone()));
    (control, task)
}

/// A fresh PostgreSQL database on 127.0.0.1:5432; returns its URL.
pub async fn pg_database(prefix: &str) -> String {
    let name = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        Rng(sluice_core::record::now_ms() as u64 | 1).next() % 100_000
    );
    let (client, conn) = tokio_postgres::connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=postgres",
        tokio_postgres::NoTls,
    )
    .await
    .expect("PostgreSQL on 127.0.0.1:5432");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    format!("postgres://postgres@127.0.0.1:5432/{name}")
}

/// Runs statements on a PostgreSQL database.
pub async fn pg_exec(url: &str, sql: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}
