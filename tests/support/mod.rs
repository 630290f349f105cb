//! Test support for end-to-end tests of the `sluice` binary: a daemon
//! started from a pipeline YAML in a scratch directory, on free loopback
//! ports, with helpers to wait for health, signal it, and kill it.

#![allow(dead_code)]

pub mod mariadb;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback TCP port (the listener is closed before returning).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// Waits until something accepts connections on the loopback `port`.
pub fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on port {port} after 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn sluice_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluice"))
}

/// A running `sluice run`.
pub struct Daemon {
    pub child: Child,
    pub config: PathBuf,
    pub api_port: u16,
}

impl Daemon {
    /// Writes `yaml` to `dir/pipeline.yaml` and starts the daemon in `dir`.
    pub fn start(dir: &Path, yaml: &str, api_port: u16) -> Daemon {
        let config = dir.join("pipeline.yaml");
        std::fs::write(&config, yaml).unwrap();
        Daemon::start_file(dir, &config, api_port)
    }

    pub fn start_file(dir: &Path, config: &Path, api_port: u16) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("sluice.log"))
            .unwrap();
        let child = Command::new(sluice_bin())
            .args(["run", "-c"])
            .arg(config)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sluice");
        Daemon {
            child,
            config: config.to_path_buf(),
            api_port,
        }
    }

    /// Waits until `/health` answers 200.
    pub fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("sluice exited before becoming healthy: {status}");
            }
            if http_get_status(self.api_port, "/health") == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("sluice did not become healthy within 60 s");
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn sigterm(&self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("sluice did not exit within {limit:?}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal blocking HTTP/1.1 GET returning the status code.
pub fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut s, &mut buf).ok()?;
    let head = std::str::from_utf8(&buf[..n]).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

/// Reads every line of every file under `dir` whose name ends with `suffix`.
pub fn read_lines(dir: &Path, suffix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            out.extend(read_lines(&p, suffix));
        } else if p.to_string_lossy().ends_with(suffix) {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            out.extend(text.lines().map(str::to_string));
        }
    }
    out
}

/// POSTs `body` to 127.0.0.1:port/path with a fresh connection; returns
/// (status, body), or (0, "") when the daemon is not there.
pub fn post(port: u16, path: &str, body: &str) -> (u16, String) {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(120))).ok();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}
