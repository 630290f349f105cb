//! The JSON shape of records on the wire, both ways. In: `{key, value, headers,
//! encoding}` — `value` any JSON (a string is stored as its text, anything else
//! as its JSON encoding) or, with `"encoding": "base64"`, bytes in base64; a batch
//! is NDJSON or a JSON array. Out: `{partition, offset, timestamp_ms, key, value,
//! headers}` (+ `lease`, `delivery` in queue mode); a value that is a JSON object
//! or array is returned as JSON, other UTF-8 as a string, other bytes in base64
//! with `"encoding": "base64"`. Shared by the server and the client. Touches only memory.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sluice_store::{Header, Record, StoredRecord};

/// A record as returned by pull and push.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutRecord {
    pub partition: u32,
    pub offset: u64,
    pub timestamp_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub headers: Map<String, Value>,
    /// Queue mode: the lease id to ack or nack (`"partition-offset"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
    /// Queue mode: 1 for the first delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<u32>,
}

impl OutRecord {
    /// Encode a stored record; `force_base64` returns the value in base64 always.
    pub fn from_stored(partition: u32, r: &StoredRecord, force_base64: bool) -> OutRecord {
        let (value, encoding) = encode_value(&r.value, force_base64);
        let headers = r
            .headers
            .iter()
            .map(|h| {
                let v = match std::str::from_utf8(&h.value) {
                    Ok(s) => Value::String(s.to_string()),
                    Err(_) => Value::String(B64.encode(&h.value)),
                };
                (h.name.clone(), v)
            })
            .collect();
        OutRecord {
            partition,
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            key: r
                .key
                .as_ref()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            value,
            encoding,
            headers,
            lease: None,
            delivery: None,
        }
    }

    /// The value's bytes as they were stored.
    pub fn value_bytes(&self) -> Vec<u8> {
        match (&self.encoding, &self.value) {
            (Some(e), Value::String(s)) if e == "base64" => B64.decode(s).unwrap_or_default(),
            (_, Value::String(s)) => s.as_bytes().to_vec(),
            (_, v) => serde_json::to_vec(v).unwrap_or_default(),
        }
    }
}

fn encode_value(v: &[u8], force_base64: bool) -> (Value, Option<String>) {
    if !force_base64 {
        let first = v.iter().find(|b| !b.is_ascii_whitespace());
        if matches!(first, Some(b'{') | Some(b'[')) {
            if let Ok(j) = serde_json::from_slice::<Value>(v) {
                return (j, None);
            }
        }
        if let Ok(s) = std::str::from_utf8(v) {
            return (Value::String(s.to_string()), None);
        }
    }
    (Value::String(B64.encode(v)), Some("base64".into()))
}

/// Turn one JSON record into a store record, or say what is wrong with it.
pub fn parse_record(v: Value) -> Result<Record, String> {
    let Value::Object(mut m) = v else {
        return Err("a record must be a JSON object {key, value, headers}".into());
    };
    let base64 = match m.remove("encoding") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s == "base64" => true,
        Some(Value::String(s)) if s == "json" => false,
        Some(other) => return Err(format!("unknown encoding {other}; use \"base64\"")),
    };
    let key = match m.remove("key") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Bytes::from(s)),
        Some(Value::Number(n)) => Some(Bytes::from(n.to_string())),
        Some(_) => return Err("key must be a string".into()),
    };
    let value = match m.remove("value") {
        None => return Err("missing value".into()),
        Some(Value::String(s)) if base64 => Bytes::from(
            B64.decode(s.as_bytes())
                .map_err(|e| format!("value is not valid base64: {e}"))?,
        ),
        Some(_) if base64 => return Err("a base64 value must be a string".into()),
        Some(Value::String(s)) => Bytes::from(s),
        Some(v) => Bytes::from(serde_json::to_vec(&v).map_err(|e| e.to_string())?),
    };
    let mut headers = Vec::new();
    match m.remove("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(h)) => {
            for (name, v) in h {
                let value = match v {
                    Value::String(s) => Bytes::from(s),
                    other => Bytes::from(other.to_string()),
                };
                headers.push(Header { name, value });
            }
        }
        Some(_) => return Err("headers must be an object of name → string".into()),
    }
    let timestamp_ms = match m.remove("timestamp_ms") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_i64().ok_or("timestamp_ms must be an integer")?),
        Some(_) => return Err("timestamp_ms must be an integer".into()),
    };
    if let Some(k) = m.keys().next() {
        return Err(format!(
            "unknown field {k:?} (expected key, value, headers, encoding, timestamp_ms)"
        ));
    }
    Ok(Record {
        key,
        value,
        headers,
        timestamp_ms,
    })
}

/// Parse a whole batch (a JSON array, or NDJSON: one record per line). Nothing
/// is returned unless every record is valid; the error names the first bad one
/// (0-based index).
pub fn parse_batch(body: &[u8]) -> Result<Vec<Record>, String> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let items: Vec<Value> = serde_json::from_slice(body)
            .map_err(|e| format!("body is not a JSON array of records: {e}"))?;
        return items
            .into_iter()
            .enumerate()
            .map(|(i, v)| parse_record(v).map_err(|e| format!("record {i}: {e}")))
            .collect();
    }
    let mut out = Vec::new();
    for line in body.split(|b| *b == b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let i = out.len();
        let v: Value =
            serde_json::from_slice(line).map_err(|e| format!("record {i}: not valid JSON: {e}"))?;
        out.push(parse_record(v).map_err(|e| format!("record {i}: {e}"))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let b = br#"{"key":"k","value":{"a":1},"headers":{"h":"v"}}
{"value":"aGk=","encoding":"base64"}
{"value":"plain"}"#;
        let recs = parse_batch(b).unwrap();
        assert_eq!(recs[0].value, Bytes::from_static(br#"{"a":1}"#));
        assert_eq!(recs[1].value, Bytes::from_static(b"hi"));
        assert_eq!(recs[2].value, Bytes::from_static(b"plain"));
        let e = parse_batch(br#"[{"value":1},{"nope":2}]"#).unwrap_err();
        assert!(e.starts_with("record 1:"), "{e}");
        let s = StoredRecord {
            offset: 3,
            timestamp_ms: 1,
            key: None,
            value: Bytes::from_static(&[0xff, 0x00]),
            headers: vec![],
        };
        let o = OutRecord::from_stored(0, &s, false);
        assert_eq!(o.encoding.as_deref(), Some("base64"));
        assert_eq!(o.value_bytes(), vec![0xff, 0x00]);
    }
}
