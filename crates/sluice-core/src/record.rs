//! Records and batches: the one unit of data that flows through a pipeline.
//!
//! A [`Record`] carries a log line, a row change or an opaque message. It is
//! cheap to clone: payloads are `Bytes` slices of the buffer they were read
//! into, metadata is reference-counted. A [`Batch`] is what queues, the
//! router and sinks move around; it owns one acknowledgement reference.
//! This module touches nothing but memory.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ack::AckRef;

/// Message headers: rare, so kept behind one optional `Arc`.
pub type Headers = Option<Arc<Vec<(String, Bytes)>>>;

/// One unit of data.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// Partitioning / compaction key, if any.
    pub key: Option<Bytes>,
    /// The payload: a log line without its newline, or a message body. Empty
    /// for row changes, whose payload is [`Meta::Row`] (encoders render it).
    pub value: Bytes,
    pub headers: Headers,
    /// Milliseconds since the Unix epoch (read time for logs, event time for
    /// binlog rows, produce time for messages).
    pub timestamp_ms: i64,
    pub meta: Meta,
}

/// What the source knows about a record beyond its payload.
#[derive(Clone, Debug, Default)]
pub enum Meta {
    /// Opaque message (stdin, http, generator, store, kafka).
    #[default]
    None,
    /// A line read from a file.
    Log(LogMeta),
    /// A row change or DDL statement from a database.
    Row(Arc<RowChange>),
}

/// Where a log line came from. No allocation per line: `path` and `host`
/// are shared per file.
#[derive(Clone, Debug)]
pub struct LogMeta {
    pub path: Arc<str>,
    pub host: Arc<str>,
    /// Byte offset of the start of the line in the file.
    pub offset: u64,
    /// The line was cut at `max_line_bytes`.
    pub truncated: bool,
}

/// Kind of change, as Debezium spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "c")]
    Create,
    #[serde(rename = "u")]
    Update,
    #[serde(rename = "d")]
    Delete,
    /// A row read by a snapshot.
    #[serde(rename = "r")]
    Read,
    #[serde(rename = "ddl")]
    Ddl,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
            Op::Ddl => "ddl",
        }
    }
}

/// Column name → value, in table column order. Values follow the
/// Debezium-style JSON mapping documented in the README (DECIMAL as string,
/// binary as base64, temporal types as ISO-8601 strings).
pub type Row = serde_json::Map<String, serde_json::Value>;

/// A row change record, serialised as a Debezium-style envelope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowChange {
    pub op: Op,
    pub before: Option<Row>,
    pub after: Option<Row>,
    pub source: ChangeSource,
    pub ts_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<TransactionInfo>,
    /// Primary key column names (empty when the table has none).
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// The statement, for `op: ddl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ddl: Option<String>,
}

/// Where in the source database a change was read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChangeSource {
    pub connector: String,
    pub server_id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
    pub file: String,
    pub pos: u64,
    /// Index of the row within its rows event.
    pub row: u32,
    pub ts_ms: i64,
    pub db: String,
    pub table: String,
    #[serde(default)]
    pub snapshot: bool,
}

/// The transaction a change belongs to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TransactionInfo {
    pub id: String,
    /// 1-based position of this change within the transaction.
    pub total_order: u64,
    /// 1-based position of this change among the transaction's changes to the same table.
    pub data_collection_order: u64,
    /// This is the last change of the transaction.
    #[serde(default)]
    pub last: bool,
}

impl Record {
    /// A record holding just a payload, stamped now.
    pub fn from_value(value: impl Into<Bytes>) -> Record {
        Record {
            value: value.into(),
            timestamp_ms: now_ms(),
            ..Record::default()
        }
    }

    /// Approximate size in bytes, used for queue and batch limits.
    pub fn size(&self) -> usize {
        let headers = self.headers.as_ref().map_or(0, |h| {
            h.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
        });
        let row = match &self.meta {
            Meta::Row(_) => 256,
            _ => 0,
        };
        self.value.len() + self.key.as_ref().map_or(0, Bytes::len) + headers + row + 32
    }

    pub fn row(&self) -> Option<&RowChange> {
        match &self.meta {
            Meta::Row(r) => Some(r),
            _ => None,
        }
    }

    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers
            .as_ref()?
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A group of records from one source, with one acknowledgement reference.
/// Cloning a batch (fan-out) clones the `Arc` of records and adds a holder to
/// the acknowledgement: the origin hears back when every holder is done.
#[derive(Clone, Debug)]
pub struct Batch {
    pub source: Arc<str>,
    pub records: Arc<[Record]>,
    pub bytes: usize,
    pub ack: AckRef,
}

impl Batch {
    pub fn new(source: Arc<str>, records: Vec<Record>, ack: AckRef) -> Batch {
        let bytes = records.iter().map(Record::size).sum();
        Batch {
            source,
            records: records.into(),
            bytes,
            ack,
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// A batch of the same origin holding only `records`.
    pub fn with_records(&self, records: Vec<Record>) -> Batch {
        Batch::new(self.source.clone(), records, self.ack.clone())
    }
}

/// Where a record came from, for error messages: the source and, when the
/// record knows it, the file and offset or the binlog table and position.
pub fn describe_origin(source: &str, record: &Record) -> String {
    match &record.meta {
        Meta::Log(l) => format!("source `{source}`, {} at offset {}", l.path, l.offset),
        Meta::Row(r) => format!(
            "source `{source}`, table {}.{} at {}:{}{}",
            r.source.db,
            r.source.table,
            r.source.file,
            r.source.pos,
            r.source
                .gtid
                .as_ref()
                .map(|g| format!(" (GTID {g})"))
                .unwrap_or_default()
        ),
        Meta::None => format!("source `{source}`"),
    }
}
