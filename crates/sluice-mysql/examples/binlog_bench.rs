//! Benchmark: decode a MariaDB binlog into row-change records (blackhole).
//!
//! Starts a throwaway MariaDB (the test harness), writes N single-row
//! insert transactions and M transactions of 10k rows, then reads each
//! range with sluice's change stream and with python-mysql-replication
//! (the baseline, installed with pip when missing), printing rows/s, CPU
//! seconds and peak RSS for both. Never asserts times.
//!
//! `cargo run --release -p sluice-mysql --example binlog_bench`
//! Then: commit → record latency at a paced 5k transactions/s (p50/p99),
//! and a snapshot of 10 tables (rows/s; baseline `mariadb-dump
//! --single-transaction` of the same tables to /dev/null).
//!
//! Environment: `BENCH_SINGLE` (default 1000000), `BENCH_BATCHES`
//! (default 100), `BENCH_BASELINE=0` to skip the baseline,
//! `BENCH_LATENCY_TX` (default 20000), `BENCH_SNAPSHOT_ROWS` per table
//! (default 100000).

/// The allocator the `sluice` binary uses, so figures match the daemon.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use sluice_mysql::snapshot::Snapshot;
use sluice_mysql::{ChangeStream, Position, StreamConfig};
use support::MariaDb;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (user + system CPU seconds, peak RSS in KiB) of this process.
fn usage() -> (f64, i64) {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime) + secs(ru.ru_stime), ru.ru_maxrss)
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

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

struct Figures {
    rows: u64,
    secs: f64,
    cpu: f64,
    rss_kib: i64,
}

async fn sluice(db: &MariaDb, from: &Position, to: &Position) -> Figures {
    let mut cfg = StreamConfig::new(mysql_async::Opts::from_url(&db.url()).unwrap(), 4000);
    cfg.max_batch_rows = 4096;
    let (cpu0, _) = usage();
    let t0 = Instant::now();
    let mut s = ChangeStream::start(cfg, Some(from.clone())).await.unwrap();
    let mut rows = 0u64;
    while (s.position().file.as_str(), s.position().pos) < (to.file.as_str(), to.pos) {
        let b = s.next_batch().await.unwrap();
        // Count only the range's rows (a batch may run past its end).
        rows += b
            .changes
            .iter()
            .filter(|c| (c.source.file.as_str(), c.source.pos) < (to.file.as_str(), to.pos))
            .count() as u64;
        drop(b); // blackhole
    }
    let secs = t0.elapsed().as_secs_f64();
    let (cpu1, rss) = usage();
    Figures {
        rows,
        secs,
        cpu: cpu1 - cpu0,
        rss_kib: rss,
    }
}

fn baseline(db: &MariaDb, from: &Position, to: &Position) -> Option<Figures> {
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
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/binlog_baseline.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(db.port.to_string())
        .args([
            &from.file,
            &from.pos.to_string(),
            &to.file,
            &to.pos.to_string(),
            &from.gtid,
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("baseline failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(out.stdout.trim_ascii()).ok()?;
    if v["reconnects"].as_u64().unwrap_or(0) > 0 {
        println!(
            "  (baseline reconnected {} times and re-read rows)",
            v["reconnects"]
        );
    }
    Some(Figures {
        rows: v["rows"].as_u64()?,
        secs: v["seconds"].as_f64()?,
        cpu: v["cpu_seconds"].as_f64()?,
        rss_kib: v["peak_rss_kb"].as_i64()?,
    })
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

#[tokio::main]
async fn main() {
    // The daemon's allocator setting (src/allocator.rs): purge delay 250 ms.
    // SAFETY: sets a plain integer option.
    unsafe { libmimalloc_sys::mi_option_set(15, 250) };
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

    println!("binlog → records (blackhole), MariaDB 10.11, rows of ~200 B");
    for (name, from, to) in [
        (format!("{single} x 1-row transactions"), &p0, &p1),
        (format!("{batches} x 10k-row transactions"), &p1, &p2),
    ] {
        println!("{name}:");
        let s = sluice(&db, from, to).await;
        print("sluice", &s);
        if run_baseline {
            match baseline(&db, from, to) {
                Some(b) => {
                    print("python-mysql-replication", &b);
                    println!(
                        "  ratio: {:.1}x rows/s, {:.1}x less CPU per row",
                        (s.rows as f64 / s.secs) / (b.rows as f64 / b.secs),
                        (b.cpu / b.rows.max(1) as f64) / (s.cpu / s.rows.max(1) as f64)
                    );
                }
                None => println!("  baseline unavailable"),
            }
        }
    }
    latency(&db, env("BENCH_LATENCY_TX", 20_000), 5_000).await;
    let rows = env("BENCH_SNAPSHOT_ROWS", 100_000);
    snapshot(&db, 10, rows, 1).await;
    snapshot_again(&db, 10, rows, 2).await;
}

/// Commit → record latency: a writer commits one-row transactions at
/// `rate`/s and notes when each commit returned; the reader notes when each
/// record arrived. Latency = arrival − commit return (0 when the record
/// arrived before the client saw its commit acknowledged).
async fn latency(db: &MariaDb, n: u64, rate: u64) {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;
    db.exec("CREATE TABLE bench.lat (id BIGINT PRIMARY KEY, sent BIGINT NOT NULL)")
        .await;
    let mut cfg = StreamConfig::new(mysql_async::Opts::from_url(&db.url()).unwrap(), 4001);
    cfg.max_batch_rows = 4096;
    let mut s = ChangeStream::start(cfg, None).await.unwrap();
    // Warm up: MariaDB scans the binlog file to find a GTID start position;
    // measure the steady state, after a probe row has come through.
    db.exec("INSERT INTO bench.lat VALUES (-1, 0)").await;
    let warm = Instant::now();
    while !s
        .next_batch()
        .await
        .unwrap()
        .changes
        .iter()
        .any(|c| c.source.table == "lat")
    {}
    println!(
        "stream start to first record: {:.0} ms",
        warm.elapsed().as_secs_f64() * 1000.0
    );
    let committed: Arc<Vec<AtomicI64>> = Arc::new((0..n).map(|_| AtomicI64::new(0)).collect());
    let url = db.url();
    let done = committed.clone();
    let writer = tokio::spawn(async move {
        let mut c = mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap())
            .await
            .unwrap();
        let stmt = c.prep("INSERT INTO bench.lat VALUES (?, ?)").await.unwrap();
        let start = Instant::now();
        for i in 0..n {
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
            c.exec_drop(&stmt, (i, now_us())).await.unwrap();
            done[i as usize].store(now_us(), Ordering::Relaxed);
        }
    });
    let mut arrived = vec![0i64; n as usize];
    let mut got = 0u64;
    while got < n {
        let b = s.next_batch().await.unwrap();
        let now = now_us();
        for c in &b.changes {
            if let Some(id) = c
                .after
                .as_ref()
                .and_then(|a| a.get("id"))
                .and_then(|v| v.as_u64())
            {
                if let Some(slot) = arrived.get_mut(id as usize) {
                    *slot = now;
                    got += 1;
                }
            }
        }
    }
    writer.await.unwrap();
    let mut lat: Vec<f64> = arrived
        .iter()
        .zip(committed.iter())
        .map(|(a, c)| (a - c.load(Ordering::Relaxed)).max(0) as f64 / 1000.0)
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "commit → record latency at {rate} tx/s ({n} tx): p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        p(0.5),
        p(0.99),
        p(1.0)
    );
}

/// The same tables read again with more readers.
async fn snapshot_again(db: &MariaDb, tables: usize, rows: u64, parallelism: usize) {
    read_snapshot(db, tables, rows, parallelism).await;
}

async fn snapshot(db: &MariaDb, tables: usize, rows: u64, parallelism: usize) {
    create_snapshot_tables(db, tables, rows).await;
    read_snapshot(db, tables, rows, parallelism).await;
}

async fn create_snapshot_tables(db: &MariaDb, tables: usize, rows: u64) {
    for t in 0..tables {
        db.exec(&format!(
            "CREATE TABLE bench.s{t} (id BIGINT PRIMARY KEY, a INT NOT NULL, b VARCHAR(120) NOT NULL, \
             c DATETIME(6) NOT NULL, d DECIMAL(12,2) NOT NULL, e DOUBLE NOT NULL); \
             INSERT INTO bench.s{t} SELECT seq, seq, REPEAT('z', 100), NOW(6), seq / 7, seq * 1.5 \
             FROM bench.seq_1_to_{rows}"
        ))
        .await;
    }
}

async fn read_snapshot(db: &MariaDb, tables: usize, rows: u64, parallelism: usize) {
    let filter =
        sluice_mysql::filter::TableFilter::new(&["bench.s*".into()], &[], &[], &[]).unwrap();
    let opts = mysql_async::Opts::from_url(&db.url()).unwrap();
    let (cpu0, _) = usage();
    let t0 = Instant::now();
    let mut snap = Snapshot::begin(&opts, &filter, 10_000, parallelism, true, 4002, None)
        .await
        .unwrap();
    let mut n = 0u64;
    while let Some(chunk) = snap.next_chunk().await.unwrap() {
        n += chunk.len() as u64;
    }
    snap.finish().await.unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let (cpu1, rss) = usage();
    println!("snapshot of {tables} tables x {rows} rows, parallelism {parallelism}:");
    print(
        "sluice snapshot",
        &Figures {
            rows: n,
            secs,
            cpu: cpu1 - cpu0,
            rss_kib: rss,
        },
    );
    if parallelism == 1 {
        if let Some(b) = dump_baseline(db, tables, n) {
            print("mariadb-dump (baseline)", &b);
            println!("  ratio: {:.2}x rows/s", b.secs / secs.max(1e-9));
        }
    }
}

/// The baseline for a snapshot: `mariadb-dump --single-transaction` of
/// the same tables to /dev/null (one consistent read, text rows out).
fn dump_baseline(db: &MariaDb, tables: usize, rows: u64) -> Option<Figures> {
    let names: Vec<String> = (0..tables).map(|t| format!("s{t}")).collect();
    let t0 = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args([
            "-f",
            "%U %S %M",
            "mariadb-dump",
            "--single-transaction",
            "--quick",
        ])
        .args(["-h", "127.0.0.1", "-P", &db.port.to_string(), "-u", "root"])
        .arg("bench")
        .args(&names)
        .stdout(std::process::Stdio::null())
        .output()
        .ok()?;
    let secs = t0.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    let f: Vec<f64> = last
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    if !out.status.success() || f.len() != 3 {
        eprintln!("mariadb-dump baseline failed: {err}");
        return None;
    }
    Some(Figures {
        rows,
        secs,
        cpu: f[0] + f[1],
        rss_kib: f[2] as i64,
    })
}
