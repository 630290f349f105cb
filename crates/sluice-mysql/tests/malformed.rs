//! Corrupted binlog events never panic: real events captured from a
//! throwaway MariaDB's binlog file (rows of many types, DDL, XA, updates,
//! deletes) are mutated at random — bytes flipped, the length field
//! overstated or understated, bodies truncated — and fed through the
//! event reader and the decoder, which must answer with a value or an
//! error, never a panic (proptest reports a panic as a failure).

mod support;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sluice_mysql::decoder::Decoder;
use sluice_mysql::event::{self, EventReader};
use sluice_mysql::filter::TableFilter;
use sluice_mysql::infoschema::InfoSchema;
use sluice_mysql::Position;
use support::MariaDb;

/// The events of the server's first binlog file, complete.
async fn capture() -> Vec<Vec<u8>> {
    let db = MariaDb::start();
    db.exec(
        "CREATE DATABASE f; CREATE TABLE f.t (id INT PRIMARY KEY, a TINYINT, b MEDIUMINT UNSIGNED, \
         c BIGINT, d DECIMAL(20,6), e FLOAT, g DOUBLE, h BIT(10), i DATE, j TIME(3), k DATETIME(6), \
         l TIMESTAMP(4) NULL, m YEAR, n VARCHAR(30) CHARACTER SET latin1, o TEXT, p VARBINARY(20), \
         q BLOB, r ENUM('x','y'), s SET('u','v','w'), t JSON, u GEOMETRY, v INT AS (id * 2) VIRTUAL); \
         INSERT INTO f.t (id,a,b,c,d,e,g,h,i,j,k,l,m,n,o,p,q,r,s,t,u) VALUES \
           (1,-128,16777215,-9223372036854775808,'-12345678901234.123456',1.5,-2.25,b'1010101010', \
            '2024-02-29','-838:59:59.999','2024-01-02 03:04:05.123456','2024-01-02 03:04:05.1234', \
            0,'café','text',x'00ff',x'0102','y','u,w','{\"k\": [1, 2]}',ST_GeomFromText('POINT(1 2)')), \
           (2,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL); \
         UPDATE f.t SET o = 'changed', a = 7 WHERE id = 1; DELETE FROM f.t WHERE id = 2; \
         ALTER TABLE f.t ADD COLUMN w INT DEFAULT 3; INSERT INTO f.t (id) VALUES (3); \
         XA START 'z'; INSERT INTO f.t (id) VALUES (4); XA END 'z'; XA PREPARE 'z'; XA COMMIT 'z'; \
         FLUSH BINARY LOGS",
    )
    .await;
    let file = db.binlog_dir().join("binlog.000001");
    let bytes = std::fs::read(&file).expect("read the binlog file");
    event::split_file(&bytes)
        .expect("split the binlog")
        .into_iter()
        .map(|(_, e)| e.to_vec())
        .collect()
}

fn decoder() -> Decoder {
    let start = Position {
        file: "binlog.000001".into(),
        pos: 4,
        gtid: String::new(),
    };
    // No server behind it: a table map that loses its FULL metadata
    // asks information_schema and gets a connection error, not a panic.
    Decoder::new(
        "mysql",
        TableFilter::default(),
        InfoSchema::default(),
        start,
    )
    .unwrap()
}

/// Feeds `events` through reader and decoder; errors are fine, panics not.
async fn feed(events: &[Vec<u8>]) -> (usize, usize) {
    let mut reader = EventReader::default();
    let mut d = decoder();
    let (mut ok, mut err) = (0, 0);
    for (i, bytes) in events.iter().enumerate() {
        match reader.read(bytes, &format!("binlog.000001:#{i}")) {
            Ok(ev) => match d.handle(&ev).await {
                Ok(()) => ok += 1,
                Err(_) => err += 1,
            },
            Err(_) => err += 1,
        }
        d.take();
    }
    (ok, err)
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Length(u32),
    Truncate(usize),
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.len() < 13 {
        return;
    }
    match *m {
        Mutation::Flip(at, x) => {
            let n = bytes.len();
            bytes[at % n] ^= x.max(1);
        }
        Mutation::Length(len) => bytes[9..13].copy_from_slice(&len.to_le_bytes()),
        Mutation::Truncate(at) => {
            let n = bytes.len();
            bytes.truncate(at % n);
        }
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        6 => (any::<usize>(), any::<u8>()).prop_map(|(a, x)| Mutation::Flip(a, x)),
        2 => prop_oneof![any::<u32>(), 0u32..64, 19u32..400].prop_map(Mutation::Length),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

#[test]
fn mutated_real_events_give_errors_never_panics() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let events = rt.block_on(capture());
    assert!(events.len() > 20, "captured only {} events", events.len());
    // Unmutated, everything decodes.
    let (ok, err) = rt.block_on(feed(&events));
    assert_eq!((ok, err), (events.len(), 0));
    let n = events.len();
    let mut runner = TestRunner::new(Config {
        cases: 1500,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(0..n, proptest::collection::vec(mutation(), 1..5)),
            |(target, muts)| {
                let mut evs = events.clone();
                for m in &muts {
                    apply(&mut evs[target], m);
                }
                // Everything before the target (its table map, the format
                // description) and a few events after it.
                evs.truncate((target + 4).min(n));
                rt.block_on(feed(&evs));
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn an_overstated_length_is_an_error_naming_the_position() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let events = rt.block_on(capture());
    let mut reader = EventReader::default();
    let mut rows_event = None;
    for (i, e) in events.iter().enumerate() {
        reader.read(e, "x").unwrap();
        if e[4] == 23 || e[4] == 30 {
            rows_event = Some(i);
            break;
        }
    }
    let i = rows_event.expect("a WRITE_ROWS event");
    let mut bad = events[i].clone();
    let claimed = bad.len() as u32 + 1000;
    bad[9..13].copy_from_slice(&claimed.to_le_bytes());
    let err = reader.read(&bad, "binlog.000001:1234").unwrap_err();
    assert_eq!(
        err,
        format!(
            "malformed binlog event type {} at binlog.000001:1234: its header says {claimed} bytes, {} were read",
            bad[4],
            bad.len()
        )
    );
}
