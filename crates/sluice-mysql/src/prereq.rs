//! Server prerequisite checks run before streaming: binlog enabled,
//! `binlog_format=ROW`, `binlog_row_image=FULL`, `binlog_row_metadata=FULL`
//! (recommended), replication grants. Each failure names the setting and
//! how to change it. Reads server variables and grants over a query
//! connection; changes nothing.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

/// What the checks learned about the server.
#[derive(Clone, Debug, Default)]
pub struct ServerInfo {
    pub version: String,
    pub mariadb: bool,
    /// `binlog_row_metadata=FULL`: names and types come with every table map.
    pub full_metadata: bool,
}

async fn var(conn: &mut Conn, name: &str) -> anyhow::Result<Option<String>> {
    let row: Option<(String, String)> = conn
        .exec_first("SHOW GLOBAL VARIABLES WHERE Variable_name = ?", (name,))
        .await?;
    Ok(row.map(|(_, v)| v))
}

/// Checks the server; `Err` lists every unmet requirement.
pub async fn check(conn: &mut Conn) -> anyhow::Result<ServerInfo> {
    let version: String = conn
        .query_first("SELECT VERSION()")
        .await?
        .unwrap_or_default();
    let mariadb = version.to_ascii_lowercase().contains("mariadb");
    let cnf = if mariadb { "[mariadbd]" } else { "[mysqld]" };
    let mut problems = Vec::new();
    let log_bin = var(conn, "log_bin").await?.unwrap_or_default();
    if !log_bin.eq_ignore_ascii_case("ON") && log_bin != "1" {
        problems.push(format!(
            "the binary log is off (log_bin={log_bin}): start the server with --log-bin (or `log_bin` under {cnf}) and restart it"
        ));
    }
    let format = var(conn, "binlog_format").await?.unwrap_or_default();
    if !format.eq_ignore_ascii_case("ROW") {
        problems.push(format!(
            "binlog_format is {format}, row events need ROW: SET GLOBAL binlog_format=ROW and `binlog_format=ROW` under {cnf}"
        ));
    }
    let image = var(conn, "binlog_row_image")
        .await?
        .unwrap_or_else(|| "FULL".into());
    if !image.eq_ignore_ascii_case("FULL") {
        problems.push(format!(
            "binlog_row_image is {image}, before/after images need FULL: SET GLOBAL binlog_row_image=FULL and `binlog_row_image=FULL` under {cnf}"
        ));
    }
    let metadata = var(conn, "binlog_row_metadata").await?;
    let full_metadata = metadata
        .as_deref()
        .is_some_and(|m| m.eq_ignore_ascii_case("FULL"));
    if !full_metadata {
        tracing::warn!(
            binlog_row_metadata = metadata.as_deref().unwrap_or("(not supported)"),
            "binlog_row_metadata is not FULL: column names come from information_schema, which \
             is only right when the reader is not behind a DDL; SET GLOBAL binlog_row_metadata=FULL"
        );
    }
    let grants: Vec<String> = conn.query("SHOW GRANTS").await?;
    let all = grants.iter().any(|g| {
        let g = g.to_ascii_uppercase();
        g.contains("ALL PRIVILEGES ON *.*")
            || g.contains("REPLICATION SLAVE")
            || g.contains("REPLICATION REPLICA")
    });
    if !all {
        problems.push(
            "the user lacks replication grants: GRANT REPLICATION SLAVE, REPLICATION CLIENT (MariaDB: BINLOG MONITOR), SELECT ON *.* TO the user".into(),
        );
    }
    if !problems.is_empty() {
        anyhow::bail!(
            "the server cannot be captured:\n  - {}",
            problems.join("\n  - ")
        );
    }
    Ok(ServerInfo {
        version,
        mariadb,
        full_metadata,
    })
}
