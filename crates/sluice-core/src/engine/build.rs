//! Building a [`Pipeline`] from a loaded configuration: every component is
//! made by its factory (which touches nothing outside), and each gets the
//! fingerprint a reload compares — its type, its own options and its
//! engine settings. Touches nothing but memory.

use std::time::Duration;

use serde_json::json;

use super::{Fingerprint, Pipeline, SinkSettings};
use crate::component::{BuildContext, Registry, Resources};
use crate::config::{ComponentOptions, ConfigError, PipelineConfig, SinkConfig, SourceConfig};

impl Pipeline {
    /// Builds every component of a loaded configuration.
    pub fn from_config(
        config: &PipelineConfig,
        registry: &Registry,
        resources: Resources,
    ) -> Result<Pipeline, Vec<ConfigError>> {
        let mut p = Pipeline::new(&config.data_dir)
            .with_checkpoint_interval(Duration::from_millis(config.checkpoint_interval_ms))
            .with_shutdown_timeout(Duration::from_secs(config.shutdown_timeout_secs))
            .with_resources(resources);
        let mut errors = Vec::new();
        let unknown = |kind: &str, loc: &crate::config::Location| ConfigError {
            location: loc.clone(),
            message: format!("unknown component type `{kind}`"),
            hint: None,
        };
        for s in config.sources.values() {
            let cx = BuildContext {
                name: &s.name,
                data_dir: &config.data_dir,
                resources: &p.resources,
            };
            match registry.source(&s.kind).map(|f| f.build(&cx, &s.options)) {
                Some(Ok(src)) => {
                    let fp = source_fingerprint(s, config.checkpoint_interval_ms);
                    p.push_source(&s.name, &s.kind, src, s.queue, fp)
                }
                Some(Err(e)) => errors.push(e),
                None => errors.push(unknown(&s.kind, &s.location)),
            }
        }
        for s in config.sinks.values() {
            let cx = BuildContext {
                name: &s.name,
                data_dir: &config.data_dir,
                resources: &p.resources,
            };
            let settings = SinkSettings {
                inputs: s.inputs.clone(),
                condition: s.condition.clone(),
                buffer: s.buffer,
                batch: s.batch,
                retry: s.retry,
                on_error: s.on_error,
                dead_letter_path: s.dead_letter_path.clone(),
            };
            match registry.sink(&s.kind).map(|f| f.build(&cx, &s.options)) {
                Some(Ok(sink)) => {
                    p.push_sink(&s.name, &s.kind, sink, settings, sink_fingerprint(s))
                }
                Some(Err(e)) => errors.push(e),
                None => errors.push(unknown(&s.kind, &s.location)),
            }
        }
        if errors.is_empty() {
            Ok(p)
        } else {
            Err(errors)
        }
    }
}

/// The options as plain data (positions left out), or `None` when they do
/// not read as such — then the component is always rebuilt.
fn options_value(options: &ComponentOptions) -> Option<serde_json::Value> {
    options.deserialize::<serde_json::Value>().ok()
}

/// A source restarts when its type, options, queue or the checkpoint
/// interval it was started with change.
fn source_fingerprint(s: &SourceConfig, checkpoint_interval_ms: u64) -> Fingerprint {
    Some(json!({
        "type": s.kind,
        "options": options_value(&s.options)?,
        "queue": format!("{:?}", s.queue),
        "checkpoint_interval_ms": checkpoint_interval_ms,
    }))
}

/// A sink is rebuilt when anything but its `inputs` and `where` changes
/// (those only re-route it).
fn sink_fingerprint(s: &SinkConfig) -> Fingerprint {
    Some(json!({
        "type": s.kind,
        "options": options_value(&s.options)?,
        "buffer": format!("{:?}", s.buffer),
        "batch": format!("{:?}", s.batch),
        "retry": format!("{:?}", s.retry),
        "on_error": format!("{:?}", s.on_error),
        "dead_letter_path": s.dead_letter_path,
    }))
}
