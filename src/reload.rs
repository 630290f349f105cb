//! Configuration reload for the daemon: SIGHUP and `--watch-config` (a
//! `notify` watch on every `-c` file, debounced) both ask the [`Reloader`],
//! which loads and validates the files again, refuses settings that cannot
//! change while running (`data_dir`, `api.*`, `store`), builds the new
//! pipeline and hands it to the running one. A rejected reload logs every
//! error (file:line:column) and leaves the running pipeline as it was.
//! Touches the pipeline files, inotify watches and the SIGHUP handler.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use sluice_core::config::{self, ApiConfig, ConfigError, PipelineConfig};
use sluice_core::{Pipeline, PipelineHandle, Registry, ReloadReport, Resources};
use tokio::sync::mpsc;

/// Why a reload was asked for (logged).
pub type Trigger = &'static str;

/// Quiet time after a file event before the files are read: editors write
/// a file in several steps.
const DEBOUNCE: Duration = Duration::from_millis(300);
/// Longest wait for quiet, so a file written continuously still reloads.
const DEBOUNCE_MAX: Duration = Duration::from_secs(2);

/// The settings a reload cannot change, as they were at start.
struct Fixed {
    data_dir: PathBuf,
    api: ApiConfig,
    store: Option<serde_json::Value>,
}

impl Fixed {
    fn of(cfg: &PipelineConfig) -> Fixed {
        Fixed {
            data_dir: cfg.data_dir.clone(),
            api: cfg.api.clone(),
            store: cfg
                .store
                .as_ref()
                .and_then(|s| s.deserialize::<serde_json::Value>().ok()),
        }
    }

    /// Names the first setting of `new` that differs and why it cannot.
    fn check(&self, new: &PipelineConfig) -> Result<(), String> {
        let restart = "cannot change while sluice runs; restart sluice to apply it";
        if new.data_dir != self.data_dir {
            return Err(format!(
                "`data_dir` {restart} (running with {}, the file says {})",
                self.data_dir.display(),
                new.data_dir.display()
            ));
        }
        let (a, b) = (&self.api, &new.api);
        if a.enabled != b.enabled {
            return Err(format!("`api.enabled` {restart}"));
        }
        if a.listen != b.listen {
            return Err(format!(
                "`api.listen` {restart} (running on {}, the file says {})",
                a.listen, b.listen
            ));
        }
        if a.auth_token != b.auth_token {
            return Err(format!("`api.auth_token` {restart}"));
        }
        let tls = |t: &ApiConfig| t.tls.as_ref().map(|t| (t.cert.clone(), t.key.clone()));
        if tls(a) != tls(b) {
            return Err(format!("`api.tls` {restart}"));
        }
        let store = new
            .store
            .as_ref()
            .and_then(|s| s.deserialize::<serde_json::Value>().ok());
        if store != self.store {
            let at = new
                .store
                .as_ref()
                .map(|s| format!("{}: ", s.location()))
                .unwrap_or_default();
            return Err(format!("{at}`store` settings {restart}"));
        }
        Ok(())
    }
}

/// Loads the pipeline files again on request and reloads the running
/// pipeline with them.
pub struct Reloader {
    files: Vec<PathBuf>,
    registry: Registry,
    resources: Resources,
    fixed: Fixed,
    handle: PipelineHandle,
}

impl Reloader {
    pub fn new(
        files: &[PathBuf],
        registry: Registry,
        resources: Resources,
        running: &PipelineConfig,
        handle: PipelineHandle,
    ) -> Reloader {
        Reloader {
            files: files.to_vec(),
            registry,
            resources,
            fixed: Fixed::of(running),
            handle,
        }
    }

    /// Reloads once per trigger (triggers that queued up meanwhile count
    /// once) until the trigger channel closes.
    pub async fn run(self, mut triggers: mpsc::UnboundedReceiver<Trigger>) {
        while let Some(why) = triggers.recv().await {
            while triggers.try_recv().is_ok() {}
            let _ = self.reload(why).await;
        }
    }

    /// One reload; every outcome is logged.
    pub async fn reload(&self, why: Trigger) -> Result<ReloadReport, ()> {
        tracing::info!("reloading the configuration ({why})");
        let cfg = match config::load(&self.files, &self.registry) {
            Ok(cfg) => cfg,
            Err(errors) => {
                reject_errors(&errors);
                return Err(());
            }
        };
        if let Err(e) = self.fixed.check(&cfg) {
            tracing::error!("reload rejected: {e}; still running the previous configuration");
            return Err(());
        }
        let next = match Pipeline::from_config(&cfg, &self.registry, self.resources.clone()) {
            Ok(p) => p.with_idle(cfg.sources.is_empty()),
            Err(errors) => {
                reject_errors(&errors);
                return Err(());
            }
        };
        match self.handle.reload(next).await {
            Ok(report) => {
                tracing::info!("configuration reloaded: {report}");
                Ok(report)
            }
            Err(e) => {
                tracing::error!("reload rejected: {e:#}; still running the previous configuration");
                Err(())
            }
        }
    }
}

fn reject_errors(errors: &[ConfigError]) {
    for e in errors {
        tracing::error!("reload rejected: {e}");
    }
    tracing::error!(
        "reload rejected: {} error{} in the new configuration; still running the previous configuration",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
}

/// Sends a trigger on every SIGHUP. The handler is installed before this
/// returns, so a SIGHUP from then on never kills the process.
pub fn on_sighup(tx: mpsc::UnboundedSender<Trigger>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            if tx.send("SIGHUP").is_err() {
                return;
            }
        }
    });
    Ok(())
}

/// Contents of every file (missing ones as `None`), to tell a real change
/// from an event that changed nothing.
fn contents(files: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    files.iter().map(|f| std::fs::read(f).ok()).collect()
}

/// Watches every pipeline file (through its directory, so that editors
/// that replace the file are seen too) and sends a trigger when, after
/// [`DEBOUNCE`] of quiet, their contents differ from the last seen. Keep
/// the returned watcher alive as long as the watch should last.
pub fn watch_files(
    files: &[PathBuf],
    tx: mpsc::UnboundedSender<Trigger>,
) -> Result<RecommendedWatcher, String> {
    let files: Vec<PathBuf> = files
        .iter()
        .map(|f| std::path::absolute(f).unwrap_or_else(|_| f.clone()))
        .collect();
    let names: HashSet<(PathBuf, OsString)> = files
        .iter()
        .filter_map(|f| Some((dir_of(f), f.file_name()?.to_os_string())))
        .collect();
    let (events_tx, mut events) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        let relevant = match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) | EventKind::Other => false,
            _ => true,
        };
        let ours = event.paths.iter().any(|p| {
            p.file_name()
                .is_some_and(|n| names.contains(&(dir_of(p), n.to_os_string())))
        });
        if relevant && ours {
            let _ = events_tx.send(());
        }
    })
    .map_err(|e| format!("--watch-config: cannot watch files: {e}"))?;
    let dirs: HashSet<PathBuf> = files.iter().map(|f| dir_of(f)).collect();
    for dir in &dirs {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| format!("--watch-config: cannot watch {}: {e}", dir.display()))?;
    }
    tracing::info!(
        "watching {} pipeline file{} for changes",
        files.len(),
        if files.len() == 1 { "" } else { "s" }
    );
    let mut seen = contents(&files);
    tokio::spawn(async move {
        while events.recv().await.is_some() {
            let until = tokio::time::Instant::now() + DEBOUNCE_MAX;
            while let Ok(Some(())) = tokio::time::timeout_at(
                until.min(tokio::time::Instant::now() + DEBOUNCE),
                events.recv(),
            )
            .await
            {}
            let files = files.clone();
            let now = tokio::task::spawn_blocking(move || contents(&files))
                .await
                .unwrap_or_default();
            if now != seen {
                seen = now;
                if tx.send("a pipeline file changed").is_err() {
                    return;
                }
            }
        }
    });
    Ok(watcher)
}

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
