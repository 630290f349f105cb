//! Canonical text of a column on either side of a comparison: the SQL
//! expression that reads it (MySQL / MariaDB or PostgreSQL, chosen by the
//! *source* column type and the documented MySQL → PostgreSQL mapping) and
//! the normalisation applied in Rust (trailing fraction zeros, float
//! shortest form, hex case), so equal values render equal text on both
//! engines. Touches nothing but memory.

use crate::apply::sql::Dialect;

/// A source column: name and `information_schema` DATA_TYPE.
#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub data_type: String,
}

/// How a value's text is normalised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Norm {
    AsIs,
    Float32,
    Float64,
    Fraction,
    Hex,
}

impl Column {
    pub fn norm(&self) -> Norm {
        match self.data_type.as_str() {
            "float" => Norm::Float32,
            "double" => Norm::Float64,
            "datetime" | "timestamp" | "time" => Norm::Fraction,
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob"
            | "geometry" | "point" | "linestring" | "polygon" | "multipoint"
            | "multilinestring" | "multipolygon" | "geometrycollection" => Norm::Hex,
            _ => Norm::AsIs,
        }
    }

    /// The SQL expression reading the column as canonical text.
    pub fn expr(&self, d: Dialect) -> String {
        let mut c = String::new();
        d.ident(&mut c, &self.name);
        match (d, self.data_type.as_str(), self.norm()) {
            (Dialect::Mysql, "bit", _) => format!("CAST({c}+0 AS CHAR)"),
            (Dialect::Mysql, "datetime" | "timestamp", _) => {
                format!("DATE_FORMAT({c}, '%Y-%m-%d %H:%i:%s.%f')")
            }
            (Dialect::Mysql, _, Norm::Hex) => format!("HEX({c})"),
            (Dialect::Mysql, _, _) => format!("CAST({c} AS CHAR)"),
            (Dialect::Postgres, "datetime" | "timestamp", _) => {
                format!("to_char({c}, 'YYYY-MM-DD HH24:MI:SS.US')")
            }
            (Dialect::Postgres, _, Norm::Hex) => format!("encode({c}, 'hex')"),
            (Dialect::Postgres, _, _) => format!("{c}::text"),
        }
    }
}

/// Appends the normalised text of a value.
pub fn push(out: &mut String, v: Option<&str>, norm: Norm) {
    let Some(v) = v else {
        out.push('\u{0}');
        return;
    };
    match norm {
        Norm::AsIs => out.push_str(v),
        Norm::Float32 => match v.parse::<f32>() {
            Ok(f) => out.push_str(&f.to_string()),
            Err(_) => out.push_str(v),
        },
        Norm::Float64 => match v.parse::<f64>() {
            Ok(f) => out.push_str(&f.to_string()),
            Err(_) => out.push_str(v),
        },
        Norm::Fraction => match v.split_once('.') {
            Some((a, f)) => {
                out.push_str(a);
                let f = f.trim_end_matches('0');
                if !f.is_empty() {
                    out.push('.');
                    out.push_str(f);
                }
            }
            None => out.push_str(v),
        },
        Norm::Hex => {
            for ch in v.chars() {
                out.push(ch.to_ascii_lowercase());
            }
        }
    }
}

/// A literal for a key value read back as canonical text.
pub fn key_literal(d: Dialect, col: &Column, v: &str) -> String {
    match (d, col.norm()) {
        (Dialect::Mysql, Norm::Hex) => format!("X'{v}'"),
        (Dialect::Postgres, Norm::Hex) => format!("'\\x{v}'::bytea"),
        _ => crate::apply::target::lit(d, v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        let mut s = String::new();
        push(&mut s, Some("2024-01-01 00:00:00.500000"), Norm::Fraction);
        push(&mut s, Some("12:00:00.000000"), Norm::Fraction);
        push(&mut s, Some("0.1"), Norm::Float32);
        push(&mut s, Some("ABCD"), Norm::Hex);
        push(&mut s, None, Norm::AsIs);
        assert_eq!(s, "2024-01-01 00:00:00.512:00:000.1abcd\u{0}");
    }
}
