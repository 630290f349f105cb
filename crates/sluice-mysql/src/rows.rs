//! Rows events (WRITE / UPDATE / DELETE, v1 and v2, MariaDB's compressed
//! variants): the event body is parsed here from `Event::data()` and each
//! row image decoded column by column with the table's [`TableSchema`].
//! Never panics on malformed input. Touches nothing but memory.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::mariadb;
use crate::schema::TableSchema;
use crate::value::{decode, Cursor};

/// Which change a rows event carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowsKind {
    Write,
    Update,
    Delete,
}

/// The rows-event type codes this module decodes, with their kind, whether
/// they are v2 (extra data) and whether MariaDB compressed the rows.
pub fn classify(event_type: u8) -> Option<(RowsKind, bool, bool)> {
    Some(match event_type {
        23 => (RowsKind::Write, false, false),
        24 => (RowsKind::Update, false, false),
        25 => (RowsKind::Delete, false, false),
        30 => (RowsKind::Write, true, false),
        31 => (RowsKind::Update, true, false),
        32 => (RowsKind::Delete, true, false),
        mariadb::WRITE_ROWS_COMPRESSED_V1 => (RowsKind::Write, false, true),
        mariadb::UPDATE_ROWS_COMPRESSED_V1 => (RowsKind::Update, false, true),
        mariadb::DELETE_ROWS_COMPRESSED_V1 => (RowsKind::Delete, false, true),
        mariadb::WRITE_ROWS_COMPRESSED => (RowsKind::Write, true, true),
        mariadb::UPDATE_ROWS_COMPRESSED => (RowsKind::Update, true, true),
        mariadb::DELETE_ROWS_COMPRESSED => (RowsKind::Delete, true, true),
        _ => return None,
    })
}

/// A parsed rows-event body.
pub struct RowsBody<'a> {
    pub kind: RowsKind,
    pub table_id: u64,
    pub ncols: usize,
    pub present: &'a [u8],
    pub present_after: &'a [u8],
    pub data: Cow<'a, [u8]>,
}

/// Table id of a rows event, read without decoding anything else (for
/// filtered tables).
pub fn table_id(data: &[u8]) -> Option<u64> {
    let b = data.get(..6)?;
    Some(b.iter().rev().fold(0u64, |a, x| (a << 8) | *x as u64))
}

fn lenenc(cur: &mut Cursor<'_>) -> Result<u64, String> {
    let first = cur.take(1)?[0];
    let n = match first {
        0..=250 => return Ok(first as u64),
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        _ => return Err(format!("bad length-encoded integer 0x{first:02x}")),
    };
    Ok(cur
        .take(n)?
        .iter()
        .rev()
        .fold(0u64, |a, x| (a << 8) | *x as u64))
}

/// Parses the body of a rows event of type `event_type`.
pub fn parse(event_type: u8, data: &[u8]) -> Result<RowsBody<'_>, String> {
    let (kind, v2, compressed) = classify(event_type)
        .ok_or_else(|| format!("event type {event_type} is not a rows event"))?;
    let mut cur = Cursor { buf: data };
    let table_id = table_id(cur.take(6)?).unwrap_or(0);
    cur.take(2)?; // flags
    if v2 {
        let extra = u16::from_le_bytes(cur.take(2)?.try_into().unwrap_or([0, 0])) as usize;
        cur.take(extra.saturating_sub(2))?;
    }
    let ncols = lenenc(&mut cur)? as usize;
    let bitmap = ncols.div_ceil(8);
    let present = cur.take(bitmap)?;
    let present_after = if kind == RowsKind::Update {
        cur.take(bitmap)?
    } else {
        present
    };
    let data = if compressed {
        Cow::Owned(
            mariadb::uncompress(cur.buf)
                .ok_or_else(|| "compressed rows event does not inflate".to_string())?,
        )
    } else {
        Cow::Borrowed(cur.buf)
    };
    Ok(RowsBody {
        kind,
        table_id,
        ncols,
        present,
        present_after,
        data,
    })
}

fn bit(map: &[u8], i: usize) -> bool {
    map.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// Decodes one row image into column name → value. `keep[i]` false drops
/// column `i` from the output (it is still read past).
pub fn decode_image(
    schema: &TableSchema,
    present: &[u8],
    keep: Option<&[bool]>,
    cur: &mut Cursor<'_>,
) -> Result<Map<String, Value>, String> {
    let ncols = schema.columns.len();
    let npresent = (0..ncols).filter(|&i| bit(present, i)).count();
    let nulls = cur.take(npresent.div_ceil(8))?;
    let mut row = Map::with_capacity(npresent);
    let mut image_idx = 0;
    for (i, c) in schema.columns.iter().enumerate() {
        if !bit(present, i) {
            continue;
        }
        let is_null = bit(nulls, image_idx);
        image_idx += 1;
        let v = if is_null {
            Value::Null
        } else {
            decode(c, cur).map_err(|e| format!("column `{}`: {e}", c.name))?
        };
        if keep.is_none_or(|k| k.get(i).copied().unwrap_or(true)) {
            row.insert(c.name.clone(), v);
        }
    }
    Ok(row)
}

/// One decoded row change: `before` and/or `after` by kind.
pub struct RowImages {
    pub before: Option<Map<String, Value>>,
    pub after: Option<Map<String, Value>>,
}

/// Decodes every row of a rows event, calling `each` per row in order.
pub fn decode_rows(
    body: &RowsBody<'_>,
    schema: &TableSchema,
    keep: Option<&[bool]>,
    mut each: impl FnMut(RowImages) -> Result<(), String>,
) -> Result<(), String> {
    if body.ncols != schema.columns.len() {
        return Err(format!(
            "rows event has {} columns, table map has {}",
            body.ncols,
            schema.columns.len()
        ));
    }
    let mut cur = Cursor { buf: &body.data };
    while !cur.buf.is_empty() {
        let images = match body.kind {
            RowsKind::Write => RowImages {
                before: None,
                after: Some(decode_image(schema, body.present, keep, &mut cur)?),
            },
            RowsKind::Delete => RowImages {
                before: Some(decode_image(schema, body.present, keep, &mut cur)?),
                after: None,
            },
            RowsKind::Update => RowImages {
                before: Some(decode_image(schema, body.present, keep, &mut cur)?),
                after: Some(decode_image(schema, body.present_after, keep, &mut cur)?),
            },
        };
        each(images)?;
    }
    Ok(())
}
