//! MariaDB GTIDs (`domain-server-seq`) and GTID states (one GTID per
//! replication domain), plus the resumable stream position that the source
//! checkpoints. Pure data: touches nothing but memory.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One MariaDB global transaction id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Gtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

impl FromStr for Gtid {
    type Err = String;
    fn from_str(s: &str) -> Result<Gtid, String> {
        let mut it = s.trim().splitn(3, '-');
        let bad = || format!("`{s}` is not a MariaDB GTID (domain-server-sequence)");
        let domain = it.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
        let server = it.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
        let seq = it.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
        Ok(Gtid {
            domain,
            server,
            seq,
        })
    }
}

/// The last GTID applied per domain: what `@slave_connect_state` takes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GtidState {
    domains: BTreeMap<u32, Gtid>,
}

impl GtidState {
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// Records `gtid` as the newest of its domain.
    pub fn update(&mut self, gtid: Gtid) {
        self.domains.insert(gtid.domain, gtid);
    }

    pub fn get(&self, domain: u32) -> Option<Gtid> {
        self.domains.get(&domain).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Gtid> {
        self.domains.values()
    }

    /// Whether `gtid` is already contained (same domain, sequence not newer).
    pub fn contains(&self, gtid: &Gtid) -> bool {
        self.domains
            .get(&gtid.domain)
            .is_some_and(|g| g.seq >= gtid.seq)
    }
}

impl fmt::Display for GtidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, g) in self.domains.values().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{g}")?;
        }
        Ok(())
    }
}

impl FromStr for GtidState {
    type Err = String;
    fn from_str(s: &str) -> Result<GtidState, String> {
        let mut state = GtidState::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            state.update(part.parse()?);
        }
        Ok(state)
    }
}

/// Where a stream resumes: always a transaction boundary. With GTIDs on the
/// server the GTID state is authoritative; file/position is kept beside it
/// (and is the only coordinate on servers without GTIDs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Binlog file name; empty means "the server's first binlog".
    pub file: String,
    /// Offset of the next event to read in `file`.
    pub pos: u64,
    /// MariaDB GTID state (`0-1-42,1-2-7`); empty when GTIDs are not used.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gtid: String,
}

impl Position {
    pub fn gtid_state(&self) -> Result<GtidState, String> {
        self.gtid.parse()
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)?;
        if !self.gtid.is_empty() {
            write!(f, " (gtid {})", self.gtid)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_state_round_trips() {
        let s: GtidState = "0-1-42, 1-2-7".parse().unwrap();
        assert_eq!(s.to_string(), "0-1-42,1-2-7");
        assert!(s.contains(&"0-1-40".parse().unwrap()));
        assert!(!s.contains(&"0-1-43".parse().unwrap()));
        assert!("0-1".parse::<GtidState>().is_err());
        assert!("".parse::<GtidState>().unwrap().is_empty());
    }
}
