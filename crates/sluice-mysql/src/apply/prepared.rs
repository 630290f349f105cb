//! Binary-protocol statements for MySQL / MariaDB targets. A merged
//! upsert or delete of many rows is sent as prepared statements of a fixed
//! number of rows (`BLOCKS`), with the values bound as parameters: the
//! server parses each shape once per connection instead of lexing every
//! literal of every row (in a profile of the text path, parsing and
//! literal handling were about a third of the target's CPU). The rows
//! left over go as one text statement. Values are converted exactly as
//! `sql::Dialect::value` renders them. Touches nothing but memory.

use mysql_async::Value as Param;
use serde_json::{Map, Value};

use super::sql::{self, Dialect, Kind, TableMeta};

/// Rows per prepared statement, largest first; a run shorter than the
/// smallest goes as text. Few sizes keep the per-connection statement
/// cache small (two shapes per table and operation).
pub const BLOCKS: [usize; 2] = [512, 64];

/// The server's limit of parameters per statement.
const MAX_PARAMS: usize = 65_535;

/// One unit sent to the target.
#[derive(Debug)]
pub enum Piece {
    /// One or more statements, each ending with `;`.
    Text(String),
    /// A statement with `?` placeholders and its parameters.
    Prepared { sql: String, params: Vec<Param> },
}

/// Pieces being assembled: adjacent text is joined into one piece.
#[derive(Debug, Default)]
pub struct Pieces(pub Vec<Piece>);

impl Pieces {
    pub fn text(&mut self, s: &str) {
        if let Some(Piece::Text(t)) = self.0.last_mut() {
            t.push_str(s);
        } else {
            self.0.push(Piece::Text(s.to_string()));
        }
    }

    /// Text before everything else (joined with a leading text piece).
    pub fn text_front(&mut self, s: &str) {
        match self.0.first_mut() {
            Some(Piece::Text(t)) => t.insert_str(0, s),
            _ => self.0.insert(0, Piece::Text(s.to_string())),
        }
    }

    pub fn prepared(&mut self, sql: String, params: Vec<Param>) {
        self.0.push(Piece::Prepared { sql, params });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Everything as one text (only for text-only pieces; prepared ones
    /// are shown with their placeholders).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Prepared { sql, .. } => {
                    out.push_str(sql);
                    out.push(';');
                }
            }
        }
        out
    }
}

/// A JSON-mapped source value as a parameter for a column of `kind`
/// (`None`: this kind needs a text literal, e.g. GEOMETRY).
pub fn param(v: &Value, kind: Kind) -> Result<Option<Param>, String> {
    use base64::Engine;
    Ok(Some(match v {
        Value::Null => Param::NULL,
        Value::Bool(b) => Param::Int(i64::from(*b)),
        Value::Number(n) => match kind {
            Kind::Text | Kind::Json => Param::Bytes(n.to_string().into_bytes()),
            _ => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => Param::Int(i),
                (_, Some(u), _) => Param::UInt(u),
                (_, _, Some(f)) => Param::Double(f),
                _ => Param::Bytes(n.to_string().into_bytes()),
            },
        },
        Value::String(s) => match kind {
            Kind::Geometry => return Ok(None),
            Kind::Binary => Param::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|e| format!("binary value is not base64: {e}"))?,
            ),
            Kind::DateTime | Kind::Timestamp => {
                let s = s.trim_end_matches('Z');
                date_time(s).unwrap_or_else(|| Param::Bytes(s.replacen('T', " ", 1).into_bytes()))
            }
            _ => Param::Bytes(s.as_bytes().to_vec()),
        },
        Value::Array(_) | Value::Object(_) => Param::Bytes(v.to_string().into_bytes()),
    }))
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]` as a binary DATETIME (the server stores
/// it without parsing text); anything else `None`.
fn date_time(s: &str) -> Option<Param> {
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let micros = match b.get(19) {
        None => 0,
        Some(b'.') if b.len() > 20 && b.len() <= 26 => {
            let f = num(20..b.len())?;
            f * 10u32.pow(26 - b.len() as u32)
        }
        _ => return None,
    };
    Some(Param::Date(
        num(0..4)? as u16,
        num(5..7)? as u8,
        num(8..10)? as u8,
        num(11..13)? as u8,
        num(14..16)? as u8,
        num(17..19)? as u8,
        micros,
    ))
}

/// `(?,?,…)` repeated `rows` times, comma separated.
fn placeholders(out: &mut String, rows: usize, width: usize) {
    for i in 0..rows {
        out.push_str(if i > 0 { ",(" } else { "(" });
        for j in 0..width {
            out.push_str(if j > 0 { ",?" } else { "?" });
        }
        out.push(')');
    }
}

/// The block sizes usable with `width` parameters per row.
fn blocks(width: usize) -> impl Iterator<Item = usize> {
    let limit = MAX_PARAMS / width.max(1);
    BLOCKS.into_iter().filter(move |b| *b <= limit)
}

/// `rows` as prepared blocks (`shape(n)`: the statement for `n` rows;
/// `bind`: appends a row's parameters, `false` when a value needs a
/// literal, which sends every row left as text), then the rest as
/// `text`.
fn in_blocks(
    out: &mut Pieces,
    rows: &[&Map<String, Value>],
    width: usize,
    shape: impl Fn(usize) -> String,
    mut bind: impl FnMut(&Map<String, Value>, &mut Vec<Param>) -> Result<bool, String>,
    text: impl FnOnce(&[&Map<String, Value>]) -> Result<String, String>,
) -> Result<(), String> {
    let mut at = 0;
    'sizes: for b in blocks(width) {
        let mut sql: Option<String> = None;
        while rows.len() - at >= b {
            let mut params = Vec::with_capacity(b * width);
            for r in &rows[at..at + b] {
                if !bind(r, &mut params)? {
                    break 'sizes;
                }
            }
            let s = sql.get_or_insert_with(|| shape(b));
            out.prepared(s.clone(), params);
            at += b;
        }
    }
    if at < rows.len() {
        out.text(&text(&rows[at..])?);
        out.text(";");
    }
    Ok(())
}

/// A merged upsert as prepared blocks plus a text remainder.
pub fn upsert(
    out: &mut Pieces,
    (db, table): (&str, &str),
    meta: &TableMeta,
    pk: &[String],
    rows: &[&Map<String, Value>],
) -> Result<(), String> {
    let d = Dialect::Mysql;
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let cols = sql::upsert_columns(meta, &format!("{db}.{table}"), first)?;
    let shape = |b: usize| {
        let mut s = String::with_capacity(64 + b * (2 * cols.len() + 3));
        sql::upsert_head(d, &mut s, db, table, &cols);
        placeholders(&mut s, b, cols.len());
        sql::upsert_tail(d, &mut s, pk, &cols);
        s
    };
    let bind = |r: &Map<String, Value>, params: &mut Vec<Param>| {
        // Rows of a group have the first row's columns in its order (see
        // `build`): walk the values, no lookups.
        let in_order = r.len() == cols.len();
        let mut values = r.values();
        for (c, k) in &cols {
            let v = match in_order {
                true => values.next(),
                false => r.get(c.as_str()),
            };
            let v = v.unwrap_or(&Value::Null);
            match param(v, *k).map_err(|e| format!("column `{c}`: {e}"))? {
                Some(p) => params.push(p),
                None => return Ok(false),
            }
        }
        Ok(true)
    };
    let text = |rest: &[&Map<String, Value>]| sql::upsert(d, db, table, meta, pk, rest);
    in_blocks(out, rows, cols.len(), shape, bind, text)
}

/// A merged delete by primary key as prepared blocks plus a text
/// remainder.
pub fn delete(
    out: &mut Pieces,
    (db, table): (&str, &str),
    meta: &TableMeta,
    pk: &[String],
    rows: &[&Map<String, Value>],
) -> Result<(), String> {
    let d = Dialect::Mysql;
    let kinds = sql::pk_kinds(meta, &format!("{db}.{table}"), pk)?;
    let shape = |b: usize| {
        let mut s = String::with_capacity(64 + b * (2 * pk.len() + 3));
        sql::delete_head(d, &mut s, db, table, pk);
        placeholders(&mut s, b, pk.len());
        s.push(')');
        s
    };
    let bind = |r: &Map<String, Value>, params: &mut Vec<Param>| {
        for (c, k) in pk.iter().zip(&kinds) {
            let v = r
                .get(c)
                .ok_or_else(|| format!("before image lacks primary-key column `{c}`"))?;
            match param(v, *k)? {
                Some(p) => params.push(p),
                None => return Ok(false),
            }
        }
        Ok(true)
    };
    let text = |rest: &[&Map<String, Value>]| sql::delete_by_pk(d, db, table, meta, pk, rest);
    in_blocks(out, rows, pk.len(), shape, bind, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta() -> TableMeta {
        let mut m = TableMeta::default();
        for (c, k) in [
            ("id", Kind::Number),
            ("s", Kind::Text),
            ("b", Kind::Binary),
            ("t", Kind::DateTime),
            ("g", Kind::Geometry),
        ] {
            m.columns.insert(c.into(), k);
        }
        m
    }

    #[test]
    fn blocks_then_text_remainder() {
        let rows: Vec<Map<String, Value>> = (0..600)
            .map(|i| {
                json!({"id": i, "s": format!("r{i}"), "b": "AAE=", "t": "2024-01-02T03:04:05.5Z"})
                    .as_object()
                    .cloned()
                    .unwrap()
            })
            .collect();
        let refs: Vec<&Map<String, Value>> = rows.iter().collect();
        let mut out = Pieces::default();
        upsert(&mut out, ("d", "t"), &meta(), &["id".into()], &refs).unwrap();
        // 600 = 512 + 64 + 24 rows of text.
        assert_eq!(out.0.len(), 3, "{out:?}");
        let Piece::Prepared { sql, params } = &out.0[0] else {
            panic!("first piece should be prepared");
        };
        assert_eq!(params.len(), 512 * 4);
        assert_eq!(sql.matches('?').count(), 512 * 4);
        assert!(sql
            .ends_with("ON DUPLICATE KEY UPDATE `s`=VALUES(`s`),`b`=VALUES(`b`),`t`=VALUES(`t`)"));
        assert_eq!(params[0], Param::Int(0));
        assert_eq!(params[1], Param::Bytes(b"r0".to_vec()));
        assert_eq!(params[2], Param::Bytes(vec![0, 1]));
        assert_eq!(params[3], Param::Date(2024, 1, 2, 3, 4, 5, 500_000));
        let Piece::Text(t) = &out.0[2] else {
            panic!("remainder should be text");
        };
        assert!(t.starts_with("INSERT INTO `d`.`t`") && t.contains("'r599'") && t.ends_with(';'));
        assert!(!t.contains("'r575'"), "row 575 is in the 64-row block");
    }

    #[test]
    fn geometry_goes_as_text_and_deletes_block() {
        let rows: Vec<Map<String, Value>> = (0..70)
            .map(|i| {
                json!({"id": i, "g": "AAAAAAEBAAAAAAAAAAAA8D8AAAAAAAAAQA=="})
                    .as_object()
                    .cloned()
                    .unwrap()
            })
            .collect();
        let refs: Vec<&Map<String, Value>> = rows.iter().collect();
        let mut out = Pieces::default();
        upsert(&mut out, ("d", "t"), &meta(), &["id".into()], &refs).unwrap();
        assert!(matches!(&out.0[..], [Piece::Text(t)] if t.contains("ST_GeomFromWKB")));
        let mut out = Pieces::default();
        delete(&mut out, ("d", "t"), &meta(), &["id".into()], &refs).unwrap();
        assert_eq!(out.0.len(), 2);
        assert!(matches!(&out.0[0], Piece::Prepared { sql, params }
            if params.len() == 64 && sql.starts_with("DELETE FROM `d`.`t` WHERE (`id`) IN ((?),(?)")));
        assert!(
            matches!(&out.0[1], Piece::Text(t) if t.ends_with("IN ((64),(65),(66),(67),(68),(69));"))
        );
        // Adjacent text joins; text_front prepends.
        out.text_front("START TRANSACTION;");
        out.text("COMMIT");
        assert!(matches!(&out.0[0], Piece::Text(t) if t == "START TRANSACTION;"));
        assert!(matches!(&out.0[1], Piece::Prepared { .. }));
        assert!(matches!(&out.0[2], Piece::Text(t) if t.ends_with(";COMMIT")));
    }

    #[test]
    fn params_mirror_literals() {
        assert_eq!(
            param(&json!(null), Kind::Number).unwrap(),
            Some(Param::NULL)
        );
        assert_eq!(
            param(&json!(true), Kind::Number).unwrap(),
            Some(Param::Int(1))
        );
        assert_eq!(
            param(&json!(u64::MAX), Kind::Number).unwrap(),
            Some(Param::UInt(u64::MAX))
        );
        assert_eq!(
            param(&json!(1.5), Kind::Number).unwrap(),
            Some(Param::Double(1.5))
        );
        assert_eq!(
            param(&json!(7), Kind::Text).unwrap(),
            Some(Param::Bytes(b"7".to_vec()))
        );
        assert_eq!(
            param(&json!({"a": [1]}), Kind::Json).unwrap(),
            Some(Param::Bytes(br#"{"a":[1]}"#.to_vec()))
        );
        assert!(param(&json!("not base64!"), Kind::Binary).is_err());
        assert_eq!(param(&json!("x"), Kind::Geometry).unwrap(), None);
    }

    #[test]
    fn date_times_go_binary_with_every_fraction_digit() {
        let p = |s: &str, k| param(&json!(s), k).unwrap().unwrap();
        for (text, kind, (y, mo, d, h, mi, s, us)) in [
            (
                "2024-01-02T03:04:05.123456",
                Kind::DateTime,
                (2024, 1, 2, 3, 4, 5, 123_456),
            ),
            (
                "2024-01-02T03:04:05.5Z",
                Kind::Timestamp,
                (2024, 1, 2, 3, 4, 5, 500_000),
            ),
            (
                "2024-01-02T03:04:05.000001Z",
                Kind::Timestamp,
                (2024, 1, 2, 3, 4, 5, 1),
            ),
            ("0000-00-00T00:00:00", Kind::DateTime, (0, 0, 0, 0, 0, 0, 0)),
        ] {
            assert_eq!(p(text, kind), Param::Date(y, mo, d, h, mi, s, us), "{text}");
        }
        // Anything else keeps the text form the server parses.
        for odd in [
            "2024-01-02",
            "2024-01-02T03:04:05.1234567",
            "2024-01-02T03:04:0x",
            "+2024-01-02T03:04:05",
        ] {
            assert_eq!(
                p(odd, Kind::DateTime),
                Param::Bytes(odd.replacen('T', " ", 1).into_bytes()),
                "{odd}"
            );
        }
    }
}
