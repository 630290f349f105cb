//! MySQL GTID sets (`uuid:1-5:7,uuid2:1-3`): parsed from a checkpoint or
//! `@@gtid_executed`, extended with each transaction's GTID as it commits
//! (intervals merged), printed canonically, and turned into the `Sid`s of
//! COM_BINLOG_DUMP_GTID (mysql_async's `with_gtid_set`). MariaDB uses
//! `gtid::GtidState` instead. Pure data: touches nothing but memory.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use mysql_common::packets::{GnoInterval, Sid};

/// Whether a position's `gtid` text is a MySQL GTID set (it names server
/// UUIDs) rather than a MariaDB GTID state.
pub fn is_mysql_set(text: &str) -> bool {
    text.contains(':')
}

/// A MySQL GTID set: per source UUID, sorted disjoint closed intervals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GtidSet {
    sids: BTreeMap<[u8; 16], Vec<(u64, u64)>>,
}

fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || s.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn uuid_text(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl GtidSet {
    pub fn is_empty(&self) -> bool {
        self.sids.is_empty()
    }

    /// Adds the closed interval `start..=end` of `uuid`, merging neighbours.
    pub fn add_interval(&mut self, uuid: [u8; 16], start: u64, end: u64) {
        let v = self.sids.entry(uuid).or_default();
        v.push((start.min(end), start.max(end)));
        v.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(v.len());
        for &(s, e) in v.iter() {
            match merged.last_mut() {
                Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        *v = merged;
    }

    /// Adds one transaction's GTID.
    pub fn add(&mut self, uuid: [u8; 16], gno: u64) {
        self.add_interval(uuid, gno, gno);
    }

    pub fn contains(&self, uuid: &[u8; 16], gno: u64) -> bool {
        self.sids
            .get(uuid)
            .is_some_and(|v| v.iter().any(|&(s, e)| s <= gno && gno <= e))
    }

    /// The set as COM_BINLOG_DUMP_GTID wants it (intervals end-exclusive).
    pub fn sids(&self) -> Vec<Sid<'static>> {
        self.sids
            .iter()
            .map(|(u, v)| {
                v.iter().fold(Sid::new(*u), |sid, &(s, e)| {
                    sid.with_interval(GnoInterval::new(s, e.saturating_add(1)))
                })
            })
            .collect()
    }
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (u, v)) in self.sids.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&uuid_text(u))?;
            for &(s, e) in v {
                if s == e {
                    write!(f, ":{s}")?;
                } else {
                    write!(f, ":{s}-{e}")?;
                }
            }
        }
        Ok(())
    }
}

impl FromStr for GtidSet {
    type Err = String;

    /// Parses `uuid:1-5:7,uuid2:3` (blanks and newlines, as in
    /// `@@gtid_executed`, allowed).
    fn from_str(s: &str) -> Result<GtidSet, String> {
        let mut set = GtidSet::default();
        let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        for part in clean.split(',').filter(|p| !p.is_empty()) {
            let bad = || format!("`{part}` is not a MySQL GTID set member (uuid:N[-M][:…])");
            let mut it = part.split(':');
            let uuid = it.next().and_then(parse_uuid).ok_or_else(bad)?;
            let mut any = false;
            for iv in it {
                let (a, b) = iv.split_once('-').unwrap_or((iv, iv));
                let a: u64 = a.parse().map_err(|_| bad())?;
                let b: u64 = b.parse().map_err(|_| bad())?;
                if a == 0 || b < a {
                    return Err(bad());
                }
                set.add_interval(uuid, a, b);
                any = true;
            }
            if !any {
                return Err(bad());
            }
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "00000000-0000-0000-0000-000000000001";

    #[test]
    fn parses_merges_and_prints() {
        let s: GtidSet = format!("{},\n{A}:1-5:7:6:9-10", B.to_uppercase() + ":3")
            .parse()
            .unwrap();
        assert_eq!(s.to_string(), format!("{B}:3,{A}:1-7:9-10"));
        let mut s2 = s.clone();
        let a = parse_uuid(A).unwrap();
        s2.add(a, 8);
        assert_eq!(s2.to_string(), format!("{B}:3,{A}:1-10"));
        s2.add(a, 12);
        assert_eq!(s2.to_string(), format!("{B}:3,{A}:1-10:12"));
        assert!(s2.contains(&a, 10) && !s2.contains(&a, 11));
        assert!(is_mysql_set(&s2.to_string()) && !is_mysql_set("0-1-42"));
        assert_eq!(s2.to_string().parse::<GtidSet>().unwrap(), s2);
    }

    #[test]
    fn rejects_bad_members() {
        for bad in [
            "nope:1",
            A,
            &format!("{A}:0"),
            &format!("{A}:5-3"),
            &format!("{A}:x"),
            "0-1-42",
        ] {
            assert!(bad.parse::<GtidSet>().is_err(), "{bad}");
        }
        assert!("".parse::<GtidSet>().unwrap().is_empty());
    }

    #[test]
    fn sids_are_end_exclusive() {
        let s: GtidSet = format!("{A}:1-5:7").parse().unwrap();
        let sids = s.sids();
        assert_eq!(sids.len(), 1);
        assert_eq!(sids[0].uuid(), parse_uuid(A).unwrap());
        let iv: Vec<(u64, u64)> = sids[0]
            .intervals()
            .iter()
            .map(|i| (i.start(), i.end()))
            .collect();
        assert_eq!(iv, [(1, 6), (7, 8)]);
    }
}
