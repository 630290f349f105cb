//! Snapshot progress of one apply worker, stored as JSON in the
//! `snapshot` column of its `sluice_apply_position` row in the same
//! transaction as the snapshot rows (`op: r`): the snapshot's binlog
//! position, and per table the rows applied and the primary key of the
//! last one. A snapshot row redelivered after a crash is skipped when its
//! key is at or before the stored key (rows of one table reach a worker in
//! ascending key order, and a resumed snapshot continues after its
//! checkpointed key); a table without a primary key is re-read whole by
//! the source, so its first `rows` rows are skipped. Keys are compared
//! only where the order is certain without the source's collation
//! (numbers, DECIMAL, dates and date-times, binary); other keys are
//! re-applied (upserts: the same final state). Touches nothing but memory.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::change::Change;
use super::sql::{Kind, TableMeta};

/// One table's snapshot progress on one worker.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TableProgress {
    /// Snapshot rows of the table applied by this worker.
    pub rows: u64,
    /// Primary-key values of the last applied row (empty without a key).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last: Vec<Value>,
}

/// A worker's snapshot progress.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SnapshotProgress {
    /// The snapshot's binlog position (what its rows carry).
    pub file: String,
    pub pos: u64,
    /// `db.table` → progress.
    pub tables: BTreeMap<String, TableProgress>,
}

fn table_name(c: &Change) -> String {
    format!("{}.{}", c.row.source.db, c.row.source.table)
}

impl SnapshotProgress {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// The stored form (`None` when empty).
    pub fn to_json(&self) -> Option<String> {
        (!self.is_empty()).then(|| serde_json::to_string(self).unwrap_or_default())
    }

    pub fn from_json(s: &str) -> Result<SnapshotProgress, String> {
        serde_json::from_str(s).map_err(|e| format!("damaged snapshot progress: {e}"))
    }

    fn same_snapshot(&self, c: &Change) -> bool {
        self.file == c.pos.file && self.pos == c.pos.pos
    }

    /// Records an applied snapshot row.
    pub fn applied(&mut self, c: &Change) {
        if !self.same_snapshot(c) {
            *self = SnapshotProgress {
                file: c.pos.file.clone(),
                pos: c.pos.pos,
                tables: BTreeMap::new(),
            };
        }
        let t = self.tables.entry(table_name(c)).or_default();
        t.rows += 1;
        let after = c.row.after.as_ref();
        t.last = c
            .row
            .primary_key
            .iter()
            .map(|k| after.and_then(|a| a.get(k)).cloned().unwrap_or(Value::Null))
            .collect();
    }
}

/// Snapshot rows of tables without a primary key seen by this process
/// (per worker, per table): the source re-reads such a table whole after
/// a restart, so the first `rows` of them are already applied.
pub type Seen = Vec<HashMap<String, u64>>;

/// Whether a redelivered snapshot row `c` is already applied, by the
/// worker's stored `progress`; `meta` is the target table's (for the key
/// order). Counts rows of keyless tables in `seen`.
pub fn already_applied(
    progress: &SnapshotProgress,
    seen: &mut HashMap<String, u64>,
    c: &Change,
    meta: Option<&TableMeta>,
) -> bool {
    let r = &c.row;
    if r.primary_key.is_empty() {
        let name = table_name(c);
        let n = seen.entry(name.clone()).or_insert(0);
        *n += 1;
        return progress.same_snapshot(c)
            && progress.tables.get(&name).is_some_and(|t| *n <= t.rows);
    }
    if !progress.same_snapshot(c) {
        return false;
    }
    let Some(t) = progress.tables.get(&table_name(c)) else {
        return false;
    };
    let (Some(after), Some(meta)) = (r.after.as_ref(), meta) else {
        return false;
    };
    if t.last.len() != r.primary_key.len() {
        return false;
    }
    let mut order = Ordering::Equal;
    for (k, last) in r.primary_key.iter().zip(&t.last) {
        let kind = meta.columns.get(k).copied().unwrap_or(Kind::Text);
        match after.get(k).and_then(|v| compare(v, last, kind)) {
            Some(Ordering::Equal) => continue,
            Some(o) => {
                order = o;
                break;
            }
            None => return false,
        }
    }
    order != Ordering::Greater
}

/// Exact decimal comparison of two decimal strings (`-12.50`, `3`).
fn decimal(a: &str, b: &str) -> Option<Ordering> {
    fn parts(s: &str) -> Option<(bool, &str, &str)> {
        let (neg, s) = match s.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (i, f) = s.split_once('.').unwrap_or((s, ""));
        let ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if !ok(i) || !ok(f) || (i.is_empty() && f.is_empty()) {
            return None;
        }
        let i = i.trim_start_matches('0');
        let f = f.trim_end_matches('0');
        let zero = i.is_empty() && f.is_empty();
        Some((neg && !zero, i, f))
    }
    let (na, ia, fa) = parts(a)?;
    let (nb, ib, fb) = parts(b)?;
    let abs = ia
        .len()
        .cmp(&ib.len())
        .then_with(|| ia.cmp(ib))
        .then_with(|| fa.cmp(fb));
    Some(match (na, nb) {
        (false, false) => abs,
        (true, true) => abs.reverse(),
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
    })
}

/// The source's order of two key values of a column of `kind`, where it
/// is certain without the column's collation.
fn compare(a: &Value, b: &Value, kind: Kind) -> Option<Ordering> {
    match (a, b, kind) {
        (Value::Number(x), Value::Number(y), _) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                Some(x.cmp(&y))
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                Some(x.cmp(&y))
            } else {
                x.as_f64()?.partial_cmp(&y.as_f64()?)
            }
        }
        (Value::String(x), Value::String(y), Kind::Number) => decimal(x, y),
        (Value::Number(x), Value::String(y), Kind::Number) => decimal(&x.to_string(), y),
        (Value::String(x), Value::Number(y), Kind::Number) => decimal(x, &y.to_string()),
        (Value::String(x), Value::String(y), Kind::Date | Kind::DateTime | Kind::Timestamp) => {
            let (x, y) = (x.trim_end_matches('Z'), y.trim_end_matches('Z'));
            let plain = |s: &str| s.len() >= 10 && s.as_bytes()[..4].iter().all(u8::is_ascii_digit);
            (plain(x) && plain(y)).then(|| x.cmp(y))
        }
        (Value::String(x), Value::String(y), Kind::Binary) => {
            let d = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).ok();
            Some(d(x)?.cmp(&d(y)?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn orders_keys_only_where_certain() {
        assert_eq!(decimal("-1.50", "-1.5"), Some(Ordering::Equal));
        assert_eq!(decimal("10.01", "9.999"), Some(Ordering::Greater));
        assert_eq!(decimal("-10", "2"), Some(Ordering::Less));
        assert_eq!(decimal("-0.00", "0"), Some(Ordering::Equal));
        assert_eq!(decimal("1e5", "2"), None);
        let dt = |a: &str, b: &str| compare(&json!(a), &json!(b), Kind::Timestamp);
        assert_eq!(
            dt("2024-01-02T03:04:05Z", "2024-01-02T03:04:05.5Z"),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare(&json!(u64::MAX), &json!(-1), Kind::Number),
            Some(Ordering::Greater)
        );
        assert_eq!(compare(&json!("b"), &json!("a"), Kind::Text), None);
        assert_eq!(
            compare(&json!("AAE="), &json!("AQ=="), Kind::Binary),
            Some(Ordering::Less)
        );
    }
}
