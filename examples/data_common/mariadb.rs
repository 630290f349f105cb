//! A throwaway MariaDB server for the binlog-sync example (adapted from
//! crates/sluice-mysql/tests/support): `mariadb-install-db` into a
//! temporary directory, then `mariadbd` with ROW binlog and FULL row
//! metadata on a free loopback port, root without password; killed when
//! dropped. Touches only its temporary directory and the server process.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `mariadbd` of our own.
pub struct MariaDb {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("mariadbd.log")).unwrap_or_default()
}

impl MariaDb {
    /// Installs and starts a server; fails with what to install when the
    /// MariaDB server binaries are missing.
    pub fn start() -> Result<MariaDb, String> {
        let dir = tempfile::Builder::new()
            .prefix("sluice-mariadb-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let d = dir.path();
        let (data, tmp) = (d.join("data"), d.join("tmp"));
        std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        let out = Command::new("mariadb-install-db")
            .args(["--no-defaults", "--user=root", "--skip-test-db"])
            .arg("--auth-root-authentication-method=normal")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .output()
            .map_err(|e| {
                format!(
                    "cannot run mariadb-install-db: {e}; install the MariaDB server \
                     (`apt-get install mariadb-server`, scripts/install-deps does), \
                     or pass --primary and --replica URLs"
                )
            })?;
        if !out.status.success() {
            return Err(format!(
                "mariadb-install-db failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let port = super::daemon::free_port();
        let log = std::fs::File::create(d.join("mariadbd.log")).map_err(|e| e.to_string())?;
        let mariadbd = if Path::new("/usr/sbin/mariadbd").exists() {
            "/usr/sbin/mariadbd"
        } else {
            "mariadbd"
        };
        let child = Command::new(mariadbd)
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
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start mariadbd: {e}"))?;
        let db = MariaDb { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("mariadbd did not start: {}", log_of(db.dir.path())));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(db)
    }

    /// `mysql://root@127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
