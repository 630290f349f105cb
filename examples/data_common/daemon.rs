//! An in-process sluice daemon for the data scenario examples: sets the
//! `${VAR}`s a shipped pipeline file reads, runs it with
//! `sluice::daemon::run_with_control` on a free loopback API port, waits
//! until `/health` answers, and stops it gracefully. Touches the process
//! environment (before the daemon starts), a loopback port and what the
//! pipeline itself touches.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use sluice_core::Control;

/// A free loopback TCP port (the listener is closed before returning).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// A shipped pipeline file of this repository (`pipelines/NAME`).
pub fn shipped_pipeline(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pipelines")
        .join(name)
}

/// A daemon running in this process.
pub struct InProcess {
    control: Control,
    task: tokio::task::JoinHandle<ExitCode>,
    /// `http://127.0.0.1:PORT` of its API.
    pub api: String,
}

impl InProcess {
    /// Sets `env` (the pipeline's `${VAR}`s; `SLUICE_API_LISTEN` is set
    /// here to a free port), starts the daemon on `files` and waits until
    /// it is healthy. Call it before other threads read the environment.
    pub async fn start(files: &[PathBuf], env: &[(&str, String)]) -> Result<InProcess, String> {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        // Edition 2021: set_var is safe; the daemon reads the variables
        // while loading the files, below.
        std::env::set_var("SLUICE_API_LISTEN", &listen);
        for (k, v) in env {
            std::env::set_var(k, v);
        }
        let control = Control::default();
        let files = files.to_vec();
        let c = control.clone();
        let task = tokio::spawn(async move { sluice::daemon::run_with_control(&files, c).await });
        let d = InProcess {
            control,
            task,
            api: format!("http://{listen}"),
        };
        d.wait_healthy().await?;
        Ok(d)
    }

    async fn wait_healthy(&self) -> Result<(), String> {
        // reqwest is built without a default TLS provider (as in sluice::client).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.task.is_finished() {
                return Err("the daemon stopped while starting (its error is above)".into());
            }
            if let Ok(r) = http.get(format!("{}/health", self.api)).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the daemon on {} was not healthy within 60 s",
                    self.api
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops it as SIGTERM would (sources stop, sinks drain, checkpoints
    /// are written) and returns whether it ended cleanly.
    pub async fn stop(self) -> Result<(), String> {
        self.control.shutdown.cancel();
        match self.task.await {
            Ok(code) if code == ExitCode::SUCCESS => Ok(()),
            Ok(code) => Err(format!(
                "the daemon ended with {code:?} (its error is above)"
            )),
            Err(e) => Err(format!("the daemon task failed: {e}")),
        }
    }
}
