//! Topic settings as users write them (in a `store` sink, in the API's
//! topic create call): `partitions`, `fsync: always | never | 20ms`,
//! `segment_max_bytes`, `retention: {max_bytes, max_age}`, `limits:
//! {max_messages, max_bytes, on_full}`, `dead_letter_topic`; mapped onto
//! the store's `TopicConfig`. Touches only memory.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use sluice_store::{FsyncPolicy, Limits, OnFull, Retention, TopicConfig};

/// `fsync:` — `always`, `never`, or an interval such as `20ms` (group commit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fsync(pub FsyncPolicy);

impl<'de> Deserialize<'de> for Fsync {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fsync, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "always" => Ok(Fsync(FsyncPolicy::Always)),
            "never" => Ok(Fsync(FsyncPolicy::Never)),
            other => sluice_core::config::parse_duration(other, 1)
                .ok()
                .filter(|ms| *ms > 0)
                .map(|ms| Fsync(FsyncPolicy::Interval { ms }))
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "fsync must be `always`, `never` or an interval like `20ms`, not `{other}`"
                    ))
                }),
        }
    }
}

impl JsonSchema for Fsync {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Fsync".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let interval = g.subschema_for::<sluice_core::schema::DurationMs>();
        schemars::json_schema!({
            "description": "`always`, `never`, or a group-commit interval such as `20ms`",
            "anyOf": [{"enum": ["always", "never"]}, interval]
        })
    }
}

fn on_full_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"enum": ["reject", "drop_oldest"]})
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    #[serde(default, with = "sluice_core::config::size_bytes::option")]
    #[schemars(with = "Option<sluice_core::schema::Size>")]
    pub max_bytes: Option<u64>,
    #[serde(default, with = "sluice_core::config::duration_ms::option")]
    #[schemars(with = "Option<sluice_core::schema::DurationMs>")]
    pub max_age: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    pub max_messages: Option<u64>,
    #[serde(default, with = "sluice_core::config::size_bytes::option")]
    #[schemars(with = "Option<sluice_core::schema::Size>")]
    pub max_bytes: Option<u64>,
    #[serde(default)]
    #[schemars(schema_with = "on_full_schema")]
    pub on_full: OnFull,
}

/// Settings of a topic the sink or the API creates.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicSettings {
    pub partitions: Option<u32>,
    pub fsync: Option<Fsync>,
    #[serde(default, with = "sluice_core::config::size_bytes::option")]
    #[schemars(with = "Option<sluice_core::schema::Size>")]
    pub segment_max_bytes: Option<u64>,
    #[serde(default)]
    pub retention: RetentionSettings,
    #[serde(default)]
    pub limits: LimitSettings,
    pub dead_letter_topic: Option<String>,
}

impl TopicSettings {
    pub fn to_config(&self) -> TopicConfig {
        let d = TopicConfig::default();
        TopicConfig {
            partitions: self.partitions.unwrap_or(d.partitions),
            fsync: self.fsync.map_or(d.fsync, |f| f.0),
            segment_max_bytes: self.segment_max_bytes.unwrap_or(d.segment_max_bytes),
            index_interval_bytes: d.index_interval_bytes,
            retention: Retention {
                max_bytes: self.retention.max_bytes,
                max_age_ms: self.retention.max_age,
            },
            limits: Limits {
                max_messages: self.limits.max_messages,
                max_bytes: self.limits.max_bytes,
                on_full: self.limits.on_full,
            },
            dead_letter_topic: self.dead_letter_topic.clone(),
        }
    }
}
