//! Builds one record of the open transaction (source, transaction order,
//! per-table order) and routes it: skipped when already handed out before
//! a reconnect, held when the transaction is a held XA one, else queued
//! behind the held-back last row. Touches the decoder's memory (and the
//! spill files through `hold_row`).

use mysql_common::binlog::events::Event;
use sluice_core::record::{ChangeSource, Op, Row, RowChange, TransactionInfo};

use super::Decoder;
use crate::fault::Fault;

/// One record to emit.
pub(super) struct Emit<'a> {
    pub table_id: u64,
    pub op: Op,
    pub db: &'a str,
    pub table: &'a str,
    pub before: Option<Row>,
    pub after: Option<Row>,
    pub primary_key: &'a [String],
    pub row: u32,
    pub ddl: Option<String>,
}

impl Decoder {
    pub(super) fn emit(&mut self, ev: &Event, e: Emit<'_>) -> Result<(), Fault> {
        let Emit {
            table_id,
            op,
            db,
            table,
            before,
            after,
            primary_key,
            row,
            ddl,
        } = e;
        let Some(tx) = &mut self.tx else {
            return Ok(());
        };
        tx.rows += 1;
        // Few tables per transaction: a linear scan beats hashing.
        let per = match tx.per_table.iter_mut().find(|(t, _)| *t == table_id) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                tx.per_table.push((table_id, 1));
                1
            }
        };
        if tx.rows <= tx.suppress {
            return Ok(());
        }
        let held = tx.xa.is_some();
        let h = ev.header();
        let ts_ms = h.timestamp() as i64 * 1000;
        let change = RowChange {
            op,
            before,
            after,
            source: ChangeSource {
                connector: self.connector.clone(),
                server_id: h.server_id(),
                gtid: tx.gtid_str.clone(),
                file: self.file.clone(),
                pos: (h.log_pos() as u64).saturating_sub(h.event_size() as u64),
                row,
                ts_ms,
                db: db.to_string(),
                table: table.to_string(),
                snapshot: false,
            },
            ts_ms: self.now_ms,
            transaction: Some(TransactionInfo {
                id: tx.id.clone(),
                total_order: tx.rows,
                data_collection_order: per,
                last: false,
            }),
            primary_key: primary_key.to_vec(),
            ddl,
        };
        if held {
            return self.hold_row(change, ev);
        }
        if let Some(prev) = self.pending.replace(change) {
            self.out.push(prev);
        }
        Ok(())
    }
}
