//! Encoders: a record as raw text or as one JSON line, into a reused buffer.
//!
//! JSON shapes: a log line is `{"message", "path", "host", "offset",
//! "timestamp"}`; a row change is its Debezium-style envelope; an opaque
//! message that already is JSON is written as it is, otherwise as
//! `{"message": …}` (invalid UTF-8 replaced). Touches only memory.

use std::sync::atomic::{AtomicU64, Ordering};

use schemars::JsonSchema;
use serde::Serialize;

use crate::record::{Meta, Record};

/// How a sink renders records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The payload as it is (row changes as JSON envelopes).
    #[default]
    Text,
    /// One JSON object per record.
    Json,
}

/// Invalid UTF-8 sequences replaced while encoding text as JSON.
pub static INVALID_UTF8_REPLACED: AtomicU64 = AtomicU64::new(0);

#[derive(Serialize)]
struct LogLine<'a> {
    message: &'a str,
    path: &'a str,
    host: &'a str,
    offset: u64,
    timestamp: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
}

#[derive(Serialize)]
struct Message<'a> {
    message: &'a str,
    timestamp: String,
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339_ms(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    let s = String::from_utf8_lossy(bytes);
    if matches!(s, std::borrow::Cow::Owned(_)) {
        INVALID_UTF8_REPLACED.fetch_add(1, Ordering::Relaxed);
    }
    s
}

impl Encoding {
    /// Appends the record and a newline to `out`.
    pub fn encode(self, record: &Record, out: &mut Vec<u8>) {
        match self {
            Encoding::Text => encode_text(record, out),
            Encoding::Json => encode_json(record, out),
        }
        out.push(b'\n');
    }
}

fn encode_text(record: &Record, out: &mut Vec<u8>) {
    match &record.meta {
        Meta::Row(row) => {
            let _ = serde_json::to_writer(&mut *out, row.as_ref());
        }
        _ => out.extend_from_slice(&record.value),
    }
}

fn encode_json(record: &Record, out: &mut Vec<u8>) {
    let _ = match &record.meta {
        Meta::Row(row) => serde_json::to_writer(&mut *out, row.as_ref()),
        Meta::Log(log) => serde_json::to_writer(
            &mut *out,
            &LogLine {
                message: &text(&record.value),
                path: &log.path,
                host: &log.host,
                offset: log.offset,
                timestamp: rfc3339_ms(record.timestamp_ms),
                truncated: log.truncated,
            },
        ),
        Meta::None => {
            if is_json(&record.value) {
                out.extend_from_slice(&record.value);
                Ok(())
            } else {
                serde_json::to_writer(
                    &mut *out,
                    &Message {
                        message: &text(&record.value),
                        timestamp: rfc3339_ms(record.timestamp_ms),
                    },
                )
            }
        }
    };
}

/// Whether `bytes` hold exactly one JSON object or array.
fn is_json(bytes: &[u8]) -> bool {
    matches!(bytes.first(), Some(b'{') | Some(b'['))
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_passes_through_and_text_is_wrapped() {
        let mut out = Vec::new();
        Encoding::Json.encode(&Record::from_value(&b"{\"a\":1}"[..]), &mut out);
        assert_eq!(out, b"{\"a\":1}\n");
        out.clear();
        Encoding::Json.encode(&Record::from_value(&b"a \xff line"[..]), &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["message"], "a \u{fffd} line");
    }
}
