//! A throwaway MariaDB for end-to-end tests of the binary (the minimal
//! part of crates/sluice-mysql/tests/support/mod.rs): `mariadb-install-db`
//! into a temporary directory, `mariadbd` on a free loopback port (ROW
//! binlog with FULL metadata unless told otherwise), statements through the
//! `mariadb` command-line client (the root crate has no MySQL driver of its
//! own). Killed when dropped. Touches only its temporary directory and the
//! processes it starts.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A running `mariadbd` of our own.
pub struct MariaDb {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
}

/// Concurrent `mariadb-install-db` runs collide; one at a time.
static STARTING: Mutex<()> = Mutex::new(());

impl MariaDb {
    /// A primary: ROW binlog, FULL row metadata.
    pub fn primary() -> MariaDb {
        MariaDb::start_with(&[])
    }

    /// A target: no binlog.
    pub fn target() -> MariaDb {
        MariaDb::start_with(&["--skip-log-bin", "--server-id=2"])
    }

    /// Starts a server with extra `mariadbd` arguments (later ones win).
    pub fn start_with(extra: &[&str]) -> MariaDb {
        let _one = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::Builder::new()
            .prefix("sluice-mariadb-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        let (data, tmp) = (d.join("data"), d.join("tmp"));
        std::fs::create_dir_all(&tmp).expect("tmp dir");
        let out = Command::new("mariadb-install-db")
            .args(["--no-defaults", "--user=root", "--skip-test-db"])
            .arg("--auth-root-authentication-method=normal")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .output()
            .expect("run mariadb-install-db (apt-get install mariadb-server)");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = super::free_port();
        let log = std::fs::File::create(d.join("mariadbd.log")).expect("log file");
        let child = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg(format!("--socket={}", d.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", d.join("mysqld.pid").display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--log-bin={}", data.join("binlog").display()))
            .args([
                "--bind-address=127.0.0.1",
                "--binlog-format=ROW",
                "--binlog-row-metadata=FULL",
                "--server-id=1",
                "--user=root",
                "--innodb-buffer-pool-size=64M",
                "--innodb-log-file-size=48M",
                "--innodb-flush-log-at-trx-commit=2",
                "--sync-binlog=0",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn mariadbd (apt-get install mariadb-server)");
        let db = MariaDb {
            child: Some(child),
            dir,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while db.try_query("SELECT 1").is_err() {
            assert!(
                Instant::now() < deadline,
                "mariadbd did not start: {}",
                db.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        db
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mariadbd.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    fn client(&self) -> Command {
        let mut c = Command::new("mariadb");
        c.args(["--no-defaults", "-h", "127.0.0.1", "-u", "root", "-N", "-B"])
            .arg(format!("-P{}", self.port));
        c
    }

    /// Runs statements; the result rows, tab-separated, or the error.
    pub fn try_query(&self, sql: &str) -> Result<Vec<String>, String> {
        let out = self
            .client()
            .arg("-e")
            .arg(sql)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run the mariadb client (apt-get install mariadb-client): {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// Runs statements; panics naming the statement on error.
    pub fn query(&self, sql: &str) -> Vec<String> {
        self.try_query(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The first column of the first row as a number.
    pub fn number(&self, sql: &str) -> u64 {
        let rows = self.query(sql);
        rows.first()
            .and_then(|r| r.split('\t').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{sql}: no number in {rows:?}"))
    }

    /// The binlog coordinates now (file, position).
    pub fn master_pos(&self) -> (String, u64) {
        let rows = self.query("SHOW MASTER STATUS");
        let row = rows.first().expect("binlog enabled");
        let mut f = row.split('\t');
        let file = f.next().expect("file").to_string();
        let pos = f.next().and_then(|p| p.parse().ok()).expect("position");
        (file, pos)
    }

    /// Runs statements in the background (a long workload).
    pub fn spawn_query(&self, sql: &str) -> Child {
        self.client()
            .arg("-e")
            .arg(sql)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the mariadb client (apt-get install mariadb-client)")
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The schema of the replication workload: `items` (primary key),
/// `pairs` (composite key) and `ledger` (no key, insert-only: one row per
/// source transaction, so a transaction applied twice shows).
pub const SHOP: &str = "CREATE DATABASE shop;
CREATE TABLE shop.items (id INT PRIMARY KEY, qty INT NOT NULL, note VARCHAR(20));
CREATE TABLE shop.pairs (a INT, b VARCHAR(10), v INT, PRIMARY KEY (a, b));
CREATE TABLE shop.ledger (seq BIGINT NOT NULL, note VARCHAR(20))";

/// Every transaction: an upsert / update / delete on `items`, a
/// primary-key change now and then, and one ledger row numbering it (for
/// the `mariadb` client: its own delimiter).
pub const WORKLOAD: &str = "DELIMITER //
CREATE PROCEDURE shop.work(n INT)
BEGIN
  DECLARE i INT DEFAULT 0;
  WHILE i < n DO
    START TRANSACTION;
    INSERT INTO shop.items VALUES (i % 500, i, CONCAT('v', i))
      ON DUPLICATE KEY UPDATE qty = qty + 1, note = CONCAT('u', i);
    IF i % 7 = 0 THEN DELETE FROM shop.items WHERE id = (i * 13) % 500; END IF;
    IF i % 11 = 0 THEN UPDATE IGNORE shop.items SET id = 500 + i % 300 WHERE id = (i * 3) % 500; END IF;
    IF i % 5 = 0 THEN INSERT INTO shop.pairs VALUES (i % 17, CONCAT('k', i % 3), i)
      ON DUPLICATE KEY UPDATE v = v + 1; END IF;
    INSERT INTO shop.ledger VALUES (i, 'tx');
    COMMIT;
    IF i % 20 = 0 THEN DO SLEEP(0.05); END IF;
    SET i = i + 1;
  END WHILE;
END //
DELIMITER ;";
