//! librdkafka client plumbing shared by the sink and the source: the
//! client configuration built from [`Connection`], a redacted rendering of
//! it for logs, the client context that routes librdkafka's log and error
//! callbacks to `tracing` (remembering the last error for messages), and
//! the metadata healthcheck. Touches the network only in [`healthcheck`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::metadata::Metadata;

use crate::options::Connection;

/// Keys whose values are never shown.
fn is_sensitive(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "sasl.oauthbearer.config",
        "ssl.key.pem",
        "ssl_key",
        "ssl.keystore",
        "token",
        "sasl.jaas",
        "sasl.kerberos.keytab",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// Builds the client configuration: brokers, TLS, SASL, then
/// `librdkafka_options` (which win over everything but the brokers).
pub fn base_config(conn: &Connection, client_id: &str) -> Result<ClientConfig, String> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", conn.brokers.join(","));
    c.set("client.id", format!("sluice-{client_id}"));
    c.set("log.connection.close", "false");
    let protocol = match (&conn.tls, &conn.sasl) {
        (None, None) => "plaintext",
        (Some(_), None) => "ssl",
        (None, Some(_)) => "sasl_plaintext",
        (Some(_), Some(_)) => "sasl_ssl",
    };
    c.set("security.protocol", protocol);
    if let Some(tls) = &conn.tls {
        if let Some(p) = &tls.ca_file {
            c.set("ssl.ca.location", p.display().to_string());
        }
        if let Some(p) = &tls.cert_file {
            c.set("ssl.certificate.location", p.display().to_string());
        }
        if let Some(p) = &tls.key_file {
            c.set("ssl.key.location", p.display().to_string());
        }
        if let Some(pw) = &tls.key_password {
            c.set(
                "ssl.key.password",
                pw.expose().map_err(|e| format!("tls.key_password: {e}"))?,
            );
        }
        c.set(
            "ssl.endpoint.identification.algorithm",
            if tls.verify_hostname { "https" } else { "none" },
        );
    }
    if let Some(sasl) = &conn.sasl {
        c.set("sasl.mechanism", sasl.mechanism.as_str());
        c.set("sasl.username", &sasl.username);
        c.set(
            "sasl.password",
            sasl.password
                .expose()
                .map_err(|e| format!("sasl.password: {e}"))?,
        );
    }
    for (k, v) in &conn.extra {
        c.set(
            k,
            v.expose()
                .map_err(|e| format!("librdkafka_options.{k}: {e}"))?,
        );
    }
    Ok(c)
}

/// The configuration as `key=value` pairs with secrets masked, for logs.
pub fn redacted(config: &ClientConfig) -> String {
    let mut pairs: Vec<String> = config
        .config_map()
        .iter()
        .map(|(k, v)| {
            if is_sensitive(k) {
                format!("{k}=***")
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    pairs.sort();
    pairs.join(" ")
}

/// Routes librdkafka's logs and errors to `tracing`, once per distinct
/// message per 30 s, and remembers the last error for diagnostics.
pub struct ClientCx {
    pub component: Arc<str>,
    last_error: Mutex<Option<(String, Instant)>>,
}

impl ClientCx {
    pub fn new(component: &str) -> ClientCx {
        ClientCx {
            component: component.into(),
            last_error: Mutex::new(None),
        }
    }

    /// The last error librdkafka reported, with its age.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .as_ref()
            .map(|(e, at)| format!("{e} ({}s ago)", at.elapsed().as_secs()))
    }
}

impl ClientContext for ClientCx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(component = %self.component, "librdkafka {fac}: {message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(component = %self.component, "librdkafka {fac}: {message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(component = %self.component, "librdkafka {fac}: {message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(component = %self.component, "librdkafka {fac}: {message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let text = format!("{error}: {reason}");
        let mut last = self.last_error.lock();
        let repeat = last
            .as_ref()
            .is_some_and(|(t, at)| *t == text && at.elapsed() < Duration::from_secs(30));
        if !repeat {
            tracing::warn!(component = %self.component, "kafka client: {text}");
            *last = Some((text, Instant::now()));
        }
    }
}

/// Asks the brokers for metadata (of `topic`, when given). The error names
/// the brokers tried and what failed. Runs the blocking request off the
/// async workers.
pub async fn healthcheck<F>(
    fetch: F,
    brokers: &[String],
    topic: Option<String>,
    timeout: Duration,
    last_error: impl Fn() -> Option<String>,
) -> anyhow::Result<()>
where
    F: FnOnce(Option<&str>, Duration) -> KafkaResult<Metadata> + Send + 'static,
{
    let t = topic.clone();
    let result = tokio::task::spawn_blocking(move || fetch(t.as_deref(), timeout))
        .await
        .map_err(|e| anyhow::anyhow!("healthcheck task failed: {e}"))?;
    match result {
        Ok(md) => {
            if let Some(topic) = topic {
                let missing = md
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic)
                    .is_none_or(|t| t.error().is_some());
                if missing {
                    tracing::warn!(
                        "kafka: topic `{topic}` does not exist on brokers {brokers:?}; records for it will be refused unless the brokers create topics automatically"
                    );
                }
            }
            Ok(())
        }
        Err(e) => {
            let detail = last_error()
                .map(|l| format!("; last client error: {l}"))
                .unwrap_or_default();
            anyhow::bail!(
                "healthcheck failed: no metadata from Kafka brokers {brokers:?} within {}s: {e}{detail}",
                timeout.as_secs()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{SaslMechanism, SaslOptions};

    #[test]
    fn redacts_secrets() {
        let opts: SaslOptions = serde_json::from_value(serde_json::json!({
            "mechanism": "PLAIN", "username": "u", "password": "hunter2"
        }))
        .unwrap();
        assert_eq!(opts.mechanism, SaslMechanism::Plain);
        let conn = Connection {
            brokers: vec!["a:1".into(), "b:2".into()],
            tls: None,
            sasl: Some(opts),
            extra: Default::default(),
        };
        let c = base_config(&conn, "x").unwrap();
        let shown = redacted(&c);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("sasl.password=***"));
        assert!(shown.contains("bootstrap.servers=a:1,b:2"));
        assert!(shown.contains("security.protocol=sasl_plaintext"));
    }

    #[test]
    fn tls_files_and_overrides_map_to_librdkafka_keys() {
        let tls: crate::options::TlsOptions = serde_json::from_value(serde_json::json!({
            "ca_file": "/ca.pem", "cert_file": "/c.pem", "key_file": "/k.pem",
            "key_password": "pw", "verify_hostname": false
        }))
        .unwrap();
        let opts: crate::options::SinkOptions = serde_json::from_value(serde_json::json!({
            "brokers": ["h:1"], "topic": "t", "librdkafka_options": {"security.protocol": "SSL"}
        }))
        .unwrap();
        let conn = Connection {
            brokers: vec!["h:1".into()],
            tls: Some(tls),
            sasl: None,
            extra: opts.librdkafka_options,
        };
        let c = base_config(&conn, "x").unwrap();
        assert_eq!(c.get("ssl.ca.location"), Some("/ca.pem"));
        assert_eq!(c.get("ssl.certificate.location"), Some("/c.pem"));
        assert_eq!(c.get("ssl.key.location"), Some("/k.pem"));
        assert_eq!(c.get("ssl.endpoint.identification.algorithm"), Some("none"));
        assert_eq!(
            c.get("security.protocol"),
            Some("SSL"),
            "librdkafka_options win"
        );
        assert!(redacted(&c).contains("ssl.key.password=***"));
    }
}
