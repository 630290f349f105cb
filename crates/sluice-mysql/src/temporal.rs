//! Binlog encodings of DATE, TIME, DATETIME, TIMESTAMP (old and
//! fractional "2" formats) and their ISO-8601 renderings with the column's
//! full fractional precision. TIMESTAMP is rendered in UTC with a `Z`.
//! Pure functions over byte slices; never panic. Touches nothing but memory.

use std::fmt::Write;

/// Bytes of fractional-second storage for a precision.
pub fn frac_bytes(fsp: u8) -> usize {
    (fsp as usize).div_ceil(2)
}

fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64)
}

/// Microseconds from the big-endian fractional bytes of a "2" format.
fn micros(frac: &[u8], fsp: u8) -> u32 {
    let v = be(frac) as u32;
    match fsp {
        1 | 2 => v * 10_000,
        3 | 4 => v * 100,
        5 | 6 => v,
        _ => 0,
    }
}

fn push_frac(out: &mut String, micros: u32, fsp: u8) {
    if fsp == 0 {
        return;
    }
    let digits = format!("{micros:06}");
    out.push('.');
    out.push_str(&digits[..(fsp.min(6)) as usize]);
}

/// DATE: 3 bytes little-endian, `day | month << 5 | year << 9`.
pub fn date(b: &[u8]) -> Option<String> {
    let v = u32::from_le_bytes([*b.first()?, *b.get(1)?, *b.get(2)?, 0]);
    Some(format!("{:04}-{:02}-{:02}", v >> 9, (v >> 5) & 15, v & 31))
}

/// DATETIME2: 5 bytes big-endian (offset 0x80_0000_0000) plus fraction.
pub fn datetime2(b: &[u8], fsp: u8) -> Option<String> {
    let int = be(b.get(..5)?) as i64 - 0x80_0000_0000;
    let frac = micros(b.get(5..5 + frac_bytes(fsp))?, fsp);
    let int = int.unsigned_abs();
    let ymd = int >> 17;
    let ym = ymd >> 5;
    let hms = int % (1 << 17);
    let mut out = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        ym / 13,
        ym % 13,
        ymd % 32,
        hms >> 12,
        (hms >> 6) % 64,
        hms % 64
    );
    push_frac(&mut out, frac, fsp);
    Some(out)
}

/// Old DATETIME: u64 little-endian `YYYYMMDDhhmmss`.
pub fn datetime_old(b: &[u8]) -> Option<String> {
    let v = u64::from_le_bytes(b.get(..8)?.try_into().ok()?);
    let (d, t) = (v / 1_000_000, v % 1_000_000);
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        d / 10_000,
        (d / 100) % 100,
        d % 100,
        t / 10_000,
        (t / 100) % 100,
        t % 100
    ))
}

/// TIME2: 3 bytes big-endian (offset 0x80_0000) plus fraction; may be
/// negative. Rendered `[-]HH:MM:SS[.ffffff]` (hours up to 838).
pub fn time2(b: &[u8], fsp: u8) -> Option<String> {
    let n = frac_bytes(fsp);
    let packed: i64 = match fsp {
        0 => (be(b.get(..3)?) as i64 - 0x80_0000) << 24,
        1 | 2 => {
            let mut int = be(b.get(..3)?) as i64 - 0x80_0000;
            let mut frac = *b.get(3)? as i64;
            if int < 0 && frac != 0 {
                int += 1;
                frac -= 0x100;
            }
            (int << 24) + frac * 10_000
        }
        3 | 4 => {
            let mut int = be(b.get(..3)?) as i64 - 0x80_0000;
            let mut frac = be(b.get(3..5)?) as i64;
            if int < 0 && frac != 0 {
                int += 1;
                frac -= 0x10000;
            }
            (int << 24) + frac * 100
        }
        _ => be(b.get(..3 + n)?) as i64 - 0x8000_0000_0000,
    };
    let neg = packed < 0;
    let packed = packed.unsigned_abs();
    let hms = packed >> 24;
    let frac = (packed % (1 << 24)) as u32;
    let mut out = String::with_capacity(16);
    if neg {
        out.push('-');
    }
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        (hms >> 12) % (1 << 10),
        (hms >> 6) % 64,
        hms % 64
    );
    push_frac(&mut out, frac, fsp);
    Some(out)
}

/// Old TIME: 3 bytes little-endian signed `hhmmss`.
pub fn time_old(b: &[u8]) -> Option<String> {
    let raw = u32::from_le_bytes([*b.first()?, *b.get(1)?, *b.get(2)?, 0]);
    let v = ((raw << 8) as i32) >> 8;
    let (sign, v) = if v < 0 { ("-", -v) } else { ("", v) };
    Some(format!(
        "{sign}{:02}:{:02}:{:02}",
        v / 10_000,
        (v / 100) % 100,
        v % 100
    ))
}

/// TIMESTAMP2: 4 bytes big-endian seconds since the epoch plus fraction,
/// rendered in UTC. Zero is MySQL's zero timestamp.
pub fn timestamp2(b: &[u8], fsp: u8) -> Option<String> {
    let secs = be(b.get(..4)?) as i64;
    let frac = micros(b.get(4..4 + frac_bytes(fsp))?, fsp);
    Some(utc(secs, frac, fsp))
}

/// Old TIMESTAMP: u32 little-endian seconds.
pub fn timestamp_old(b: &[u8]) -> Option<String> {
    let secs = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as i64;
    Some(utc(secs, 0, 0))
}

/// Seconds since the epoch as `YYYY-MM-DDThh:mm:ss[.ffffff]Z`.
pub fn utc(secs: i64, micros: u32, fsp: u8) -> String {
    if secs == 0 && micros == 0 {
        let mut out = String::from("0000-00-00T00:00:00");
        push_frac(&mut out, 0, fsp);
        out.push('Z');
        return out;
    }
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    push_frac(&mut out, micros, fsp);
    out.push('Z');
    out
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_renders_epoch_seconds() {
        assert_eq!(
            utc(1_709_251_199, 123_456, 6),
            "2024-02-29T23:59:59.123456Z"
        );
        assert_eq!(utc(1, 0, 0), "1970-01-01T00:00:01Z");
        assert_eq!(utc(0, 0, 3), "0000-00-00T00:00:00.000Z");
    }

    #[test]
    fn short_input_is_none() {
        assert_eq!(datetime2(&[0x80, 0, 0], 0), None);
        assert_eq!(time2(&[0x80], 6), None);
        assert_eq!(timestamp2(&[0, 0, 0, 1], 6), None);
    }
}
