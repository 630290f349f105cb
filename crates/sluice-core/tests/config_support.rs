//! Test support for the config tests: a registry of dummy components whose
//! factories only deserialize their options (like real ones, they touch
//! nothing outside), and helpers to load YAML text. Included by the
//! `config_*` tests with `#[path]`; has no tests of its own.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use async_trait::async_trait;
use serde::Deserialize;
use sluice_core::config::{self, ComponentOptions, ConfigError, PipelineConfig};
use sluice_core::{
    BuildContext, Registry, Sink, SinkBatch, SinkError, SinkFactory, Source, SourceContext,
    SourceFactory,
};

struct Nothing;

#[async_trait]
impl Source for Nothing {
    async fn run(self: Box<Self>, _cx: SourceContext) -> anyhow::Result<()> {
        Ok(())
    }
}

#[async_trait]
impl Sink for Nothing {
    async fn write(&mut self, _batch: &SinkBatch) -> Result<(), SinkError> {
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOptions {
    pub include: Vec<String>,
    #[serde(default)]
    pub read_from: Option<String>,
    #[serde(default, deserialize_with = "config::size_bytes::option::deserialize")]
    pub max_line_bytes: Option<usize>,
}

#[derive(Deserialize)]
pub struct MysqlOptions {
    pub url: String,
    pub server_id: u32,
    #[serde(default)]
    pub include_tables: Vec<String>,
    #[serde(default)]
    pub snapshot: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Deserialize)]
pub struct HttpOptions {
    pub listen: SocketAddr,
    #[serde(default, deserialize_with = "config::duration_ms::option::deserialize")]
    pub timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
pub struct GeneratorOptions {
    #[serde(default)]
    pub count: Option<u64>,
    #[serde(default, deserialize_with = "config::duration_ms::option::deserialize")]
    pub interval_ms: Option<u64>,
    #[serde(
        default,
        deserialize_with = "config::duration_secs::option::deserialize"
    )]
    pub run_secs: Option<u64>,
    #[serde(default, deserialize_with = "config::size_bytes::option::deserialize")]
    pub line_bytes: Option<usize>,
    #[serde(default)]
    pub format: Format,
}

#[derive(Deserialize, Default, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    ApacheCommon,
    Json,
    Syslog,
}

#[derive(Deserialize)]
pub struct StoreSourceOptions {
    pub topic: String,
    pub group: String,
}

#[derive(Deserialize)]
pub struct StoreSinkOptions {
    pub topic: String,
}

#[derive(Deserialize)]
pub struct KafkaOptions {
    pub brokers: Vec<String>,
    pub topic: String,
}

#[derive(Deserialize)]
pub struct MysqlSinkOptions {
    pub url: String,
}

#[derive(Deserialize)]
pub struct FileSinkOptions {
    pub path: PathBuf,
    #[serde(default)]
    pub fsync: bool,
}

#[derive(Deserialize)]
pub struct Empty {}

macro_rules! source {
    ($t:ident, $kind:literal, $opts:ty, $answers:expr) => {
        struct $t;
        impl SourceFactory for $t {
            fn kind(&self) -> &'static str {
                $kind
            }
            fn answers_clients(&self) -> bool {
                $answers
            }
            fn build(
                &self,
                _cx: &BuildContext,
                options: &ComponentOptions,
            ) -> Result<Box<dyn Source>, ConfigError> {
                options.deserialize::<$opts>()?;
                Ok(Box::new(Nothing))
            }
        }
    };
}

macro_rules! sink {
    ($t:ident, $kind:literal, $opts:ty) => {
        struct $t;
        impl SinkFactory for $t {
            fn kind(&self) -> &'static str {
                $kind
            }
            fn build(
                &self,
                _cx: &BuildContext,
                options: &ComponentOptions,
            ) -> Result<Box<dyn Sink>, ConfigError> {
                options.deserialize::<$opts>()?;
                Ok(Box::new(Nothing))
            }
        }
    };
}

source!(FileSource, "file", FileOptions, false);
struct MysqlSource;

/// Like a careless real component, quotes its `url` in an error: the
/// loader must still keep secrets out.
impl SourceFactory for MysqlSource {
    fn kind(&self) -> &'static str {
        "mysql"
    }
    fn build(
        &self,
        _cx: &BuildContext,
        options: &ComponentOptions,
    ) -> Result<Box<dyn Source>, ConfigError> {
        let o: MysqlOptions = options.deserialize()?;
        if !o.url.starts_with("mysql://") {
            let msg = format!("invalid url `{}`: expected mysql://", o.url);
            return Err(ConfigError::new(options.location_of("url").clone(), msg));
        }
        Ok(Box::new(Nothing))
    }
}
source!(HttpSource, "http", HttpOptions, true);
source!(GeneratorSource, "generator", GeneratorOptions, false);
source!(StoreSource, "store", StoreSourceOptions, false);
source!(StdinSource, "stdin", Empty, false);
sink!(StoreSink, "store", StoreSinkOptions);
sink!(KafkaSink, "kafka", KafkaOptions);
sink!(MysqlSink, "mysql", MysqlSinkOptions);
sink!(FileSink, "file", FileSinkOptions);
sink!(ConsoleSink, "console", Empty);

pub fn registry() -> Registry {
    let mut r = Registry::default();
    r.add_source(FileSource);
    r.add_source(MysqlSource);
    r.add_source(HttpSource);
    r.add_source(GeneratorSource);
    r.add_source(StoreSource);
    r.add_source(StdinSource);
    r.add_sink(StoreSink);
    r.add_sink(KafkaSink);
    r.add_sink(MysqlSink);
    r.add_sink(FileSink);
    r.add_sink(ConsoleSink);
    r
}

pub fn load(text: &str) -> Result<PipelineConfig, Vec<ConfigError>> {
    config::load_str("p.yaml", text, &registry())
}

/// Loads text that must fail with exactly one error; returns it.
#[track_caller]
pub fn one_error(text: &str) -> ConfigError {
    match load(text) {
        Ok(_) => panic!("expected an error"),
        Err(mut e) => {
            assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
            e.remove(0)
        }
    }
}

/// Asserts an error's line, column and that its message contains `needle`.
#[track_caller]
pub fn assert_at(e: &ConfigError, line: usize, column: usize, needle: &str) {
    assert_eq!(
        (e.location.line, e.location.column),
        (line, column),
        "wrong place for {e}"
    );
    assert!(
        e.message.contains(needle),
        "`{}` lacks `{needle}`",
        e.message
    );
    assert_eq!(e.location.file, PathBuf::from("p.yaml"));
}

/// A valid minimal pipeline around `sources` and `sinks` text.
pub const HEAD: &str = "sources:\n  gen:\n    type: generator\n";
