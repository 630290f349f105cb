//! `include_tables` / `exclude_tables` globs on `db.table` (and the
//! optional column globs on `db.table.column`). A table is captured when it
//! matches an include glob (or no include globs are given) and no exclude
//! glob. Touches nothing but memory.

use globset::{GlobSet, GlobSetBuilder};

/// Compiled table and column filters.
#[derive(Clone, Debug)]
pub struct TableFilter {
    include: Option<GlobSet>,
    include_dbs: Option<GlobSet>,
    exclude: GlobSet,
    include_columns: Option<GlobSet>,
    exclude_columns: GlobSet,
}

fn build(patterns: &[String], what: &str) -> Result<GlobSet, String> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let glob = globset::GlobBuilder::new(p)
            .literal_separator(false)
            .build()
            .map_err(|e| format!("{what}: bad glob `{p}`: {e}"))?;
        b.add(glob);
    }
    b.build().map_err(|e| format!("{what}: {e}"))
}

impl Default for TableFilter {
    fn default() -> Self {
        TableFilter::new(&[], &[], &[], &[]).unwrap_or_else(|_| unreachable_filter())
    }
}

fn unreachable_filter() -> TableFilter {
    TableFilter {
        include: None,
        include_dbs: None,
        exclude: GlobSet::empty(),
        include_columns: None,
        exclude_columns: GlobSet::empty(),
    }
}

impl TableFilter {
    pub fn new(
        include: &[String],
        exclude: &[String],
        include_columns: &[String],
        exclude_columns: &[String],
    ) -> Result<TableFilter, String> {
        let dbs: Vec<String> = include
            .iter()
            .map(|p| p.split('.').next().unwrap_or(p).to_string())
            .collect();
        Ok(TableFilter {
            include: (!include.is_empty())
                .then(|| build(include, "include_tables"))
                .transpose()?,
            include_dbs: (!include.is_empty())
                .then(|| build(&dbs, "include_tables"))
                .transpose()?,
            exclude: build(exclude, "exclude_tables")?,
            include_columns: (!include_columns.is_empty())
                .then(|| build(include_columns, "include_columns"))
                .transpose()?,
            exclude_columns: build(exclude_columns, "exclude_columns")?,
        })
    }

    /// Whether changes of `db.table` are captured.
    pub fn table(&self, db: &str, table: &str) -> bool {
        let name = format!("{db}.{table}");
        self.include.as_ref().is_none_or(|s| s.is_match(&name)) && !self.exclude.is_match(&name)
    }

    /// Whether a statement that names only a database concerns the capture.
    pub fn database(&self, db: &str) -> bool {
        self.include_dbs.as_ref().is_none_or(|s| s.is_match(db))
    }

    /// Per-column keep flags for a table, `None` when every column is kept.
    pub fn columns(&self, db: &str, table: &str, columns: &[&str]) -> Option<Vec<bool>> {
        if self.include_columns.is_none() && self.exclude_columns.is_empty() {
            return None;
        }
        Some(
            columns
                .iter()
                .map(|c| {
                    let name = format!("{db}.{table}.{c}");
                    self.include_columns
                        .as_ref()
                        .is_none_or(|s| s.is_match(&name))
                        && !self.exclude_columns.is_match(&name)
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn include_then_exclude() {
        let f = TableFilter::new(&s(&["shop.*"]), &s(&["shop.tmp_*"]), &[], &[]).unwrap();
        assert!(f.table("shop", "orders"));
        assert!(!f.table("shop", "tmp_x"));
        assert!(!f.table("other", "orders"));
        assert!(f.database("shop"));
        assert!(!f.database("other"));
        let all = TableFilter::default();
        assert!(all.table("a", "b"));
        assert!(all.columns("a", "b", &["x"]).is_none());
    }

    #[test]
    fn column_globs() {
        let f = TableFilter::new(&[], &[], &[], &s(&["*.users.password"])).unwrap();
        assert_eq!(
            f.columns("shop", "users", &["id", "password"]),
            Some(vec![true, false])
        );
    }
}
