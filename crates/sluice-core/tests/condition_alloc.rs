//! Evaluating a compiled condition allocates nothing: a counting global
//! allocator watches `matches` over log, row and message records (after a
//! warm-up, since a regex sets up its per-thread cache on first use).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use sluice_core::condition::Condition;
use sluice_core::record::{ChangeSource, LogMeta, Meta, Op, RowChange};
use sluice_core::Record;

struct Counting;

thread_local! {
    /// Allocations made by this thread (other threads of the harness do not count).
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn matching_allocates_nothing() {
    let log = Record {
        value: Bytes::from_static(b"2024-01-01 ERROR 500 db timeout"),
        headers: Some(Arc::new(vec![("h".into(), Bytes::from_static(b"12"))])),
        meta: Meta::Log(LogMeta {
            path: "/var/log/a.log".into(),
            host: "h1".into(),
            offset: 7,
            truncated: false,
        }),
        ..Record::default()
    };
    let after = json!({"id": 42, "amount": 150.5, "status": "paid", "o": {"x": 1}});
    let row = Record {
        meta: Meta::Row(Arc::new(RowChange {
            op: Op::Create,
            before: None,
            after: after.as_object().cloned(),
            source: ChangeSource {
                db: "shop".into(),
                table: "orders".into(),
                ..Default::default()
            },
            ts_ms: 0,
            transaction: None,
            primary_key: vec![],
            ddl: None,
        })),
        ..Record::default()
    };
    let plain = Record::from_value("12.5");
    let conditions = [
        r#"message =~ "ERROR|FATAL" and not path =~ "debug" or offset >= 7"#,
        r#"database == "shop" and table in ["orders", "x"] and op != "d""#,
        r#"after.amount > 100 and after.id == "42" and after.o.x == 1 or after.status =~ "^p""#,
        r#"headers.h > 9 and message < "3" and key == null and timestamp >= 0"#,
        r#"message > 12 and after.id =~ "4" or offset =~ "7""#,
    ];
    let start = allocations();
    let compiled: Vec<Condition> = conditions
        .iter()
        .map(|c| Condition::compile(c).unwrap())
        .collect();
    assert!(allocations() > start, "the counter counts");
    let records = [&log, &row, &plain];
    let mut hits = 0usize;
    for c in &compiled {
        for r in records {
            hits += usize::from(c.matches(r));
        }
    }
    let before = allocations();
    for _ in 0..1_000 {
        for c in &compiled {
            for r in records {
                hits += usize::from(c.matches(r));
            }
        }
    }
    let after = allocations();
    assert!(hits > 0);
    assert_eq!(after - before, 0, "matching allocated");
}
