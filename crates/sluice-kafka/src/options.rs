//! The `type: kafka` option structs of the sink and the source, as written in
//! a pipeline file, and their validation into settings the components use.
//!
//! Secrets (`sasl.password`, `tls.key_password`, sensitive
//! `librdkafka_options`) are held in [`Secret`], whose `Debug` never shows
//! the value. A secret written as `${NAME}` that reached us unexpanded is
//! read from the environment. Touches memory, the environment and (to check
//! that TLS files exist) file metadata; never the network.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;
use sluice_core::config::{ComponentOptions, ConfigError};

/// A string that is never logged.
#[derive(Clone, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The value, with an unexpanded `${NAME}` taken from the environment.
    pub fn expose(&self) -> Result<String, String> {
        expand_env(&self.0)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Replaces every `${NAME}` by the environment variable `NAME`.
pub fn expand_env(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unclosed `${` in a secret".to_string())?;
        let name = &after[..end];
        let value =
            std::env::var(name).map_err(|_| format!("environment variable `{name}` is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `tls:` — encrypt the connection (and optionally authenticate with a
/// client certificate).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// CA bundle (PEM) to verify the brokers; the system store when absent.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// Client private key (PEM), for mutual TLS.
    pub key_file: Option<PathBuf>,
    pub key_password: Option<Secret>,
    /// Check the broker's host name against its certificate. Default true.
    #[serde(default = "yes")]
    pub verify_hostname: bool,
}

/// SASL mechanisms librdkafka supports without extra system libraries.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, JsonSchema)]
#[schemars(transform = |s: &mut schemars::Schema| sluice_core::schema::enum_aliases(s, &["plain", "scram-sha-256", "scram-sha-512"]))]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN", alias = "plain")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256", alias = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512", alias = "scram-sha-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// `sasl:` — authenticate with a user name and password.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SaslOptions {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: Secret,
}

/// Record compression on the wire.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// `encoding:` of the sink.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EncodingOption {
    /// The payload as it is; row changes as their JSON envelope.
    #[default]
    Raw,
    Json,
}

/// `start:` of the source, for partitions the group has no offset for.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    #[default]
    Earliest,
    Latest,
}

/// Keys every Kafka component shares: where the brokers are and how to
/// talk to them.
#[derive(Debug, Clone)]
pub struct Connection {
    pub brokers: Vec<String>,
    pub tls: Option<TlsOptions>,
    pub sasl: Option<SaslOptions>,
    /// `librdkafka_options`, applied last (they override our defaults).
    pub extra: BTreeMap<String, Secret>,
}

/// Options of the sink `type: kafka`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SinkOptions {
    pub brokers: Vec<String>,
    /// Topic name, with placeholders (`cdc.{database}.{table}`, `{source}`, …).
    pub topic: String,
    /// `primary_key` (the default), `none`, or a field name.
    #[serde(default = "primary_key")]
    pub key: String,
    #[serde(default)]
    pub encoding: EncodingOption,
    #[serde(default)]
    pub compression: Compression,
    /// Add record metadata (file path and host, database/table/op) as headers.
    #[serde(default = "yes")]
    pub metadata_headers: bool,
    /// librdkafka `linger.ms`. Default 5.
    #[serde(default = "default_linger")]
    pub linger_ms: u64,
    /// Metadata request before the first write. Default true.
    #[serde(default = "yes")]
    pub healthcheck: bool,
    pub tls: Option<TlsOptions>,
    pub sasl: Option<SaslOptions>,
    #[serde(default, deserialize_with = "string_map")]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub librdkafka_options: BTreeMap<String, Secret>,
}

/// Options of the source `type: kafka`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceOptions {
    pub brokers: Vec<String>,
    /// Topic names, or regular expressions starting with `^`.
    pub topics: Vec<String>,
    /// Consumer group id.
    pub group: String,
    /// Read these partitions of every topic in `topics` without joining
    /// the group's rebalancing (static assignment, like Kafka's
    /// `assign()`): offsets are still committed under `group`, and a
    /// restarted process resumes from them at once. Each partition must be
    /// read by one process only. Absent: the group assigns partitions.
    pub partitions: Option<Vec<i32>>,
    #[serde(default)]
    pub start: Start,
    /// Records per batch handed to the pipeline. Default 1000.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Commit acknowledged offsets this often; the pipeline's checkpoint
    /// interval when absent.
    pub commit_interval_ms: Option<u64>,
    /// On a rebalance, wait this long for in-flight batches of revoked
    /// partitions to be acknowledged before committing. Default 10000.
    #[serde(default = "default_drain")]
    pub rebalance_drain_ms: u64,
    #[serde(default = "yes")]
    pub healthcheck: bool,
    pub tls: Option<TlsOptions>,
    pub sasl: Option<SaslOptions>,
    #[serde(default, deserialize_with = "string_map")]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub librdkafka_options: BTreeMap<String, Secret>,
}

fn yes() -> bool {
    true
}
fn primary_key() -> String {
    "primary_key".into()
}
fn default_linger() -> u64 {
    5
}
fn default_batch() -> usize {
    1000
}
fn default_drain() -> u64 {
    10_000
}

/// Accepts strings, numbers and booleans as librdkafka option values.
fn string_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Secret>, D::Error> {
    let raw = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| {
            let s = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                other => {
                    return Err(serde::de::Error::custom(format!(
                        "librdkafka_options.{k}: expected a string, number or boolean, got {other}"
                    )))
                }
            };
            Ok((k, Secret(s)))
        })
        .collect()
}

fn error(options: &ComponentOptions, message: String) -> ConfigError {
    ConfigError {
        location: options.location().clone(),
        message,
        hint: None,
    }
}

/// Checks the connection keys shared by sink and source.
pub fn check_connection(
    options: &ComponentOptions,
    conn: Connection,
) -> Result<Connection, ConfigError> {
    if conn.brokers.is_empty() || conn.brokers.iter().any(|b| b.trim().is_empty()) {
        return Err(error(
            options,
            "`brokers` must list at least one `host:port`".into(),
        ));
    }
    if let Some(tls) = &conn.tls {
        for (key, path) in [
            ("ca_file", &tls.ca_file),
            ("cert_file", &tls.cert_file),
            ("key_file", &tls.key_file),
        ] {
            if let Some(p) = path {
                if !p.exists() {
                    return Err(error(
                        options,
                        format!("tls.{key}: {} does not exist", p.display()),
                    ));
                }
            }
        }
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(error(
                options,
                "tls: `cert_file` and `key_file` go together".into(),
            ));
        }
    }
    for key in ["bootstrap.servers", "metadata.broker.list"] {
        if conn.extra.contains_key(key) {
            return Err(error(
                options,
                format!("librdkafka_options.{key}: use `brokers` instead"),
            ));
        }
    }
    Ok(conn)
}

impl SinkOptions {
    pub fn connection(&self) -> Connection {
        Connection {
            brokers: self.brokers.clone(),
            tls: self.tls.clone(),
            sasl: self.sasl.clone(),
            extra: self.librdkafka_options.clone(),
        }
    }
}

impl SourceOptions {
    pub fn connection(&self) -> Connection {
        Connection {
            brokers: self.brokers.clone(),
            tls: self.tls.clone(),
            sasl: self.sasl.clone(),
            extra: self.librdkafka_options.clone(),
        }
    }

    /// Checks topics, group and sizes.
    pub fn check(&self, options: &ComponentOptions) -> Result<(), ConfigError> {
        if self.topics.is_empty() {
            return Err(error(
                options,
                "`topics` must name at least one topic".into(),
            ));
        }
        for t in &self.topics {
            if t.starts_with('^') {
                regex::Regex::new(t)
                    .map_err(|e| error(options, format!("topics: bad regex `{t}`: {e}")))?;
            } else if t.is_empty() || t.contains(|c: char| c.is_whitespace()) {
                return Err(error(options, format!("topics: bad topic name `{t}`")));
            }
        }
        if self.group.trim().is_empty() {
            return Err(error(options, "`group` must not be empty".into()));
        }
        if let Some(parts) = &self.partitions {
            if parts.is_empty() || parts.iter().any(|&p| p < 0) {
                return Err(error(
                    options,
                    "`partitions` must list partition numbers (0 and up)".into(),
                ));
            }
            if let Some(t) = self.topics.iter().find(|t| t.starts_with('^')) {
                return Err(error(
                    options,
                    format!("`partitions` needs topic names, not the pattern `{t}`"),
                ));
            }
        }
        if self.batch_size == 0 {
            return Err(error(options, "`batch_size` must be at least 1".into()));
        }
        for key in ["group.id", "enable.auto.commit", "enable.auto.offset.store"] {
            if self.librdkafka_options.contains_key(key) {
                return Err(error(
                    options,
                    format!("librdkafka_options.{key}: set by the source (use `group`; offsets are committed on acknowledgement)"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_not_debug_printed_and_expand_env() {
        std::env::set_var("SLUICE_KAFKA_TEST_PW", "hunter2");
        let o: SaslOptions = serde_json::from_value(serde_json::json!({
            "mechanism": "SCRAM-SHA-512", "username": "u", "password": "${SLUICE_KAFKA_TEST_PW}"
        }))
        .unwrap();
        assert!(!format!("{o:?}").contains("hunter2"));
        assert_eq!(o.password.expose().unwrap(), "hunter2");
        assert!(expand_env("${SLUICE_KAFKA_NOPE_NOT_SET}").is_err());
    }

    #[test]
    fn option_values_may_be_numbers() {
        let o: SinkOptions = serde_json::from_value(serde_json::json!({
            "brokers": ["h:9092"], "topic": "t",
            "librdkafka_options": {"batch.num.messages": 5000, "enable.ssl.certificate.verification": false}
        }))
        .unwrap();
        assert_eq!(
            o.librdkafka_options["batch.num.messages"].expose().unwrap(),
            "5000"
        );
        assert_eq!(o.key, "primary_key");
    }

    #[test]
    fn static_partitions_need_topic_names_and_numbers() {
        let check = |v: serde_json::Value| {
            let opts = ComponentOptions::from_json(v.clone());
            let o: SourceOptions = serde_json::from_value(v).unwrap();
            o.check(&opts).map_err(|e| e.message)
        };
        let base = |topics: serde_json::Value, parts: serde_json::Value| serde_json::json!({"brokers": ["h:9092"], "topics": topics, "group": "g", "partitions": parts});
        assert!(check(base(
            serde_json::json!(["a", "b"]),
            serde_json::json!([0, 2])
        ))
        .is_ok());
        let e = check(base(serde_json::json!(["^a.*"]), serde_json::json!([0]))).unwrap_err();
        assert!(e.contains("not the pattern `^a.*`"), "{e}");
        let e = check(base(serde_json::json!(["a"]), serde_json::json!([]))).unwrap_err();
        assert!(e.contains("partition numbers"), "{e}");
        let e = check(base(serde_json::json!(["a"]), serde_json::json!([-1]))).unwrap_err();
        assert!(e.contains("partition numbers"), "{e}");
    }
}
