//! Text and binary column payloads: decoding by column character set
//! (UTF-8 family, latin1 as Windows-1252, binary as base64). Touches nothing
//! but memory.

use base64::Engine;
use serde_json::Value;

/// How a column's bytes become JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charset {
    /// utf8mb3 / utf8mb4 / ascii and anything else decoded as UTF-8
    /// (invalid sequences become U+FFFD).
    Utf8,
    /// MySQL's `latin1` is Windows-1252.
    Latin1,
    /// `binary`: base64.
    Binary,
}

impl Charset {
    /// From a collation id as written in the table map.
    pub fn from_collation(id: u16) -> Charset {
        match id {
            63 => Charset::Binary,
            5 | 8 | 15 | 31 | 47 | 48 | 49 | 94 => Charset::Latin1,
            _ => Charset::Utf8,
        }
    }

    /// From a character set name as information_schema spells it.
    pub fn from_name(name: Option<&str>) -> Charset {
        match name {
            None | Some("binary") => Charset::Binary,
            Some("latin1") => Charset::Latin1,
            Some(_) => Charset::Utf8,
        }
    }

    pub fn decode(self, bytes: &[u8]) -> Value {
        match self {
            Charset::Utf8 => Value::String(match std::str::from_utf8(bytes) {
                Ok(s) => s.to_owned(),
                Err(_) => String::from_utf8_lossy(bytes).into_owned(),
            }),
            Charset::Latin1 => Value::String(cp1252(bytes)),
            Charset::Binary => Value::String(base64(bytes)),
        }
    }
}

pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Windows-1252 code points for 0x80..=0x9F (MySQL keeps the five undefined
/// ones as the C1 controls).
const CP1252_HIGH: [char; 32] = [
    '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}',
    '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
];

pub fn cp1252(bytes: &[u8]) -> String {
    if bytes.is_ascii() {
        // ASCII is valid UTF-8: no per-byte mapping needed.
        if let Ok(s) = std::str::from_utf8(bytes) {
            return s.to_owned();
        }
    }
    bytes
        .iter()
        .map(|&b| match b {
            0x80..=0x9F => CP1252_HIGH[(b - 0x80) as usize],
            _ => b as char,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_is_cp1252() {
        assert_eq!(cp1252(b"caf\xe9 \x80"), "café €");
        assert_eq!(Charset::from_collation(8), Charset::Latin1);
        assert_eq!(
            Charset::Binary.decode(b"\x00\xff"),
            Value::String("AP8=".into())
        );
    }
}
