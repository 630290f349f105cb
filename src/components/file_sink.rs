//! Sink `file`: appends records to files named by a template (`{source}`,
//! `{date}`, record fields), as text or JSON lines. Each batch is encoded
//! and written with one write per file, flushed, and with `fsync: true`
//! synced before it is acknowledged. The writing happens on the blocking
//! pool. Touches only the files its template names.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::Deserialize;
use sluice_core::config::{ComponentOptions, ConfigError};
use sluice_core::encode::Encoding;
use sluice_core::template::Template;
use sluice_core::{BuildContext, Record, Sink, SinkBatch, SinkError, SinkFactory};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSinkOptions {
    path: String,
    #[serde(default)]
    encoding: Encoding,
    #[serde(default)]
    fsync: bool,
    /// Close files not written for this long (default 60 s).
    #[serde(default = "default_idle", with = "sluice_core::config::duration_secs")]
    idle_close_secs: u64,
}

fn default_idle() -> u64 {
    60
}

pub struct FileSinkFactory;

impl SinkFactory for FileSinkFactory {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn build(
        &self,
        _cx: &BuildContext,
        options: &ComponentOptions,
    ) -> Result<Box<dyn Sink>, ConfigError> {
        let opts: FileSinkOptions = options.deserialize()?;
        let template = Template::parse(&opts.path).map_err(|message| ConfigError {
            location: options.location().clone(),
            message: format!("path: {message}"),
            hint: None,
        })?;
        Ok(Box::new(FileSink {
            state: Arc::new(Mutex::new(Files {
                template,
                encoding: opts.encoding,
                fsync: opts.fsync,
                idle_close: std::time::Duration::from_secs(opts.idle_close_secs),
                open: HashMap::new(),
                buffers: HashMap::new(),
                name: String::new(),
            })),
        }))
    }
}

struct OpenFile {
    file: File,
    last_write: std::time::Instant,
}

struct Files {
    template: Template,
    encoding: Encoding,
    fsync: bool,
    idle_close: std::time::Duration,
    open: HashMap<PathBuf, OpenFile>,
    /// Reused per-path encode buffers.
    buffers: HashMap<PathBuf, Vec<u8>>,
    name: String,
}

impl Files {
    fn write(&mut self, parts: &[(Arc<str>, Arc<[Record]>)]) -> std::io::Result<()> {
        let static_path = self
            .template
            .is_static()
            .then(|| PathBuf::from(self.template.render("", &Record::default())));
        for b in self.buffers.values_mut() {
            b.clear();
        }
        for (source, records) in parts {
            for record in records.iter() {
                let path = match &static_path {
                    Some(p) => p.clone(),
                    None => {
                        self.template.render_into(source, record, &mut self.name);
                        PathBuf::from(&self.name)
                    }
                };
                let buf = self.buffers.entry(path).or_default();
                self.encoding.encode(record, buf);
            }
        }
        let now = std::time::Instant::now();
        for (path, buf) in &self.buffers {
            if buf.is_empty() {
                continue;
            }
            let entry = match self.open.get_mut(path) {
                Some(f) => f,
                None => {
                    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir)?;
                    }
                    let file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)?;
                    self.open.entry(path.clone()).or_insert(OpenFile {
                        file,
                        last_write: now,
                    })
                }
            };
            entry.file.write_all(buf)?;
            entry.file.flush()?;
            if self.fsync {
                entry.file.sync_data()?;
            }
            entry.last_write = now;
        }
        let idle = self.idle_close;
        self.open
            .retain(|_, f| now.duration_since(f.last_write) < idle);
        self.buffers.retain(|_, b| !b.is_empty());
        Ok(())
    }
}

struct FileSink {
    state: Arc<Mutex<Files>>,
}

#[async_trait]
impl Sink for FileSink {
    async fn write(&mut self, batch: &SinkBatch) -> Result<(), SinkError> {
        // Only the records travel to the blocking pool; acknowledgements
        // stay with the engine.
        let parts: Vec<_> = batch
            .parts
            .iter()
            .map(|b| (b.source.clone(), b.records.clone()))
            .collect();
        let state = self.state.clone();
        let result = tokio::task::spawn_blocking(move || state.lock().write(&parts)).await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SinkError::retryable(anyhow::anyhow!("writing file: {e}"))),
            Err(e) => Err(SinkError::Fatal(anyhow::anyhow!(
                "file writer panicked: {e}"
            ))),
        }
    }

    async fn close(&mut self) -> anyhow::Result<()> {
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = state.lock();
            for f in s.open.values_mut() {
                f.file.sync_data()?;
            }
            s.open.clear();
            Ok::<_, std::io::Error>(())
        })
        .await??;
        Ok(())
    }
}
