//! The daemon: loads and validates the pipeline, builds it from the
//! component registry, serves the API, runs until the pipeline ends or a
//! signal stops it (first SIGTERM/SIGINT drains, a second one aborts), and
//! reloads it on SIGHUP or, with `--watch-config`, when a file changes
//! (`reload.rs`). Touches the data directory, the API listener and
//! process signals.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sluice_core::config::{self, ConfigError, PipelineConfig};
use sluice_core::{Control, Pipeline, Resources};
use sluice_store::{Store, StoreOptions};

use crate::api;
use crate::reload::{self, Reloader, Trigger};

fn print_errors(errors: &[ConfigError]) {
    for e in errors {
        eprintln!("error: {e}");
    }
    eprintln!(
        "{} error{} found",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
}

/// `sluice validate`: 0 when valid, 1 with every error listed.
pub fn validate(files: &[PathBuf]) -> ExitCode {
    let registry = crate::components::registry();
    match config::load(files, &registry) {
        Ok(cfg) => {
            println!(
                "valid: {} source{}, {} sink{}",
                cfg.sources.len(),
                if cfg.sources.len() == 1 { "" } else { "s" },
                cfg.sinks.len(),
                if cfg.sinks.len() == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            print_errors(&errors);
            ExitCode::from(1)
        }
    }
}

/// Refuses an API on a non-loopback address without a token.
fn check_api_security(cfg: &PipelineConfig) -> Result<(), String> {
    let api = &cfg.api;
    if api.enabled && !api.listen.ip().is_loopback() && api.auth_token.is_none() {
        return Err(format!(
            "api.listen is {}, which is not a loopback address: set api.auth_token (clients send it as `Authorization: Bearer …`) or listen on 127.0.0.1",
            api.listen
        ));
    }
    Ok(())
}

async fn serve_api(
    listen: SocketAddr,
    tls: Option<&sluice_core::config::TlsFiles>,
    app: axum::Router,
    stop: tokio_util::sync::CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let tls_cfg = match tls {
        Some(t) => Some(api::tls::server_config(&t.cert, &t.key)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen} for the API: {e}"))?;
    let scheme = if tls_cfg.is_some() { "https" } else { "http" };
    tracing::info!(
        "API on {scheme}://{listen} (/health, /metrics, /api/v1/topics, /api/v1/openapi.json)"
    );
    let done = async move { stop.cancelled().await };
    Ok(match tls_cfg {
        Some(cfg) => {
            let l = api::tls::TlsListener::new(listener, cfg)
                .map_err(|e| format!("cannot listen on {listen} for the API: {e}"))?;
            tokio::spawn(async move {
                let _ = axum::serve(l, app).with_graceful_shutdown(done).await;
            })
        }
        None => tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(done)
                .await;
        }),
    })
}

/// The `store:` section of the pipeline file, as far as the API reads it.
#[derive(serde::Deserialize)]
struct StoreSection {
    #[serde(default = "default_true")]
    auto_create_topics: bool,
}

fn default_true() -> bool {
    true
}

fn auto_create_topics(cfg: &PipelineConfig) -> Result<bool, String> {
    match &cfg.store {
        None => Ok(true),
        Some(o) => o
            .deserialize::<StoreSection>()
            .map(|s| s.auto_create_topics)
            .map_err(|e| e.to_string()),
    }
}

/// Turns SIGTERM/SIGINT into a graceful stop, a second one into an abort.
fn watch_signals(control: Control) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        for n in 0.. {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if n == 0 {
                tracing::info!("stop requested; send the signal again to stop at once");
                control.shutdown.cancel();
            } else {
                control.abort.cancel();
                return;
            }
        }
    });
}

/// Opens the embedded store under `data_dir/store` and reports what its
/// recovery found.
fn open_store(cfg: &PipelineConfig) -> Result<Arc<Store>, String> {
    let dir = cfg.data_dir.join("store");
    let store = Store::open(&dir, StoreOptions::default())
        .map_err(|e| format!("cannot open the store in {}: {e}", dir.display()))?;
    for event in store.recovery_events() {
        tracing::warn!("store recovery: {event:?}");
    }
    Ok(Arc::new(store))
}

/// How long open API connections may take to finish once the daemon stops.
const API_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// `sluice run`: [`run_with_reloads`] stopped by SIGTERM/SIGINT and
/// reloaded by SIGHUP and, with `watch_config`, by changes of the files.
pub async fn run(files: &[PathBuf], watch_config: bool) -> ExitCode {
    let control = Control::default();
    watch_signals(control.clone());
    let (triggers, reloads) = tokio::sync::mpsc::unbounded_channel();
    if let Err(e) = reload::on_sighup(triggers.clone()) {
        eprintln!("error: cannot install the SIGHUP handler: {e}");
        return ExitCode::from(4);
    }
    let _watcher = if watch_config {
        match reload::watch_files(files, triggers.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(4);
            }
        }
    } else {
        None
    };
    run_with_reloads(files, control, Some(reloads)).await
}

/// Runs the daemon of `files` until `control` stops it (or the pipeline
/// ends). Installs no signal handlers, so a program can embed a daemon:
/// the scenario examples and tests start one in-process this way.
pub async fn run_with_control(files: &[PathBuf], control: Control) -> ExitCode {
    run_with_reloads(files, control, None).await
}

/// [`run_with_control`], reloading the files whenever `reloads` yields.
pub async fn run_with_reloads(
    files: &[PathBuf],
    control: Control,
    reloads: Option<tokio::sync::mpsc::UnboundedReceiver<Trigger>>,
) -> ExitCode {
    let registry = crate::components::registry();
    let cfg = match config::load(files, &registry) {
        Ok(cfg) => cfg,
        Err(errors) => {
            print_errors(&errors);
            return ExitCode::from(1);
        }
    };
    if let Err(e) = check_api_security(&cfg) {
        eprintln!("error: {e}");
        return ExitCode::from(4);
    }
    if let Err(e) = std::fs::create_dir_all(&cfg.data_dir) {
        eprintln!(
            "error: cannot create data_dir {}: {e}",
            cfg.data_dir.display()
        );
        return ExitCode::from(4);
    }
    let resources = Resources::default();
    let store = match open_store(&cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(4);
        }
    };
    resources.insert(store.clone());
    let pipeline = match Pipeline::from_config(&cfg, &registry, resources.clone()) {
        // Without sources the daemon serves the queue API until stopped.
        Ok(p) => p.with_idle(cfg.sources.is_empty()),
        Err(errors) => {
            print_errors(&errors);
            return ExitCode::from(1);
        }
    };
    let api_stop = tokio_util::sync::CancellationToken::new();
    let queue_only_flag = Arc::new(AtomicBool::new(cfg.sources.is_empty()));
    let api_task = if cfg.api.enabled {
        let auto_create = match auto_create_topics(&cfg) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        };
        let mut state = api::ApiState::new(pipeline.metrics(), pipeline.state());
        state.store = Some(store.clone());
        state.auth_token = cfg.api.auth_token.as_deref().map(Into::into);
        state.auto_create_topics = auto_create;
        state.queue_only = queue_only_flag.clone();
        let app = api::router(state);
        match serve_api(cfg.api.listen, cfg.api.tls.as_ref(), app, api_stop.clone()).await {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(4);
            }
        }
    } else {
        None
    };
    let reloader = reloads.map(|triggers| {
        let r = Reloader::new(files, registry, resources, &cfg, pipeline.handle());
        tokio::spawn(r.run(triggers))
    });
    let result = pipeline.run(control.clone()).await;
    if let Some(r) = reloader {
        r.abort();
        // Its hold on the store goes before this returns.
        let _ = r.await;
    }
    queue_only_flag.store(false, Ordering::Relaxed);
    api_stop.cancel();
    if let Some(mut t) = api_task {
        // Open connections get a moment to finish; a client that stopped
        // reading (a tap or push stream with a full socket) must not keep
        // the daemon from exiting.
        if tokio::time::timeout(API_CLOSE_GRACE, &mut t).await.is_err() {
            tracing::warn!("closing API connections that did not finish in time");
            t.abort();
            let _ = t.await;
        }
    }
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
    }
}
