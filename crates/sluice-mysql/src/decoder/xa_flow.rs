//! The decoder's XA and replay steps: XA statements (START marks a
//! group's records as held, COMMIT starts releasing a held transaction,
//! ROLLBACK drops it), the chunked release ([`Decoder::release_more`]: the
//! commit's transaction stays open until its last row is out), holding a
//! row within the memory budget, and the replay that re-reads, without
//! emitting, transactions delivered before a restart taken while XA
//! transactions were held. Touches the decoder's memory and the spill
//! files.

use std::io;
use std::path::Path;

use mysql_common::binlog::events::Event;
use sluice_core::record::RowChange;

use super::Decoder;
use crate::fault::Fault;
use crate::gtid::{Gtid, Position};
use crate::spill::SpillReader;
use crate::xa::{self, XaStatement};

/// An XA COMMIT whose rows are being handed out.
pub(super) struct Release {
    rows: SpillReader,
    total: u64,
    /// Rows read from `rows` so far (skipped ones included).
    taken: u64,
    /// Rows handed out before a reconnect: read, not emitted again.
    skip: u64,
    /// End of the XA COMMIT event: the boundary once the last row is out,
    /// and with `commit_file` the position of every row released.
    commit_pos: u64,
    commit_file: String,
    /// The book entry released (`None`: a one-phase commit's own rows).
    xid: Option<String>,
}

fn spill_fault(dir: Option<&Path>, what: &str, e: io::Error) -> Fault {
    let dir = dir.map_or_else(
        || std::env::temp_dir().display().to_string(),
        |d| d.display().to_string(),
    );
    Fault::fatal(format!("XA spill file in {dir} ({what}): {e}"))
}

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

    /// Records of prepared XA transactions held in memory (the budget is
    /// `SpillConfig::memory_rows`): held, being collected, being released.
    pub fn held_xa_records(&self) -> usize {
        self.xa.in_memory()
            + self.tx.as_ref().map_or(0, |t| t.held.in_memory())
            + self.release.as_ref().map_or(0, |r| r.rows.in_memory())
    }

    /// Records of prepared XA transactions in spill files.
    pub fn spilled_xa_records(&self) -> u64 {
        self.xa.spilled()
            + self.tx.as_ref().map_or(0, |t| t.held.spilled())
            + self.release.as_ref().map_or(0, |r| r.rows.spilled())
    }

    /// An XA COMMIT's rows are being released: call
    /// [`Decoder::release_more`] before handing the next event.
    pub fn releasing(&self) -> bool {
        self.release.is_some()
    }

    /// Holds a row of the open XA transaction: in memory while the
    /// source's budget allows, else in its spill file.
    pub(super) fn hold_row(&mut self, row: RowChange, ev: &Event) -> Result<(), Fault> {
        let room = self.held_xa_records() < self.spill.memory_rows;
        let at = self.at(ev);
        let dir = self.spill.dir.as_deref();
        if let Some(tx) = &mut self.tx {
            tx.held
                .push(row, room, dir)
                .map_err(|e| spill_fault(dir, &format!("writing a row at {at}"), e))?;
        }
        Ok(())
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
        let replayed = tx.replayed;
        let (records, from_book) = if tx.xa.as_deref() == Some(xid.as_str()) {
            // One phase: the records are this group's own.
            tx.xa = None;
            (Some(std::mem::take(&mut tx.held)), false)
        } else if commit && !replayed {
            // Stays in the book (the resume position before its PREPARE)
            // until its last row is out.
            (self.xa.start_release(&xid), true)
        } else {
            (self.xa.take(&xid).map(|h| h.records), false)
        };
        match records {
            Some(records) if commit && !replayed => {
                if !records.is_empty() {
                    let total = records.len();
                    let rows = records.into_reader().map_err(|e| {
                        spill_fault(self.spill.dir.as_deref(), &format!("XA COMMIT {xid}"), e)
                    })?;
                    self.release = Some(Release {
                        rows,
                        total,
                        taken: 0,
                        skip: self.tx.as_ref().map_or(0, |t| t.resumed),
                        commit_pos: ev.header().log_pos() as u64,
                        commit_file: self.file.clone(),
                        xid: from_book.then_some(xid),
                    });
                    // The transaction stays open until the last row is out.
                    return Ok(());
                }
                if from_book {
                    self.xa.take(&xid);
                }
            }
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

    /// Hands out up to `limit` more rows of the XA COMMIT being released
    /// as the current transaction's (its GTID and id: the commit's), the
    /// last one marked; after the last row the transaction ends at the XA
    /// COMMIT. Rows handed out before a reconnect are skipped. Each row's
    /// position is the XA COMMIT's (row `k` for the k-th row), not the
    /// PREPARE's where its event was read: positions then grow along the
    /// stream, which the replica apply relies on (transactions committed
    /// between PREPARE and COMMIT come before it).
    pub fn release_more(&mut self, limit: usize) -> Result<(), Fault> {
        let (Some(rel), Some(tx)) = (self.release.as_mut(), self.tx.as_ref()) else {
            self.release = None;
            return Ok(());
        };
        let mut pushed = 0;
        while rel.taken < rel.total && pushed < limit {
            let what = || {
                format!(
                    "releasing row {} of {} of {}",
                    rel.taken + 1,
                    rel.total,
                    tx.id
                )
            };
            let mut r = rel
                .rows
                .next_row()
                .map_err(|e| spill_fault(self.spill.dir.as_deref(), &what(), e))?
                .ok_or_else(|| {
                    spill_fault(
                        self.spill.dir.as_deref(),
                        &what(),
                        io::ErrorKind::UnexpectedEof.into(),
                    )
                })?;
            rel.taken += 1;
            if rel.taken <= rel.skip {
                continue;
            }
            r.source.gtid = tx.gtid_str.clone();
            r.source.file = rel.commit_file.clone();
            r.source.pos = rel.commit_pos;
            r.source.row = u32::try_from(rel.taken - 1).unwrap_or(u32::MAX);
            if let Some(t) = &mut r.transaction {
                t.id = tx.id.clone();
                t.last = rel.taken == rel.total;
            }
            self.out.push(r);
            pushed += 1;
        }
        if rel.taken == rel.total {
            let commit_pos = rel.commit_pos;
            if let Some(xid) = rel.xid.take() {
                self.xa.take(&xid);
            }
            self.release = None;
            self.commit_at(commit_pos);
        }
        Ok(())
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
