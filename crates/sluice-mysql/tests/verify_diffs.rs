//! `verify` finds a corrupted row, a missing row and an extra row and
//! names each primary key, against a MariaDB target and a PostgreSQL
//! target; equal tables pass.

mod apply_common;
mod support;

use apply_common::*;

const FILL: &str = "CREATE DATABASE shop;
CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(20), d DECIMAL(8,2), at DATETIME(6),
  b VARBINARY(8), f DOUBLE);
INSERT INTO shop.t SELECT seq, CONCAT('v', seq), seq / 4, '2024-01-01 00:00:00' + INTERVAL seq SECOND
  + INTERVAL 500 MICROSECOND, UNHEX(LPAD(HEX(seq), 8, '0')), seq + 0.5 FROM shop.seq_1_to_3000;
CREATE TABLE shop.pairs (a INT, b VARCHAR(10), v INT, PRIMARY KEY (a, b));
INSERT INTO shop.pairs SELECT seq DIV 10, CONCAT('k', seq MOD 10), seq FROM shop.seq_1_to_500";

fn assert_found(r: &sluice_mysql::verify::VerifyReport) {
    let out = printed(r);
    assert!(!r.is_equal(), "{out}");
    let t = r.tables.iter().find(|t| t.source == "shop.t").unwrap();
    assert_eq!(t.diff.missing, vec!["700".to_string()], "{out}");
    assert_eq!(t.diff.extra, vec!["5000".to_string()], "{out}");
    assert_eq!(t.diff.different, vec!["500".to_string()], "{out}");
    let p = r.tables.iter().find(|t| t.source == "shop.pairs").unwrap();
    assert_eq!(p.diff.different, vec!["3,k1".to_string()], "{out}");
    assert!(out.contains("missing in target (1): 700"), "{out}");
    eprintln!("{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_corrupted_missing_and_extra_rows_mysql() {
    let source = primary();
    let target = target();
    source.exec(FILL).await;
    target.exec(FILL).await;
    let mut opts = verify_opts(&source, &target.url(), "shop");
    opts.chunk_rows = 500;
    let r = sluice_mysql::verify::run(opts.clone()).await.unwrap();
    assert!(r.is_equal(), "{}", printed(&r));
    target
        .exec(
            "UPDATE shop.t SET v = 'corrupt' WHERE id = 500; DELETE FROM shop.t WHERE id = 700;
             INSERT INTO shop.t (id, v) VALUES (5000, 'x'); UPDATE shop.pairs SET v = 0 WHERE a = 3 AND b = 'k1'",
        )
        .await;
    assert_found(&sluice_mysql::verify::run(opts).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_corrupted_missing_and_extra_rows_postgres() {
    let source = primary();
    source.exec(FILL).await;
    let url = pg_database("verify").await;
    pg_exec(
        &url,
        "CREATE SCHEMA shop;
         CREATE TABLE shop.t (id integer PRIMARY KEY, v text, d numeric(8,2), at timestamp(6),
           b bytea, f double precision);
         INSERT INTO shop.t SELECT s, 'v' || s, round(s / 4.0, 2), timestamp '2024-01-01' + s * interval '1 second'
           + interval '500 microseconds', decode(lpad(to_hex(s), 8, '0'), 'hex'), s + 0.5 FROM generate_series(1, 3000) s;
         CREATE TABLE shop.pairs (a integer, b text, v integer, PRIMARY KEY (a, b));
         INSERT INTO shop.pairs SELECT s / 10, 'k' || (s % 10), s FROM generate_series(1, 500) s",
    )
    .await;
    let mut opts = verify_opts(&source, &url, "shop");
    opts.chunk_rows = 500;
    let r = sluice_mysql::verify::run(opts.clone()).await.unwrap();
    assert!(r.is_equal(), "{}", printed(&r));
    pg_exec(
        &url,
        "UPDATE shop.t SET d = 1.01 WHERE id = 500; DELETE FROM shop.t WHERE id = 700;
         INSERT INTO shop.t (id, v) VALUES (5000, 'x'); UPDATE shop.pairs SET v = 0 WHERE a = 3 AND b = 'k1'",
    )
    .await;
    assert_found(&sluice_mysql::verify::run(opts).await.unwrap());
}
