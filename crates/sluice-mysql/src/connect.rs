//! Opens the replica connection: registers with a `server_id`, announces
//! MariaDB's GTID capability (`@mariadb_slave_capability=4`), sets the
//! heartbeat period and the start (`@slave_connect_state` for a MariaDB
//! GTID state; COM_BINLOG_DUMP_GTID with the GTID set on MySQL; else
//! file/position), and turns the connection into a binlog stream. Also reads the server's current binlog position. Talks to
//! the server only.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Opts};

use crate::gtid::Position;
use crate::gtid_set::{self, GtidSet};

/// Connects a plain query connection.
pub async fn open(opts: &Opts) -> anyhow::Result<Conn> {
    Conn::new(opts.clone()).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot connect to {}:{}: {e}",
            opts.ip_or_hostname(),
            opts.tcp_port()
        )
    })
}

/// The server's current end of binlog (and GTID state on MariaDB).
pub async fn current_position(conn: &mut Conn, mariadb: bool) -> anyhow::Result<Position> {
    let row: Option<mysql_async::Row> = conn.query_first("SHOW MASTER STATUS").await?;
    let row = row.ok_or_else(|| {
        anyhow::anyhow!("SHOW MASTER STATUS returned nothing: the binary log is off")
    })?;
    let file: String = row.get(0).unwrap_or_default();
    let pos: u64 = row.get(1).unwrap_or(4);
    let gtid = if mariadb {
        conn.query_first::<String, _>("SELECT @@GLOBAL.gtid_binlog_pos")
            .await?
            .unwrap_or_default()
    } else {
        // MySQL with GTIDs on: the executed set (servers without
        // gtid_mode resume by file/position).
        conn.query_first::<String, _>(
            "SELECT IF(@@GLOBAL.gtid_mode = 'ON', @@GLOBAL.gtid_executed, '')",
        )
        .await
        .ok()
        .flatten()
        .map(|s| s.split_whitespace().collect())
        .unwrap_or_default()
    };
    Ok(Position { file, pos, gtid })
}

/// Starts a binlog stream at `start`.
pub async fn binlog_stream(
    opts: &Opts,
    server_id: u32,
    heartbeat: Duration,
    start: &Position,
    mariadb: bool,
) -> anyhow::Result<BinlogStream> {
    let mut conn = open(opts).await?;
    let ns = heartbeat.as_nanos().min(u32::MAX as u128 * 1_000_000) as u64;
    conn.query_drop(format!("SET @master_heartbeat_period = {ns}"))
        .await?;
    let use_gtid = mariadb && !start.gtid.is_empty();
    if mariadb {
        conn.query_drop("SET @mariadb_slave_capability = 4").await?;
    }
    if use_gtid {
        conn.exec_drop("SET @slave_connect_state = ?", (start.gtid.as_str(),))
            .await?;
        conn.query_drop("SET @slave_gtid_strict_mode = 0, @slave_gtid_ignore_duplicates = 0")
            .await?;
    }
    let mysql_set = (!mariadb && gtid_set::is_mysql_set(&start.gtid))
        .then(|| start.gtid.parse::<GtidSet>())
        .transpose()
        .map_err(|e| anyhow::anyhow!("bad GTID set in position {start}: {e}"))?;
    let by_gtid = use_gtid || mysql_set.is_some();
    let file = if by_gtid { "" } else { start.file.as_str() };
    let pos = if by_gtid || start.pos < 4 {
        4
    } else {
        start.pos
    };
    let mut req = BinlogStreamRequest::new(server_id)
        .with_filename(file.as_bytes())
        .with_pos(pos);
    if let Some(set) = mysql_set {
        // MySQL: COM_BINLOG_DUMP_GTID, everything not in the set.
        req = req.with_gtid().with_gtid_set(set.sids());
    }
    Ok(conn.get_binlog_stream(req).await?)
}
