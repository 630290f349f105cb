//! Finding the files to follow: the fixed directory each `include` glob
//! starts from (what the watcher watches) and a scan of those directories
//! that returns every regular file matching `include` and not `exclude`,
//! with its metadata. Directories are walked only as deep as the glob can
//! reach (`**` is unbounded, capped at 32 levels); symbolic links to
//! directories are not followed. Touches the file system read-only.

use std::fs::Metadata;
use std::path::{Path, PathBuf};

use crate::config::Settings;

/// A directory to walk and how deep files under it can match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub dir: PathBuf,
    /// Directory levels below `dir` where matches can be (1 = files in `dir`).
    pub depth: usize,
}

const MAX_DEPTH: usize = 32;

fn is_meta(component: &str) -> bool {
    component.contains(['*', '?', '[', '{'])
}

/// The fixed leading directory of a glob and the depth below it.
pub fn root_of(pattern: &str) -> Root {
    let parts: Vec<&str> = pattern.split('/').filter(|p| !p.is_empty()).collect();
    let fixed = parts.iter().take_while(|p| !is_meta(p)).count();
    // A pattern without any meta character names one file: its parent.
    let fixed = fixed.min(parts.len().saturating_sub(1));
    let mut dir = PathBuf::from("/");
    for p in &parts[..fixed] {
        dir.push(p);
    }
    let rest = &parts[fixed..];
    let depth = if rest.contains(&"**") {
        MAX_DEPTH
    } else {
        rest.len().max(1)
    };
    Root { dir, depth }
}

/// The roots of every include glob, nested ones folded into their parent.
pub fn roots(settings: &Settings) -> Vec<Root> {
    let mut all: Vec<Root> = settings.include.iter().map(|p| root_of(p)).collect();
    all.sort_by(|a, b| a.dir.cmp(&b.dir).then(b.depth.cmp(&a.depth)));
    let mut out: Vec<Root> = Vec::new();
    for r in all {
        let covered = out.iter().any(|o| {
            r.dir.starts_with(&o.dir)
                && o.depth >= r.depth + r.dir.components().count() - o.dir.components().count()
        });
        if !covered {
            out.push(r);
        }
    }
    out
}

/// Every matching regular file under the roots, with its metadata
/// (symbolic links to files are followed).
pub fn scan(settings: &Settings, roots: &[Root]) -> Vec<(PathBuf, Metadata)> {
    let mut found = Vec::new();
    for r in roots {
        walk(settings, &r.dir, r.depth, &mut found);
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found.dedup_by(|a, b| a.0 == b.0);
    found
}

fn walk(settings: &Settings, dir: &Path, depth: usize, found: &mut Vec<(PathBuf, Metadata)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(ft) = entry.file_type() else { continue };
        let path = entry.path();
        if ft.is_dir() {
            if depth > 1 {
                walk(settings, &path, depth - 1, found);
            }
            continue;
        }
        if !settings.wants(&path) {
            continue;
        }
        if let Ok(meta) = std::fs::metadata(&path) {
            if meta.is_file() {
                found.push((path, meta));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_stop_at_the_first_meta_character() {
        assert_eq!(
            root_of("/var/log/app/*.log"),
            Root {
                dir: "/var/log/app".into(),
                depth: 1
            }
        );
        assert_eq!(root_of("/var/log/*/x.log").depth, 2);
        assert_eq!(root_of("/var/**/x.log").depth, MAX_DEPTH);
        assert_eq!(root_of("/var/log/syslog").dir, PathBuf::from("/var/log"));
    }
}
