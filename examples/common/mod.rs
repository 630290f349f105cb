//! Shared by the message-queue scenario examples (included with `#[path]`):
//! where the queue is — a queue-only sluice daemon started in-process on a
//! free loopback port with a temporary data directory, or an existing daemon
//! given by `--url` — plus topic naming and latency figures. Touches a
//! temporary directory, a loopback port and the network.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use serde_json::Value;
use sluice::client::{Client, OutRecord, PullOptions, Pulled};
use sluice_core::Control;
use tokio::task::JoinHandle;

/// Command-line options every scenario shares.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct QueueArgs {
    /// Use this running daemon (e.g. `http://127.0.0.1:8686`, token from
    /// `SLUICE_TOKEN`) instead of starting one in-process.
    #[arg(long)]
    pub url: Option<String>,
}

/// A daemon started in-process by [`Queue::start`].
struct InProcess {
    control: Control,
    task: JoinHandle<ExitCode>,
    _dir: tempfile::TempDir,
}

/// The queue a scenario talks to, and a client of it.
pub struct Queue {
    pub client: Client,
    /// Bearer token of an existing daemon (`SLUICE_TOKEN`).
    token: Option<String>,
    daemon: Option<InProcess>,
    /// Appended to topic names on an existing daemon, so runs do not mix.
    suffix: String,
}

impl Queue {
    /// Connect to `args.url`, or start a queue-only daemon in-process
    /// (`data_dir` in a temporary directory, API on a free loopback port).
    pub async fn start(args: &QueueArgs) -> anyhow::Result<Queue> {
        // reqwest is built without a default TLS provider (as the client is).
        let _ = rustls::crypto::ring::default_provider().install_default();
        if let Some(url) = &args.url {
            let token = std::env::var("SLUICE_TOKEN").ok();
            let client = Client::new(url, token.clone()).map_err(|e| anyhow!("{e}"))?;
            client
                .list_topics()
                .await
                .map_err(|e| anyhow!("cannot reach the daemon at {url}: {e}"))?;
            let ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
            return Ok(Queue {
                client,
                token,
                daemon: None,
                suffix: format!("-{ms}"),
            });
        }
        let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config: PathBuf = dir.path().join("queue.yaml");
        let yaml = format!(
            "data_dir: {}\napi:\n  listen: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        std::fs::write(&config, yaml)?;
        let control = Control::default();
        let task = {
            let control = control.clone();
            tokio::spawn(async move { sluice::daemon::run_with_control(&[config], control).await })
        };
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let http = reqwest::Client::new();
        loop {
            if task.is_finished() {
                let code = task.await?;
                bail!("the in-process daemon exited before serving ({code:?}); see stderr");
            }
            let up = http.get(format!("{base}/health")).send().await;
            if up.is_ok_and(|r| r.status() == 200) {
                break;
            }
            if Instant::now() > deadline {
                bail!("the in-process daemon did not answer /health on {base} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Queue {
            client: Client::new(&base, None).map_err(|e| anyhow!("{e}"))?,
            token: None,
            daemon: Some(InProcess {
                control,
                task,
                _dir: dir,
            }),
            suffix: String::new(),
        })
    }

    /// The name to use for topic `base` (unique per run on an existing daemon).
    pub fn topic(&self, base: &str) -> String {
        format!("{base}{}", self.suffix)
    }

    /// A GET of `path` (e.g. a push subscription) with the daemon's token.
    pub fn get(&self, http: &reqwest::Client, path: &str) -> reqwest::RequestBuilder {
        let r = http.get(format!("{}{path}", self.client.base()));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Where the queue is, for the narration.
    pub fn describe(&self) -> String {
        match &self.daemon {
            Some(_) => format!("in-process sluice daemon at {}", self.client.base()),
            None => format!("sluice daemon at {}", self.client.base()),
        }
    }

    /// Stop the in-process daemon (gracefully) and remove its data directory.
    pub async fn stop(self) -> anyhow::Result<()> {
        if let Some(d) = self.daemon {
            d.control.shutdown.cancel();
            let code = d.task.await?;
            if code != ExitCode::SUCCESS {
                bail!("the in-process daemon stopped with {code:?}");
            }
        }
        Ok(())
    }
}

/// Turn a client error into an `anyhow` error saying what was being done.
pub fn ctx<T>(r: sluice::client::Result<T>, what: &str) -> anyhow::Result<T> {
    r.map_err(|e| anyhow!("{what}: {e}"))
}

/// Pull from a stream group (long polling `wait_ms`) and commit what was
/// returned once `handle` has processed it.
pub async fn pull_stream<F>(
    c: &Client,
    topic: &str,
    group: &str,
    wait_ms: u64,
    mut handle: F,
) -> anyhow::Result<usize>
where
    F: FnMut(&OutRecord),
{
    let o = PullOptions {
        max: 200,
        wait_ms,
        from: Some("earliest".into()),
        ..Default::default()
    };
    let p: Pulled = ctx(c.pull(topic, group, &o).await, "pull")?;
    p.records.iter().for_each(&mut handle);
    let offsets = commit_offsets(&p.commit)?;
    if !offsets.is_empty() {
        ctx(c.commit(topic, group, None, &offsets).await, "commit")?;
    }
    Ok(p.records.len())
}

/// The `commit` array of a stream pull as `(partition, next offset)` pairs.
pub fn commit_offsets(commit: &[Value]) -> anyhow::Result<Vec<(u32, u64)>> {
    commit
        .iter()
        .map(|v| {
            let p = v["partition"].as_u64().and_then(|p| u32::try_from(p).ok());
            match (p, v["offset"].as_u64()) {
                (Some(p), Some(o)) => Ok((p, o)),
                _ => Err(anyhow!("unexpected commit entry {v}")),
            }
        })
        .collect()
}

/// A field of a record's JSON value as a number.
pub fn field(r: &OutRecord, name: &str) -> anyhow::Result<u64> {
    r.value[name]
        .as_u64()
        .ok_or_else(|| anyhow!("record {}-{} has no number {name:?}", r.partition, r.offset))
}

/// The `p`-th percentile (0–100) of `v`, in milliseconds.
pub fn percentile_ms(v: &[Duration], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort();
    let i = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    s[i.min(s.len() - 1)].as_secs_f64() * 1000.0
}

/// `p50 … ms, p99 … ms` of `v`.
pub fn latency(v: &[Duration]) -> String {
    format!(
        "p50 {:>7.2} ms, p99 {:>7.2} ms",
        percentile_ms(v, 50.0),
        percentile_ms(v, 99.0)
    )
}
