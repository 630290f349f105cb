//! Every column type round-trips: insert, update and delete rows with edge
//! values, and compare each record with what SELECT returns — with FULL
//! row metadata (names from the table map) and with MINIMAL (names from
//! information_schema).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use serde_json::{json, Value};
use sluice_core::record::{Op, Row, RowChange};
use sluice_mysql::snapshot::Snapshot;
use sluice_mysql::{ChangeStream, StreamConfig};
use support::MariaDb;

/// (column, definition, how SELECT renders it, how to read that rendering)
const COLUMNS: &[(&str, &str, &str, &str)] = &[
    ("ti", "TINYINT", "CAST(ti AS CHAR)", "int"),
    ("tiu", "TINYINT UNSIGNED", "CAST(tiu AS CHAR)", "int"),
    ("si", "SMALLINT", "CAST(si AS CHAR)", "int"),
    ("siu", "SMALLINT UNSIGNED", "CAST(siu AS CHAR)", "int"),
    ("mi", "MEDIUMINT", "CAST(mi AS CHAR)", "int"),
    ("miu", "MEDIUMINT UNSIGNED", "CAST(miu AS CHAR)", "int"),
    ("i", "INT", "CAST(i AS CHAR)", "int"),
    ("iu", "INT UNSIGNED", "CAST(iu AS CHAR)", "int"),
    ("bi", "BIGINT", "CAST(bi AS CHAR)", "int"),
    ("biu", "BIGINT UNSIGNED", "CAST(biu AS CHAR)", "int"),
    ("dec1", "DECIMAL(65,30)", "CAST(dec1 AS CHAR)", "str"),
    ("dec2", "DECIMAL(10,2)", "CAST(dec2 AS CHAR)", "str"),
    ("dec3", "DECIMAL(5,0)", "CAST(dec3 AS CHAR)", "str"),
    ("f", "FLOAT", "CAST(f AS CHAR)", "float"),
    ("d", "DOUBLE", "CAST(d AS CHAR)", "float"),
    ("b1", "BIT(1)", "b1+0", "int"),
    ("b64", "BIT(64)", "b64+0", "int"),
    ("dt", "DATE", "CAST(dt AS CHAR)", "str"),
    ("tm", "TIME", "CAST(tm AS CHAR)", "str"),
    ("tm3", "TIME(3)", "CAST(tm3 AS CHAR)", "str"),
    ("tm6", "TIME(6)", "CAST(tm6 AS CHAR)", "str"),
    (
        "dtm",
        "DATETIME",
        "REPLACE(CAST(dtm AS CHAR),' ','T')",
        "str",
    ),
    (
        "dtm1",
        "DATETIME(1)",
        "REPLACE(CAST(dtm1 AS CHAR),' ','T')",
        "str",
    ),
    (
        "dtm3",
        "DATETIME(3)",
        "REPLACE(CAST(dtm3 AS CHAR),' ','T')",
        "str",
    ),
    (
        "dtm6",
        "DATETIME(6)",
        "REPLACE(CAST(dtm6 AS CHAR),' ','T')",
        "str",
    ),
    (
        "ts",
        "TIMESTAMP NULL",
        "CONCAT(REPLACE(CAST(ts AS CHAR),' ','T'),'Z')",
        "str",
    ),
    (
        "ts2",
        "TIMESTAMP(2) NULL",
        "CONCAT(REPLACE(CAST(ts2 AS CHAR),' ','T'),'Z')",
        "str",
    ),
    (
        "ts6",
        "TIMESTAMP(6) NULL",
        "CONCAT(REPLACE(CAST(ts6 AS CHAR),' ','T'),'Z')",
        "str",
    ),
    ("yr", "YEAR", "CAST(yr AS UNSIGNED)", "int"),
    ("c", "CHAR(10) CHARACTER SET utf8mb4", "c", "str"),
    ("vc", "VARCHAR(300) CHARACTER SET utf8mb4", "vc", "str"),
    ("tx", "TEXT CHARACTER SET utf8mb4", "tx", "str"),
    ("l1", "VARCHAR(20) CHARACTER SET latin1", "l1", "str"),
    ("l1c", "CHAR(5) CHARACTER SET latin1", "l1c", "str"),
    ("l1t", "TEXT CHARACTER SET latin1", "l1t", "str"),
    ("bn", "BINARY(4)", "REPLACE(TO_BASE64(bn),'\\n','')", "str"),
    (
        "vb",
        "VARBINARY(10)",
        "REPLACE(TO_BASE64(vb),'\\n','')",
        "str",
    ),
    ("bl", "BLOB", "REPLACE(TO_BASE64(bl),'\\n','')", "str"),
    ("lb", "LONGBLOB", "REPLACE(TO_BASE64(lb),'\\n','')", "str"),
    ("e", "ENUM('a','b','c')", "e", "str"),
    ("st", "SET('x','y','z')", "st", "str"),
    ("el", "ENUM('é','ü') CHARACTER SET latin1", "el", "str"),
    ("sl", "SET('à','ß') CHARACTER SET latin1", "sl", "str"),
    ("j", "JSON", "j", "str"),
    ("g", "GEOMETRY", "REPLACE(TO_BASE64(g),'\\n','')", "str"),
    (
        "gen",
        "BIGINT AS (i + 1) VIRTUAL",
        "CAST(gen AS CHAR)",
        "int",
    ),
    (
        "gens",
        "BIGINT AS (bi DIV 2) STORED",
        "CAST(gens AS CHAR)",
        "int",
    ),
];

const MAX: &str = "(1, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, \
    9223372036854775807, 18446744073709551615, \
    '99999999999999999999999999999999999.999999999999999999999999999999', '99999999.99', '99999', \
    3.40282e38, 1.7976931348623157e308, b'1', b'1111111111111111111111111111111111111111111111111111111111111111', \
    '9999-12-31', '838:59:59', '-12:34:56.789', '838:59:59.000000', '9999-12-31 23:59:59', '2024-02-29 23:59:59.9', \
    '2024-02-29 23:59:59.999', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07', '2024-02-29 23:59:59.12', \
    '2024-02-29 23:59:59.123456', 2155, 'héllo', REPEAT('ü', 300), '😀 emoji', 'café €', 'œuf', 'naïve Ÿ', \
    'ab', x'00FF', x'DEADBEEF', REPEAT('x', 70000), 'c', 'x,z', 'ü', 'à,ß', '{\"a\": [1, 2.5, \"s\"], \"b\": null}', \
    ST_GeomFromText('POINT(1 2)'), DEFAULT, DEFAULT)";
const MIN: &str = "(2, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0, \
    '-99999999999999999999999999999999999.999999999999999999999999999999', '-99999999.99', '-99999', \
    -1.17549e-38, -2.2250738585072014e-308, b'0', b'0', \
    '1000-01-01', '-838:59:59', '-00:00:00.001', '-838:59:59.000000', '1000-01-01 00:00:00', '1000-01-01 00:00:00.1', \
    '1000-01-01 00:00:00.000', '1000-01-01 00:00:00.000001', '1970-01-01 00:00:01', '1970-01-01 00:00:01.01', \
    '1970-01-01 00:00:01.000001', 1901, '', '', '', '', '', '', '', '', '', '', 'a', '', 'é', '', '[]', \
    ST_GeomFromText('LINESTRING(0 0,1 1)'), DEFAULT, DEFAULT)";
const ZERO: &str = "(3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '0', '0.5', '0', 0, 0, b'0', b'0', '0000-00-00', '00:00:00', \
    '00:00:00.000', '-00:00:00.000001', '0000-00-00 00:00:00', '0000-00-00 00:00:00.0', '0000-00-00 00:00:00.000', \
    '0000-00-00 00:00:00.000000', '0000-00-00 00:00:00', '0000-00-00 00:00:00.00', '0000-00-00 00:00:00.000000', \
    0, ' a', 'b ', 'x\\ty', '\\0', 'é', 'ÿ', x'00', x'00', x'00', x'00', '', 'x,y,z', '', 'ß', '{}', \
    ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))'), DEFAULT, DEFAULT)";

fn null_row() -> String {
    let n = COLUMNS.len() - 2;
    format!("(4, {}DEFAULT, DEFAULT)", "NULL, ".repeat(n))
}

fn create_table() -> String {
    let cols: Vec<String> = COLUMNS
        .iter()
        .map(|(n, d, _, _)| format!("{n} {d}"))
        .collect();
    format!(
        "CREATE TABLE db.types (id INT PRIMARY KEY, {}) CHARACTER SET utf8mb4",
        cols.join(", ")
    )
}

/// What SELECT says each row holds, in the record's JSON mapping.
async fn select(db: &MariaDb) -> BTreeMap<i64, Row> {
    let mut conn = db.conn().await;
    conn.query_drop("SET time_zone = '+00:00'").await.unwrap();
    let exprs: Vec<&str> = COLUMNS.iter().map(|c| c.2).collect();
    let sql = format!("SELECT id, {} FROM db.types ORDER BY id", exprs.join(", "));
    let rows: Vec<mysql_async::Row> = conn.query(sql).await.unwrap();
    let mut out = BTreeMap::new();
    for row in rows {
        let id: i64 = row.get(0).unwrap();
        let mut r = Row::new();
        r.insert("id".into(), json!(id));
        for (i, (name, _, _, how)) in COLUMNS.iter().enumerate() {
            let v: Option<Vec<u8>> = row.get(i + 1).unwrap();
            let v = match v {
                None => Value::Null,
                Some(b) => {
                    let s = String::from_utf8(b).unwrap();
                    match *how {
                        "int" => serde_json::from_str(&s).unwrap(),
                        "float" => json!(s.parse::<f64>().unwrap()),
                        _ => Value::String(s),
                    }
                }
            };
            r.insert(name.to_string(), v);
        }
        out.insert(id, r);
    }
    out
}

fn same(got: &Row, want: &Row, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: columns {got:?}");
    for (k, w) in want {
        let g = &got[k];
        let kind = COLUMNS.iter().find(|c| c.0 == k).map_or("int", |c| c.3);
        if kind == "float" && g.is_number() {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            assert!(
                (g - w).abs() <= w.abs() * 1e-5,
                "{what}: column {k}: got {g}, SELECT says {w}"
            );
        } else {
            assert_eq!(g, w, "{what}: column {k}");
        }
    }
}

async fn changes(s: &mut ChangeStream, n: usize) -> Vec<RowChange> {
    let mut out = Vec::new();
    while out.len() < n {
        let b = tokio::time::timeout(Duration::from_secs(20), s.next_batch())
            .await
            .expect("timed out")
            .expect("batch");
        out.extend(b.changes);
    }
    out
}

async fn round_trip(db: MariaDb) {
    db.exec(&format!("CREATE DATABASE db; {}", create_table()))
        .await;
    let mut cfg = StreamConfig::new(mysql_async::Opts::from_url(&db.url()).unwrap(), 77);
    cfg.max_reconnects = Some(0);
    let mut s = ChangeStream::start(cfg, None).await.unwrap();
    db.exec(&format!(
        "SET sql_mode = ''; SET time_zone = '+00:00'; INSERT INTO db.types VALUES {MAX}, {MIN}, {ZERO}, {}",
        null_row()
    ))
    .await;
    let inserted = changes(&mut s, 4).await;
    let first = select(&db).await;
    for c in &inserted {
        assert_eq!(c.op, Op::Create);
        let after = c.after.as_ref().unwrap();
        let id = after["id"].as_i64().unwrap();
        same(after, &first[&id], &format!("insert of row {id}"));
    }
    // The snapshot renders every type exactly as the binlog decoder does.
    let filter =
        sluice_mysql::filter::TableFilter::new(&["db.types".into()], &[], &[], &[]).unwrap();
    let opts = mysql_async::Opts::from_url(&db.url()).unwrap();
    let mut snap = Snapshot::begin(&opts, &filter, 3, 1, true, 77, None)
        .await
        .unwrap();
    let mut read = Vec::new();
    while let Some(chunk) = snap.next_chunk().await.unwrap() {
        read.extend(chunk);
    }
    snap.finish().await.unwrap();
    assert_eq!(read.len(), 4);
    for (r, c) in read.iter().zip(&inserted) {
        assert_eq!(r.op, Op::Read);
        assert!(r.source.snapshot);
        same(
            r.after.as_ref().unwrap(),
            c.after.as_ref().unwrap(),
            "snapshot row vs binlog row",
        );
    }
    db.exec(
        "SET sql_mode = ''; SET time_zone = '+00:00'; UPDATE db.types SET ti = ti - 1, vc = 'changed', j = '{\"x\": 1}', \
         ts6 = '2001-02-03 04:05:06.7', l1 = 'Ÿ€' WHERE id = 1; DELETE FROM db.types WHERE id = 2",
    )
    .await;
    let c = changes(&mut s, 2).await;
    let second = select(&db).await;
    assert_eq!(c[0].op, Op::Update);
    same(c[0].before.as_ref().unwrap(), &first[&1], "update before");
    same(c[0].after.as_ref().unwrap(), &second[&1], "update after");
    assert_eq!(c[1].op, Op::Delete);
    same(c[1].before.as_ref().unwrap(), &first[&2], "delete before");
    assert_eq!(c[1].primary_key, vec!["id".to_string()]);
}

#[tokio::test]
async fn every_type_round_trips_with_full_metadata() {
    round_trip(MariaDb::start()).await;
}

#[tokio::test]
async fn every_type_round_trips_with_information_schema() {
    round_trip(MariaDb::start_with(&["--binlog-row-metadata=MINIMAL"])).await;
}
