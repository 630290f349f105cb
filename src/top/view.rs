//! The model and drawing of `sluice top`: rows built from successive
//! `/api/v1/components` answers (rates are the counter deltas between two
//! answers), the sort order the keys choose, and the ratatui rendering.
//! Pure: no terminal, no network, so tests draw it on a `TestBackend`.

use std::collections::HashMap;
use std::time::Instant;

use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row as TableRow, Table};
use ratatui::Frame;
use serde_json::Value;

/// A column `top` can sort by (`s`/`S` cycle through them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Name,
    Kind,
    InRate,
    OutRate,
    Queue,
    Lag,
    Retries,
    Errors,
    Dropped,
}

const SORT_KEYS: [SortKey; 9] = [
    SortKey::Name,
    SortKey::Kind,
    SortKey::InRate,
    SortKey::OutRate,
    SortKey::Queue,
    SortKey::Lag,
    SortKey::Retries,
    SortKey::Errors,
    SortKey::Dropped,
];

impl SortKey {
    fn label(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Kind => "kind",
            SortKey::InRate => "in/s",
            SortKey::OutRate => "out/s",
            SortKey::Queue => "queue",
            SortKey::Lag => "lag",
            SortKey::Retries => "retries",
            SortKey::Errors => "errors",
            SortKey::Dropped => "dropped",
        }
    }
}

/// Snapshot progress of a database source.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub done: u64,
    pub estimated: u64,
    pub rows_per_sec: u64,
    pub eta_secs: Option<u64>,
    pub finished: bool,
}

/// One component's line.
#[derive(Clone, Debug, PartialEq)]
pub struct ComponentRow {
    pub name: String,
    pub kind: String,
    pub r#type: String,
    pub records_in: u64,
    pub records_out: u64,
    /// Records per second since the previous answer; `None` on the first.
    pub in_rate: Option<f64>,
    pub out_rate: Option<f64>,
    pub queue_events: u64,
    pub queue_max_events: u64,
    pub queue_bytes: u64,
    pub queue_max_bytes: u64,
    pub lag: i64,
    pub retries: u64,
    pub errors: u64,
    pub dropped: u64,
    pub snapshot: Option<Snapshot>,
}

impl ComponentRow {
    /// Queue fill in 0..=1: the fuller of events and bytes.
    pub fn fill(&self) -> f64 {
        let part = |n: u64, max: u64| if max == 0 { 0.0 } else { n as f64 / max as f64 };
        part(self.queue_events, self.queue_max_events)
            .max(part(self.queue_bytes, self.queue_max_bytes))
            .min(1.0)
    }
}

/// What `top` shows.
pub struct App {
    /// The daemon's API address, for the title.
    pub url: String,
    pub rows: Vec<ComponentRow>,
    pub sort: SortKey,
    pub descending: bool,
    /// The last refresh failed with this (the rows are the last good ones).
    pub error: Option<String>,
    pub refreshes: u64,
    pub quit: bool,
    last: Option<Instant>,
}

/// A key `top` understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Quit,
    NextSort,
    PrevSort,
    Reverse,
    Other,
}

impl App {
    pub fn new(url: &str) -> App {
        App {
            url: url.to_string(),
            rows: Vec::new(),
            sort: SortKey::OutRate,
            descending: true,
            error: None,
            refreshes: 0,
            quit: false,
            last: None,
        }
    }

    /// Takes a `/api/v1/components` answer received at `now`.
    pub fn update(&mut self, status: &Value, now: Instant) {
        let secs = self
            .last
            .map(|l| now.saturating_duration_since(l).as_secs_f64())
            .filter(|s| *s > 0.0);
        let previous: HashMap<(String, String), (u64, u64)> = self
            .rows
            .iter()
            .map(|r| {
                (
                    (r.kind.clone(), r.name.clone()),
                    (r.records_in, r.records_out),
                )
            })
            .collect();
        let mut rows = Vec::new();
        for c in status["components"].as_array().into_iter().flatten() {
            let n = |k: &str| c[k].as_u64().unwrap_or(0);
            let s = |k: &str| c[k].as_str().unwrap_or("?").to_string();
            let (name, kind) = (s("name"), s("kind"));
            let (records_in, records_out) = (n("records_in"), n("records_out"));
            let prev = previous.get(&(kind.clone(), name.clone()));
            let rate =
                |now: u64, before: Option<u64>| Some(now.saturating_sub(before?) as f64 / secs?);
            let snapshot = c
                .get("snapshot")
                .filter(|v| v.is_object())
                .map(|v| Snapshot {
                    done: v["rows_done"].as_u64().unwrap_or(0),
                    estimated: v["rows_estimated"].as_u64().unwrap_or(0),
                    rows_per_sec: v["rows_per_sec"].as_u64().unwrap_or(0),
                    eta_secs: v["eta_secs"].as_u64(),
                    finished: v["finished"].as_bool().unwrap_or(false),
                });
            rows.push(ComponentRow {
                in_rate: rate(records_in, prev.map(|p| p.0)),
                out_rate: rate(records_out, prev.map(|p| p.1)),
                r#type: s("type"),
                records_in,
                records_out,
                queue_events: n("queue_events"),
                queue_max_events: n("queue_max_events"),
                queue_bytes: n("queue_bytes"),
                queue_max_bytes: n("queue_max_bytes"),
                lag: c["checkpoint_lag"].as_i64().unwrap_or(0),
                retries: n("retries"),
                errors: n("errors"),
                dropped: n("dropped_queue_full")
                    + n("rejected_queue_full")
                    + n("dropped_on_error")
                    + n("dead_lettered"),
                snapshot,
                name,
                kind,
            });
        }
        self.rows = rows;
        self.last = Some(now);
        self.error = None;
        self.refreshes += 1;
    }

    pub fn failed(&mut self, error: String) {
        self.error = Some(error);
    }

    pub fn key(&mut self, key: Key) {
        let i = SORT_KEYS.iter().position(|k| *k == self.sort).unwrap_or(0);
        match key {
            Key::Quit => self.quit = true,
            Key::NextSort => self.set_sort(SORT_KEYS[(i + 1) % SORT_KEYS.len()]),
            Key::PrevSort => self.set_sort(SORT_KEYS[(i + SORT_KEYS.len() - 1) % SORT_KEYS.len()]),
            Key::Reverse => self.descending = !self.descending,
            Key::Other => {}
        }
    }

    fn set_sort(&mut self, k: SortKey) {
        self.sort = k;
        // Names read best A→Z, figures biggest first.
        self.descending = !matches!(k, SortKey::Name | SortKey::Kind);
    }

    /// The rows in display order (ties broken by kind, then name).
    pub fn sorted(&self) -> Vec<&ComponentRow> {
        let mut v: Vec<&ComponentRow> = self.rows.iter().collect();
        let num = |r: &ComponentRow| -> f64 {
            match self.sort {
                SortKey::InRate => r.in_rate.unwrap_or(-1.0),
                SortKey::OutRate => r.out_rate.unwrap_or(-1.0),
                SortKey::Queue => r.fill(),
                SortKey::Lag => r.lag as f64,
                SortKey::Retries => r.retries as f64,
                SortKey::Errors => r.errors as f64,
                SortKey::Dropped => r.dropped as f64,
                SortKey::Name | SortKey::Kind => 0.0,
            }
        };
        v.sort_by(|a, b| {
            let primary = match self.sort {
                SortKey::Name => a.name.cmp(&b.name),
                SortKey::Kind => a.kind.cmp(&b.kind),
                _ => num(a).total_cmp(&num(b)),
            };
            let primary = if self.descending {
                primary.reverse()
            } else {
                primary
            };
            primary
                .then_with(|| b.kind.cmp(&a.kind))
                .then_with(|| a.name.cmp(&b.name))
        });
        v
    }
}

fn rate(r: Option<f64>) -> String {
    match r {
        None => "-".into(),
        Some(x) if x >= 10_000_000.0 => format!("{:.1}M", x / 1e6),
        Some(x) if x >= 100_000.0 => format!("{:.0}k", x / 1e3),
        Some(x) => format!("{x:.1}"),
    }
}

fn queue(r: &ComponentRow) -> String {
    if r.queue_max_events == 0 {
        return "-".into();
    }
    let f = r.fill();
    let filled = (f * 8.0).round() as usize;
    format!(
        "{}{} {:>3.0}% {}",
        "█".repeat(filled),
        "·".repeat(8 - filled),
        f * 100.0,
        r.queue_events
    )
}

fn snapshot(s: &Option<Snapshot>) -> String {
    let Some(s) = s else { return String::new() };
    let pct = if s.estimated == 0 {
        100.0
    } else {
        (s.done as f64 * 100.0 / s.estimated as f64).min(100.0)
    };
    if s.finished {
        format!("done {} rows", s.done)
    } else {
        format!(
            "{pct:.0}% {}/~{} {}/s ETA {}s",
            s.done,
            s.estimated,
            s.rows_per_sec,
            s.eta_secs.unwrap_or(0)
        )
    }
}

/// Draws the whole screen.
pub fn render(f: &mut Frame, app: &App) {
    let [title, table, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(f.area());
    let order = if app.descending { "↓" } else { "↑" };
    let mut spans = vec![
        Span::styled("sluice top", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(
            "  {}  {} components  sort: {} {order}",
            app.url,
            app.rows.len(),
            app.sort.label()
        )),
    ];
    if let Some(e) = &app.error {
        spans.push(Span::styled(
            format!("  error: {e}"),
            Style::new().fg(Color::Red),
        ));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), title);

    let headers = [
        ("NAME", Some(SortKey::Name)),
        ("KIND", Some(SortKey::Kind)),
        ("TYPE", None),
        ("IN/s", Some(SortKey::InRate)),
        ("OUT/s", Some(SortKey::OutRate)),
        ("QUEUE", Some(SortKey::Queue)),
        ("LAG", Some(SortKey::Lag)),
        ("RETRIES", Some(SortKey::Retries)),
        ("ERRORS", Some(SortKey::Errors)),
        ("DROPPED", Some(SortKey::Dropped)),
        ("SNAPSHOT", None),
    ];
    let header = TableRow::new(headers.iter().map(|(h, k)| {
        let style = if *k == Some(app.sort) {
            Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        };
        Cell::from(*h).style(style)
    }));
    let rows = app.sorted().into_iter().map(|r| {
        let warn = |bad: bool| {
            if bad {
                Style::new().fg(Color::Red)
            } else {
                Style::new()
            }
        };
        TableRow::new(vec![
            Cell::from(r.name.clone()),
            Cell::from(r.kind.clone()),
            Cell::from(r.r#type.clone()),
            Cell::from(rate(r.in_rate)),
            Cell::from(rate(r.out_rate)),
            Cell::from(queue(r)).style(if r.fill() >= 0.8 {
                Style::new().fg(Color::Yellow)
            } else {
                Style::new()
            }),
            Cell::from(r.lag.to_string()),
            Cell::from(r.retries.to_string()).style(warn(r.retries > 0)),
            Cell::from(r.errors.to_string()).style(warn(r.errors > 0)),
            Cell::from(r.dropped.to_string()).style(warn(r.dropped > 0)),
            Cell::from(snapshot(&r.snapshot)),
        ])
    });
    let widths = [
        Constraint::Length(18),
        Constraint::Length(6),
        Constraint::Length(10),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(22),
        Constraint::Length(10),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Fill(1),
    ];
    f.render_widget(Table::new(rows, widths).header(header), table);
    f.render_widget(
        Paragraph::new("q quit   s/S next/previous sort column   r reverse order")
            .style(Style::new().add_modifier(Modifier::DIM)),
        footer,
    );
}
