//! Benchmark: replica apply against native MariaDB replication, and
//! `verify` on 1M rows. Prints figures; never asserts times.
//!
//! Starts a primary MariaDB with binlog and writes N one-row insert
//! transactions then M transactions of 10k rows (rows of ~200 B). Then,
//! on the same binlog range: native replication catch-up (a second
//! `mariadbd` as replica: CHANGE MASTER TO …; START SLAVE) with
//! `slave_parallel_threads=0` and `=4`; sluice's direct apply (mysql
//! source → apply sink in one pipeline) with `parallelism: 1` and `4`;
//! apply through a store topic (binlog → `store` sink → topic → `store`
//! source → apply, one pipeline built from YAML through the daemon's
//! component registry). Then the end-to-end lag at a paced 5k rows/s.
//! Last, `verify` of a 1M-row table against an identical copy.
//!
//! `cargo bench --bench apply`
//! Environment: `BENCH_SINGLE` (default 200000), `BENCH_BATCHES` (default
//! 100), `BENCH_VERIFY_ROWS` (default 1000000), `BENCH_TEXT` (set: direct
//! apply with `prepared_statements: false`), `BENCH_BATCH_EVENTS` (the
//! sinks' `batch.max_events`, default 20000), `BENCH_QUICK` (set: native
//! single-threaded and sluice `parallelism: 1` only; `store`: native
//! single-threaded and apply through a store topic only).

/// The allocator the `sluice` binary uses, so figures match the daemon.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../crates/sluice-mysql/tests/apply_common/mod.rs"]
mod apply_common;
mod common;
#[path = "../crates/sluice-mysql/tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::json;
use support::MariaDb;

use common::{env, usage};

async fn count(db: &MariaDb, table: &str) -> u64 {
    let mut c = db.conn().await;
    let n: Option<u64> = c
        .query_first(format!("SELECT COUNT(*) FROM {table}"))
        .await
        .ok()
        .flatten();
    c.disconnect().await.ok();
    n.unwrap_or(0)
}

/// Waits until `table` holds `total` rows: polls for the row with id
/// `last` (cheap), then confirms with COUNT(*) (a full scan, so rarely:
/// polling it would load the server being measured).
async fn wait_rows(db: &MariaDb, table: &str, total: u64, last: u64) {
    let deadline = Instant::now() + Duration::from_secs(3600);
    let mut c = db.conn().await;
    loop {
        assert!(Instant::now() < deadline, "{table} never caught up");
        let there: Option<u64> = c
            .query_first(format!("SELECT 1 FROM {table} WHERE id = {last}"))
            .await
            .ok()
            .flatten();
        if there.is_some() && count(db, table).await >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.disconnect().await.ok();
}

/// CPU seconds (user + system) a server process used so far.
fn server_cpu(db: &MariaDb) -> f64 {
    let pid = std::fs::read_to_string(db.dir().join("mysqld.pid")).unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    // Fields after the command name `(…)`: utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

async fn native(
    primary: &MariaDb,
    start: &(String, u64),
    threads: u32,
    total: u64,
    last: u64,
) -> f64 {
    let t = format!("--slave-parallel-threads={threads}");
    let replica = MariaDb::start_with(&["--skip-log-bin", "--server-id=9", &t]);
    replica
        .exec(&format!(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='root', \
             MASTER_LOG_FILE='{}', MASTER_LOG_POS={}",
            primary.port, start.0, start.1
        ))
        .await;
    let (t0, cpu0, pcpu0) = (Instant::now(), server_cpu(&replica), server_cpu(primary));
    replica.exec("START SLAVE").await;
    wait_rows(&replica, "bench.t", total, last).await;
    let s = t0.elapsed().as_secs_f64();
    println!(
        "native replication, slave_parallel_threads={threads}: {total} rows in {s:.2} s = {:.0} rows/s \
         (replica {:.1} CPU s, primary {:.1} CPU s)",
        total as f64 / s,
        server_cpu(&replica) - cpu0,
        server_cpu(primary) - pcpu0
    );
    s
}

async fn sluice(
    primary: &MariaDb,
    target: &MariaDb,
    start: &(String, u64),
    par: usize,
    total: u64,
    last: u64,
) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("bench_p{par}");
    let sinks = [(
        "replica",
        "mysql",
        json!({"url": target.url(), "database_map": {"bench": &db}, "parallelism": par, "consumer": &db,
            "prepared_statements": std::env::var("BENCH_TEXT").is_err()}),
    )];
    let (cpu0, _) = usage();
    let (tcpu0, pcpu0) = (server_cpu(target), server_cpu(primary));
    let p = bench_pipeline(dir.path(), primary, start, &sinks);
    let t0 = Instant::now();
    let (control, task) = apply_common::spawn(p);
    wait_rows(target, &format!("{db}.t"), total, last).await;
    let s = t0.elapsed().as_secs_f64();
    let (tcpu, pcpu) = (server_cpu(target) - tcpu0, server_cpu(primary) - pcpu0);
    control.shutdown.cancel();
    task.await.unwrap().unwrap();
    let (cpu1, rss) = usage();
    let mut c = target.conn().await;
    let deadlocks: Option<(String, u64)> = c
        .query_first("SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'")
        .await
        .ok()
        .flatten();
    println!(
        "sluice direct apply, parallelism {par}: {total} rows in {s:.2} s = {:.0} rows/s, {:.1} CPU s \
         (target {tcpu:.1} CPU s, primary {pcpu:.1} CPU s), peak RSS {} MiB (target deadlocks so far: {})",
        total as f64 / s,
        cpu1 - cpu0,
        rss / 1024,
        deadlocks.map_or(0, |d| d.1)
    );
    s
}

/// Apply through an embedded-store topic: the pipeline of
/// `pipelines/binlog-sync.yaml` (binlog → store topic with one partition
/// → store source → apply), from YAML through the real registry.
async fn through_store(
    primary: &MariaDb,
    target: &MariaDb,
    start: &(String, u64),
    total: u64,
    last: u64,
) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "data_dir: {data}\napi: {{ enabled: false }}\n\
         sources:\n  primary:\n    type: mysql\n    url: \"{src}\"\n    server_id: 79\n    \
         snapshot: never\n    include_tables: [\"bench.*\"]\n    start_file: \"{file}\"\n    \
         start_pos: {pos}\n  cdc:\n    type: store\n    topic: cdc.bench\n    group: replica\n\
         sinks:\n  topic:\n    type: store\n    inputs: [primary]\n    topic: \"cdc.{{database}}\"\n    \
         partitions: 1\n  replica:\n    type: mysql\n    inputs: [cdc]\n    url: \"{dst}\"\n    \
         database_map: {{ bench: bench_store }}\n    consumer: bench_store\n",
        data = dir.path().join("data").display(),
        src = primary.url(),
        file = start.0,
        pos = start.1,
        dst = target.url(),
    );
    let (pipeline, _store) = common::pipeline_from_yaml(dir.path(), &yaml);
    let (cpu0, _) = usage();
    let (tcpu0, pcpu0) = (server_cpu(target), server_cpu(primary));
    let t0 = Instant::now();
    let (control, task) = apply_common::spawn(pipeline);
    wait_rows(target, "bench_store.t", total, last).await;
    let s = t0.elapsed().as_secs_f64();
    let (tcpu, pcpu) = (server_cpu(target) - tcpu0, server_cpu(primary) - pcpu0);
    control.shutdown.cancel();
    task.await.unwrap().unwrap();
    let (cpu1, rss) = usage();
    println!(
        "sluice apply through a store topic, parallelism 1: {total} rows in {s:.2} s = {:.0} rows/s, \
         {:.1} CPU s (target {tcpu:.1} CPU s, primary {pcpu:.1} CPU s), peak RSS {} MiB",
        total as f64 / s,
        cpu1 - cpu0,
        rss / 1024,
    );
    s
}

fn bench_pipeline(
    dir: &std::path::Path,
    primary: &MariaDb,
    start: &(String, u64),
    sinks: &[(&str, &str, serde_json::Value)],
) -> sluice_core::Pipeline {
    use sluice_core::component::{BuildContext, Resources, SinkFactory, SourceFactory};
    use sluice_core::config::{ComponentOptions, QueueConfig};
    let mut p = sluice_core::Pipeline::new(dir);
    let res = Resources::default();
    let cx = BuildContext {
        name: "primary",
        data_dir: dir,
        resources: &res,
    };
    let src = sluice_mysql::MysqlSourceFactory
        .build(
            &cx,
            &ComponentOptions::from_json(json!({
                "url": primary.url(), "server_id": 78, "include_tables": ["bench.*", "lat.*"],
                "snapshot": "never", "start_file": start.0, "start_pos": start.1,
            })),
        )
        .unwrap();
    p.add_source("primary", "mysql", src, QueueConfig::default());
    for (name, kind, opts) in sinks {
        let cx = BuildContext {
            name,
            data_dir: dir,
            resources: &res,
        };
        let sink = sluice_mysql::apply::MysqlApplyFactory
            .build(&cx, &ComponentOptions::from_json(opts.clone()))
            .unwrap();
        let mut s = apply_common::sink_settings("primary");
        s.batch.max_events = common::env("BENCH_BATCH_EVENTS", 20_000) as usize;
        s.batch.max_bytes = 64 << 20;
        s.batch.timeout_ms = 5;
        p.add_sink(name, kind, sink, s);
    }
    p
}

/// End-to-end lag (source commit → row in the target) at a paced 5k
/// one-row transactions per second for 5 s: the target's table has an
/// extra `applied` column defaulting to the insert time.
async fn lag(primary: &MariaDb, target: &MariaDb) {
    primary
        .exec("CREATE DATABASE lat; CREATE TABLE lat.t (id BIGINT PRIMARY KEY, at DATETIME(6), pad VARCHAR(100))")
        .await;
    target
        .exec(
            "CREATE DATABASE lat_r; CREATE TABLE lat_r.t (id BIGINT PRIMARY KEY, at DATETIME(6), \
             pad VARCHAR(100), applied DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))",
        )
        .await;
    let start = apply_common::master_pos(primary).await;
    let dir = tempfile::tempdir().unwrap();
    let sinks = [(
        "lag",
        "mysql",
        json!({"url": target.url(), "database_map": {"lat": "lat_r"}, "consumer": "lag"}),
    )];
    let (control, task) = apply_common::spawn(bench_pipeline(dir.path(), primary, &start, &sinks));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut c = primary.conn().await;
    let (per_tick, ticks) = (50u64, 500u64);
    let t0 = Instant::now();
    for t in 0..ticks {
        let mut sql = String::new();
        for i in 0..per_tick {
            let id = t * per_tick + i;
            sql.push_str(&format!(
                "INSERT INTO lat.t VALUES ({id}, NOW(6), REPEAT('p', 100));"
            ));
        }
        c.query_drop(sql).await.unwrap();
        let due = t0 + Duration::from_millis(10 * (t + 1));
        tokio::time::sleep_until(due.into()).await;
    }
    let total = per_tick * ticks;
    wait_rows(target, "lat_r.t", total, total - 1).await;
    control.shutdown.cancel();
    task.await.unwrap().unwrap();
    let mut tc = target.conn().await;
    let mut lags: Vec<i64> = tc
        .query("SELECT TIMESTAMPDIFF(MICROSECOND, at, applied) FROM lat_r.t")
        .await
        .unwrap();
    lags.sort_unstable();
    let p = |q: f64| lags[((lags.len() as f64 - 1.0) * q) as usize] as f64 / 1000.0;
    println!(
        "end-to-end lag at {:.0} rows/s ({total} one-row transactions): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        total as f64 / t0.elapsed().as_secs_f64(),
        p(0.5),
        p(0.99),
        p(1.0)
    );
}

const TABLE: &str = "(id BIGINT PRIMARY KEY, a INT, s VARCHAR(120), at DATETIME(6), \
    d DECIMAL(12,2), f DOUBLE)";

#[tokio::main]
async fn main() {
    sluice::allocator::tune();
    let single = env("BENCH_SINGLE", 200_000);
    let batches = env("BENCH_BATCHES", 100);
    let verify_rows = env("BENCH_VERIFY_ROWS", 1_000_000);
    let total = single + batches * 10_000;
    let primary = apply_common::primary();
    let start = apply_common::master_pos(&primary).await;
    let t0 = Instant::now();
    primary
        .exec(&format!(
            "CREATE DATABASE bench; CREATE TABLE bench.t {TABLE};
             CREATE PROCEDURE bench.one(n INT) BEGIN DECLARE i INT DEFAULT 0;
               WHILE i < n DO
                 INSERT INTO bench.t VALUES (i, i, REPEAT('x', 120), NOW(6), i / 100, i * 1.5);
                 SET i = i + 1;
               END WHILE; END"
        ))
        .await;
    primary.exec(&format!("CALL bench.one({single})")).await;
    for b in 0..batches {
        let base = 10_000_000 + b * 10_000;
        primary
            .exec(&format!(
                "INSERT INTO bench.t SELECT {base} + seq, seq, REPEAT('y', 120), NOW(6), seq / 100, seq * 1.5 \
                 FROM bench.seq_1_to_10000"
            ))
            .await;
    }
    println!(
        "workload: {single} one-row transactions + {batches} x 10k-row transactions = {total} rows ({:.1} s to write)",
        t0.elapsed().as_secs_f64()
    );
    let last = 10_000_000 + batches * 10_000;
    let last = if batches == 0 { single - 1 } else { last };
    let n0 = native(&primary, &start, 0, total, last).await;
    let target = apply_common::target();
    match std::env::var("BENCH_QUICK").as_deref() {
        Ok("store") => {
            let st = through_store(&primary, &target, &start, total, last).await;
            println!(
                "ratio vs native single-threaded: through store {:.2}x",
                n0 / st
            );
            return;
        }
        Ok(_) => {
            let s1 = sluice(&primary, &target, &start, 1, total, last).await;
            println!("ratio vs native single-threaded: sluice p1 {:.2}x", n0 / s1);
            return;
        }
        Err(_) => {}
    }
    let n4 = native(&primary, &start, 4, total, last).await;
    let s1 = sluice(&primary, &target, &start, 1, total, last).await;
    let s4 = sluice(&primary, &target, &start, 4, total, last).await;
    let st = through_store(&primary, &target, &start, total, last).await;
    println!(
        "ratios vs native single-threaded: sluice p1 {:.2}x, sluice p4 {:.2}x, through store {:.2}x, \
         native 4 threads {:.2}x",
        n0 / s1,
        n0 / s4,
        n0 / st,
        n0 / n4
    );
    lag(&primary, &target).await;
    // verify on a big table, identical on both sides.
    let fill = format!(
        "CREATE DATABASE IF NOT EXISTS vbig; CREATE TABLE vbig.t {TABLE};
         INSERT INTO vbig.t SELECT seq, seq, REPEAT('z', 120), '2024-01-01 00:00:00' + INTERVAL seq SECOND,
           seq / 100, seq * 1.5 FROM vbig.seq_1_to_{verify_rows}"
    );
    primary.exec(&fill).await;
    target.exec(&fill).await;
    let mut opts = sluice_mysql::verify::VerifyOptions::new(primary.url(), target.url());
    opts.tables = vec!["vbig.*".into()];
    let (cpu0, _) = usage();
    let r = sluice_mysql::verify::run(opts).await.unwrap();
    let (cpu1, _) = usage();
    let mut out = Vec::new();
    r.print(&mut out, 10).unwrap();
    print!("{}", String::from_utf8_lossy(&out));
    println!(
        "verify {verify_rows} rows: {:.2} s ({:.1} CPU s in sluice), equal: {}",
        r.elapsed.as_secs_f64(),
        cpu1 - cpu0,
        r.is_equal()
    );
}
