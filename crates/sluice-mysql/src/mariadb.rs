//! MariaDB's own binlog events, which mysql_common does not know: GTID (162),
//! GTID_LIST (163), BINLOG_CHECKPOINT (161), ANNOTATE_ROWS (160), plus the
//! raw ROTATE payload (for the first-ROTATE CRC bug). Parses byte slices
//! taken from `Event::data()`; never panics on short input. Touches nothing
//! but memory.

use crate::gtid::Gtid;

pub const ANNOTATE_ROWS: u8 = 160;
pub const BINLOG_CHECKPOINT: u8 = 161;
pub const GTID: u8 = 162;
pub const GTID_LIST: u8 = 163;
pub const START_ENCRYPTION: u8 = 164;
pub const QUERY_COMPRESSED: u8 = 165;
pub const WRITE_ROWS_COMPRESSED_V1: u8 = 166;
pub const UPDATE_ROWS_COMPRESSED_V1: u8 = 167;
pub const DELETE_ROWS_COMPRESSED_V1: u8 = 168;
pub const WRITE_ROWS_COMPRESSED: u8 = 169;
pub const UPDATE_ROWS_COMPRESSED: u8 = 170;
pub const DELETE_ROWS_COMPRESSED: u8 = 171;

/// GTID event flag: the group is a single statement without BEGIN/COMMIT
/// (DDL, non-transactional engines).
pub const FL_STANDALONE: u8 = 1;
const FL_GROUP_COMMIT_ID: u8 = 2;

/// A decoded MariaDB GTID event: the start of an event group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GtidEvent {
    pub gtid: Gtid,
    pub flags: u8,
    /// Group commit id, when the server wrote one (parallel replication).
    pub commit_id: Option<u64>,
}

impl GtidEvent {
    pub fn standalone(&self) -> bool {
        self.flags & FL_STANDALONE != 0
    }
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(d: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(at..at + 8)?.try_into().ok()?))
}

/// Parses a GTID event body; `server_id` comes from the event header.
pub fn parse_gtid(data: &[u8], server_id: u32) -> Option<GtidEvent> {
    let seq = u64_at(data, 0)?;
    let domain = u32_at(data, 8)?;
    let flags = *data.get(12)?;
    let commit_id = if flags & FL_GROUP_COMMIT_ID != 0 {
        Some(u64_at(data, 13)?)
    } else {
        None
    };
    Some(GtidEvent {
        gtid: Gtid {
            domain,
            server: server_id,
            seq,
        },
        flags,
        commit_id,
    })
}

/// Parses a GTID_LIST event: the binlog state at the start of a file.
pub fn parse_gtid_list(data: &[u8]) -> Option<Vec<Gtid>> {
    let count = u32_at(data, 0)? & 0x0fff_ffff;
    let mut out = Vec::with_capacity(count.min(1024) as usize);
    for i in 0..count as usize {
        let at = 4 + i * 16;
        out.push(Gtid {
            domain: u32_at(data, at)?,
            server: u32_at(data, at + 4)?,
            seq: u64_at(data, at + 8)?,
        });
    }
    Some(out)
}

/// Parses a BINLOG_CHECKPOINT event: the oldest binlog file still needed
/// for crash recovery.
pub fn parse_checkpoint(data: &[u8]) -> Option<String> {
    let len = u32_at(data, 0)? as usize;
    let name = data.get(4..4 + len)?;
    Some(String::from_utf8_lossy(name).into_owned())
}

/// Parses a ROTATE event body (`pos` then the next file name). The
/// artificial first ROTATE arrives before the format description, so its
/// CRC32 is still appended to the name (mysql_async #189): when the last
/// four bytes are the CRC32 of the event, they are cut off.
pub fn parse_rotate(header: &[u8], data: &[u8]) -> Option<(String, u64)> {
    let pos = u64_at(data, 0)?;
    let mut name = data.get(8..)?;
    if name.len() > 4 {
        let (body, crc) = name.split_at(name.len() - 4);
        let mut h = crc32fast::Hasher::new();
        h.update(header);
        h.update(&data[..8]);
        h.update(body);
        if h.finalize().to_le_bytes() == crc {
            name = body;
        }
    }
    Some((String::from_utf8_lossy(name).into_owned(), pos))
}

/// A QUERY event body (type 2, or MariaDB's QUERY_COMPRESSED 165 whose
/// statement is compressed): (default database, statement).
pub fn parse_query(data: &[u8], compressed: bool) -> Option<(String, String)> {
    // Post-header: thread id (4), exec time (4), db length (1), error
    // code (2), status variables length (2).
    let db_len = *data.get(8)? as usize;
    let vars_len = u16::from_le_bytes([*data.get(11)?, *data.get(12)?]) as usize;
    let db_at = 13 + vars_len;
    let db = data.get(db_at..db_at + db_len)?;
    let query = data.get(db_at + db_len + 1..)?;
    let query = if compressed {
        String::from_utf8_lossy(&uncompress(query)?).into_owned()
    } else {
        String::from_utf8_lossy(query).into_owned()
    };
    Some((String::from_utf8_lossy(db).into_owned(), query))
}

/// Cuts the MariaDB compression header off a compressed payload and
/// inflates it: one byte `0x80 | n` (n = bytes of length), the
/// uncompressed length big-endian in n bytes, then a zlib stream.
pub fn uncompress(data: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let first = *data.first()?;
    let n = (first & 0x07) as usize;
    if first & 0x80 == 0 || n == 0 || n > 4 {
        return None;
    }
    let mut len = 0usize;
    for b in data.get(1..1 + n)? {
        len = (len << 8) | *b as usize;
    }
    let mut out = Vec::with_capacity(len.min(64 << 20));
    flate2::read::ZlibDecoder::new(data.get(1 + n..)?)
        .read_to_end(&mut out)
        .ok()?;
    (out.len() == len).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gtid_with_commit_id() {
        let mut d = 42u64.to_le_bytes().to_vec();
        d.extend(3u32.to_le_bytes());
        d.push(FL_GROUP_COMMIT_ID | FL_STANDALONE);
        d.extend(7u64.to_le_bytes());
        let g = parse_gtid(&d, 9).unwrap();
        assert_eq!(g.gtid.to_string(), "3-9-42");
        assert_eq!(g.commit_id, Some(7));
        assert!(g.standalone());
        assert!(parse_gtid(&d[..10], 9).is_none());
        assert!(parse_gtid(&d[..14], 9).is_none());
    }

    #[test]
    fn parses_gtid_list_and_rejects_short_input() {
        let mut d = 1u32.to_le_bytes().to_vec();
        d.extend(0u32.to_le_bytes());
        d.extend(1u32.to_le_bytes());
        d.extend(5u64.to_le_bytes());
        assert_eq!(parse_gtid_list(&d).unwrap()[0].to_string(), "0-1-5");
        assert!(parse_gtid_list(&d[..10]).is_none());
    }

    #[test]
    fn parses_query_bodies() {
        let mut d = vec![0u8; 8];
        d.push(4); // db length
        d.extend([0, 0]); // error code
        d.extend(2u16.to_le_bytes());
        d.extend([9, 9]); // status variables
        d.extend(b"shop\0");
        d.extend(b"BEGIN");
        assert_eq!(
            parse_query(&d, false),
            Some(("shop".into(), "BEGIN".into()))
        );
        assert_eq!(parse_query(&d[..15], false), None);
        assert_eq!(parse_query(&d, true), None);
    }

    #[test]
    fn rotate_strips_crc_only_when_it_matches() {
        let header = [0u8; 19];
        let mut d = 4u64.to_le_bytes().to_vec();
        d.extend(b"bin.000002");
        assert_eq!(parse_rotate(&header, &d).unwrap().0, "bin.000002");
        let mut h = crc32fast::Hasher::new();
        h.update(&header);
        h.update(&d);
        let crc = h.finalize().to_le_bytes();
        d.extend(crc);
        assert_eq!(parse_rotate(&header, &d).unwrap(), ("bin.000002".into(), 4));
    }
}
