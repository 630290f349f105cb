//! The snapshot's progress bar on stderr, shown only when stderr is a
//! terminal (rows done of estimated, rows/s, ETA). Touches stderr only.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar, or nothing when stderr is not a terminal.
pub struct SnapshotBar(Option<ProgressBar>);

impl SnapshotBar {
    pub fn new(estimated_rows: u64) -> SnapshotBar {
        if !std::io::stderr().is_terminal() {
            return SnapshotBar(None);
        }
        let bar = ProgressBar::new(estimated_rows);
        if let Ok(style) = ProgressStyle::with_template(
            "snapshot {bar:40} {human_pos}/{human_len} rows  {per_sec}  ETA {eta}",
        ) {
            bar.set_style(style);
        }
        SnapshotBar(Some(bar))
    }

    pub fn set(&self, rows_done: u64) {
        if let Some(bar) = &self.0 {
            if rows_done > bar.length().unwrap_or(0) {
                bar.set_length(rows_done);
            }
            bar.set_position(rows_done);
        }
    }

    pub fn finish(&self, rows_done: u64) {
        if let Some(bar) = &self.0 {
            bar.set_position(rows_done);
            bar.finish();
        }
    }
}
