//! Unit tests of the MySQL → PostgreSQL DDL translation (`pg_ddl`).

use std::collections::BTreeMap;

use super::*;

fn map() -> BTreeMap<String, String> {
    [("shop".to_string(), "replica".to_string())].into()
}

fn tr(stmt: &str) -> Vec<String> {
    match translate(stmt, "shop", &map(), &|_, _| true) {
        Ok(t) => t.sql,
        Err(e) => panic!("{stmt}: {e}"),
    }
}

fn err(stmt: &str) -> String {
    match translate(stmt, "shop", &map(), &|_, _| true) {
        Ok(t) => panic!("{stmt}: translated to {t:?}"),
        Err(e) => e,
    }
}

const T: &str = "\"replica\".\"items\"";

#[test]
fn add_column_forms() {
    let want = vec![format!(
        "ALTER TABLE {T} ADD COLUMN \"note\" text DEFAULT 'x'"
    )];
    for s in [
        "ALTER TABLE items ADD COLUMN note VARCHAR(20) DEFAULT 'x'",
        "alter table `shop`.`items` add `note` varchar(20) default 'x'",
        "ALTER TABLE shop.items ADD note VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL DEFAULT 'x' COMMENT 'a note' AFTER qty;",
        "/* c */ ALTER ONLINE TABLE items -- why\n ADD COLUMN note varchar(20) DEFAULT _utf8mb4'x' FIRST",
        "ALTER TABLE items ADD COLUMN note TINYTEXT DEFAULT \"x\" # end",
    ] {
        assert_eq!(tr(s), want, "{s}");
    }
    assert_eq!(
        tr("ALTER TABLE items ADD COLUMN IF NOT EXISTS n INT UNSIGNED NOT NULL DEFAULT 5"),
        vec![format!(
            "ALTER TABLE {T} ADD COLUMN IF NOT EXISTS \"n\" bigint DEFAULT 5 NOT NULL"
        )]
    );
    assert_eq!(
        tr("ALTER TABLE items ADD (a DECIMAL(12,3) DEFAULT -1.5, b DATETIME(6) NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))"),
        vec![
            format!("ALTER TABLE {T} ADD COLUMN \"a\" numeric(12,3) DEFAULT -1.5"),
            format!("ALTER TABLE {T} ADD COLUMN \"b\" timestamp(6) DEFAULT CURRENT_TIMESTAMP"),
        ]
    );
}

#[test]
fn types_follow_the_mapping() {
    for (my, pg) in [
        ("TINYINT(1)", "smallint"),
        ("BOOLEAN", "smallint"),
        ("SMALLINT UNSIGNED", "integer"),
        ("MEDIUMINT", "integer"),
        ("INTEGER(11) SIGNED", "integer"),
        ("INT(10) UNSIGNED ZEROFILL", "bigint"),
        ("BIGINT UNSIGNED", "numeric(20)"),
        ("BIGINT", "bigint"),
        ("DECIMAL", "numeric(10,0)"),
        ("NUMERIC(8)", "numeric(8,0)"),
        ("FLOAT", "real"),
        ("FLOAT(30)", "double precision"),
        ("DOUBLE PRECISION", "double precision"),
        ("REAL", "double precision"),
        ("BIT(8)", "bigint"),
        ("YEAR", "smallint"),
        ("DATE", "date"),
        ("DATETIME", "timestamp(0)"),
        ("DATETIME(3)", "timestamp(3)"),
        ("TIMESTAMP(6)", "timestamptz(6)"),
        ("TIME(2)", "interval"),
        ("JSON", "json"),
        ("VARBINARY(16)", "bytea"),
        ("LONGBLOB", "bytea"),
        ("CHAR(3)", "text"),
        ("NATIONAL VARCHAR(9)", "text"),
        ("ENUM('a','b')", "text"),
        ("SET('x','y')", "text"),
        ("LONGTEXT", "text"),
        ("POINT", "bytea"),
        ("SERIAL", "numeric(20)"),
    ] {
        let sql = tr(&format!("ALTER TABLE items MODIFY c {my} NULL"));
        assert_eq!(
            sql[0],
            format!("ALTER TABLE {T} ALTER COLUMN \"c\" TYPE {pg} USING \"c\"::{pg}"),
            "{my}"
        );
    }
    assert!(err("ALTER TABLE items ADD c MONEY").contains("not in the type mapping"));
}

#[test]
fn not_null_without_default_fills_existing_rows_like_mysql() {
    assert_eq!(
        tr("ALTER TABLE items ADD COLUMN q INT NOT NULL"),
        vec![
            format!("ALTER TABLE {T} ADD COLUMN \"q\" integer DEFAULT 0 NOT NULL"),
            format!("ALTER TABLE {T} ALTER COLUMN \"q\" DROP DEFAULT"),
        ]
    );
    assert_eq!(
        tr("ALTER TABLE items ADD s ENUM('new','old') NOT NULL, ADD b BLOB NOT NULL")[..3],
        [
            format!("ALTER TABLE {T} ADD COLUMN \"s\" text DEFAULT 'new' NOT NULL"),
            format!("ALTER TABLE {T} ALTER COLUMN \"s\" DROP DEFAULT"),
            format!("ALTER TABLE {T} ADD COLUMN \"b\" bytea DEFAULT '\\x' NOT NULL"),
        ]
    );
    // Zero dates do not exist in PostgreSQL: no default, the target
    // refuses the ALTER if the table has rows.
    assert_eq!(
        tr("ALTER TABLE items ADD d DATE NOT NULL"),
        vec![format!("ALTER TABLE {T} ADD COLUMN \"d\" date NOT NULL")]
    );
}

#[test]
fn defaults() {
    for (my, pg) in [
        ("INT DEFAULT NULL", "NULL"),
        ("INT DEFAULT '7'", "'7'"),
        ("INT DEFAULT +7", "+7"),
        ("TINYINT(1) DEFAULT TRUE", "1"),
        ("BIT(4) DEFAULT b'1010'", "10"),
        ("VARBINARY(4) DEFAULT x'0aff'", "'\\x0aff'"),
        ("BLOB DEFAULT 'ab'", "'\\x6162'"),
        ("INT DEFAULT 0x10", "16"),
        ("VARCHAR(5) DEFAULT 'it''s'", "'it''s'"),
        ("VARCHAR(5) DEFAULT 'a\\\\b'", "'a\\b'"),
        ("DATE DEFAULT CURDATE()", "CURRENT_DATE"),
        ("TIMESTAMP DEFAULT NOW()", "CURRENT_TIMESTAMP"),
    ] {
        let sql = tr(&format!("ALTER TABLE items ADD c {my}"));
        assert!(
            sql[0].ends_with(&format!("DEFAULT {pg}")),
            "{my}: {}",
            sql[0]
        );
    }
    assert!(err("ALTER TABLE items ADD c INT DEFAULT (1 + 1)").contains("not translated"));
    assert!(err("ALTER TABLE items ADD c CHAR(36) DEFAULT uuid()").contains("not translated"));
}

#[test]
fn drop_rename_change_modify() {
    assert_eq!(
        tr("ALTER TABLE items DROP COLUMN note, DROP qty, DROP COLUMN IF EXISTS x"),
        vec![
            format!("ALTER TABLE {T} DROP COLUMN \"note\""),
            format!("ALTER TABLE {T} DROP COLUMN \"qty\""),
            format!("ALTER TABLE {T} DROP COLUMN IF EXISTS \"x\""),
        ]
    );
    assert_eq!(
        tr("ALTER TABLE items RENAME COLUMN `a b` TO `c\"d`"),
        vec![format!(
            "ALTER TABLE {T} RENAME COLUMN \"a b\" TO \"c\"\"d\""
        )]
    );
    let sql = tr("ALTER TABLE items CHANGE COLUMN qty quantity BIGINT NOT NULL DEFAULT 0 AFTER id");
    assert_eq!(
        sql,
        vec![
            format!("ALTER TABLE {T} RENAME COLUMN \"qty\" TO \"quantity\""),
            format!(
                "ALTER TABLE {T} ALTER COLUMN \"quantity\" TYPE bigint USING \"quantity\"::bigint"
            ),
            format!("ALTER TABLE {T} ALTER COLUMN \"quantity\" SET NOT NULL"),
            format!("ALTER TABLE {T} ALTER COLUMN \"quantity\" SET DEFAULT 0"),
        ]
    );
    // Same name: no rename; no NOT NULL: dropped unless a key column.
    let sql = tr("ALTER TABLE items CHANGE price price DECIMAL(12,2)");
    assert_eq!(sql.len(), 3);
    assert!(
        sql[1].starts_with("DO $sluice$") && sql[1].contains("DROP NOT NULL"),
        "{}",
        sql[1]
    );
    assert_eq!(
        sql[2],
        format!("ALTER TABLE {T} ALTER COLUMN \"price\" DROP DEFAULT")
    );
    let sql = tr("ALTER TABLE items MODIFY COLUMN id BIGINT NOT NULL AUTO_INCREMENT");
    assert_eq!(sql.len(), 3);
    let t = translate(
        "ALTER TABLE items MODIFY id BIGINT NOT NULL AUTO_INCREMENT",
        "shop",
        &map(),
        &|_, _| true,
    )
    .unwrap();
    assert_eq!(t.ignored, vec!["AUTO_INCREMENT of id".to_string()]);
    assert_eq!(
        tr("ALTER TABLE items ALTER COLUMN qty SET DEFAULT 3, ALTER qty DROP DEFAULT"),
        vec![
            format!("ALTER TABLE {T} ALTER COLUMN \"qty\" SET DEFAULT 3"),
            format!("ALTER TABLE {T} ALTER COLUMN \"qty\" DROP DEFAULT"),
        ]
    );
}

#[test]
fn table_renames_through_the_database_map() {
    assert_eq!(
        tr("RENAME TABLE extra TO extra2"),
        vec!["ALTER TABLE \"replica\".\"extra\" RENAME TO \"extra2\"".to_string()]
    );
    assert_eq!(
        tr("RENAME TABLE `shop`.a TO shop.tmp, shop.b TO shop.a, tmp TO b"),
        vec![
            "ALTER TABLE \"replica\".\"a\" RENAME TO \"tmp\"".to_string(),
            "ALTER TABLE \"replica\".\"b\" RENAME TO \"a\"".to_string(),
            "ALTER TABLE \"replica\".\"tmp\" RENAME TO \"b\"".to_string(),
        ]
    );
    assert_eq!(
        tr("RENAME TABLE shop.t TO archive.t"),
        vec!["CREATE SCHEMA IF NOT EXISTS \"archive\"; ALTER TABLE \"replica\".\"t\" SET SCHEMA \"archive\"".to_string()]
    );
    // RENAME TO, then a clause on the renamed table.
    assert_eq!(
        tr("ALTER TABLE items RENAME TO goods, ADD z INT"),
        vec![
            format!("ALTER TABLE {T} RENAME TO \"goods\""),
            "ALTER TABLE \"replica\".\"goods\" ADD COLUMN \"z\" integer".to_string(),
        ]
    );
    assert_eq!(
        tr("ALTER TABLE items RENAME AS shop.goods"),
        vec![format!("ALTER TABLE {T} RENAME TO \"goods\"")]
    );
}

#[test]
fn drop_tables() {
    assert_eq!(
        tr("DROP TABLE IF EXISTS `a`, shop.b, other.c /* generated by server */ CASCADE"),
        vec![
            "DROP TABLE IF EXISTS \"replica\".\"a\"".to_string(),
            "DROP TABLE IF EXISTS \"replica\".\"b\"".to_string(),
            "DROP TABLE IF EXISTS \"other\".\"c\"".to_string(),
        ]
    );
}

#[test]
fn renames_and_drops_skip_tables_not_replicated() {
    let keep = |db: &str, t: &str| db == "shop" && t != "skip";
    let t = translate(
        "RENAME TABLE shop.a TO shop.b, other.x TO other.y, skip TO skip2",
        "shop",
        &map(),
        &keep,
    )
    .unwrap();
    assert_eq!(
        t.sql,
        vec!["ALTER TABLE \"replica\".\"a\" RENAME TO \"b\"".to_string()]
    );
    let t = translate("DROP TABLE a, other.x, skip", "shop", &map(), &keep).unwrap();
    assert_eq!(
        t.sql,
        vec!["DROP TABLE IF EXISTS \"replica\".\"a\"".to_string()]
    );
}

#[test]
fn indexes_and_options_are_ignored_and_listed() {
    let t = translate(
        "ALTER TABLE items ADD INDEX idx_q (qty), ADD UNIQUE KEY u (name(10)), DROP INDEX old, \
         ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES b (id) ON DELETE CASCADE, DROP FOREIGN KEY fk, \
         RENAME INDEX a TO b, ALGORITHM=INPLACE, LOCK=NONE, ENGINE=InnoDB ROW_FORMAT=DYNAMIC, \
         CONVERT TO CHARACTER SET utf8mb4, DEFAULT CHARSET=latin1, FORCE, ADD FULLTEXT (name), \
         ADD CHECK (qty > 0), ALTER INDEX idx_q INVISIBLE, COMMENT = 'x' /*!50100 , ADD d INT */",
        "shop",
        &map(),
        &|_, _| true,
    )
    .unwrap();
    assert_eq!(
        t.sql,
        vec![format!("ALTER TABLE {T} ADD COLUMN \"d\" integer")]
    );
    assert_eq!(t.ignored.len(), 16, "{:?}", t.ignored);
    assert_eq!(
        t.ignored[0],
        "INDEX idx_q ( qty )".replace("INDEX", "ADD INDEX")
    );
    // Only options: nothing to run.
    assert!(tr("ALTER TABLE items ENGINE = InnoDB").is_empty());
}

#[test]
fn primary_keys() {
    let sql =
        tr("ALTER TABLE items DROP PRIMARY KEY, ADD PRIMARY KEY (id, `name`(10) DESC) USING BTREE");
    assert_eq!(sql.len(), 2);
    assert!(
        sql[0].contains("contype = 'p'") && sql[0].contains("DROP CONSTRAINT"),
        "{}",
        sql[0]
    );
    assert!(
        sql[1].contains(&format!(
            "ALTER TABLE {T} ADD PRIMARY KEY (\"id\", \"name\")"
        )),
        "{}",
        sql[1]
    );
    assert!(
        sql[1].contains("'\"replica\".\"items\"'::regclass"),
        "{}",
        sql[1]
    );
    let sql = tr("ALTER TABLE items ADD CONSTRAINT pk PRIMARY KEY (id)");
    assert!(sql[0].contains("ADD PRIMARY KEY (\"id\")"));
    let sql = tr("ALTER TABLE items ADD COLUMN k INT NOT NULL PRIMARY KEY");
    assert_eq!(sql.len(), 3);
    assert!(sql[2].contains("ADD PRIMARY KEY (\"k\")"));
}

#[test]
fn refused_with_the_clause_named() {
    for (s, want) in [
        (
            "ALTER TABLE items ADD PARTITION (PARTITION p3 VALUES LESS THAN (2000))",
            "PARTITION",
        ),
        ("ALTER TABLE items DROP PARTITION p0", "PARTITION"),
        (
            "ALTER TABLE items ADD COLUMN id2 INT AUTO_INCREMENT PRIMARY KEY",
            "AUTO_INCREMENT",
        ),
        (
            "ALTER TABLE items ADD c INT AS (qty * 2) VIRTUAL",
            "generated",
        ),
        ("ALTER TABLE items DISCARD TABLESPACE", "DISCARD"),
        ("ALTER TABLE items MODIFY IF EXISTS c INT", "IF EXISTS"),
        ("ALTER TABLE items ADD c INT WEIRD", "WEIRD"),
        ("ALTER TABLE items ADD SYSTEM VERSIONING", "SYSTEM"),
        ("ALTER TABLE items WITH SYSTEM VERSIONING", "SYSTEM"),
        ("ALTER TABLE items ALTER COLUMN c SET STORAGE x", "STORAGE"),
        ("ALTER DATABASE shop CHARACTER SET utf8", "TABLE"),
        ("RENAME TABLE a", "TO"),
        ("CREATE TABLE t (a int)", "not an ALTER"),
        ("DROP TABLE a b", "unexpected"),
        ("ALTER TABLE items ADD c $sluice$", "$sluice$"),
    ] {
        let e = err(s);
        assert!(e.contains(want), "{s}: {e}");
    }
}
