//! On-disk record frame: encoding a batch into one buffer, and checking/decoding frames
//! from bytes read back. Role: pure byte layout; touches no files.
//!
//! Layout (little-endian), version 1:
//!
//! ```text
//! 0  u32 len          bytes after this field (32 + key + value + headers)
//! 4  u32 crc32c       over bytes [8, 4 + len)
//! 8  u8  version      = 1
//! 9  u8  attributes   bit 0: key present
//! 10 u16 header_count
//! 12 u64 offset
//! 20 i64 timestamp_ms
//! 28 u32 key_len
//! 32 u32 value_len
//! 36 key | value | header_count × (u16 name_len, name, u32 value_len, value)
//! ```

use bytes::Bytes;

use crate::record::{Header, Record, StoredRecord};

/// Bytes before the variable part of a frame.
pub const HEADER_LEN: usize = 36;
/// Frame format version written by this code.
pub const VERSION: u8 = 1;
/// Upper bound on one frame; anything larger read from disk is treated as corruption.
pub const MAX_FRAME: usize = 64 << 20;
const ATTR_KEY: u8 = 1;

/// Encoded size of one record.
pub fn encoded_len(r: &Record) -> usize {
    HEADER_LEN
        + r.key.as_ref().map_or(0, |k| k.len())
        + r.value.len()
        + r.headers
            .iter()
            .map(|h| 6 + h.name.len() + h.value.len())
            .sum::<usize>()
}

/// Append the frame of `r` with `offset` and `ts` to `buf`.
pub fn encode(buf: &mut Vec<u8>, r: &Record, offset: u64, ts: i64) {
    let start = buf.len();
    let len = encoded_len(r);
    buf.reserve(len);
    buf.extend_from_slice(&((len - 4) as u32).to_le_bytes());
    buf.extend_from_slice(&[0u8; 4]);
    buf.push(VERSION);
    buf.push(if r.key.is_some() { ATTR_KEY } else { 0 });
    buf.extend_from_slice(&(r.headers.len() as u16).to_le_bytes());
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(&ts.to_le_bytes());
    let key: &[u8] = r.key.as_deref().unwrap_or(&[]);
    buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
    buf.extend_from_slice(&(r.value.len() as u32).to_le_bytes());
    buf.extend_from_slice(key);
    buf.extend_from_slice(&r.value);
    for h in &r.headers {
        buf.extend_from_slice(&(h.name.len() as u16).to_le_bytes());
        buf.extend_from_slice(h.name.as_bytes());
        buf.extend_from_slice(&(h.value.len() as u32).to_le_bytes());
        buf.extend_from_slice(&h.value);
    }
    let crc = crc32c::crc32c(&buf[start + 8..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Check a record for encodability (sizes fit the frame fields).
pub fn validate(r: &Record) -> Result<(), String> {
    if r.headers.len() > u16::MAX as usize {
        return Err("too many headers".into());
    }
    if r.headers.iter().any(|h| h.name.len() > u16::MAX as usize) {
        return Err("header name too long".into());
    }
    if encoded_len(r) > MAX_FRAME {
        return Err(format!("record larger than {MAX_FRAME} bytes"));
    }
    Ok(())
}

/// Outcome of checking the frame at the start of a byte slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// A whole, checksum-valid frame of `len` bytes.
    Good { len: usize, offset: u64, ts: i64 },
    /// The slice ends before the frame does; `need` bytes total are required.
    Short { need: usize },
    /// Not a valid frame.
    Bad(&'static str),
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}
fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(a)
}

/// Peek the frame length (whole frame, including the length field) without checking it.
pub fn peek_len(b: &[u8]) -> Option<usize> {
    (b.len() >= 4).then(|| u32_at(b, 0) as usize + 4)
}

/// Check the frame at the start of `b`: length sanity, version, CRC, inner lengths.
pub fn check(b: &[u8], verify_crc: bool) -> Check {
    if b.len() < HEADER_LEN {
        if b.len() >= 4 {
            let total = u32_at(b, 0) as usize + 4;
            if !(HEADER_LEN..=MAX_FRAME).contains(&total) {
                return Check::Bad("frame length out of range");
            }
        }
        return Check::Short { need: HEADER_LEN };
    }
    let total = u32_at(b, 0) as usize + 4;
    if !(HEADER_LEN..=MAX_FRAME).contains(&total) {
        return Check::Bad("frame length out of range");
    }
    if b.len() < total {
        return Check::Short { need: total };
    }
    let f = &b[..total];
    if f[8] != VERSION {
        return Check::Bad("unknown frame version");
    }
    if verify_crc && crc32c::crc32c(&f[8..]) != u32_at(f, 4) {
        return Check::Bad("CRC mismatch");
    }
    let key_len = u32_at(f, 28) as usize;
    let val_len = u32_at(f, 32) as usize;
    let mut p = HEADER_LEN + key_len + val_len;
    if p > total {
        return Check::Bad("key/value length past frame end");
    }
    for _ in 0..u16_at(f, 10) {
        if p + 2 > total {
            return Check::Bad("header past frame end");
        }
        p += 2 + u16_at(f, p) as usize;
        if p + 4 > total {
            return Check::Bad("header past frame end");
        }
        p += 4 + u32_at(f, p) as usize;
    }
    if p != total {
        return Check::Bad("frame length mismatch");
    }
    Check::Good {
        len: total,
        offset: u64_at(f, 12),
        ts: u64_at(f, 20) as i64,
    }
}

/// Decode a frame previously accepted by [`check`] from `buf[pos..pos + len]`, zero-copy.
/// Returns `None` only if a header name is not UTF-8.
pub fn decode(buf: &Bytes, pos: usize, len: usize) -> Option<StoredRecord> {
    let f = &buf[pos..pos + len];
    let key_len = u32_at(f, 28) as usize;
    let val_len = u32_at(f, 32) as usize;
    let mut p = pos + HEADER_LEN;
    let key = if f[9] & ATTR_KEY != 0 {
        Some(buf.slice(p..p + key_len))
    } else {
        None
    };
    p += key_len;
    let value = buf.slice(p..p + val_len);
    p += val_len;
    let n = u16_at(f, 10) as usize;
    let mut headers = Vec::with_capacity(n);
    for _ in 0..n {
        let nl = u16_at(buf, p) as usize;
        let name = std::str::from_utf8(&buf[p + 2..p + 2 + nl])
            .ok()?
            .to_string();
        p += 2 + nl;
        let vl = u32_at(buf, p) as usize;
        headers.push(Header {
            name,
            value: buf.slice(p + 4..p + 4 + vl),
        });
        p += 4 + vl;
    }
    Some(StoredRecord {
        offset: u64_at(f, 12),
        timestamp_ms: u64_at(f, 20) as i64,
        key,
        value,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_corruption() {
        let r = Record {
            key: Some(Bytes::from_static(b"k")),
            value: Bytes::from_static(b"hello"),
            headers: vec![Header {
                name: "h".into(),
                value: Bytes::from_static(b"v"),
            }],
            timestamp_ms: None,
        };
        let mut buf = Vec::new();
        encode(&mut buf, &r, 42, 7);
        assert_eq!(buf.len(), encoded_len(&r));
        let Check::Good { len, offset, ts } = check(&buf, true) else {
            panic!("bad frame")
        };
        assert_eq!((len, offset, ts), (buf.len(), 42, 7));
        let b = Bytes::from(buf.clone());
        let d = decode(&b, 0, len).unwrap();
        assert_eq!(d.key, r.key);
        assert_eq!(d.value, r.value);
        assert_eq!(d.headers, r.headers);
        for i in 0..buf.len() {
            let mut c = buf.clone();
            c[i] ^= 0x10;
            assert!(
                !matches!(check(&c, true), Check::Good { .. }),
                "flip at {i}"
            );
        }
        assert!(matches!(check(&buf[..10], true), Check::Short { .. }));
    }
}
