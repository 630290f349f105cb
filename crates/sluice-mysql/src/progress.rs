//! Snapshot progress as checkpointed: the original snapshot's binlog
//! position, the tables finished and the primary key of the last delivered
//! row of the table in progress, with a lossless JSON form of key values so
//! a restarted snapshot continues after the last finished chunk. Touches
//! nothing but memory.

use std::collections::BTreeMap;

use base64::Engine;
use mysql_async::Value;
use serde::{Deserialize, Serialize};

use crate::gtid::Position;

/// Where an interrupted snapshot goes on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SnapshotProgress {
    /// Position of the original snapshot: streaming starts here afterwards
    /// (rows read later are newer; the stream replays what changed since).
    pub position: Position,
    /// Finished tables, as `db.table`.
    #[serde(default)]
    pub done: Vec<String>,
    /// Tables in progress (`db.table`) → primary key of the last
    /// delivered row.
    #[serde(default)]
    pub in_progress: BTreeMap<String, Vec<KeyValue>>,
}

/// A primary-key value, exactly as the server sent it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyValue {
    Null,
    Int(i64),
    Uint(u64),
    Float(f32),
    Double(f64),
    /// base64
    Bytes(String),
    Date(u16, u8, u8, u8, u8, u8, u32),
    Time(bool, u32, u8, u8, u8, u32),
}

impl From<&Value> for KeyValue {
    fn from(v: &Value) -> KeyValue {
        match v {
            Value::NULL => KeyValue::Null,
            Value::Int(i) => KeyValue::Int(*i),
            Value::UInt(u) => KeyValue::Uint(*u),
            Value::Float(f) => KeyValue::Float(*f),
            Value::Double(f) => KeyValue::Double(*f),
            Value::Bytes(b) => KeyValue::Bytes(base64::engine::general_purpose::STANDARD.encode(b)),
            Value::Date(y, m, d, h, mi, s, us) => KeyValue::Date(*y, *m, *d, *h, *mi, *s, *us),
            Value::Time(neg, d, h, m, s, us) => KeyValue::Time(*neg, *d, *h, *m, *s, *us),
        }
    }
}

impl KeyValue {
    pub fn to_value(&self) -> Result<Value, String> {
        Ok(match self {
            KeyValue::Null => Value::NULL,
            KeyValue::Int(i) => Value::Int(*i),
            KeyValue::Uint(u) => Value::UInt(*u),
            KeyValue::Float(f) => Value::Float(*f),
            KeyValue::Double(f) => Value::Double(*f),
            KeyValue::Bytes(b) => Value::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| format!("damaged snapshot key in checkpoint: {e}"))?,
            ),
            KeyValue::Date(y, m, d, h, mi, s, us) => Value::Date(*y, *m, *d, *h, *mi, *s, *us),
            KeyValue::Time(neg, d, h, m, s, us) => Value::Time(*neg, *d, *h, *m, *s, *us),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_round_trip_through_json() {
        let vals = [
            Value::Int(-5),
            Value::UInt(u64::MAX),
            Value::Bytes(vec![0, 255, b'a']),
            Value::Date(2024, 2, 29, 1, 2, 3, 4),
        ];
        for v in vals {
            let k = KeyValue::from(&v);
            let back: KeyValue = serde_json::from_str(&serde_json::to_string(&k).unwrap()).unwrap();
            assert_eq!(back.to_value().unwrap(), v);
        }
    }
}
