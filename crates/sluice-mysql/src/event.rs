//! Reads one binlog event from raw bytes (a binlog file's contents, a
//! captured packet) for the decoder: the 19-byte header is validated —
//! length field equal to the bytes at hand, room for the CRC32 — before
//! mysql_common sees it (its `Event::read` panics when the header
//! overstates the length), and the read itself is guarded so that any
//! remaining panic becomes an error naming the position. The live stream
//! gets its events from mysql_async, which reads them itself; there
//! `stream` guards the read the same way. Touches nothing but memory.

use std::panic::{catch_unwind, AssertUnwindSafe};

use mysql_common::binlog::consts::{BinlogChecksumAlg, BinlogVersion};
use mysql_common::binlog::events::Event;
use mysql_common::binlog::EventStreamReader;

/// Length of the common event header.
pub const HEADER_LEN: usize = 19;
const FORMAT_DESCRIPTION: u8 = 15;

/// Event reader over raw event bytes, tracking the format description.
pub struct EventReader {
    esr: EventStreamReader,
}

impl Default for EventReader {
    fn default() -> Self {
        EventReader {
            esr: EventStreamReader::new(BinlogVersion::Version4),
        }
    }
}

impl EventReader {
    fn checksums(&self) -> bool {
        matches!(
            self.esr.get_fde().footer().get_checksum_alg(),
            Ok(Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32))
        )
    }

    /// Validates the header of `bytes` (one whole event) and reads it;
    /// `at` names the place (`file:pos`) in errors.
    pub fn read(&mut self, bytes: &[u8], at: &str) -> Result<Event, String> {
        check_header(bytes, self.checksums(), at)?;
        let read = catch_unwind(AssertUnwindSafe(|| self.esr.read(bytes)));
        match read {
            Ok(Ok(Some(ev))) => Ok(ev),
            Ok(Ok(None)) => Err(format!("empty binlog event at {at}")),
            Ok(Err(e)) => Err(format!("bad binlog event at {at}: {e}")),
            Err(_) => Err(format!(
                "malformed binlog event at {at}: the event reader failed on it"
            )),
        }
    }
}

/// The header checks: at least a header, a length field equal to the
/// bytes at hand, and room for the CRC32 when the stream has checksums.
pub fn check_header(bytes: &[u8], checksums: bool, at: &str) -> Result<(), String> {
    let Some(header) = bytes.get(..HEADER_LEN) else {
        return Err(format!(
            "truncated binlog event at {at}: {} bytes, less than its {HEADER_LEN}-byte header",
            bytes.len()
        ));
    };
    let ty = header[4];
    let size = u32::from_le_bytes([header[9], header[10], header[11], header[12]]) as usize;
    if size != bytes.len() {
        return Err(format!(
            "malformed binlog event type {ty} at {at}: its header says {size} bytes, {} were read",
            bytes.len()
        ));
    }
    let min = HEADER_LEN
        + if checksums && ty != FORMAT_DESCRIPTION {
            4
        } else {
            0
        };
    if size < min {
        return Err(format!(
            "malformed binlog event type {ty} at {at}: {size} bytes, less than header and checksum ({min})"
        ));
    }
    Ok(())
}

/// Splits a binlog file's contents (after the 4-byte magic) into events,
/// each with its offset; stops with an error at a length that runs past
/// the end.
pub fn split_file(bytes: &[u8]) -> Result<Vec<(u64, &[u8])>, String> {
    let mut out = Vec::new();
    if bytes.get(..4) != Some(&b"\xfebin"[..]) {
        return Err("not a binlog file (no \\xfebin magic)".into());
    }
    let mut at = 4usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let size = rest
            .get(9..13)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| format!("truncated event header at offset {at}"))?;
        if size < HEADER_LEN || size > rest.len() {
            return Err(format!(
                "event at offset {at} claims {size} bytes, {} left",
                rest.len()
            ));
        }
        out.push((at as u64, &rest[..size]));
        at += size;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(ty: u8, size: u32) -> Vec<u8> {
        let mut h = vec![0u8; 4];
        h.push(ty);
        h.extend(1u32.to_le_bytes());
        h.extend(size.to_le_bytes());
        h.extend(0u32.to_le_bytes());
        h.extend(0u16.to_le_bytes());
        h
    }

    #[test]
    fn overstated_length_is_an_error_not_a_panic() {
        let mut ev = header(2, 200);
        ev.extend([0u8; 20]);
        let err = EventReader::default()
            .read(&ev, "bin.000001:4")
            .unwrap_err();
        assert_eq!(
            err,
            "malformed binlog event type 2 at bin.000001:4: its header says 200 bytes, 39 were read"
        );
        let err = EventReader::default()
            .read(&ev[..10], "bin.000001:4")
            .unwrap_err();
        assert!(
            err.starts_with("truncated binlog event at bin.000001:4"),
            "{err}"
        );
        assert!(check_header(&header(2, 19), true, "x").is_err());
        assert!(check_header(&header(2, 19), false, "x").is_ok());
    }
}
