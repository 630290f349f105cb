//! Test support: a throwaway MariaDB with binlog, started on a free
//! loopback port in a temporary directory and killed when dropped (see
//! DESIGN.md "Real services in tests"). Reused by every integration test
//! and benchmark of this crate. Touches only its own temporary directory
//! and the server process it starts.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

/// A running `mariadbd` of our own.
pub struct MariaDb {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
    extra: Vec<String>,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

impl MariaDb {
    /// Starts a server with ROW binlog and FULL row metadata.
    pub fn start() -> MariaDb {
        MariaDb::start_with(&[])
    }

    /// Starts a server with extra `mariadbd` arguments (later ones win).
    pub fn start_with(extra: &[&str]) -> MariaDb {
        let dir = tempfile::Builder::new()
            .prefix("sluice-mariadb-")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).expect("tmp dir");
        // Own tmpdir: the bootstrap's temporary tables must not meet
        // another server's (or another cleaner's) in /tmp. One retry.
        let mut last = String::new();
        let installed = (0..2).any(|_| {
            let _ = std::fs::remove_dir_all(&data);
            let out = Command::new("mariadb-install-db")
                .args(["--no-defaults", "--user=root", "--skip-test-db"])
                .arg("--auth-root-authentication-method=normal")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--tmpdir={}", tmp.display()))
                .output()
                .expect("run mariadb-install-db (is mariadb-server installed?)");
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            out.status.success()
        });
        assert!(installed, "mariadb-install-db failed: {last}");
        let mut db = MariaDb {
            child: None,
            dir,
            port: free_port(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        db.spawn();
        db
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        let log = std::fs::File::create(d.join("mariadbd.log")).expect("log file");
        let mut cmd = Command::new("mariadbd");
        // The benchmarks turn transparent huge pages off for their own
        // process (`sluice::allocator::tune`); servers measured against
        // sluice run with the machine's setting, not an inherited one.
        // SAFETY: prctl with integer arguments only, between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0);
                Ok(())
            });
        }
        let child = cmd
            .arg("--no-defaults")
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--socket={}", d.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", d.join("mysqld.pid").display()))
            .arg(format!("--tmpdir={}", d.join("tmp").display()))
            .arg(format!(
                "--log-bin={}",
                d.join("data").join("binlog").display()
            ))
            .args([
                "--bind-address=127.0.0.1",
                "--binlog-format=ROW",
                "--binlog-row-metadata=FULL",
                "--server-id=1",
                "--user=root",
                "--innodb-buffer-pool-size=128M",
                "--innodb-log-file-size=48M",
                "--innodb-flush-log-at-trx-commit=2",
                "--sync-binlog=0",
                "--skip-name-resolve=0",
                "--max-allowed-packet=256M",
            ])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn mariadbd");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                std::thread::sleep(Duration::from_millis(100));
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("mariadbd did not start: {}", self.log());
    }

    /// The server's error log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mariadbd.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    pub fn binlog_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub async fn conn(&self) -> mysql_async::Conn {
        let opts = mysql_async::Opts::from_url(&self.url()).expect("url");
        mysql_async::Conn::new(opts)
            .await
            .expect("connect to test MariaDB")
    }

    /// Runs statements on a fresh connection.
    pub async fn exec(&self, sql: &str) {
        let mut c = self.conn().await;
        c.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        c.disconnect().await.ok();
    }

    /// Stops the server hard (kill -9) and starts it again on the same data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.kill();
    }
}
