//! Multiline aggregation: joins consecutive lines of one file into one
//! record by `start_pattern`, `condition_pattern` and `mode`, with the
//! semantics Vector's users know, and emits a group that got no new line
//! within `timeout`. A pending group holds the file's checkpoint at its
//! first line. Touches nothing but memory.

use std::time::Instant;

use bytes::BytesMut;

use crate::config::{Multiline, MultilineMode};
use crate::lines::Line;

struct Group {
    lines: Vec<Line>,
    bytes: usize,
    last: Instant,
}

/// Multiline state of one file.
pub struct Aggregator {
    cfg: Multiline,
    max_bytes: usize,
    group: Option<Group>,
}

impl Aggregator {
    pub fn new(cfg: Multiline, max_bytes: usize) -> Aggregator {
        Aggregator {
            cfg,
            max_bytes,
            group: None,
        }
    }

    /// Offset of the first line of the pending group, if any.
    pub fn pending_offset(&self) -> Option<u64> {
        self.group
            .as_ref()
            .and_then(|g| g.lines.first())
            .map(|l| l.offset)
    }

    /// When the pending group is due by timeout.
    pub fn deadline(&self) -> Option<Instant> {
        self.group.as_ref().map(|g| g.last + self.cfg.timeout)
    }

    pub fn reset(&mut self) {
        self.group = None;
    }

    fn start(&mut self, line: Line, now: Instant) {
        self.group = Some(Group {
            bytes: line.value.len(),
            lines: vec![line],
            last: now,
        });
    }

    fn add(&mut self, line: Line, now: Instant, emit: &mut impl FnMut(Line)) {
        if let Some(g) = &mut self.group {
            g.bytes += line.value.len() + 1;
            g.lines.push(line);
            g.last = now;
            if g.bytes >= self.max_bytes {
                self.flush(emit);
            }
        }
    }

    /// Feeds one line.
    pub fn push(&mut self, line: Line, now: Instant, emit: &mut impl FnMut(Line)) {
        if self.group.is_none() {
            if self.cfg.start.is_match(&line.value) {
                self.start(line, now);
            } else {
                emit(line);
            }
            return;
        }
        let matched = self.cfg.condition.is_match(&line.value);
        match self.cfg.mode {
            MultilineMode::ContinueThrough => {
                if matched {
                    self.add(line, now, emit);
                } else {
                    self.flush(emit);
                    self.push(line, now, emit);
                }
            }
            MultilineMode::ContinuePast => {
                self.add(line, now, emit);
                if !matched {
                    self.flush(emit);
                }
            }
            MultilineMode::HaltBefore => {
                if matched {
                    self.flush(emit);
                    self.push(line, now, emit);
                } else {
                    self.add(line, now, emit);
                }
            }
            MultilineMode::HaltWith => {
                self.add(line, now, emit);
                if matched {
                    self.flush(emit);
                }
            }
        }
    }

    /// Emits the pending group if its timeout passed.
    pub fn flush_if_due(&mut self, now: Instant, emit: &mut impl FnMut(Line)) {
        if self.deadline().is_some_and(|d| d <= now) {
            self.flush(emit);
        }
    }

    /// Emits the pending group, lines joined by `\n`.
    pub fn flush(&mut self, emit: &mut impl FnMut(Line)) {
        let Some(mut g) = self.group.take() else {
            return;
        };
        if g.lines.len() == 1 {
            if let Some(l) = g.lines.pop() {
                emit(l);
            }
            return;
        }
        let mut buf = BytesMut::with_capacity(g.bytes);
        let mut truncated = false;
        for (i, l) in g.lines.iter().enumerate() {
            if i > 0 {
                buf.extend_from_slice(b"\n");
            }
            buf.extend_from_slice(&l.value);
            truncated |= l.truncated;
        }
        emit(Line {
            value: buf.freeze(),
            offset: g.lines[0].offset,
            truncated,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::bytes::Regex;
    use std::time::Duration;

    fn agg(start: &str, cond: &str, mode: MultilineMode, input: &[&str]) -> Vec<String> {
        let cfg = Multiline {
            start: Regex::new(start).unwrap(),
            condition: Regex::new(cond).unwrap(),
            mode,
            timeout: Duration::from_millis(10),
        };
        let mut a = Aggregator::new(cfg, 1 << 20);
        let mut out = Vec::new();
        let mut emit = |l: Line| out.push(String::from_utf8(l.value.to_vec()).unwrap());
        for (i, s) in input.iter().enumerate() {
            let line = Line {
                value: bytes::Bytes::copy_from_slice(s.as_bytes()),
                offset: i as u64,
                truncated: false,
            };
            a.push(line, Instant::now(), &mut emit);
        }
        a.flush(&mut emit);
        out
    }

    #[test]
    fn java_stack_traces_continue_through() {
        let out = agg(
            r"^\S",
            r"^\s",
            MultilineMode::ContinueThrough,
            &["Exception", "  at a", "  at b", "next", "last"],
        );
        assert_eq!(out, vec!["Exception\n  at a\n  at b", "next", "last"]);
    }

    #[test]
    fn backslash_continues_past_and_halts() {
        let out = agg(
            r"\\$",
            r"\\$",
            MultilineMode::ContinuePast,
            &["a \\", "b \\", "c", "d"],
        );
        assert_eq!(out, vec!["a \\\nb \\\nc", "d"]);
        let out = agg(
            r"^BEGIN",
            r"^END",
            MultilineMode::HaltWith,
            &["BEGIN", "x", "END", "y"],
        );
        assert_eq!(out, vec!["BEGIN\nx\nEND", "y"]);
        let out = agg(
            r"^\[",
            r"^\[",
            MultilineMode::HaltBefore,
            &["[1", "x", "[2", "y"],
        );
        assert_eq!(out, vec!["[1\nx", "[2\ny"]);
    }
}
