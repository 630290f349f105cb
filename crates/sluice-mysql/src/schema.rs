//! Table schemas as the row decoder needs them: column kinds with their
//! binlog metadata, names, signedness, character sets, ENUM/SET labels and
//! the primary key. Built from a TABLE_MAP event (complete when the server
//! writes `binlog_row_metadata=FULL`), or completed from information_schema
//! rows (see `infoschema`). Touches nothing but memory.

use std::sync::Arc;

use mysql_common::binlog::events::{OptionalMetaExtractor, OptionalMetadataField, TableMapEvent};
use mysql_common::constants::ColumnType;

use crate::text::Charset;

/// How a column's value is laid out in a row image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tiny,
    Short,
    Int24,
    Long,
    LongLong,
    Float,
    Double,
    Decimal {
        precision: u8,
        scale: u8,
    },
    Bit {
        bytes: u8,
    },
    Date,
    Time,
    Time2 {
        fsp: u8,
    },
    DateTime,
    DateTime2 {
        fsp: u8,
    },
    Timestamp,
    Timestamp2 {
        fsp: u8,
    },
    Year,
    /// VARCHAR: length prefix of 1 or 2 bytes.
    VarChar {
        prefix: u8,
    },
    /// CHAR / BINARY: length prefix of 1 or 2 bytes; `max` bytes wide (the
    /// binlog strips BINARY's trailing zero bytes, the decoder pads them back).
    Char {
        prefix: u8,
        max: u16,
    },
    /// BLOB/TEXT: length prefix of 1–4 bytes.
    Blob {
        prefix: u8,
    },
    Geometry {
        prefix: u8,
    },
    /// MySQL binary JSON: 4-byte length prefix (by metadata).
    Json {
        prefix: u8,
    },
    Enum {
        bytes: u8,
    },
    Set {
        bytes: u8,
    },
    Null,
}

impl Kind {
    /// Maps a table-map column type and its metadata bytes.
    pub fn from_binlog(ty: ColumnType, meta: &[u8]) -> Result<Kind, String> {
        use ColumnType::*;
        let m0 = meta.first().copied().unwrap_or(0);
        let m1 = meta.get(1).copied().unwrap_or(0);
        let fsp = m0.min(6);
        Ok(match ty {
            MYSQL_TYPE_TINY => Kind::Tiny,
            MYSQL_TYPE_SHORT => Kind::Short,
            MYSQL_TYPE_INT24 => Kind::Int24,
            MYSQL_TYPE_LONG => Kind::Long,
            MYSQL_TYPE_LONGLONG => Kind::LongLong,
            MYSQL_TYPE_FLOAT => Kind::Float,
            MYSQL_TYPE_DOUBLE => Kind::Double,
            MYSQL_TYPE_NEWDECIMAL => Kind::Decimal {
                precision: m0,
                scale: m1,
            },
            // Metadata: bits mod 8, then whole bytes (BIT(1..64)).
            MYSQL_TYPE_BIT if m0 > 7 || m1 > 8 || (m1 == 8 && m0 > 0) => {
                return Err(format!("BIT column metadata {m0}, {m1} is out of range"))
            }
            MYSQL_TYPE_BIT => Kind::Bit {
                bytes: m1 + u8::from(m0 > 0),
            },
            MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => Kind::Date,
            MYSQL_TYPE_TIME => Kind::Time,
            MYSQL_TYPE_TIME2 => Kind::Time2 { fsp },
            MYSQL_TYPE_DATETIME => Kind::DateTime,
            MYSQL_TYPE_DATETIME2 => Kind::DateTime2 { fsp },
            MYSQL_TYPE_TIMESTAMP => Kind::Timestamp,
            MYSQL_TYPE_TIMESTAMP2 => Kind::Timestamp2 { fsp },
            MYSQL_TYPE_YEAR => Kind::Year,
            MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING => {
                let max = u16::from_le_bytes([m0, m1]);
                Kind::VarChar {
                    prefix: if max < 256 { 1 } else { 2 },
                }
            }
            MYSQL_TYPE_STRING => {
                // A long CHAR() keeps high bits of its length in byte 0.
                let max = if m0 & 0x30 != 0x30 {
                    m1 as usize | ((((m0 & 0x30) ^ 0x30) as usize) << 4)
                } else {
                    m1 as usize
                };
                Kind::Char {
                    prefix: if max < 256 { 1 } else { 2 },
                    max: max as u16,
                }
            }
            MYSQL_TYPE_ENUM => Kind::Enum { bytes: m1 },
            MYSQL_TYPE_SET => Kind::Set { bytes: m1 },
            MYSQL_TYPE_TINY_BLOB
            | MYSQL_TYPE_MEDIUM_BLOB
            | MYSQL_TYPE_LONG_BLOB
            | MYSQL_TYPE_BLOB => Kind::Blob { prefix: m0 },
            MYSQL_TYPE_GEOMETRY => Kind::Geometry { prefix: m0 },
            MYSQL_TYPE_JSON => Kind::Json { prefix: m0 },
            MYSQL_TYPE_NULL => Kind::Null,
            other => return Err(format!("column type {other:?} is not supported")),
        })
    }

    fn numeric(self) -> bool {
        matches!(
            self,
            Kind::Tiny | Kind::Short | Kind::Int24 | Kind::Long | Kind::LongLong
        )
    }
}

/// One column.
#[derive(Clone, Debug)]
pub struct ColumnSpec {
    pub name: String,
    pub kind: Kind,
    pub unsigned: bool,
    pub charset: Charset,
    /// ENUM or SET labels, in definition order.
    pub labels: Vec<String>,
}

/// One table's columns, as of one TABLE_MAP event.
#[derive(Clone, Debug)]
pub struct TableSchema {
    pub db: String,
    pub table: String,
    pub columns: Vec<ColumnSpec>,
    pub primary_key: Arc<Vec<String>>,
    /// Names, signedness and charsets came with the table map
    /// (`binlog_row_metadata=FULL`); otherwise information_schema completed them.
    pub from_table_map: bool,
}

impl TableSchema {
    /// Builds the schema a TABLE_MAP event describes. Without FULL metadata
    /// the names are `@1`, `@2`, … and `from_table_map` is false.
    pub fn from_table_map(tme: &TableMapEvent<'_>) -> Result<TableSchema, String> {
        let db = tme.database_name().into_owned();
        let table = tme.table_name().into_owned();
        let n = tme.columns_count() as usize;
        let mut columns = Vec::with_capacity(n);
        let mut raw_types = Vec::with_capacity(n);
        for i in 0..n {
            let ty = tme
                .get_column_type(i)
                .map_err(|e| format!("column {}: {e}", i + 1))?
                .ok_or_else(|| format!("column {} has no type", i + 1))?;
            let meta = tme.get_column_metadata(i).unwrap_or(&[]);
            let kind = Kind::from_binlog(ty, meta).map_err(|e| format!("column {}: {e}", i + 1))?;
            raw_types.push(ty);
            columns.push(ColumnSpec {
                name: format!("@{}", i + 1),
                kind,
                unsigned: false,
                charset: match kind {
                    Kind::Blob { .. } | Kind::Geometry { .. } | Kind::Bit { .. } => Charset::Binary,
                    _ => Charset::Utf8,
                },
                labels: Vec::new(),
            });
        }
        let opt = OptionalMetaExtractor::new(tme.iter_optional_meta())
            .map_err(|e| format!("optional metadata: {e}"))?;
        let mut signed = opt.iter_signedness();
        let mut charsets = opt.iter_charset();
        let mut es_charsets = opt.iter_enum_and_set_charset();
        for (c, ty) in columns.iter_mut().zip(&raw_types) {
            if ty.is_numeric_type() {
                c.unsigned = signed.next().unwrap_or(false) && c.kind.numeric();
            }
            if ty.is_character_type() {
                if let Some(cs) = charsets.next().transpose().map_err(|e| e.to_string())? {
                    c.charset = Charset::from_collation(cs);
                }
            } else if ty.is_enum_or_set_type() {
                if let Some(cs) = es_charsets.next().transpose().map_err(|e| e.to_string())? {
                    c.charset = Charset::from_collation(cs);
                }
            }
        }
        let mut named = 0;
        for (c, name) in columns.iter_mut().zip(opt.iter_column_name()) {
            c.name = name.map_err(|e| e.to_string())?.name().into_owned();
            named += 1;
        }
        let mut pk = Vec::new();
        for i in opt.iter_primary_key() {
            let i = i.map_err(|e| e.to_string())? as usize;
            if let Some(c) = columns.get(i) {
                pk.push(c.name.clone());
            }
        }
        read_labels(tme, &mut columns)?;
        Ok(TableSchema {
            db,
            table,
            from_table_map: named == n && n > 0,
            columns,
            primary_key: Arc::new(pk),
        })
    }
}

/// ENUM and SET labels from the optional metadata, decoded by the
/// column's charset (latin1 labels as Windows-1252).
fn read_labels(tme: &TableMapEvent<'_>, columns: &mut [ColumnSpec]) -> Result<(), String> {
    let mut enums: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut sets: Vec<Vec<Vec<u8>>> = Vec::new();
    for field in tme.iter_optional_meta() {
        match field.map_err(|e| format!("optional metadata: {e}"))? {
            OptionalMetadataField::EnumStrValue(v) => {
                for one in v.iter_values() {
                    let one = one.map_err(|e| e.to_string())?;
                    enums.push(
                        one.values()
                            .iter()
                            .map(|s| s.value_raw().to_vec())
                            .collect(),
                    );
                }
            }
            OptionalMetadataField::SetStrValue(v) => {
                for one in v.iter_values() {
                    let one = one.map_err(|e| e.to_string())?;
                    sets.push(
                        one.values()
                            .iter()
                            .map(|s| s.value_raw().to_vec())
                            .collect(),
                    );
                }
            }
            _ => {}
        }
    }
    let (mut enums, mut sets) = (enums.into_iter(), sets.into_iter());
    for c in columns {
        let raw = match c.kind {
            Kind::Enum { .. } => enums.next().unwrap_or_default(),
            Kind::Set { .. } => sets.next().unwrap_or_default(),
            _ => continue,
        };
        c.labels = raw
            .iter()
            .map(|l| crate::value::label(c.charset, l))
            .collect();
    }
    Ok(())
}
