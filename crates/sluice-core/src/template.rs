//! Name templates such as `cdc.{database}.{table}` or `logs/{source}-{date}.log`,
//! parsed once at load and rendered per record into a reused `String`.
//!
//! Placeholders: `{source}`, `{date}` (UTC `YYYY-MM-DD` of the record's
//! timestamp), `{database}`, `{table}`, `{op}` (row changes), `{path}`,
//! `{host}` (log lines), `{headers.NAME}`. A placeholder the record lacks
//! renders as `none`. Touches only memory.

use std::fmt::Write;

use crate::record::{Meta, Record};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Source,
    Date,
    Database,
    Table,
    Op,
    Path,
    Host,
    Header(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses a template; the error names the bad placeholder.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in `{text}`"))?;
            let name = &after[..close];
            parts.push(match name {
                "source" => Part::Source,
                "date" => Part::Date,
                "database" => Part::Database,
                "table" => Part::Table,
                "op" => Part::Op,
                "path" => Part::Path,
                "host" => Part::Host,
                h if h.starts_with("headers.") && h.len() > 8 => Part::Header(h[8..].to_string()),
                other => {
                    return Err(format!(
                        "unknown placeholder `{{{other}}}` (known: source, date, database, table, op, path, host, headers.NAME)"
                    ))
                }
            });
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// True when the template has no placeholder.
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// Renders the template for a record into `out` (cleared first).
    pub fn render_into(&self, source: &str, record: &Record, out: &mut String) {
        out.clear();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Source => out.push_str(source),
                Part::Date => {
                    let days = record.timestamp_ms.div_euclid(86_400_000);
                    let (y, m, d) = civil_from_days(days);
                    let _ = write!(out, "{y:04}-{m:02}-{d:02}");
                }
                Part::Database => out.push_str(record.row().map_or("none", |r| &r.source.db)),
                Part::Table => out.push_str(record.row().map_or("none", |r| &r.source.table)),
                Part::Op => out.push_str(record.row().map_or("none", |r| r.op.as_str())),
                Part::Path => out.push_str(match &record.meta {
                    Meta::Log(l) => &l.path,
                    _ => "none",
                }),
                Part::Host => out.push_str(match &record.meta {
                    Meta::Log(l) => &l.host,
                    _ => "none",
                }),
                Part::Header(h) => match record.header(h) {
                    Some(v) => out.push_str(&String::from_utf8_lossy(v)),
                    None => out.push_str("none"),
                },
            }
        }
    }

    pub fn render(&self, source: &str, record: &Record) -> String {
        let mut s = String::new();
        self.render_into(source, record, &mut s);
        s
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_placeholders() {
        let t = Template::parse("logs/{source}-{date}.log").unwrap();
        let mut r = Record::from_value("x");
        r.timestamp_ms = 1_764_288_000_000; // 2025-11-28
        assert_eq!(t.render("app", &r), "logs/app-2025-11-28.log");
        assert!(Template::parse("{nope}").unwrap_err().contains("nope"));
        assert!(Template::parse("a{source").is_err());
    }
}
