//! The message key of a record for keyed sinks (store, Kafka) (`key: primary_key | <field> | none`),
//! rendered into a reused buffer.
//!
//! * `primary_key`: for a row change, its primary-key columns as a JSON
//!   object (`{"id":42}`) from the after image (the before image for a
//!   delete), so one row's changes land in one partition, in order; for any
//!   other record, the record's own key.
//! * `<field>`: a row change's column, or a top-level field of a JSON
//!   payload; strings as they are, other values JSON-encoded; no key when
//!   the record lacks the field.
//! * `none`: no key (records spread over partitions).
//!
//! Touches only memory.

use crate::record::{Meta, Record, RowChange};

/// How the sink keys messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMode {
    PrimaryKey,
    Field(String),
    None,
}

impl KeyMode {
    pub fn parse(text: &str) -> KeyMode {
        match text {
            "primary_key" => KeyMode::PrimaryKey,
            "none" | "" => KeyMode::None,
            field => KeyMode::Field(field.to_string()),
        }
    }

    /// The key of `record`: rendered into `out` (cleared first), or the
    /// record's own key.
    pub fn key<'a>(&self, record: &'a Record, out: &'a mut Vec<u8>) -> Option<&'a [u8]> {
        out.clear();
        match self {
            KeyMode::None => None,
            KeyMode::PrimaryKey => match &record.meta {
                Meta::Row(row) if !row.primary_key.is_empty() => {
                    primary_key_json(row, out);
                    Some(out)
                }
                _ => record.key.as_deref(),
            },
            KeyMode::Field(name) => {
                let found = match &record.meta {
                    Meta::Row(row) => match image(row).and_then(|r| r.get(name)) {
                        Some(v) => {
                            write_value(v, out);
                            true
                        }
                        None => false,
                    },
                    _ => json_field(&record.value, name, out),
                };
                found.then_some(&out[..])
            }
        }
    }
}

/// The image that identifies the row: after, or before for a delete.
fn image(row: &RowChange) -> Option<&crate::record::Row> {
    row.after.as_ref().or(row.before.as_ref())
}

/// `{"col":value,…}` in key-column order, written straight into `out`
/// (the same text as serialising a map of those columns).
fn primary_key_json(row: &RowChange, out: &mut Vec<u8>) {
    let img = image(row);
    out.push(b'{');
    for (i, col) in row.primary_key.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, col);
        out.push(b':');
        let v = img.and_then(|r| r.get(col));
        let _ = serde_json::to_writer(&mut *out, v.unwrap_or(&serde_json::Value::Null));
    }
    out.push(b'}');
}

fn write_value(v: &serde_json::Value, out: &mut Vec<u8>) {
    match v {
        serde_json::Value::String(s) => out.extend_from_slice(s.as_bytes()),
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

fn json_field(payload: &[u8], name: &str, out: &mut Vec<u8>) -> bool {
    if payload.first() != Some(&b'{') {
        return false;
    }
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(payload) else {
        return false;
    };
    match map.get(name) {
        Some(v) => {
            write_value(v, out);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::record::{ChangeSource, Op};

    use super::*;

    fn row(op: Op, before: Option<serde_json::Value>, after: Option<serde_json::Value>) -> Record {
        let obj = |v: serde_json::Value| v.as_object().cloned();
        Record {
            meta: Meta::Row(Arc::new(RowChange {
                op,
                before: before.and_then(obj),
                after: after.and_then(obj),
                source: ChangeSource::default(),
                ts_ms: 0,
                transaction: None,
                primary_key: vec!["id".into(), "region".into()],
                ddl: None,
            })),
            ..Record::default()
        }
    }

    #[test]
    fn primary_key_from_after_or_before() {
        let mut buf = Vec::new();
        let r = row(
            Op::Create,
            None,
            Some(serde_json::json!({"id": 7, "region": "eu", "name": "x"})),
        );
        assert_eq!(
            KeyMode::PrimaryKey.key(&r, &mut buf).unwrap(),
            br#"{"id":7,"region":"eu"}"#
        );
        let d = row(
            Op::Delete,
            Some(serde_json::json!({"id": 8, "region": "us"})),
            None,
        );
        assert_eq!(
            KeyMode::PrimaryKey.key(&d, &mut buf).unwrap(),
            br#"{"id":8,"region":"us"}"#
        );
    }

    #[test]
    fn fields_and_record_keys() {
        let mut buf = Vec::new();
        let mut r = Record::from_value(r#"{"user":"ann","n":3}"#);
        assert_eq!(KeyMode::parse("user").key(&r, &mut buf).unwrap(), b"ann");
        assert_eq!(KeyMode::parse("n").key(&r, &mut buf).unwrap(), b"3");
        assert_eq!(KeyMode::parse("missing").key(&r, &mut buf), None);
        r.key = Some("k1".into());
        assert_eq!(KeyMode::PrimaryKey.key(&r, &mut buf).unwrap(), b"k1");
        assert_eq!(KeyMode::None.key(&r, &mut buf), None);
    }
}
