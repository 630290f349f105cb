//! The `where` condition language: a sink receives a record only when its condition holds.
//! Compiled once when the pipeline loads; evaluating it allocates nothing (fields are borrowed,
//! compared as bytes, numbers are parsed from bytes in place). Touches nothing but memory.
//!
//! # The language
//!
//! ```text
//! message =~ "ERROR|FATAL" and not path =~ "debug"
//! database == "shop" and table in ["orders", "payments"] and op != "d"
//! after.amount >= 100 or headers.priority == "high"
//! (key == null or timestamp < 1700000000000) && !(after.status == "test")
//! ```
//!
//! **Fields** (a field the record does not have is `null`):
//!
//! | field | value |
//! |---|---|
//! | `message` | the record's value (payload) as text |
//! | `key` | the record's key, or null |
//! | `timestamp` | milliseconds since the Unix epoch |
//! | `path`, `host`, `offset` | a log line's file, host, byte offset |
//! | `database`, `table`, `op` | a row change's schema, table and kind (`c`, `u`, `d`, `r`, `ddl`) |
//! | `headers.NAME` | a header's value |
//! | `after.COL`, `before.COL` | a column of the row image after / before the change (`after.COL.FIELD` reaches into JSON objects) |
//!
//! **Literals**: strings in double or single quotes (escapes `\"`, `\'`, `\\`, `\n`, `\t`; any
//! other backslash is kept as written, so regexes read naturally: `"\d+"`), numbers (`42`,
//! `-1.5`, `1e3`), `true`, `false`, `null`.
//!
//! **Operators**, loosest first: `or` (`||`); `and` (`&&`); `not` (`!`); comparisons `==`, `!=`,
//! `<`, `<=`, `>`, `>=`, `=~` (the regex on the right matches anywhere in the text on the left;
//! anchor with `^...$`), `in [lit, ...]`; parentheses group.
//!
//! **Comparison rules**: `==` compares text with text byte for byte and numbers with numbers;
//! text that reads as a number equals that number (`after.id == "42"` holds for the number 42),
//! and `true`/`false` equal the text `true`/`false`. `null == null` holds; `null` equals nothing
//! else; `!=` is the negation of `==`. Ordering (`<`, ...) compares numbers when both sides read
//! as numbers, else text byte-wise, and is false when either side is null. `=~` on a null is
//! false; a number or boolean is matched as its text.

use std::fmt;
use std::io::Write as _;

use regex::bytes::Regex;

use crate::config::closest_hint;
use crate::record::{Meta, Record};

/// Deepest nesting of parentheses and `not` accepted.
const MAX_DEPTH: usize = 64;

/// A compiled `where` condition.
#[derive(Debug, Clone)]
pub struct Condition {
    source: String,
    expr: Expr,
}

/// Why a condition does not compile: the message and the character offset
/// in the condition text where the problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for ConditionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at character {})", self.message, self.offset + 1)
    }
}

impl std::error::Error for ConditionError {}

impl Condition {
    pub fn compile(source: &str) -> Result<Condition, ConditionError> {
        let tokens = lex(source)?;
        let mut p = Parser {
            tokens,
            pos: 0,
            end: source.chars().count(),
        };
        let expr = p.or(0)?;
        if let Some((_, at)) = p.tokens.get(p.pos) {
            return Err(err(*at, "unexpected text after the condition"));
        }
        Ok(Condition {
            source: source.to_string(),
            expr,
        })
    }

    /// The condition as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, record: &Record) -> bool {
        self.expr.eval(record)
    }
}

fn err(offset: usize, message: impl Into<String>) -> ConditionError {
    ConditionError {
        offset,
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Op(&'static str),
    /// One of `(`, `)`, `[`, `]`, `,`.
    Punct(char),
}

const OPS: &[&str] = &["==", "!=", "<=", ">=", "=~", "&&", "||", "<", ">", "!"];

/// Splits the text into tokens, each with its character offset.
fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ConditionError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if matches!(c, '(' | ')' | '[' | ']' | ',') {
            out.push((Tok::Punct(c), start));
            i += 1;
        } else if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(err(start, "unterminated string")),
                    Some(&q) if q == c => break,
                    Some('\\') => {
                        match chars.get(i + 1) {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(&e @ ('\\' | '"' | '\'')) => s.push(e),
                            Some(&e) => s.extend(['\\', e]),
                            None => return Err(err(start, "unterminated string")),
                        }
                        i += 2;
                        continue;
                    }
                    Some(&ch) => s.push(ch),
                }
                i += 1;
            }
            i += 1;
            out.push((Tok::Str(s), start));
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '.' | '_'))
                || (i < chars.len()
                    && matches!(chars[i], '-' | '+')
                    && matches!(chars[i - 1], 'e' | 'E'))
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().filter(|&&c| c != '_').collect();
            let n = text
                .parse::<f64>()
                .map_err(|_| err(start, format!("invalid number `{text}`")))?;
            out.push((Tok::Num(n), start));
        } else if c.is_alphabetic() || c == '_' {
            while i < chars.len()
                && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '-' | '.'))
            {
                i += 1;
            }
            out.push((Tok::Ident(chars[start..i].iter().collect()), start));
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            match OPS.iter().find(|op| rest.starts_with(**op)) {
                Some(op) => {
                    out.push((Tok::Op(op), start));
                    i += op.len();
                }
                None => return Err(err(start, format!("unexpected character `{c}`"))),
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Clone)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(Operand, CmpOp, Operand),
    In(Operand, Vec<Lit>),
    Match(Operand, Regex),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone)]
enum Operand {
    Field(Field),
    Lit(Lit),
}

#[derive(Debug, Clone)]
enum Field {
    Message,
    Key,
    Timestamp,
    Path,
    Host,
    Offset,
    Database,
    Table,
    Op,
    Header(String),
    After(Vec<String>),
    Before(Vec<String>),
}

#[rustfmt::skip]
const FIELDS: &[&str] = &[
    "message", "key", "timestamp", "path", "host", "offset", "database", "table", "op",
    "headers.", "after.", "before.",
];

/// A literal; strings keep their numeric reading, if any.
#[derive(Debug, Clone)]
enum Lit {
    Null,
    Bool(bool),
    Num(f64),
    Str(Box<[u8]>, Option<f64>),
}

struct Parser {
    tokens: Vec<(Tok, usize)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|(t, _)| t)
    }

    fn at(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |(_, o)| *o)
    }

    fn eat_word(&mut self, word: &str, op: &str) -> bool {
        let hit = match self.peek() {
            Some(Tok::Ident(w)) => w == word,
            Some(Tok::Op(o)) => *o == op,
            _ => false,
        };
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn or(&mut self, depth: usize) -> Result<Expr, ConditionError> {
        let mut left = self.and(depth)?;
        while self.eat_word("or", "||") {
            left = Expr::Or(Box::new(left), Box::new(self.and(depth)?));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Expr, ConditionError> {
        let mut left = self.not(depth)?;
        while self.eat_word("and", "&&") {
            left = Expr::And(Box::new(left), Box::new(self.not(depth)?));
        }
        Ok(left)
    }

    fn not(&mut self, depth: usize) -> Result<Expr, ConditionError> {
        if depth > MAX_DEPTH {
            return Err(err(self.at(), "condition nested too deeply"));
        }
        if self.eat_word("not", "!") {
            return Ok(Expr::Not(Box::new(self.not(depth + 1)?)));
        }
        if self.peek() == Some(&Tok::Punct('(')) {
            self.pos += 1;
            let e = self.or(depth + 1)?;
            if self.peek() != Some(&Tok::Punct(')')) {
                return Err(err(self.at(), "expected `)`"));
            }
            self.pos += 1;
            return Ok(e);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, ConditionError> {
        let left_at = self.at();
        let left = self.operand()?;
        let op_at = self.at();
        let op = match self.peek() {
            Some(Tok::Op(o)) => *o,
            Some(Tok::Ident(w)) if w == "in" => "in",
            _ => {
                return Err(err(
                    op_at,
                    "expected a comparison operator (==, =~, in, ...)",
                ))
            }
        };
        self.pos += 1;
        let cmp = match op {
            "==" => CmpOp::Eq,
            "!=" => CmpOp::Ne,
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            ">" => CmpOp::Gt,
            ">=" => CmpOp::Ge,
            "in" => return Ok(Expr::In(left, self.list()?)),
            "=~" => {
                let at = self.at();
                let Some(Tok::Str(pattern)) = self.peek().cloned() else {
                    return Err(err(at, "`=~` needs a regex in quotes"));
                };
                self.pos += 1;
                if matches!(left, Operand::Lit(_)) {
                    return Err(err(left_at, "`=~` needs a field on its left"));
                }
                let re = Regex::new(&pattern).map_err(|e| {
                    let e = e.to_string();
                    err(
                        at,
                        format!("invalid regex: {}", e.lines().last().unwrap_or("").trim()),
                    )
                })?;
                return Ok(Expr::Match(left, re));
            }
            _ => return Err(err(op_at, format!("`{op}` is not a comparison"))),
        };
        Ok(Expr::Cmp(left, cmp, self.operand()?))
    }

    fn list(&mut self) -> Result<Vec<Lit>, ConditionError> {
        if self.peek() != Some(&Tok::Punct('[')) {
            return Err(err(self.at(), "`in` needs a list: `[\"a\", \"b\"]`"));
        }
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            if self.peek() == Some(&Tok::Punct(']')) {
                self.pos += 1;
                return Ok(items);
            }
            let at = self.at();
            match self.operand()? {
                Operand::Lit(l) => items.push(l),
                Operand::Field(_) => return Err(err(at, "a list holds literals only")),
            }
            match self.peek() {
                Some(Tok::Punct(',')) => self.pos += 1,
                Some(Tok::Punct(']')) => {}
                _ => return Err(err(self.at(), "expected `,` or `]`")),
            }
        }
    }

    fn operand(&mut self) -> Result<Operand, ConditionError> {
        let at = self.at();
        let Some(tok) = self.peek().cloned() else {
            return Err(err(at, "expected a field or a value"));
        };
        self.pos += 1;
        Ok(match tok {
            Tok::Str(s) => {
                let n = s.trim().parse::<f64>().ok().filter(|n| n.is_finite());
                Operand::Lit(Lit::Str(s.into_bytes().into_boxed_slice(), n))
            }
            Tok::Num(n) => Operand::Lit(Lit::Num(n)),
            Tok::Ident(w) => match w.as_str() {
                "null" => Operand::Lit(Lit::Null),
                "true" => Operand::Lit(Lit::Bool(true)),
                "false" => Operand::Lit(Lit::Bool(false)),
                _ => Operand::Field(field(&w, at)?),
            },
            _ => return Err(err(at, "expected a field or a value")),
        })
    }
}

fn field(path: &str, at: usize) -> Result<Field, ConditionError> {
    let mut parts = path.split('.');
    let root = parts.next().unwrap_or_default();
    let rest: Vec<String> = parts.map(str::to_string).collect();
    if rest.iter().any(String::is_empty) {
        return Err(err(at, format!("invalid field `{path}`")));
    }
    let simple = match root {
        "message" => Some(Field::Message),
        "key" => Some(Field::Key),
        "timestamp" => Some(Field::Timestamp),
        "path" => Some(Field::Path),
        "host" => Some(Field::Host),
        "offset" => Some(Field::Offset),
        "database" => Some(Field::Database),
        "table" => Some(Field::Table),
        "op" => Some(Field::Op),
        _ => None,
    };
    match (simple, root, rest.len()) {
        (Some(f), _, 0) => Ok(f),
        (None, "headers", 1) => Ok(Field::Header(rest.concat())),
        (None, "after", n) if n >= 1 => Ok(Field::After(rest)),
        (None, "before", n) if n >= 1 => Ok(Field::Before(rest)),
        (None, "headers" | "after" | "before", _) => {
            Err(err(at, format!("`{root}` needs a name: `{root}.NAME`")))
        }
        _ => Err(err(
            at,
            match closest_hint(root, FIELDS.iter().copied()) {
                Some(h) => format!("unknown field `{path}` ({h})"),
                None => format!("unknown field `{path}`"),
            },
        )),
    }
}

/// A value seen while evaluating: borrowed from the record or the condition.
#[derive(Clone, Copy)]
enum Val<'a> {
    Null,
    Bool(bool),
    Num(f64),
    /// Text, with its numeric reading when the literal had one.
    Text(&'a [u8], Option<f64>),
    /// A JSON array or object (only `null` comparisons make sense).
    Other,
}

impl<'a> Val<'a> {
    fn number(self) -> Option<f64> {
        match self {
            Val::Num(n) | Val::Text(_, Some(n)) => Some(n),
            Val::Text(b, None) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
            _ => None,
        }
    }
}

fn lit(l: &Lit) -> Val<'_> {
    match l {
        Lit::Null => Val::Null,
        Lit::Bool(b) => Val::Bool(*b),
        Lit::Num(n) => Val::Num(*n),
        Lit::Str(s, n) => Val::Text(s, *n),
    }
}

fn json(v: Option<&serde_json::Value>) -> Val<'_> {
    use serde_json::Value as J;
    match v {
        None | Some(J::Null) => Val::Null,
        Some(J::Bool(b)) => Val::Bool(*b),
        Some(J::Number(n)) => n.as_f64().map_or(Val::Null, Val::Num),
        Some(J::String(s)) => Val::Text(s.as_bytes(), None),
        Some(_) => Val::Other,
    }
}

fn row_image<'a>(img: Option<&'a crate::record::Row>, path: &[String]) -> Val<'a> {
    let mut v = img.and_then(|m| m.get(path.first()?));
    for p in path.iter().skip(1) {
        v = v.and_then(|x| x.get(p));
    }
    json(v)
}

impl Field {
    fn get<'a>(&'a self, r: &'a Record) -> Val<'a> {
        let log = match &r.meta {
            Meta::Log(l) => Some(l),
            _ => None,
        };
        let row = r.row();
        match self {
            Field::Message => Val::Text(&r.value, None),
            Field::Key => r.key.as_deref().map_or(Val::Null, |k| Val::Text(k, None)),
            Field::Timestamp => Val::Num(r.timestamp_ms as f64),
            Field::Path => log.map_or(Val::Null, |l| Val::Text(l.path.as_bytes(), None)),
            Field::Host => log.map_or(Val::Null, |l| Val::Text(l.host.as_bytes(), None)),
            Field::Offset => log.map_or(Val::Null, |l| Val::Num(l.offset as f64)),
            Field::Database => row.map_or(Val::Null, |c| Val::Text(c.source.db.as_bytes(), None)),
            Field::Table => row.map_or(Val::Null, |c| Val::Text(c.source.table.as_bytes(), None)),
            Field::Op => row.map_or(Val::Null, |c| Val::Text(c.op.as_str().as_bytes(), None)),
            Field::Header(h) => r.header(h).map_or(Val::Null, |v| Val::Text(v, None)),
            Field::After(p) => row_image(row.and_then(|c| c.after.as_ref()), p),
            Field::Before(p) => row_image(row.and_then(|c| c.before.as_ref()), p),
        }
    }
}

impl Operand {
    fn get<'a>(&'a self, r: &'a Record) -> Val<'a> {
        match self {
            Operand::Field(f) => f.get(r),
            Operand::Lit(l) => lit(l),
        }
    }
}

fn bool_text(b: bool) -> &'static [u8] {
    [b"false".as_slice(), b"true"][usize::from(b)]
}

fn equal(a: Val, b: Val) -> bool {
    match (a, b) {
        (Val::Null, Val::Null) => true,
        (Val::Null, _) | (_, Val::Null) | (Val::Other, _) | (_, Val::Other) => false,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Bool(x), Val::Text(t, _)) | (Val::Text(t, _), Val::Bool(x)) => t == bool_text(x),
        (Val::Text(x, _), Val::Text(y, _)) => x == y,
        (Val::Num(_), Val::Text(..))
        | (Val::Text(..), Val::Num(_))
        | (Val::Num(_), Val::Num(_)) => {
            matches!((a.number(), b.number()), (Some(x), Some(y)) if x == y)
        }
        (Val::Bool(_), Val::Num(_)) | (Val::Num(_), Val::Bool(_)) => false,
    }
}

fn order(a: Val, b: Val) -> Option<std::cmp::Ordering> {
    if let (Some(x), Some(y)) = (a.number(), b.number()) {
        return x.partial_cmp(&y);
    }
    match (a, b) {
        (Val::Text(x, _), Val::Text(y, _)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn regex_match(re: &Regex, v: Val) -> bool {
    match v {
        Val::Text(t, _) => re.is_match(t),
        Val::Bool(b) => re.is_match(bool_text(b)),
        Val::Num(n) => {
            let mut buf = [0u8; 40];
            let mut w = &mut buf[..];
            let len = write!(w, "{n}").map_or(0, |()| 40 - w.len());
            re.is_match(&buf[..len])
        }
        Val::Null | Val::Other => false,
    }
}

impl Expr {
    fn eval(&self, r: &Record) -> bool {
        match self {
            Expr::Or(a, b) => a.eval(r) || b.eval(r),
            Expr::And(a, b) => a.eval(r) && b.eval(r),
            Expr::Not(a) => !a.eval(r),
            Expr::Cmp(a, op, b) => {
                let (x, y) = (a.get(r), b.get(r));
                match op {
                    CmpOp::Eq => equal(x, y),
                    CmpOp::Ne => !equal(x, y),
                    CmpOp::Lt => order(x, y).is_some_and(|o| o.is_lt()),
                    CmpOp::Le => order(x, y).is_some_and(|o| o.is_le()),
                    CmpOp::Gt => order(x, y).is_some_and(|o| o.is_gt()),
                    CmpOp::Ge => order(x, y).is_some_and(|o| o.is_ge()),
                }
            }
            Expr::In(a, list) => {
                let x = a.get(r);
                list.iter().any(|l| equal(x, lit(l)))
            }
            Expr::Match(a, re) => regex_match(re, a.get(r)),
        }
    }
}
