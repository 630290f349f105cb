//! `top`'s drawing against fixed `/api/v1/components` answers, on ratatui's
//! `TestBackend`: rates from two answers, queue fill, snapshot progress,
//! sorting keys.

use std::time::{Duration, Instant};

use ratatui::backend::TestBackend;
use ratatui::Terminal;
use serde_json::{json, Value};

use super::view::{render, App, Key, SortKey};
use super::{key_of, KeyCode, KeyModifiers};

fn status(gen_out: u64, file_in: u64, errors: u64) -> Value {
    json!({"components": [
        {"name": "gen", "kind": "source", "type": "generator",
         "records_in": 0, "records_out": gen_out, "errors": 0, "retries": 0,
         "dropped_queue_full": 0, "rejected_queue_full": 0, "dropped_on_error": 0,
         "dead_lettered": 0, "queue_events": 2500, "queue_bytes": 100,
         "queue_max_events": 10000, "queue_max_bytes": 1000000, "checkpoint_lag": 42},
        {"name": "orders_db", "kind": "source", "type": "mysql",
         "records_in": 0, "records_out": 10, "errors": 0, "retries": 0,
         "queue_events": 0, "queue_bytes": 0, "queue_max_events": 10000,
         "queue_max_bytes": 1000000, "checkpoint_lag": 0,
         "snapshot": {"rows_done": 400, "rows_estimated": 1000, "rows_per_sec": 200,
                      "eta_secs": 3, "finished": false}},
        {"name": "archive", "kind": "sink", "type": "file",
         "records_in": file_in, "records_out": file_in, "errors": errors, "retries": errors,
         "dropped_queue_full": 0, "rejected_queue_full": 0, "dropped_on_error": 1,
         "dead_lettered": 0, "queue_events": 9000, "queue_bytes": 10,
         "queue_max_events": 10000, "queue_max_bytes": 1000000, "checkpoint_lag": 0}
    ]})
}

fn screen(app: &App) -> Vec<String> {
    let mut t = Terminal::new(TestBackend::new(150, 8)).unwrap();
    t.draw(|f| render(f, app)).unwrap();
    let buf = t.backend().buffer().clone();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect::<String>()
        })
        .collect()
}

fn row<'a>(lines: &'a [String], name: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no row for {name} in\n{}", lines.join("\n")))
}

#[test]
fn rates_come_from_two_answers_and_figures_are_shown() {
    let mut app = App::new("http://127.0.0.1:8686");
    let t0 = Instant::now();
    app.update(&status(1000, 500, 0), t0);
    let first = screen(&app);
    // No rate before a second answer.
    assert!(row(&first, "gen").contains(" - "), "{}", first.join("\n"));
    app.update(&status(3000, 1100, 2), t0 + Duration::from_secs(2));
    let s = screen(&app);
    let all = s.join("\n");
    assert!(s[0].contains("sluice top") && s[0].contains("http://127.0.0.1:8686"));
    assert!(s[0].contains("3 components"), "{all}");
    assert!(s[1].contains("NAME") && s[1].contains("SNAPSHOT"), "{all}");
    let gen = row(&s, "gen");
    assert!(gen.contains("1000.0"), "gen out/s: {gen}");
    assert!(gen.contains("25% 2500"), "gen queue: {gen}");
    assert!(gen.contains(" 42 "), "gen lag: {gen}");
    let archive = row(&s, "archive");
    assert!(archive.contains("300.0"), "archive in/s: {archive}");
    assert!(archive.contains("90% 9000"), "archive queue: {archive}");
    let db = row(&s, "orders_db");
    assert!(db.contains("40% 400/~1000 200/s ETA 3s"), "snapshot: {db}");
    assert!(s[7].contains("q quit"), "{all}");
}

#[test]
fn keys_sort_and_quit() {
    let mut app = App::new("http://x");
    let t0 = Instant::now();
    app.update(&status(1000, 500, 0), t0);
    app.update(&status(3000, 1100, 5), t0 + Duration::from_secs(1));
    // Default: out/s, biggest first.
    assert_eq!(app.sort, SortKey::OutRate);
    let names = |a: &App| {
        a.sorted()
            .iter()
            .map(|r| r.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&app), ["gen", "archive", "orders_db"]);
    app.key(key_of(KeyCode::Char('r'), KeyModifiers::NONE));
    assert_eq!(names(&app), ["orders_db", "archive", "gen"]);
    // s → queue, s s s s → errors.
    for _ in 0..4 {
        app.key(key_of(KeyCode::Char('s'), KeyModifiers::NONE));
    }
    assert_eq!(app.sort, SortKey::Errors);
    assert_eq!(names(&app)[0], "archive");
    let s = screen(&app);
    assert!(s[0].contains("sort: errors ↓"), "{}", s.join("\n"));
    // S (or ←) twice → lag; ties: sources first, then by name.
    app.key(key_of(KeyCode::Char('S'), KeyModifiers::NONE));
    app.key(key_of(KeyCode::Left, KeyModifiers::NONE));
    assert_eq!(app.sort, SortKey::Lag);
    assert_eq!(names(&app), ["gen", "orders_db", "archive"]);
    app.key(key_of(KeyCode::Left, KeyModifiers::NONE));
    assert_eq!(app.sort, SortKey::Queue);
    assert_eq!(names(&app), ["archive", "gen", "orders_db"]);
    assert!(!app.quit);
    app.key(key_of(KeyCode::Char('x'), KeyModifiers::NONE));
    assert!(!app.quit);
    app.key(key_of(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert!(app.quit);
    assert_eq!(key_of(KeyCode::Char('q'), KeyModifiers::NONE), Key::Quit);
}

#[test]
fn a_failed_refresh_keeps_the_rows_and_says_why() {
    let mut app = App::new("http://x");
    app.update(&status(1, 1, 0), Instant::now());
    app.failed("connection refused".into());
    let s = screen(&app);
    assert!(s[0].contains("error: connection refused"));
    row(&s, "gen");
}
