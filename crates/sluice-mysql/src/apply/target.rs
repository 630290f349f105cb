//! The target connection of an apply worker, MySQL / MariaDB or
//! PostgreSQL: session setup, multi-statement transactions, error
//! classification (retryable vs refused), the `sluice_apply_position`
//! table, column metadata, and `create_tables` (MySQL: the source's
//! `SHOW CREATE TABLE`; PostgreSQL: the documented type mapping). Touches
//! the target database, and the source database's schema only for
//! `create_tables`.

use std::fmt::Write;

use mysql_async::prelude::Queryable;

use super::change::Pos;
use super::sql::{Dialect, Kind, TableMeta};

/// A failed statement.
#[derive(Debug)]
pub struct DbError {
    /// Transient (connection, deadlock, lock wait): try again.
    pub retryable: bool,
    pub message: String,
    /// Server error code (MySQL number or PostgreSQL SQLSTATE).
    pub code: String,
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

/// A connection to the target.
pub enum Conn {
    My(mysql_async::Conn),
    Pg(tokio_postgres::Client),
}

fn my_err(e: mysql_async::Error) -> DbError {
    match &e {
        mysql_async::Error::Server(s) => DbError {
            retryable: matches!(
                s.code,
                1040 | 1053 | 1205 | 1213 | 1290 | 1317 | 1927 | 2006 | 2013 | 1158..=1161
            ),
            message: format!("ERROR {} ({}): {}", s.code, s.state, s.message),
            code: s.code.to_string(),
        },
        _ => DbError {
            retryable: true,
            message: e.to_string(),
            code: String::new(),
        },
    }
}

fn pg_err(e: tokio_postgres::Error) -> DbError {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code().to_string();
            DbError {
                retryable: ["08", "40", "53", "57", "58"]
                    .iter()
                    .any(|c| code.starts_with(c)),
                message: format!("ERROR {code}: {}", db.message()),
                code,
            }
        }
        None => DbError {
            retryable: true,
            message: e.to_string(),
            code: String::new(),
        },
    }
}

/// A SQL string literal (for metadata queries).
pub fn lit(d: Dialect, s: &str) -> String {
    let mut out = String::new();
    let _ = d.string(&mut out, &s.replace('\0', ""));
    out
}

impl Conn {
    /// Connects and sets the session up (UTC, permissive sql_mode so zero
    /// dates and id 0 round-trip, no foreign-key checks).
    pub async fn connect(d: Dialect, url: &str) -> Result<Conn, DbError> {
        match d {
            Dialect::Mysql => {
                let opts = mysql_async::Opts::from_url(url).map_err(|e| DbError {
                    retryable: false,
                    message: format!("url: {e}"),
                    code: String::new(),
                })?;
                let mut c = mysql_async::Conn::new(opts).await.map_err(my_err)?;
                c.query_drop(
                    "SET SESSION time_zone='+00:00', \
                     sql_mode='NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION', \
                     foreign_key_checks=0, autocommit=1; \
                     SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
                )
                .await
                .map_err(my_err)?;
                Ok(Conn::My(c))
            }
            Dialect::Postgres => {
                // TLS by the URL's sslmode / sslrootcert (see pg_tls).
                let client = super::pg_tls::connect(url).await?;
                client
                    .batch_execute("SET TIME ZONE 'UTC'")
                    .await
                    .map_err(pg_err)?;
                // Skips triggers and foreign-key checks, like a replica;
                // needs superuser, so optional.
                if let Err(e) = client
                    .batch_execute("SET session_replication_role = replica")
                    .await
                {
                    tracing::debug!(error = %e, "session_replication_role not set");
                }
                Ok(Conn::Pg(client))
            }
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Conn::My(_) => Dialect::Mysql,
            Conn::Pg(_) => Dialect::Postgres,
        }
    }

    /// Runs one or more statements (no result sets).
    pub async fn exec(&mut self, sql: &str) -> Result<(), DbError> {
        match self {
            Conn::My(c) => c.query_drop(sql).await.map_err(my_err),
            Conn::Pg(c) => c.batch_execute(sql).await.map_err(pg_err),
        }
    }

    /// Runs one prepared statement (MySQL targets; cached per connection
    /// by its text).
    pub async fn exec_prepared(
        &mut self,
        sql: &str,
        params: Vec<mysql_async::Value>,
    ) -> Result<(), DbError> {
        match self {
            Conn::My(c) => c
                .exec_drop(sql, mysql_async::Params::Positional(params))
                .await
                .map_err(my_err),
            Conn::Pg(_) => Err(DbError {
                retryable: false,
                message: "prepared MySQL statement sent to a PostgreSQL target".into(),
                code: String::new(),
            }),
        }
    }

    /// Rows of text columns.
    pub async fn rows(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, DbError> {
        match self {
            Conn::My(c) => {
                let rows: Vec<mysql_async::Row> = c.query(sql).await.map_err(my_err)?;
                Ok(rows.into_iter().map(my_texts).collect())
            }
            Conn::Pg(c) => pg_rows(c, sql).await,
        }
    }

    /// Rows of text columns of several statements of which the last
    /// returns rows, in one round trip.
    pub async fn last_rows(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, DbError> {
        match self {
            Conn::My(c) => {
                let mut result = c.query_iter(sql).await.map_err(my_err)?;
                let mut last = Vec::new();
                while !result.is_empty() {
                    let set: Vec<mysql_async::Row> = result.collect().await.map_err(my_err)?;
                    if !set.is_empty() {
                        last = set;
                    }
                }
                Ok(last.into_iter().map(my_texts).collect())
            }
            Conn::Pg(c) => pg_rows(c, sql).await,
        }
    }

    /// The target table's columns, or `None` when it does not exist.
    pub async fn table_meta(
        &mut self,
        db: &str,
        table: &str,
    ) -> Result<Option<TableMeta>, DbError> {
        let d = self.dialect();
        let sql = format!(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_schema = {} AND table_name = {}",
            lit(d, db),
            lit(d, table)
        );
        let rows = self.rows(&sql).await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut meta = TableMeta::default();
        for r in rows {
            if let (Some(Some(n)), Some(Some(t))) = (r.first(), r.get(1)) {
                meta.columns.insert(n.clone(), Kind::from_data_type(t));
            }
        }
        Ok(Some(meta))
    }

    /// Creates the position table if missing.
    pub async fn ensure_position_table(&mut self, db: &str, table: &str) -> Result<(), DbError> {
        let d = self.dialect();
        let mut t = String::new();
        d.table(&mut t, db, table);
        let mut dbq = String::new();
        d.ident(&mut dbq, db);
        let sql = match d {
            Dialect::Mysql => format!(
                "CREATE DATABASE IF NOT EXISTS {dbq}; CREATE TABLE IF NOT EXISTS {t} (\
                 consumer VARCHAR(191) NOT NULL, worker INT NOT NULL, workers INT NOT NULL, \
                 file VARCHAR(255) NOT NULL, pos BIGINT UNSIGNED NOT NULL, \
                 row_idx INT UNSIGNED NOT NULL, gtid VARCHAR(255) NOT NULL, \
                 updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
                 snapshot MEDIUMTEXT NULL, \
                 PRIMARY KEY (consumer, worker)) ENGINE=InnoDB"
            ),
            Dialect::Postgres => format!(
                "CREATE SCHEMA IF NOT EXISTS {dbq}; CREATE TABLE IF NOT EXISTS {t} (\
                 consumer VARCHAR(191) NOT NULL, worker INT NOT NULL, workers INT NOT NULL, \
                 file VARCHAR(255) NOT NULL, pos BIGINT NOT NULL, row_idx BIGINT NOT NULL, \
                 gtid VARCHAR(255) NOT NULL, updated_at TIMESTAMPTZ NOT NULL DEFAULT now(), \
                 snapshot TEXT NULL, PRIMARY KEY (consumer, worker))"
            ),
        };
        self.exec(&sql).await?;
        // Tables created before the `snapshot` column existed.
        let has = self
            .rows(&format!(
                "SELECT 1 FROM information_schema.columns WHERE table_schema = {} \
                 AND table_name = {} AND column_name = 'snapshot'",
                lit(d, db),
                lit(d, table)
            ))
            .await?;
        if has.is_empty() {
            let kind = match d {
                Dialect::Mysql => "MEDIUMTEXT",
                Dialect::Postgres => "TEXT",
            };
            self.exec(&format!("ALTER TABLE {t} ADD COLUMN snapshot {kind} NULL"))
                .await?;
        }
        Ok(())
    }

    /// The stored positions of a consumer: (worker, workers, position,
    /// snapshot progress as stored).
    pub async fn load_positions(
        &mut self,
        db: &str,
        table: &str,
        consumer: &str,
    ) -> Result<Vec<Stored>, DbError> {
        let d = self.dialect();
        let mut sql = String::from(POSITION_COLUMNS);
        d.table(&mut sql, db, table);
        let _ = write!(sql, " WHERE consumer = {}", lit(d, consumer));
        let rows = self.rows(&sql).await?;
        Ok(rows.iter().filter_map(|r| Stored::parse(r)).collect())
    }

    /// Begins a target transaction and locks the consumer's position rows
    /// (one worker's, or all with `None`) until it ends, in one round
    /// trip; returns the rows as committed. A second writer of the same
    /// rows waits here until the first one's transaction ends, then sees
    /// what it wrote.
    pub async fn begin_locked(
        &mut self,
        (db, table): (&str, &str),
        consumer: &str,
        worker: Option<usize>,
    ) -> Result<Vec<Stored>, DbError> {
        let d = self.dialect();
        let mut sql = match d {
            Dialect::Mysql => String::from("START TRANSACTION; "),
            Dialect::Postgres => String::from("BEGIN; "),
        };
        sql.push_str(POSITION_COLUMNS);
        d.table(&mut sql, db, table);
        let _ = write!(sql, " WHERE consumer = {}", lit(d, consumer));
        if let Some(w) = worker {
            let _ = write!(sql, " AND worker = {w}");
        }
        sql.push_str(" FOR UPDATE");
        let rows = self.last_rows(&sql).await?;
        Ok(rows.iter().filter_map(|r| Stored::parse(r)).collect())
    }
}

/// The columns [`Stored::parse`] reads, in its order.
const POSITION_COLUMNS: &str = "SELECT worker, workers, file, pos, row_idx, gtid, snapshot FROM ";

/// The rows of a PostgreSQL simple query (every statement's), as text.
async fn pg_rows(
    c: &tokio_postgres::Client,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, DbError> {
    let msgs = c.simple_query(sql).await.map_err(pg_err)?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect())
}

/// A MySQL row as text columns.
fn my_texts(r: mysql_async::Row) -> Vec<Option<String>> {
    (0..r.len())
        .map(|i| match r.as_ref(i) {
            Some(mysql_async::Value::NULL) | None => None,
            Some(mysql_async::Value::Bytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Some(v) => Some(v.as_sql(true).trim_matches('\'').to_string()),
        })
        .collect()
}

/// A worker's row of the position table.
#[derive(Clone, Debug)]
pub struct Stored {
    pub worker: usize,
    pub workers: usize,
    /// The last stream change applied (`None`: snapshot rows only).
    pub position: Option<Pos>,
    /// Snapshot progress (JSON), while the worker applies a snapshot.
    pub snapshot: Option<String>,
}

impl Stored {
    /// A row of [`POSITION_COLUMNS`] (`None`: not such a row).
    fn parse(r: &[Option<String>]) -> Option<Stored> {
        let num = |v: &Option<String>| v.as_deref().and_then(|s| s.parse::<u64>().ok());
        if r.len() < 7 {
            return None;
        }
        let (w, n, p, row) = (num(&r[0])?, num(&r[1])?, num(&r[3])?, num(&r[4])?);
        let file = r[2].clone().unwrap_or_default();
        Some(Stored {
            worker: w as usize,
            workers: n as usize,
            // No stream position yet (snapshot progress only).
            position: (!file.is_empty()).then(|| Pos {
                file,
                pos: p,
                row: row as u32,
                gtid: r[5].clone().unwrap_or_default(),
            }),
            snapshot: r[6].clone(),
        })
    }
}

/// The statement that records a worker's position (run inside the
/// worker's transaction): its stream position (`None`: none yet) and its
/// snapshot progress (JSON; `None` once the stream is applied).
pub fn position_sql(
    d: Dialect,
    (db, table): (&str, &str),
    consumer: &str,
    worker: usize,
    workers: usize,
    p: Option<&Pos>,
    snapshot: Option<&str>,
) -> String {
    let empty = Pos::default();
    let p = p.unwrap_or(&empty);
    let mut s = String::from("INSERT INTO ");
    d.table(&mut s, db, table);
    let _ = write!(
        s,
        " (consumer, worker, workers, file, pos, row_idx, gtid, snapshot) VALUES ({}, {worker}, {workers}, {}, {}, {}, {}, {})",
        lit(d, consumer),
        lit(d, &p.file),
        p.pos,
        p.row,
        lit(d, &p.gtid),
        snapshot.map_or_else(|| "NULL".to_string(), |j| lit(d, j)),
    );
    match d {
        Dialect::Mysql => s.push_str(
            " ON DUPLICATE KEY UPDATE workers=VALUES(workers), file=VALUES(file), pos=VALUES(pos), \
             row_idx=VALUES(row_idx), gtid=VALUES(gtid), snapshot=VALUES(snapshot), \
             updated_at=CURRENT_TIMESTAMP(6)",
        ),
        Dialect::Postgres => s.push_str(
            " ON CONFLICT (consumer, worker) DO UPDATE SET workers=EXCLUDED.workers, \
             file=EXCLUDED.file, pos=EXCLUDED.pos, row_idx=EXCLUDED.row_idx, \
             gtid=EXCLUDED.gtid, snapshot=EXCLUDED.snapshot, updated_at=now()",
        ),
    }
    s
}

/// MySQL → PostgreSQL column type (the documented mapping).
pub fn pg_type(
    data_type: &str,
    column_type: &str,
    prec: Option<u64>,
    scale: Option<u64>,
) -> String {
    let unsigned = column_type.contains("unsigned");
    let dt_prec = |p: Option<u64>| p.map(|p| format!("({})", p.min(6))).unwrap_or_default();
    match data_type {
        "tinyint" => "smallint".into(),
        "smallint" if unsigned => "integer".into(),
        "smallint" => "smallint".into(),
        "mediumint" => "integer".into(),
        "int" if unsigned => "bigint".into(),
        "int" => "integer".into(),
        "bigint" if unsigned => "numeric(20)".into(),
        "bigint" => "bigint".into(),
        "decimal" => format!("numeric({},{})", prec.unwrap_or(10), scale.unwrap_or(0)),
        "float" => "real".into(),
        "double" => "double precision".into(),
        "bit" => "bigint".into(),
        "year" => "smallint".into(),
        "date" => "date".into(),
        "datetime" => format!("timestamp{}", dt_prec(scale)),
        "timestamp" => format!("timestamptz{}", dt_prec(scale)),
        "time" => "interval".into(),
        "json" => "json".into(),
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => "bytea".into(),
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" => "bytea".into(),
        _ => "text".into(),
    }
}

/// name, DATA_TYPE, COLUMN_TYPE, precision, scale, IS_NULLABLE.
type SourceColumn = (String, String, String, Option<u64>, Option<u64>, String);

/// Creates the target table `tdb.table` from the source's `sdb.table`.
pub async fn create_table(
    target: &mut Conn,
    source_url: &str,
    (sdb, tdb, table): (&str, &str, &str),
) -> Result<(), DbError> {
    let opts = mysql_async::Opts::from_url(source_url).map_err(|e| DbError {
        retryable: false,
        message: format!("source_url: {e}"),
        code: String::new(),
    })?;
    let mut src = mysql_async::Conn::new(opts).await.map_err(my_err)?;
    let d = target.dialect();
    let sql = match d {
        Dialect::Mysql => {
            let mut name = String::new();
            Dialect::Mysql.table(&mut name, sdb, table);
            let row: Option<(String, String)> = src
                .query_first(format!("SHOW CREATE TABLE {name}"))
                .await
                .map_err(my_err)?;
            let (_, create) = row.ok_or_else(|| DbError {
                retryable: false,
                message: format!("source table {sdb}.{table} not found"),
                code: String::new(),
            })?;
            let mut tdbq = String::new();
            d.ident(&mut tdbq, tdb);
            format!("CREATE DATABASE IF NOT EXISTS {tdbq}; USE {tdbq}; {create}")
        }
        Dialect::Postgres => {
            let cols: Vec<SourceColumn> = src
                .query(format!(
                    "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, NUMERIC_PRECISION, \
                     COALESCE(NUMERIC_SCALE, DATETIME_PRECISION), IS_NULLABLE \
                     FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} \
                     ORDER BY ORDINAL_POSITION",
                    lit(Dialect::Mysql, sdb),
                    lit(Dialect::Mysql, table)
                ))
                .await
                .map_err(my_err)?;
            let pk: Vec<String> = src
                .query(format!(
                    "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
                     WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} AND CONSTRAINT_NAME = 'PRIMARY' \
                     ORDER BY ORDINAL_POSITION",
                    lit(Dialect::Mysql, sdb),
                    lit(Dialect::Mysql, table)
                ))
                .await
                .map_err(my_err)?;
            let mut s = String::from("CREATE SCHEMA IF NOT EXISTS ");
            d.ident(&mut s, tdb);
            s.push_str("; CREATE TABLE IF NOT EXISTS ");
            d.table(&mut s, tdb, table);
            s.push_str(" (");
            for (i, (n, dt, ct, p, sc, null)) in cols.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                d.ident(&mut s, n);
                let _ = write!(s, " {}", pg_type(dt, ct, *p, *sc));
                if null == "NO" {
                    s.push_str(" NOT NULL");
                }
            }
            if !pk.is_empty() {
                s.push_str(", PRIMARY KEY (");
                for (i, c) in pk.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    d.ident(&mut s, c);
                }
                s.push(')');
            }
            s.push(')');
            s
        }
    };
    src.disconnect().await.ok();
    target.exec(&sql).await
}
