//! XA transactions. The server writes an XA transaction's rows at `XA
//! PREPARE` (MariaDB: a GTID group flagged "prepared XA" ending in an
//! XA_PREPARE event; MySQL: `XA START` … XA_PREPARE) and its outcome later,
//! in a group of its own: `XA COMMIT xid` or `XA ROLLBACK xid`. The decoder
//! holds a prepared transaction's records here until that outcome, in a
//! [`Spill`] (bounded in memory, the rest in a temporary file): released
//! at XA COMMIT (as part of the commit's transaction, in chunks), dropped
//! at XA ROLLBACK. While any is held or being released the resume position
//! stays before the oldest one's PREPARE, so a restart reads it again.
//! Touches memory (and the spill files through [`Spill`]).

use crate::gtid::Position;
use crate::spill::Spill;

/// MariaDB GTID event flags (`flags2`).
pub const FL_PREPARED_XA: u8 = 64;
pub const FL_COMPLETED_XA: u8 = 128;
const FL_GROUP_COMMIT_ID: u8 = 2;

/// The xid a MariaDB GTID event flagged prepared / completed XA carries,
/// in the server's statement form `X'gtrid',X'bqual',formatID`.
pub fn gtid_xid(data: &[u8]) -> Option<String> {
    let flags = *data.get(12)?;
    if flags & (FL_PREPARED_XA | FL_COMPLETED_XA) == 0 {
        return None;
    }
    let mut at = 13;
    if flags & FL_GROUP_COMMIT_ID != 0 {
        at += 8;
    }
    let format = i32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?);
    let gtrid_len = *data.get(at + 4)? as usize;
    let bqual_len = *data.get(at + 5)? as usize;
    let body = data.get(at + 6..at + 6 + gtrid_len + bqual_len)?;
    let (gtrid, bqual) = body.split_at(gtrid_len);
    Some(format!("X'{}',X'{}',{format}", hex(gtrid), hex(bqual)))
}

/// Whether binlog coordinate `file:pos` comes before `to_file:to_pos`
/// (file names compare by their numeric extension).
pub fn before(file: &str, pos: u64, to_file: &str, to_pos: u64) -> bool {
    let key = |f: &str| {
        let (stem, ext) = f.rsplit_once('.').unwrap_or((f, ""));
        (
            stem.to_string(),
            ext.parse::<u64>().unwrap_or(0),
            ext.to_string(),
        )
    };
    (key(file), pos) < (key(to_file), to_pos)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// Normalises an xid as written in a statement (`X'61',X'',1`): no
/// blanks, upper case.
fn norm(xid: &str) -> String {
    xid.chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect::<String>()
        .to_ascii_uppercase()
}

/// An XA statement found in a QUERY event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XaStatement {
    Start(String),
    End,
    Commit { xid: String, one_phase: bool },
    Rollback(String),
}

/// Recognises `XA START|BEGIN|END|COMMIT|ROLLBACK xid [ONE PHASE]`.
pub fn classify(sql: &str) -> Option<XaStatement> {
    let s = sql.trim_start();
    if !s.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("XA ")) {
        return None;
    }
    let rest = s[3..].trim_start();
    let (verb, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let args = args.trim().trim_end_matches(';').trim();
    match verb.to_ascii_uppercase().as_str() {
        "START" | "BEGIN" => Some(XaStatement::Start(norm(strip_suffix(
            args,
            &["JOIN", "RESUME"],
        )))),
        "END" => Some(XaStatement::End),
        "COMMIT" => {
            let upper = args.to_ascii_uppercase();
            let one_phase = upper.ends_with("ONE PHASE");
            let xid = if one_phase {
                args[..args.len() - "ONE PHASE".len()].trim()
            } else {
                args
            };
            Some(XaStatement::Commit {
                xid: norm(xid),
                one_phase,
            })
        }
        "ROLLBACK" => Some(XaStatement::Rollback(norm(args))),
        _ => None,
    }
}

fn strip_suffix<'a>(s: &'a str, words: &[&str]) -> &'a str {
    for w in words {
        let up = s.to_ascii_uppercase();
        if up.ends_with(w) && s.len() > w.len() {
            return s[..s.len() - w.len()].trim_end();
        }
    }
    s
}

/// A prepared XA transaction whose outcome has not been read yet, or whose
/// XA COMMIT is being released.
#[derive(Debug)]
pub struct Held {
    pub xid: String,
    pub records: Spill,
    /// The boundary before its PREPARE group: where a restart must begin
    /// to read its rows again.
    pub start: Position,
    /// Its records were taken for release at XA COMMIT; it stays in the
    /// book (keeping the resume position before its PREPARE) until the
    /// last record is out.
    pub releasing: bool,
}

/// Prepared XA transactions, oldest first.
#[derive(Debug, Default)]
pub struct XaBook {
    open: Vec<Held>,
}

impl XaBook {
    pub fn hold(&mut self, xid: &str, records: Spill, start: Position) {
        let xid = norm(xid);
        // A re-prepared xid (after a resume) replaces the older copy.
        self.open.retain(|h| h.xid != xid);
        self.open.push(Held {
            xid,
            records,
            start,
            releasing: false,
        });
    }

    /// Removes and returns the prepared transaction `xid`.
    pub fn take(&mut self, xid: &str) -> Option<Held> {
        let xid = norm(xid);
        let i = self.open.iter().position(|h| h.xid == xid)?;
        Some(self.open.remove(i))
    }

    /// Takes the records of the prepared transaction `xid` for release,
    /// leaving it in the book (marked releasing) until [`XaBook::take`].
    pub fn start_release(&mut self, xid: &str) -> Option<Spill> {
        let xid = norm(xid);
        let h = self
            .open
            .iter_mut()
            .find(|h| h.xid == xid && !h.releasing)?;
        h.releasing = true;
        Some(std::mem::take(&mut h.records))
    }

    /// Where a restart must start to read every held PREPARE again.
    pub fn oldest_start(&self) -> Option<&Position> {
        self.open.first().map(|h| &h.start)
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Records held in memory.
    pub fn in_memory(&self) -> usize {
        self.open.iter().map(|h| h.records.in_memory()).sum()
    }

    /// Records held in spill files.
    pub fn spilled(&self) -> u64 {
        self.open.iter().map(|h| h.records.spilled()).sum()
    }

    pub fn clear(&mut self) {
        self.open.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_and_xids() {
        assert_eq!(
            classify("XA COMMIT X'61',X'',1"),
            Some(XaStatement::Commit {
                xid: "X'61',X'',1".into(),
                one_phase: false
            })
        );
        assert_eq!(
            classify("xa commit X'61', X'', 1 one phase"),
            Some(XaStatement::Commit {
                xid: "X'61',X'',1".into(),
                one_phase: true
            })
        );
        assert_eq!(
            classify("XA ROLLBACK X'62',X'',1"),
            Some(XaStatement::Rollback("X'62',X'',1".into()))
        );
        assert_eq!(
            classify("XA START X'63',X'',1"),
            Some(XaStatement::Start("X'63',X'',1".into()))
        );
        assert_eq!(classify("XA END X'63',X'',1"), Some(XaStatement::End));
        assert_eq!(classify("COMMIT"), None);
        assert_eq!(classify("XA"), None);
        assert_eq!(classify("Xé COMMIT"), None);
    }

    #[test]
    fn gtid_event_xid() {
        // seq 3, domain 0, flags PREPARED_XA, formatID 1, gtrid "a".
        let mut d = 3u64.to_le_bytes().to_vec();
        d.extend(0u32.to_le_bytes());
        d.push(FL_PREPARED_XA);
        d.extend(1i32.to_le_bytes());
        d.extend([1, 0]);
        d.push(b'a');
        assert_eq!(gtid_xid(&d).as_deref(), Some("X'61',X'',1"));
        // Truncated xid: None, no panic.
        assert_eq!(gtid_xid(&d[..d.len() - 1]), None);
        // Not an XA group.
        d[12] = 0;
        assert_eq!(gtid_xid(&d), None);
    }

    #[test]
    fn book_keeps_prepare_order() {
        let mut b = XaBook::default();
        let p = |n| Position {
            file: "f".into(),
            pos: n,
            gtid: String::new(),
        };
        b.hold("X'61',X'',1", Spill::default(), p(10));
        b.hold("X'62',X'',1", Spill::default(), p(20));
        assert_eq!(b.oldest_start().map(|p| p.pos), Some(10));
        // Releasing keeps it (and its start) in the book, once.
        assert!(b.start_release("x'61', x'', 1").is_some());
        assert!(b.start_release("X'61',X'',1").is_none());
        assert_eq!(b.oldest_start().map(|p| p.pos), Some(10));
        assert!(b.take("x'61', x'', 1").is_some());
        assert_eq!(b.oldest_start().map(|p| p.pos), Some(20));
        assert!(b.take("X'61',X'',1").is_none());
    }
}
