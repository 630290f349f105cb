//! Durations (`500ms`, `10s`, `2m`, `1h`, `1d`) and sizes (`64MiB`, `1KiB`,
//! `10MB`, plain bytes), with serde helper modules that components use via
//! `#[serde(deserialize_with = "sluice_core::config::duration_ms::deserialize")]`
//! or `#[serde(with = "sluice_core::config::size_bytes")]`. Each helper
//! accepts an integer (in the helper's unit) or a string with a unit.
//! Touches nothing but memory.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

/// Parses a duration into `unit_ms` units: a bare number is already in that
/// unit; otherwise a number followed by `ms`, `s`, `m`, `h` or `d`.
/// Fails when the result is not a whole number of units.
pub fn parse_duration(text: &str, unit_ms: u64) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    let per_ms: f64 = match unit {
        "" => unit_ms as f64,
        "ms" => 1.0,
        "s" | "sec" | "secs" => 1_000.0,
        "m" | "min" | "mins" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => {
            return Err(format!(
                "invalid duration `{text}`: expected a number with a unit (ms, s, m, h, d)"
            ))
        }
    };
    let n = parse_number(num).ok_or_else(|| {
        format!("invalid duration `{text}`: expected a number such as `500ms` or `10s`")
    })?;
    let ms = n * per_ms;
    let units = ms / unit_ms as f64;
    if units.fract() != 0.0 || !units.is_finite() || units > u64::MAX as f64 {
        let name = if unit_ms == 1 {
            "milliseconds"
        } else {
            "seconds"
        };
        return Err(format!(
            "invalid duration `{text}`: not a whole number of {name}"
        ));
    }
    Ok(units as u64)
}

/// Parses a size in bytes: a bare number of bytes, or a number followed by
/// `B`, `KB`/`MB`/`GB`/`TB` (powers of 1000) or `KiB`/`MiB`/`GiB`/`TiB`
/// (powers of 1024), case-insensitively.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim().to_ascii_lowercase());
    let mult: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1_048_576.0,
        "gib" => 1_073_741_824.0,
        "tib" => 1_099_511_627_776.0,
        _ => {
            return Err(format!(
            "invalid size `{text}`: expected a number with a unit (B, KB, MB, GB, KiB, MiB, GiB)"
        ))
        }
    };
    let n = parse_number(num)
        .ok_or_else(|| format!("invalid size `{text}`: expected a number such as `64MiB`"))?;
    let bytes = (n * mult).round();
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("invalid size `{text}`: too large"));
    }
    Ok(bytes as u64)
}

fn parse_number(num: &str) -> Option<f64> {
    if num.is_empty() || num.starts_with('.') {
        return None;
    }
    let cleaned: String = num.chars().filter(|&c| c != '_').collect();
    cleaned.parse::<f64>().ok().filter(|n| *n >= 0.0)
}

/// Which unit a helper parses into.
#[derive(Clone, Copy)]
enum Unit {
    Millis,
    Secs,
    Bytes,
}

struct UnitVisitor(Unit);

impl<'de> Visitor<'de> for UnitVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.0 {
            Unit::Millis => f.write_str("a duration such as `500ms`, `10s` or milliseconds"),
            Unit::Secs => f.write_str("a duration such as `30s`, `2m` or seconds"),
            Unit::Bytes => f.write_str("a size such as `64MiB`, `10MB` or bytes"),
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("{v} is negative")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        match self.0 {
            Unit::Millis => parse_duration(v, 1),
            Unit::Secs => parse_duration(v, 1_000),
            Unit::Bytes => parse_size(v),
        }
        .map_err(E::custom)
    }
}

fn de_unit<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D, unit: Unit) -> Result<T, D::Error> {
    let v = d.deserialize_any(UnitVisitor(unit))?;
    T::try_from(v).map_err(|_| de::Error::custom(format!("{v} is too large")))
}

macro_rules! unit_module {
    ($name:ident, $unit:expr, $doc:literal) => {
        #[doc = $doc]
        pub mod $name {
            use serde::{Deserialize, Deserializer, Serializer};

            pub fn deserialize<'de, D, T>(d: D) -> Result<T, D::Error>
            where
                D: Deserializer<'de>,
                T: TryFrom<u64>,
            {
                super::de_unit(d, $unit)
            }

            pub fn serialize<S: Serializer, T: Copy + Into<u64>>(
                v: &T,
                s: S,
            ) -> Result<S::Ok, S::Error> {
                s.serialize_u64((*v).into())
            }

            /// The same for an `Option` field (use with `#[serde(default)]`).
            pub mod option {
                use super::*;

                pub fn deserialize<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
                where
                    D: Deserializer<'de>,
                    T: TryFrom<u64>,
                {
                    #[derive(Deserialize)]
                    struct W(#[serde(deserialize_with = "super::deserialize")] u64);
                    match Option::<W>::deserialize(d)? {
                        None => Ok(None),
                        Some(W(v)) => T::try_from(v)
                            .map(Some)
                            .map_err(|_| serde::de::Error::custom(format!("{v} is too large"))),
                    }
                }

                pub fn serialize<S: Serializer, T: Copy + Into<u64>>(
                    v: &Option<T>,
                    s: S,
                ) -> Result<S::Ok, S::Error> {
                    match v {
                        Some(v) => s.serialize_u64((*v).into()),
                        None => s.serialize_none(),
                    }
                }
            }
        }
    };
}

unit_module!(
    duration_ms,
    super::Unit::Millis,
    "Serde helper: a duration in milliseconds (`500ms`, `10s`, or a bare number of ms)."
);
unit_module!(
    duration_secs,
    super::Unit::Secs,
    "Serde helper: a duration in whole seconds (`30s`, `2m`, or a bare number of seconds)."
);
unit_module!(
    size_bytes,
    super::Unit::Bytes,
    "Serde helper: a size in bytes (`64MiB`, `10MB`, `1KiB`, or a bare number of bytes)."
);

/// Serde helper: a `std::time::Duration` (`500ms`, `10s`, or a bare number of ms).
pub mod duration {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        super::de_unit::<D, u64>(d, super::Unit::Millis).map(Duration::from_millis)
    }

    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(v.as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms", 1), Ok(500));
        assert_eq!(parse_duration("10s", 1), Ok(10_000));
        assert_eq!(parse_duration("2m", 1_000), Ok(120));
        assert_eq!(parse_duration("1.5s", 1), Ok(1_500));
        assert_eq!(parse_duration("250", 1), Ok(250));
        assert_eq!(parse_duration("30", 1_000), Ok(30));
        assert!(parse_duration("500ms", 1_000).is_err());
        assert!(parse_duration("10 parsecs", 1).is_err());
        assert!(parse_duration("ms", 1).is_err());
        assert!(parse_duration("-5s", 1).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1 gib"), Ok(1 << 30));
        assert!(parse_size("12 furlongs").is_err());
        assert!(parse_size("").is_err());
    }
}
