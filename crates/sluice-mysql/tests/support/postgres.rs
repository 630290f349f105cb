//! Test support: a throwaway PostgreSQL (initdb + postgres from
//! /usr/lib/postgresql/*/bin) on a free loopback port in a temporary
//! directory, optionally with `ssl=on` and a server certificate from a
//! test CA made here (rcgen); stopped when dropped. As root it runs as
//! the `postgres` user (PostgreSQL refuses root), which then owns the
//! directory. Touches only its temporary directory and the server it
//! starts.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// A test certificate authority.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate and its key, PEM; with `client_ca_pem`, TCP
/// clients must present a certificate from that CA whose common name is
/// their user name (`hostssl … cert`).
pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub client_ca_pem: Option<String>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(p, key).expect("CA certificate"),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `path`; returns the path as text.
    pub fn write(&self, path: &Path) -> String {
        std::fs::write(path, self.pem()).expect("write CA file");
        path.display().to_string()
    }

    /// A server certificate for these names (DNS names or IP addresses).
    pub fn server_cert(&self, names: &[&str]) -> ServerCert {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut p = CertificateParams::new(names).expect("server params");
        p.distinguished_name
            .push(DnType::CommonName, "sluice test server");
        let key = KeyPair::generate().expect("server key");
        let cert = p.signed_by(&key, &self.issuer).expect("server certificate");
        ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            client_ca_pem: None,
        }
    }

    /// A client certificate for PostgreSQL user `user` (its common name),
    /// as (certificate, key) PEM.
    pub fn client_cert(&self, user: &str) -> (String, String) {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("client params");
        p.distinguished_name.push(DnType::CommonName, user);
        let key = KeyPair::generate().expect("client key");
        let cert = p.signed_by(&key, &self.issuer).expect("client certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// A running PostgreSQL of our own.
pub struct PgServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// The newest /usr/lib/postgresql/N/bin.
fn bin_dir() -> PathBuf {
    let mut best: Option<(u32, PathBuf)> = None;
    for e in std::fs::read_dir("/usr/lib/postgresql").expect("PostgreSQL server installed") {
        let e = e.expect("dir entry");
        let v: u32 = e.file_name().to_string_lossy().parse().unwrap_or(0);
        let bin = e.path().join("bin");
        if bin.join("postgres").exists() && best.as_ref().is_none_or(|(b, _)| v > *b) {
            best = Some((v, bin));
        }
    }
    best.expect("postgres binary under /usr/lib/postgresql/*/bin")
        .1
}

/// (uid, gid) of the `postgres` user when running as root.
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("a `postgres` user to run PostgreSQL as (it refuses root)");
    let f: Vec<&str> = line.split(':').collect();
    Some((f[2].parse().expect("uid"), f[3].parse().expect("gid")))
}

fn chown(path: &Path, who: Option<(u32, u32)>) {
    if let Some((u, g)) = who {
        std::os::unix::fs::chown(path, Some(u), Some(g)).expect("chown to postgres");
    }
}

fn command(bin: &Path, who: Option<(u32, u32)>, dir: &Path) -> Command {
    let mut c = Command::new(bin);
    c.current_dir(dir);
    if let Some((u, g)) = who {
        c.uid(u).gid(g);
    }
    c
}

impl PgServer {
    /// Starts a server; with `tls`, `ssl=on` with that certificate and
    /// TCP connections must use TLS (`hostnossl … reject`).
    pub fn start(tls: Option<&ServerCert>) -> PgServer {
        let who = run_as();
        let mut dir = tempfile::Builder::new()
            .prefix("sluice-pg-")
            .tempdir()
            .expect("temp dir");
        let d = &dir.path().to_path_buf();
        chown(d, who);
        let bin = bin_dir();
        let data = d.join("data");
        let out = command(&bin.join("initdb"), who, d)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut args: Vec<String> = vec![
            "-D".into(),
            data.display().to_string(),
            "-p".into(),
            String::new(),
            "-k".into(),
            d.display().to_string(),
            "-c".into(),
            "listen_addresses=127.0.0.1".into(),
            "-c".into(),
            "fsync=off".into(),
        ];
        if let Some(t) = tls {
            let (cert, key) = (d.join("server.crt"), d.join("server.key"));
            std::fs::write(&cert, &t.cert_pem).expect("write cert");
            std::fs::write(&key, &t.key_pem).expect("write key");
            std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .expect("chmod key");
            chown(&cert, who);
            chown(&key, who);
            let method = match &t.client_ca_pem {
                Some(ca) => {
                    let file = d.join("client-ca.crt");
                    std::fs::write(&file, ca).expect("write client CA");
                    chown(&file, who);
                    args.push("-c".into());
                    args.push(format!("ssl_ca_file={}", file.display()));
                    "cert"
                }
                None => "trust",
            };
            std::fs::write(
                data.join("pg_hba.conf"),
                format!(
                    "local all all trust\nhostssl all all 127.0.0.1/32 {method}\n\
                     hostnossl all all 127.0.0.1/32 reject\n"
                ),
            )
            .expect("write pg_hba.conf");
            for a in [
                "ssl=on".to_string(),
                format!("ssl_cert_file={}", cert.display()),
                format!("ssl_key_file={}", key.display()),
            ] {
                args.push("-c".into());
                args.push(a);
            }
        }
        let mut last = String::new();
        // A free port may be taken between the probe and the bind: retry.
        for _ in 0..3 {
            let port = free_port();
            args[3] = port.to_string();
            let log = std::fs::File::create(d.join("postgres.log")).expect("log file");
            chown(&d.join("postgres.log"), who);
            let child = command(&bin.join("postgres"), who, d)
                .args(&args)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn postgres");
            let mut s = PgServer {
                child: Some(child),
                dir,
                port,
            };
            if s.wait_ready(&bin) {
                return s;
            }
            last = s.log();
            s.stop();
            dir = s.take_dir();
        }
        panic!("postgres did not start: {last}");
    }

    fn take_dir(mut self) -> tempfile::TempDir {
        self.stop();
        let placeholder = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, placeholder)
    }

    fn wait_ready(&mut self, bin: &Path) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    return false;
                }
            }
            let ok = Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", &self.dir.path().display().to_string()])
                .args(["-p", &self.port.to_string(), "-U", "postgres"])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres` plus `query`.
    pub fn url(&self, query: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres{query}",
            self.port
        )
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Immediate shutdown (SIGQUIT) of the postmaster we started.
            // SAFETY: kill on our own child's pid.
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGQUIT);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}
