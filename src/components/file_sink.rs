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
use schemars::JsonSchema;
use serde::Deserialize;
use sluice_core::config::{ComponentOptions, ConfigError};
use sluice_core::encode::Encoding;
use sluice_core::template::Template;
use sluice_core::{BuildContext, Record, Sink, SinkBatch, SinkError, SinkFactory};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FileSinkOptions {
    path: String,
    #[serde(default)]
    encoding: Encoding,
    #[serde(default)]
    fsync: bool,
    /// Close files not written for this long (default 60 s).
    #[serde(default = "default_idle", with = "sluice_core::config::duration_secs")]
    #[schemars(with = "sluice_core::schema::DurationSecs")]
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

    fn options_schema(
        &self,
        generator: &mut schemars::SchemaGenerator,
    ) -> Option<schemars::Schema> {
        Some(generator.subschema_for::<FileSinkOptions>())
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
                        .read(true)
                        .open(path)?;
                    drop_torn_tail(&file, path)?;
                    self.open.entry(path.clone()).or_insert(OpenFile {
                        file,
                        last_write: now,
                    })
                }
            };
            let written = entry
                .file
                .write_all(buf)
                .and_then(|_| entry.file.flush())
                .and_then(|_| {
                    if self.fsync {
                        entry.file.sync_data()
                    } else {
                        Ok(())
                    }
                });
            if let Err(e) = written {
                // Reopen on retry, which cuts a partly written line.
                self.open.remove(path);
                return Err(e);
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

/// A crash in the middle of a write can leave a last line without its
/// newline. Every acknowledged write ends with one, so such a tail was never
/// acknowledged and will be delivered again: cut it rather than let the
/// re-delivered lines run into it.
fn drop_torn_tail(file: &File, path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    let mut end = len;
    let mut buf = vec![0u8; 64 << 10];
    let keep = loop {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = memchr::memrchr(b'\n', chunk) {
            break start + i as u64 + 1;
        }
        if start == 0 {
            break 0;
        }
        end = start;
    };
    tracing::warn!(
        path = %path.display(),
        "removed {} bytes of a line left incomplete by a crash (it was not acknowledged and is delivered again)",
        len - keep
    );
    file.set_len(keep)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_cut_and_whole_lines_stay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        std::fs::write(&path, b"one\ntwo\nthr").unwrap();
        let f = std::fs::OpenOptions::new()
            .append(true)
            .read(true)
            .open(&path)
            .unwrap();
        drop_torn_tail(&f, &path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one\ntwo\n");
        drop_torn_tail(&f, &path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one\ntwo\n");
        std::fs::write(&path, b"no newline at all").unwrap();
        drop_torn_tail(&f, &path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }
}
