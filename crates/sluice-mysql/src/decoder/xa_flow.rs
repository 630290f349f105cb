//! The decoder's XA and replay steps: XA statements (START marks a
//! group's records as held, COMMIT releases a held transaction, ROLLBACK
//! drops it) and the replay that re-reads, without emitting, transactions
//! delivered before a restart taken while XA transactions were held.
//! Touches nothing but the decoder's memory.

use mysql_common::binlog::events::Event;
use sluice_core::record::RowChange;

use super::Decoder;
use crate::fault::Fault;
use crate::gtid::{Gtid, Position};
use crate::xa::{self, XaStatement};

impl Decoder {
    /// Re-reads, without emitting, what was delivered up to `to` (a
    /// checkpoint taken while XA transactions were held).
    pub fn replay_until(&mut self, to: Option<Position>) -> Result<(), Fault> {
        self.replay = match to {
            Some(p) => {
                // MySQL sets compare by file/position (empty state).
                let (g, _) = super::mysql_events::start_gtids(&p)
                    .map_err(|e| Fault::fatal(format!("bad replay position {p}: {e}")))?;
                Some((p, g))
            }
            None => None,
        };
        Ok(())
    }

    /// With [`Decoder::committed`] before the last boundary read: that
    /// boundary, up to which a resume re-reads without emitting.
    pub fn replay_to(&self) -> Option<Position> {
        match &self.replay {
            Some((to, _)) => Some(to.clone()),
            None if !self.xa.is_empty() => Some(self.committed.clone()),
            None => None,
        }
    }

    /// Records of prepared XA transactions held in memory.
    pub fn held_xa_records(&self) -> usize {
        self.xa.records()
    }

    /// Whether the group starting at `ev` was delivered before a restart.
    pub(super) fn replayed(&self, gtid: Option<Gtid>, ev: &Event) -> bool {
        let Some((to, state)) = &self.replay else {
            return false;
        };
        match gtid {
            Some(g) if !state.is_empty() => state.contains(&g),
            _ => {
                let h = ev.header();
                let start = (h.log_pos() as u64).saturating_sub(h.event_size() as u64);
                xa::before(&self.file, start, &to.file, to.pos)
            }
        }
    }

    /// An XA statement: START marks the group's records as held; COMMIT
    /// releases a held transaction into this one, ROLLBACK drops it.
    pub(super) fn xa_statement(&mut self, st: XaStatement, ev: &Event) -> Result<(), Fault> {
        self.ensure_tx(ev)?;
        let Some(tx) = self.tx.as_mut() else {
            return Ok(());
        };
        let (xid, commit) = match st {
            XaStatement::Start(xid) => {
                if tx.xa.is_none() {
                    tx.xa = Some(xid);
                    tx.suppress = 0;
                }
                return Ok(());
            }
            XaStatement::End => return Ok(()),
            XaStatement::Commit { xid, .. } => (xid, true),
            XaStatement::Rollback(xid) => (xid, false),
        };
        let records = if tx.xa.as_deref() == Some(xid.as_str()) {
            // One phase: the records are this group's own.
            tx.xa = None;
            Some(std::mem::take(&mut tx.held))
        } else {
            self.xa.take(&xid).map(|h| h.records)
        };
        let replayed = tx.replayed;
        match records {
            Some(records) if commit && !replayed => self.release(records),
            Some(_) => {}
            None if commit && !replayed => {
                return Err(Fault::fatal(format!(
                    "XA COMMIT {xid} at {}: its XA PREPARE (with its rows) is before the \
                     position the stream started from; start from a position before the \
                     PREPARE (start_gtid / start_file) or take a new snapshot",
                    self.at(ev)
                )))
            }
            None => {}
        }
        self.commit(ev);
        Ok(())
    }

    /// Emits a committed XA transaction's records as the current
    /// transaction's (its GTID and id: the commit's), the last one marked.
    fn release(&mut self, records: Vec<RowChange>) {
        let Some(tx) = &self.tx else { return };
        let n = records.len();
        for (i, mut r) in records.into_iter().enumerate() {
            r.source.gtid = tx.gtid_str.clone();
            if let Some(t) = &mut r.transaction {
                t.id = tx.id.clone();
                t.last = i + 1 == n;
            }
            self.out.push(r);
        }
    }

    /// Ends the replay once the last boundary read reaches its target.
    pub(super) fn end_replay(&mut self) {
        if let Some((to, state)) = &self.replay {
            let done = if state.is_empty() {
                !xa::before(&self.committed.file, self.committed.pos, &to.file, to.pos)
            } else {
                state.iter().all(|g| self.gtids.contains(g))
            };
            if done {
                self.replay = None;
            }
        }
    }
}
