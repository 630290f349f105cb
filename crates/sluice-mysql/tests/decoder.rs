//! The decoder on hand-made events: unknown event types stop with type and
//! position, ignored types pass, GTID groups commit at XID and advance the
//! position, rows for an unmapped table are an error.
use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::events::FormatDescriptionEvent;

use mysql_common::binlog::events::Event;
use sluice_mysql::decoder::Decoder;
use sluice_mysql::filter::TableFilter;
use sluice_mysql::infoschema::InfoSchema;
use sluice_mysql::{mariadb, Position};

fn event(ty: u8, log_pos: u32, data: &[u8]) -> Event {
    let mut raw = Vec::new();
    raw.extend(1_700_000_000u32.to_le_bytes());
    raw.push(ty);
    raw.extend(1u32.to_le_bytes());
    raw.extend((19 + data.len() as u32).to_le_bytes());
    raw.extend(log_pos.to_le_bytes());
    raw.extend(0u16.to_le_bytes());
    raw.extend(data);
    let fde = FormatDescriptionEvent::new(BinlogVersion::Version4);
    Event::read(&fde, &raw[..]).unwrap()
}

fn decoder() -> Decoder {
    let start = Position {
        file: "bin.000001".into(),
        pos: 4,
        gtid: String::new(),
    };
    Decoder::new(
        "mysql",
        TableFilter::default(),
        InfoSchema::default(),
        start,
    )
    .unwrap()
}

#[tokio::test]
async fn unknown_event_types_stop_with_type_and_position() {
    let mut d = decoder();
    let err = d.handle(&event(200, 500, b"abc")).await.unwrap_err();
    assert!(!err.retryable);
    assert_eq!(
        err.message,
        "unknown binlog event type 200 at bin.000001:478: stopping rather than skipping it"
    );
    // Ignored types pass.
    d.handle(&event(mariadb::ANNOTATE_ROWS, 600, b"INSERT ..."))
        .await
        .unwrap();
}

#[tokio::test]
async fn gtid_groups_commit_at_xid_and_advance_the_position() {
    let mut d = decoder();
    let mut gtid = 42u64.to_le_bytes().to_vec();
    gtid.extend(0u32.to_le_bytes());
    gtid.push(0);
    d.handle(&event(mariadb::GTID, 100, &gtid)).await.unwrap();
    assert!(d.in_transaction());
    d.handle(&event(16, 150, &7u64.to_le_bytes()))
        .await
        .unwrap();
    assert!(!d.in_transaction());
    assert_eq!(d.committed().to_string(), "bin.000001:150 (gtid 0-1-42)");
    // A rows event for a table never mapped is an error naming it.
    let err = d
        .handle(&event(23, 300, &[9, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0]))
        .await
        .unwrap_err();
    assert!(
        err.message.contains("unknown table id 9 at bin.000001:270"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn a_group_without_a_commit_event_ends_where_the_next_begins() {
    let mut d = decoder();
    let gtid = |seq: u64| {
        let mut g = seq.to_le_bytes().to_vec();
        g.extend(0u32.to_le_bytes());
        g.push(0);
        g
    };
    d.handle(&event(mariadb::GTID, 100, &gtid(7)))
        .await
        .unwrap();
    d.handle(&event(mariadb::GTID, 200, &gtid(8)))
        .await
        .unwrap();
    assert_eq!(d.committed().to_string(), "bin.000001:168 (gtid 0-1-7)");
    assert!(d.in_transaction());
}
