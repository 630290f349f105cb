//! Replica apply of large merged statements, which MySQL targets receive
//! as prepared statements (blocks of 512 and 64 rows, the rest as text):
//! every column type at edge values through inserts, updates and deletes
//! of 600 rows per transaction, a GEOMETRY table (text path), and the
//! same stream applied with `prepared_statements: false`. `verify` finds
//! both targets equal to the source after the inserts and at the end, and
//! no statement was refused on the way.

mod apply_common;
mod support;

use std::time::Duration;

use apply_common::*;
use mysql_async::prelude::Queryable;
use serde_json::json;

const TYPES: &str = "CREATE DATABASE shop;
CREATE TABLE shop.types (id BIGINT PRIMARY KEY, ti TINYINT, tu TINYINT UNSIGNED,
  mi MEDIUMINT, bu BIGINT UNSIGNED, dc DECIMAL(20,6), fl FLOAT, db DOUBLE, bt BIT(10),
  d DATE, tm TIME(3), dt DATETIME(6), d2 DATETIME(2), ts TIMESTAMP(6) NULL, yr YEAR,
  vc VARCHAR(40) CHARACTER SET utf8mb4, l1 VARCHAR(40) CHARACTER SET latin1,
  bn VARBINARY(20), bl BLOB, en ENUM('a','b','c'), st SET('x','y','z'), js JSON, tx TEXT,
  gen BIGINT AS (id * 2) VIRTUAL);
CREATE TABLE shop.geo (id INT PRIMARY KEY, g GEOMETRY NULL, n INT)";

/// 600 rows of edge values from `seq` (NULL in every column now and then).
const FILL: &str = "INSERT INTO shop.types (id, ti, tu, mi, bu, dc, fl, db, bt, d, tm, dt, d2, ts, yr,
  vc, l1, bn, bl, en, st, js, tx)
SELECT seq,
  IF(seq % 7 = 0, NULL, -128 + seq % 256), seq % 256, -8388608 + seq * 27961,
  18446744073709551615 - seq, seq * 1000.000001 - 300000.5, seq / 3, seq * 1.5e300 / 600 - 7e299,
  seq % 1024, '2024-01-01' + INTERVAL seq DAY, SEC_TO_TIME(seq * 1000 - 300000.125),
  '2024-01-01 00:00:00.123456' + INTERVAL seq SECOND, '2024-01-01 00:00:00.12' + INTERVAL seq SECOND,
  IF(seq % 5 = 0, NULL, '2024-06-01 12:00:00.000001' + INTERVAL seq MINUTE),
  IF(seq % 10 = 0, 0, 1901 + seq % 255),
  CONCAT('ü€😀''\\\\', seq), CONCAT('é£', seq), UNHEX(CONCAT('00FF', HEX(seq))),
  REPEAT(CHAR(0, 255, 39, 92), seq % 5), ELT(1 + seq % 3, 'a', 'b', 'c'),
  IF(seq % 4 = 0, '', ELT(1 + seq % 3, 'x', 'x,y', 'x,y,z')),
  JSON_OBJECT('k', seq, 'a', JSON_ARRAY(1, 'x\"y'), 'n', NULL),
  IF(seq % 3 = 0, NULL, CONCAT(REPEAT('t', seq % 50), '\\t\\n\\r\\\\N\\\\', CHAR(0), seq))
FROM (SELECT CAST(seq AS SIGNED) AS seq FROM shop.seq_0_to_599) s";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_statements_of_every_type_prepared_and_text() {
    let primary = primary();
    let target = target();
    let dir = tempfile::tempdir().unwrap();
    let start = master_pos(&primary).await;
    primary.exec(TYPES).await;
    primary
        .exec(&format!("START TRANSACTION; {FILL}; COMMIT"))
        .await;
    let mut updates = Some(primary.exec(
        "START TRANSACTION;
             UPDATE shop.types SET vc = CONCAT(vc, '-u'), dc = -dc, bu = bu - 1, ts = NULL,
               bl = NULL, js = JSON_ARRAY(id), yr = IF(yr = 0, 2155, yr), en = 'c' WHERE id < 600;
             COMMIT;
             DELETE FROM shop.types WHERE id % 2 = 1;
             INSERT INTO shop.geo SELECT seq, IF(seq % 9 = 0, NULL, POINT(seq, -seq / 7)), seq
               FROM shop.seq_1_to_100;
             UPDATE shop.geo SET g = ST_GeomFromText('LINESTRING(0 0, 1 1)') WHERE id > 90",
    ));
    let sinks = [
        (
            "prepared",
            "mysql",
            json!({"url": target.url(), "database_map": {"shop": "shop_prepared"}}),
        ),
        (
            "text",
            "mysql",
            json!({"url": target.url(), "database_map": {"shop": "shop_text"},
                   "prepared_statements": false}),
        ),
    ];
    let (control, task) = spawn(pipeline(dir.path(), &primary, &start, &sinks));
    // Equal after the inserts (the updates below rewrite every row, so a
    // wrongly inserted value would be repaired by then), and after the rest.
    for stage in ["inserts", "updates"] {
        for db in ["shop_prepared", "shop_text"] {
            let r = wait_equal(
                &verify_opts(&primary, &target.url(), db),
                Duration::from_secs(120),
            )
            .await;
            assert!(r.is_equal(), "{db} after the {stage}:\n{}", printed(&r));
        }
        if let Some(updates) = updates.take() {
            updates.await;
        }
    }
    // The rows really went through the statements under test: none was
    // refused (which would replay them one at a time as text), and 300
    // rows are left, each with the updated values.
    assert_eq!(
        sluice_mysql::apply::worker::localized_total(),
        0,
        "a statement was refused (the rows went one at a time instead)"
    );
    let mut c = target.conn().await;
    for db in ["shop_prepared", "shop_text"] {
        let (n, u): (u64, u64) = c
            .query_first(format!(
                "SELECT COUNT(*), SUM(vc LIKE '%-u') FROM {db}.types"
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((n, u), (300, 300), "{db}");
    }
    control.shutdown.cancel();
    task.await.unwrap().expect("pipeline ends cleanly");
}
