//! Benchmark: MariaDB binlog → the real pipeline → embedded store, beside
//! the same binlog → blackhole and the python-mysql-replication baseline,
//! all in one run. Prints; never asserts times.
//!
//! Starts a throwaway MariaDB (the sluice-mysql test harness), writes the
//! workload of `binlog_bench` (N one-row insert transactions, then M
//! transactions of 10k rows, rows of ~200 B), and reads each binlog range:
//!
//! - `stream`: sluice-mysql's `ChangeStream` into a blackhole (no pipeline);
//! - `→ blackhole`: pipeline `type: mysql` → sink `blackhole`;
//! - `→ store`: pipeline `type: mysql` → sink `store` (topic per table, one
//!   partition, the default fsync: group commit every 20 ms, records
//!   acknowledged after the fsync that covers them);
//! - the baseline: python-mysql-replication (`is_mariadb=True`).
//!
//! The pipelines are built from YAML through the real component registry
//! (`sluice::components::registry()`, `Pipeline::from_config`) with the
//! store opened as the daemon opens it. Every measurement runs in its own
//! child process (this program re-executed), so CPU seconds and peak RSS
//! are that measurement's alone. A pipeline run ends when its sink has
//! acknowledged every row of the range.
//!
//! `cargo bench --bench binlog_store`. Environment: `BENCH_SINGLE`
//! (default 1000000), `BENCH_BATCHES` (default 100), `BENCH_BASELINE=0`
//! skips the baseline.

/// The allocator the `sluice` binary uses, so figures match the daemon.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;
#[path = "../crates/sluice-mysql/tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use sluice_core::Control;
use sluice_mysql::{ChangeStream, Position, StreamConfig};
use support::MariaDb;

use common::{env, usage};

struct Figures {
    rows: u64,
    secs: f64,
    cpu: f64,
    rss_kib: i64,
}

impl Figures {
    fn json(&self) -> String {
        serde_json::json!({
            "rows": self.rows, "seconds": self.secs,
            "cpu_seconds": self.cpu, "peak_rss_kb": self.rss_kib,
        })
        .to_string()
    }

    fn parse(text: &[u8]) -> Option<Figures> {
        let v: serde_json::Value = serde_json::from_slice(text.trim_ascii()).ok()?;
        Some(Figures {
            rows: v["rows"].as_u64()?,
            secs: v["seconds"].as_f64()?,
            cpu: v["cpu_seconds"].as_f64()?,
            rss_kib: v["peak_rss_kb"].as_i64()?,
        })
    }
}

fn print(name: &str, f: &Figures) {
    println!(
        "  {name:<28} {:>9} rows {:>8.2} s {:>10.0} rows/s  cpu {:>7.2} s  peak rss {:>7.1} MiB",
        f.rows,
        f.secs,
        f.rows as f64 / f.secs.max(1e-9),
        f.cpu,
        f.rss_kib as f64 / 1024.0
    );
}

/// One range to read: the server, where it starts and ends, its rows.
struct Range {
    port: u16,
    from: Position,
    to: Position,
    rows: u64,
}

impl Range {
    fn args(&self) -> Vec<String> {
        vec![
            self.port.to_string(),
            self.from.file.clone(),
            self.from.pos.to_string(),
            self.from.gtid.clone(),
            self.to.file.clone(),
            self.to.pos.to_string(),
            self.rows.to_string(),
        ]
    }

    fn from_args(a: &[String]) -> Range {
        let n = |i: usize| a[i].parse::<u64>().expect("number argument");
        Range {
            port: n(0) as u16,
            from: Position {
                file: a[1].clone(),
                pos: n(2),
                gtid: a[3].clone(),
            },
            to: Position {
                file: a[4].clone(),
                pos: n(5),
                gtid: String::new(),
            },
            rows: n(6),
        }
    }

    fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }
}

/// Child: the change stream alone, into a blackhole.
async fn child_stream(r: &Range) -> Figures {
    let opts = mysql_async::Opts::from_url(&r.url()).unwrap();
    let mut cfg = StreamConfig::new(opts, 4000);
    cfg.max_batch_rows = 4096;
    let t0 = Instant::now();
    let mut s = ChangeStream::start(cfg, Some(r.from.clone()))
        .await
        .unwrap();
    let to = (r.to.file.as_str(), r.to.pos);
    let mut rows = 0u64;
    while (s.position().file.as_str(), s.position().pos) < to {
        let b = s.next_batch().await.unwrap();
        rows += b
            .changes
            .iter()
            .filter(|c| (c.source.file.as_str(), c.source.pos) < to)
            .count() as u64;
    }
    let secs = t0.elapsed().as_secs_f64();
    let (cpu, rss_kib) = usage();
    Figures {
        rows,
        secs,
        cpu,
        rss_kib,
    }
}

/// Child: pipeline mysql → `sink` ("blackhole" or "store").
async fn child_pipeline(r: &Range, sink: &str) -> Figures {
    let dir = tempfile::Builder::new()
        .prefix("sluice-binlog-store-")
        .tempdir()
        .unwrap();
    let sink_yaml = match sink {
        "store" => "    type: store\n    topic: \"cdc.{database}.{table}\"\n",
        _ => "    type: blackhole\n    print_interval_secs: 0\n",
    };
    let yaml = format!(
        "data_dir: {data}\napi: {{ enabled: false }}\nsources:\n  db:\n    type: mysql\n    \
         url: \"{url}\"\n    server_id: 4100\n    snapshot: never\n    include_tables: [\"bench.t\"]\n    \
         start_gtid: \"{gtid}\"\nsinks:\n  out:\n    inputs: [db]\n{sink_yaml}",
        data = dir.path().join("data").display(),
        url = r.url(),
        gtid = r.from.gtid,
    );
    let t0 = Instant::now();
    let (pipeline, store) = common::pipeline_from_yaml(dir.path(), &yaml);
    let metrics = pipeline.metrics();
    let control = Control::default();
    let run = pipeline.run(control.clone());
    tokio::pin!(run);
    let mut done = 0;
    while done < r.rows {
        tokio::select! {
            end = &mut run => panic!("the pipeline ended early after {done} rows: {end:?}"),
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
        done = metrics
            .statuses()
            .iter()
            .find(|s| s.name == "out" && s.kind == "sink")
            .map_or(0, |s| s.records_out);
    }
    let secs = t0.elapsed().as_secs_f64();
    let (cpu, rss_kib) = usage();
    control.shutdown.cancel();
    if let Err(e) = run.await {
        panic!("pipeline failed: {e:#}");
    }
    if sink == "store" {
        let stored: u64 = store
            .topic("cdc.bench.t")
            .and_then(|t| t.stats())
            .map(|s| {
                s.partitions
                    .iter()
                    .map(|p| p.end_offset - p.first_offset)
                    .sum()
            })
            .unwrap_or(0);
        assert!(stored >= r.rows, "store holds {stored} of {} rows", r.rows);
    }
    Figures {
        rows: done,
        secs,
        cpu,
        rss_kib,
    }
}

fn run_child(mode: &str, r: &Range) -> Option<Figures> {
    let exe = std::env::current_exe().ok()?;
    let out = Command::new(exe)
        .arg("--child")
        .arg(mode)
        .args(r.args())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "{mode} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    Figures::parse(&out.stdout)
}

fn baseline(r: &Range) -> Option<(Figures, u64)> {
    let have = Command::new("python3")
        .args(["-c", "import pymysqlreplication"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        eprintln!("installing mysql-replication with pip …");
        let _ = Command::new("python3")
            .args(["-m", "pip", "install", "-q", "mysql-replication"])
            .status();
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/sluice-mysql/examples/binlog_baseline.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(r.port.to_string())
        .args([
            &r.from.file,
            &r.from.pos.to_string(),
            &r.to.file,
            &r.to.pos.to_string(),
            &r.from.gtid,
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("baseline failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(out.stdout.trim_ascii()).ok()?;
    Some((Figures::parse(&out.stdout)?, v["reconnects"].as_u64()?))
}

async fn position(db: &MariaDb) -> Position {
    let mut c = db.conn().await;
    let row: mysql_async::Row = c.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
    let gtid: String = c
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .unwrap()
        .unwrap();
    Position {
        file: row.get(0).unwrap(),
        pos: row.get(1).unwrap(),
        gtid,
    }
}

fn main() {
    sluice::allocator::tune();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    if args.first().map(String::as_str) == Some("--child") {
        let r = Range::from_args(&args[2..]);
        let f = rt.block_on(async {
            match args[1].as_str() {
                "stream" => child_stream(&r).await,
                sink => child_pipeline(&r, sink).await,
            }
        });
        println!("{}", f.json());
        return;
    }
    rt.block_on(parent());
}

async fn parent() {
    let single = env("BENCH_SINGLE", 1_000_000);
    let batches = env("BENCH_BATCHES", 100);
    let run_baseline = env("BENCH_BASELINE", 1) != 0;
    let db = MariaDb::start_with(&["--innodb-log-file-size=256M"]);
    db.exec(
        "CREATE DATABASE bench; CREATE TABLE bench.t (id BIGINT PRIMARY KEY, a INT NOT NULL, \
         b VARCHAR(120) NOT NULL, c DATETIME(6) NOT NULL, d DECIMAL(12,2) NOT NULL, e DOUBLE NOT NULL); \
         CREATE PROCEDURE bench.single(n INT) BEGIN DECLARE i INT DEFAULT 0; \
           WHILE i < n DO INSERT INTO bench.t VALUES (i, i, REPEAT('x', 100), NOW(6), i / 7, i * 1.5); \
           SET i = i + 1; END WHILE; END",
    )
    .await;
    let p0 = position(&db).await;
    let t = Instant::now();
    db.exec(&format!("CALL bench.single({single})")).await;
    let p1 = position(&db).await;
    eprintln!(
        "wrote {single} single-row transactions in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    for b in 0..batches {
        let base = 10_000_000 + b * 10_000;
        db.exec(&format!(
            "INSERT INTO bench.t SELECT {base} + seq, seq, REPEAT('y', 100), NOW(6), seq / 7, seq * 1.5 \
             FROM bench.seq_1_to_10000"
        ))
        .await;
    }
    let p2 = position(&db).await;
    eprintln!(
        "wrote {batches} transactions of 10k rows in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;

    println!("binlog → records, MariaDB 10.11, rows of ~200 B; each line its own process");
    let ranges = [
        (format!("{single} x 1-row transactions"), &p0, &p1, single),
        (
            format!("{batches} x 10k-row transactions"),
            &p1,
            &p2,
            batches * 10_000,
        ),
    ];
    for (name, from, to, rows) in ranges {
        println!("{name}:");
        let r = Range {
            port: db.port,
            from: from.clone(),
            to: to.clone(),
            rows,
        };
        let mut store_rate = None;
        for (mode, label) in [
            ("stream", "sluice stream → blackhole"),
            ("blackhole", "sluice pipeline → blackhole"),
            ("store", "sluice pipeline → store"),
        ] {
            match run_child(mode, &r) {
                Some(f) => {
                    print(label, &f);
                    if mode == "store" {
                        store_rate = Some((f.rows as f64 / f.secs, f.cpu / f.rows.max(1) as f64));
                    }
                }
                None => println!("  {label}: failed"),
            }
        }
        if run_baseline {
            match baseline(&r) {
                Some((b, reconnects)) => {
                    print("python-mysql-replication", &b);
                    if reconnects > 0 {
                        println!("  (baseline reconnected {reconnects} times and re-read rows)");
                    }
                    if let Some((rate, cpu_row)) = store_rate {
                        println!(
                            "  → store vs baseline: {:.1}x rows/s, {:.1}x less CPU per row",
                            rate / (b.rows as f64 / b.secs),
                            (b.cpu / b.rows.max(1) as f64) / cpu_row
                        );
                    }
                }
                None => println!("  baseline unavailable"),
            }
        }
    }
}
