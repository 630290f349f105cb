//! The daemon: loads and validates the pipeline, builds it from the
//! component registry, serves the API, runs until the pipeline ends or a
//! signal stops it (first SIGTERM/SIGINT drains, a second one aborts).
//! Touches the data directory, the API listener and process signals.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use sluice_core::config::{self, ConfigError, PipelineConfig};
use sluice_core::{Control, Pipeline, Resources};
use sluice_store::{Store, StoreOptions};

use crate::api;

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
    app: axum::Router,
    stop: tokio_util::sync::CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen} for the API: {e}"))?;
    tracing::info!("API on http://{listen} (/health, /metrics, /api/v1/components)");
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    }))
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

/// `sluice run`.
pub async fn run(files: &[PathBuf]) -> ExitCode {
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
    let pipeline = match Pipeline::from_config(&cfg, &registry, resources) {
        Ok(p) => p,
        Err(errors) => {
            print_errors(&errors);
            return ExitCode::from(1);
        }
    };
    let control = Control::default();
    watch_signals(control.clone());
    let api_stop = tokio_util::sync::CancellationToken::new();
    let api_task = if cfg.api.enabled {
        let app = api::router(api::ApiState {
            metrics: pipeline.metrics(),
            state: pipeline.state(),
        });
        match serve_api(cfg.api.listen, app, api_stop.clone()).await {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(4);
            }
        }
    } else {
        None
    };
    let queue_only = cfg.sources.is_empty();
    let result = pipeline.run(control.clone()).await;
    if queue_only && result.is_ok() {
        // No pipeline: serve the API until stopped.
        control.shutdown.cancelled().await;
    }
    api_stop.cancel();
    if let Some(t) = api_task {
        let _ = t.await;
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
