//! The YAML node tree with positions: every scalar, sequence, mapping and
//! mapping key carries the file:line:column where it starts. Built from the
//! events of `saphyr-parser` (which reports exact spans), so that every
//! later error can name its place. Touches nothing but memory.

use std::collections::HashMap;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use super::{ConfigError, Location};

/// Deepest nesting accepted; deeper input is an error, never a stack overflow.
const MAX_DEPTH: usize = 64;

/// One YAML node and where it starts.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub loc: Location,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Null,
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A scalar's text. `plain` scalars are typed by their text (`10` is a
/// number, `true` a boolean); quoted and block scalars are strings.
#[derive(Debug, Clone)]
pub(crate) struct Scalar {
    pub text: String,
    pub plain: bool,
    /// Column of the first character of `text` when the text maps one to
    /// one onto the source line (a single-line scalar without escapes and
    /// not changed by interpolation), so that errors can point inside it.
    pub inner_col: Option<usize>,
    /// Interpolation failed (already reported): the text is not meaningful.
    pub failed: bool,
}

/// A mapping key (always a scalar here).
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub name: String,
    pub loc: Location,
}

impl Node {
    pub fn new(loc: Location, kind: Kind) -> Node {
        Node { loc, kind }
    }

    pub fn map(&self) -> Option<&[(Key, Node)]> {
        match &self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(s) => Some(&s.text),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.kind, Kind::Null)
    }

    /// Whether a scalar in this tree failed interpolation.
    pub fn failed(&self) -> bool {
        match &self.kind {
            Kind::Null => false,
            Kind::Scalar(s) => s.failed,
            Kind::Seq(items) => items.iter().any(Node::failed),
            Kind::Map(entries) => entries.iter().any(|(_, n)| n.failed()),
        }
    }

    /// The place of a character offset inside this scalar, when known.
    pub fn loc_at(&self, char_offset: usize) -> Location {
        match &self.kind {
            Kind::Scalar(Scalar {
                inner_col: Some(c), ..
            }) => Location {
                file: self.loc.file.clone(),
                line: self.loc.line,
                column: c + char_offset,
            },
            _ => self.loc.clone(),
        }
    }

    /// A node from JSON (programmatic options); positions are all `at`.
    pub fn from_json(value: serde_json::Value, at: &Location) -> Node {
        use serde_json::Value as V;
        let kind = match value {
            V::Null => Kind::Null,
            V::Bool(b) => plain(b.to_string()),
            V::Number(n) => plain(n.to_string()),
            V::String(s) => Kind::Scalar(Scalar {
                text: s,
                plain: false,
                inner_col: None,
                failed: false,
            }),
            V::Array(a) => Kind::Seq(a.into_iter().map(|v| Node::from_json(v, at)).collect()),
            V::Object(o) => Kind::Map(
                o.into_iter()
                    .map(|(k, v)| {
                        let key = Key {
                            name: k,
                            loc: at.clone(),
                        };
                        (key, Node::from_json(v, at))
                    })
                    .collect(),
            ),
        };
        Node::new(at.clone(), kind)
    }
}

fn plain(text: String) -> Kind {
    Kind::Scalar(Scalar {
        text,
        plain: true,
        inner_col: None,
        failed: false,
    })
}

/// Parses one YAML document. An empty file is `Null`. A key repeated in
/// a mapping is an error pushed to `errors` (the first one is kept); a
/// syntax error ends the parse.
pub(crate) fn parse(
    text: &str,
    file: &Arc<std::path::Path>,
    errors: &mut Vec<ConfigError>,
) -> Result<Node, ConfigError> {
    let mut b = Builder {
        parser: Parser::new_from_str(text),
        file: file.clone(),
        anchors: HashMap::new(),
        duplicates: Vec::new(),
    };
    let node = b.document();
    errors.append(&mut b.duplicates);
    node
}

struct Builder<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    file: Arc<std::path::Path>,
    anchors: HashMap<usize, Node>,
    duplicates: Vec<ConfigError>,
}

impl<'a> Builder<'a> {
    fn loc(&self, span: &Span) -> Location {
        Location {
            file: self.file.to_path_buf(),
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }

    fn err(&self, span: &Span, message: impl Into<String>) -> ConfigError {
        ConfigError {
            location: self.loc(span),
            message: message.into(),
            hint: None,
        }
    }

    fn next(&mut self) -> Result<(Event<'a>, Span), ConfigError> {
        match self.parser.next_event() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => Err(ConfigError {
                location: Location {
                    file: self.file.to_path_buf(),
                    line: e.marker().line(),
                    column: e.marker().col() + 1,
                },
                message: format!("invalid YAML: {}", e.info()),
                hint: None,
            }),
            None => Err(ConfigError {
                location: Location {
                    file: self.file.to_path_buf(),
                    line: 1,
                    column: 1,
                },
                message: "invalid YAML: unexpected end of input".into(),
                hint: None,
            }),
        }
    }

    fn document(&mut self) -> Result<Node, ConfigError> {
        let empty = Node::new(
            Location {
                file: self.file.to_path_buf(),
                line: 1,
                column: 1,
            },
            Kind::Null,
        );
        let mut root = None;
        loop {
            let (ev, span) = self.next()?;
            match ev {
                Event::StreamStart | Event::DocumentEnd => {}
                Event::StreamEnd => return Ok(root.unwrap_or(empty)),
                Event::DocumentStart(_) if root.is_some() => {
                    return Err(self.err(&span, "only one YAML document per pipeline file"));
                }
                Event::DocumentStart(_) => {
                    let (ev, span) = self.next()?;
                    root = Some(self.node(ev, span, 0)?);
                }
                _ => return Err(self.err(&span, "invalid YAML: unexpected event")),
            }
        }
    }

    fn node(&mut self, ev: Event<'a>, span: Span, depth: usize) -> Result<Node, ConfigError> {
        if depth > MAX_DEPTH {
            return Err(self.err(&span, "nesting too deep"));
        }
        let loc = self.loc(&span);
        let (node, anchor) = match ev {
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(n) => {
                    let mut n = n.clone();
                    n.loc = loc;
                    return Ok(n);
                }
                None => return Err(self.err(&span, "unknown alias")),
            },
            Event::Scalar(text, style, anchor, tag) => {
                let is_plain = style == ScalarStyle::Plain && tag.is_none();
                let kind = if is_plain && matches!(&*text, "~" | "null" | "Null" | "NULL" | "") {
                    Kind::Null
                } else {
                    let chars = text.chars().count();
                    let single = span.start.line() == span.end.line();
                    let width = span.end.col().saturating_sub(span.start.col());
                    let inner_col = match style {
                        ScalarStyle::Plain if single && width == chars => Some(loc.column),
                        ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted
                            if single && width == chars + 2 =>
                        {
                            Some(loc.column + 1)
                        }
                        _ => None,
                    };
                    Kind::Scalar(Scalar {
                        text: text.into_owned(),
                        plain: is_plain,
                        inner_col,
                        failed: false,
                    })
                };
                (Node::new(loc, kind), anchor)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (ev, span) = self.next()?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(ev, span, depth + 1)?);
                }
                (Node::new(loc, Kind::Seq(items)), anchor)
            }
            Event::MappingStart(anchor, _) => {
                let mut entries: Vec<(Key, Node)> = Vec::new();
                loop {
                    let (ev, kspan) = self.next()?;
                    let name = match ev {
                        Event::MappingEnd => break,
                        Event::Scalar(text, ..) => text.into_owned(),
                        _ => return Err(self.err(&kspan, "mapping keys must be plain strings")),
                    };
                    let key = Key {
                        name,
                        loc: self.loc(&kspan),
                    };
                    let (ev, vspan) = self.next()?;
                    let value = self.node(ev, vspan, depth + 1)?;
                    match entries.iter().find(|(k, _)| k.name == key.name) {
                        Some((first, _)) => self.duplicates.push(ConfigError {
                            message: format!(
                                "duplicate key `{}` (first defined at {})",
                                key.name, first.loc
                            ),
                            location: key.loc,
                            hint: None,
                        }),
                        None => entries.push((key, value)),
                    }
                }
                (Node::new(loc, Kind::Map(entries)), anchor)
            }
            _ => return Err(self.err(&span, "invalid YAML: unexpected event")),
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }
}
