//! The decoder's MySQL-specific steps and GTID bookkeeping for both
//! servers: MariaDB GTID states and MySQL GTID sets (extended by each
//! committed transaction's `uuid:gno`), the text a checkpoint position
//! carries, and PARTIAL_UPDATE_ROWS (stops: no full after image). Touches
//! nothing but the decoder's memory.

use mysql_common::binlog::events::{Event, GtidEvent};

use super::{Decoder, TableEntry};
use crate::fault::Fault;
use crate::gtid::{GtidState, Position};
use crate::gtid_set::{self, GtidSet};
use crate::rows;

/// The GTID coordinates a start position carries: a MariaDB state or a
/// MySQL set (the other one empty).
pub(super) fn start_gtids(p: &Position) -> Result<(GtidState, GtidSet), String> {
    if gtid_set::is_mysql_set(&p.gtid) {
        Ok((GtidState::default(), p.gtid.parse()?))
    } else {
        Ok((p.gtid_state()?, GtidSet::default()))
    }
}

impl Decoder {
    /// A MySQL GTID event (33): the transaction's `uuid:gno`, or `None`
    /// for an anonymous GTID (34) or GTIDs off.
    pub(super) fn mysql_gtid(&self, ev: &Event) -> Result<Option<([u8; 16], u64)>, Fault> {
        if ev.header().event_type_raw() != 33 {
            return Ok(None);
        }
        let g: GtidEvent = ev
            .read_event()
            .map_err(|e| Fault::fatal(format!("bad GTID event at {}: {e}", self.at(ev))))?;
        Ok(Some((g.sid(), g.gno())))
    }

    /// The GTID text of the current boundary: the MySQL set if one is
    /// tracked, else the MariaDB state (empty without GTIDs).
    pub(super) fn gtid_text(&self) -> String {
        if !self.mysql_gtids.is_empty() {
            self.mysql_gtids.to_string()
        } else if !self.gtids.is_empty() {
            self.gtids.to_string()
        } else {
            String::new()
        }
    }

    /// PARTIAL_UPDATE_ROWS (MySQL 8 with `binlog_row_value_options =
    /// PARTIAL_JSON`): JSON columns carry a diff, not the after image, so
    /// the source stops naming the table and position (filtered tables
    /// are skipped as always).
    pub(super) fn partial_update(&self, ev: &Event) -> Result<(), Fault> {
        let id = rows::table_id(ev.data()).unwrap_or(0);
        let table = match self.tables.get(&id) {
            Some((_, TableEntry::Skip)) => return Ok(()),
            Some((_, TableEntry::Keep { schema, .. })) => {
                format!("`{}`.`{}`", schema.db, schema.table)
            }
            None => format!("table id {id}"),
        };
        Err(Fault::fatal(format!(
            "PARTIAL_UPDATE_ROWS event for {table} at {}: partial JSON updates carry no full \
             after image; set binlog_row_value_options='' on the server",
            self.at(ev)
        )))
    }

    /// Resets the GTID coordinates to those of `p` (a rewind).
    pub(super) fn reset_gtids(&mut self, p: &Position) {
        let (g, m) = start_gtids(p).unwrap_or_default();
        self.gtids = g;
        self.mysql_gtids = m;
    }
}

/// `uuid:gno` as a transaction id.
pub(super) fn mysql_gtid_text(uuid: &[u8; 16], gno: u64) -> String {
    let mut s = GtidSet::default();
    s.add(*uuid, gno);
    s.to_string()
}
