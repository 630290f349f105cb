//! Turns binlog events into row-change records: tracks the binlog file,
//! transaction boundaries (MariaDB GTID groups, BEGIN / XID / COMMIT), the
//! committed resume position, table maps (filtered tables are never
//! decoded), and holds back one row so that the last row of every
//! transaction carries `transaction.last`. After a reconnect it suppresses
//! the rows of a partly delivered transaction that were already handed
//! out. XA transactions are held until their outcome (`xa`), their rows
//! beyond the memory budget in temporary files (`spill`), and released in
//! chunks at XA COMMIT ([`Decoder::release_more`]); after a restart inside
//! held XA transactions the already delivered transactions are re-read
//! without being emitted (replay). Touches memory, the spill files, and
//! information_schema through `infoschema` when table maps lack FULL
//! metadata.

use std::collections::HashMap;
use std::sync::Arc;

use mysql_common::binlog::events::{Event, TableMapEvent};
use mysql_common::proto::MySerialize;
use sluice_core::record::{Op, RowChange};

use crate::ddl::{self, Statement};
use crate::fault::Fault;
use crate::filter::TableFilter;
use crate::gtid::{Gtid, GtidState, Position};
use crate::gtid_set::GtidSet;
use crate::infoschema::{self, InfoSchema};
use crate::mariadb;
use crate::rows::{self, RowsKind};
use crate::schema::TableSchema;
use crate::spill::{Spill, SpillConfig};
use crate::xa::{self, XaBook};

mod emit;
mod mysql_events;
mod xa_flow;

use emit::Emit;

/// Event types that carry nothing for the change stream (the documented
/// ignore list): STOP, INTVAR, RAND, USER_VAR, FORMAT_DESCRIPTION,
/// HEARTBEAT, IGNORABLE, ROWS_QUERY, PREVIOUS_GTIDS, TRANSACTION_CONTEXT,
/// VIEW_CHANGE, TRANSACTION_PAYLOAD (its inner events follow it),
/// ANNOTATE_ROWS, BINLOG_CHECKPOINT, GTID_LIST.
pub const IGNORED_EVENTS: &[u8] = &[
    3,
    5,
    13,
    14,
    15,
    27,
    28,
    29,
    35,
    36,
    37,
    40,
    mariadb::ANNOTATE_ROWS,
    mariadb::BINLOG_CHECKPOINT,
    mariadb::GTID_LIST,
];

enum TableEntry {
    Skip,
    Keep {
        schema: Arc<TableSchema>,
        keep: Option<Vec<bool>>,
    },
}

struct Tx {
    id: String,
    gtid: Option<Gtid>,
    gtid_str: Option<String>,
    standalone: bool,
    rows: u64,
    per_table: Vec<(u64, u64)>,
    /// Rows of this transaction already handed out before a reconnect.
    suppress: u64,
    /// Rows of this transaction handed out in earlier batches.
    returned: u64,
    /// The xid while this is an XA transaction whose records are held.
    xa: Option<String>,
    held: Spill,
    /// Rows of this transaction handed out before a reconnect (an XA
    /// release skips them).
    resumed: u64,
    /// The boundary this transaction started at.
    start: Position,
    /// Delivered before a restart: read again, not emitted.
    replayed: bool,
    /// MySQL: the transaction's `uuid:gno`.
    mysql_gtid: Option<([u8; 16], u64)>,
}

/// Event-to-record state machine of one change stream.
pub struct Decoder {
    connector: String,
    filter: TableFilter,
    info: InfoSchema,
    tables: HashMap<u64, (Vec<u8>, TableEntry)>,
    file: String,
    committed: Position,
    gtids: GtidState,
    /// MySQL servers: the executed GTID set.
    mysql_gtids: GtidSet,
    tx: Option<Tx>,
    /// Where the open transaction's rows start in `out`.
    tx_out_start: usize,
    pending: Option<RowChange>,
    out: Vec<RowChange>,
    /// After a reconnect: (transaction id, rows already handed out).
    resume: Option<(String, u64)>,
    /// Set when the last event ended a transaction.
    pub at_boundary: bool,
    /// Wall clock when the current event was handled (`ts_ms` of records).
    now_ms: i64,
    /// Prepared XA transactions awaiting their XA COMMIT / ROLLBACK.
    xa: XaBook,
    /// Re-reading already delivered transactions up to this boundary.
    replay: Option<(Position, GtidState)>,
    /// Memory budget and directory for held XA rows.
    spill: SpillConfig,
    /// An XA COMMIT whose rows are being handed out.
    release: Option<xa_flow::Release>,
}

impl Decoder {
    pub fn new(
        connector: &str,
        filter: TableFilter,
        info: InfoSchema,
        start: Position,
    ) -> Result<Decoder, Fault> {
        let (gtids, mysql_gtids) = mysql_events::start_gtids(&start)
            .map_err(|e| Fault::fatal(format!("bad start position {start}: {e}")))?;
        Ok(Decoder {
            connector: connector.to_string(),
            filter,
            info,
            tables: HashMap::new(),
            file: start.file.clone(),
            committed: start,
            gtids,
            mysql_gtids,
            tx: None,
            tx_out_start: 0,
            pending: None,
            out: Vec::new(),
            resume: None,
            at_boundary: true,
            now_ms: 0,
            xa: XaBook::default(),
            replay: None,
            spill: SpillConfig::default(),
            release: None,
        })
    }

    /// Sets the memory budget and spill directory for held XA rows.
    pub fn set_spill(&mut self, spill: SpillConfig) {
        self.spill = spill;
    }

    /// Where a new connection resumes: the last transaction boundary, or,
    /// while prepared XA transactions are held, the boundary before the
    /// oldest one's PREPARE.
    pub fn committed(&self) -> &Position {
        self.xa.oldest_start().unwrap_or(&self.committed)
    }

    pub fn buffered(&self) -> usize {
        self.out.len()
    }

    pub fn in_transaction(&self) -> bool {
        self.tx.is_some()
    }

    /// Takes the records decoded so far (never the held-back last row).
    pub fn take(&mut self) -> Vec<RowChange> {
        if let Some(tx) = &mut self.tx {
            tx.returned += (self.out.len() - self.tx_out_start) as u64;
        }
        self.tx_out_start = 0;
        std::mem::take(&mut self.out)
    }

    /// Forgets the partly read transaction before a reconnect, remembering
    /// how many of its rows were handed out so the re-read skips them.
    pub fn rewind(&mut self) {
        // A release in progress is read again (its PREPARE is at or after
        // the oldest held start, its rows handed out are counted below).
        self.release = None;
        self.out.truncate(self.tx_out_start);
        self.pending = None;
        if let Some(tx) = self.tx.take() {
            if tx.returned > 0 {
                self.resume = Some((tx.id, tx.returned));
            }
        }
        if let Some(start) = self.xa.oldest_start().cloned() {
            // The held XA transactions are read again from their PREPARE;
            // what follows them up to here was delivered.
            if self.replay.is_none() {
                let to = self.committed.clone();
                let g = self.gtids.clone();
                self.replay = Some((to, g));
            }
            self.reset_gtids(&start);
            self.committed = start;
            self.xa.clear();
        }
        self.file = self.committed.file.clone();
        self.at_boundary = true;
    }

    fn at(&self, ev: &Event) -> String {
        let h = ev.header();
        let start = (h.log_pos() as u64).saturating_sub(h.event_size() as u64);
        format!("{}:{start}", self.file)
    }

    /// Handles one event. An XA COMMIT's rows still being released
    /// ([`Decoder::releasing`]) are all released first: call
    /// [`Decoder::release_more`] before to keep batches bounded.
    pub async fn handle(&mut self, ev: &Event) -> Result<(), Fault> {
        let h = ev.header();
        let ty = h.event_type_raw();
        if self.release.is_some() {
            // A caller that does not release in chunks gets the rest now.
            self.release_more(usize::MAX)?;
        }
        self.at_boundary = false;
        match ty {
            4 => self.rotate(ev)?,
            mariadb::GTID => {
                let g = mariadb::parse_gtid(ev.data(), h.server_id())
                    .ok_or_else(|| Fault::fatal(format!("short GTID event at {}", self.at(ev))))?;
                let prepared = (g.flags & xa::FL_PREPARED_XA != 0)
                    .then(|| xa::gtid_xid(ev.data()))
                    .flatten();
                self.begin(Some(g.gtid), g.standalone(), prepared, ev)?;
            }
            33 | 34 => {
                // MySQL GTID / anonymous GTID: a transaction starts.
                let g = self.mysql_gtid(ev)?;
                self.begin(None, false, None, ev)?;
                if let (Some((uuid, gno)), Some(tx)) = (g, self.tx.as_mut()) {
                    let text = mysql_events::mysql_gtid_text(&uuid, gno);
                    tx.id = text.clone();
                    tx.gtid_str = Some(text);
                    tx.mysql_gtid = Some((uuid, gno));
                }
            }
            2 | mariadb::QUERY_COMPRESSED => {
                self.now_ms = sluice_core::record::now_ms();
                self.query(ev).await?
            }
            16 | 38 => self.commit(ev),
            19 => self.table_map(ev).await?,
            39 => return self.partial_update(ev),
            t if rows::classify(t).is_some() => {
                self.now_ms = sluice_core::record::now_ms();
                self.rows(ev)?
            }
            t if IGNORED_EVENTS.contains(&t) => {}
            t => {
                return Err(Fault::fatal(format!(
                    "unknown binlog event type {t} at {}: stopping rather than skipping it",
                    self.at(ev)
                )))
            }
        }
        Ok(())
    }

    fn rotate(&mut self, ev: &Event) -> Result<(), Fault> {
        let mut header = Vec::with_capacity(19);
        ev.header().serialize(&mut header);
        let (file, pos) = mariadb::parse_rotate(&header, ev.data())
            .ok_or_else(|| Fault::fatal(format!("short ROTATE event at {}", self.at(ev))))?;
        self.file = file;
        if self.tx.is_none() {
            // Between transactions the new file's start is a boundary.
            if ev.header().log_pos() != 0 || self.committed.file != self.file {
                self.committed.file = self.file.clone();
                self.committed.pos = pos.max(4);
            }
            self.at_boundary = true;
        }
        Ok(())
    }

    fn begin(
        &mut self,
        gtid: Option<Gtid>,
        standalone: bool,
        xa: Option<String>,
        ev: &Event,
    ) -> Result<(), Fault> {
        if self.tx.is_some() {
            // A new group without a commit event: the previous group ended
            // where this event starts.
            let h = ev.header();
            self.commit_at((h.log_pos() as u64).saturating_sub(h.event_size() as u64));
        }
        let gtid_str = gtid.map(|g| g.to_string());
        let id = match &gtid_str {
            Some(g) => g.clone(),
            None => self.at(ev),
        };
        let replayed = self.replayed(gtid, ev);
        let mut tx = Tx {
            gtid_str,
            id,
            gtid,
            standalone,
            rows: 0,
            per_table: Vec::new(),
            // A replayed group is decoded (schemas, XA) but not emitted;
            // a replayed XA PREPARE is held again.
            suppress: if replayed && xa.is_none() {
                u64::MAX
            } else {
                0
            },
            returned: 0,
            xa,
            held: Spill::default(),
            resumed: 0,
            start: self.committed.clone(),
            replayed,
            mysql_gtid: None,
        };
        if replayed {
            // The partly delivered transaction comes after the replay.
        } else if let Some((rid, n)) = self.resume.take() {
            if rid != tx.id {
                return Err(Fault::fatal(format!(
                    "resumed at transaction {} but {rid} was partly delivered: refusing to guess",
                    tx.id
                )));
            }
            tx.suppress = n;
            tx.returned = n;
            tx.resumed = n;
        }
        self.tx_out_start = self.out.len();
        self.tx = Some(tx);
        Ok(())
    }

    fn ensure_tx(&mut self, ev: &Event) -> Result<(), Fault> {
        if self.tx.is_none() {
            self.begin(None, false, None, ev)?;
        }
        Ok(())
    }

    fn commit(&mut self, ev: &Event) {
        self.commit_at(ev.header().log_pos() as u64);
    }

    /// Ends the open transaction; the next one starts at `pos`.
    fn commit_at(&mut self, pos: u64) {
        if let Some(mut last) = self.pending.take() {
            if let Some(t) = &mut last.transaction {
                t.last = true;
            }
            self.out.push(last);
        }
        if let Some(tx) = self.tx.take() {
            if let Some(g) = tx.gtid {
                self.gtids.update(g);
            }
            if let Some((uuid, gno)) = tx.mysql_gtid {
                self.mysql_gtids.add(uuid, gno);
            }
            if let Some(xid) = tx.xa {
                // Prepared: held until its XA COMMIT / ROLLBACK.
                self.xa.hold(&xid, tx.held, tx.start);
            }
        }
        if pos > 0 {
            self.committed = Position {
                file: self.file.clone(),
                pos,
                gtid: self.gtid_text(),
            };
        }
        self.end_replay();
        self.tx_out_start = self.out.len();
        self.at_boundary = true;
    }

    async fn query(&mut self, ev: &Event) -> Result<(), Fault> {
        let compressed = ev.header().event_type_raw() == mariadb::QUERY_COMPRESSED;
        let (schema, sql) = mariadb::parse_query(ev.data(), compressed)
            .ok_or_else(|| Fault::fatal(format!("bad QUERY event at {}", self.at(ev))))?;
        if let Some(st) = xa::classify(&sql) {
            return self.xa_statement(st, ev);
        }
        match ddl::classify(&sql) {
            Statement::Begin => {
                self.ensure_tx(ev)?;
            }
            Statement::Commit | Statement::Rollback => self.commit(ev),
            Statement::Ddl(names) => {
                self.ensure_tx(ev)?;
                let mut first: Option<(String, String)> = None;
                let mut wanted = names.is_empty() && self.filter.database(&schema);
                for (db, table) in &names {
                    let db = db.clone().unwrap_or_else(|| schema.clone());
                    self.info.invalidate(&db, table.as_deref());
                    let ok = match table {
                        Some(t) => self.filter.table(&db, t),
                        None => self.filter.database(&db),
                    };
                    if ok {
                        wanted = true;
                        first.get_or_insert((db, table.clone().unwrap_or_default()));
                    }
                }
                // Table ids may be reused for the new definition.
                self.tables.clear();
                if wanted {
                    let (db, table) = first.unwrap_or((schema.clone(), String::new()));
                    self.emit(
                        ev,
                        Emit {
                            table_id: u64::MAX,
                            op: Op::Ddl,
                            db: &db,
                            table: &table,
                            before: None,
                            after: None,
                            primary_key: &[],
                            row: 0,
                            ddl: Some(sql.clone()),
                        },
                    )?;
                }
                if self
                    .tx
                    .as_ref()
                    .is_some_and(|t| t.standalone || t.gtid.is_none())
                {
                    self.commit(ev);
                }
            }
            Statement::Other => {
                if self.tx.as_ref().is_some_and(|t| t.standalone) {
                    self.commit(ev);
                }
            }
        }
        Ok(())
    }

    async fn table_map(&mut self, ev: &Event) -> Result<(), Fault> {
        let data = ev.data();
        let id = rows::table_id(data).unwrap_or(0);
        if self.tables.get(&id).is_some_and(|(raw, _)| raw == data) {
            return Ok(());
        }
        let tme: TableMapEvent<'_> = ev
            .read_event()
            .map_err(|e| Fault::fatal(format!("bad TABLE_MAP event at {}: {e}", self.at(ev))))?;
        let (db, table) = (
            tme.database_name().into_owned(),
            tme.table_name().into_owned(),
        );
        let entry = if !self.filter.table(&db, &table) {
            TableEntry::Skip
        } else {
            let at = self.at(ev);
            let mut schema = TableSchema::from_table_map(&tme)
                .map_err(|e| Fault::fatal(format!("table `{db}`.`{table}` at {at}: {e}")))?;
            if !schema.from_table_map {
                let cols = self.info.columns(&db, &table).await.map_err(|e| {
                    Fault::from_anyhow(e, &format!("information_schema for `{db}`.`{table}`"))
                })?;
                infoschema::complete(&mut schema, &cols)
                    .map_err(|e| Fault::fatal(format!("table `{db}`.`{table}` at {at}: {e}")))?;
            }
            let names: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
            let keep = self.filter.columns(&db, &table, &names);
            TableEntry::Keep {
                schema: Arc::new(schema),
                keep,
            }
        };
        self.tables.insert(id, (data.to_vec(), entry));
        Ok(())
    }

    fn rows(&mut self, ev: &Event) -> Result<(), Fault> {
        let ty = ev.header().event_type_raw();
        let id = rows::table_id(ev.data()).unwrap_or(0);
        let (schema, keep) = match self.tables.get(&id) {
            Some((_, TableEntry::Skip)) => return Ok(()),
            Some((_, TableEntry::Keep { schema, keep })) => (schema.clone(), keep.clone()),
            None => {
                return Err(Fault::fatal(format!(
                    "rows event for unknown table id {id} at {}",
                    self.at(ev)
                )))
            }
        };
        self.ensure_tx(ev)?;
        let at = self.at(ev);
        let err = |e: String| {
            Fault::fatal(format!(
                "table `{}`.`{}` at {at}: {e}",
                schema.db, schema.table
            ))
        };
        let body = rows::parse(ty, ev.data()).map_err(err)?;
        let op = match body.kind {
            RowsKind::Write => Op::Create,
            RowsKind::Update => Op::Update,
            RowsKind::Delete => Op::Delete,
        };
        let mut decoded = Vec::new();
        rows::decode_rows(&body, &schema, keep.as_deref(), |img| {
            decoded.push((img.before, img.after));
            Ok(())
        })
        .map_err(err)?;
        for (index, (before, after)) in decoded.into_iter().enumerate() {
            self.emit(
                ev,
                Emit {
                    table_id: id,
                    op,
                    db: &schema.db,
                    table: &schema.table,
                    before,
                    after,
                    primary_key: &schema.primary_key,
                    row: index as u32,
                    ddl: None,
                },
            )?;
        }
        Ok(())
    }
}
