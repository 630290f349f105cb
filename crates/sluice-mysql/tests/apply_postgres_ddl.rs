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
             MODIFY qty BIGINT NOT NULL, ADD INDEX i_qty (qty)",
        )
        .await;
    workload(&primary, 23, 60, 20, Duration::ZERO).await;
    primary
        .exec(
            "ALTER TABLE `shop`.`ext` /* renames */ RENAME COLUMN `a` TO `a2`, \
             CHANGE b b2 VARCHAR(40) NULL DEFAULT 'z', DROP COLUMN c, \
             ADD d DECIMAL(12,3) DEFAULT 1.5 AFTER id, ADD n2 INT NOT NULL",
        )
        .await;
    primary
        .exec(
            "INSERT INTO shop.ext (id, a2, b2, n2) VALUES (3, 3, 'three', 3); \
             INSERT INTO shop.ext (id, a2, n2) VALUES (4, 4, 4); \
             UPDATE shop.ext SET a2 = a2 + 10 WHERE id = 1",
        )
        .await;
    workload(&primary, 24, 80, 20, Duration::ZERO).await;
    primary
        .exec("ALTER TABLE shop.ext MODIFY a2 BIGINT UNSIGNED NOT NULL DEFAULT 0, ENGINE=InnoDB")
        .await;
    primary.exec("RENAME TABLE shop.ext TO shop.ext2").await;
    primary
        .exec("INSERT INTO shop.ext2 (id, a2, b2, d, n2) VALUES (5, 5, 'five', 2.25, 5)")
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
            "id integer not null",
            "n2 integer not null"
        ]
    );
    control.shutdown.cancel();
    task.await.unwrap().expect("pipeline ends cleanly");
}

/// An ALTER the translation refuses stops the sink with the statement, its
/// position and what to do; doing that (the change by hand, then the
/// printed statements) lets a restarted pipeline go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_alter_stops_the_sink_and_the_printed_fix_works() {
    let primary = primary();
    let url = pg_database("apply_ddl_refused").await;
    let dir = tempfile::tempdir().unwrap();
    let start = master_pos(&primary).await;
    primary
        .exec("CREATE DATABASE shop; CREATE TABLE shop.g (id INT PRIMARY KEY, v INT)")
        .await;
    primary
        .exec("INSERT INTO shop.g VALUES (1, 1), (2, 2)")
        .await;
    let sinks = vec![(
        "pg_refuse",
        "postgres",
        json!({"url": url, "create_tables": true, "source_url": primary.url(),
               "database_map": {"shop": "shop_pg"}}),
    )];
    let (_control, task) = spawn(pipeline(dir.path(), &primary, &start, &sinks));
    let mut opts = verify_opts(&primary, &url, "shop_pg");
    opts.tables = vec!["shop.g".into()];
    // The target table first (create_tables reads the source's schema of
    // the moment: after the ALTER, it would already have the column).
    assert!(wait_equal(&opts, Duration::from_secs(120)).await.is_equal());
    let stmt = "ALTER TABLE shop.g ADD COLUMN c INT DEFAULT (1 + 1)";
    primary.exec(stmt).await;
    primary
        .exec("INSERT INTO shop.g (id, v) VALUES (3, 3)")
        .await;
    let err = tokio::time::timeout(Duration::from_secs(120), task)
        .await
        .expect("the pipeline stops")
        .unwrap()
        .expect_err("the pipeline fails");
    let e = format!("{err:#}");
    eprintln!("{e}");
    assert!(
        e.contains("PostgreSQL target cannot replay the DDL of shop.g at ")
            && e.contains("DEFAULT ( is not translated")
            && e.contains(stmt)
            && e.contains("make the change on the target by hand"),
        "{e}"
    );
    let mark = e
        .split_once("mark the statement applied with `")
        .and_then(|(_, rest)| rest.split_once("` and restart"))
        .map(|(m, _)| m.to_string())
        .unwrap_or_else(|| panic!("no statements in {e}"));
    pg_exec(&url, "ALTER TABLE shop_pg.g ADD COLUMN c integer DEFAULT 2").await;
    pg_exec(&url, &mark).await;
    let (control, task) = spawn(pipeline(dir.path(), &primary, &start, &sinks));
    primary.exec("INSERT INTO shop.g VALUES (4, 4, 40)").await;
    let r = wait_equal(&opts, Duration::from_secs(120)).await;
    if !r.is_equal() && task.is_finished() {
        panic!("the pipeline stopped: {:?}", task.await);
    }
    assert!(r.is_equal(), "{}", printed(&r));
    control.shutdown.cancel();
    task.await.unwrap().expect("pipeline ends cleanly");
}
