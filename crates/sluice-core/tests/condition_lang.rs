//! The `where` language: fields, operators, precedence, missing fields,
//! regexes, `in`, compile errors with their offsets, and a property test
//! that neither compiling nor matching ever panics.

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::json;
use sluice_core::condition::Condition;
use sluice_core::record::{ChangeSource, LogMeta, Meta, Op, RowChange};
use sluice_core::Record;

fn log(line: &str) -> Record {
    Record {
        key: Some(Bytes::from_static(b"k1")),
        value: Bytes::copy_from_slice(line.as_bytes()),
        headers: Some(Arc::new(vec![
            ("priority".into(), Bytes::from_static(b"high")),
            ("content-type".into(), Bytes::from_static(b"text/plain")),
            ("count".into(), Bytes::from_static(b"12")),
        ])),
        timestamp_ms: 1_700_000_000_000,
        meta: Meta::Log(LogMeta {
            path: "/var/log/app/api.log".into(),
            host: "web-1".into(),
            offset: 4096,
            truncated: false,
        }),
    }
}

fn row(op: Op) -> Record {
    let after = json!({"id": 42, "amount": 150.5, "status": "paid", "active": true,
                       "note": null, "tags": ["a"], "addr": {"city": "Oslo"}, "code": "007"});
    let before = json!({"id": 42, "amount": 99, "status": "new"});
    Record {
        meta: Meta::Row(Arc::new(RowChange {
            op,
            before: Some(before.as_object().unwrap().clone()),
            after: Some(after.as_object().unwrap().clone()),
            source: ChangeSource {
                db: "shop".into(),
                table: "orders".into(),
                ..Default::default()
            },
            ts_ms: 0,
            transaction: None,
            primary_key: vec!["id".into()],
            ddl: None,
        })),
        ..Record::default()
    }
}

fn check(cond: &str, record: &Record, expected: bool) {
    let c = Condition::compile(cond).unwrap_or_else(|e| panic!("{cond}: {e}"));
    assert_eq!(c.matches(record), expected, "{cond}");
    assert_eq!(c.source(), cond);
}

#[test]
fn log_fields() {
    let r = log("2024-01-01 ERROR db timeout");
    for (cond, want) in [
        (r#"message =~ "ERROR""#, true),
        (r#"message =~ "^ERROR""#, false),
        (r#"message =~ '\d{4}-\d\d'"#, true),
        (r#"message == "2024-01-01 ERROR db timeout""#, true),
        (
            r#"path == "/var/log/app/api.log" and host == "web-1""#,
            true,
        ),
        ("offset == 4096 and offset >= 4096 and offset < 5000", true),
        ("offset > 4096", false),
        (r#"key == "k1""#, true),
        ("timestamp > 1600000000000", true),
        (r#"headers.priority == "high""#, true),
        (r#"headers.content-type =~ "^text/""#, true),
        ("headers.count > 9", true),
        (r#"headers.count == "12""#, true),
        ("headers.missing == null", true),
        (r#"headers.missing != "x""#, true),
        ("database == null and table == null and op == null", true),
        ("after.id == null", true),
        ("offset =~ \"^40\"", true),
    ] {
        check(cond, &r, want);
    }
}

#[test]
fn row_fields() {
    let r = row(Op::Update);
    for (cond, want) in [
        (
            r#"database == "shop" and table == "orders" and op == "u""#,
            true,
        ),
        (r#"op in ["c", "u"]"#, true),
        (r#"op in ["d"]"#, false),
        ("after.id == 42 and before.id == 42", true),
        (r#"after.id == "42""#, true),
        ("after.amount > 150 and after.amount <= 150.5", true),
        ("before.amount < after.amount", true),
        (r#"after.status != before.status"#, true),
        ("after.active == true and after.active != false", true),
        (r#"after.active == "true""#, true),
        ("after.note == null and after.nothing == null", true),
        ("after.tags == null", false),
        (r#"after.addr.city == "Oslo""#, true),
        (r#"after.code == 7"#, true),
        (r#"after.code == "007""#, true),
        (r#"after.code == "7""#, false),
        ("after.amount in [1, 150.5]", true),
        (r#"after.status =~ "^pa""#, true),
        ("after.note =~ \".*\"", false),
        ("path == null and message == \"\"", true),
        ("after.status > \"new\"", true),
        ("after.note < 1 or after.note > 1", false),
    ] {
        check(cond, &r, want);
    }
    check(r#"op == "d""#, &row(Op::Delete), true);
    check(r#"op == "r""#, &row(Op::Read), true);
}

#[test]
fn precedence_and_grouping() {
    let r = log("x");
    // and binds tighter than or; not tighter than and.
    check(r#"key == "k1" or key == "no" and key == "no""#, &r, true);
    check(r#"(key == "k1" or key == "no") and key == "no""#, &r, false);
    check(r#"not key == "no" and key == "k1""#, &r, true);
    check(r#"not (key == "k1" and key == "no")"#, &r, true);
    check(r#"not not key == "k1""#, &r, true);
    check(
        r#"!(key == "no") && (host == "x" || host == "web-1")"#,
        &r,
        true,
    );
    check(r#"((((key == "k1"))))"#, &r, true);
}

#[test]
fn literals() {
    let r = Record::from_value("it's \"quoted\" \\ done");
    check(r#"message =~ 'it\'s'"#, &r, true);
    check(r#"message =~ "\"quoted\"""#, &r, true);
    check(r#"message == "it's \"quoted\" \\ done""#, &r, true);
    check("message != null", &r, true);
    check("key == null", &r, true);
    check("timestamp > -1 and timestamp > 1e9", &r, true);
    check(r#"message in ["a", 1, true, null]"#, &r, false);
    check("message in []", &r, false);
}

#[test]
fn the_quickstart_condition() {
    // pipelines/quickstart.yaml: `where: 'message =~ "\" 302 "'`
    let c = Condition::compile(r#"message =~ "\" 302 ""#).unwrap();
    assert!(c.matches(&Record::from_value(
        r#"1.2.3.4 - - "GET /a HTTP/1.1" 302 12"#
    )));
    assert!(!c.matches(&Record::from_value(
        r#"1.2.3.4 - - "GET /a HTTP/1.1" 200 302"#
    )));
}

#[test]
fn compile_errors_carry_the_offset() {
    for (cond, offset, needle) in [
        ("", 0, "expected a field"),
        ("message", 7, "expected a comparison"),
        ("message = 1", 8, "unexpected character `=`"),
        ("mesage == 1", 0, "did you mean `message`?"),
        (r#"message =~ "(a""#, 11, "invalid regex"),
        (r#"message =~ 5"#, 11, "needs a regex"),
        (r#""x" =~ "y""#, 0, "needs a field"),
        ("key == 1 and", 12, "expected a field"),
        ("(key == 1", 9, "expected `)`"),
        ("key == 1)", 8, "unexpected text"),
        ("key in 1", 7, "needs a list"),
        ("key in [1 2]", 10, "expected `,` or `]`"),
        ("key in [path]", 8, "literals only"),
        (r#"key == "open"#, 7, "unterminated string"),
        ("headers == 1", 0, "needs a name"),
        ("after. == 1", 0, "invalid field"),
        ("key == 1.2.3", 7, "invalid number"),
        ("é == 1", 0, "unknown field"),
        ("key == 1 # x", 9, "unexpected character `#`"),
    ] {
        let e = Condition::compile(cond).expect_err(cond);
        assert_eq!(e.offset, offset, "{cond}: {e}");
        assert!(e.message.contains(needle), "{cond}: {e}");
    }
    let deep = format!("{}key == 1{}", "(".repeat(200), ")".repeat(200));
    assert!(Condition::compile(&deep)
        .unwrap_err()
        .message
        .contains("too deep"));
    let nots = format!("{}key == 1", "not ".repeat(200));
    assert!(Condition::compile(&nots).is_err());
}

fn arb_record() -> impl Strategy<Value = Record> {
    (
        any::<Vec<u8>>(),
        proptest::option::of(any::<Vec<u8>>()),
        any::<i64>(),
        0..3u8,
        any::<String>(),
    )
        .prop_map(|(value, key, ts, kind, s)| {
            let meta = match kind {
                0 => Meta::None,
                1 => Meta::Log(LogMeta {
                    path: s.as_str().into(),
                    host: "".into(),
                    offset: ts as u64,
                    truncated: false,
                }),
                _ => {
                    let after = json!({"a": s, "n": ts, "f": (ts as f64) / 3.0, "o": {"x": [1]}});
                    Meta::Row(Arc::new(RowChange {
                        op: Op::Create,
                        before: None,
                        after: after.as_object().cloned(),
                        source: ChangeSource::default(),
                        ts_ms: ts,
                        transaction: None,
                        primary_key: vec![],
                        ddl: None,
                    }))
                }
            };
            let headers = Some(Arc::new(vec![(
                "h".to_string(),
                Bytes::from(value.clone()),
            )]));
            Record {
                key: key.map(Bytes::from),
                value: Bytes::from(value),
                headers,
                timestamp_ms: ts,
                meta,
            }
        })
}

fn arb_condition() -> impl Strategy<Value = String> {
    let field = prop::sample::select(vec![
        "message",
        "key",
        "timestamp",
        "path",
        "host",
        "offset",
        "database",
        "table",
        "op",
        "headers.h",
        "after.a",
        "after.n",
        "after.f",
        "after.o",
        "after.o.x",
        "before.a",
    ]);
    let lit = prop::sample::select(vec![
        "null", "true", "false", "0", "-1.5", "1e300", "\"\"", "\"a\"", "'7'", "\"NaN\"",
    ]);
    let op = prop::sample::select(vec!["==", "!=", "<", "<=", ">", ">="]);
    let cmp = (field.clone(), op, lit.clone()).prop_map(|(f, o, l)| format!("{f} {o} {l}"));
    let re = (field.clone(), "\\^?([a-z.]{1,3}\\*?)?").prop_map(|(f, r)| format!("{f} =~ \"{r}\""));
    let inl = (field, prop::collection::vec(lit, 0..3))
        .prop_map(|(f, l)| format!("{f} in [{}]", l.join(", ")));
    let leaf = prop_oneof![cmp, re, inl];
    leaf.prop_recursive(4, 16, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) and ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} or {b}")),
            inner.prop_map(|a| format!("not ({a})")),
        ]
    })
}

proptest! {
    #[test]
    fn compiling_arbitrary_text_never_panics(text in any::<String>()) {
        let _ = Condition::compile(&text);
    }

    #[test]
    fn matching_never_panics(cond in arb_condition(), records in prop::collection::vec(arb_record(), 1..4)) {
        let c = Condition::compile(&cond).map_err(|e| TestCaseError::fail(format!("{cond}: {e}")))?;
        for r in &records {
            let _ = c.matches(r);
        }
    }

    #[test]
    fn not_is_the_negation(cond in arb_condition(), r in arb_record()) {
        let c = Condition::compile(&cond).unwrap();
        let n = Condition::compile(&format!("not ({cond})")).unwrap();
        prop_assert_eq!(c.matches(&r), !n.matches(&r));
    }
}
