//! Records → changes to apply: the row change (from `Meta::Row`, or parsed
//! from the JSON envelope a store topic or Kafka carries), its binlog
//! position (the exactly-once key), its source transaction and the worker
//! its (table, primary key) hashes to. Touches nothing but memory.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use sluice_core::record::{Meta, Op, Record, RowChange};

/// A binlog coordinate: ordered by file, position in the file, row in the
/// event (file names of one server sort in binlog order).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub file: String,
    pub pos: u64,
    pub row: u32,
    pub gtid: String,
}

impl Clone for Pos {
    fn clone(&self) -> Pos {
        Pos {
            file: self.file.clone(),
            pos: self.pos,
            row: self.row,
            gtid: self.gtid.clone(),
        }
    }

    /// Reuses the strings' buffers (the derived one would allocate).
    fn clone_from(&mut self, other: &Pos) {
        self.file.clone_from(&other.file);
        self.pos = other.pos;
        self.row = other.row;
        self.gtid.clone_from(&other.gtid);
    }
}

impl PartialOrd for Pos {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The binlog file's sequence number (`binlog.000042` → 42), so files
/// order correctly past 999999.
fn file_seq(file: &str) -> u64 {
    file.rsplit('.')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

impl Ord for Pos {
    fn cmp(&self, other: &Self) -> Ordering {
        (file_seq(&self.file), &self.file, self.pos, self.row).cmp(&(
            file_seq(&other.file),
            &other.file,
            other.pos,
            other.row,
        ))
    }
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{} row {}", self.file, self.pos, self.row)?;
        if !self.gtid.is_empty() {
            write!(f, " (GTID {})", self.gtid)?;
        }
        Ok(())
    }
}

/// One change to apply.
#[derive(Clone, Debug)]
pub struct Change {
    pub row: Arc<RowChange>,
    /// Index in the sink batch being written; `None` for a change held back
    /// from an earlier batch.
    pub index: Option<usize>,
    /// The record arrived as `Meta::Row` (straight from a mysql source,
    /// whose checkpoint never passes an unfinished transaction).
    pub direct: bool,
    pub pos: Pos,
    /// A snapshot row: it carries the snapshot's binlog position, never
    /// advances the stored position, and is skipped only once its worker
    /// applied a stream change at or after that position.
    pub snapshot: bool,
}

impl Change {
    /// The change in a record, or why it is not one.
    pub fn from_record(record: &Record, index: usize) -> Result<Change, String> {
        let (row, direct) = match &record.meta {
            Meta::Row(r) => (r.clone(), true),
            _ => {
                let r: RowChange = serde_json::from_slice(&record.value).map_err(|e| {
                    format!("record is not a row change (JSON envelope expected): {e}")
                })?;
                (Arc::new(r), false)
            }
        };
        let s = &row.source;
        let pos = Pos {
            file: s.file.clone(),
            pos: s.pos,
            row: s.row,
            gtid: s.gtid.clone().unwrap_or_default(),
        };
        Ok(Change {
            snapshot: s.snapshot || row.op == Op::Read,
            pos,
            direct,
            index: Some(index),
            row,
        })
    }

    pub fn is_ddl(&self) -> bool {
        self.row.op == Op::Ddl
    }

    /// The source transaction this change belongs to (DDL and snapshot rows
    /// stand alone).
    pub fn txn_id(&self) -> Option<&str> {
        if self.is_ddl() || self.snapshot {
            return None;
        }
        self.row.transaction.as_ref().map(|t| t.id.as_str())
    }

    /// This change ends its source transaction.
    pub fn ends_txn(&self) -> bool {
        match &self.row.transaction {
            Some(t) if !self.is_ddl() && !self.snapshot => t.last,
            _ => true,
        }
    }

    /// Worker index for `n` workers: by (table, primary key), so each row's
    /// changes stay in order; a table without a primary key goes by table.
    pub fn worker(&self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.row.source.db.hash(&mut h);
        self.row.source.table.hash(&mut h);
        let r = &self.row;
        if !r.primary_key.is_empty() {
            // A changed primary key: the before image's key (the delete) and
            // the after image's (the insert) may differ; hash the after
            // image for inserts/updates, the before for deletes. A changed
            // key is split into two changes before hashing (see sink).
            let img = r.after.as_ref().or(r.before.as_ref());
            if let Some(img) = img {
                for c in &r.primary_key {
                    if let Some(v) = img.get(c) {
                        v.to_string().hash(&mut h);
                    }
                }
            }
        }
        (h.finish() % n as u64) as usize
    }

    /// Describes where the change came from, for errors.
    pub fn origin(&self) -> String {
        format!(
            "{}.{} at {}",
            self.row.source.db, self.row.source.table, self.pos
        )
    }
}

/// A changed primary key: the update as a delete of the before image and
/// an insert of the after image.
pub fn split_pk_change(c: &Change) -> Option<(Change, Change)> {
    let r = &c.row;
    if r.op != Op::Update || r.primary_key.is_empty() {
        return None;
    }
    let (b, a) = (r.before.as_ref()?, r.after.as_ref()?);
    if r.primary_key.iter().all(|k| b.get(k) == a.get(k)) {
        return None;
    }
    let mut del = (**r).clone();
    del.op = Op::Delete;
    del.after = None;
    let mut ins = (**r).clone();
    ins.op = Op::Create;
    ins.before = None;
    Some((
        Change {
            row: Arc::new(del),
            ..c.clone()
        },
        Change {
            row: Arc::new(ins),
            ..c.clone()
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_core::record::ChangeSource;

    fn pos(file: &str, pos: u64, row: u32) -> Pos {
        Pos {
            file: file.into(),
            pos,
            row,
            gtid: String::new(),
        }
    }

    #[test]
    fn positions_order_by_file_sequence_then_offset() {
        assert!(pos("b.000009", 900, 0) < pos("b.000010", 4, 0));
        assert!(pos("b.999999", 900, 0) < pos("b.1000000", 4, 0));
        assert!(pos("b.000001", 100, 1) < pos("b.000001", 100, 2));
    }

    #[test]
    fn a_changed_primary_key_splits_and_json_envelopes_parse() {
        let rc = RowChange {
            op: Op::Update,
            before: json!({"id": 1, "v": "a"}).as_object().cloned(),
            after: json!({"id": 2, "v": "a"}).as_object().cloned(),
            source: ChangeSource {
                file: "b.000001".into(),
                pos: 10,
                ..Default::default()
            },
            ts_ms: 0,
            transaction: None,
            primary_key: vec!["id".into()],
            ddl: None,
        };
        let rec = Record::from_value(serde_json::to_vec(&rc).unwrap());
        let c = Change::from_record(&rec, 3).unwrap();
        assert!(!c.direct && c.index == Some(3) && c.ends_txn());
        let (d, i) = split_pk_change(&c).unwrap();
        assert_eq!((d.row.op, i.row.op), (Op::Delete, Op::Create));
        assert!(Change::from_record(&Record::from_value("not json"), 0).is_err());
    }
}
