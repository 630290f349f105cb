//! Scenario 6, binlog sync: a MariaDB primary with a `shop` database;
//! sluice runs `pipelines/binlog-sync.yaml`, which snapshots `shop.*`,
//! streams the binlog into the embedded store (topic `cdc.shop`, one
//! partition, so in binlog order) and applies it into a replica server
//! (`shop` → `shop_replica`, tables created from the primary's schema,
//! exactly once: the apply position is stored in the replica with the
//! rows). A workload runs meanwhile (inserts, updates, deletes, an ALTER
//! TABLE); then `sluice verify` compares primary and replica chunk by
//! chunk.
//!
//! ```sh
//! cargo run --release --example binlog_sync          # starts two throwaway mariadbd
//! cargo run --release --example binlog_sync -- --primary mysql://root@127.0.0.1:3306 \
//!     --replica mysql://root@127.0.0.1:3307/
//! ```
//!
//! With `--primary`/`--replica` it drops and recreates the database `shop`
//! on the primary and `shop_replica` on the replica. Touches a temporary
//! directory, the two servers, and a loopback port.

#[path = "data_common/daemon.rs"]
mod daemon;
#[path = "data_common/mariadb.rs"]
mod mariadb;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use sluice::client::Client;
use sluice_mysql::verify::{VerifyOptions, VerifyReport};

/// What to run.
pub struct Options {
    /// Primary server URL; `None` starts a throwaway mariadbd.
    pub primary: Option<String>,
    /// Replica server URL; `None` starts a second throwaway mariadbd.
    pub replica: Option<String>,
    /// Workload transactions run while sluice streams.
    pub transactions: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            primary: None,
            replica: None,
            transactions: 600,
        }
    }
}

/// What happened.
pub struct Outcome {
    pub primary: String,
    pub replica: String,
    /// Rows per `shop` table on the primary at the end.
    pub primary_rows: BTreeMap<String, u64>,
    /// Statements of the workload by kind.
    pub workload: BTreeMap<&'static str, u64>,
    /// Store topic → (records, lag of group `replica-1`) once caught up.
    pub topics: BTreeMap<String, (u64, Option<u64>)>,
    /// From the last workload commit until the apply had committed every
    /// record of every topic.
    pub catch_up: Duration,
    pub report: VerifyReport,
    /// `report` as `sluice verify` prints it.
    pub printed: String,
}

const SCHEMA: &str = "
CREATE DATABASE shop;
CREATE TABLE shop.customers (
  id INT AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(80) NOT NULL,
  email VARCHAR(120) NOT NULL,
  balance DECIMAL(12,2) NOT NULL DEFAULT 0,
  created DATETIME(6) NOT NULL
);
CREATE TABLE shop.orders (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  customer_id INT NOT NULL,
  amount DECIMAL(10,2) NOT NULL,
  status ENUM('new','paid','shipped','cancelled') NOT NULL DEFAULT 'new',
  note TEXT NULL,
  updated TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
);
CREATE TABLE shop.audit_log (
  customer_id INT NOT NULL,
  action VARCHAR(40) NOT NULL,
  at DATETIME NOT NULL
);
CREATE TABLE shop.sync_marker (id INT PRIMARY KEY, note VARCHAR(80));
";

/// A small deterministic generator (xorshift64*), so runs are repeatable.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

async fn connect(url: &str) -> Result<mysql_async::Conn, String> {
    let opts = mysql_async::Opts::from_url(url).map_err(|e| format!("{url}: {e}"))?;
    mysql_async::Conn::new(opts)
        .await
        .map_err(|e| format!("connecting to {url}: {e}"))
}

async fn exec(c: &mut mysql_async::Conn, sql: &str) -> Result<(), String> {
    c.query_drop(sql).await.map_err(|e| format!("{sql}: {e}"))
}

/// The primary's `shop` database with seed rows (the snapshot copies
/// them); an empty replica (and no apply position from an earlier run).
async fn prepare(primary: &str, replica: &str) -> Result<(), String> {
    let mut p = connect(primary).await?;
    exec(&mut p, "DROP DATABASE IF EXISTS shop").await?;
    exec(&mut p, SCHEMA).await?;
    let customers: Vec<String> = (1..=200)
        .map(|i| {
            format!("('customer {i}', 'c{i}@example.com', {i}.50, '2026-01-01 10:00:00.{i:06}')")
        })
        .collect();
    exec(
        &mut p,
        &format!(
            "INSERT INTO shop.customers (name, email, balance, created) VALUES {}",
            customers.join(",")
        ),
    )
    .await?;
    let orders: Vec<String> = (1..=500)
        .map(|i| format!("({}, {}.{:02}, 'paid', NULL)", i % 200 + 1, i * 3, i % 100))
        .collect();
    exec(
        &mut p,
        &format!(
            "INSERT INTO shop.orders (customer_id, amount, status, note) VALUES {}",
            orders.join(",")
        ),
    )
    .await?;
    p.disconnect().await.ok();
    let mut r = connect(replica).await?;
    exec(&mut r, "DROP DATABASE IF EXISTS shop_replica").await?;
    // An earlier run's position would make the sink skip changes.
    let _ = r
        .query_drop("DELETE FROM sluice.sluice_apply_position WHERE consumer = 'replica'")
        .await;
    r.disconnect().await.ok();
    Ok(())
}

/// Runs `n` transactions on the primary: new orders, status changes,
/// cancellations deleted, balances, audit rows; an ALTER TABLE half way;
/// then the marker row the replica is watched for.
async fn workload(primary: &str, n: usize) -> Result<BTreeMap<&'static str, u64>, String> {
    let mut c = connect(primary).await?;
    let mut rng = Rng(0xb1_9109);
    let mut kinds = BTreeMap::new();
    let mut count = |k: &'static str| *kinds.entry(k).or_insert(0u64) += 1;
    for t in 0..n {
        if t == n / 2 {
            exec(
                &mut c,
                "ALTER TABLE shop.orders ADD COLUMN coupon VARCHAR(20) NULL",
            )
            .await?;
            count("alter table");
        }
        let customer = rng.below(200) + 1;
        let mut sql = String::from("START TRANSACTION;");
        let coupon = if t > n / 2 && rng.below(3) == 0 {
            ", coupon = 'WINTER26'"
        } else {
            ""
        };
        sql += &format!(
            "INSERT INTO shop.orders SET customer_id = {customer}, amount = {}.{:02}, \
             note = 'order #{t} says \"hello\"'{coupon};",
            rng.below(500) + 1,
            rng.below(100)
        );
        count("insert");
        let other = rng.below(500) + 1;
        let status = ["paid", "shipped", "cancelled"][rng.below(3) as usize];
        sql += &format!("UPDATE shop.orders SET status = '{status}' WHERE id = {other};");
        sql +=
            &format!("UPDATE shop.customers SET balance = balance - 1.25 WHERE id = {customer};");
        count("update");
        count("update");
        sql += &format!(
            "INSERT INTO shop.audit_log VALUES ({customer}, 'order {status}', '2026-11-28 09:{:02}:{:02}');",
            t / 60 % 60,
            t % 60
        );
        count("insert");
        if t % 10 == 9 {
            sql += "DELETE FROM shop.orders WHERE status = 'cancelled' ORDER BY id LIMIT 2;";
            count("delete");
        }
        sql += "COMMIT";
        exec(&mut c, &sql).await?;
    }
    exec(
        &mut c,
        "INSERT INTO shop.sync_marker VALUES (1, 'workload done')",
    )
    .await?;
    count("insert");
    c.disconnect().await.ok();
    Ok(kinds)
}

/// Waits until the replica has the marker row: the binlog was read past
/// the end of the workload and applied up to it (the topic keeps binlog
/// order and one worker applies it in order).
async fn wait_for_marker(replica: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = String::new();
    while Instant::now() < deadline {
        match connect(replica).await {
            Ok(mut c) => {
                match c
                    .query_first::<u64, _>(
                        "SELECT COUNT(*) FROM shop_replica.sync_marker WHERE id = 1",
                    )
                    .await
                {
                    Ok(Some(1)) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => last = e.to_string(),
                }
                c.disconnect().await.ok();
            }
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "the replica did not receive the workload within 120 s (last: {last})"
    ))
}

/// Topic → (records, lag of the apply's group `replica-1`) of the `cdc.*`
/// store topics.
async fn cdc_topics(client: &Client) -> Result<BTreeMap<String, (u64, Option<u64>)>, String> {
    let v = client
        .list_topics()
        .await
        .map_err(|e| format!("list topics: {e}"))?;
    let mut out = BTreeMap::new();
    for t in v["topics"].as_array().into_iter().flatten() {
        let name = t["name"].as_str().unwrap_or_default();
        if !name.starts_with("cdc.") {
            continue;
        }
        let lag = t["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["group"] == "replica-1")
            .and_then(|g| g["lag"].as_u64());
        out.insert(name.to_string(), (t["records"].as_u64().unwrap_or(0), lag));
    }
    Ok(out)
}

/// Waits until group `replica-1` has committed every record of the `cdc.*`
/// topics, twice in a row (what `sluice groups describe cdc.shop
/// replica-1` shows).
async fn wait_caught_up(client: &Client) -> Result<BTreeMap<String, (u64, Option<u64>)>, String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut previous = None;
    loop {
        let topics = cdc_topics(client).await?;
        let idle = !topics.is_empty() && topics.values().all(|(_, lag)| *lag == Some(0));
        if idle && previous.as_ref() == Some(&topics) {
            return Ok(topics);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the apply did not catch up within 120 s: {topics:?} (topic: (records, lag))"
            ));
        }
        previous = idle.then_some(topics);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn row_counts(url: &str) -> Result<BTreeMap<String, u64>, String> {
    let mut c = connect(url).await?;
    let mut out = BTreeMap::new();
    for t in ["customers", "orders", "audit_log", "sync_marker"] {
        let n: Option<u64> = c
            .query_first(format!("SELECT COUNT(*) FROM shop.{t}"))
            .await
            .map_err(|e| format!("counting shop.{t}: {e}"))?;
        out.insert(format!("shop.{t}"), n.unwrap_or(0));
    }
    c.disconnect().await.ok();
    Ok(out)
}

/// Runs the whole scenario; the daemon's data goes to `work/data`.
pub async fn scenario(work: &Path, o: &Options) -> Result<Outcome, String> {
    // Start whatever servers are missing, side by side.
    let (p, r) = std::thread::scope(|s| {
        let p = s.spawn(|| {
            o.primary
                .is_none()
                .then(mariadb::MariaDb::start)
                .transpose()
        });
        let r = s.spawn(|| {
            o.replica
                .is_none()
                .then(mariadb::MariaDb::start)
                .transpose()
        });
        (p.join(), r.join())
    });
    let p = p.map_err(|_| "starting the primary panicked")??;
    let r = r.map_err(|_| "starting the replica panicked")??;
    let primary = o
        .primary
        .clone()
        .or(p.as_ref().map(|s| s.url()))
        .unwrap_or_default();
    let replica = o
        .replica
        .clone()
        .or(r.as_ref().map(|s| format!("{}/", s.url())))
        .unwrap_or_default();
    prepare(&primary, &replica).await?;

    let d = daemon::InProcess::start(
        &[daemon::shipped_pipeline("binlog-sync.yaml")],
        &[
            ("PRIMARY_URL", primary.clone()),
            ("REPLICA_URL", replica.clone()),
            ("SLUICE_DATA_DIR", work.join("data").display().to_string()),
        ],
    )
    .await?;
    let client = Client::new(&d.api, None).map_err(|e| e.to_string())?;
    let kinds = workload(&primary, o.transactions).await?;
    let written = Instant::now();
    let waited = async {
        wait_for_marker(&replica).await?;
        wait_caught_up(&client).await
    }
    .await;
    let catch_up = written.elapsed();
    let stopped = d.stop().await;
    let topics = waited?;
    stopped?;

    // As `sluice verify --retry-secs 2` (differing chunks re-checked).
    let mut v = VerifyOptions::new(primary.clone(), replica.clone());
    v.retry_secs = 2;
    v.tables = vec!["shop.*".into()];
    v.database_map.insert("shop".into(), "shop_replica".into());
    let report = sluice_mysql::verify::run(v)
        .await
        .map_err(|e| format!("verify: {e:#}"))?;
    let mut printed = Vec::new();
    report.print(&mut printed, 10).map_err(|e| e.to_string())?;
    Ok(Outcome {
        primary_rows: row_counts(&primary).await?,
        primary,
        replica,
        workload: kinds,
        topics,
        catch_up,
        report,
        printed: String::from_utf8_lossy(&printed).into_owned(),
    })
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--primary" => o.primary = Some(value("--primary")?),
            "--replica" => o.replica = Some(value("--replica")?),
            "--transactions" => {
                o.transactions = value("--transactions")?
                    .parse()
                    .map_err(|e| format!("--transactions: {e}"))?
            }
            "-h" | "--help" => {
                println!("usage: binlog_sync [--primary URL] [--replica URL] [--transactions N]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    Ok(o)
}

fn main() -> std::process::ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("SLUICE_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let work = tempfile::Builder::new()
        .prefix("sluice-binlog-")
        .tempdir()
        .expect("temporary directory");
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let out = match rt.block_on(scenario(work.path(), &o)) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!(
        "primary {} (database shop) → store topic cdc.shop → replica {} (database shop_replica)",
        out.primary, out.replica
    );
    let w: Vec<String> = out
        .workload
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    println!("workload while streaming (statements): {}", w.join(", "));
    let rows: Vec<String> = out
        .primary_rows
        .iter()
        .map(|(t, n)| format!("{t} {n}"))
        .collect();
    println!("rows on the primary now: {}", rows.join(", "));
    println!("\nstore topic             records  lag of group replica-1");
    for (t, (n, lag)) in &out.topics {
        let lag = lag.map(|l| l.to_string()).unwrap_or_else(|| "-".into());
        println!("{t:<22} {n:>8}  {lag:>6}");
    }
    println!(
        "caught up {:.2} s after the last workload commit",
        out.catch_up.as_secs_f64()
    );
    println!(
        "\nsluice verify --source {} --target {} --tables 'shop.*' --database-map shop=shop_replica --retry-secs 2",
        out.primary, out.replica
    );
    print!("{}", out.printed);
    if out.report.is_equal() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replica_verifies_equal_after_snapshot_and_workload() {
        let work = tempfile::tempdir().unwrap();
        let o = Options {
            transactions: 200,
            ..Options::default()
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        let out = rt
            .block_on(scenario(work.path(), &o))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.report.is_equal(),
            "verify found differences:\n{}",
            out.printed
        );
        let tables: Vec<&str> = out
            .report
            .tables
            .iter()
            .map(|t| t.source.as_str())
            .collect();
        assert_eq!(
            tables.len(),
            4,
            "verify compared {tables:?}, not the four shop tables:\n{}",
            out.printed
        );
        for t in &out.report.tables {
            assert_eq!(
                Some(&t.source_rows),
                out.primary_rows.get(&t.source),
                "{}",
                out.printed
            );
            assert_eq!(t.target_rows, t.source_rows, "{}", out.printed);
        }
        assert_eq!(out.primary_rows["shop.audit_log"], 200);
        assert!(out.primary_rows["shop.orders"] > 500);
        assert_eq!(out.workload["alter table"], 1);
    }
}
