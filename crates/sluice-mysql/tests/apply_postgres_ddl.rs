//! ALTER / RENAME replay into PostgreSQL (127.0.0.1:5432): a MariaDB
//! primary's binlog with ALTER TABLE (ADD with NOT NULL and DEFAULT,
//! RENAME COLUMN, CHANGE, DROP, MODIFY, ignored index and option
//! clauses), RENAME TABLE and ALTER … RENAME TO in the middle of a random
//! workload, through a `database_map`; then `verify` passes, the ledger
//! holds every transaction once, and every target table has the columns
//! (names, types, NOT NULL) that `create_tables` would make from the
//! source's final schema.

mod apply_common;
mod support;

use std::time::Duration;

use apply_common::*;
use serde_json::json;
use sluice_mysql::apply::target::{create_table, Conn};
use sluice_mysql::apply::Dialect;

/// (name, type, not null) of a PostgreSQL table's columns, by name.
async fn columns(c: &mut Conn, schema: &str, table: &str) -> Vec<String> {
    let sql = format!(
        "SELECT a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || \
         CASE WHEN a.attnotnull THEN ' not null' ELSE '' END FROM pg_attribute a \
         WHERE a.attrelid = '\"{schema}\".\"{table}\"'::regclass AND a.attnum > 0 \
         AND NOT a.attisdropped ORDER BY a.attname"
    );
    c.rows(&sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .map(|r| r.into_iter().next().flatten().unwrap_or_default())
        .collect()
}

const EXT: &str = "CREATE TABLE shop.ext (id INT PRIMARY KEY, a INT, b VARCHAR(10), c DOUBLE)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_in_the_middle_of_a_workload_then_verify() {
    let primary = primary();
    let url = pg_database("apply_ddl").await;
    let dir = tempfile::tempdir().unwrap();
    let start = master_pos(&primary).await;
    primary.exec(SCHEMA).await;
    primary.exec(EXT).await;
    primary
        .exec("INSERT INTO shop.ext VALUES (1, 1, 'one', 1.5), (2, 2, 'two', NULL)")
        .await;
    let sinks = vec![(
        "pg_ddl",
        "postgres",
        json!({"url": url, "create_tables": true, "source_url": primary.url(),
               "database_map": {"shop": "shop_pg"}}),
    )];
    let (control, task) = spawn(pipeline(dir.path(), &primary, &start, &sinks));
    let opts = verify_opts(&primary, &url, "shop_pg");
    let check = |what: &'static str, r: sluice_mysql::verify::VerifyReport| {
        assert!(r.is_equal(), "{what}:\n{}", printed(&r));
    };
    // The target tables exist (created from the first schema) first.
    workload(&primary, 21, 0, 40, Duration::ZERO).await;
    let r = wait_equal(&opts, Duration::from_secs(120)).await;
    if !r.is_equal() && task.is_finished() {
        panic!("the pipeline stopped: {:?}", task.await);
    }
    check("before the DDL", r);

    // Now DDL between transactions, without waiting for the sink.
    workload(&primary, 22, 40, 20, Duration::ZERO).await;
    primary
        .exec(
            "ALTER TABLE shop.items ADD COLUMN note VARCHAR(20) NOT NULL DEFAULT 'x', \
             ADD n2 INT NOT NULL, MODIFY qty BIGINT NOT NULL, ADD INDEX i_qty (qty)",
        )
        .await;
    workload(&primary, 23, 60, 20, Duration::ZERO).await;
    primary
        .exec(
            "ALTER TABLE `shop`.`ext` /* renames */ RENAME COLUMN `a` TO `a2`, \
             CHANGE b b2 VARCHAR(40) NULL DEFAULT 'z', DROP COLUMN c, \
             ADD d DECIMAL(12,3) DEFAULT 1.5 AFTER id",
        )
        .await;
    primary
        .exec(
            "INSERT INTO shop.ext (id, a2, b2) VALUES (3, 3, 'three'); \
             INSERT INTO shop.ext (id, a2) VALUES (4, 4); \
             UPDATE shop.ext SET a2 = a2 + 10 WHERE id = 1",
        )
        .await;
    workload(&primary, 24, 80, 20, Duration::ZERO).await;
    primary
        .exec("ALTER TABLE shop.ext MODIFY a2 BIGINT UNSIGNED NOT NULL DEFAULT 0, ENGINE=InnoDB")
        .await;
    primary.exec("RENAME TABLE shop.ext TO shop.ext2").await;
    primary
        .exec("INSERT INTO shop.ext2 (id, a2, b2, d) VALUES (5, 5, 'five', 2.25)")
        .await;
    primary
        .exec("ALTER TABLE shop.ext2 RENAME TO shop.ext3")
        .await;
    primary
        .exec(
            "UPDATE shop.ext3 SET b2 = 'changed' WHERE id = 2; DELETE FROM shop.ext3 WHERE id = 4",
        )
        .await;
    workload(&primary, 25, 100, 40, Duration::ZERO).await;

    let r = wait_equal(&opts, Duration::from_secs(120)).await;
    if !r.is_equal() && task.is_finished() {
        panic!("the pipeline stopped: {:?}", task.await);
    }
    check("after the DDL", r);
    let mut c = Conn::connect(Dialect::Postgres, &url).await.unwrap();
    let n = c
        .rows("SELECT COUNT(*) || '/' || COUNT(DISTINCT seq) FROM shop_pg.ledger")
        .await
        .unwrap();
    assert_eq!(n[0][0].as_deref(), Some("140/140"));
    // ext2 / ext are gone, ext3 holds the rows.
    let gone = c
        .rows("SELECT table_name FROM information_schema.tables WHERE table_schema = 'shop_pg' ORDER BY 1")
        .await
        .unwrap();
    let names: Vec<String> = gone.into_iter().filter_map(|r| r[0].clone()).collect();
    assert_eq!(names, ["ext3", "items", "ledger", "nopk", "pairs"]);
    // Columns as create_tables makes them from the source's final schema.
    for t in ["items", "ext3", "pairs", "nopk", "ledger"] {
        create_table(&mut c, &primary.url(), ("shop", "expected_pg", t))
            .await
            .unwrap_or_else(|e| panic!("create expected {t}: {e}"));
        let want = columns(&mut c, "expected_pg", t).await;
        let got = columns(&mut c, "shop_pg", t).await;
        assert_eq!(got, want, "columns of {t}");
    }
    let ext = columns(&mut c, "shop_pg", "ext3").await;
    assert_eq!(
        ext,
        [
            "a2 numeric(20,0) not null",
            "b2 text",
            "d numeric(12,3)",
            "id integer not null"
        ]
    );
    control.shutdown.cancel();
    task.await.unwrap().expect("pipeline ends cleanly");
}
