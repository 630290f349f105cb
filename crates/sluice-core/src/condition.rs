//! STUB — the `where` condition language replaces this file.

use crate::record::Record;

/// A compiled `where` condition.
#[derive(Debug, Clone)]
pub struct Condition {
    source: String,
}

impl Condition {
    pub fn compile(source: &str) -> Result<Condition, String> {
        Ok(Condition {
            source: source.to_string(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, _record: &Record) -> bool {
        true
    }
}
